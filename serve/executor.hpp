// Executor: runs the forward passes of an endpoint, one at a time (its models share one
// backend). A request that finds the executor idle runs its pass on its own thread at once;
// otherwise it is queued, and the executor's pass thread runs the queue back to back, so a
// pass starts as soon as the previous one ends (no hand-over of a lock to a sleeping thread
// between passes) while the HTTP threads read and parse the next requests, and print the
// last one's answer. Each waiting request is woken alone, when its own pass is done.
// With batching on, concurrent requests for the same model are merged into one
// forward pass of up to `max_batch` rows, waiting at most `timeout` after the first arrived.
// The wait ends early when every request known to be on its way is queued (see Announcement);
// a request with none other on its way runs at once on its own thread, as without batching.
// A row's probabilities do not depend on the other rows of its pass (the kernels never split
// or reorder a row's sums by batch), so batching never changes a result; tests check it.
// Passes are cut into chunks of at most kMaxPassRows rows, so the activation memory is bounded
// whatever the request size.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include <strand/core/model.hpp>

namespace strand::serve {

struct BatchOptions {
  int64_t max_batch = 0;                 // rows per merged pass; 0 or 1: no batching
  std::chrono::microseconds timeout{0};  // longest wait for a batch to fill
  bool enabled() const { return max_batch > 1; }
};

class Executor {
 public:
  static constexpr int64_t kMaxPassRows = 256;

  explicit Executor(BatchOptions options = {});
  ~Executor();  // finishes queued work, then stops the pass thread
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // A request for `model` is about to be parsed: if no pass is running, the model's backend
  // wakes its threads now, so the request's pass does not start by waiting for them
  // (Backend::expect_work), and this returns true: the threads are free to help parse.
  bool expect(Model& model);

  // x [rows, input] -> probs [rows, classes], host memory; blocks until done. Thread-safe.
  void run(Model& model, const float* x, int64_t rows, float* probs);

  // Held by a request from before it is parsed until it is answered. A batch waits for more
  // rows only while some announced request has not reached run() yet, so a lone request runs
  // at once and the timeout only bounds the wait for requests known to be coming.
  class Announcement {
   public:
    explicit Announcement(Executor& e);
    ~Announcement();
    Announcement(const Announcement&) = delete;
    Announcement& operator=(const Announcement&) = delete;

   private:
    Executor& e_;
  };

  const BatchOptions& options() const { return options_; }
  // Forward passes run so far (a merged batch counts once); lets tests see batching happen.
  int64_t passes() const { return passes_; }

 private:
  struct Job {
    Model* model;
    const float* x;
    int64_t rows;
    float* probs;
    std::chrono::steady_clock::time_point arrived;
    bool done = false;
    std::exception_ptr error;
    std::condition_variable finished;  // notified under mu_, so the job outlives the notify
  };

  void forward(Model& model, const float* x, int64_t rows, float* probs);  // caller holds pass_mu_
  // pass_mu_, held, if nothing is queued or running and, when `alone`, no other request is on
  // its way or running unbatched; else an empty lock.
  std::unique_lock<std::mutex> idle_pass_lock(bool alone);
  void queue_and_wait(Model& model, const float* x, int64_t rows, float* probs);
  void pass_loop();
  void run_batch(Model& model, const std::vector<Job*>& batch, int64_t rows);
  int64_t queued_rows(const Model* model) const;  // caller holds mu_

  BatchOptions options_;
  std::mutex pass_mu_;              // one forward pass at a time
  std::mutex mu_;                   // guards queue_, stopping_, Job::done/error
  std::condition_variable queued_;  // the pass thread waits on it
  std::deque<Job*> queue_;
  bool stopping_ = false;
  int64_t announced_ = 0;  // requests holding an Announcement (guarded by mu_)
  int64_t unbatched_ = 0;  // requests of max_batch rows or more, run without the queue (guarded by mu_)
  std::atomic<int64_t> passes_{0};
  std::vector<float> xs_, ps_;  // the pass thread's staging buffers for merged batches
  std::thread thread_;          // the pass thread; last: started after everything it uses
};

}  // namespace strand::serve
