// ps/dispatch — the middle layer: asynchronous requests from one worker to a set of servers.
// call() gives the request an id, queues it and returns a Ticket at once; one I/O thread owns
// the sockets (one DEALER per server), sends, matches replies to tickets by id and runs the
// request's reply handler. At most `max_outstanding` requests are queued or awaiting a reply:
// call() blocks while that many are (back-pressure on the training thread).
//
// Liveness: the I/O thread sends a heartbeat to every server each `heartbeat_s`; a server
// whose last message (reply or heartbeat) is older than `server_timeout_s` is dead: every
// ticket, and every later call(), fails with Error(Timeout) naming it and its endpoint. Until a
// server has answered once, `connect_timeout_s` applies instead (hosts start at different
// times: SageMaker starts every instance with the same command).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <strand/ps/transport.hpp>

namespace strand::ps {

struct DispatchOptions {
  int max_outstanding = 64;
  double heartbeat_s = 0.5;
  double server_timeout_s = 10;
  double connect_timeout_s = 120;
  size_t max_frame_bytes = size_t(kDefaultMaxFrameBytes);  // largest reply frame accepted
  static constexpr int64_t kDefaultMaxFrameBytes = int64_t(64) << 20;
};

// Runs on the I/O thread with a reply's header and payload frames (header removed). It may
// throw strand::Error: the ticket then fails with it.
using ReplyHandler = std::function<void(const Header&, std::vector<Message>& frames)>;

class Ticket {
 public:
  Ticket() = default;
  // Waits for the reply and for ZeroMQ to let go of the borrowed payloads; rethrows the
  // request's error. A default-constructed ticket is complete.
  void wait();
  // When the reply arrived (or the request failed); valid after wait().
  std::chrono::steady_clock::time_point finished() const;

  struct State;

 private:
  friend class Dispatcher;
  explicit Ticket(std::shared_ptr<State> s) : s_(std::move(s)) {}
  std::shared_ptr<State> s_;
};

class Dispatcher {
 public:
  // `sender`: this worker's rank; `where`: its identity for errors ("rank 1/2 host-a").
  Dispatcher(std::vector<std::string> endpoints, uint64_t token, int sender, DispatchOptions options,
             std::string where);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Sends `header` (its token, sender and request id are filled in) and `payloads` to server
  // `server`. The payloads are borrowed, not copied: their memory must stay unchanged until
  // the ticket completes; so must whatever `on_reply` writes to.
  Ticket call(int server, Header header, std::vector<std::span<const std::byte>> payloads = {},
              ReplyHandler on_reply = {});
  int servers() const { return int(endpoints_.size()); }
  // "rank 1/2 host-a, server 0 at tcp://127.0.0.1:5555"
  std::string where(int server) const;

 private:
  using Clock = std::chrono::steady_clock;
  void loop();
  void send_queued();
  void receive(int server);
  void fail_all(std::exception_ptr e);
  void complete(const std::shared_ptr<Ticket::State>& s, std::exception_ptr e);

  std::vector<std::string> endpoints_;
  uint64_t token_;
  int sender_;
  DispatchOptions opt_;
  std::string where_;

  ZmqContext ctx_;
  Waker waker_;
  std::vector<std::unique_ptr<Socket>> sockets_;  // the I/O thread's once it runs

  std::mutex mu_;
  std::condition_variable space_;
  std::deque<std::shared_ptr<Ticket::State>> queue_;
  int outstanding_ = 0;
  uint64_t next_id_ = 1;
  bool stop_ = false;
  std::exception_ptr fatal_;

  // I/O thread only.
  std::unordered_map<uint64_t, std::shared_ptr<Ticket::State>> in_flight_;
  std::vector<Clock::time_point> last_heard_;
  std::vector<bool> heard_;
  std::thread thread_;  // last: starts after everything it reads exists
};

}  // namespace strand::ps
