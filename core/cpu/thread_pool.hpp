// ThreadPool: the CPU backend's own worker threads. Each backend owns one (RAII: the threads
// are joined when it goes), so there is no process-wide pool: several backends in one process
// (ranks in a test) each keep their threads. Workers spin briefly for the next job, then sleep
// in the kernel; waiting threads therefore stay off a loaded machine's cores instead of stealing
// them from the thread everyone waits for (OpenMP's default spin does, and collapses under load).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace strand::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads >= 1; threads - 1 workers are started
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }

  // Work is coming within about `spin`: sleeping workers wake now and wait for it spinning
  // (yielding the core to any other runnable thread), so the next run() finds them awake; a
  // thread woken from sleep on a VM takes tens of microseconds to run.
  void wake(std::chrono::microseconds spin);

  // Runs body(part) for every part in [0, parts), parts clamped to [1, size()]; part 0 runs on
  // the calling thread. Returns when all parts are done and rethrows the first exception a part
  // threw. A call made while the pool is busy (from inside a part, or from another thread) runs
  // its parts one after another on the calling thread.
  void run(int parts, const std::function<void(int part)>& body);

  // Runs body(thread, chunk) for every chunk in [0, chunks), each chunk handed to whichever of
  // up to size() threads asks next (thread in [0, size()), for per-thread scratch). A thread the
  // OS takes away for a while then holds up only the chunk it is in, where fixed shares would
  // hold every other thread at the end for all of its share.
  template <class F>
  void run_chunks(int64_t chunks, F&& body) {
    if (chunks <= 0) return;
    const int threads = int(std::min<int64_t>(chunks, size_));
    if (threads == 1) {
      for (int64_t c = 0; c < chunks; ++c) body(0, c);
      return;
    }
    std::atomic<int64_t> next{0};
    run(threads, [&](int t) {
      for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks;) body(t, c);
    });
  }

  // body(begin, end) over contiguous ranges of [0, n), kChunksPerThread per thread, handed out
  // as by run_chunks(); on the calling thread alone when n < min_parallel (small loops cost less
  // than waking a thread).
  static constexpr int kChunksPerThread = 4;
  template <class F>
  void parallel_for(int64_t n, int64_t min_parallel, F&& body) {
    if (n <= 0) return;
    const int64_t pieces = n < min_parallel ? 1 : std::min<int64_t>(n, int64_t{kChunksPerThread} * size_);
    if (pieces == 1 || size_ == 1) {
      body(int64_t{0}, n);
      return;
    }
    run_chunks(pieces, [&](int, int64_t p) { body(n * p / pieces, n * (p + 1) / pieces); });
  }

 private:
  void worker_loop(int index);
  void run_part(int part);

  int size_;
  std::vector<std::thread> workers_;
  std::atomic<bool> busy_{false};
  // Workers wake when `signal_` changes: its bits 8 and up count jobs (a job: run part `index`
  // if index < parts_), its low 8 bits count wake() calls (no job: spin until spin_until_).
  static constexpr uint32_t kJob = 1u << 8;
  std::atomic<uint32_t> signal_{0};
  std::atomic<int64_t> spin_until_{0};  // steady_clock nanoseconds
  std::atomic<int> pending_{0};         // workers yet to finish the current job
  const std::function<void(int)>* body_ = nullptr;
  int parts_ = 0;
  bool stopping_ = false;
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

}  // namespace strand::cpu
