#include <strand/ps/transport.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

namespace strand::ps {

void throw_zmq_error(const std::string& what, const std::string& where) {
  const int e = zmq_errno();
  throw Error(ErrorKind::Io, what + " failed: " + zmq_strerror(e), where);
}

ZmqContext::ZmqContext(int io_threads) : ctx_(zmq_ctx_new()) {
  if (!ctx_) throw_zmq_error("zmq_ctx_new", "ZeroMQ");
  if (zmq_ctx_set(ctx_, ZMQ_IO_THREADS, io_threads) < 0) {
    zmq_ctx_term(ctx_);
    throw_zmq_error("setting " + std::to_string(io_threads) + " ZeroMQ I/O threads", "ZeroMQ");
  }
}

ZmqContext::~ZmqContext() {
  while (zmq_ctx_term(ctx_) < 0 && zmq_errno() == EINTR) {
  }
}

void Release::done() {
  {
    std::lock_guard<std::mutex> l(mu_);
    --held_;
  }
  cv_.notify_all();
}

void Release::wait() {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return held_ == 0; });
}

bool Release::wait_for(double seconds) {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_for(l, std::chrono::duration<double>(seconds), [&] { return held_ == 0; });
}

Message::Message() { zmq_msg_init(&m_); }

Message::Message(size_t bytes) {
  if (zmq_msg_init_size(&m_, bytes) < 0)
    throw_zmq_error("allocating a " + std::to_string(bytes) + "-byte message", "ZeroMQ");
}

Message::Message(const void* data, size_t bytes) : Message(bytes) {
  if (bytes) std::memcpy(zmq_msg_data(&m_), data, bytes);
}

Message Message::borrow(const void* data, size_t bytes, std::shared_ptr<Release> release) {
  Message m;
  zmq_msg_close(&m.m_);
  release->add();
  auto* hint = new std::shared_ptr<Release>(std::move(release));
  // ZeroMQ calls this from its I/O thread once the bytes are written to the kernel (or the
  // message is dropped with its socket).
  auto done = [](void*, void* h) {
    auto* r = static_cast<std::shared_ptr<Release>*>(h);
    (*r)->done();
    delete r;
  };
  if (zmq_msg_init_data(&m.m_, const_cast<void*>(data), bytes, done, hint) < 0) {
    (*hint)->done();
    delete hint;
    zmq_msg_init(&m.m_);
    throw_zmq_error("zmq_msg_init_data", "ZeroMQ");
  }
  return m;
}

Message::Message(Message&& o) noexcept {
  zmq_msg_init(&m_);
  zmq_msg_move(&m_, &o.m_);
}

Message& Message::operator=(Message&& o) noexcept {
  if (this != &o) zmq_msg_move(&m_, &o.m_);  // closes what m_ held
  return *this;
}

Message::~Message() { zmq_msg_close(&m_); }

Socket::Socket(ZmqContext& ctx, int type, std::string where)
    : s_(zmq_socket(ctx.get(), type)), where_(std::move(where)) {
  if (!s_) throw_zmq_error("zmq_socket", where_);
  // Closing never waits for unsent messages: a peer that is gone must not hang shutdown.
  const int zero = 0;
  zmq_setsockopt(s_, ZMQ_LINGER, &zero, sizeof zero);
}

Socket::~Socket() { zmq_close(s_); }

std::string Socket::context(const std::string& endpoint) const {
  const std::string& e = endpoint.empty() ? endpoint_ : endpoint;
  if (e.empty()) return where_;
  return where_.empty() ? e : where_ + ", " + e;
}

std::string Socket::bind(const std::string& endpoint) {
  STRAND_ZMQ_CHECK(zmq_bind(s_, endpoint.c_str()), "binding to " + endpoint, context(endpoint));
  char buf[256];
  size_t len = sizeof buf;
  STRAND_ZMQ_CHECK(zmq_getsockopt(s_, ZMQ_LAST_ENDPOINT, buf, &len), "reading the bound endpoint",
                   context(endpoint));
  endpoint_ = std::string(buf, strnlen(buf, len));
  return endpoint_;
}

void Socket::connect(const std::string& endpoint) {
  STRAND_ZMQ_CHECK(zmq_connect(s_, endpoint.c_str()), "connecting to " + endpoint, context(endpoint));
  endpoint_ = endpoint;
}

void Socket::set(int option, int value) {
  STRAND_ZMQ_CHECK(zmq_setsockopt(s_, option, &value, sizeof value),
                   "setting socket option " + std::to_string(option), context());
}

void Socket::set(int option, const std::string& value) {
  STRAND_ZMQ_CHECK(zmq_setsockopt(s_, option, value.data(), value.size()),
                   "setting socket option " + std::to_string(option), context());
}

void Socket::configure_data(size_t max_frame_bytes) {
  // A frame larger than any chunk is refused by ZeroMQ before it is buffered.
  const int64_t limit = int64_t(std::max(max_frame_bytes, kMaxHeaderBytes));
  STRAND_ZMQ_CHECK(zmq_setsockopt(s_, ZMQ_MAXMSGSIZE, &limit, sizeof limit), "setting the frame size limit",
                   context());
  // Large kernel buffers: a 1 MiB chunk crosses the loopback in a few writes, not dozens.
  set(ZMQ_SNDBUF, 4 << 20);
  set(ZMQ_RCVBUF, 4 << 20);
  // Requests are bounded by the dispatcher; the queues must never drop a part of one.
  set(ZMQ_SNDHWM, 0);
  set(ZMQ_RCVHWM, 0);
}

void Socket::send(std::vector<Message>& parts) {
  for (size_t i = 0; i < parts.size(); ++i) {
    const int flags = i + 1 < parts.size() ? ZMQ_SNDMORE : 0;
    int rc;
    while ((rc = zmq_msg_send(parts[i].raw(), s_, flags)) < 0 && zmq_errno() == EINTR) {
    }
    STRAND_ZMQ_CHECK(rc, "sending a message", context());
  }
  parts.clear();
}

bool Socket::recv(std::vector<Message>& parts, size_t max_parts, bool& truncated) {
  parts.clear();
  truncated = false;
  for (;;) {
    Message m;
    const int rc = zmq_msg_recv(m.raw(), s_, parts.empty() ? ZMQ_DONTWAIT : 0);
    if (rc < 0) {
      if (parts.empty() && (zmq_errno() == EAGAIN || zmq_errno() == EINTR)) return false;
      throw_zmq_error("receiving a message", context());
    }
    const bool more = zmq_msg_more(m.raw());
    if (parts.size() < max_parts) {
      parts.push_back(std::move(m));
    } else {
      truncated = true;
    }
    if (!more) return true;
  }
}

Waker::Waker(ZmqContext& ctx, const std::string& where)
    : pull_(ctx, ZMQ_PULL, where), push_(ctx, ZMQ_PUSH, where) {
  char name[64];
  std::snprintf(name, sizeof name, "inproc://strand-ps-waker-%p", static_cast<void*>(this));
  pull_.bind(name);
  push_.connect(name);
}

void Waker::notify() {
  std::lock_guard<std::mutex> l(mu_);
  // Non-blocking: if the queue is full, the poller has plenty to wake it already.
  zmq_send(push_.raw(), "", 0, ZMQ_DONTWAIT);
}

void Waker::drain() {
  char b;
  while (zmq_recv(pull_.raw(), &b, 1, ZMQ_DONTWAIT) >= 0) {
  }
}

}  // namespace strand::ps
