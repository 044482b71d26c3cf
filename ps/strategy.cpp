#include <strand/ps/strategy.hpp>

namespace strand::ps {

namespace {
void check_host(const Model& model, const Context& ctx) {
  // Chunks are sent from and pulled into the flat buffers in place: they must be host memory.
  STRAND_CHECK(model.backend().kind() == DeviceKind::Cpu, Usage,
               "parameter-server training runs on the CPU backend only for now; the model is on '" +
                   model.backend().name() + "'",
               ctx.where());
}
}  // namespace

PsStrategy::PsStrategy(const Context& ctx, PsConfig config, int64_t param_count)
    : ctx_(ctx), timeline_(config.timeline) {
  WorkerOptions o;
  o.servers = std::move(config.servers);
  o.token = config.token;
  o.rank = config.rank;
  o.workers = config.workers;
  o.map = ShardMap::build(param_count, config.chunk_bytes, int(o.servers.size()));
  o.dispatch = config.dispatch;
  if (o.rank == 0) ctx.log("PS shard map: " + o.map.describe());
  worker_ = std::make_unique<Worker>(ctx, std::move(o));
}

PsStrategy::~PsStrategy() {
  // ZeroMQ may still hold borrowed gradients after an error; they must outlive its sends.
  timeline_ = nullptr;  // it may be gone already
  try {
    wait_all();
  } catch (...) {  // the error was (or will be) reported by the call that failed
  }
}

void PsStrategy::broadcast_initial(Model& model, Optimizer& optimizer) {
  check_host(model, ctx_);
  STRAND_CHECK(model.param_count() == map().floats, Usage,
               "the model has " + std::to_string(model.param_count()) + " parameters, the shard map " +
                   std::to_string(map().floats),
               ctx_.where());
  optimizer_ = &optimizer;
  if (rank() == 0) worker_->init(model.params(), optimizer.config(), optimizer.state());
  worker_->pull_all(model.params(), 0);
  clock_ = 0;
  ready_from_ = -1;
  next_ = int64_t(map().chunks.size()) - 1;
}

void PsStrategy::issue(Model& model, size_t c) {
  const Chunk& ch = map().chunks[c];
  const auto t = Timeline::Clock::now();
  const int64_t bytes = ch.size() * int64_t(sizeof(float));
  pending_.push_back({worker_->push(uint32_t(c), model.grads() + ch.begin, clock_, optimizer_->config().lr),
                      "push", t, bytes});
  pending_.push_back({worker_->pull(uint32_t(c), model.params() + ch.begin, clock_ + 1), "pull", t, bytes});
}

void PsStrategy::grads_ready(Model& model, int64_t begin, int64_t end) {
  STRAND_CHECK(optimizer_, Usage, "broadcast_initial() must run before training steps", ctx_.where());
  (void)end;  // ranges arrive last layer first: everything from `begin` on is final
  ready_from_ = ready_from_ < 0 ? begin : std::min(ready_from_, begin);
  // A chunk goes once it lies wholly in the final part: layers before it still read their own
  // parameters in backward, never the chunk's, so its pull may land at any time.
  while (next_ >= 0 && map().chunks[size_t(next_)].begin >= ready_from_) issue(model, size_t(next_--));
}

void PsStrategy::finish_step(Model& model, Optimizer& optimizer) {
  STRAND_CHECK(optimizer_, Usage, "broadcast_initial() must run before training steps", ctx_.where());
  optimizer_ = &optimizer;
  while (next_ >= 0) issue(model, size_t(next_--));
  const auto t0 = Timeline::Clock::now();
  wait_all();
  if (timeline_) timeline_->record("wait for ps", Timeline::kCompute, t0, Timeline::Clock::now());
  ++clock_;
  ready_from_ = -1;
  next_ = int64_t(map().chunks.size()) - 1;
}

void PsStrategy::wait_all() {
  // Every ticket is waited for (its frames released) before the first error is rethrown.
  std::exception_ptr first;
  for (Pending& p : pending_) {
    try {
      p.ticket.wait();
      if (timeline_) timeline_->record(p.what, Timeline::kComm, p.issued, p.ticket.finished(), p.bytes);
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  pending_.clear();
  if (first) std::rethrow_exception(first);
}

void PsStrategy::collect(Model& model, Optimizer& optimizer) {
  check_host(model, ctx_);
  OptimizerState st;
  worker_->gather(model.params(), st);
  optimizer.load_state(st);
}

void PsStrategy::leave() { worker_->leave(); }

}  // namespace strand::ps
