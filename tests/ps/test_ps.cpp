// Parameter server: header codec, shard map, exact push/pull round trips, sync training equal
// to one process with the global batch, async and ssp convergence, the staleness bound, a
// server fed hostile frames, a dropped worker, a dead server, checkpoints onto another server
// count, inside an epoch onto any number of workers, and in the local job's form. Everything runs in this
// process on 127.0.0.1 (servers and workers on threads).
#include <gtest/gtest.h>

#include <unistd.h>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include <strand/core/error.hpp>
#include <strand/core/layers.hpp>
#include <strand/io/model_file.hpp>
#include <strand/ps/server.hpp>
#include <strand/ps/strategy.hpp>
#include <strand/ps/transport.hpp>
#include <strand/ps/worker.hpp>
#include <strand/train/trainer.hpp>
#include "tests/core/staged_backend.hpp"
#include "tests/train/tiny_task.hpp"

namespace strand::ps {
namespace {

using test::banded;
using test::tiny_cnn;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kToken = 0x5eedf00dcafe1234ULL;

Context quiet_context(int rank = 0, int world = 1) {
  return Context(make_cpu_backend(1), {rank, world, "test-host"}, [](std::string_view) {});
}

// tiny_cnn's parameter count (the servers' shard map is built from it).
int64_t tiny_cnn_params() {
  Context probe = quiet_context();
  return Model(probe.backend(), tiny_cnn()).param_count();
}

std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// ---------------------------------------------------------------- header and map

TEST(Header, RoundTripsEveryField) {
  Header h;
  h.token = kToken;
  h.type = MsgType::Init;
  h.sender = 3;
  h.request = 99;
  h.step = -7;
  h.lr = 0.25f;
  h.value = 1.5;
  h.optimizer = OptimizerConfig{
      .kind = OptimizerKind::Adam, .momentum = 0.9f, .beta1 = 0.8f, .beta2 = 0.99f, .eps = 1e-7f};
  h.chunks = {0, 5, 4000000000u};
  h.text = "why";
  const Header d = decode_header(as_bytes(encode_header(h)));
  EXPECT_EQ(d.token, h.token);
  EXPECT_EQ(d.type, h.type);
  EXPECT_EQ(d.sender, 3);
  EXPECT_EQ(d.request, 99u);
  EXPECT_EQ(d.step, -7);
  EXPECT_EQ(d.lr, 0.25f);
  EXPECT_EQ(d.value, 1.5);
  ASSERT_TRUE(d.optimizer);
  EXPECT_EQ(d.optimizer->kind, OptimizerKind::Adam);
  EXPECT_EQ(d.optimizer->momentum, 0.9f);
  EXPECT_EQ(d.optimizer->beta1, 0.8f);
  EXPECT_EQ(d.optimizer->beta2, 0.99f);
  EXPECT_EQ(d.optimizer->eps, 1e-7f);
  EXPECT_EQ(d.chunks, h.chunks);
  EXPECT_EQ(d.text, "why");
}

TEST(Header, EveryBrokenFormIsAFormatError) {
  Header h;
  h.token = kToken;
  h.chunks = {1, 2, 3};
  const std::string good = encode_header(h);
  for (size_t n = 0; n < good.size(); ++n) {
    try {
      decode_header(as_bytes(good.substr(0, n)));
      ADD_FAILURE() << "a header cut to " << n << " bytes decoded";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Format);
    }
  }
  EXPECT_THROW(decode_header(as_bytes(good + "x")), Error);  // trailing bytes
  std::string bad = good;
  bad[1] ^= 0x40;  // magic (after cereal's endianness byte)
  EXPECT_THROW(decode_header(as_bytes(bad)), Error);
  EXPECT_THROW(decode_header(as_bytes(std::string(kMaxHeaderBytes + 1, '\0'))), Error);
  Header many;
  many.chunks.resize(kMaxChunksPerMessage + 1);
  try {
    decode_header(as_bytes(encode_header(many)));
    ADD_FAILURE() << "too many chunk ids decoded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("chunk ids"), std::string::npos) << e.what();
  }
  // A claimed count far beyond the frame must not allocate it: the count check comes first.
  std::string huge = encode_header(h);
  const size_t count_at = huge.size() - 4 * 3 - 4 - 4;  // chunks' count, then 3 ids, text size
  std::memset(&huge[count_at], 0x7f, 4);
  EXPECT_THROW(decode_header(as_bytes(huge)), Error);
}

TEST(Token, ParsesItsOwnTextAndRejectsOthers) {
  const uint64_t t = random_token();
  EXPECT_NE(t, 0u);
  EXPECT_EQ(parse_token(token_to_string(t)), t);
  EXPECT_THROW(parse_token("xyz"), Error);
  EXPECT_THROW(parse_token("0000000000000000"), Error);
}

TEST(ShardMap, GreedyBalancedAndDeterministic) {
  const ShardMap m = ShardMap::build(1000, 64 * 4, 3);  // 15 chunks of 64 floats + one of 40
  ASSERT_EQ(m.chunks.size(), 16u);
  EXPECT_EQ(m.chunks.back().size(), 1000 - 15 * 64);
  int64_t covered = 0;
  for (const Chunk& c : m.chunks) {
    EXPECT_EQ(c.begin, covered);
    covered = c.end;
  }
  EXPECT_EQ(covered, 1000);
  const auto [lo, hi] = std::minmax_element(m.server_bytes.begin(), m.server_bytes.end());
  EXPECT_LE(*hi - *lo, 64 * 4) << m.describe();
  const ShardMap again = ShardMap::build(1000, 64 * 4, 3);
  for (size_t i = 0; i < m.chunks.size(); ++i) EXPECT_EQ(m.chunks[i].server, again.chunks[i].server);
  EXPECT_NE(m.describe().find("server 2"), std::string::npos);
  EXPECT_THROW(ShardMap::build(1000, 6, 2), Error);
  EXPECT_THROW(ShardMap::build(0, 64, 2), Error);
  EXPECT_THROW(ShardMap::build(10, 64, 0), Error);
}

TEST(Consistency, ParsesModes) {
  EXPECT_EQ(Consistency::parse("sync").mode, Consistency::Sync);
  EXPECT_EQ(Consistency::parse("async").mode, Consistency::Async);
  EXPECT_EQ(Consistency::parse("ssp:3").staleness, 3);
  EXPECT_EQ(Consistency::parse("ssp:3").str(), "ssp:3");
  EXPECT_THROW(Consistency::parse("ssp:"), Error);
  EXPECT_THROW(Consistency::parse("ssp:-1"), Error);
  EXPECT_THROW(Consistency::parse("bsp"), Error);
}

// ---------------------------------------------------------------- a cluster in one process

struct Cluster {
  Cluster(int servers, int workers, int64_t floats, int64_t chunk_bytes, const std::string& mode,
          double worker_timeout_s = 10)
      : map(ShardMap::build(floats, chunk_bytes, servers)) {
    for (int i = 0; i < servers; ++i) {
      contexts.push_back(std::make_unique<Context>(quiet_context()));
      ServerOptions o;
      o.token = kToken;
      o.index = i;
      o.map = map;
      o.workers = workers;
      o.consistency = Consistency::parse(mode);
      o.worker_timeout_s = worker_timeout_s;
      o.check_interval_s = 0.02;
      this->servers.push_back(std::make_unique<Server>(*contexts.back(), o));
      endpoints.push_back(this->servers.back()->endpoint());
    }
  }
  PsConfig config(int rank, int workers, int64_t chunk_bytes) const {
    PsConfig c;
    c.servers = endpoints;
    c.token = kToken;
    c.rank = rank;
    c.workers = workers;
    c.chunk_bytes = chunk_bytes;
    c.dispatch.heartbeat_s = 0.05;
    c.dispatch.server_timeout_s = 2;
    return c;
  }
  WorkerOptions worker_options(int rank, int workers) const {
    WorkerOptions o;
    o.servers = endpoints;
    o.token = kToken;
    o.rank = rank;
    o.workers = workers;
    o.map = map;
    o.dispatch.heartbeat_s = 0.05;
    o.dispatch.server_timeout_s = 2;
    return o;
  }
  ServerStats total() const {
    ServerStats t;
    for (auto& s : servers) {
      const ServerStats x = s->stats();
      t.bad_token += x.bad_token;
      t.malformed += x.malformed;
      t.unknown_chunk += x.unknown_chunk;
      t.rejected += x.rejected;
      t.workers_dropped += x.workers_dropped;
      t.joined += x.joined;
      t.updates += x.updates;
      t.max_staleness = std::max(t.max_staleness, x.max_staleness);
    }
    return t;
  }
  ShardMap map;
  std::vector<std::unique_ptr<Context>> contexts;
  std::vector<std::unique_ptr<Server>> servers;
  std::vector<std::string> endpoints;
};

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Sets the parameters on the servers, with plain SGD (no optimizer state).
void init_sgd(Worker& w, const std::vector<float>& params) {
  const OptimizerConfig sgd{.kind = OptimizerKind::Sgd};
  w.init(params.data(), sgd, OptimizerState{.kind = OptimizerKind::Sgd, .step = 0, .slots = {}});
}

// The parameters the servers hand back.
std::vector<float> pull_everything(Worker& w, size_t n) {
  std::vector<float> got(n, 0.f);
  w.pull_all(got.data(), 0);
  return got;
}

TEST(KeyValue, PushAndPullRoundTripExactly) {
  const int64_t n = 10007;  // not a multiple of the chunk
  Cluster cl(2, 1, n, 1024 * 4, "async");
  Context ctx = quiet_context();
  Worker w(ctx, cl.worker_options(0, 1));
  const std::vector<float> init = random_floats(size_t(n), 1);
  init_sgd(w, init);
  EXPECT_TRUE(pull_everything(w, size_t(n)) == init) << "pulled parameters differ from those set";

  // Random chunks, pushed in random order with lr 1: each becomes exactly params - grads.
  std::vector<float> expect = init;
  const std::vector<float> grads = random_floats(size_t(n), 2);
  std::vector<uint32_t> order(w.map().chunks.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = uint32_t(i);
  std::shuffle(order.begin(), order.end(), std::mt19937(3));
  std::vector<float> got(size_t(n), 0.f);
  std::vector<Ticket> tickets;
  for (uint32_t id : order) {
    const Chunk& c = w.map().chunks[id];
    tickets.push_back(w.push(id, grads.data() + c.begin, 0, 1.0f));
    for (int64_t i = c.begin; i < c.end; ++i) expect[size_t(i)] = init[size_t(i)] - grads[size_t(i)];
  }
  for (uint32_t id : order) {
    const Chunk& c = w.map().chunks[id];
    tickets.push_back(w.pull(id, got.data() + c.begin, 1));
  }
  for (auto& t : tickets) t.wait();
  EXPECT_TRUE(got == expect) << "a pull after a push is not exactly params - lr * grads";

  // Gather returns what the servers hold, with the optimizer step.
  std::vector<float> gathered(static_cast<size_t>(n));
  OptimizerState st;
  w.gather(gathered.data(), st);
  EXPECT_TRUE(gathered == expect);
  EXPECT_EQ(st.kind, OptimizerKind::Sgd);
  EXPECT_EQ(st.step, 1);
  EXPECT_EQ(cl.total().updates, int64_t(order.size()));
}

TEST(KeyValue, ManyChunksTravelInSeveralMessages) {
  const int64_t n = int64_t(kMaxChunksPerMessage) * 2 + 5;  // one float per chunk, one server
  Cluster cl(1, 1, n, 4, "sync");
  Context ctx = quiet_context();
  Worker w(ctx, cl.worker_options(0, 1));
  const std::vector<float> init = random_floats(size_t(n), 6);
  OptimizerConfig adam;
  OptimizerState st{.kind = OptimizerKind::Adam,
                    .step = 3,
                    .slots = {random_floats(size_t(n), 7), random_floats(size_t(n), 8)}};
  for (auto& v : st.slots[1]) v = std::abs(v);
  w.init(init.data(), adam, st);
  std::vector<float> got(static_cast<size_t>(n));
  w.pull_all(got.data(), 0);
  EXPECT_TRUE(got == init);
  OptimizerState back;
  w.gather(got.data(), back);
  EXPECT_TRUE(got == init);
  EXPECT_EQ(back.step, 3);
  EXPECT_TRUE(back.slots == st.slots);
  EXPECT_EQ(cl.total().malformed, 0);
}

// ---------------------------------------------------------------- training

TrainConfig config(int64_t batch, int64_t steps) { return test::tiny_recipe(batch, steps); }

// `workers` threads train through PS with per-worker batch b; returns each worker's weights.
// With `staged`, the workers' models live on test::StagedCpuBackend (they stage like GPU
// workers) and their stage counts are returned there; with `gpu`, on GPU 0.
std::vector<std::vector<float>> train_ps(Cluster& cl, int workers, const io::Dataset& data,
                                         const TrainConfig& cfg, int64_t chunk_bytes,
                                         std::vector<TrainResult>* results = nullptr,
                                         Timeline* timeline0 = nullptr,
                                         std::vector<test::StageCounts>* staged = nullptr, bool gpu = false,
                                         const ModelArch& arch = tiny_cnn()) {
  if (staged) staged->assign(size_t(workers), {});
  std::vector<std::vector<float>> weights(static_cast<size_t>(workers));
  std::vector<TrainResult> res(static_cast<size_t>(workers));
  std::vector<std::string> errors(static_cast<size_t>(workers));
  std::vector<std::thread> threads;
  for (int r = 0; r < workers; ++r)
    threads.emplace_back([&, r] {
      try {
        const auto quiet = [](std::string_view) {};
        Context ctx =
            staged ? Context(std::make_unique<test::StagedCpuBackend>(1), {r, workers, "test-host"}, quiet)
            : gpu  ? Context(make_cuda_backend(0, {.graphs = false}), {r, workers, "test-host"}, quiet)
                   : quiet_context(r, workers);
        Model m(ctx.backend(), arch);
        PsConfig pc = cl.config(r, workers, chunk_bytes);
        if (r == 0) pc.timeline = timeline0;
        PsStrategy s(ctx, pc, m.trainable_count());
        res[size_t(r)] = train(ctx, m, data, nullptr, cfg, s);
        s.leave();
        weights[size_t(r)] = m.get_params();
        if (staged) (*staged)[size_t(r)] = static_cast<test::StagedCpuBackend&>(ctx.backend()).counts();
      } catch (const std::exception& e) {
        errors[size_t(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < workers; ++r) EXPECT_EQ(errors[size_t(r)], "") << "worker " << r;
  if (results) *results = res;
  return weights;
}

class SyncEquality : public ::testing::TestWithParam<int> {};

TEST_P(SyncEquality, WorkersMatchOneProcessWithTheGlobalBatch) {
  const int workers = GetParam();
  const io::Dataset data = banded(300, 1);
  const int64_t b = 32 / workers, chunk = 256 * 4;  // several chunks on each of 2 servers
  const int64_t params = tiny_cnn_params();
  Cluster cl(2, workers, params, chunk, "sync");
  std::vector<TrainResult> res;
  Timeline tl(0, Timeline::Clock::now());
  const auto w = train_ps(cl, workers, data, config(b, 20), chunk, &res, &tl);
  ASSERT_FALSE(w[0].empty());
  EXPECT_EQ(res[0].global_step, 20);
  for (int r = 1; r < workers; ++r)
    EXPECT_TRUE(w[0] == w[size_t(r)]) << "worker " << r << " holds other parameters";

  Context ctx = quiet_context();
  Model single(ctx.backend(), tiny_cnn());
  train(ctx, single, data, nullptr, config(workers * b, 20));
  const std::vector<float> ref = single.get_params();
  EXPECT_LT(test::rel_l2(w[0], ref), 1e-4) << "PS sync differs from one process with the global batch";
  // The comparison can fail: the per-worker batch alone gives other weights.
  Model other(ctx.backend(), tiny_cnn());
  train(ctx, other, data, nullptr, config(b, 20));
  EXPECT_FALSE(other.get_params() == ref);
  EXPECT_EQ(cl.total().updates, 20 * int64_t(cl.map.chunks.size()));
  EXPECT_EQ(cl.total().rejected + cl.total().malformed + cl.total().workers_dropped, 0);
  // Worker 0's timeline holds every push and pull with its bytes, and the steps' waits.
  const std::string json = tl.events_json();
  size_t pushes = 0;
  for (size_t pos = 0; (pos = json.find("\"name\":\"push\"", pos)) != std::string::npos; ++pos) ++pushes;
  EXPECT_EQ(pushes, 20 * cl.map.chunks.size());
  EXPECT_NE(json.find("\"bytes\":" + std::to_string(chunk)), std::string::npos);
  EXPECT_GT(tl.total_seconds("wait for ps"), 0);
}

INSTANTIATE_TEST_SUITE_P(Workers, SyncEquality, ::testing::Values(2, 4));

// A third worker joins two that train (their steps slowed, so it lands in the middle): from its
// start on the three share each global batch of 12. In sync mode that is still one process's
// trajectory at batch 12 (4 images each instead of 6: other summation, the same images).
class Join : public ::testing::TestWithParam<std::string> {};

TEST_P(Join, AWorkerJoinsAtTheNextStepAndTheBatchIsShared) {
  const std::string mode = GetParam();
  const io::Dataset data = banded(300, 1);
  const int64_t chunk = 256 * 4, steps = 30;
  Cluster cl(2, 2, tiny_cnn_params(), chunk, mode);
  TrainConfig cfg = config(6, steps);
  cfg.eval_every = 1;  // sums every step: the joiner must take part in them from its start on
  std::atomic<int64_t> done{0};
  cfg.on_eval = [&](const Metrics& m) {
    done = std::max<int64_t>(done, m.step);
    std::this_thread::sleep_for(std::chrono::milliseconds(15));
  };
  std::vector<std::vector<float>> weights(3);
  std::vector<TrainResult> res(3);
  std::vector<std::string> errors(3);
  std::vector<int64_t> workers_seen(3);
  int64_t joined_at = -1;
  auto run = [&](int r) {
    try {
      Context ctx = quiet_context(r, 3);
      Model m(ctx.backend(), tiny_cnn());
      PsConfig pc = cl.config(r, 2, chunk);
      if (r == 2) {
        while (done < 5) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        const Joining j = Worker::request_rank(ctx, cl.worker_options(0, 1));
        EXPECT_EQ(j.rank, 2);
        EXPECT_EQ(j.job.workers, 2);
        EXPECT_EQ(j.job.global_batch, 12);
        pc.joining = j;
      }
      PsStrategy s(ctx, pc, m.trainable_count());
      if (r == 2) joined_at = s.joined()->step;
      TrainConfig mine = cfg;
      if (r == 2) mine.batch_size = 6;  // the job's batch per worker (job.cpp: global / workers)
      res[size_t(r)] = train(ctx, m, data, nullptr, mine, s);
      workers_seen[size_t(r)] = s.world();
      s.sum(0);  // every worker has pushed its last step (as run_job does)
      s.leave();
      weights[size_t(r)] = m.get_params();
    } catch (const std::exception& e) {
      errors[size_t(r)] = e.what();
    }
  };
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r) threads.emplace_back(run, r);
  for (auto& t : threads) t.join();
  for (int r = 0; r < 3; ++r) ASSERT_EQ(errors[size_t(r)], "") << "worker " << r;
  EXPECT_GE(joined_at, 5);
  EXPECT_LT(joined_at, steps) << "the joiner came too late to take part (slow machine?)";
  EXPECT_EQ(cl.total().joined, 2) << "both servers took the joiner in";
  EXPECT_EQ(cl.total().rejected + cl.total().malformed + cl.total().workers_dropped, 0);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(workers_seen[size_t(r)], 3) << "worker " << r;
    EXPECT_EQ(res[size_t(r)].global_step, steps) << "worker " << r;
  }
  EXPECT_EQ(res[2].resumed_from_step, joined_at);
  // The evaluations after the join count three workers.
  EXPECT_EQ(res[0].evaluations.back().workers, 3);
  EXPECT_EQ(res[0].evaluations.front().workers, 2);
  if (mode != "sync") return;
  EXPECT_EQ(cl.total().updates, steps * int64_t(cl.map.chunks.size())) << "one update per round";
  for (int r = 1; r < 3; ++r) EXPECT_TRUE(weights[0] == weights[size_t(r)]) << "worker " << r;
  Context ctx = quiet_context();
  Model single(ctx.backend(), tiny_cnn());
  train(ctx, single, data, nullptr, config(12, steps));
  EXPECT_LT(test::rel_l2(weights[0], single.get_params()), 1e-4)
      << "joined at step " << joined_at << ": not one process's trajectory at the global batch";
}

INSTANTIATE_TEST_SUITE_P(Modes, Join, ::testing::Values("sync", "async"));

// Async: worker 0 snapshots the servers while worker 1 keeps pushing. With SGD at lr 1 and
// gradients of 1 (worker 0) and 1000 (worker 1), a chunk's value tells how many pushes of each
// it holds: a consistent snapshot holds the same counts on every chunk of both servers.
TEST(Snapshot, HoldsTheSamePushesOfEachWorkerOnEveryServer) {
  const int64_t n = 4096, chunk = 256 * 4;
  Cluster cl(2, 2, n, chunk, "async");
  Context ctx = quiet_context();
  Worker w0(ctx, cl.worker_options(0, 2)), w1(ctx, cl.worker_options(1, 2));
  std::vector<float> p(size_t(n), 0.f);
  init_sgd(w0, p);
  const size_t chunks = cl.map.chunks.size();
  ASSERT_GT(chunks, 4u);
  std::atomic<bool> stop{false};
  std::thread pusher([&] {
    const std::vector<float> g(size_t(n), 1000.f);
    for (int64_t step = 0; !stop && step < 900; ++step) {
      std::vector<Ticket> t;
      for (uint32_t c = 0; c < chunks; ++c)
        t.push_back(w1.push(c, g.data() + cl.map.chunks[c].begin, step, 1.f));
      for (auto& x : t) x.wait();
    }
  });
  const std::vector<float> g(size_t(n), 1.f);
  for (int64_t step = 0; step < 20; ++step) {
    std::vector<Ticket> t;
    for (uint32_t c = 0; c < chunks; ++c)
      t.push_back(w0.push(c, g.data() + cl.map.chunks[c].begin, step, 1.f));
    for (auto& x : t) x.wait();
    std::vector<float> snap(static_cast<size_t>(n));
    OptimizerState st;
    w0.snapshot(snap.data(), st);
    std::set<std::pair<int64_t, int64_t>> counts;
    for (float v : snap) counts.insert({int64_t(-v) % 1000, int64_t(-v) / 1000});
    ASSERT_EQ(counts.size(), 1u) << "step " << step << ": chunks hold different pushes";
    EXPECT_EQ(counts.begin()->first, step + 1) << "worker 0's own pushes";
  }
  stop = true;
  pusher.join();
  std::vector<float> after(static_cast<size_t>(n));
  w0.pull_all(after.data(), 0);
  std::set<float> values(after.begin(), after.end());
  EXPECT_EQ(values.size(), 1u) << "the held pushes were not all applied after the snapshot";
}

// A server may hold no chunk at all (more servers than chunks): it still takes part in a
// snapshot, which then holds the one chunk's pushes.
TEST(Snapshot, WorksWithAServerThatHoldsNoChunk) {
  Cluster cl(2, 1, 100, 100 * 4, "async");
  ASSERT_TRUE(cl.map.chunks_of(1).empty());
  Context ctx = quiet_context();
  Worker w(ctx, cl.worker_options(0, 1));
  std::vector<float> p(100, 0.f), g(100, 1.f), snap(100);
  init_sgd(w, p);
  w.push(0, g.data(), 0, 1.f).wait();
  OptimizerState st;
  w.snapshot(snap.data(), st);
  EXPECT_EQ(snap, std::vector<float>(100, -1.f));
}

// A rank asked for before the job has started (no Init yet) is given once it has; a worker
// cannot start twice.
TEST(Join, WaitsForTheJobToStartAndIsRefusedTwice) {
  Cluster cl(1, 1, 1000, 1000 * 4, "sync");
  Context ctx = quiet_context();
  std::optional<Joining> j;
  std::thread asking([&] { j = Worker::request_rank(ctx, cl.worker_options(0, 1)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(j) << "a rank was given before the job started";
  Worker w0(ctx, cl.worker_options(0, 1));
  std::vector<float> p(1000);
  w0.init(p.data(), {.kind = OptimizerKind::Sgd}, {.kind = OptimizerKind::Sgd, .step = 0, .slots = {}},
          {.step = 0, .workers = 1, .global_batch = 4});
  asking.join();
  ASSERT_TRUE(j);
  EXPECT_EQ(j->rank, 1);
  EXPECT_EQ(j->job.global_batch, 4);
  WorkerOptions o = cl.worker_options(1, 2);
  Worker w1(ctx, o);
  EXPECT_EQ(w1.join(), 1) << "worker 0 collects step 0: the joiner starts at step 1";
  EXPECT_EQ(w1.workers(), 2);
  try {
    w1.join();
    ADD_FAILURE() << "a worker joined twice";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has joined already"), std::string::npos) << e.what();
  }
}

// The servers hold the trainable parameters; each worker normalizes over its own samples and
// keeps its own running statistics. With plain SGD one sync step gives every worker the mean of
// the steps one process takes on each worker's samples alone, and worker r the running
// statistics of its samples.
TEST(BatchNorm, WorkersShareTheParametersAndKeepTheirOwnStatistics) {
  const int workers = 2;
  const io::Dataset data = banded(300, 1);
  const int64_t b = 16, chunk = 256 * 4;
  const TrainConfig step = test::one_sgd_step(b);
  Context ctx = quiet_context();
  Model probe(ctx.backend(), test::tiny_bn());
  const size_t trainable = size_t(probe.trainable_count());
  Cluster cl(2, workers, probe.trainable_count(), chunk, "sync");
  const auto w = train_ps(cl, workers, data, step, chunk, nullptr, nullptr, nullptr, false, test::tiny_bn());
  ASSERT_FALSE(w[0].empty());
  std::vector<std::vector<float>> alone;
  for (int r = 0; r < workers; ++r) {
    Model m(ctx.backend(), test::tiny_bn());
    train(ctx, m, test::first_batch_of_rank(data, step.seed, b, r, workers), nullptr, step);
    alone.push_back(m.get_params());
  }
  std::vector<float> mean(trainable);
  for (size_t i = 0; i < trainable; ++i) mean[i] = (alone[0][i] + alone[1][i]) / 2;
  for (int r = 0; r < workers; ++r) {
    const std::vector<float>& mine = w[size_t(r)];
    EXPECT_LT(test::rel_l2({mine.begin(), mine.begin() + long(trainable)}, mean), 1e-5)
        << "worker " << r << ": the trainable parameters are not the mean of the workers' own steps";
    EXPECT_LT(test::rel_l2({mine.begin() + long(trainable), mine.end()},
                           {alone[size_t(r)].begin() + long(trainable), alone[size_t(r)].end()}),
              1e-5)
        << "worker " << r << ": running statistics are not those of its own samples";
  }
  EXPECT_FALSE(std::equal(w[0].begin() + long(trainable), w[0].end(), w[1].begin() + long(trainable)))
      << "both workers hold the same statistics: the comparison above proves nothing";
}

// GPU workers' path on a backend that stages like one: gradients downloaded per chunk and
// pushed only once landed, pulls uploaded and joined before the next forward. Any chunk pushed
// or read before its copy landed, or not uploaded, changes the weights.
TEST(Staged, WorkersThatStageTrainExactlyAsHostWorkers) {
  const int workers = 2;
  const io::Dataset data = banded(300, 1);
  const int64_t b = 16, chunk = 256 * 4, steps = 20;
  const int64_t params = tiny_cnn_params();
  Cluster host_cluster(2, workers, params, chunk, "sync");
  const auto host = train_ps(host_cluster, workers, data, config(b, steps), chunk);
  Cluster staged_cluster(2, workers, params, chunk, "sync");
  std::vector<test::StageCounts> counts;
  const auto staged =
      train_ps(staged_cluster, workers, data, config(b, steps), chunk, nullptr, nullptr, &counts);
  ASSERT_FALSE(host[0].empty());
  ASSERT_FALSE(staged[0].empty());
  for (int r = 0; r < workers; ++r) {
    EXPECT_TRUE(staged[size_t(r)] == host[size_t(r)]) << "worker " << r << ": staged weights differ";
    const test::StageCounts& c = counts[size_t(r)];
    const int64_t chunks = int64_t(staged_cluster.map.chunks.size());
    EXPECT_EQ(c.downloads, steps * chunks) << "worker " << r;
    EXPECT_EQ(c.uploads, steps * chunks) << "worker " << r;
    EXPECT_EQ(c.joins, steps) << "worker " << r;
    EXPECT_GT(c.not_yet, 0) << "worker " << r << " never polled a download still in flight";
  }
  EXPECT_EQ(staged_cluster.total().updates, steps * int64_t(staged_cluster.map.chunks.size()));
}

// Two GPU workers (sharing GPU 0) in sync mode follow one GPU process with the global batch
// within 1e-4 after 20 steps. Skipped without a GPU; bench/gpu/check runs it.
TEST(GpuWorkers, SyncMatchesOneProcessWithTheGlobalBatch) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  const int workers = 2;
  const io::Dataset data = banded(300, 1);
  const int64_t b = 16, chunk = 256 * 4, steps = 20;
  const int64_t params = tiny_cnn_params();
  Cluster cl(2, workers, params, chunk, "sync");
  const auto w = train_ps(cl, workers, data, config(b, steps), chunk, nullptr, nullptr, nullptr, true);
  ASSERT_FALSE(w[0].empty());
  EXPECT_TRUE(w[0] == w[1]) << "the workers hold different parameters";
  Context ctx(make_cuda_backend(0), {}, [](std::string_view) {});
  Model single(ctx.backend(), tiny_cnn());
  train(ctx, single, data, nullptr, config(workers * b, steps));
  EXPECT_LT(test::rel_l2(w[0], single.get_params()), 1e-4)
      << "GPU workers differ from one GPU process with the global batch";
  EXPECT_EQ(cl.total().updates, steps * int64_t(cl.map.chunks.size()));
}

TEST(Server, RefusesToListenOnEveryInterfaceUnlessAllowed) {
  Context ctx = quiet_context();
  ServerOptions o;
  o.token = kToken;
  o.map = ShardMap::build(100, 400, 1);
  for (const char* any : {"tcp://*:0", "tcp://0.0.0.0:0", "tcp://[::]:0"}) {
    o.bind = any;
    try {
      Server s(ctx, o);
      ADD_FAILURE() << any << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage) << e.what();
      EXPECT_NE(std::string(e.what()).find("every interface"), std::string::npos) << e.what();
    }
  }
  o.bind = "tcp://127.0.0.1:0";
  o.token = 0;
  EXPECT_THROW((Server{ctx, o}), Error);  // no job token
}

// A worker that was silent past the timeout is dropped, and told so when it speaks again.
TEST(Server, TellsADroppedWorkerItWasDropped) {
  Cluster cl(1, 2, 1000, 1000 * 4, "sync", /*worker_timeout_s=*/0.3);
  Context ctx = quiet_context();
  WorkerOptions o = cl.worker_options(1, 2);
  o.dispatch.heartbeat_s = 5;  // too rare to keep it in the job
  o.dispatch.server_timeout_s = 10;
  Worker w(ctx, o);
  std::vector<float> p(1000);
  init_sgd(w, p);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_EQ(cl.total().workers_dropped, 1);
  try {
    w.pull(0, p.data(), 0).wait();
    ADD_FAILURE() << "a dropped worker was served";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Timeout) << e.what();
    EXPECT_NE(std::string(e.what()).find("dropped"), std::string::npos) << e.what();
  }
}

class Converges : public ::testing::TestWithParam<std::string> {};

TEST_P(Converges, TwoWorkersLearnTheBandedProblem) {
  const io::Dataset data = banded(2000, 5), test = banded(500, 77);
  const int64_t chunk = 256 * 4;
  Cluster cl(2, 2, tiny_cnn_params(), chunk, GetParam());
  TrainConfig cfg = config(16, 0);
  cfg.epochs = 2;
  const auto w = train_ps(cl, 2, data, cfg, chunk);
  ASSERT_FALSE(w[0].empty());
  Context ctx = quiet_context();
  Model m(ctx.backend(), tiny_cnn());
  m.set_params(w[0]);
  const EvalResult before = [&] {
    Model fresh(ctx.backend(), tiny_cnn());
    fresh.init(11);
    return evaluate(fresh, test);
  }();
  const EvalResult after = evaluate(m, test);
  EXPECT_GE(after.accuracy, 0.9) << GetParam() << " (untrained: " << before.accuracy << ")";
}

INSTANTIATE_TEST_SUITE_P(Modes, Converges, ::testing::Values("async", "ssp:2"),
                         [](const auto& info) { return info.param == "async" ? "async" : "ssp2"; });

// One hand-driven step (the trainer's order of hooks) on a fixed random batch.
struct Stepper {
  explicit Stepper(int rank, int world)
      : ctx(quiet_context(rank, world)),
        model(ctx.backend(), tiny_cnn()),
        data(banded(32, 100 + uint64_t(rank))) {
    model.init(11);
    OptimizerConfig oc;
    oc.kind = OptimizerKind::Adam;
    oc.lr = 1e-3f;
    opt = std::make_unique<Optimizer>(ctx.backend(), oc, model.param_count());
  }
  void step(Strategy& s, int64_t i) {
    model.forward(data.images.data(), 32, true, uint64_t(i));
    model.loss(data.labels.data(), 32);
    model.backward([&](int64_t a, int64_t b) { s.grads_ready(model, a, b); });
    s.finish_step(model, *opt);
  }
  Context ctx;
  Model model;
  io::Dataset data;
  std::unique_ptr<Optimizer> opt;
};

// Worker 1 sleeps before each step; worker 0 may run at most S steps ahead of it (+1: worker
// 1's push lands a moment before its own count is updated). Without a bound it runs away.
int64_t max_lead(const std::string& mode, int steps, ServerStats* stats) {
  const int64_t chunk = 256 * 4;
  Cluster cl(2, 2, tiny_cnn_params(), chunk, mode);
  std::atomic<int64_t> done[2] = {0, 0};
  std::atomic<int64_t> lead{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      Stepper st(r, 2);
      PsStrategy s(st.ctx, cl.config(r, 2, chunk), st.model.param_count());
      s.broadcast_initial(st.model, *st.opt, {});
      for (int i = 0; i < steps; ++i) {
        if (r == 1) std::this_thread::sleep_for(std::chrono::milliseconds(25));
        st.step(s, i);
        done[r] = i + 1;
        if (r == 0) lead = std::max<int64_t>(lead, done[0] - done[1]);
      }
      s.leave();
    });
  for (auto& t : threads) t.join();
  *stats = cl.total();
  return lead;
}

TEST(Ssp, BoundsStalenessOfASlowedWorker) {
  ServerStats st;
  const int64_t bounded = max_lead("ssp:2", 16, &st);
  EXPECT_LE(bounded, 3) << "worker 0 ran more than S=2 steps ahead of the slow worker";
  EXPECT_LE(st.max_staleness, 2);
  const int64_t free = max_lead("async", 16, &st);
  EXPECT_GT(free, 6)
      << "without a bound the fast worker should run ahead (the bound test means nothing otherwise)";
  EXPECT_GT(st.max_staleness, 2);
}

// ---------------------------------------------------------------- hostile input and failures

TEST(Server, KeepsServingThroughGarbageTruncatedAndWrongTokenFrames) {
  // Chunks above 64 KiB, so a frame of an oversized header gets past ZeroMQ's size limit.
  const int64_t n = 40960;
  Cluster cl(1, 1, n, 32768 * 4, "async");
  ZmqContext zctx;
  Socket evil(zctx, ZMQ_DEALER, "test");
  evil.connect(cl.endpoints[0]);
  auto send = [&](std::vector<std::string> frames) {
    std::vector<Message> parts;
    for (auto& f : frames) parts.emplace_back(f.data(), f.size());
    evil.send(parts);
  };
  Header good;
  good.token = kToken;
  good.sender = 0;
  good.type = MsgType::Push;
  good.step = 0;
  good.lr = 1;
  good.chunks = {0};
  const std::string enc = encode_header(good);
  std::mt19937 g(9);
  for (int i = 0; i < 50; ++i) {  // random bytes of random lengths
    std::string junk(size_t(g() % 300), '\0');
    for (auto& ch : junk) ch = char(g());
    send({junk});
  }
  send({""});                                                     // empty frame
  send({enc.substr(0, enc.size() / 2), std::string(4096, 'x')});  // truncated header
  Header wrong = good;
  wrong.token = kToken ^ 1;
  send({encode_header(wrong), std::string(4096, 'x')});  // wrong token
  Header liar = good;
  liar.sender = 7;  // no such worker
  send({encode_header(liar), std::string(4096, 'x')});
  Header unknown = good;
  unknown.chunks = {12345};  // no such chunk
  send({encode_header(unknown), std::string(4096, 'x')});
  send({enc, std::string(17, 'x')});               // payload of the wrong size
  send({enc});                                     // payload missing
  send({std::string(kMaxHeaderBytes + 10, 'h')});  // oversized header
  {  // a frame larger than any chunk: ZeroMQ cuts the connection, the server lives on
    ZmqContext z2;
    Socket big(z2, ZMQ_DEALER, "test");
    big.connect(cl.endpoints[0]);
    std::vector<Message> parts;
    parts.emplace_back(enc.data(), enc.size());
    parts.emplace_back(size_t(32 << 20));
    big.send(parts);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

  // A real worker is served as if nothing happened, and nothing reached the parameters.
  Context ctx = quiet_context();
  {
    Worker w(ctx, cl.worker_options(0, 1));
    const std::vector<float> init = random_floats(size_t(n), 4);
    init_sgd(w, init);
    EXPECT_TRUE(pull_everything(w, size_t(n)) == init);
  }
  const ServerStats s = cl.total();
  EXPECT_EQ(s.bad_token, 1);
  EXPECT_GE(s.malformed, 50 + 1 + 1 + 1 + 1);  // junk, empty, truncated, bad sender, oversized
  EXPECT_EQ(s.unknown_chunk, 1);
  EXPECT_GE(s.rejected, 3);  // unknown chunk, wrong size, missing payload: refused with a reason
  EXPECT_EQ(s.updates, 0) << "a hostile push reached the parameters";

  // A worker with the token but another chunk size is told what is wrong, and nothing applies.
  WorkerOptions o = cl.worker_options(0, 1);
  o.map = ShardMap::build(n, 16384 * 4, 1);
  Worker confused(ctx, o);
  const std::vector<float> ones(32768, 1.f);
  try {
    confused.push(2, ones.data(), 0, 1.f).wait();
    ADD_FAILURE() << "a push of an unknown chunk was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not held by server 0"), std::string::npos) << e.what();
  }
  try {
    confused.push(0, ones.data(), 0, 1.f).wait();
    ADD_FAILURE() << "a push of the wrong size was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Format) << e.what();
  }
  EXPECT_EQ(cl.total().updates, 0);
  EXPECT_EQ(cl.total().unknown_chunk, 2);
}

// Requests with the token but random content (types, senders, chunk ids, steps, frame counts
// and sizes, optimizer fields): the server refuses what does not fit and keeps serving (run
// under ASan, this also shows nothing is written outside the shard's buffers).
TEST(Server, SurvivesRandomRequestsWithTheToken) {
  const int64_t n = 3000;
  Cluster cl(1, 2, n, 1000 * 4, "sync");
  ZmqContext zctx;
  Socket rnd(zctx, ZMQ_DEALER, "test");
  rnd.connect(cl.endpoints[0]);
  std::mt19937 g(21);
  const std::vector<size_t> sizes = {0, 3, 3996, 4000, 4004};
  for (int i = 0; i < 2000; ++i) {
    Header h;
    h.token = kToken;
    h.type = MsgType(1 + g() % kLastMsgType);
    if (h.type == MsgType::Leave) h.type = MsgType::Push;  // keep rank 1 in the job
    h.sender = int32_t(g() % 4) - 1;                       // -1, 0 (never 0: see below), 1, 2
    if (h.sender == 0) h.sender = 1;
    h.request = g();
    h.step = int64_t(g() % 5) - 1;
    h.lr = (g() % 4 == 0) ? -1.f : 0.01f;
    const uint32_t kind = g() % 4;  // 0: none
    const float eps = (g() % 8 == 0) ? std::numeric_limits<float>::infinity() : 1e-8f;
    if (kind != 0)
      h.optimizer = OptimizerConfig{
          .kind = OptimizerKind(kind - 1), .momentum = 0.9f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = eps};
    for (uint32_t k = g() % 4; k > 0; --k) h.chunks.push_back(g() % 5);
    const std::string enc = encode_header(h);
    std::vector<Message> parts;
    parts.emplace_back(enc.data(), enc.size());
    for (uint32_t k = g() % 7; k > 0; --k) {
      const size_t bytes = sizes[g() % sizes.size()];
      parts.emplace_back(bytes);
      std::memset(parts.back().data(), int(g() % 256), bytes);
    }
    rnd.send(parts);
  }
  {  // A last request after the noise: its answer means the server has handled all of it.
    Header hb;
    hb.token = kToken;
    hb.type = MsgType::Gather;
    hb.sender = 1;
    hb.request = uint64_t(1) << 40;  // no random request has this id
    const std::string enc = encode_header(hb);
    std::vector<Message> parts;
    parts.emplace_back(enc.data(), enc.size());
    rnd.send(parts);
    bool answered = false, truncated = false;
    const auto t0 = Clock::now();
    while (!answered && Clock::now() - t0 < std::chrono::seconds(5)) {
      zmq_pollitem_t item = {rnd.raw(), 0, ZMQ_POLLIN, 0};
      zmq_poll(&item, 1, 100);
      while (!answered && rnd.recv(parts, 64, truncated))
        answered = decode_header(parts[0].bytes()).request == hb.request;
    }
    ASSERT_TRUE(answered) << "the server stopped answering";
  }
  const ServerStats st = cl.total();
  EXPECT_GT(st.rejected + st.malformed + st.unknown_chunk, 1000) << "the noise was mostly accepted?";
  // Rank 0 is untouched by the noise: it is served, and its init wins over whatever it did.
  Context ctx = quiet_context();
  Worker w(ctx, cl.worker_options(0, 2));
  const std::vector<float> init = random_floats(size_t(n), 11);
  init_sgd(w, init);
  EXPECT_TRUE(pull_everything(w, size_t(n)) == init);
}

TEST(Sync, ADroppedWorkerDoesNotStopTheOthers) {
  const int64_t chunk = 256 * 4;
  Cluster cl(2, 2, tiny_cnn_params(), chunk, "sync", /*worker_timeout_s=*/0.5);
  std::string error;
  std::thread survivor([&] {
    try {
      Stepper st(0, 2);
      PsStrategy s(st.ctx, cl.config(0, 2, chunk), st.model.param_count());
      s.broadcast_initial(st.model, *st.opt, {});
      for (int i = 0; i < 12; ++i) st.step(s, i);
      s.leave();
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  {
    Stepper st(1, 2);
    PsStrategy s(st.ctx, cl.config(1, 2, chunk), st.model.param_count());
    s.broadcast_initial(st.model, *st.opt, {});
    for (int i = 0; i < 3; ++i) st.step(s, i);
  }  // gone without leave(): to the servers, a crash
  const auto t0 = Clock::now();
  survivor.join();
  EXPECT_EQ(error, "");
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 5.0);
  EXPECT_EQ(cl.total().workers_dropped, 2);  // counted by each server
  EXPECT_EQ(cl.total().updates, 12 * int64_t(cl.map.chunks.size()));
}

TEST(Worker, ADeadServerFailsTheStepWithinTheTimeout) {
  const int64_t chunk = 256 * 4;
  Cluster cl(2, 1, tiny_cnn_params(), chunk, "sync");
  Stepper st(0, 1);
  PsConfig c = cl.config(0, 1, chunk);
  c.dispatch.server_timeout_s = 1;
  PsStrategy s(st.ctx, c, st.model.param_count());
  s.broadcast_initial(st.model, *st.opt, {});
  st.step(s, 0);
  const std::string dead = cl.endpoints[1];
  cl.servers[1].reset();
  const auto t0 = Clock::now();
  try {
    for (int i = 1; i < 100; ++i) st.step(s, i);
    ADD_FAILURE() << "training went on without server 1";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Timeout) << e.what();
    EXPECT_NE(std::string(e.what()).find(dead), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 2.5);
}

TEST(Worker, AServerThatNeverAnswersFailsWithinTheConnectTimeout) {
  // A server of another job (other token) is as silent as no server at all.
  Cluster other(1, 1, 1000, 1000 * 4, "sync");
  WorkerOptions o = other.worker_options(0, 1);
  o.token = kToken ^ 0xff;
  o.dispatch.connect_timeout_s = 0.3;
  Context ctx = quiet_context();
  Worker w(ctx, o);
  std::vector<float> p(1000);
  const auto t0 = Clock::now();
  try {
    w.pull(0, p.data(), 0).wait();
    ADD_FAILURE() << "a pull was answered by a server of another job";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Timeout) << e.what();
    EXPECT_NE(std::string(e.what()).find("did not answer within"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(other.endpoints[0]), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 1.5);
  EXPECT_GE(other.total().bad_token, 1);
}

// ---------------------------------------------------------------- checkpoints

TEST(Checkpoint, CollectsShardsAndRestoresOntoAnotherServerCount) {
  const int64_t chunk = 300 * 4;
  const int64_t params = tiny_cnn_params();
  Stepper st(0, 1);
  std::vector<float> saved, continued;
  OptimizerState saved_state;
  {
    Cluster two(2, 1, params, chunk, "sync");
    PsStrategy s(st.ctx, two.config(0, 1, chunk), params);
    s.broadcast_initial(st.model, *st.opt, {});
    for (int i = 0; i < 4; ++i) st.step(s, i);
    s.collect(st.model, *st.opt);
    saved = st.model.get_params();
    saved_state = st.opt->state();
    EXPECT_EQ(saved_state.step, 4);
    for (int i = 4; i < 8; ++i) st.step(s, i);
    continued = st.model.get_params();
    s.leave();
  }
  // Restore the checkpoint onto three servers (re-sharded) and take the same steps.
  Cluster three(3, 1, params, chunk, "sync");
  st.model.set_params(saved);
  st.opt->load_state(saved_state);
  PsStrategy s(st.ctx, three.config(0, 1, chunk), params);
  s.broadcast_initial(st.model, *st.opt, {});
  for (int i = 4; i < 8; ++i) st.step(s, i);
  EXPECT_TRUE(st.model.get_params() == continued) << "resumed on 3 servers differs from going on with 2";
  EXPECT_FALSE(saved == continued);
  s.leave();
}

// Checkpoints inside epochs in sync mode: rank 0 collects every server's shard after the same
// step. Two workers stop at step 12, 2 steps into epoch 2; resumed onto fresh servers by two
// workers they end with the uninterrupted job's bits, and by four (8 images each: the global
// batch of 32 stays) within 1e-4 of it.
TEST(Checkpoint, InsideAnEpochResumesOntoAnyNumberOfWorkers) {
  const io::Dataset data = banded(300, 1);  // 10 steps an epoch at 32
  const int64_t chunk = 256 * 4, params = tiny_cnn_params();
  const std::filesystem::path root =
      std::filesystem::temp_directory_path() / ("strand-ps-inside-" + std::to_string(::getpid()));
  auto recipe = [&](const std::string& sub, int64_t batch, int64_t stop, bool resume) {
    TrainConfig c = config(batch, stop);
    c.checkpoint_dir = root / sub;
    c.checkpoint_every = 4;
    c.resume = resume;
    return c;
  };
  std::vector<std::vector<float>> uninterrupted;
  {
    Cluster cl(2, 2, params, chunk, "sync");
    uninterrupted = train_ps(cl, 2, data, recipe("whole", 16, 20, false), chunk);
  }
  {
    Cluster cl(2, 2, params, chunk, "sync");
    train_ps(cl, 2, data, recipe("cut", 16, 12, false), chunk);
  }
  std::filesystem::copy(root / "cut", root / "cut4");
  ASSERT_EQ(io::latest_checkpoint(root / "cut"), root / "cut" / "checkpoint-1-2.strand");
  {
    Cluster cl(2, 2, params, chunk, "sync");
    std::vector<TrainResult> res;
    const auto w = train_ps(cl, 2, data, recipe("cut", 16, 20, true), chunk, &res);
    EXPECT_EQ(res[0].resumed_from_step, 12);
    EXPECT_TRUE(w[0] == uninterrupted[0]) << "resumed inside an epoch: other bits than the uninterrupted job";
  }
  {
    Cluster cl(3, 4, params, chunk, "sync");  // and onto three servers
    std::vector<TrainResult> res;
    const auto w = train_ps(cl, 4, data, recipe("cut4", 16, 20, true), chunk, &res);
    EXPECT_EQ(res[0].resumed_from_step, 12);
    EXPECT_LT(test::rel_l2(w[0], uninterrupted[0]), 1e-4) << "resumed on 4 workers";
  }
  std::filesystem::remove_all(root);
}

// A checkpoint of a PS job holds its optimizer state in the local job's form: one worker in
// sync mode takes the local job's steps, so the two checkpoint files hold the same state.
TEST(Checkpoint, PsAndLocalJobsWriteTheSameOptimizerState) {
  const io::Dataset data = banded(96, 3);
  const int64_t chunk = 256 * 4;
  const int64_t params = tiny_cnn_params();
  const std::filesystem::path root =
      std::filesystem::temp_directory_path() / ("strand-ps-ckpt-" + std::to_string(::getpid()));
  for (OptimizerKind kind : {OptimizerKind::Sgd, OptimizerKind::Momentum, OptimizerKind::Adam}) {
    const std::string name(to_string(kind));
    TrainConfig cfg = config(32, 0);
    cfg.epochs = 1;
    cfg.optimizer.kind = kind;
    cfg.checkpoint_dir = root / name / "local";
    {
      Context ctx = quiet_context();
      Model m(ctx.backend(), tiny_cnn());
      train(ctx, m, data, nullptr, cfg);
    }
    cfg.checkpoint_dir = root / name / "ps";
    Cluster cl(2, 1, params, chunk, "sync");
    train_ps(cl, 1, data, cfg, chunk);
    const auto local_file = io::latest_checkpoint(root / name / "local");
    const auto ps_file = io::latest_checkpoint(root / name / "ps");
    ASSERT_TRUE(local_file && ps_file) << name;
    const io::Checkpoint local = io::load_checkpoint(*local_file), ps = io::load_checkpoint(*ps_file);
    EXPECT_EQ(ps.optimizer.kind, kind);
    EXPECT_EQ(ps.optimizer.kind, local.optimizer.kind);
    EXPECT_EQ(ps.optimizer.step, 3) << name;  // 96 samples, batch 32
    EXPECT_EQ(ps.optimizer.step, local.optimizer.step) << name;
    EXPECT_EQ(ps.optimizer.slots.size(), slot_count(kind)) << name;
    EXPECT_TRUE(ps.optimizer.slots == local.optimizer.slots) << name;
    EXPECT_TRUE(ps.model.params == local.model.params) << name;
    EXPECT_EQ(ps.global_step, local.global_step) << name;
  }
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace strand::ps
