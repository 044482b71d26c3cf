// ps/transport — the bottom layer of the parameter server: ZeroMQ contexts, sockets and
// multipart messages as RAII objects (no global context: each owner holds its own).
//
// A message is multipart: frame 0 is a Header (ps/header.hpp), frames 1.. are raw float
// payloads. Payloads leave without a copy: Message::borrow() hands ZeroMQ the caller's memory
// and a Release that is told when ZeroMQ no longer needs it, so the owner can keep the memory
// unchanged until then.
//
// Every failing ZeroMQ call throws strand::Error(Io) through STRAND_ZMQ_CHECK, naming the
// call, the errno text and the socket's owner and endpoint (host, rank, endpoint).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include <zmq.h>

#include <strand/core/error.hpp>
#include <strand/ps/header.hpp>

// Throws strand::Error(Io) naming the ZeroMQ call, its errno text and `where` when `rc` < 0.
#define STRAND_ZMQ_CHECK(rc, what, where)                         \
  do {                                                            \
    if ((rc) < 0) ::strand::ps::throw_zmq_error((what), (where)); \
  } while (0)

namespace strand::ps {

[[noreturn]] void throw_zmq_error(const std::string& what, const std::string& where);

class ZmqContext {
 public:
  explicit ZmqContext(int io_threads = 1);
  ~ZmqContext();
  ZmqContext(const ZmqContext&) = delete;
  ZmqContext& operator=(const ZmqContext&) = delete;
  void* get() const { return ctx_; }

 private:
  void* ctx_;
};

// Counts borrowed frames ZeroMQ still holds; wait() returns once it holds none.
class Release {
 public:
  void add() {
    std::lock_guard<std::mutex> l(mu_);
    ++held_;
  }
  void done();
  void wait();
  // false if frames are still held after `seconds`
  bool wait_for(double seconds);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int held_ = 0;
};

// One ZeroMQ message part. Move-only.
class Message {
 public:
  Message();
  explicit Message(size_t bytes);           // owned, uninitialized
  Message(const void* data, size_t bytes);  // owned copy
  // ZeroMQ sends `data` in place and tells `release` when done with it (the message keeps
  // `release` alive until then); `data` must stay valid and unchanged until that moment.
  static Message borrow(const void* data, size_t bytes, std::shared_ptr<Release> release);
  Message(Message&& o) noexcept;
  Message& operator=(Message&& o) noexcept;
  Message(const Message&) = delete;
  Message& operator=(const Message&) = delete;
  ~Message();

  const std::byte* data() const {
    return static_cast<const std::byte*>(zmq_msg_data(const_cast<zmq_msg_t*>(&m_)));
  }
  std::byte* data() { return static_cast<std::byte*>(zmq_msg_data(&m_)); }
  size_t size() const { return zmq_msg_size(const_cast<zmq_msg_t*>(&m_)); }
  std::span<const std::byte> bytes() const { return {data(), size()}; }
  zmq_msg_t* raw() { return &m_; }

 private:
  zmq_msg_t m_;
};

class Socket {
 public:
  // `where` names the owner for error messages ("rank 1/2 host-a").
  Socket(ZmqContext& ctx, int type, std::string where);
  ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  // Returns the bound endpoint (the port filled in for "tcp://host:0" or ":*").
  std::string bind(const std::string& endpoint);
  void connect(const std::string& endpoint);
  void set(int option, int value);
  void set(int option, const std::string& value);
  // Socket options of every strand PS data socket (the bench's raw sockets use them too).
  void configure_data(size_t max_frame_bytes);

  // Sends `parts` as one multipart message (consumed).
  void send(std::vector<Message>& parts);
  // Receives one whole multipart message; false if none is waiting (non-blocking). Parts past
  // `max_parts` are received and discarded, and `truncated` is set.
  bool recv(std::vector<Message>& parts, size_t max_parts, bool& truncated);
  void* raw() const { return s_; }
  const std::string& where() const { return where_; }

 private:
  std::string context(const std::string& endpoint = {}) const;
  void* s_;
  std::string where_;
  std::string endpoint_;
};

// Wakes a thread blocked in zmq_poll: notify() from any thread, the woken thread polls
// `socket()` and calls drain().
class Waker {
 public:
  Waker(ZmqContext& ctx, const std::string& where);
  void notify();
  void drain();
  Socket& socket() { return pull_; }

 private:
  std::mutex mu_;
  Socket pull_, push_;
};

}  // namespace strand::ps
