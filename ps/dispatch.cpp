#include <strand/ps/dispatch.hpp>

#include <algorithm>
#include <cstdio>

namespace strand::ps {

struct Ticket::State {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::chrono::steady_clock::time_point finished;
  std::exception_ptr error;
  std::shared_ptr<Release> release = std::make_shared<Release>();  // borrowed payloads ZeroMQ holds
  int server = 0;
  Header header;
  std::vector<std::span<const std::byte>> payloads;
  ReplyHandler on_reply;
};

void Ticket::wait() {
  if (!s_) return;
  {
    std::unique_lock<std::mutex> l(s_->mu);
    s_->cv.wait(l, [&] { return s_->done; });
  }
  s_->release->wait();
  if (s_->error) std::rethrow_exception(s_->error);
}

std::chrono::steady_clock::time_point Ticket::finished() const {
  if (!s_) return {};
  std::lock_guard<std::mutex> l(s_->mu);
  return s_->finished;
}

namespace {
// A Fail reply's error kind; an out-of-range value (a newer server) reads as Internal.
ErrorKind kind_from_wire(int64_t k) {
  return k >= int64_t(ErrorKind::Io) && k <= int64_t(ErrorKind::Timeout) ? ErrorKind(k) : ErrorKind::Internal;
}

std::string seconds(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f s", s);
  return b;
}
}  // namespace

Dispatcher::Dispatcher(std::vector<std::string> endpoints, uint64_t token, int sender,
                       DispatchOptions options, std::string where)
    : endpoints_(std::move(endpoints)),
      token_(token),
      sender_(sender),
      opt_(options),
      where_(std::move(where)),
      ctx_(1),
      waker_(ctx_, where_) {
  STRAND_CHECK(!endpoints_.empty(), Usage, "no parameter servers to talk to", where_);
  STRAND_CHECK(opt_.max_outstanding >= 1, Usage, "max_outstanding must be at least 1", where_);
  STRAND_CHECK(
      opt_.heartbeat_s > 0 && opt_.server_timeout_s > opt_.heartbeat_s && opt_.connect_timeout_s > 0, Usage,
      "the server timeout must be longer than the heartbeat interval, the connect timeout positive", where_);
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    auto s = std::make_unique<Socket>(ctx_, ZMQ_DEALER, this->where(int(i)));
    s->configure_data(opt_.max_frame_bytes);
    s->connect(endpoints_[i]);
    sockets_.push_back(std::move(s));
  }
  last_heard_.assign(endpoints_.size(), Clock::now());
  heard_.assign(endpoints_.size(), false);
  thread_ = std::thread([this] { loop(); });
}

Dispatcher::~Dispatcher() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  waker_.notify();
  thread_.join();
}

std::string Dispatcher::where(int server) const {
  std::string s = where_.empty() ? "" : where_ + ", ";
  return s + "server " + std::to_string(server) + " at " + endpoints_[size_t(server)];
}

Ticket Dispatcher::call(int server, Header header, std::vector<std::span<const std::byte>> payloads,
                        ReplyHandler on_reply) {
  STRAND_CHECK(server >= 0 && server < servers(), Internal, "no server " + std::to_string(server), where_);
  auto s = std::make_shared<Ticket::State>();
  s->server = server;
  s->payloads = std::move(payloads);
  s->on_reply = std::move(on_reply);
  header.token = token_;
  header.sender = sender_;
  {
    std::unique_lock<std::mutex> l(mu_);
    space_.wait(l, [&] { return outstanding_ < opt_.max_outstanding || fatal_ || stop_; });
    if (fatal_) std::rethrow_exception(fatal_);
    header.request = next_id_++;
    s->header = std::move(header);
    ++outstanding_;
    queue_.push_back(s);
  }
  waker_.notify();
  return Ticket(s);
}

void Dispatcher::complete(const std::shared_ptr<Ticket::State>& s, std::exception_ptr e) {
  {
    std::lock_guard<std::mutex> l(s->mu);
    s->done = true;
    s->finished = Clock::now();
    s->error = std::move(e);
    s->payloads.clear();
    s->on_reply = nullptr;
  }
  s->cv.notify_all();
  {
    std::lock_guard<std::mutex> l(mu_);
    --outstanding_;
  }
  space_.notify_all();
}

void Dispatcher::fail_all(std::exception_ptr e) {
  std::deque<std::shared_ptr<Ticket::State>> queued;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!fatal_) fatal_ = e;
    queued.swap(queue_);
  }
  space_.notify_all();
  // Closing the sockets makes ZeroMQ drop (and release) the borrowed frames it still holds.
  sockets_.clear();
  for (auto& [id, s] : in_flight_) complete(s, e);
  in_flight_.clear();
  for (auto& s : queued) complete(s, e);
}

void Dispatcher::send_queued() {
  std::deque<std::shared_ptr<Ticket::State>> batch;
  {
    std::lock_guard<std::mutex> l(mu_);
    batch.swap(queue_);
  }
  for (auto& s : batch) {
    std::vector<Message> parts;
    const std::string h = encode_header(s->header);
    parts.emplace_back(h.data(), h.size());
    for (auto p : s->payloads) parts.push_back(Message::borrow(p.data(), p.size(), s->release));
    in_flight_[s->header.request] = s;
    sockets_[size_t(s->server)]->send(parts);
  }
}

void Dispatcher::receive(int server) {
  std::vector<Message> parts;
  bool truncated = false;
  while (sockets_[size_t(server)]->recv(parts, kMaxChunksPerMessage * 3 + 1, truncated)) {
    if (parts.empty() || truncated) continue;
    Header h;
    try {
      h = decode_header(parts[0].bytes());
    } catch (const Error&) {
      continue;  // not from a strand server of this job: ignore it
    }
    if (h.token != token_) continue;
    last_heard_[size_t(server)] = Clock::now();
    heard_[size_t(server)] = true;
    if (h.type == MsgType::Heartbeat) continue;
    if (h.type == MsgType::Fail && h.request == 0)  // about this worker, not one request
      throw Error(kind_from_wire(h.step), "parameter server: " + h.text, where(server));
    const auto it = in_flight_.find(h.request);
    if (it == in_flight_.end()) continue;
    auto s = it->second;
    in_flight_.erase(it);
    std::exception_ptr e;
    if (h.type == MsgType::Fail) {
      e = std::make_exception_ptr(
          Error(kind_from_wire(h.step),
                "parameter server refused the " + std::string(to_string(s->header.type)) + ": " + h.text,
                where(server)));
    } else if (s->on_reply) {
      parts.erase(parts.begin());
      try {
        s->on_reply(h, parts);
      } catch (...) {
        e = std::current_exception();
      }
    }
    complete(s, e);
  }
}

void Dispatcher::loop() {
  auto duration = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  const auto hb = duration(opt_.heartbeat_s), timeout = duration(opt_.server_timeout_s),
             connect_timeout = duration(opt_.connect_timeout_s);
  auto next_hb = Clock::now();
  try {
    for (;;) {
      const auto now = Clock::now();
      if (now >= next_hb) {
        Header h;
        h.type = MsgType::Heartbeat;
        h.token = token_;
        h.sender = sender_;
        const std::string bytes = encode_header(h);
        for (auto& s : sockets_) {
          std::vector<Message> parts;
          parts.emplace_back(bytes.data(), bytes.size());
          s->send(parts);
        }
        next_hb = now + hb;
      }
      for (size_t i = 0; i < sockets_.size(); ++i) {
        const double quiet = std::chrono::duration<double>(now - last_heard_[i]).count();
        if (heard_[i] && now - last_heard_[i] > timeout)
          throw Error(ErrorKind::Timeout,
                      "parameter server has not answered for " + seconds(quiet) +
                          " (it stopped or the network is down)",
                      where(int(i)));
        if (!heard_[i] && now - last_heard_[i] > connect_timeout)
          throw Error(ErrorKind::Timeout,
                      "parameter server did not answer within " + seconds(quiet) +
                          " of the start (is it running, at that address, with this job's token?)",
                      where(int(i)));
      }
      std::vector<zmq_pollitem_t> items;
      items.push_back({waker_.socket().raw(), 0, ZMQ_POLLIN, 0});
      for (auto& s : sockets_) items.push_back({s->raw(), 0, ZMQ_POLLIN, 0});
      const auto wait_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(next_hb - Clock::now()).count();
      const int rc = zmq_poll(items.data(), int(items.size()), long(std::max<int64_t>(1, wait_ms)));
      if (rc < 0 && zmq_errno() != EINTR) throw_zmq_error("zmq_poll", where_);
      if (items[0].revents & ZMQ_POLLIN) waker_.drain();
      {
        std::lock_guard<std::mutex> l(mu_);
        if (stop_) break;
      }
      send_queued();
      for (size_t i = 0; i < sockets_.size(); ++i)
        if (items[i + 1].revents & ZMQ_POLLIN) receive(int(i));
    }
    fail_all(
        std::make_exception_ptr(Error(ErrorKind::Usage, "the parameter-server client was closed", where_)));
  } catch (...) {
    fail_all(std::current_exception());
  }
}

}  // namespace strand::ps
