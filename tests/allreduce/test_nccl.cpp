// The GPU half of the allreduce module, under mpirun (one GPU per rank, or several ranks on one
// GPU, each with its own NCCL_HOSTID): NcclCommunicator's exact sums and means, flat and
// hierarchical (ranks spread over simulated hosts, two per host), for awkward sizes up to
// 64 MiB; collectives queued on a Lane and replayed inside recorded steps (CUDA graphs);
// buckets equal the whole buffer bit for bit; and data-parallel training on the GPU (NCCL on a
// lane, and buckets staged through pinned memory into the MPI ring) following one GPU process
// with the global batch. Exits 77 (skipped) without a GPU or in a build without NCCL.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <strand/allreduce/nccl_communicator.hpp>
#include <strand/allreduce/strategy.hpp>
#include <strand/core/backend.hpp>
#include <strand/train/trainer.hpp>
#include "tests/train/tiny_task.hpp"

namespace strand::allreduce {

MpiRuntime* runtime = nullptr;

namespace {

CommOptions options() {
  CommOptions o;
  o.timeout_s = 60;
  return o;
}

int my_gpu(const MpiCommunicator& host) { return host.local_rank() % cuda_device_count(); }

class Flavours : public ::testing::TestWithParam<bool> {};  // hierarchical?

TEST_P(Flavours, ExactSumsAndMeansOnTheDevice) {
  MpiCommunicator host(*runtime, options());
  NcclCommunicator comm(host, my_gpu(host), 60, GetParam());
  auto be = make_cuda_backend(my_gpu(host));
  const int p = comm.size();
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(1000003), int64_t(16) << 20}) {
    std::vector<float> h(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) h[size_t(i)] = float((comm.rank() + 1) * (i % 1021));
    Buffer d = be->alloc(std::max<size_t>(1, h.size()) * sizeof(float));
    be->to_device(d.data(), h.data(), h.size() * sizeof(float));
    comm.allreduce_sum(d.f32(), n);
    be->to_host(h.data(), d.data(), h.size() * sizeof(float));
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; ++i) wrong += h[size_t(i)] != float((p * (p + 1) / 2) * (i % 1021));
    EXPECT_EQ(wrong, 0) << comm.name() << ": " << n << " floats, " << p << " ranks";
    // Every rank holds the same integers: their mean is those integers again.
    for (int64_t i = 0; i < n; ++i) h[size_t(i)] = float(i % 1021);
    be->to_device(d.data(), h.data(), h.size() * sizeof(float));
    comm.allreduce_mean(d.f32(), n);
    be->to_host(h.data(), d.data(), h.size() * sizeof(float));
    wrong = 0;
    for (int64_t i = 0; i < n; ++i)
      wrong += std::abs(h[size_t(i)] - float(i % 1021)) > 1e-3f * float(i % 1021);
    EXPECT_EQ(wrong, 0) << comm.name() << ": mean of " << n << " floats";
  }
}

INSTANTIATE_TEST_SUITE_P(Nccl, Flavours, ::testing::Values(false, true));

// Each step: g += 1, the mean over the ranks on the lane, g += 1. Steps after the first at a
// batch size are recorded as CUDA graphs with the lane's collective inside and replayed; every
// rank must end with mean(rank) + 2 * steps, exactly (halves and integers).
TEST(Nccl, LaneCollectivesRunInsideRecordedSteps) {
  MpiCommunicator host(*runtime, options());
  NcclCommunicator comm(host, my_gpu(host), 60);
  auto be = make_cuda_backend(my_gpu(host));  // graphs on
  const int64_t n = 1000003;
  const std::vector<float> start(size_t(n), float(comm.rank())), ones(size_t(n), 1.0f);
  Buffer g = be->alloc(size_t(n) * sizeof(float)), one = be->alloc(size_t(n) * sizeof(float));
  be->to_device(g.data(), start.data(), start.size() * sizeof(float));
  be->to_device(one.data(), ones.data(), ones.size() * sizeof(float));
  std::unique_ptr<Lane> lane = be->make_lane();
  ASSERT_NE(lane, nullptr);
  const int steps = 5;
  for (int s = 0; s < steps; ++s) {
    be->begin_step(1);
    be->sgd_step(n, -1.0f, g.f32(), one.f32());  // g += 1
    lane->follow();
    comm.queue_allreduce_mean(*lane, g.f32(), n);
    lane->join();
    be->sgd_step(n, -1.0f, g.f32(), one.f32());
    be->end_step();
    comm.wait(*lane, lane->mark());
    EXPECT_GE(lane->join_wait_seconds(), 0) << "step " << s << ": the wait at the join was not timed";
  }
  std::vector<float> got(static_cast<size_t>(n));
  be->to_host(got.data(), g.data(), got.size() * sizeof(float));
  const float want = float(comm.size() - 1) / 2 + 2.0f * steps;
  int64_t wrong = 0;
  for (float v : got) wrong += v != want;
  EXPECT_EQ(wrong, 0) << "want " << want << ", first " << got[0];
}

// Buckets queued one after another on a lane give the bits of one reduction of the whole
// buffer. Multiples of 1/64 below 2^10: every partial sum is exact, in any order.
TEST(Nccl, QueuedBucketsEqualTheWholeBufferBitForBit) {
  MpiCommunicator host(*runtime, options());
  NcclCommunicator comm(host, my_gpu(host), 60);
  auto be = make_cuda_backend(my_gpu(host), {.graphs = false});
  const int64_t n = 1000003;
  std::vector<float> h(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    h[size_t(i)] = float(int64_t(mix64(uint64_t(i * 31 + comm.rank())) % 4096)) / 64;
  Buffer whole = be->alloc(size_t(n) * sizeof(float)), parts = be->alloc(size_t(n) * sizeof(float));
  be->to_device(whole.data(), h.data(), h.size() * sizeof(float));
  be->to_device(parts.data(), h.data(), h.size() * sizeof(float));
  comm.allreduce_mean(whole.f32(), n);
  std::unique_ptr<Lane> lane = be->make_lane();
  for (int64_t end = n; end > 0;) {  // last first, as backward reports them; uneven sizes
    const int64_t begin = std::max<int64_t>(0, end - 65537);
    lane->follow();
    comm.queue_allreduce_mean(*lane, parts.f32() + begin, end - begin);
    end = begin;
  }
  lane->join();
  comm.wait(*lane, lane->mark());
  std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
  be->to_host(a.data(), whole.data(), a.size() * sizeof(float));
  be->to_host(b.data(), parts.data(), b.size() * sizeof(float));
  EXPECT_TRUE(a == b) << "queued buckets differ from the whole reduction";
}

TrainConfig config(int64_t batch) { return test::tiny_recipe(batch); }

// 20 steps of tiny_cnn at batch b on this rank's GPU through `strategy` (nullptr: one process).
std::vector<float> train_gpu(int device, bool graphs, const io::Dataset& data, int64_t b, Strategy* strategy,
                             Identity id = {}) {
  Context ctx(make_cuda_backend(device, {.graphs = graphs}), std::move(id), [](std::string_view) {});
  Model m(ctx.backend(), test::tiny_cnn());
  LocalStrategy local;
  train(ctx, m, data, nullptr, config(b), strategy ? *strategy : local);
  return m.get_params();
}

// "nccl", "nccl-hierarchical" (on a lane, CUDA graphs on) or "staged-ring" (pinned mirror,
// MPI ring, graphs off: what strand train runs for each).
class GpuPaths : public ::testing::TestWithParam<std::string> {};

TEST_P(GpuPaths, RanksMatchOneProcessWithTheGlobalBatch) {
  const std::string path = GetParam();
  MpiCommunicator host(*runtime, options());
  const int device = my_gpu(host);
  const bool staged = path == "staged-ring";
  std::unique_ptr<NcclCommunicator> nccl;
  if (!staged) nccl = std::make_unique<NcclCommunicator>(host, device, 60, path == "nccl-hierarchical");
  Communicator& comm = staged ? static_cast<Communicator&>(host) : *nccl;
  const io::Dataset data = test::banded(300, 1);
  const int64_t b = 16;
  std::vector<float> mine;
  {
    AllreduceStrategy s(comm, 256);
    mine = train_gpu(device, !staged, data, b, &s, {comm.rank(), comm.size(), comm.host()});
    EXPECT_EQ(s.path(), staged ? AllreduceStrategy::Path::Staged : AllreduceStrategy::Path::Lane);
    EXPECT_GT(s.buckets_during_backward(), 0);
  }
  std::vector<float> rank0 = mine;
  comm.broadcast(rank0.data(), rank0.size() * sizeof(float), 0);
  EXPECT_TRUE(mine == rank0) << path << ": rank " << comm.rank() << " holds other parameters than rank 0";
  const std::vector<float> single = train_gpu(device, true, data, b * comm.size(), nullptr);
  EXPECT_LT(test::rel_l2(mine, single), 1e-4)
      << path << ": differs from one GPU process with the global batch";
  if (comm.size() > 1) {
    EXPECT_FALSE(single == train_gpu(device, true, data, b, nullptr)) << "the batch size does not matter";
  }
}

INSTANTIATE_TEST_SUITE_P(Gpu, GpuPaths, ::testing::Values("nccl", "nccl-hierarchical", "staged-ring"));

// Training with buckets overlapped with backward gives the bits of one whole-gradient bucket
// (two ranks: each sum has the same two terms whatever NCCL's chunking).
TEST(Gpu, OverlappedBucketsEqualOneWholeBucketBitForBit) {
  MpiCommunicator host(*runtime, options());
  if (host.size() != 2) GTEST_SKIP() << "bit equality holds for two ranks";
  const int device = my_gpu(host);
  NcclCommunicator comm(host, device, 60);
  const io::Dataset data = test::banded(300, 1);
  const Identity id{comm.rank(), comm.size(), comm.host()};
  AllreduceStrategy bucketed(comm, 256), whole(comm, size_t(1) << 30);
  const std::vector<float> a = train_gpu(device, true, data, 16, &bucketed, id);
  const std::vector<float> b = train_gpu(device, true, data, 16, &whole, id);
  EXPECT_GT(bucketed.buckets(), whole.buckets());
  EXPECT_TRUE(a == b) << "overlapped buckets and one bucket after backward differ";
}

}  // namespace
}  // namespace strand::allreduce

int main(int argc, char** argv) {
  if (!strand::allreduce::nccl_built() || strand::cuda_device_count() == 0) {
    std::printf("no GPU or no NCCL in this build: skipping\n");
    return 77;
  }
  if (const char* r = std::getenv("OMPI_COMM_WORLD_RANK"))  // two ranks per simulated host
    setenv("STRAND_HOST", ("node-" + std::to_string(std::atoi(r) / 2)).c_str(), 1);
  strand::allreduce::MpiRuntime mpi(&argc, &argv);
  strand::allreduce::runtime = &mpi;
  ::testing::InitGoogleTest(&argc, argv);
  if (mpi.world_rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  return RUN_ALL_TESTS();
}
