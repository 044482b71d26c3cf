// AllreduceStrategy: data-parallel training (Horovod-style) on any Communicator. Gradients are
// averaged over the ranks in buckets ("tensor fusion"): backward reports finished ranges of
// the flat gradient buffer, last layer first; once a bucket holds fusion_threshold bytes it
// goes to a background thread that allreduces it while backward computes earlier layers.
// finish_step() sends the rest, waits, and applies the optimizer on every rank, so every rank
// keeps the same parameters.
//
// A model on a GPU needs an NcclCommunicator: finish_step() waits for backward and averages
// the whole gradient buffer with one ncclAllReduce (no overlap with backward yet). It waits
// for the device inside a step, so the CUDA backend must run without CUDA graphs
// (CudaOptions::graphs = false).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include <strand/allreduce/communicator.hpp>
#include <strand/train/strategy.hpp>
#include <strand/train/timeline.hpp>

namespace strand::allreduce {

class AllreduceStrategy final : public Strategy {
 public:
  // Large enough that per-message costs vanish, small enough that mnist_cnn's 4.8 MB of
  // gradients form several buckets, the first leaving while backward still runs.
  static constexpr size_t kDefaultFusionBytes = 1 << 20;

  // `comm` holds gradients where the model keeps them: host memory (MPI) for the CPU backend,
  // device memory (NCCL) for a GPU. `timeline` may be null.
  AllreduceStrategy(Communicator& comm, size_t fusion_threshold_bytes = kDefaultFusionBytes,
                    Timeline* timeline = nullptr);
  ~AllreduceStrategy() override;

  std::string name() const override { return "allreduce (" + comm_.name() + ")"; }
  void broadcast_initial(Model& model, Optimizer& optimizer) override;
  void grads_ready(Model& model, int64_t begin, int64_t end) override;
  void finish_step(Model& model, Optimizer& optimizer) override;
  double sum(double value) override { return comm_.sum(value); }
  int rank() const override { return comm_.rank(); }
  int world() const override { return comm_.size(); }

  // Seconds the training thread spent in finish_step() waiting for buckets, since construction.
  double wait_seconds() const { return wait_seconds_; }

 private:
  struct Bucket {
    float* data;
    int64_t n;
  };
  void enqueue(float* data, int64_t n);
  void loop();

  Communicator& comm_;
  const int64_t threshold_floats_;
  Timeline* timeline_;
  int64_t pending_begin_ = -1, pending_end_ = -1;  // the bucket being filled, floats
  float* grads_ = nullptr;
  bool device_ = false;  // gradients in GPU memory: reduced whole by NCCL in finish_step()

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Bucket> queue_;
  int64_t queued_ = 0, done_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  double wait_seconds_ = 0;
  std::thread thread_;  // last: starts after everything it reads exists
};

}  // namespace strand::allreduce
