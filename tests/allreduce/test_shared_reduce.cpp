// SharedReduce (allreduce/shared_reduce.hpp) under mpirun: buffers from allocate() start
// zeroed and are summed in place exactly, at each member's own offset too; when any member
// passes other memory (ordinary memory, or another buffer than the rest) every member is told
// so and nothing changes, also when the calls follow each other with nothing in between.
#include <gtest/gtest.h>

#include <vector>

#include <strand/allreduce/shared_reduce.hpp>
#include "tests/allreduce/mpi_test.hpp"

namespace strand::allreduce::test {
namespace {

// Integer-valued, so every order of summation gives the same float.
float value(int rank, int64_t i) { return float((rank + 1) * (i % 1013) - 5); }
float sum(int p, int64_t i) { return float(p * (p + 1) / 2 * (i % 1013) - 5 * p); }

class SharedReduceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (runtime->world_size() < 2) GTEST_SKIP() << "needs two members";
    g = world_group();
    shared = std::make_unique<SharedReduce>(*g);
  }
  std::unique_ptr<Group> g;
  std::unique_ptr<SharedReduce> shared;  // destroyed before the group its windows live on
};

TEST_F(SharedReduceTest, SumsInPlaceExactly) {
  for (int64_t n : {int64_t(1), int64_t(3), int64_t(2049), int64_t(1000003)}) {
    auto [id, data] = shared->allocate(n);
    int64_t nonzero = 0;
    for (int64_t i = 0; i < n; ++i) nonzero += data[i] != 0;
    EXPECT_EQ(nonzero, 0) << n;
    for (int64_t i = 0; i < n; ++i) data[i] = value(g->rank(), i);
    ASSERT_TRUE(shared->try_allreduce(data, n, "test"));
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; ++i) wrong += data[i] != sum(g->size(), i);
    EXPECT_EQ(wrong, 0) << n << " floats";
    shared->release(id);
  }
}

TEST_F(SharedReduceTest, EachMemberAtAnOffsetOfItsOwn) {
  const int64_t n = 100000, offset = 17 * g->rank();
  auto [id, data] = shared->allocate(n + 100);
  for (int64_t i = 0; i < n + 100; ++i) data[i] = -1;
  for (int64_t i = 0; i < n; ++i) data[offset + i] = value(g->rank(), i);
  ASSERT_TRUE(shared->try_allreduce(data + offset, n, "test"));
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) wrong += data[offset + i] != sum(g->size(), i);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(data[offset + n], -1);  // outside the range: untouched
  if (offset > 0) {
    EXPECT_EQ(data[offset - 1], -1);
  }
  shared->release(id);
}

TEST_F(SharedReduceTest, OtherMemoryOnOneMemberChangesNothing) {
  const int64_t n = 5000;
  auto [a, da] = shared->allocate(n);
  auto [b, db] = shared->allocate(n);
  std::vector<float> heap(static_cast<size_t>(n));
  // Back-to-back calls: members that return at once race ahead into the next handshake.
  for (int round = 0; round < 20; ++round) {
    // The last member passes ordinary memory, then buffer b while the others pass a.
    for (float* last_member : {heap.data(), db}) {
      float* data = g->rank() == g->size() - 1 ? last_member : da;
      for (int64_t i = 0; i < n; ++i) data[i] = value(g->rank(), i);
      EXPECT_FALSE(shared->try_allreduce(data, n, "test"));
      int64_t changed = 0;
      for (int64_t i = 0; i < n; ++i) changed += data[i] != value(g->rank(), i);
      EXPECT_EQ(changed, 0);
    }
    // Then all pass a.
    for (int64_t i = 0; i < n; ++i) da[i] = value(g->rank(), i);
    ASSERT_TRUE(shared->try_allreduce(da, n, "test"));
    EXPECT_EQ(da[n - 1], sum(g->size(), n - 1));
  }
  shared->release(b);
  shared->release(a);
}

}  // namespace
}  // namespace strand::allreduce::test
