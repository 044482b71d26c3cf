// Ring (allreduce/ring.hpp) under mpirun, through the shared-memory channel and over MPI
// messages: exact sums for sizes around the segment and chunk boundaries (fewer floats than
// ranks included), many tiny MPI messages, and the reduce-scatter alone leaving each rank the
// sum of its segment (what the hierarchical algorithm runs).
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include <strand/allreduce/ring.hpp>
#include "tests/allreduce/mpi_test.hpp"

namespace strand::allreduce::test {
namespace {

float value(int rank, int64_t i) { return float((rank + 1) * (i % 1021) - 7); }
float sum(int p, int64_t i) { return float(p * (p + 1) / 2 * (i % 1021) - 7 * p); }

// Param: through the channel (true) or over MPI messages.
class RingTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    g = world_group();
    if (GetParam() && g->size() > 1) channel = std::make_unique<ShmChannel>(*g);
  }
  std::unique_ptr<Group> g;
  std::unique_ptr<ShmChannel> channel;  // destroyed before the group its window lives on
  std::vector<float> scratch;
};

TEST_P(RingTest, ExactSumsAroundSegmentAndChunkBoundaries) {
  const int p = g->size();
  const int64_t chunk = ShmChannel::kChunk;
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(p - 1), int64_t(7), chunk * p, chunk * p + 1,
                    3 * chunk * p - 1, int64_t(1000003)}) {
    std::vector<float> data(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) data[size_t(i)] = value(g->rank(), i);
    Ring(*g, channel.get(), data.data(), n, size_t(chunk) * sizeof(float), scratch).allreduce("test ring");
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; ++i) wrong += data[size_t(i)] != sum(p, i);
    EXPECT_EQ(wrong, 0) << n << " floats on " << p << " ranks";
  }
}

TEST_P(RingTest, TinyMessages) {
  const int64_t n = 3001;
  std::vector<float> data(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) data[size_t(i)] = value(g->rank(), i);
  Ring(*g, channel.get(), data.data(), n, 12, scratch).allreduce("test ring");  // 3 floats a message over MPI
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) wrong += data[size_t(i)] != sum(g->size(), i);
  EXPECT_EQ(wrong, 0);
}

TEST_P(RingTest, ReduceScatterLeavesEachRankTheSumOfItsSegment) {
  const int p = g->size(), r = g->rank();
  const int64_t n = 200003;
  std::vector<float> data(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) data[size_t(i)] = value(r, i);
  Ring ring(*g, channel.get(), data.data(), n, 64 << 10, scratch);
  ring.run(0, ring.reduce_steps(), "test reduce-scatter");
  const int seg = (r + 1) % p;
  EXPECT_EQ(ring.seg_offset(0), 0);
  EXPECT_EQ(ring.seg_offset(p - 1) + ring.seg_len(p - 1), n);
  int64_t wrong = 0;
  for (int64_t i = ring.seg_offset(seg); i < ring.seg_offset(seg) + ring.seg_len(seg); ++i)
    wrong += data[size_t(i)] != (p == 1 ? value(r, i) : sum(p, i));
  EXPECT_EQ(wrong, 0) << "segment " << seg;
}

INSTANTIATE_TEST_SUITE_P(Paths, RingTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "SharedMemory" : "MpiMessages"; });

}  // namespace
}  // namespace strand::allreduce::test
