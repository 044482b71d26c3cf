// Data-parallel training under mpirun -np 2: two ranks with batch B follow one process with
// batch 2B (same seed, dropout included) within 1e-4 after 20 steps, for each algorithm and
// for the GPU paths played on the CPU (test::StagedCpuBackend: buckets staged through a
// deferred mirror into the ring; device collectives queued on a deferred lane, NCCL's way);
// every rank ends with the same bits; fusion sends the buckets the threshold implies and the
// timeline records them with their bytes; buckets on a lane equal one whole-gradient bucket
// bit for bit; with batch normalization each rank normalizes its own samples; augmentation
// follows one process too; a job resumed on another number of ranks follows one process as well.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <strand/allreduce/mpi_communicator.hpp>
#include <strand/allreduce/strategy.hpp>
#include <strand/core/error.hpp>
#include <strand/core/layers.hpp>
#include <strand/train/trainer.hpp>
#include "tests/core/staged_backend.hpp"
#include "tests/train/tiny_task.hpp"

namespace strand::allreduce {

MpiRuntime* runtime = nullptr;

namespace {

using test::banded;
using test::tiny_cnn;

TrainConfig config(int64_t batch) { return test::tiny_recipe(batch); }

std::vector<float> train_local(const io::Dataset& data, int64_t batch, const ModelArch& arch = tiny_cnn(),
                               const TrainConfig& cfg = config(0)) {
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), arch);
  TrainConfig c = cfg;
  c.batch_size = batch;
  train(ctx, m, data, nullptr, c);
  return m.get_params();
}

// `params` equal `single` (one process's with the global batch) within 1e-4.
void expect_close(const std::vector<float>& params, const std::vector<float>& single,
                  const std::string& what) {
  ASSERT_EQ(params.size(), single.size());
  double diff = 0, norm = 0, worst = 0;
  for (size_t i = 0; i < single.size(); ++i) {
    const double d = std::abs(double(params[i]) - single[i]);
    diff += d * d;
    norm += double(single[i]) * single[i];
    worst = std::max(worst, d / (std::abs(double(single[i])) + 1e-3));
  }
  EXPECT_LT(std::sqrt(diff / norm), 1e-4) << what << ": parameters differ from the single process";
  EXPECT_LT(worst, 1e-3) << what << ": worst element (relative, 1e-3 floor)";
}

// `mine` (rank r's parameters after training with batch b per rank) equals rank 0's bits and
// one process's with the global batch within 1e-4.
void expect_follows_one_process(Communicator& comm, const std::vector<float>& mine, const io::Dataset& data,
                                int64_t b, const std::string& what, const TrainConfig& cfg = config(0)) {
  std::vector<float> rank0 = mine;
  comm.broadcast(rank0.data(), rank0.size() * sizeof(float), 0);
  EXPECT_TRUE(mine == rank0) << what << ": rank " << comm.rank() << " holds other parameters than rank 0";
  const std::vector<float> single = train_local(data, b * comm.size(), tiny_cnn(), cfg);
  expect_close(mine, single, what);
  // The run really trained: a different global batch gives different weights.
  if (comm.size() > 1) {
    EXPECT_FALSE(single == train_local(data, b, tiny_cnn(), cfg))
        << "the batch size does not matter: the equality above proves nothing";
  }
}

// A job resumed on another number of ranks continues its sequence of global batches: two ranks
// that stop inside epoch 2 and one process that resumes there with the same command, and the
// other way round, end within 1e-4 of one process with the global batch throughout. (Not bit
// for bit: the ranks' gradients are summed in another order than one process's.)
TEST(Resume, OnAnotherNumberOfRanksFollowsOneProcess) {
  CommOptions o;
  o.timeout_s = 30;
  MpiCommunicator comm(*runtime, o);
  const int64_t b = 16;
  const io::Dataset data = banded(300, 1);  // 10 steps an epoch at 32
  char dir[256] = {};                       // rank 0's temporary directory, which every rank sees
  if (comm.rank() == 0) {
    char tmpl[] = "/tmp/strand-resume-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    std::snprintf(dir, sizeof dir, "%s", tmpl);
  }
  comm.broadcast(dir, sizeof dir, 0);
  auto recipe = [&](const std::string& sub, int64_t batch, int64_t stop, bool resume) {
    TrainConfig c = config(batch);
    c.checkpoint_dir = std::string(dir) + "/" + sub;
    c.checkpoint_every = 4;
    c.max_steps = stop;
    c.resume = resume;
    return c;
  };
  auto on_ranks = [&](const TrainConfig& c) {
    Context ctx(make_cpu_backend(1), {comm.rank(), comm.size(), comm.host()});
    Model m(ctx.backend(), tiny_cnn());
    AllreduceStrategy strategy(comm, 256);
    const TrainResult r = train(ctx, m, data, nullptr, c, strategy);
    return std::make_pair(r, m.get_params());
  };
  auto alone = [&](const TrainConfig& c) {
    Context ctx(make_cpu_backend(1));
    Model m(ctx.backend(), tiny_cnn());
    const TrainResult r = train(ctx, m, data, nullptr, c);
    return std::make_pair(r, m.get_params());
  };
  auto sync = [&] {
    char done = 1;
    comm.broadcast(&done, 1, 0);
  };
  // Two ranks of 16 stop at step 12, 2 steps into epoch 2; one process resumes with batch 16,
  // which becomes 32.
  on_ranks(recipe("fewer", b, 12, false));
  sync();
  if (comm.rank() == 0) {
    const auto [r, params] = alone(recipe("fewer", b, 20, true));
    EXPECT_EQ(r.resumed_from_step, 12);
    EXPECT_EQ(r.global_step, 20);
    expect_close(params, train_local(data, b * comm.size()), "2 ranks, then 1");
  }
  // One process of 32 stops at step 12; two ranks resume with batch 32, which becomes 16 each.
  if (comm.rank() == 0) alone(recipe("more", b * comm.size(), 12, false));
  sync();
  const auto [r, mine] = on_ranks(recipe("more", b * comm.size(), 20, true));
  EXPECT_EQ(r.resumed_from_step, 12);
  expect_follows_one_process(comm, mine, data, b, "1 process, then 2 ranks");
  sync();
  if (comm.rank() == 0) std::filesystem::remove_all(dir);
}

class Equality : public ::testing::TestWithParam<std::string> {};

TEST_P(Equality, TwoRanksMatchOneProcessWithTheGlobalBatch) {
  CommOptions o;
  o.algorithm = parse_algorithm(GetParam());
  o.timeout_s = 30;
  MpiCommunicator comm(*runtime, o);
  const int64_t b = 16;
  const io::Dataset data = banded(300, 1);  // 300 / 32: the epoch's last global batch is partial
  Context ctx(make_cpu_backend(1), {comm.rank(), comm.size(), comm.host()});
  Model m(ctx.backend(), tiny_cnn());
  {
    AllreduceStrategy strategy(comm, 256);  // small buckets: several per step
    const TrainResult r = train(ctx, m, data, nullptr, config(b), strategy);
    EXPECT_EQ(r.global_step, 20);
  }
  expect_follows_one_process(comm, m.get_params(), data, b, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Algorithms, Equality, ::testing::Values("ring", "hierarchical", "mpi"));

// Augmentation is drawn per sample from (seed, epoch, index), not from a rank's stream: two
// ranks moving and mirroring their halves of the batch follow one process with the whole one.
TEST(Augmentation, TwoRanksMatchOneProcessWithTheGlobalBatch) {
  CommOptions o;
  o.timeout_s = 30;
  MpiCommunicator comm(*runtime, o);
  const int64_t b = 16;
  const io::Dataset data = banded(300, 1, true);
  TrainConfig augmented = config(b);
  augmented.augment = {.shift = 2, .flip = true};
  Context ctx(make_cpu_backend(1), {comm.rank(), comm.size(), comm.host()});
  Model m(ctx.backend(), tiny_cnn());
  {
    AllreduceStrategy strategy(comm, 256);
    train(ctx, m, data, nullptr, augmented, strategy);
  }
  expect_follows_one_process(comm, m.get_params(), data, b, "augmented", augmented);
  if (comm.rank() == 0) {
    TrainConfig plain = augmented;
    plain.augment = {};
    EXPECT_FALSE(train_local(data, b * comm.size(), tiny_cnn(), plain) ==
                 train_local(data, b * comm.size(), tiny_cnn(), augmented))
        << "the augmentation changed nothing: the equality above proves nothing about it";
  }
}

// Batch normalization normalizes each rank's batch over the rank's own samples, and the
// running statistics' updates are averaged with the gradients: with plain SGD one step on two
// ranks is the mean of the steps one process takes on each rank's samples alone, and not the
// step of one process over the global batch. Twenty Adam steps later every rank still holds
// the same bits, running statistics included.
TEST(BatchNorm, EachRankNormalizesItsOwnSamplesAndTheRanksAgree) {
  CommOptions o;
  o.timeout_s = 30;
  MpiCommunicator comm(*runtime, o);
  const int64_t b = 16;
  const io::Dataset data = banded(300, 1);
  const TrainConfig step = test::one_sgd_step(b);
  Context ctx(make_cpu_backend(1), {comm.rank(), comm.size(), comm.host()});
  Model m(ctx.backend(), test::tiny_bn());
  {
    AllreduceStrategy strategy(comm, 256);
    train(ctx, m, data, nullptr, step, strategy);
  }
  const std::vector<float> initial = [&] {
    Model fresh(ctx.backend(), test::tiny_bn());
    fresh.init(step.seed);
    return fresh.get_params();
  }();
  std::vector<float> mean(initial.size(), 0.f);
  for (int r = 0; r < comm.size(); ++r) {
    Context one(make_cpu_backend(1));
    Model alone(one.backend(), test::tiny_bn());
    train(one, alone, test::first_batch_of_rank(data, step.seed, b, r, comm.size()), nullptr, step);
    const std::vector<float> p = alone.get_params();
    for (size_t i = 0; i < p.size(); ++i) mean[i] += p[i] / float(comm.size());
  }
  const std::vector<float> mine = m.get_params();
  EXPECT_LT(test::rel_l2(mine, mean), 1e-5) << "one step on 2 ranks is not the mean of the ranks' own steps";
  const size_t state = size_t(m.trainable_count());
  const std::vector<float> state_now(mine.begin() + long(state), mine.end()),
      state_mean(mean.begin() + long(state), mean.end()),
      state_initial(initial.begin() + long(state), initial.end());
  EXPECT_LT(test::rel_l2(state_now, state_mean), 1e-5) << "running statistics";
  EXPECT_GT(test::rel_l2(state_now, state_initial), 1e-2) << "the step left the running statistics alone";
  const std::vector<float> global = train_local(data, 2 * b, test::tiny_bn(), step);
  EXPECT_GT(test::rel_l2(mine, global), 1e-4) << "the ranks normalized over the global batch";

  Model longer(ctx.backend(), test::tiny_bn());
  {
    AllreduceStrategy strategy(comm, 256);
    train(ctx, longer, data, nullptr, config(b), strategy);
  }
  std::vector<float> params = longer.get_params(), rank0 = params;
  comm.broadcast(rank0.data(), rank0.size() * sizeof(float), 0);
  EXPECT_TRUE(params == rank0) << "rank " << comm.rank()
                               << " holds other parameters or statistics than rank 0";
}

// NCCL's part played on the CPU: a device communicator whose collectives are queued on a
// test::DeferredLane and run there, through the MPI ring, when the lane's work runs.
class LaneComm final : public Communicator {
 public:
  explicit LaneComm(MpiCommunicator& host) : host_(host) {}
  std::string name() const override { return "lane"; }
  bool reduces_device_buffers() const override { return true; }
  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  const std::string& host() const override { return host_.host(); }
  void allreduce_sum(float* data, int64_t n) override { host_.allreduce_sum(data, n); }
  void queue_allreduce_mean(Lane& lane, float* data, int64_t n) override {
    static_cast<test::DeferredLane*>(lane.native())->queue([this, data, n] {
      host_.allreduce_mean(data, n);
    });
  }
  void wait(Lane& lane, int64_t mark) override {
    ++waits;
    while (!lane.passed(mark)) {
    }
  }
  void broadcast(void* data, size_t bytes, int root) override { host_.broadcast(data, bytes, root); }
  std::vector<double> allgather(double value) override { return host_.allgather(value); }
  std::vector<std::string> gather_to_root(const std::string& text) override {
    return host_.gather_to_root(text);
  }
  int64_t waits = 0;

 private:
  MpiCommunicator& host_;
};

// Trains 20 steps of batch b per rank on a StagedCpuBackend (with lanes when `lane`) and
// returns the parameters; `check` sees the strategy and the backend afterwards.
template <class Check>
std::vector<float> train_deferred(Communicator& comm, bool lane, const io::Dataset& data, int64_t b,
                                  size_t fusion_bytes, Check check) {
  Context ctx(std::make_unique<test::StagedCpuBackend>(1, lane), {comm.rank(), comm.size(), comm.host()});
  Model m(ctx.backend(), tiny_cnn());
  AllreduceStrategy strategy(comm, fusion_bytes);
  EXPECT_EQ(train(ctx, m, data, nullptr, config(b), strategy).global_step, 20);
  check(strategy, static_cast<const test::StagedCpuBackend&>(ctx.backend()));
  return m.get_params();
}

class DevicePaths : public ::testing::TestWithParam<std::string> {};

TEST_P(DevicePaths, TwoRanksMatchOneProcessWithTheGlobalBatch) {
  const std::string path = GetParam();
  const bool lane = path == "lane";
  CommOptions o;
  o.algorithm = path == "staged-hierarchical" ? Algorithm::Hierarchical : Algorithm::Ring;
  o.timeout_s = 30;
  MpiCommunicator host(*runtime, o);
  LaneComm device(host);
  Communicator& comm = lane ? static_cast<Communicator&>(device) : host;
  const int64_t b = 16;
  const io::Dataset data = banded(300, 1);
  const auto check = [&](const AllreduceStrategy& s, const test::StagedCpuBackend& be) {
    EXPECT_EQ(s.path(), lane ? AllreduceStrategy::Path::Lane : AllreduceStrategy::Path::Staged);
    EXPECT_GT(s.buckets_during_backward(), 0) << "no bucket left while backward still ran";
    if (lane) {
      const test::LaneCounts& c = be.lane_counts();
      EXPECT_EQ(c.queued, s.buckets());
      EXPECT_EQ(c.unfollowed, 0) << "a collective was queued without following the kernels that wrote it";
      EXPECT_EQ(c.joins, 20) << "one join per step, before the update";
      EXPECT_EQ(device.waits, 20) << "after_step waits for every step";
    } else {
      const test::StageCounts& c = be.counts();
      EXPECT_EQ(c.downloads, s.buckets());
      EXPECT_EQ(c.uploads, c.downloads) << "every reduced bucket goes back up";
      EXPECT_EQ(c.joins, 20);
      EXPECT_GT(c.not_yet, 0) << "the polls never saw a copy still running";
    }
  };
  expect_follows_one_process(comm, train_deferred(comm, lane, data, b, 256, check), data, b, path);
}

INSTANTIATE_TEST_SUITE_P(Paths, DevicePaths, ::testing::Values("staged-ring", "staged-hierarchical", "lane"));

// Buckets reduced as backward fills them give the bits of one bucket after backward (2 ranks:
// each sum has the same two terms in any order).
TEST(DevicePaths, BucketsOnALaneEqualOneWholeBucketBitForBit) {
  MpiCommunicator host(*runtime, CommOptions{});
  LaneComm device(host);
  const io::Dataset data = banded(300, 1);
  const auto none = [](const AllreduceStrategy&, const test::StagedCpuBackend&) {};
  const std::vector<float> bucketed = train_deferred(device, true, data, 16, 256, none);
  const std::vector<float> whole = train_deferred(device, true, data, 16, size_t(1) << 30, none);
  EXPECT_TRUE(bucketed == whole) << "bucketed and unbucketed reductions differ";
}

// Gradients placed in the communicator's shared windows (what strand train does when the
// ranks share a machine): the ring reduces them in place, with the same result. The model is
// wide enough (131 KB in dense1) for buckets above the in-place path's 64 KiB minimum.
TEST(SharedGradients, TwoRanksMatchOneProcessAndReduceInPlace) {
  using namespace strand::layers;
  const ModelArch wide{"wide", Shape{1, 8, 8}, {flatten(), dense(512), relu(), dense(10)}};
  CommOptions o;
  o.timeout_s = 30;
  MpiCommunicator comm(*runtime, o);
  const int64_t b = 16;
  const io::Dataset data = banded(300, 1);
  Context ctx(make_cpu_backend(1), {comm.rank(), comm.size(), comm.host()});
  Model m(ctx.backend(), wide);
  SharedBuffer grads = comm.allocate(m.param_count());
  m.place_grads(grads.data());
  {
    AllreduceStrategy strategy(comm, 64 << 10);
    train(ctx, m, data, nullptr, config(b), strategy);
  }
  if (comm.shares_buffers() && comm.size() > 1) {
    EXPECT_GT(comm.in_place_allreduces(), 0) << "the shared gradients never took the in-place path";
  }
  const std::vector<float> mine = m.get_params(), single = train_local(data, b * comm.size(), wide);
  EXPECT_LT(test::rel_l2(mine, single), 1e-4) << "parameters differ from the single process";
}

// Every layer with parameters reports its range; a 1-float threshold sends each alone, a
// huge one sends the step's gradients as one bucket. The timeline holds each with its bytes.
TEST(Fusion, BucketsFollowTheThreshold) {
  MpiCommunicator comm(*runtime, CommOptions{});
  const io::Dataset data = banded(200, 2);
  for (size_t threshold : {size_t(4), size_t(1) << 30}) {
    Context ctx(make_cpu_backend(1), {comm.rank(), comm.size(), comm.host()});
    Model m(ctx.backend(), tiny_cnn());
    Timeline tl(comm.rank(), Timeline::Clock::now());
    TrainConfig c = config(8);
    c.timeline = &tl;
    {
      AllreduceStrategy strategy(comm, threshold, &tl);
      train(ctx, m, data, nullptr, c, strategy);
    }
    const std::string json = tl.events_json();
    size_t buckets = 0, pos = 0;
    while ((pos = json.find("\"name\":\"allreduce\"", pos)) != std::string::npos) ++buckets, ++pos;
    EXPECT_EQ(buckets, threshold == 4 ? 3u * 20 : 20u) << "threshold " << threshold;
    const std::string whole = "\"bytes\":" + std::to_string(m.param_count() * 4);
    EXPECT_EQ(json.find(whole) != std::string::npos, threshold != 4) << json.substr(0, 2000);
    EXPECT_NE(json.find("\"name\":\"backward\""), std::string::npos);
    EXPECT_GT(tl.total_seconds("forward"), 0);
  }
}

}  // namespace
}  // namespace strand::allreduce

int main(int argc, char** argv) {
  if (const char* r = std::getenv("OMPI_COMM_WORLD_RANK"))  // one simulated host per rank
    setenv("STRAND_HOST", ("node-" + std::string(r)).c_str(), 1);
  strand::allreduce::MpiRuntime mpi(&argc, &argv);
  strand::allreduce::runtime = &mpi;
  ::testing::InitGoogleTest(&argc, argv);
  if (mpi.world_rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  return RUN_ALL_TESTS();
}
