// NcclCommunicator on GPU buffers (run under mpirun, one GPU per rank): exact sums of
// integer-valued floats and exact means, for awkward sizes. Exits 77 (skipped) without a GPU
// or in a build without NCCL.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include <strand/allreduce/nccl_communicator.hpp>
#include <strand/core/backend.hpp>

namespace strand::allreduce {

MpiRuntime* runtime = nullptr;

namespace {

TEST(Nccl, ExactSumsAndMeansOnTheDevice) {
  CommOptions o;
  o.timeout_s = 60;
  MpiCommunicator host(*runtime, o);
  const int device = host.local_rank() % cuda_device_count();
  NcclCommunicator comm(host, device, o.timeout_s);
  auto be = make_cuda_backend(device);
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
    EXPECT_EQ(wrong, 0) << n << " floats, " << p << " ranks";
    // Every rank holds the same integers: their mean is those integers again.
    for (int64_t i = 0; i < n; ++i) h[size_t(i)] = float(i % 1021);
    be->to_device(d.data(), h.data(), h.size() * sizeof(float));
    comm.allreduce_mean(d.f32(), n);
    be->to_host(h.data(), d.data(), h.size() * sizeof(float));
    wrong = 0;
    for (int64_t i = 0; i < n; ++i)
      wrong += std::abs(h[size_t(i)] - float(i % 1021)) > 1e-3f * float(i % 1021);
    EXPECT_EQ(wrong, 0) << "mean of " << n << " floats";
  }
}

}  // namespace
}  // namespace strand::allreduce

int main(int argc, char** argv) {
  if (!strand::allreduce::nccl_built() || strand::cuda_device_count() == 0) {
    std::printf("no GPU or no NCCL in this build: skipping\n");
    return 77;
  }
  strand::allreduce::MpiRuntime mpi(&argc, &argv);
  strand::allreduce::runtime = &mpi;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
