#include <strand/ps/worker.hpp>

#include <algorithm>
#include <cstring>

namespace strand::ps {

namespace {

std::string identity(const Context& ctx, int rank) {
  return ctx.where().empty() ? "PS worker " + std::to_string(rank) : ctx.where();
}

std::vector<std::string> checked(const WorkerOptions& o, const std::string& where) {
  STRAND_CHECK(o.token != 0, Usage, "a job token is needed (see random_token)", where);
  STRAND_CHECK(o.workers >= 1 && o.rank >= 0 && o.rank < o.workers, Usage,
               "rank " + std::to_string(o.rank) + " outside 0.." + std::to_string(o.workers - 1), where);
  STRAND_CHECK(int(o.servers.size()) == o.map.servers, Usage,
               std::to_string(o.servers.size()) + " server endpoints for a map over " +
                   std::to_string(o.map.servers) + " servers",
               where);
  return o.servers;
}

std::span<const std::byte> bytes(const float* p, int64_t n) {
  return {reinterpret_cast<const std::byte*>(p), size_t(n) * 4};
}

// Copies reply frame i into `dst` after checking its size (a reply is still untrusted input).
void take(std::vector<Message>& frames, size_t i, float* dst, int64_t n) {
  STRAND_CHECK(i < frames.size() && frames[i].size() == size_t(n) * 4, Format,
               "reply frame " + std::to_string(i) + " does not hold " + std::to_string(n) + " floats",
               "PS reply");
  std::memcpy(dst, frames[i].data(), size_t(n) * 4);
}

}  // namespace

Worker::Worker(const Context& ctx, WorkerOptions options)
    : where_(identity(ctx, options.rank)),
      opt_(std::move(options)),
      dispatch_(
          checked(opt_, where_), opt_.token, opt_.rank,
          [&] {
            DispatchOptions d = opt_.dispatch;
            d.max_frame_bytes = size_t(opt_.map.max_chunk_floats()) * 4;
            return d;
          }(),
          where_) {
  workers_ = opt_.workers;
}

Joining Worker::request_rank(const Context& ctx, const WorkerOptions& options) {
  const std::string where = ctx.where().empty() ? "PS worker joining" : ctx.where();
  STRAND_CHECK(options.token != 0 && !options.servers.empty(), Usage,
               "a job token and the servers are needed to join", where);
  // Server 0 alone: it gives the rank (and answers no heartbeat of a worker without one).
  Dispatcher d({options.servers.front()}, options.token, -1, options.dispatch, where);
  Header h;
  h.type = MsgType::Join;
  h.step = kJoinRank;
  Joining out;
  d.call(0, std::move(h), {}, [&out](const Header& r, std::vector<Message>&) {
     STRAND_CHECK(r.step >= 0 && r.step < kMaxWorkers && r.job.workers >= 1 && r.job.global_batch >= 1,
                  Format, "a rank reply without a rank or the job's shape", "PS reply");
     out = {int(r.step), r.job};
   }).wait();
  return out;
}

int64_t Worker::join() {
  const int n = opt_.map.servers;
  std::vector<int64_t> holds(size_t(n), 0);
  std::vector<Ticket> tickets;
  for (int s = 0; s < n; ++s) {
    Header h;
    h.type = MsgType::Join;
    h.step = kJoinHold;
    int64_t* hold = &holds[size_t(s)];
    tickets.push_back(dispatch_.call(s, std::move(h), {},
                                     [hold](const Header& r, std::vector<Message>&) { *hold = r.step; }));
  }
  for (auto& t : tickets) t.wait();
  tickets.clear();
  const int64_t start = *std::max_element(holds.begin(), holds.end());
  std::vector<int> workers(size_t(n), 0);
  for (int s = 0; s < n; ++s) {
    Header h;
    h.type = MsgType::Join;
    h.step = start;
    int* w = &workers[size_t(s)];
    tickets.push_back(dispatch_.call(s, std::move(h), {},
                                     [w](const Header& r, std::vector<Message>&) { *w = r.job.workers; }));
  }
  for (auto& t : tickets) t.wait();
  for (int w : workers)
    STRAND_CHECK(w == workers.front() && w > opt_.rank, Internal,
                 "the servers disagree on the workers at step " + std::to_string(start), where_);
  workers_ = workers.front();
  return start;
}

Ticket Worker::push(uint32_t id, const float* grads, int64_t clock, float lr) {
  const Chunk& c = opt_.map.chunks.at(id);
  Header h;
  h.type = MsgType::Push;
  h.step = clock;
  h.lr = lr;
  h.chunks = {id};
  return dispatch_.call(c.server, std::move(h), {bytes(grads, c.size())});
}

Ticket Worker::pull(uint32_t id, float* params, int64_t clock) {
  const Chunk& c = opt_.map.chunks.at(id);
  Header h;
  h.type = MsgType::Pull;
  h.step = clock;
  h.chunks = {id};
  const int64_t n = c.size();
  return dispatch_.call(c.server, std::move(h), {},
                        [this, params, n](const Header& r, std::vector<Message>& frames) {
                          take(frames, 0, params, n);
                          seen_workers(r.job.workers);
                        });
}

std::vector<Worker::Batch> Worker::batches() const {
  std::vector<Batch> out;
  for (int s = 0; s < opt_.map.servers; ++s) {
    const std::vector<uint32_t> ids = opt_.map.chunks_of(s);
    for (size_t i = 0; i < ids.size(); i += kMaxChunksPerMessage)
      out.push_back({s, std::vector<uint32_t>(
                            ids.begin() + ptrdiff_t(i),
                            ids.begin() + ptrdiff_t(std::min(ids.size(), i + kMaxChunksPerMessage)))});
  }
  return out;
}

void Worker::pull_all(float* flat, int64_t clock) {
  std::vector<Ticket> tickets;
  const ShardMap* map = &opt_.map;
  for (Batch& b : batches()) {
    Header h;
    h.type = MsgType::Pull;
    h.step = clock;
    h.chunks = b.chunks;
    tickets.push_back(
        dispatch_.call(b.server, std::move(h), {},
                       [=, this, ids = std::move(b.chunks)](const Header& r, std::vector<Message>& frames) {
                         for (size_t i = 0; i < ids.size(); ++i) {
                           const Chunk& c = map->chunks[ids[i]];
                           take(frames, i, flat + c.begin, c.size());
                         }
                         seen_workers(r.job.workers);
                       }));
  }
  for (auto& t : tickets) t.wait();
}

void Worker::init(const float* flat, const OptimizerConfig& config, const OptimizerState& state,
                  const JobShape& job) {
  STRAND_CHECK(state.kind == config.kind && state.slots.size() == slot_count(config.kind), Usage,
               "optimizer state of kind '" + std::string(to_string(state.kind)) +
                   "' does not fit optimizer '" + std::string(to_string(config.kind)) + "'",
               where_);
  for (const auto& s : state.slots)
    STRAND_CHECK(int64_t(s.size()) == opt_.map.floats, Usage, "optimizer state of the wrong size", where_);
  std::vector<Ticket> tickets;
  for (Batch& b : batches()) {
    Header h;
    h.type = MsgType::Init;
    h.step = state.step;
    h.optimizer = config;
    h.job = job;
    std::vector<std::span<const std::byte>> payloads;
    for (uint32_t id : b.chunks) {
      const Chunk& c = opt_.map.chunks[id];
      payloads.push_back(bytes(flat + c.begin, c.size()));
      for (const auto& slot : state.slots) payloads.push_back(bytes(slot.data() + c.begin, c.size()));
    }
    h.chunks = std::move(b.chunks);
    tickets.push_back(dispatch_.call(b.server, std::move(h), std::move(payloads)));
  }
  for (auto& t : tickets) t.wait();
}

void Worker::gather(float* flat, OptimizerState& state) { gather_at(flat, state, nullptr); }

void Worker::snapshot(float* flat, OptimizerState& state) {
  std::vector<std::vector<int64_t>> applied(size_t(opt_.map.servers));
  std::vector<Ticket> tickets;
  for (int s = 0; s < opt_.map.servers; ++s) {
    Header h;
    h.type = MsgType::Freeze;
    std::vector<int64_t>* out = &applied[size_t(s)];
    tickets.push_back(dispatch_.call(s, std::move(h), {}, [out](const Header&, std::vector<Message>& frames) {
      STRAND_CHECK(frames.size() == 1 && frames[0].size() % sizeof(int64_t) == 0 &&
                       frames[0].size() <= size_t(kMaxWorkers) * sizeof(int64_t),
                   Format, "a freeze reply without the pushes applied", "PS reply");
      out->resize(frames[0].size() / sizeof(int64_t));
      std::memcpy(out->data(), frames[0].data(), frames[0].size());
    }));
  }
  try {
    for (auto& t : tickets) t.wait();
  } catch (...) {
    thaw();
    throw;
  }
  std::vector<int64_t> cut;
  for (const std::vector<int64_t>& a : applied) {
    if (a.size() > cut.size()) cut.resize(a.size(), 0);
    for (size_t w = 0; w < a.size(); ++w) cut[w] = std::max(cut[w], a[w]);
  }
  if (cut.empty()) {  // sync: nothing was frozen
    gather_at(flat, state, nullptr);
    return;
  }
  try {
    gather_at(flat, state, &cut);
  } catch (...) {
    thaw();
    throw;
  }
  thaw();
}

void Worker::thaw() {
  std::vector<Ticket> tickets;
  for (int s = 0; s < opt_.map.servers; ++s) {
    Header h;
    h.type = MsgType::Thaw;
    tickets.push_back(dispatch_.call(s, std::move(h)));
  }
  for (auto& t : tickets) t.wait();
}

void Worker::gather_at(float* flat, OptimizerState& state, const std::vector<int64_t>* cut) {
  const std::vector<Batch> all = batches();
  std::vector<Ticket> tickets;
  std::vector<Header> replies(all.size());
  // Both slots' buffers; those the servers' optimizer does not have are dropped at the end.
  std::vector<std::vector<float>> slots(2, std::vector<float>(size_t(opt_.map.floats)));
  const ShardMap* map = &opt_.map;
  for (size_t b = 0; b < all.size(); ++b) {
    Header h;
    h.type = MsgType::Gather;
    h.chunks = all[b].chunks;
    Header* out = &replies[b];
    const std::vector<uint32_t>* ids = &all[b].chunks;
    std::vector<std::span<const std::byte>> payload;
    if (cut) payload.push_back(std::as_bytes(std::span<const int64_t>(*cut)));
    tickets.push_back(
        dispatch_.call(all[b].server, std::move(h), std::move(payload),
                       [=, &slots](const Header& r, std::vector<Message>& frames) {
                         STRAND_CHECK(r.optimizer, Format, "gather reply without the optimizer", "PS reply");
                         const size_t k = slot_count(r.optimizer->kind);
                         STRAND_CHECK(frames.size() == ids->size() * (1 + k), Format,
                                      "gather reply with the wrong number of frames", "PS reply");
                         for (size_t i = 0; i < ids->size(); ++i) {
                           const Chunk& c = map->chunks[(*ids)[i]];
                           take(frames, i * (1 + k), flat + c.begin, c.size());
                           for (size_t j = 0; j < k; ++j)
                             take(frames, i * (1 + k) + 1 + j, slots[j].data() + c.begin, c.size());
                         }
                         *out = r;
                       }));
  }
  for (auto& t : tickets) t.wait();
  const OptimizerKind kind = replies.front().optimizer->kind;
  state.kind = kind;
  state.step = replies.front().step;
  for (const Header& r : replies) {
    STRAND_CHECK(r.optimizer->kind == kind, Format, "servers run different optimizers", where_);
    state.step = std::min(state.step, r.step);
  }
  slots.resize(slot_count(kind));
  state.slots = std::move(slots);
}

double Worker::sum(double value, int64_t clock) {
  if (clock != sum_clock_) sum_clock_ = clock, sum_number_ = 0;
  STRAND_CHECK(sum_number_ < kSumsPerStep, Usage,
               "more than " + std::to_string(kSumsPerStep) + " sums at one step", where_);
  Header h;
  h.type = MsgType::Sum;
  h.step = clock * kSumsPerStep + sum_number_++;
  h.value = value;
  double total = 0;
  dispatch_.call(0, std::move(h), {}, [&total](const Header& r, std::vector<Message>&) { total = r.value; })
      .wait();
  return total;
}

void Worker::leave() {
  std::vector<Ticket> tickets;
  for (int s = 0; s < opt_.map.servers; ++s) {
    Header h;
    h.type = MsgType::Leave;
    tickets.push_back(dispatch_.call(s, std::move(h)));
  }
  for (auto& t : tickets) t.wait();
}

}  // namespace strand::ps
