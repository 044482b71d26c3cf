#include <strand/core/cpu/thread_pool.hpp>

#include <chrono>
#include <string>
#include <thread>

#include <strand/core/error.hpp>

namespace strand::cpu {

namespace {

// Spin this long for a value to change before sleeping: long enough to catch the next kernel
// of a training step (microseconds apart), short enough not to burn a loaded core.
constexpr auto kSpin = std::chrono::microseconds(50);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Waits until `a` no longer holds `old`: spin, then, until `yield_until_ns` (steady_clock
// nanoseconds), spin giving the core away between checks, then sleep in the kernel (futex).
template <class T>
T wait_change(const std::atomic<T>& a, T old, const std::atomic<int64_t>* yield_until_ns = nullptr) {
  T v = a.load(std::memory_order_acquire);
  if (v != old) return v;
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    for (int k = 0; k < 64; ++k) {
      cpu_relax();
      if ((v = a.load(std::memory_order_acquire)) != old) return v;
    }
    if (std::chrono::steady_clock::now() > until) break;
  }
  while (yield_until_ns && now_ns() < yield_until_ns->load(std::memory_order_relaxed)) {
    std::this_thread::yield();
    if ((v = a.load(std::memory_order_acquire)) != old) return v;
  }
  while ((v = a.load(std::memory_order_acquire)) == old) a.wait(old, std::memory_order_acquire);
  return v;
}

}  // namespace

ThreadPool::ThreadPool(int threads) : size_(threads) {
  STRAND_CHECK(threads >= 1, Usage, "a thread pool needs at least 1 thread, got " + std::to_string(threads),
               "cpu::ThreadPool");
  workers_.reserve(size_t(threads - 1));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stopping_ = true;
  signal_.fetch_add(kJob, std::memory_order_release);
  signal_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::run_part(int part) {
  try {
    (*body_)(part);
  } catch (...) {
    std::lock_guard<std::mutex> lock(error_mutex_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::worker_loop(int index) {
  uint32_t seen = 0;
  for (;;) {
    const uint32_t job = seen / kJob;
    seen = wait_change(signal_, seen, &spin_until_);
    if (stopping_) return;
    if (seen / kJob == job) continue;  // woken by wake(): wait for the job, spinning until spin_until_
    if (index < parts_) run_part(index);
    // Every worker checks in, needed or not, so none is still reading this job's parts_ when
    // the next job is set up.
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

void ThreadPool::wake(std::chrono::microseconds spin) {
  if (workers_.empty()) return;
  const int64_t until = now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(spin).count();
  int64_t was = spin_until_.load(std::memory_order_relaxed);
  while (was < until && !spin_until_.compare_exchange_weak(was, until, std::memory_order_relaxed)) {
  }
  // Count the call in the low bits only: a carry would look like a job to the workers.
  uint32_t v = signal_.load(std::memory_order_relaxed);
  while (!signal_.compare_exchange_weak(v, (v & ~(kJob - 1)) | ((v + 1) & (kJob - 1)),
                                        std::memory_order_release)) {
  }
  signal_.notify_all();
}

void ThreadPool::run(int parts, const std::function<void(int)>& body) {
  parts = std::clamp(parts, 1, size_);
  bool expected = false;
  if (parts == 1 || !busy_.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
    for (int p = 0; p < parts; ++p) body(p);
    return;
  }
  body_ = &body;
  parts_ = parts;
  error_ = nullptr;
  pending_.store(int(workers_.size()), std::memory_order_relaxed);
  // The release publishes body_, parts_ and pending_ to the workers that see the new job count.
  signal_.fetch_add(kJob, std::memory_order_release);
  signal_.notify_all();
  run_part(0);
  for (int left = pending_.load(std::memory_order_acquire); left != 0;) left = wait_change(pending_, left);
  std::exception_ptr error = error_;
  busy_.store(false, std::memory_order_release);
  if (error) std::rethrow_exception(error);
}

}  // namespace strand::cpu
