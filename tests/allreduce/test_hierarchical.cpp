// hierarchical_allreduce (allreduce/hierarchical.hpp) under mpirun with ranks on simulated
// hosts of two (ranks 2k and 2k+1 on host k; with 3 ranks the last host has one): exact sums
// on every rank, with the rings through shared memory and over MPI messages.
#include <gtest/gtest.h>

#include <mpi.h>
#include <memory>
#include <vector>

#include <strand/allreduce/hierarchical.hpp>
#include "tests/allreduce/mpi_test.hpp"

namespace strand::allreduce::test {
namespace {

float value(int rank, int64_t i) { return float((rank + 1) * (i % 1021) - 7); }
float sum(int p, int64_t i) { return float(p * (p + 1) / 2 * (i % 1021) - 7 * p); }

// Param: rings through shared memory (true) or over MPI messages.
class HierarchicalTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    const int me = runtime->world_rank();
    local = split_group(me / 2);
    leaders = split_group(me % 2 == 0 ? 0 : MPI_UNDEFINED);
    if (GetParam()) {
      if (local->size() > 1) local_channel = std::make_unique<ShmChannel>(*local);
      if (leaders && leaders->size() > 1) leaders_channel = std::make_unique<ShmChannel>(*leaders);
    }
  }
  std::unique_ptr<Group> local, leaders;
  std::unique_ptr<ShmChannel> local_channel, leaders_channel;  // destroyed before the groups
  std::vector<float> scratch;
};

TEST_P(HierarchicalTest, ExactSumsOnEveryRank) {
  const int p = runtime->world_size();
  EXPECT_EQ(leaders != nullptr, local->rank() == 0);
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(5), int64_t(300007), int64_t(1) << 20}) {
    std::vector<float> data(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) data[size_t(i)] = value(runtime->world_rank(), i);
    hierarchical_allreduce({.local = *local,
                            .local_channel = local_channel.get(),
                            .leaders = leaders.get(),
                            .leaders_channel = leaders_channel.get()},
                           data.data(), n, 64 << 10, scratch);
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; ++i) wrong += data[size_t(i)] != sum(p, i);
    EXPECT_EQ(wrong, 0) << n << " floats on " << p << " ranks";
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, HierarchicalTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "SharedMemory" : "MpiMessages"; });

}  // namespace
}  // namespace strand::allreduce::test
