// ThreadPool: every part runs exactly once, ranges cover the loop, errors come back to the
// caller, nested or concurrent use degrades to serial instead of deadlocking, and wake() never
// passes for a job.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include <strand/core/cpu/thread_pool.hpp>
#include <strand/core/error.hpp>

namespace strand::cpu {
namespace {

TEST(ThreadPool, EveryPartRunsOnceOnItsOwnThread) {
  ThreadPool pool(3);
  for (int job = 0; job < 2000; ++job) {  // many short jobs in a row: the hand-off must not lose any
    std::vector<int> runs(3, 0);
    std::vector<std::thread::id> ids(3);
    pool.run(3, [&](int p) {
      runs[size_t(p)] += 1;
      ids[size_t(p)] = std::this_thread::get_id();
    });
    ASSERT_EQ(runs, (std::vector<int>{1, 1, 1})) << "job " << job;
    ASSERT_EQ(ids[0], std::this_thread::get_id());
    ASSERT_NE(ids[1], ids[0]);
    ASSERT_NE(ids[2], ids[1]);
  }
}

TEST(ThreadPool, ParallelForCoversTheRangeInContiguousPieces) {
  ThreadPool pool(2);
  for (int64_t n : {1, 2, 3, 1000, 100001}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    std::atomic<int> pieces{0};
    pool.parallel_for(n, 2, [&](int64_t b, int64_t e) {
      ++pieces;
      for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
    });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
    EXPECT_EQ(pieces.load(), std::min<int64_t>(n, ThreadPool::kChunksPerThread * 2));
  }
  int calls = 0;
  pool.parallel_for(10, 100, [&](int64_t b, int64_t e) {  // below the threshold: one piece
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 10);
    ++calls;
  });
  EXPECT_EQ(calls, 1);
}

// Chunks go to whichever thread is free: every chunk runs once, on a thread index below the
// pool size, and a thread held up in one chunk leaves the others to the rest.
TEST(ThreadPool, RunChunksHandsChunksToTheFreeThread) {
  ThreadPool pool(2);
  for (int64_t chunks : {1, 2, 3, 64}) {
    std::vector<std::atomic<int>> runs(static_cast<size_t>(chunks));
    std::atomic<bool> bad_thread{false};
    pool.run_chunks(chunks, [&](int t, int64_t c) {
      if (t < 0 || t >= pool.size()) bad_thread = true;
      runs[size_t(c)]++;
    });
    for (auto& r : runs) ASSERT_EQ(r.load(), 1);
    EXPECT_FALSE(bad_thread);
  }
  std::vector<int> by_thread(2, 0);
  int slow_thread = -1;
  pool.run_chunks(40, [&](int t, int64_t c) {
    ++by_thread[size_t(t)];
    if (c == 0) {
      slow_thread = t;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  ASSERT_GE(slow_thread, 0);
  EXPECT_LE(by_thread[size_t(slow_thread)], 2)
      << "the thread held up in chunk 0 should leave the rest to the other";
  EXPECT_EQ(by_thread[0] + by_thread[1], 40);
}

TEST(ThreadPool, ExceptionsReachTheCallerAndThePoolStaysUsable) {
  ThreadPool pool(2);
  EXPECT_THROW(pool.run(2,
                        [](int p) {
                          if (p == 1) throw std::runtime_error("worker failed");
                        }),
               std::runtime_error);
  EXPECT_THROW(pool.run(2,
                        [](int p) {
                          if (p == 0) throw std::runtime_error("caller failed");
                        }),
               std::runtime_error);
  std::atomic<int> n{0};
  pool.run(2, [&](int) { ++n; });
  EXPECT_EQ(n.load(), 2);
}

TEST(ThreadPool, NestedAndConcurrentRunsAreSerialNotDeadlocked) {
  ThreadPool pool(2);
  std::atomic<int> inner{0};
  pool.run(2, [&](int) { pool.run(2, [&](int) { ++inner; }); });
  EXPECT_EQ(inner.load(), 4);
  std::atomic<int> total{0};
  auto work = [&] {
    for (int i = 0; i < 500; ++i) pool.run(2, [&](int) { ++total; });
  };
  std::thread other(work);
  work();
  other.join();
  EXPECT_EQ(total.load(), 2000);
}

// wake() only rouses the workers: however many calls (the counter wraps), from whichever
// thread, alongside jobs or not, no part runs twice and no job is lost.
TEST(ThreadPool, WakeNeverRunsAPartAndLosesNoJob) {
  ThreadPool pool(2);
  std::atomic<int> runs{0};
  pool.run(2, [&](int) { ++runs; });
  for (int i = 0; i < 1000; ++i) pool.wake(std::chrono::microseconds(i % 3 ? 0 : 200));
  std::this_thread::sleep_for(
      std::chrono::milliseconds(5));  // a worker that took a wake for a job would have run by now
  EXPECT_EQ(runs.load(), 2);
  std::atomic<bool> stop{false};
  std::thread waker([&] {
    while (!stop) pool.wake(std::chrono::microseconds(50));
  });
  for (int job = 0; job < 3000; ++job) {
    std::vector<int> parts(2, 0);
    pool.run(2, [&](int p) { parts[size_t(p)] += 1; });
    ASSERT_EQ(parts, (std::vector<int>{1, 1})) << "job " << job;
  }
  stop = true;
  waker.join();
  ThreadPool one(1);
  one.wake(std::chrono::microseconds(100));  // no workers: nothing to wake
}

TEST(ThreadPool, SizeIsChecked) {
  EXPECT_THROW(ThreadPool(0), Error);
  ThreadPool one(1);
  int runs = 0;
  one.run(4, [&](int p) {
    EXPECT_EQ(p, 0);
    ++runs;
  });  // parts clamp to the pool size
  EXPECT_EQ(runs, 1);
}

}  // namespace
}  // namespace strand::cpu
