// ShmChannel (allreduce/shm_channel.hpp) under mpirun: messages of every length up to a chunk
// reach the right neighbour in order, through more messages than slots; nothing arrives
// before it is sent; a sender whose slots are all unconsumed is refused until its neighbour
// releases one; the cache size it reports for the ring is the largest level's.
#include <gtest/gtest.h>

#include <fstream>
#include <vector>

#include <strand/allreduce/shm_channel.hpp>
#include "tests/allreduce/mpi_test.hpp"

namespace strand::allreduce::test {
namespace {

// Message m from `rank`: its length and contents.
int64_t length(int64_t m) { return m % 3 == 0 ? ShmChannel::kChunk : 1 + (m * 7919) % ShmChannel::kChunk; }
float value(int rank, int64_t m, int64_t i) { return float(rank * 1000 + m) + float(i % 97) / 128; }

TEST(ShmChannel, MessagesArriveInOrder) {
  auto g = world_group();
  if (g->size() < 2) GTEST_SKIP() << "needs a neighbour";
  ShmChannel ch(*g);
  EXPECT_EQ(ch.chunk(), ShmChannel::kChunk);
  const int p = g->size(), r = g->rank(), left = (r - 1 + p) % p;
  constexpr int64_t kMessages = 5 * ShmChannel::kSlots + 1;
  std::vector<float> out(size_t(ShmChannel::kChunk));
  int64_t sent = 0, received = 0, wrong = 0;
  const auto t0 = Clock::now();
  bool warned = false;
  while (sent < kMessages || received < kMessages) {
    bool progress = false;
    if (sent < kMessages) {
      for (int64_t i = 0; i < length(sent); ++i) out[size_t(i)] = value(r, sent, i);
      if (ch.try_send(out.data(), length(sent))) {
        ++sent;
        progress = true;
      }
    }
    if (received < kMessages) {
      if (const float* in = ch.peek()) {
        for (int64_t i = 0; i < length(received); ++i) wrong += in[i] != value(left, received, i);
        ch.release();
        ++received;
        progress = true;
      }
    }
    if (!progress)
      g->pause(
          t0, warned, [] { return std::string("a neighbour"); }, false, "the test");
  }
  EXPECT_EQ(wrong, 0);
}

TEST(ShmChannel, NothingArrivesBeforeItIsSent) {
  auto g = world_group();
  if (g->size() < 2) GTEST_SKIP() << "needs a neighbour";
  ShmChannel ch(*g);
  EXPECT_EQ(ch.peek(), nullptr);
  MPI_Barrier(g->comm());  // every member has looked
  const float x = float(g->rank());
  ASSERT_TRUE(ch.try_send(&x, 1));
  const float* in = nullptr;
  const auto t0 = Clock::now();
  bool warned = false;
  while (!(in = ch.peek()))
    g->pause(
        t0, warned, [] { return std::string("the left neighbour"); }, false, "test");
  EXPECT_EQ(*in, float((g->rank() - 1 + g->size()) % g->size()));
  ch.release();
}

TEST(ShmChannel, FullSlotsRefuseASendUntilOneIsReleased) {
  auto g = world_group();
  if (g->size() < 2) GTEST_SKIP() << "needs a neighbour";
  ShmChannel ch(*g);
  const float x = 1;
  for (int s = 0; s < ShmChannel::kSlots; ++s) ASSERT_TRUE(ch.try_send(&x, 1)) << "slot " << s;
  EXPECT_FALSE(ch.try_send(&x, 1));
  MPI_Barrier(g->comm());  // every member's slots are full
  const auto t0 = Clock::now();
  bool warned = false;
  while (!ch.peek())
    g->pause(
        t0, warned, [] { return std::string("the left neighbour"); }, false, "test");
  ch.release();  // one of the left neighbour's slots is free again
  MPI_Barrier(g->comm());
  EXPECT_TRUE(ch.try_send(&x, 1));
  EXPECT_FALSE(ch.try_send(&x, 1));
}

TEST(ShmChannel, KnowsTheLastLevelCache) {
  auto g = world_group();
  if (g->size() < 2) GTEST_SKIP() << "needs a neighbour";
  ShmChannel ch(*g);
  std::ifstream l1("/sys/devices/system/cpu/cpu0/cache/index0/size");
  int64_t l1_kib = 0;
  if (!(l1 >> l1_kib)) GTEST_SKIP() << "the system lists no caches";
  EXPECT_GT(ch.cache_bytes(), l1_kib << 10);  // a larger level than the first
}

}  // namespace
}  // namespace strand::allreduce::test
