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

  // body(begin, end) over contiguous ranges of [0, n), one per thread; on the calling thread
  // alone when n < min_parallel (small loops cost less than waking a thread).
  template <class F>
  void parallel_for(int64_t n, int64_t min_parallel, F&& body) {
    if (n <= 0) return;
    const int parts = n < min_parallel ? 1 : int(std::min<int64_t>(n, size_));
    if (parts == 1) {
      body(int64_t{0}, n);
      return;
    }
    run(parts, [&](int p) { body(n * p / parts, n * (p + 1) / parts); });
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
  std::atomic<int> pending_{0};  // workers yet to finish the current job
  const std::function<void(int)>* body_ = nullptr;
  int parts_ = 0;
  bool stopping_ = false;
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

}  // namespace strand::cpu
