#include <strand/ps/server.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <unordered_map>

#include <strand/core/optimizer.hpp>

namespace strand::ps {

namespace {

using Clock = std::chrono::steady_clock;

std::string secs(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f s", s);
  return b;
}

}  // namespace

struct Server::Impl final : PolicyHost {
  struct ChunkState {
    uint32_t id = 0;
    int64_t n = 0;
    Buffer params;
    std::vector<Buffer> slots;
    std::shared_ptr<Release> sending = std::make_shared<Release>();  // replies borrowing params/slots
    bool initialized = false;
    // Per chunk: an init in several messages changes them one by one. Its lr is unused: each
    // push carries its own.
    OptimizerConfig optimizer;
    int64_t opt_step = 0;
  };
  struct Peer {
    std::string identity;
    Clock::time_point last_seen;
    bool seen = false, live = true, left = false;
    // Joins: a worker past the first opt.workers is reserved (server 0 gave it its rank), then
    // pending (rounds from `hold` on wait for it), then started: its first step is `from`.
    bool started = true, pending = false;
    int64_t from = 0, hold = 0;
  };
  // A push that arrived while a worker gathers a consistent snapshot (Freeze).
  struct Held {
    uint32_t id;
    int worker;
    Message grads;
    float lr;
  };
  // A gather at cuts (per worker, the pushes its snapshot holds), answered once they are in.
  struct CutGather {
    int worker;
    uint64_t request;
    std::vector<uint32_t> chunks;
    std::vector<int64_t> cut;
  };
  // A rank request (sender -1) waiting for the join in progress to end.
  struct RankRequest {
    std::string identity;
    uint64_t request;
  };
  struct Waiting {
    int worker;
    uint64_t request;
    std::vector<uint32_t> chunks;
    int64_t clock;
  };
  struct SumRound {
    std::vector<bool> has;
    std::vector<double> values;
    std::vector<uint64_t> requests;
  };
  // Buffers a stuck reply still borrows when their chunk must change (see prepare_write).
  struct Retired {
    Buffer params;
    std::vector<Buffer> slots;
    std::shared_ptr<Release> sending;
  };

  Impl(const Context& c, ServerOptions o)
      : ctx(c),
        opt(std::move(o)),
        where("PS server " + std::to_string(opt.index) +
              (ctx.where().empty() ? "" : " (" + ctx.where() + ")")),
        be(make_cpu_backend(opt.threads)),
        zctx(1),
        router(zctx, ZMQ_ROUTER, where),
        waker(zctx, where) {}

  void run();
  void handle(std::vector<Message>& parts);
  void reply(int worker, Header h, std::vector<Message> frames = {});
  void send_to(const std::string& identity, Header h, std::vector<Message> frames = {});
  void fail(int worker, uint64_t request, const Refusal& r);
  ChunkState& owned(uint32_t id);
  void push(const Header& h, std::vector<Message>& parts);
  void pull(const Header& h, const std::vector<Message>& parts);
  void init(const Header& h, std::vector<Message>& parts);
  void gather(const Header& h, const std::vector<Message>& parts);
  void send_gather(int worker, uint64_t request, const std::vector<uint32_t>& ids);
  void freeze(const Header& h, const std::vector<Message>& parts);
  void thaw();
  void take_held();  // applies the held pushes below the cuts, answers the gathers they complete
  void apply_push(uint32_t id, int worker, Message grads, float lr);
  void sum(const Header& h, const std::vector<Message>& parts);
  void join(const Header& h);
  void give_rank(const RankRequest& q);
  void serve_rank_requests();
  void grow(size_t count);
  bool joining() const;
  int64_t frontier() const;
  int64_t held_from() const;
  int world_at(int64_t step) const;
  bool in_sum(size_t worker, int64_t round) const;
  bool counts(int worker, int64_t step) const override {
    const Peer& p = peers[size_t(worker)];
    return p.live && (p.pending ? step >= p.hold : p.started && step >= p.from);
  }
  bool active(int worker) const override {
    const Peer& p = peers[size_t(worker)];
    return p.live && p.started;
  }
  void apply(uint32_t id, const float* g, float lr) override;
  void prepare_write(ChunkState& cs);
  void reevaluate();
  void check_silent();
  void count(int64_t ServerStats::*field, int64_t by = 1) {
    std::lock_guard<std::mutex> l(stats_mu);
    stats.*field += by;
  }

  const Context& ctx;
  ServerOptions opt;
  std::string where;
  std::unique_ptr<Backend> be;
  Buffer scratch;
  std::atomic<bool> stop{false};
  mutable std::mutex stats_mu;
  ServerStats stats;

  std::unique_ptr<ConsistencyPolicy> policy;
  std::unordered_map<uint32_t, ChunkState> chunks;
  std::vector<Retired> retired;
  std::vector<Peer> peers;
  std::vector<Waiting> waiting;
  std::map<int64_t, SumRound> sums;
  std::deque<RankRequest> rank_requests;
  int freezer = -1;  // the worker gathering a consistent snapshot (-1: none)
  std::deque<Held> held;
  std::vector<CutGather> cut_gathers;
  JobShape shape;  // rank 0's Init's, for joiners
  // Last, so destroyed first: closing the socket and ending the context make ZeroMQ let go of
  // the chunk buffers replies borrow before those are freed.
  ZmqContext zctx;
  Socket router;
  Waker waker;
};

Server::Server(const Context& ctx, ServerOptions options)
    : impl_(std::make_unique<Impl>(ctx, std::move(options))) {
  Impl& s = *impl_;
  const ServerOptions& o = s.opt;
  const std::string w = s.where;
  STRAND_CHECK(o.token != 0, Usage, "a job token is needed (see random_token)", w);
  STRAND_CHECK(o.index >= 0 && o.index < o.map.servers, Usage,
               "server index " + std::to_string(o.index) + " outside the map's " +
                   std::to_string(o.map.servers) + " servers",
               w);
  STRAND_CHECK(o.workers >= 1, Usage, "at least one worker is needed", w);
  STRAND_CHECK(o.worker_timeout_s > 0 && o.check_interval_s > 0, Usage, "timeouts must be positive", w);
  const bool wildcard = o.bind.find("://*") != std::string::npos ||
                        o.bind.find("0.0.0.0") != std::string::npos ||
                        o.bind.find("[::]") != std::string::npos;
  STRAND_CHECK(
      !wildcard || o.allow_any_interface, Usage,
      "'" + o.bind + "' listens on every interface; give the host's own address (or allow it explicitly)", w);
  s.router.configure_data(size_t(o.map.max_chunk_floats()) * 4);
  // A worker that reconnects (new connection, same rank) takes over its identity's replies.
  s.router.set(ZMQ_ROUTER_HANDOVER, 1);
  endpoint_ = s.router.bind(o.bind);
  s.where = w + " at " + endpoint_;
  for (uint32_t id : o.map.chunks_of(o.index)) {
    Impl::ChunkState& cs = s.chunks[id];
    cs.id = id;
    cs.n = o.map.chunks[id].size();
    cs.params = s.be->alloc(size_t(cs.n) * 4);
  }
  s.scratch = s.be->alloc(size_t(o.map.max_chunk_floats()) * 4);
  s.peers.resize(size_t(o.workers));
  s.policy = make_policy(o.consistency, o.map, o.index, o.workers, s);
  ctx.log(s.where + ": " + std::to_string(s.chunks.size()) + " chunks, " +
          std::to_string(o.map.server_bytes[size_t(o.index)]) + " bytes, " + o.consistency.str() + ", " +
          std::to_string(o.workers) + " workers");
  thread_ = std::thread([this] { impl_->run(); });
}

Server::~Server() {
  impl_->stop = true;
  impl_->waker.notify();
  thread_.join();
}

ServerStats Server::stats() const {
  std::lock_guard<std::mutex> l(impl_->stats_mu);
  return impl_->stats;
}

void Server::Impl::run() {
  const size_t max_parts = 2 + kMaxChunksPerMessage * 3;
  std::vector<Message> parts;
  while (!stop) {
    zmq_pollitem_t items[2] = {{waker.socket().raw(), 0, ZMQ_POLLIN, 0}, {router.raw(), 0, ZMQ_POLLIN, 0}};
    if (zmq_poll(items, 2, long(opt.check_interval_s * 1000) + 1) < 0 && zmq_errno() != EINTR) {
      ctx.log(where + ": zmq_poll failed: " + zmq_strerror(zmq_errno()) + "; stopping");
      return;
    }
    if (items[0].revents & ZMQ_POLLIN) waker.drain();
    if (stop) break;
    try {
      bool truncated = false;
      while (router.recv(parts, max_parts, truncated)) {
        if (truncated || parts.size() < 2) {
          count(&ServerStats::malformed);
          continue;
        }
        handle(parts);
      }
      check_silent();
    } catch (const std::exception& e) {
      // A failure on one message (a send, an allocation) must not take the server down with it.
      ctx.log(where + ": " + e.what());
    }
  }
}

void Server::Impl::reply(int worker, Header h, std::vector<Message> frames) {
  send_to(peers[size_t(worker)].identity, std::move(h), std::move(frames));
}

void Server::Impl::send_to(const std::string& id, Header h, std::vector<Message> frames) {
  h.token = opt.token;
  h.sender = opt.index;
  const std::string bytes = encode_header(h);
  std::vector<Message> parts;
  parts.emplace_back(id.data(), id.size());
  parts.emplace_back(bytes.data(), bytes.size());
  for (auto& f : frames) parts.push_back(std::move(f));
  router.send(parts);
}

void Server::Impl::fail(int worker, uint64_t request, const Refusal& r) {
  Header h;
  h.type = MsgType::Fail;
  h.request = request;
  h.step = int64_t(r.kind());
  h.text = r.message().substr(0, kMaxTextBytes);
  reply(worker, std::move(h));
}

void Server::Impl::handle(std::vector<Message>& parts) {
  Header h;
  try {
    h = decode_header(parts[1].bytes());
  } catch (const Error&) {
    count(&ServerStats::malformed);
    return;
  }
  if (h.token != opt.token) {
    count(&ServerStats::bad_token);
    return;
  }
  const std::string identity(reinterpret_cast<const char*>(parts[0].data()), parts[0].size());
  // A joiner's heartbeats may come before its join reaches this server (and while it asks for
  // its rank, as sender -1).
  if (h.type == MsgType::Heartbeat && (h.sender < 0 || size_t(h.sender) >= peers.size())) return;
  if (h.type == MsgType::Join && h.sender == -1 && h.step == kJoinRank && opt.index == 0) {
    give_rank({identity, h.request});
    return;
  }
  if (h.sender < 0 || h.sender >= kMaxWorkers || h.type == MsgType::Reply || h.type == MsgType::Fail ||
      (size_t(h.sender) >= peers.size() && h.type != MsgType::Join)) {
    count(&ServerStats::malformed);
    return;
  }
  if (size_t(h.sender) >= peers.size()) grow(size_t(h.sender) + 1);
  Peer& p = peers[size_t(h.sender)];
  if (h.type == MsgType::Heartbeat && !p.started && !p.live) return;  // a joiner before its hold
  p.identity = identity;
  p.last_seen = Clock::now();
  p.seen = true;
  if (p.left && h.type == MsgType::Heartbeat) return;  // its heartbeats may outlast leave()
  if (h.type == MsgType::Join) {
    try {
      join(h);
    } catch (const Refusal& r) {
      count(&ServerStats::rejected);
      fail(h.sender, h.request, r);
    }
    return;
  }
  if (!p.live) {
    count(&ServerStats::rejected);
    fail(h.sender, h.request,
         Refusal(ErrorKind::Timeout,
                 "worker " + std::to_string(h.sender) + " was dropped from the job or left it"));
    return;
  }
  count(&ServerStats::heard);
  try {
    switch (h.type) {
      case MsgType::Heartbeat: {
        Header r;
        r.type = MsgType::Heartbeat;
        reply(h.sender, r);
        break;
      }
      case MsgType::Push:
        push(h, parts);
        break;
      case MsgType::Pull:
        pull(h, parts);
        break;
      case MsgType::Init:
        init(h, parts);
        break;
      case MsgType::Gather:
        gather(h, parts);
        break;
      case MsgType::Freeze:
        freeze(h, parts);
        break;
      case MsgType::Thaw: {
        if (freezer == h.sender) thaw();
        Header r;
        r.type = MsgType::Reply;
        r.request = h.request;
        reply(h.sender, r);
        break;
      }
      case MsgType::Sum:
        sum(h, parts);
        break;
      case MsgType::Leave: {
        p.live = false;
        p.left = true;
        count(&ServerStats::workers_left);
        ctx.log(where + ": worker " + std::to_string(h.sender) + " left");
        if (freezer == h.sender) thaw();
        Header r;
        r.type = MsgType::Reply;
        r.request = h.request;
        reply(h.sender, r);
        policy->members_changed();
        reevaluate();
        break;
      }
      default:
        break;
    }
  } catch (const Refusal& r) {
    count(&ServerStats::rejected);
    fail(h.sender, h.request, r);
  }
}

Server::Impl::ChunkState& Server::Impl::owned(uint32_t id) {
  auto it = chunks.find(id);
  if (it == chunks.end()) {
    count(&ServerStats::unknown_chunk);
    throw Refusal(ErrorKind::Usage,
                  "chunk " + std::to_string(id) + " is not held by server " + std::to_string(opt.index) +
                      " (do workers and servers use the same chunk size and server count?)");
  }
  return it->second;
}

// Payload frames follow identity and header.
static void check_frames(const std::vector<Message>& parts, size_t expected, const std::string& what) {
  if (parts.size() != expected + 2)
    throw Refusal(ErrorKind::Format, what + " carries " + std::to_string(parts.size() - 2) +
                                         " payload frames, expected " + std::to_string(expected));
}

static void check_size(const Message& m, int64_t n, uint32_t id) {
  if (m.size() != size_t(n) * 4)
    throw Refusal(ErrorKind::Format, "chunk " + std::to_string(id) + " holds " + std::to_string(n) +
                                         " floats here, the frame has " + std::to_string(m.size()) +
                                         " bytes");
}

void Server::Impl::prepare_write(ChunkState& cs) {
  // Replies send params and slots without a copy; they must not change under ZeroMQ. A reply
  // stuck on a dead connection for long hands the buffers over instead of blocking the server.
  if (cs.sending->wait_for(opt.worker_timeout_s)) return;
  Retired r{std::move(cs.params), std::move(cs.slots), std::move(cs.sending)};
  cs.params = be->alloc(size_t(cs.n) * 4);
  std::memcpy(cs.params.data(), r.params.data(), size_t(cs.n) * 4);
  for (const Buffer& b : r.slots) {
    cs.slots.push_back(be->alloc(size_t(cs.n) * 4));
    std::memcpy(cs.slots.back().data(), b.data(), size_t(cs.n) * 4);
  }
  cs.sending = std::make_shared<Release>();
  retired.push_back(std::move(r));
}

void Server::Impl::apply(uint32_t id, const float* g, float lr) {
  ChunkState& cs = chunks.at(id);
  if (reinterpret_cast<uintptr_t>(g) % alignof(float) != 0) {
    std::memcpy(scratch.data(), g, size_t(cs.n) * 4);
    g = scratch.f32();
  }
  prepare_write(cs);
  OptimizerConfig step = cs.optimizer;
  step.lr = lr;
  update_step(*be, step, ++cs.opt_step, cs.n, cs.params.f32(), g, cs.slots);
  count(&ServerStats::updates);
}

void Server::Impl::push(const Header& h, std::vector<Message>& parts) {
  check_frames(parts, h.chunks.size(), "a push of " + std::to_string(h.chunks.size()) + " chunks");
  if (!std::isfinite(h.lr) || h.lr < 0)
    throw Refusal(ErrorKind::Usage, "learning rate " + std::to_string(h.lr));
  std::vector<uint32_t> ids = h.chunks;
  std::sort(ids.begin(), ids.end());
  if (std::adjacent_find(ids.begin(), ids.end()) != ids.end())
    throw Refusal(ErrorKind::Format, "a push names the same chunk twice");
  for (size_t i = 0; i < h.chunks.size(); ++i) {
    ChunkState& cs = owned(h.chunks[i]);
    check_size(parts[i + 2], cs.n, cs.id);
    if (!cs.initialized) throw Refusal(ErrorKind::Usage, "push before the parameters were initialized");
    policy->check_push(cs.id, h.sender, h.step);
  }
  for (size_t i = 0; i < h.chunks.size(); ++i) {
    if (freezer >= 0)
      held.push_back({h.chunks[i], h.sender, std::move(parts[i + 2]), h.lr});
    else
      apply_push(h.chunks[i], h.sender, std::move(parts[i + 2]), h.lr);
  }
  Header r;
  r.type = MsgType::Reply;
  r.request = h.request;
  reply(h.sender, r);
  if (freezer >= 0) take_held();
  reevaluate();
}

void Server::Impl::apply_push(uint32_t id, int worker, Message grads, float lr) {
  const int64_t ahead = policy->push(id, worker, std::move(grads), lr);
  if (ahead > 0) {
    std::lock_guard<std::mutex> l(stats_mu);
    stats.max_staleness = std::max(stats.max_staleness, ahead);
  }
}

// A consistent snapshot in async and ssp modes, where a plain gather would read each server
// after a different set of pushes: pushes are held from the freeze on, the gatherer takes the
// most pushes of each worker any server applied as that worker's cut, and each server applies
// the held ones up to the cuts (the rest of the steps in flight) before it answers.
void Server::Impl::freeze(const Header& h, const std::vector<Message>& parts) {
  check_frames(parts, 0, "a freeze");
  std::vector<int64_t> applied;
  if (opt.consistency.mode != Consistency::Sync) {  // sync rounds are one step on every chunk
    if (freezer >= 0 && freezer != h.sender)
      throw Refusal(ErrorKind::Usage, "worker " + std::to_string(freezer) + " is taking a snapshot already");
    freezer = h.sender;
    applied.assign(peers.size(), 0);
    for (const auto& [id, cs] : chunks)
      for (size_t w = 0; w < peers.size(); ++w) applied[w] = std::max(applied[w], *policy->clock(id, int(w)));
  }
  Header r;
  r.type = MsgType::Reply;
  r.request = h.request;
  std::vector<Message> frames;
  frames.emplace_back(applied.data(), applied.size() * sizeof(int64_t));
  reply(h.sender, r, std::move(frames));
}

void Server::Impl::thaw() {
  freezer = -1;
  cut_gathers.clear();
  while (!held.empty()) {
    Held x = std::move(held.front());
    held.pop_front();
    apply_push(x.id, x.worker, std::move(x.grads), x.lr);
  }
  reevaluate();
}

void Server::Impl::take_held() {
  for (CutGather& g : cut_gathers) {
    for (auto it = held.begin(); it != held.end();) {
      const size_t w = size_t(it->worker);
      if (w < g.cut.size() && *policy->clock(it->id, it->worker) < g.cut[w]) {
        apply_push(it->id, it->worker, std::move(it->grads), it->lr);
        it = held.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (size_t i = 0; i < cut_gathers.size();) {
    const CutGather& g = cut_gathers[i];
    bool ready = true;
    for (uint32_t id : g.chunks)
      for (size_t w = 0; w < g.cut.size() && w < peers.size(); ++w)
        ready = ready && (!active(int(w)) || *policy->clock(id, int(w)) >= g.cut[w]);
    if (!ready) {
      ++i;
      continue;
    }
    const CutGather done = g;
    cut_gathers.erase(cut_gathers.begin() + ptrdiff_t(i));
    send_gather(done.worker, done.request, done.chunks);
  }
}

void Server::Impl::pull(const Header& h, const std::vector<Message>& parts) {
  check_frames(parts, 0, "a pull");
  for (uint32_t id : h.chunks) owned(id);
  waiting.push_back({h.sender, h.request, h.chunks, h.step});
  reevaluate();
}

void Server::Impl::init(const Header& h, std::vector<Message>& parts) {
  if (!h.optimizer) throw Refusal(ErrorKind::Usage, "init without an optimizer");
  const OptimizerConfig& oc = *h.optimizer;
  for (float x : {oc.momentum, oc.beta1, oc.beta2, oc.eps})
    if (!std::isfinite(x)) throw Refusal(ErrorKind::Usage, "non-finite optimizer hyperparameter");
  if (h.step < 0) throw Refusal(ErrorKind::Usage, "negative optimizer step");
  const size_t slots = slot_count(oc.kind);
  check_frames(parts, h.chunks.size() * (1 + slots),
               "an init of " + std::to_string(h.chunks.size()) + " chunks");
  for (size_t i = 0; i < h.chunks.size(); ++i) {
    const ChunkState& cs = owned(h.chunks[i]);
    for (size_t k = 0; k <= slots; ++k) check_size(parts[2 + i * (1 + slots) + k], cs.n, cs.id);
  }
  shape = h.job;
  for (size_t i = 0; i < h.chunks.size(); ++i) {
    ChunkState& cs = chunks.at(h.chunks[i]);
    prepare_write(cs);
    cs.optimizer = oc;
    std::memcpy(cs.params.data(), parts[2 + i * (1 + slots)].data(), size_t(cs.n) * 4);
    cs.slots.resize(slots);
    for (size_t k = 0; k < slots; ++k) {
      if (!cs.slots[k].data()) cs.slots[k] = be->alloc(size_t(cs.n) * 4);
      std::memcpy(cs.slots[k].data(), parts[2 + i * (1 + slots) + 1 + k].data(), size_t(cs.n) * 4);
    }
    cs.opt_step = h.step;
    policy->reset(cs.id, h.job.step);
    cs.initialized = true;
  }
  Header r;
  r.type = MsgType::Reply;
  r.request = h.request;
  reply(h.sender, r);
  reevaluate();
  serve_rank_requests();
}

void Server::Impl::gather(const Header& h, const std::vector<Message>& parts) {
  if (parts.size() != 3) check_frames(parts, 0, "a gather");
  for (uint32_t id : h.chunks) {
    const ChunkState& cs = owned(id);
    if (!cs.initialized) throw Refusal(ErrorKind::Usage, "gather before the parameters were initialized");
    if (cs.optimizer != chunks.at(h.chunks.front()).optimizer)
      throw Refusal(ErrorKind::Usage, "a gather of chunks initialized with different optimizers");
  }
  if (parts.size() == 2) {
    send_gather(h.sender, h.request, h.chunks);
    return;
  }
  const Message& cuts = parts[2];
  if (freezer != h.sender)
    throw Refusal(ErrorKind::Usage, "a gather at cuts from a worker that did not freeze this server");
  if (cuts.size() % sizeof(int64_t) != 0 || cuts.size() / sizeof(int64_t) > size_t(kMaxWorkers))
    throw Refusal(ErrorKind::Format, "a gather's cuts of " + std::to_string(cuts.size()) + " bytes");
  CutGather g{h.sender, h.request, h.chunks, std::vector<int64_t>(cuts.size() / sizeof(int64_t))};
  std::memcpy(g.cut.data(), cuts.data(), cuts.size());
  cut_gathers.push_back(std::move(g));
  take_held();
}

void Server::Impl::send_gather(int worker, uint64_t request, const std::vector<uint32_t>& ids) {
  Header r;
  r.type = MsgType::Reply;
  r.request = request;
  r.chunks = ids;
  r.step = std::numeric_limits<int64_t>::max();
  if (!ids.empty()) r.optimizer = chunks.at(ids.front()).optimizer;
  std::vector<Message> frames;
  for (uint32_t id : ids) {
    ChunkState& cs = chunks.at(id);
    r.step = std::min(r.step, cs.opt_step);
    frames.push_back(Message::borrow(cs.params.data(), size_t(cs.n) * 4, cs.sending));
    for (const Buffer& b : cs.slots)
      frames.push_back(Message::borrow(b.data(), size_t(cs.n) * 4, cs.sending));
  }
  if (ids.empty()) r.step = 0;
  reply(worker, r, std::move(frames));
}

void Server::Impl::sum(const Header& h, const std::vector<Message>& parts) {
  check_frames(parts, 0, "a sum");
  SumRound& round = sums[h.step];
  if (round.has.size() < peers.size()) {
    round.has.resize(peers.size(), false);
    round.values.resize(peers.size(), 0);
    round.requests.resize(peers.size(), 0);
  }
  const size_t w = size_t(h.sender);
  if (round.has[w]) throw Refusal(ErrorKind::Usage, "second value for sum round " + std::to_string(h.step));
  round.has[w] = true;
  round.values[w] = h.value;
  round.requests[w] = h.request;
  reevaluate();
}

// Completes whatever a new message, a leaving or a dropped worker has made ready.
void Server::Impl::reevaluate() {
  for (auto it = sums.begin(); it != sums.end();) {
    const SumRound& r = it->second;
    bool complete = false;
    double total = 0;
    for (size_t w = 0; w < peers.size(); ++w) {
      const bool has = w < r.has.size() && r.has[w];
      if (has) total += r.values[w], complete = true;
      if (in_sum(w, it->first) && !has) {
        complete = false;
        break;
      }
    }
    if (!complete) {
      ++it;
      continue;
    }
    for (size_t w = 0; w < r.has.size(); ++w) {
      if (!r.has[w] || !peers[w].live) continue;
      Header h;
      h.type = MsgType::Reply;
      h.request = r.requests[w];
      h.value = total;
      reply(int(w), h);
    }
    it = sums.erase(it);
  }
  // While a worker joins, no pull reads past its hold: a pull's reply says how many workers
  // train at its step, and from the hold on that depends on where the joiner starts.
  const int64_t held = held_from();
  for (size_t i = 0; i < waiting.size();) {
    const Waiting& q = waiting[i];
    if (!peers[size_t(q.worker)].live) {
      waiting.erase(waiting.begin() + ptrdiff_t(i));
      continue;
    }
    bool ready = q.clock < held;
    // While a snapshot holds pushes, ssp's bound is off: a worker whose pulls waited for held
    // pushes could not send the pushes the snapshot waits for.
    for (uint32_t id : q.chunks)
      ready = ready && chunks.at(id).initialized && (freezer >= 0 || policy->readable(id, q.clock));
    if (!ready) {
      ++i;
      continue;
    }
    Header r;
    r.type = MsgType::Reply;
    r.request = q.request;
    r.chunks = q.chunks;
    r.job.workers = world_at(q.clock);
    std::vector<Message> frames;
    for (uint32_t id : q.chunks) {
      ChunkState& cs = chunks.at(id);
      frames.push_back(Message::borrow(cs.params.data(), size_t(cs.n) * 4, cs.sending));
    }
    const int worker = q.worker;
    waiting.erase(waiting.begin() + ptrdiff_t(i));
    reply(worker, r, std::move(frames));
  }
}

void Server::Impl::check_silent() {
  const auto now = Clock::now();
  bool changed = false;
  for (size_t w = 0; w < peers.size(); ++w) {
    Peer& p = peers[w];
    const double quiet = std::chrono::duration<double>(now - p.last_seen).count();
    if (!p.live || !p.seen || quiet <= opt.worker_timeout_s) continue;
    p.live = false;
    changed = true;
    if (!p.started) {
      p.pending = false;
      ctx.log(where + ": worker " + std::to_string(w) + " sent nothing for " + secs(quiet) +
              " while joining; its join is called off");
      continue;
    }
    count(&ServerStats::workers_dropped);
    if (freezer == int(w)) thaw();  // its snapshot is lost with it: the others go on
    int live = 0;
    for (const Peer& q : peers) live += q.live;
    ctx.log(where + ": worker " + std::to_string(w) + " sent nothing for " + secs(quiet) +
            "; dropped, the job goes on with " + std::to_string(live) + " workers");
  }
  if (changed) {
    policy->members_changed();
    if (freezer >= 0) take_held();  // a cut no longer waits for a dropped worker
    reevaluate();
    serve_rank_requests();
  }
}

// Joins, one at a time (server 0 gives the next rank once the join before it has started or
// was called off): the rank, then every server's hold (its frontier; its rounds and pulls
// from there wait), then the start at the latest hold, on every server.
bool Server::Impl::joining() const {
  for (const Peer& p : peers)
    if (p.live && !p.started) return true;
  return false;
}

void Server::Impl::grow(size_t count) {
  while (peers.size() < count) {
    Peer p;
    p.live = p.started = false;
    peers.push_back(p);
  }
  policy->grow(int(count));
}

int64_t Server::Impl::frontier() const {
  int64_t f = policy->frontier();
  for (const Peer& p : peers)
    if (p.started) f = std::max(f, p.from);  // joiners start in the order of their ranks
  return f;
}

int64_t Server::Impl::held_from() const {
  int64_t h = std::numeric_limits<int64_t>::max();
  for (const Peer& p : peers)
    if (p.live && p.pending) h = std::min(h, p.hold);
  return h;
}

int Server::Impl::world_at(int64_t step) const {
  int n = opt.workers;
  for (size_t w = size_t(opt.workers); w < peers.size(); ++w) n += peers[w].started && peers[w].from <= step;
  return n;
}

// A sum at clock c is a worker's after c steps: a joiner's first is after its first step.
bool Server::Impl::in_sum(size_t w, int64_t round) const {
  const Peer& p = peers[w];
  return p.live && p.started && (w < size_t(opt.workers) || round / kSumsPerStep > p.from);
}

void Server::Impl::give_rank(const RankRequest& q) {
  Header r;
  r.request = q.request;
  if (shape.workers == 0 || joining()) {  // the job has not started yet, or another joins
    rank_requests.push_back(q);
    return;
  }
  size_t rank = size_t(opt.workers);
  while (rank < peers.size() && peers[rank].started) ++rank;
  if (rank >= size_t(kMaxWorkers)) {
    r.type = MsgType::Fail;
    r.step = int64_t(ErrorKind::Usage);
    r.text = "the job has " + std::to_string(kMaxWorkers) + " workers, the most it can";
    send_to(q.identity, r);
    return;
  }
  if (rank >= peers.size()) grow(rank + 1);
  Peer& p = peers[rank];
  p = Peer{.identity = q.identity, .last_seen = Clock::now(), .seen = true, .started = false};
  ctx.log(where + ": a worker asks to join; it is worker " + std::to_string(rank));
  r.type = MsgType::Reply;
  r.step = int64_t(rank);
  r.job = shape;
  reply(int(rank), r);
}

void Server::Impl::join(const Header& h) {
  const int w = h.sender;
  Peer& p = peers[size_t(w)];
  if (w < opt.workers)
    throw Refusal(ErrorKind::Usage, "worker " + std::to_string(w) + " was in the job from its start");
  if (p.started) throw Refusal(ErrorKind::Usage, "worker " + std::to_string(w) + " has joined already");
  Header r;
  r.type = MsgType::Reply;
  r.request = h.request;
  if (h.step == kJoinHold) {
    p.live = true;
    p.left = false;
    p.pending = true;
    p.hold = frontier();
    r.step = p.hold;
    reply(w, r);
    return;
  }
  if (h.step < 0 || !p.pending || !p.live)
    throw Refusal(ErrorKind::Usage, "a start of worker " + std::to_string(w) +
                                        " that this server does not hold" +
                                        " (it was silent for too long, or its join skipped the hold)");
  if (h.step < p.hold)
    throw Refusal(ErrorKind::Usage, "worker " + std::to_string(w) + " cannot start at step " +
                                        std::to_string(h.step) + ": this server is past it (at " +
                                        std::to_string(p.hold) + ")");
  p.pending = false;
  p.started = true;
  p.from = h.step;
  policy->joined(w, h.step);
  count(&ServerStats::joined);
  r.job.workers = world_at(h.step);
  ctx.log(where + ": worker " + std::to_string(w) + " joined; from step " + std::to_string(h.step) + " on, " +
          std::to_string(r.job.workers) + " workers");
  reply(w, r);
  policy->members_changed();
  reevaluate();
  serve_rank_requests();
}

void Server::Impl::serve_rank_requests() {
  while (shape.workers > 0 && !joining() && !rank_requests.empty()) {
    const RankRequest q = rank_requests.front();
    rank_requests.pop_front();
    give_rank(q);
  }
}

}  // namespace strand::ps
