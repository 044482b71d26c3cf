// The consistency policies on their own (no sockets, no server): what each mode applies, when,
// with which values, when a pull may read, what it refuses, and how a worker that is gone or a
// re-initialized chunk changes that. A fake server records the updates.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <strand/ps/consistency.hpp>

namespace strand::ps {
namespace {

struct Update {
  uint32_t id;
  std::vector<float> grads;
  float lr;
};

struct FakeServer final : PolicyHost {
  FakeServer(const ShardMap& m, int workers)
      : map(m), alive(size_t(workers), true), from(size_t(workers), 0) {}
  bool counts(int worker, int64_t step) const override {
    return alive[size_t(worker)] && step >= from[size_t(worker)];
  }
  bool active(int worker) const override { return alive[size_t(worker)] && from[size_t(worker)] >= 0; }
  void apply(uint32_t id, const float* g, float lr) override {
    updates.push_back({id, std::vector<float>(g, g + map.chunks[id].size()), lr});
  }
  ShardMap map;
  std::vector<bool> alive;
  std::vector<int64_t> from;  // the step each worker joined at (0: from the start)
  std::vector<Update> updates;
};

Message frame(const std::vector<float>& v) { return Message(v.data(), v.size() * sizeof(float)); }

// Two chunks of 4 floats, both on server 0.
const ShardMap kMap = ShardMap::build(8, 4 * 4, 1);

std::unique_ptr<ConsistencyPolicy> policy(const std::string& mode, FakeServer& s) {
  return make_policy(Consistency::parse(mode), s.map, 0, int(s.alive.size()), s);
}

void expect_refused(const ConsistencyPolicy& p, uint32_t id, int worker, int64_t step,
                    const std::string& why) {
  try {
    p.check_push(id, worker, step);
    ADD_FAILURE() << "worker " << worker << "'s push of step " << step << " was accepted";
  } catch (const Refusal& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(e.message().find(why), std::string::npos) << e.message();
  }
}

// ---------------------------------------------------------------- sync

TEST(SyncPolicy, AppliesTheMeanOnceEveryLiveWorkerPushedSummedInRankOrder) {
  FakeServer s(kMap, 3);
  auto p = policy("sync", s);
  const std::vector<float> g0 = {1, 2, 3, 4}, g1 = {0.1f, 0.2f, 0.3f, 1e8f}, g2 = {-1, 0.5f, 7, -1e8f};
  EXPECT_TRUE(p->readable(0, 0));
  EXPECT_EQ(p->push(0, 2, frame(g2), 0.3f), 0);
  EXPECT_EQ(p->push(0, 0, frame(g0), 0.1f), 0);
  EXPECT_TRUE(s.updates.empty()) << "applied before worker 1's gradient";
  EXPECT_FALSE(p->readable(0, 1));
  p->push(0, 1, frame(g1), 0.2f);
  ASSERT_EQ(s.updates.size(), 1u);
  EXPECT_EQ(s.updates[0].id, 0u);
  EXPECT_EQ(s.updates[0].lr, 0.1f) << "the lowest rank's learning rate";
  for (size_t i = 0; i < 4; ++i)  // (g0 + g1) + g2, whatever order they came in
    EXPECT_EQ(s.updates[0].grads[i], ((g0[i] + g1[i]) + g2[i]) * (1.0f / 3)) << i;
  EXPECT_TRUE(p->readable(0, 1));
  EXPECT_FALSE(p->readable(0, 2));
  EXPECT_FALSE(p->readable(1, 1)) << "chunk 1 has its own rounds";
}

TEST(SyncPolicy, RefusesASecondGradientAndAnotherStep) {
  FakeServer s(kMap, 2);
  auto p = policy("sync", s);
  EXPECT_NO_THROW(p->check_push(0, 0, 0));
  expect_refused(*p, 0, 0, 1, "collecting step 0");
  p->push(0, 0, frame({1, 1, 1, 1}), 1.f);
  expect_refused(*p, 0, 0, 0, "has this worker's gradient");
  EXPECT_NO_THROW(p->check_push(0, 1, 0));
  EXPECT_NO_THROW(p->check_push(1, 0, 0));
  p->push(0, 1, frame({3, 3, 3, 3}), 1.f);
  EXPECT_NO_THROW(p->check_push(0, 0, 1));
  expect_refused(*p, 0, 0, 0, "collecting step 1");
}

TEST(SyncPolicy, AWorkerGoneCompletesTheRoundsThatWaitedForIt) {
  FakeServer s(kMap, 2);
  auto p = policy("sync", s);
  const std::vector<float> g = {0.5f, -0.25f, 3, 1e-3f};
  p->push(0, 0, frame(g), 0.5f);
  p->members_changed();  // nobody has gone yet: still waiting
  EXPECT_TRUE(s.updates.empty());
  s.alive[1] = false;
  p->members_changed();
  ASSERT_EQ(s.updates.size(), 1u);
  EXPECT_TRUE(s.updates[0].grads == g) << "the mean of one gradient is itself";
  EXPECT_TRUE(p->readable(0, 1));
  EXPECT_FALSE(p->readable(1, 1)) << "chunk 1 had no gradient: no round to complete";
  // From now on worker 0 alone completes each round.
  p->push(0, 0, frame(g), 0.5f);
  EXPECT_EQ(s.updates.size(), 2u);
}

TEST(SyncPolicy, ResetDropsTheRoundAndStartsAtStepZero) {
  FakeServer s(kMap, 2);
  auto p = policy("sync", s);
  p->push(0, 0, frame({1, 1, 1, 1}), 1.f);
  p->push(0, 1, frame({1, 1, 1, 1}), 1.f);
  p->push(0, 0, frame({5, 5, 5, 5}), 1.f);  // step 1, then the chunk is initialized again
  ASSERT_EQ(s.updates.size(), 1u);
  p->reset(0, 0);
  EXPECT_FALSE(p->readable(0, 1));
  EXPECT_NO_THROW(p->check_push(0, 0, 0));
  p->push(0, 1, frame({2, 2, 2, 2}), 1.f);
  EXPECT_EQ(s.updates.size(), 1u) << "worker 0's gradient from before the reset was used";
  p->push(0, 0, frame({4, 4, 4, 4}), 1.f);
  ASSERT_EQ(s.updates.size(), 2u);
  EXPECT_EQ(s.updates[1].grads[0], 3.f);
}

TEST(SyncPolicy, ResetStartsTheRoundsAtTheJobsStep) {
  FakeServer s(kMap, 1);
  auto p = policy("sync", s);
  p->reset(0, 40);
  p->reset(1, 40);
  EXPECT_TRUE(p->readable(0, 40));
  EXPECT_FALSE(p->readable(0, 41));
  expect_refused(*p, 0, 0, 0, "collecting step 40");
  p->push(0, 0, frame({1, 1, 1, 1}), 1.f);
  EXPECT_TRUE(p->readable(0, 41));
  EXPECT_EQ(p->frontier(), 42) << "chunk 0 collects step 41: nobody has pushed step 42 yet";
}

TEST(SyncPolicy, AJoinerIsWaitedForFromItsStartOn) {
  FakeServer s(kMap, 1);
  auto p = policy("sync", s);
  const std::vector<float> a = {1, 2, 3, 4}, b = {3, 2, 1, 0};
  p->push(0, 0, frame(a), 1.f);  // step 0, one worker
  ASSERT_EQ(s.updates.size(), 1u);
  EXPECT_EQ(p->frontier(), 2);
  // Worker 1 joins at step 2: round 1 goes on without it, round 2 waits for it.
  s.alive.push_back(true);
  s.from.push_back(2);
  p->grow(2);
  p->joined(1, 2);
  p->members_changed();
  p->push(0, 0, frame(a), 1.f);
  ASSERT_EQ(s.updates.size(), 2u) << "round 1 waited for a worker that starts at step 2";
  p->push(0, 0, frame(a), 1.f);
  EXPECT_EQ(s.updates.size(), 2u) << "round 2 was applied without the joiner";
  p->push(0, 1, frame(b), 1.f);
  ASSERT_EQ(s.updates.size(), 3u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(s.updates[2].grads[i], (a[i] + b[i]) * 0.5f) << i;
}

// ---------------------------------------------------------------- async

TEST(AsyncPolicy, AppliesEachGradientAtOnceAndPullsNeverWait) {
  FakeServer s(kMap, 2);
  auto p = policy("async", s);
  for (int64_t step = 0; step < 3; ++step) {
    EXPECT_NO_THROW(p->check_push(0, 0, 7));  // the step is not checked
    EXPECT_EQ(p->push(0, 0, frame({float(step), 0, 0, 0}), 0.1f * float(step + 1)), step) << "steps ahead";
    ASSERT_EQ(s.updates.size(), size_t(step + 1));
    EXPECT_EQ(s.updates.back().grads[0], float(step));
    EXPECT_EQ(s.updates.back().lr, 0.1f * float(step + 1));
  }
  EXPECT_TRUE(p->readable(0, 100));
  EXPECT_EQ(p->push(0, 1, frame({0, 0, 0, 0}), 1.f), 0);  // the slow worker is behind, not ahead
  EXPECT_EQ(p->push(1, 0, frame({0, 0, 0, 0}), 1.f), 0) << "chunk 1 keeps its own clocks";
  s.alive[1] = false;
  p->members_changed();
  EXPECT_EQ(p->push(0, 0, frame({0, 0, 0, 0}), 1.f), 0) << "a gone worker is no longer the slowest";
  p->reset(0, 0);
  s.alive[1] = true;
  EXPECT_EQ(p->push(0, 0, frame({0, 0, 0, 0}), 1.f), 0) << "reset clocks";
}

TEST(AsyncPolicy, AJoinerStartsWithTheClockOfItsStart) {
  FakeServer s(kMap, 1);
  auto p = policy("ssp:1", s);
  for (int k = 0; k < 5; ++k) p->push(0, 0, frame({1, 0, 0, 0}), 1.f);
  EXPECT_EQ(p->frontier(), 6) << "worker 0's next push is its step 5: it may have read at clock 5";
  s.alive.push_back(true);
  s.from.push_back(-1);  // pending: not among the workers the slowest is taken from
  p->grow(2);
  EXPECT_TRUE(p->readable(0, 6)) << "a worker not yet started holds nobody back";
  s.from[1] = 6;
  p->joined(1, 6);
  EXPECT_TRUE(p->readable(0, 6));
  EXPECT_FALSE(p->readable(0, 7)) << "worker 0 is the slowest, at step 5";
  p->push(0, 0, frame({1, 0, 0, 0}), 1.f);
  EXPECT_TRUE(p->readable(0, 7)) << "both are at step 6";
  EXPECT_FALSE(p->readable(0, 8));
  EXPECT_EQ(p->push(0, 1, frame({1, 0, 0, 0}), 1.f), 0) << "the joiner is not ahead";
}

// ---------------------------------------------------------------- ssp

TEST(SspPolicy, APullWaitsUntilTheSlowestIsWithinSSteps) {
  FakeServer s(kMap, 2);
  auto p = policy("ssp:1", s);
  // A worker that has pushed t steps reads once every live worker has pushed t-1.
  EXPECT_TRUE(p->readable(0, 1));
  EXPECT_FALSE(p->readable(0, 2));
  EXPECT_EQ(p->push(0, 0, frame({1, 0, 0, 0}), 1.f), 0);
  EXPECT_EQ(p->push(0, 0, frame({2, 0, 0, 0}), 1.f), 1);
  EXPECT_EQ(s.updates.size(), 2u) << "applied on arrival";
  EXPECT_FALSE(p->readable(0, 2));
  p->push(0, 1, frame({3, 0, 0, 0}), 1.f);
  EXPECT_TRUE(p->readable(0, 2));
  EXPECT_FALSE(p->readable(0, 3));
  EXPECT_FALSE(p->readable(1, 2)) << "chunk 1 keeps its own clocks";
  s.alive[1] = false;
  p->members_changed();
  EXPECT_TRUE(p->readable(0, 3)) << "a gone worker holds nobody back";
  EXPECT_FALSE(p->readable(0, 4));
  p->reset(0, 0);
  EXPECT_FALSE(p->readable(0, 2));
  EXPECT_NO_THROW(p->check_push(0, 0, 9));
}

TEST(SspPolicy, StalenessZeroIsLockstepForReads) {
  FakeServer s(kMap, 2);
  auto p = policy("ssp:0", s);
  EXPECT_TRUE(p->readable(0, 0));
  EXPECT_FALSE(p->readable(0, 1));
  p->push(0, 0, frame({1, 0, 0, 0}), 1.f);
  EXPECT_FALSE(p->readable(0, 1));
  p->push(0, 1, frame({1, 0, 0, 0}), 1.f);
  EXPECT_TRUE(p->readable(0, 1));
  EXPECT_EQ(s.updates.size(), 2u);
}

}  // namespace
}  // namespace strand::ps
