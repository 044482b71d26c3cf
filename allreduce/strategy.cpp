#include <strand/allreduce/strategy.hpp>

#include <chrono>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/error.hpp>

namespace strand::allreduce {

AllreduceStrategy::AllreduceStrategy(Communicator& comm, size_t fusion_threshold_bytes, Timeline* timeline)
    : comm_(comm),
      threshold_floats_(int64_t(fusion_threshold_bytes / sizeof(float))),
      timeline_(timeline),
      thread_([this] { loop(); }) {}

AllreduceStrategy::~AllreduceStrategy() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void AllreduceStrategy::broadcast_initial(Model& model, Optimizer& optimizer) {
  device_ = model.backend().kind() != DeviceKind::Cpu;
  STRAND_CHECK(!device_ || comm_.reduces_device_buffers(), Usage,
               "the model's gradients are on '" + model.backend().name() +
                   "': they need the NCCL communicator, not " + comm_.name(),
               comm_.where());
  std::vector<float> params = model.get_params();
  comm_.broadcast(params.data(), params.size() * sizeof(float), 0);
  model.set_params(params);
  // The optimizer state (moments, step count) too, so a resumed job continues as one.
  OptimizerState st = optimizer.state();
  comm_.broadcast(&st.step, sizeof st.step, 0);
  for (auto& slot : st.slots) comm_.broadcast(slot.data(), slot.size() * sizeof(float), 0);
  optimizer.load_state(st);
}

void AllreduceStrategy::enqueue(float* data, int64_t n) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back({data, n});
    ++queued_;
  }
  cv_.notify_all();
}

void AllreduceStrategy::grads_ready(Model& model, int64_t begin, int64_t end) {
  if (device_) return;  // device gradients go in one piece at finish_step()
  grads_ = model.grads();
  // Ranges arrive last layer first, each ending where the previous began.
  if (pending_end_ < 0) pending_end_ = end;
  pending_begin_ = begin;
  if (pending_end_ - pending_begin_ >= threshold_floats_) {
    enqueue(grads_ + pending_begin_, pending_end_ - pending_begin_);
    pending_begin_ = pending_end_ = -1;
  }
}

void AllreduceStrategy::finish_step(Model& model, Optimizer& optimizer) {
  if (device_) {
    // The kernels that write the gradients are queued asynchronously: wait for them, then
    // NCCL averages the whole buffer on its own stream (the backend runs without CUDA graphs,
    // see strategy.hpp) before the optimizer's kernels are queued.
    const auto t0 = std::chrono::steady_clock::now();
    model.backend().synchronize();
    const auto t1 = std::chrono::steady_clock::now();
    comm_.allreduce_mean(model.grads(), model.param_count());
    const auto t2 = std::chrono::steady_clock::now();
    wait_seconds_ += std::chrono::duration<double>(t2 - t1).count();
    if (timeline_) {
      timeline_->record("wait for backward (device)", Timeline::kCompute, t0, t1);
      timeline_->record("allreduce", Timeline::kComm, t1, t2, model.param_count() * int64_t(sizeof(float)));
    }
    optimizer.step(model.params(), model.grads());
    return;
  }
  grads_ = model.grads();
  if (pending_end_ >= 0) enqueue(grads_ + pending_begin_, pending_end_ - pending_begin_);
  pending_begin_ = pending_end_ = -1;
  const auto t0 = std::chrono::steady_clock::now();
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_ == queued_ || error_; });
    if (error_) std::rethrow_exception(error_);
  }
  const auto t1 = std::chrono::steady_clock::now();
  wait_seconds_ += std::chrono::duration<double>(t1 - t0).count();
  if (timeline_) timeline_->record("wait for allreduce", Timeline::kCompute, t0, t1);
  optimizer.step(model.params(), model.grads());
}

void AllreduceStrategy::loop() {
  for (;;) {
    Bucket b;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || (!queue_.empty() && !error_); });
      if (stop_) return;
      b = queue_.front();
      queue_.pop_front();
    }
    try {
      const auto t0 = std::chrono::steady_clock::now();
      comm_.allreduce_mean(b.data, b.n);
      if (timeline_)
        timeline_->record("allreduce", Timeline::kComm, t0, std::chrono::steady_clock::now(),
                          b.n * int64_t(sizeof(float)));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++done_;
    }
    cv_.notify_all();
  }
}

}  // namespace strand::allreduce
