#include <strand/allreduce/strategy.hpp>

#include <chrono>
#include <vector>

#include <strand/core/error.hpp>

namespace strand::allreduce {

namespace {
using Clock = std::chrono::steady_clock;
double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
}  // namespace

AllreduceStrategy::AllreduceStrategy(Communicator& comm, size_t fusion_threshold_bytes, Timeline* timeline,
                                     Activity* activity)
    : comm_(comm),
      threshold_floats_(int64_t(fusion_threshold_bytes / sizeof(float))),
      timeline_(timeline),
      activity_(activity),
      thread_([this] { loop(); }) {}

AllreduceStrategy::~AllreduceStrategy() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void AllreduceStrategy::broadcast_initial(Model& model, Optimizer& optimizer, const StartPoint&) {
  Backend& be = model.backend();
  if (comm_.reduces_device_buffers()) {
    lane_ = be.make_lane();
    STRAND_CHECK(lane_ != nullptr, Usage,
                 comm_.name() + " reduces device buffers, but the model is on '" + be.name() + "'",
                 comm_.where());
    path_ = Path::Lane;
  } else {
    stage_ = be.make_stage(model.param_count());
    path_ = stage_ ? Path::Staged : Path::Host;
  }
  std::vector<float> params = model.get_params();
  comm_.broadcast(params.data(), params.size() * sizeof(float), 0);
  model.set_params(params);
  // The optimizer state (moments, step count) too, so a resumed job continues as one.
  OptimizerState st = optimizer.state();
  comm_.broadcast(&st.step, sizeof st.step, 0);
  for (auto& slot : st.slots) comm_.broadcast(slot.data(), slot.size() * sizeof(float), 0);
  optimizer.load_state(st);
}

void AllreduceStrategy::enqueue(const Bucket& b) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(b);
    ++queued_;
  }
  cv_.notify_all();
}

void AllreduceStrategy::send(int64_t begin, int64_t end) {
  ++buckets_;
  const int64_t index = step_buckets_++;
  switch (path_) {
    case Path::Host:
      enqueue({grads_, begin, end, 0, index});
      break;
    case Path::Lane:
      lane_->follow();  // behind the kernels that wrote the bucket
      comm_.queue_allreduce_mean(*lane_, grads_ + begin, end - begin);
      break;
    case Path::Staged:
      downloading_.push_back({stage_->host(), begin, end, stage_->download(grads_, begin, end), index});
      break;
  }
}

void AllreduceStrategy::hand_over_landed(bool wait) {
  while (!downloading_.empty()) {
    const Bucket b = downloading_.front();
    if (wait)
      stage_->wait(b.fence);
    else if (!stage_->done(b.fence))
      return;
    downloading_.pop_front();
    reducing_.push_back(b);
    enqueue(b);
  }
}

void AllreduceStrategy::grads_ready(Model& model, int64_t begin, int64_t end) {
  grads_ = model.grads();
  // Ranges arrive last layer first, each ending where the previous began; the last begins at 0.
  if (pending_end_ < 0) pending_end_ = end;
  pending_begin_ = begin;
  if (pending_end_ - pending_begin_ >= threshold_floats_) {
    if (begin > 0) ++early_buckets_;
    send(pending_begin_, pending_end_);
    pending_begin_ = pending_end_ = -1;
  }
  if (path_ == Path::Staged) hand_over_landed(false);
}

void AllreduceStrategy::finish_step(Model& model, Optimizer& optimizer) {
  grads_ = model.grads();
  if (pending_end_ >= 0) send(pending_begin_, pending_end_);
  pending_begin_ = pending_end_ = -1;
  step_buckets_ = 0;
  if (path_ == Path::Lane) {
    lane_->join();  // the update's kernels run behind the last bucket's allreduce
    optimizer.step(model.params(), model.grads());
    return;
  }
  const auto t0 = Clock::now();
  if (path_ == Path::Staged) {
    finish_staged();
  } else {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_ == queued_ || error_; });
    if (error_) std::rethrow_exception(error_);
  }
  const auto t1 = Clock::now();
  wait_seconds_ += seconds(t0, t1);
  if (timeline_) timeline_->record("wait for allreduce", Timeline::kCompute, t0, t1);
  if (activity_) activity_->enter(Phase::Update);
  optimizer.step(model.params(), model.grads());
}

// Uploads each bucket as soon as the thread has reduced it (the thread takes them in order),
// then orders the update's kernels behind the uploads.
void AllreduceStrategy::finish_staged() {
  hand_over_landed(true);
  while (!reducing_.empty()) {
    int64_t done = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return done_ > uploaded_ || error_; });
      if (error_) std::rethrow_exception(error_);
      done = done_;
    }
    for (; uploaded_ < done; ++uploaded_) {
      const Bucket b = reducing_.front();
      reducing_.pop_front();
      stage_->upload(grads_, b.begin, b.end);
    }
  }
  stage_->join();
}

void AllreduceStrategy::after_step(Model& /*model*/) {
  if (path_ != Path::Lane) return;
  comm_.wait(*lane_, lane_->mark());
  const double exposed = lane_->join_wait_seconds();
  if (exposed < 0) return;
  wait_seconds_ += exposed;
  if (timeline_) {
    const auto now = Clock::now();
    timeline_->record(
        "wait for allreduce", Timeline::kCompute,
        now - std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(exposed)), now);
  }
}

std::vector<std::vector<double>> AllreduceStrategy::gather(std::span<const double> values) {
  std::vector<std::vector<double>> all(size_t(comm_.size()));
  for (double v : values) {
    const std::vector<double> each = comm_.allgather(v);
    for (size_t k = 0; k < all.size(); ++k) all[k].push_back(each[k]);
  }
  return all;
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
      if (activity_) activity_->reducing(b.index);
      const auto t0 = Clock::now();
      comm_.allreduce_mean(b.base + b.begin, b.end - b.begin);
      if (activity_) activity_->reducing(-1);
      if (timeline_)
        timeline_->record("allreduce", Timeline::kComm, t0, Clock::now(),
                          (b.end - b.begin) * int64_t(sizeof(float)));
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
