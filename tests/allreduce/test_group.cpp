// Group (allreduce/group.hpp) under mpirun: messages around the ring, members named by world
// rank and host, a wait with nothing to receive that warns and then times out naming the
// silent peer, the idle poll's warning and timeout, and the chunked send from a root.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <strand/core/error.hpp>
#include "tests/allreduce/mpi_test.hpp"

namespace strand::allreduce::test {
namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(Group, MessagesAroundTheRing) {
  auto g = world_group();
  const int p = g->size(), r = g->rank();
  int got = -1, mine = 100 + r;
  std::vector<Pending> pending{g->irecv(&got, sizeof got, (r - 1 + p) % p),
                               g->isend(&mine, sizeof mine, (r + 1) % p)};
  g->wait_all(pending, "test ring");
  EXPECT_TRUE(pending.empty());
  EXPECT_EQ(got, 100 + (r - 1 + p) % p);
}

TEST(Group, NamesMembersByWorldRankAndHost) {
  auto g = split_group(runtime->world_rank() % 2);
  const int w = runtime->world_rank(), world = runtime->world_size();
  const std::string host = "node-" + std::to_string(w % 2);
  EXPECT_EQ(g->where(), "rank " + std::to_string(w) + "/" + std::to_string(world) + " " + host);
  EXPECT_EQ(g->describe(g->rank()), "rank " + std::to_string(w) + " (" + host + ")");
  EXPECT_EQ(g->describe(0), "rank " + std::to_string(w % 2) + " (" + host + ")");  // the colour's first rank
  EXPECT_TRUE(g->shares_memory());                                                 // one machine
}

TEST(Group, ASilentPeerIsNamedInTheWarningAndTheTimeout) {
  if (runtime->world_size() < 2) GTEST_SKIP() << "needs a peer";
  std::vector<std::string> logged;
  CommOptions o = test_options();
  o.timeout_s = 0.4;
  o.stall_warning_s = 0.1;
  o.log = [&](std::string_view line) { logged.emplace_back(line); };
  auto g = world_group(o);
  int value = 0;
  if (g->rank() == 0) {
    // Rank 1 sends only after the barrier below, once rank 0 has given up.
    std::vector<Pending> pending{g->irecv(&value, sizeof value, 1)};
    try {
      g->wait_all(pending, "the test's wait");
      ADD_FAILURE() << "no timeout";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Timeout);
      EXPECT_TRUE(contains(e.what(), "no message from rank 1 (")) << e.what();
      EXPECT_TRUE(contains(e.what(), "the test's wait")) << e.what();
    }
    ASSERT_EQ(logged.size(), 1u);
    EXPECT_TRUE(contains(logged[0], "stalled 0 s in the test's wait, waiting for rank 1 (")) << logged[0];
    MPI_Barrier(MPI_COMM_WORLD);
    g->wait_all(pending, "the test's wait");  // the late message completes the receive
    EXPECT_EQ(value, 7);
  } else {
    MPI_Barrier(MPI_COMM_WORLD);
    value = 7;
    if (g->rank() == 1) g->wait(g->isend(&value, sizeof value, 0), "the late send");
    EXPECT_TRUE(logged.empty());
  }
}

TEST(Group, PauseWarnsOnceThenTimesOut) {
  std::vector<std::string> logged;
  CommOptions o = test_options();
  o.timeout_s = 5;
  o.stall_warning_s = 1;
  o.log = [&](std::string_view line) { logged.emplace_back(line); };
  auto g = world_group(o);
  bool warned = false;
  auto peers = [] { return std::string("rank 9 (elsewhere)"); };
  g->pause(Clock::now(), warned, peers, false, "a fresh wait");
  EXPECT_FALSE(warned);
  EXPECT_TRUE(logged.empty());
  const auto two_s_ago = Clock::now() - std::chrono::seconds(2);
  g->pause(two_s_ago, warned, peers, false, "a long wait");
  g->pause(two_s_ago, warned, peers, false, "a long wait");
  EXPECT_TRUE(warned);
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_EQ(logged[0],
            "[strand " + g->where() + "] stalled 2 s in a long wait, waiting for rank 9 (elsewhere)");
  try {
    g->pause(Clock::now() - std::chrono::seconds(6), warned, peers, true, "a send");
    FAIL() << "no timeout";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Timeout);
    EXPECT_TRUE(contains(e.what(), "messages not taken by rank 9 (elsewhere) for 5 s in a send")) << e.what();
  }
}

TEST(Group, SendFromRootReachesEveryMember) {
  auto g = world_group();
  const int root = g->size() - 1;
  std::vector<int32_t> v(10007, g->rank() == root ? 3 : -1);
  v[5000] = g->rank() == root ? 42 : 0;
  send_from_root(*g, v.data(), v.size() * sizeof(int32_t), root, 1000, "test broadcast");
  EXPECT_EQ(v.front(), 3);
  EXPECT_EQ(v[5000], 42);
  EXPECT_EQ(v.back(), 3);
}

}  // namespace
}  // namespace strand::allreduce::test
