// AllreduceStrategy: data-parallel training (Horovod-style) on any Communicator. Gradients are
// averaged over the ranks in buckets ("tensor fusion"): backward reports finished ranges of
// the flat gradient buffer, last layer first; once a bucket holds fusion_threshold bytes it
// is reduced while backward computes earlier layers. finish_step() sends the rest, waits, and
// applies the optimizer on every rank, so every rank keeps the same parameters. Where the
// model's gradients live decides how a bucket travels:
//   host      a CPU model, a host communicator: a background thread allreduces each bucket in
//             place while the training thread runs backward.
//   lane      a GPU model, a device communicator (NCCL): each bucket's allreduce is queued on a
//             Lane behind the kernels that wrote it (core/backend.hpp), so it runs on the GPU
//             beside the rest of backward; the optimizer's kernels are queued behind the lane.
//             Nothing waits inside the step, which may be recorded as a CUDA graph with its
//             collectives; after_step() waits for the step within the communicator's timeout.
//   staged    a GPU model, a host communicator (--allreduce ring|hierarchical|mpi on a GPU,
//             Horovod's HOROVOD_GPU_OPERATIONS=MPI): each bucket is downloaded to pinned host
//             memory behind the kernels that wrote it (a Stage), reduced by the background
//             thread once it has landed, and uploaded. The stage's copies keep the step out of
//             CUDA graphs.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include <strand/allreduce/communicator.hpp>
#include <strand/core/backend.hpp>
#include <strand/train/activity.hpp>
#include <strand/train/strategy.hpp>
#include <strand/train/timeline.hpp>

namespace strand::allreduce {

class AllreduceStrategy final : public Strategy {
 public:
  // Large enough that per-message costs vanish, small enough that mnist_cnn's 4.8 MB of
  // gradients form several buckets, the first leaving while backward still runs.
  static constexpr size_t kDefaultFusionBytes = 1 << 20;

  enum class Path { Host, Lane, Staged };

  // `comm` reduces host memory (MPI) or device memory (NCCL); the path follows from it and the
  // model's backend at broadcast_initial(). `timeline` and `activity` may be null; the
  // activity is told which bucket of the step the background thread reduces (host, staged).
  AllreduceStrategy(Communicator& comm, size_t fusion_threshold_bytes = kDefaultFusionBytes,
                    Timeline* timeline = nullptr, Activity* activity = nullptr);
  ~AllreduceStrategy() override;

  std::string name() const override { return "allreduce (" + comm_.name() + ")"; }
  void broadcast_initial(Model& model, Optimizer& optimizer, const StartPoint& at) override;
  void grads_ready(Model& model, int64_t begin, int64_t end) override;
  void finish_step(Model& model, Optimizer& optimizer) override;
  void after_step(Model& model) override;
  double sum(double value) override { return comm_.sum(value); }
  // One allgather per value (allreduce ranks never leave).
  std::vector<std::vector<double>> gather(std::span<const double> values) override;
  int rank() const override { return comm_.rank(); }
  int world() const override { return comm_.size(); }

  Path path() const { return path_; }
  // Seconds the step waited for buckets since construction: the training thread in
  // finish_step() (host, staged), the GPU's kernels at the lane's join (lane, where timed).
  double wait_seconds() const { return wait_seconds_; }
  // Buckets sent since construction, and of those sent before backward's last range came.
  int64_t buckets() const { return buckets_; }
  int64_t buckets_during_backward() const { return early_buckets_; }

 private:
  struct Bucket {
    float* base;         // what the background thread reduces [begin, end) of
    int64_t begin, end;  // floats of the gradient buffer
    Stage::Fence fence;  // staged: the download; 0 otherwise
    int64_t index = 0;   // of the step's buckets, in the order sent
  };
  void send(int64_t begin, int64_t end);
  void enqueue(const Bucket& b);     // to the background thread
  void hand_over_landed(bool wait);  // staged: landed downloads to the background thread
  void finish_staged();
  void loop();

  Communicator& comm_;
  const int64_t threshold_floats_;
  Timeline* timeline_;
  Activity* activity_;
  Path path_ = Path::Host;
  std::unique_ptr<Lane> lane_;                     // lane
  std::unique_ptr<Stage> stage_;                   // staged: the pinned mirror of the gradients
  int64_t pending_begin_ = -1, pending_end_ = -1;  // the bucket being filled, floats
  float* grads_ = nullptr;                         // the model's (host memory on the host path)
  std::deque<Bucket> downloading_;                 // staged: sent, not yet landed
  std::deque<Bucket> reducing_;                    // staged: handed to the thread, not yet uploaded
  int64_t buckets_ = 0, early_buckets_ = 0;
  int64_t step_buckets_ = 0;  // sent in this step
  int64_t uploaded_ = 0;      // staged: buckets reduced and uploaded, since construction

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
