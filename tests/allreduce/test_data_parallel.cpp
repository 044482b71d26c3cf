// Data-parallel training under mpirun -np 2: two ranks with batch B follow one process with
// batch 2B (same seed, dropout included) within 1e-4 after 20 steps, for each algorithm;
// every rank ends with the same bits; fusion sends the buckets the threshold implies and the
// timeline records them with their bytes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include <strand/allreduce/mpi_communicator.hpp>
#include <strand/allreduce/strategy.hpp>
#include <strand/core/error.hpp>
#include <strand/core/layers.hpp>
#include <strand/train/trainer.hpp>
#include "tests/train/tiny_task.hpp"

namespace strand::allreduce {

MpiRuntime* runtime = nullptr;

namespace {

using test::banded;
using test::tiny_cnn;

TrainConfig config(int64_t batch) {
  TrainConfig c;
  c.batch_size = batch;
  c.seed = 11;
  c.max_steps = 20;
  c.epochs = 5;
  c.optimizer.lr = 1e-2f;
  c.schedule.kind = LrSchedule::Cosine;
  return c;
}

std::vector<float> train_local(const io::Dataset& data, int64_t batch, const ModelArch& arch = tiny_cnn()) {
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), arch);
  train(ctx, m, data, nullptr, config(batch));
  return m.get_params();
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
  std::vector<float> mine = m.get_params(), rank0 = mine;
  comm.broadcast(rank0.data(), rank0.size() * sizeof(float), 0);
  EXPECT_TRUE(mine == rank0) << "rank " << comm.rank() << " holds other parameters than rank 0";

  const std::vector<float> single = train_local(data, b * comm.size());
  double diff = 0, norm = 0, worst = 0;
  for (size_t i = 0; i < single.size(); ++i) {
    const double d = std::abs(double(mine[i]) - single[i]);
    diff += d * d;
    norm += double(single[i]) * single[i];
    worst = std::max(worst, d / (std::abs(double(single[i])) + 1e-3));
  }
  EXPECT_LT(std::sqrt(diff / norm), 1e-4) << GetParam() << ": parameters differ from the single process";
  EXPECT_LT(worst, 1e-3) << GetParam() << ": worst element (relative, 1e-3 floor)";
  // The run really trained: a different global batch gives different weights.
  if (comm.size() > 1) {
    EXPECT_FALSE(single == train_local(data, b))
        << "the batch size does not matter: the equality above proves nothing";
  }
}

INSTANTIATE_TEST_SUITE_P(Algorithms, Equality, ::testing::Values("ring", "hierarchical", "mpi"));

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
  double diff = 0, norm = 0;
  for (size_t i = 0; i < single.size(); ++i) {
    diff += (double(mine[i]) - single[i]) * (double(mine[i]) - single[i]);
    norm += double(single[i]) * single[i];
  }
  EXPECT_LT(std::sqrt(diff / norm), 1e-4) << "parameters differ from the single process";
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
