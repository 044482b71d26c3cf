#include <strand/train/trainer.hpp>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <optional>

#include <strand/core/error.hpp>
#include <strand/io/model_file.hpp>
#include <strand/train/checkpoint_writer.hpp>

namespace strand {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Samples fit a model that takes their shape; or one whose input is flat with as many values
// (it flattens them); or, as flat rows of a file, a model input of as many values.
void check_fits(const Model& model, const io::Dataset& data, const char* which) {
  const Shape &s = data.sample_shape, &in = model.arch().input;
  const std::string where = data.source.empty() ? "train" : data.source;
  STRAND_CHECK(s == in || ((s.rank() == 1 || in.rank() == 1) && s.numel() == in.numel()), Shape,
               std::string(which) + " samples have shape " + s.str() + ", model '" + model.arch().name +
                   "' takes " + in.str(),
               where);
  STRAND_CHECK(data.size() > 0, Usage, std::string(which) + " set is empty", where);
}

// How batches of `data` are gathered for `model`: as the samples' [C,H,W], else (flat rows)
// as the model's input image, else as 1 x 1 x F.
GatherDesc gather_desc(const Model& model, const io::Dataset& data) {
  const Shape& image = data.sample_shape.rank() == 3 ? data.sample_shape : model.arch().input;
  GatherDesc d{.pixels = data.pixels};
  if (image.rank() == 3) {
    d.channels = image[0];
    d.height = image[1];
    d.width = image[2];
  } else {
    d.width = data.sample_shape.numel();
  }
  return d;
}

uint64_t step_key(uint64_t seed, int64_t step) { return mix64(seed ^ mix64(uint64_t(step) + 0x5eed)); }

// Loss and accuracy sums of the training batches since an epoch began, and the time spent
// training in it (evaluations excluded).
struct EpochStats {
  double loss_sum = 0;
  int64_t correct = 0, seen = 0;
  double train_seconds = 0;
  void add(const LossTotals& t) {
    loss_sum += t.loss_sum;
    correct += t.correct;
    seen += t.examples;
  }
};

// The newest checkpoint of a resumed run, read before the run is set up: its global batch sets
// the run's batch per worker.
struct Resumed {
  io::Checkpoint ck;
  std::string where;
};

// The batch per worker of a run resumed from `ck` with `batch` asked for on `world` workers.
// The global batch stays the checkpoint's, so that the run continues its sequence of global
// batches on any number of workers: a batch per worker that gives it is taken as it is; the
// checkpoint's own batch per worker (the same command on fewer or more ranks) becomes the
// global batch's share; any other batch is refused. A version 1 checkpoint does not know its
// global batch and keeps the older rule, the same batch per worker.
int64_t resumed_batch(const Resumed& from, int64_t batch, int64_t world) {
  const io::Checkpoint& ck = from.ck;
  const std::string asked = std::to_string(batch) + " per worker (" + std::to_string(batch * world) +
                            " images a step over " + std::to_string(world) + " workers)";
  if (ck.global_batch == 0) {
    STRAND_CHECK(ck.batch_size == batch, Usage,
                 "checkpoint was made with batch size " + std::to_string(ck.batch_size) +
                     " per worker; this run uses " + asked + " (resuming must not change it)",
                 from.where);
    return batch;
  }
  if (batch * world == ck.global_batch) return batch;
  const std::string made = "checkpoint was made with batch size " + std::to_string(ck.batch_size) +
                           " per worker, " + std::to_string(ck.global_batch) + " images a step over all";
  STRAND_CHECK(batch == ck.batch_size, Usage,
               made + "; this run asks for " + asked + ": resuming must not change the global batch",
               from.where);
  STRAND_CHECK(ck.global_batch % world == 0, Usage,
               made + ", which does not divide over this run's " + std::to_string(world) +
                   " workers: resume on a number of workers that divides it",
               from.where);
  return ck.global_batch / world;
}

// One call of train(): the state its named steps share.
class Run {
 public:
  Run(Context& ctx, Model& model, const io::Dataset& train_set, const io::Dataset* eval,
      const TrainConfig& cfg, Strategy& strategy, std::optional<Resumed> from)
      : ctx_(ctx),
        from_(std::move(from)),
        model_(model),
        be_(model.backend()),
        train_set_(train_set),
        eval_(eval),
        cfg_(cfg),
        strategy_(strategy),
        opt_(be_, cfg.optimizer, model.param_count(), model.trainable_count()),
        world_(strategy.world()),
        rank_(strategy.rank()),
        base_world_(strategy.joined() ? strategy.joined()->initial_world : world_),
        used_(train_set.size() - train_set.size() % base_world_),
        global_batch_(cfg.batch_size * base_world_),
        steps_(io::steps_per_epoch(used_, global_batch_)),
        total_steps_(cfg.epochs * steps_),
        gather_(gather_desc(model, train_set)) {
    gather_.augment = cfg.augment;
    gather_.seed = cfg.seed;
    if (!cfg.checkpoint_dir.empty() && rank_ == 0) writer_.emplace(cfg.checkpoint_dir);
  }

  TrainResult operator()() {
    resume();
    strategy_.broadcast_initial(model_, opt_, {.step = step_, .global_batch = global_batch_});
    stage_data();
    be_.take_loss_totals();  // start from zero whatever ran on this backend before
    last_checkpoint_ = Clock::now();
    for (int64_t epoch = result_.resumed_from_epoch; epoch < cfg_.epochs && !stop_; ++epoch) {
      if (run_epoch(epoch, epoch == result_.resumed_from_epoch ? resume_step_in_epoch_ : 0))
        checkpoint(epoch, 0);
    }
    finish();
    return result_;
  }

 private:
  using Clock = std::chrono::steady_clock;

  void resume();
  void stage_data();
  // Trains one epoch from its step `first` (or until a stop); true when it ran to its end.
  bool run_epoch(int64_t epoch, int64_t first);
  void train_step(int64_t epoch, int64_t s, const std::vector<int64_t>& order, const int64_t* order_dev);
  void report_progress(int64_t epoch, int64_t s, bool last, EpochStats& stats, Clock::time_point t_train);
  // Evaluates on the test set and reports; true when the accuracy target is reached.
  bool evaluate_now(int64_t epoch, EpochStats& stats, Clock::time_point& t_train);
  // A checkpoint of epoch `epoch` (0-based) after `step_in_epoch` of its steps; 0: at its end.
  void checkpoint(int64_t epoch, int64_t step_in_epoch);
  bool checkpoint_due() const;
  void log_written();
  void finish();
  // Ends the phase `name` begun at t0 (and enters `next`, for the heartbeats).
  Clock::time_point phase(const char* name, Clock::time_point t0, std::optional<Phase> next = {}) {
    const auto t1 = Clock::now();
    if (cfg_.timeline) cfg_.timeline->record(name, Timeline::kCompute, t0, t1);
    if (next) enter(*next);
    return t1;
  }
  void enter(Phase p) {
    if (cfg_.activity) cfg_.activity->enter(p);
  }

  Context& ctx_;
  std::optional<Resumed> from_;  // with cfg.resume, when there was a checkpoint, until resume()
  Model& model_;
  Backend& be_;
  const io::Dataset& train_set_;
  const io::Dataset* eval_;
  const TrainConfig& cfg_;
  Strategy& strategy_;
  Optimizer opt_;
  int64_t world_;  // workers may join a parameter-server job: each step's, from the strategy
  const int64_t rank_;
  const int64_t base_world_;  // the workers whose batches make the global batch
  const int64_t used_;        // samples an epoch trains on (a multiple of base_world_)
  const int64_t global_batch_, steps_, total_steps_;
  GatherDesc gather_;  // its batch and epoch set per step

  TrainResult result_;
  std::optional<CheckpointWriter> writer_;  // rank 0, with a checkpoint directory
  int64_t resume_step_in_epoch_ = 0;
  Clock::time_point last_checkpoint_;
  int64_t step_ = 0;
  bool stop_ = false;
  // The training set and this step's batch where the backend's kernels read them.
  Buffer images_store_, labels_store_, x_, y_;
  const void* images_ = nullptr;
  const int32_t* labels_ = nullptr;
  const Clock::time_point t_start_ = Clock::now();
  Clock::time_point t_timed_ = t_start_;  // start of the timed steps
  double excluded_seconds_ = 0;           // evaluations and checkpoints, for result_.train_seconds
  int64_t steps_in_call_ = 0;
  Clock::time_point last_progress_;
};

void Run::resume() {
  model_.init(cfg_.seed);
  if (const std::optional<JoinPoint> joined = strategy_.joined()) {
    // The job's parameters and optimizer state are the servers' (broadcast_initial).
    step_ = joined->step;
    result_.resumed_from_epoch = step_ / steps_;
    result_.resumed_from_step = step_;
    resume_step_in_epoch_ = step_ % steps_;
    return;
  }
  if (cfg_.resume) {
    if (from_) {
      const io::Checkpoint& ck = from_->ck;
      const std::string& where = from_->where;
      STRAND_CHECK(
          ck.model.arch == model_.arch(), Usage,
          "checkpoint holds model '" + ck.model.arch.name + "', this run trains '" + model_.arch().name + "'",
          where);
      STRAND_CHECK(ck.seed == cfg_.seed, Usage,
                   "checkpoint was made with seed " + std::to_string(ck.seed) + "; this run uses seed " +
                       std::to_string(cfg_.seed) + " (resuming must not change it)",
                   where);
      // Inside an epoch, the position is a place in the epoch's permutation (the global batch
      // is the checkpoint's: resumed_batch).
      STRAND_CHECK(ck.step_in_epoch < steps_, Usage,
                   "checkpoint is " + std::to_string(ck.step_in_epoch) +
                       " steps into an epoch, this run's epochs have " + std::to_string(steps_) +
                       " (is the training set the same?)",
                   where);
      if (ck.global_batch > 0 && ck.batch_size != cfg_.batch_size)
        ctx_.log("resuming on " + std::to_string(world_) + " workers, " + std::to_string(cfg_.batch_size) +
                 " images each: the checkpoint's global batch of " + std::to_string(ck.global_batch) +
                 " stays (it had " + std::to_string(ck.global_batch / ck.batch_size) + " workers)");
      model_.set_params(ck.model.params);
      opt_.load_state(ck.optimizer);
      step_ = ck.global_step;
      result_.resumed_from_epoch = ck.epochs_done;
      result_.resumed_from_step = step_;
      resume_step_in_epoch_ = ck.step_in_epoch;
      ctx_.log("resuming from " + where + " (" +
               (ck.step_in_epoch > 0 ? "step " + std::to_string(ck.step_in_epoch) + " of epoch " +
                                           std::to_string(ck.epochs_done + 1)
                                     : "epoch " + std::to_string(ck.epochs_done)) +
               ", global step " + std::to_string(step_) + ")");
      from_.reset();  // its copies of the parameters and the optimizer state are in place now
    } else {
      ctx_.log("no checkpoint in " + cfg_.checkpoint_dir.string() + ": starting from scratch");
    }
  }
  // Every worker must resume from the same checkpoint (a rank on a host that cannot see it
  // would otherwise train different steps and hang the collectives).
  STRAND_CHECK(strategy_.sum(double(step_)) == double(step_) * strategy_.world(), Usage,
               "the workers resumed from different steps (is the checkpoint directory shared by all hosts?)",
               ctx_.where());
}

// The training set is made readable by the backend once (a copy only on a GPU); each step
// gathers its batch there from the epoch's permutation, so no image crosses to the device per
// step, and loss/accuracy are read from the device only for progress and evaluations.
void Run::stage_data() {
  images_ = be_.device_view(train_set_.pixel_data(), train_set_.pixel_bytes(), images_store_);
  labels_ = static_cast<const int32_t*>(
      be_.device_view(train_set_.labels.data(), train_set_.labels.size() * sizeof(int32_t), labels_store_));
  x_ = be_.alloc(size_t(cfg_.batch_size * train_set_.sample_shape.numel()) * sizeof(float));
  y_ = be_.alloc(size_t(cfg_.batch_size) * sizeof(int32_t));
}

bool Run::run_epoch(int64_t epoch, int64_t first) {
  const std::vector<int64_t> order = io::epoch_permutation(train_set_.size(), cfg_.seed, epoch);
  Buffer order_store;
  const auto* order_dev =
      static_cast<const int64_t*>(be_.device_view(order.data(), order.size() * sizeof(int64_t), order_store));
  EpochStats stats;
  auto t_train = Clock::now();
  last_progress_ = t_train - std::chrono::seconds(1);
  int64_t s = first;  // steps of this epoch done
  for (; s < steps_ && !stop_; ++s) {
    train_step(epoch, s, order, order_dev);
    if (cfg_.max_steps > 0 && step_ >= cfg_.max_steps) stop_ = true;
    const bool last = s + 1 == steps_ || stop_;
    report_progress(epoch, s, last, stats, t_train);
    if (((cfg_.eval_every > 0 && step_ % cfg_.eval_every == 0) || last) &&
        evaluate_now(epoch, stats, t_train)) {
      result_.reached_target = true;
      stop_ = true;
    }
    // The epoch's end has a checkpoint of its own (a stop at its last step still completes it).
    if (s + 1 < steps_ && checkpoint_due()) checkpoint(epoch, s + 1);
  }
  return s == steps_;
}

void Run::train_step(int64_t epoch, int64_t s, const std::vector<int64_t>& order, const int64_t* order_dev) {
  if (const int64_t w = strategy_.world(); w != world_) {
    ctx_.log("from step " + std::to_string(step_) + " on, " + std::to_string(w) +
             " workers share each global batch of " + std::to_string(global_batch_) + " (" +
             std::to_string(global_batch_ / w) + " images each)");
    world_ = w;
  }
  // This worker's part of the global batch (the last one may be smaller; it still divides
  // evenly because `used_` is a multiple of the world size, unless workers joined: shares are
  // then equal and what is left over is not trained on).
  const std::span<const int64_t> epoch_order = std::span<const int64_t>(order).first(size_t(used_));
  const std::span<const int64_t> batch =
      io::shard(io::batch_slice(epoch_order, s, global_batch_), int(rank_), int(world_));
  const int64_t b = int64_t(batch.size());
  STRAND_CHECK(b > 0, Usage,
               "step " + std::to_string(s) + " of epoch " + std::to_string(epoch + 1) +
                   " has fewer images than the " + std::to_string(world_) + " workers",
               ctx_.where());
  const int64_t first = batch.data() - order.data();
  opt_.set_lr(cfg_.schedule.lr(cfg_.optimizer.lr, step_, total_steps_));
  if (steps_in_call_ == cfg_.untimed_steps) {  // the timed steps start: the warm-up is done
    be_.synchronize();
    t_timed_ = Clock::now();
    excluded_seconds_ = 0;
  }
  gather_.batch = b;
  gather_.epoch = epoch;
  const Model::GradsReady ready = [&](int64_t begin, int64_t end) {
    strategy_.grads_ready(model_, begin, end);
  };
  if (cfg_.activity) {
    cfg_.activity->at_step(epoch, s, steps_, step_);
    cfg_.activity->enter(Phase::Forward);
  }
  auto t = Clock::now();
  be_.begin_step(b);
  be_.gather(gather_, order_dev + first, images_, labels_, x_.f32(), y_.i32());
  model_.forward(x_.f32(), b, true, step_key(cfg_.seed, step_), uint64_t(rank_ * b));
  model_.loss_accumulate(y_.i32(), b);
  t = phase("forward", t, Phase::Backward);
  model_.backward(ready);
  t = phase("backward", t, Phase::Reduce);
  strategy_.finish_step(model_, opt_);
  be_.end_step();
  strategy_.after_step(model_);
  phase("update", t);
  ++step_;
  if (steps_in_call_++ >= cfg_.untimed_steps) result_.train_images += b;
}

// Progress reads the totals (a wait on a GPU) at most 5 times a second.
void Run::report_progress(int64_t epoch, int64_t s, bool last, EpochStats& stats, Clock::time_point t_train) {
  if (!cfg_.on_step || !(last || since(last_progress_) >= 0.2)) return;
  stats.add(be_.take_loss_totals());
  last_progress_ = Clock::now();
  cfg_.on_step(
      {.epoch = epoch + 1,
       .epochs = cfg_.epochs,
       .step_in_epoch = s + 1,
       .steps_per_epoch = steps_,
       .loss = stats.loss_sum / double(stats.seen),
       .accuracy = double(stats.correct) / double(stats.seen),
       .images_per_sec = double(stats.seen) * double(world_) / (stats.train_seconds + since(t_train))});
}

bool Run::evaluate_now(int64_t epoch, EpochStats& stats, Clock::time_point& t_train) {
  stats.add(be_.take_loss_totals());
  stats.train_seconds += since(t_train);
  const double all_seen = strategy_.sum(double(stats.seen));
  Metrics m{.epoch = epoch + 1,
            .step = step_,
            .loss = strategy_.sum(stats.loss_sum) / all_seen,
            .train_accuracy = strategy_.sum(double(stats.correct)) / all_seen,
            .images_per_sec = all_seen / stats.train_seconds,
            .workers = int64_t(strategy_.sum(1.0))};
  if (eval_) {
    enter(Phase::Evaluate);
    const auto t_eval = Clock::now();
    result_.last_eval = evaluate(model_, *eval_);
    excluded_seconds_ += since(t_eval);
    m.test_accuracy = result_.last_eval.accuracy;
    m.test_loss = result_.last_eval.loss;
  }
  m.seconds = since(t_start_);
  if (strategy_.world() > 1) {
    const double seen = double(stats.seen);
    const double own[] = {stats.loss_sum / seen, double(stats.correct) / seen, m.test_accuracy, m.test_loss,
                          seen / stats.train_seconds};
    for (const std::vector<double>& v : strategy_.gather(own))
      m.per_worker.push_back(v.empty() ? std::nullopt
                                       : std::optional<WorkerMetrics>({.loss = v[0],
                                                                       .train_accuracy = v[1],
                                                                       .test_accuracy = v[2],
                                                                       .test_loss = v[3],
                                                                       .images_per_sec = v[4]}));
  }
  result_.evaluations.push_back(m);
  if (cfg_.on_eval) cfg_.on_eval(m);
  t_train = Clock::now();
  return eval_ && cfg_.stop_at_accuracy > 0 && m.test_accuracy >= cfg_.stop_at_accuracy;
}

bool Run::checkpoint_due() const {
  return writer_ &&
         ((cfg_.checkpoint_every > 0 && step_ % cfg_.checkpoint_every == 0) ||
          (cfg_.checkpoint_every_seconds > 0 && since(last_checkpoint_) >= cfg_.checkpoint_every_seconds));
}

void Run::checkpoint(int64_t epoch, int64_t step_in_epoch) {
  if (!writer_) return;
  enter(Phase::Checkpoint);
  const auto t_checkpoint = Clock::now();
  strategy_.before_checkpoint(model_, opt_);
  writer_->submit({.model = {model_.arch(), io::default_signature(model_), model_.get_params(), {}},
                   .optimizer = opt_.state(),
                   .epochs_done = step_in_epoch > 0 ? epoch : epoch + 1,
                   .global_step = step_,
                   .seed = cfg_.seed,
                   .batch_size = cfg_.batch_size,
                   .step_in_epoch = step_in_epoch,
                   .global_batch = global_batch_});
  last_checkpoint_ = Clock::now();
  if (step_in_epoch == 0) excluded_seconds_ += since(t_checkpoint);
  log_written();
}

void Run::log_written() {
  for (const CheckpointWriter::Written& w : writer_->take_written())
    ctx_.log("checkpoint " + w.path.string() + " (written in " + std::to_string(int64_t(w.seconds * 1000)) +
             " ms in the background)");
}

void Run::finish() {
  enter(Phase::Finishing);
  if (writer_) {
    writer_->flush();
    log_written();
  }
  be_.synchronize();
  if (steps_in_call_ > cfg_.untimed_steps) result_.train_seconds = since(t_timed_) - excluded_seconds_;
  result_.global_step = step_;
}

}  // namespace

EvalResult evaluate(Model& model, const io::Dataset& data, int64_t batch_size) {
  check_fits(model, data, "evaluation");
  STRAND_CHECK(batch_size >= 1, Usage, "evaluation batch size must be at least 1", "evaluate");
  Backend& be = model.backend();
  const int64_t n = data.size(), classes = model.classes();
  batch_size = std::min(batch_size, n);
  // The set is made readable by the backend once and each batch gathered there, as training
  // does, without augmentation.
  std::vector<int64_t> rows(static_cast<size_t>(n));
  std::iota(rows.begin(), rows.end(), int64_t{0});
  Buffer images_store, labels_store, rows_store;
  const void* images = be.device_view(data.pixel_data(), data.pixel_bytes(), images_store);
  const auto* labels = static_cast<const int32_t*>(
      be.device_view(data.labels.data(), size_t(n) * sizeof(int32_t), labels_store));
  const auto* rows_dev =
      static_cast<const int64_t*>(be.device_view(rows.data(), size_t(n) * sizeof(int64_t), rows_store));
  GatherDesc desc = gather_desc(model, data);
  Buffer x = be.alloc(size_t(batch_size * desc.sample()) * sizeof(float));
  Buffer y = be.alloc(size_t(batch_size) * sizeof(int32_t));
  std::vector<float> logits(size_t(batch_size * classes));
  EvalResult r;
  r.confusion.assign(size_t(classes), std::vector<int64_t>(size_t(classes), 0));
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t b = std::min(batch_size, n - start);
    desc.batch = b;
    be.gather(desc, rows_dev + start, images, labels, x.f32(), y.i32());
    const float* out = model.forward(x.f32(), b, false, 0);
    be.to_host(logits.data(), out, size_t(b * classes) * sizeof(float));
    const LossResult lr = model.loss(y.i32(), b);
    loss_sum += lr.loss * double(b);
    correct += lr.correct;
    for (int64_t i = 0; i < b; ++i) {
      const float* row = logits.data() + i * classes;
      const int64_t pred = std::max_element(row, row + classes) - row;
      r.confusion[size_t(data.labels[size_t(start + i)])][size_t(pred)] += 1;
    }
  }
  r.examples = n;
  r.accuracy = double(correct) / double(n);
  r.loss = loss_sum / double(n);
  return r;
}

void validate(const TrainConfig& cfg) {
  STRAND_CHECK(cfg.epochs >= 1, Usage, "epochs must be at least 1, got " + std::to_string(cfg.epochs),
               "train");
  STRAND_CHECK(cfg.batch_size >= 1, Usage,
               "batch size must be at least 1, got " + std::to_string(cfg.batch_size), "train");
  STRAND_CHECK(!cfg.resume || !cfg.checkpoint_dir.empty(), Usage, "resuming needs a checkpoint directory",
               "train");
  STRAND_CHECK(cfg.eval_every >= 0, Usage, "eval_every must be >= 0", "train");
  STRAND_CHECK(cfg.checkpoint_every >= 0 && cfg.checkpoint_every_seconds >= 0, Usage,
               "checkpoint_every and checkpoint_every_seconds must be >= 0", "train");
  STRAND_CHECK(
      (cfg.checkpoint_every == 0 && cfg.checkpoint_every_seconds == 0) || !cfg.checkpoint_dir.empty(), Usage,
      "checkpointing every N steps or seconds needs a checkpoint directory", "train");
  STRAND_CHECK(cfg.schedule.warmup_steps >= 0, Usage, "warmup_steps must be >= 0", "train");
  STRAND_CHECK(cfg.augment.shift >= 0 && cfg.augment.shift < Augmentation::kMaxShift, Usage,
               "the augmentation shift must be in [0, " + std::to_string(Augmentation::kMaxShift) +
                   "), got " + std::to_string(cfg.augment.shift),
               "train");
  STRAND_CHECK(cfg.stop_at_accuracy >= 0 && cfg.stop_at_accuracy <= 1, Usage,
               "stop_at_accuracy must be in [0,1], got " + std::to_string(cfg.stop_at_accuracy), "train");
  validate(cfg.optimizer);
}

TrainResult train(Context& ctx, Model& model, const io::Dataset& train_set, const io::Dataset* eval,
                  const TrainConfig& cfg, Strategy& strategy) {
  validate(cfg);
  STRAND_CHECK(cfg.stop_at_accuracy == 0 || eval, Usage, "stopping at an accuracy needs a test set", "train");
  check_fits(model, train_set, "training");
  if (eval) check_fits(model, *eval, "test");
  STRAND_CHECK(
      !cfg.augment.any() || train_set.sample_shape.rank() == 3 || model.arch().input.rank() == 3, Usage,
      "augmentation moves images, but the training samples (" + train_set.sample_shape.str() +
          ") and model '" + model.arch().name + "' (" + model.arch().input.str() + ") have no image shape",
      "train");
  std::optional<Resumed> from;
  TrainConfig run_cfg = cfg;
  if (cfg.resume) {
    if (auto path = io::latest_checkpoint(cfg.checkpoint_dir)) {
      from = Resumed{io::load_checkpoint(*path), path->string()};
      run_cfg.batch_size = resumed_batch(*from, cfg.batch_size, strategy.world());
    }
  }
  return Run(ctx, model, train_set, eval, run_cfg, strategy, std::move(from))();
}

TrainResult train(Context& ctx, Model& model, const io::Dataset& train_set, const io::Dataset* eval,
                  const TrainConfig& config) {
  LocalStrategy local;
  return train(ctx, model, train_set, eval, config, local);
}

}  // namespace strand
