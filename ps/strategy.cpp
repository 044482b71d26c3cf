#include <strand/ps/strategy.hpp>

#include <algorithm>
#include <exception>
#include <vector>

namespace strand::ps {

PsStrategy::PsStrategy(const Context& ctx, PsConfig config, int64_t param_count)
    : ctx_(ctx), timeline_(config.timeline) {
  WorkerOptions o;
  o.servers = std::move(config.servers);
  o.token = config.token;
  o.rank = config.joining ? config.joining->rank : config.rank;
  o.workers = config.joining ? o.rank + 1 : config.workers;
  o.map = ShardMap::build(param_count, config.chunk_bytes, int(o.servers.size()));
  o.dispatch = config.dispatch;
  if (o.rank == 0) ctx.log("PS shard map: " + o.map.describe());
  worker_ = std::make_unique<Worker>(ctx, std::move(o));
  if (config.joining) {
    joined_ = JoinPoint{.step = worker_->join(), .initial_world = config.joining->job.workers};
    ctx.log("joined the job at step " + std::to_string(joined_->step) + " as worker " +
            std::to_string(rank()) + " of " + std::to_string(world()));
  }
}

PsStrategy::~PsStrategy() {
  // ZeroMQ may still hold borrowed gradients after an error; they must outlive its sends.
  timeline_ = nullptr;  // it may be gone already
  try {
    wait_all(nullptr);
  } catch (...) {  // the error was (or will be) reported by the call that failed
  }
}

void PsStrategy::broadcast_initial(Model& model, Optimizer& optimizer, const StartPoint& at) {
  STRAND_CHECK(model.trainable_count() == map().floats, Usage,
               "the model has " + std::to_string(model.trainable_count()) +
                   " trainable parameters, the shard map " + std::to_string(map().floats),
               ctx_.where());
  optimizer_ = &optimizer;
  grads_stage_ = model.backend().make_stage(model.trainable_count());
  params_stage_ = model.backend().make_stage(model.trainable_count());
  // Once per job, through host memory whatever the device. A joiner takes the servers' state
  // as it is at its start.
  std::vector<float> params = model.get_params();
  clock_ = joined_ ? joined_->step : at.step;
  if (rank() == 0 && !joined_)
    worker_->init(params.data(), optimizer.config(), optimizer.state(),
                  {.step = at.step, .workers = world(), .global_batch = at.global_batch});
  worker_->pull_all(params.data(), clock_);
  model.set_params(params);
  ready_from_ = -1;
  next_ = int64_t(map().chunks.size()) - 1;
}

void PsStrategy::issue(Model& model, size_t c) {
  const Chunk& ch = map().chunks[c];
  const auto t = Timeline::Clock::now();
  const int64_t bytes = ch.size() * int64_t(sizeof(float));
  const float* grads = (grads_stage_ ? grads_stage_->host() : model.grads()) + ch.begin;
  float* params = (params_stage_ ? params_stage_->host() : model.params()) + ch.begin;
  pending_.push_back(
      {worker_->push(uint32_t(c), grads, clock_, optimizer_->config().lr), "push", t, bytes, -1});
  pending_.push_back({worker_->pull(uint32_t(c), params, clock_ + 1), "pull", t, bytes, int64_t(c)});
}

void PsStrategy::ready(Model& model, size_t c) {
  if (!grads_stage_) {
    issue(model, c);
    return;
  }
  const Chunk& ch = map().chunks[c];
  downloads_.push_back({c, grads_stage_->download(model.grads(), ch.begin, ch.end)});
}

void PsStrategy::push_landed(Model& model, bool wait) {
  while (!downloads_.empty()) {
    const Download d = downloads_.front();
    if (wait) {
      grads_stage_->wait(d.fence);
    } else if (!grads_stage_->done(d.fence)) {
      return;
    }
    downloads_.pop_front();
    issue(model, d.chunk);
  }
}

void PsStrategy::grads_ready(Model& model, int64_t begin, int64_t end) {
  STRAND_CHECK(optimizer_, Usage, "broadcast_initial() must run before training steps", ctx_.where());
  (void)end;  // ranges arrive last layer first: everything from `begin` on is final
  ready_from_ = ready_from_ < 0 ? begin : std::min(ready_from_, begin);
  // A chunk goes once it lies wholly in the final part: layers before it still read their own
  // parameters in backward, never the chunk's, so its pull may land at any time.
  while (next_ >= 0 && map().chunks[size_t(next_)].begin >= ready_from_) ready(model, size_t(next_--));
  if (grads_stage_) push_landed(model, false);
}

void PsStrategy::finish_step(Model& model, Optimizer& optimizer) {
  STRAND_CHECK(optimizer_, Usage, "broadcast_initial() must run before training steps", ctx_.where());
  optimizer_ = &optimizer;
  while (next_ >= 0) ready(model, size_t(next_--));
  const auto t0 = Timeline::Clock::now();
  if (grads_stage_) push_landed(model, true);
  wait_all(&model);
  if (params_stage_) params_stage_->join();  // the next forward reads the pulled parameters
  // The state (batchnorm's running statistics) stays with the worker: each keeps its own.
  const int64_t t = model.trainable_count();
  state_step(model.backend(), model.param_count() - t, model.params() + t, model.grads() + t);
  if (timeline_) timeline_->record("wait for ps", Timeline::kCompute, t0, Timeline::Clock::now());
  ++clock_;
  ready_from_ = -1;
  next_ = int64_t(map().chunks.size()) - 1;
}

void PsStrategy::wait_all(Model* model) {
  // Every ticket is waited for (its frames released) before the first error is rethrown.
  std::exception_ptr first;
  for (Pending& p : pending_) {
    try {
      p.ticket.wait();
      if (timeline_) timeline_->record(p.what, Timeline::kComm, p.issued, p.ticket.finished(), p.bytes);
      if (model && params_stage_ && p.chunk >= 0 && !first) {
        const Chunk& ch = map().chunks[size_t(p.chunk)];
        params_stage_->upload(model->params(), ch.begin, ch.end);
      }
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  pending_.clear();
  downloads_.clear();
  if (first) std::rethrow_exception(first);
}

void PsStrategy::collect(Model& model, Optimizer& optimizer) {
  std::vector<float> params = model.get_params();  // the servers' hold all but the state
  OptimizerState st;
  worker_->snapshot(params.data(), st);
  model.set_params(params);
  optimizer.load_state(st);
}

void PsStrategy::leave() { worker_->leave(); }

}  // namespace strand::ps
