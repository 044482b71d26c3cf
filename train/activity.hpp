// Activity: what a rank is doing right now (its step, the phase of it, the gradient bucket its
// communication thread is reducing), set by the training thread and the strategy, read by
// another thread (the heartbeat sender, job/heartbeat.hpp) that reports it. Lock-free stores,
// so a rank that hangs still shows where it stopped.
#pragma once

#include <atomic>
#include <cstdint>

namespace strand {

enum class Phase : uint8_t {
  Starting,  // set-up: data, model, communicators
  Forward,
  Backward,
  Reduce,      // waiting for the step's gradients to be reduced (allreduce) or pushed (ps)
  Update,      // the optimizer, after the reduction
  Checkpoint,  // taking a checkpoint's snapshot
  Evaluate,
  Finishing,  // the last checkpoint, the export
};
const char* to_string(Phase phase);

class Activity {
 public:
  struct Snapshot {
    Phase phase = Phase::Starting;
    int64_t epoch = 0;          // 0-based
    int64_t step_in_epoch = 0;  // the step being taken (0-based)
    int64_t steps_per_epoch = 0;
    int64_t global_step = 0;  // optimizer steps taken before this one, over the whole run
    int64_t bucket = -1;      // the bucket of this step being reduced (0 = the first sent), -1: none
  };

  void enter(Phase phase) { phase_.store(phase, std::memory_order_relaxed); }
  void at_step(int64_t epoch, int64_t step_in_epoch, int64_t steps_per_epoch, int64_t global_step) {
    epoch_.store(epoch, std::memory_order_relaxed);
    step_in_epoch_.store(step_in_epoch, std::memory_order_relaxed);
    steps_per_epoch_.store(steps_per_epoch, std::memory_order_relaxed);
    global_step_.store(global_step, std::memory_order_relaxed);
  }
  void reducing(int64_t bucket) { bucket_.store(bucket, std::memory_order_relaxed); }
  Snapshot read() const {
    return {phase_.load(std::memory_order_relaxed),         epoch_.load(std::memory_order_relaxed),
            step_in_epoch_.load(std::memory_order_relaxed), steps_per_epoch_.load(std::memory_order_relaxed),
            global_step_.load(std::memory_order_relaxed),   bucket_.load(std::memory_order_relaxed)};
  }

 private:
  std::atomic<Phase> phase_{Phase::Starting};
  std::atomic<int64_t> epoch_{0}, step_in_epoch_{0}, steps_per_epoch_{0}, global_step_{0}, bucket_{-1};
};

}  // namespace strand
