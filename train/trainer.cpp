#include "train/trainer.hpp"

#include <algorithm>
#include <cmath>
#include <chrono>

#include "core/error.hpp"
#include "io/model_file.hpp"

namespace strand {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void check_fits(const Model& model, const io::Dataset& data, const char* which) {
  STRAND_CHECK(data.sample_shape.numel() == model.arch().input.numel(), Shape,
               std::string(which) + " samples have shape " + data.sample_shape.str() + ", model '" +
                   model.arch().name + "' takes " + model.arch().input.str(),
               "train");
  STRAND_CHECK(data.size() > 0, Usage, std::string(which) + " set is empty", "train");
}

// Device staging for one batch of images and labels.
struct BatchBuffers {
  BatchBuffers(Backend& be, int64_t batch, int64_t sample)
      : sample(sample), host_x(size_t(batch * sample)), host_y(size_t(batch)),
        x(be.alloc(host_x.size() * sizeof(float))), y(be.alloc(host_y.size() * sizeof(int32_t))) {}
  void load(Backend& be, const io::Dataset& data, std::span<const int64_t> idx) {
    io::gather_batch(data, idx, host_x.data(), host_y.data());
    be.to_device(x.data(), host_x.data(), idx.size() * size_t(sample) * sizeof(float));
    be.to_device(y.data(), host_y.data(), idx.size() * sizeof(int32_t));
  }
  int64_t sample;
  std::vector<float> host_x;
  std::vector<int32_t> host_y;
  Buffer x, y;
};

uint64_t step_key(uint64_t seed, int64_t step) { return mix64(seed ^ mix64(uint64_t(step) + 0x5eed)); }

// The learning rate at `step` of `total`: a pure function of the step, so a resumed run
// follows the same schedule as an uninterrupted one.
float scheduled_lr(const std::string& schedule, float base, int64_t step, int64_t total) {
  const double t = total > 0 ? std::min(1.0, double(step) / double(total)) : 0.0;
  if (schedule == "linear") return float(base * (1.0 - t));
  if (schedule == "cosine") return float(base * 0.5 * (1.0 + std::cos(3.14159265358979323846 * t)));
  return base;
}

}  // namespace

EvalResult evaluate(Model& model, const io::Dataset& data, int64_t batch_size) {
  check_fits(model, data, "evaluation");
  STRAND_CHECK(batch_size >= 1, Usage, "evaluation batch size must be at least 1", "evaluate");
  Backend& be = model.backend();
  const int64_t n = data.size(), classes = model.classes();
  batch_size = std::min(batch_size, n);
  BatchBuffers buf(be, batch_size, data.sample_shape.numel());
  std::vector<int64_t> idx;
  std::vector<float> logits(size_t(batch_size * classes));
  EvalResult r;
  r.confusion.assign(size_t(classes), std::vector<int64_t>(size_t(classes), 0));
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t b = std::min(batch_size, n - start);
    idx.resize(size_t(b));
    for (int64_t i = 0; i < b; ++i) idx[size_t(i)] = start + i;
    buf.load(be, data, idx);
    const float* out = model.forward(buf.x.f32(), b, false, 0);
    be.to_host(logits.data(), out, size_t(b * classes) * sizeof(float));
    const LossResult lr = model.loss(buf.y.i32(), b);
    loss_sum += lr.loss * double(b);
    correct += lr.correct;
    for (int64_t i = 0; i < b; ++i) {
      const float* row = logits.data() + i * classes;
      const int64_t pred = std::max_element(row, row + classes) - row;
      r.confusion[size_t(buf.host_y[size_t(i)])][size_t(pred)] += 1;
    }
  }
  r.examples = n;
  r.accuracy = double(correct) / double(n);
  r.loss = loss_sum / double(n);
  return r;
}

TrainResult train(Context& ctx, Model& model, const io::Dataset& train_set, const io::Dataset* eval,
                  const TrainConfig& cfg, Strategy& strategy) {
  STRAND_CHECK(cfg.epochs >= 1, Usage, "epochs must be at least 1, got " + std::to_string(cfg.epochs), "train");
  STRAND_CHECK(cfg.batch_size >= 1, Usage, "batch size must be at least 1, got " + std::to_string(cfg.batch_size),
               "train");
  STRAND_CHECK(!cfg.resume || !cfg.checkpoint_dir.empty(), Usage, "resuming needs a checkpoint directory", "train");
  STRAND_CHECK(cfg.eval_every >= 0, Usage, "eval_every must be >= 0", "train");
  STRAND_CHECK(cfg.warmup_steps >= 0, Usage, "warmup_steps must be >= 0", "train");
  STRAND_CHECK(cfg.lr_schedule == "constant" || cfg.lr_schedule == "linear" || cfg.lr_schedule == "cosine", Usage,
               "unknown learning-rate schedule '" + cfg.lr_schedule + "' (choose constant, linear or cosine)", "train");
  STRAND_CHECK(cfg.stop_at_accuracy >= 0 && cfg.stop_at_accuracy <= 1, Usage,
               "stop_at_accuracy must be in [0,1], got " + std::to_string(cfg.stop_at_accuracy), "train");
  STRAND_CHECK(cfg.stop_at_accuracy == 0 || eval, Usage, "stopping at an accuracy needs a test set", "train");
  check_fits(model, train_set, "training");
  if (eval) check_fits(model, *eval, "test");
  Backend& be = model.backend();
  Optimizer opt(be, cfg.optimizer, model.param_count());

  TrainResult result;
  int64_t step = 0;
  model.init(cfg.seed);
  if (cfg.resume) {
    if (auto path = io::latest_checkpoint(cfg.checkpoint_dir)) {
      io::Checkpoint ck = io::load_checkpoint(*path);
      const std::string where = path->string();
      STRAND_CHECK(ck.model.arch == model.arch(), Usage,
                   "checkpoint holds model '" + ck.model.arch.name + "', this run trains '" + model.arch().name + "'",
                   where);
      STRAND_CHECK(ck.seed == cfg.seed && ck.batch_size == cfg.batch_size, Usage,
                   "checkpoint was made with seed " + std::to_string(ck.seed) + " and batch size " +
                       std::to_string(ck.batch_size) + "; this run uses seed " + std::to_string(cfg.seed) +
                       " and batch size " + std::to_string(cfg.batch_size) + " (resuming must not change them)",
                   where);
      model.set_params(ck.model.params);
      opt.load_state(ck.optimizer);
      step = ck.global_step;
      result.resumed_from_epoch = ck.epochs_done;
      ctx.log("resuming from " + where + " (epoch " + std::to_string(ck.epochs_done) + ", step " +
              std::to_string(step) + ")");
    } else {
      ctx.log("no checkpoint in " + cfg.checkpoint_dir.string() + ": starting from scratch");
    }
  }
  // Every worker must resume from the same checkpoint (a rank on a host that cannot see it
  // would otherwise train different steps and hang the collectives).
  STRAND_CHECK(strategy.sum(double(step)) == double(step) * strategy.world(), Usage,
               "the workers resumed from different steps (is the checkpoint directory shared by all hosts?)",
               ctx.where());
  strategy.broadcast_initial(model, opt);

  // The training set is made readable by the backend once (a copy only on a GPU); each step
  // gathers its batch there from the epoch's permutation, so no image crosses to the device
  // per step, and loss/accuracy are read from the device only for progress and evaluations.
  const int64_t n = train_set.size(), sample = train_set.sample_shape.numel();
  Buffer images_store, labels_store;
  const auto* images = static_cast<const float*>(
      be.device_view(train_set.images.data(), train_set.images.size() * sizeof(float), images_store));
  const auto* labels = static_cast<const int32_t*>(
      be.device_view(train_set.labels.data(), train_set.labels.size() * sizeof(int32_t), labels_store));
  Buffer x = be.alloc(size_t(cfg.batch_size * sample) * sizeof(float));
  Buffer y = be.alloc(size_t(cfg.batch_size) * sizeof(int32_t));
  const Model::GradsReady ready = [&](int64_t b, int64_t e) { strategy.grads_ready(model, b, e); };
  const int64_t world = strategy.world(), rank = strategy.rank();
  const int64_t used = n - n % world;  // every rank trains the same number of samples
  const int64_t global_batch = cfg.batch_size * world;
  const int64_t steps = io::steps_per_epoch(used, global_batch);
  const int64_t total_steps = cfg.epochs * steps;
  Timeline* tl = cfg.timeline;
  auto phase = [&](const char* name, Clock::time_point t0) {
    const auto t1 = Clock::now();
    if (tl) tl->record(name, Timeline::kCompute, t0, t1);
    return t1;
  };
  const auto t_start = Clock::now();
  double excluded_seconds = 0;  // evaluations and checkpoints, for result.train_seconds
  auto t_timed = t_start;       // start of the timed steps
  int64_t steps_in_call = 0;
  bool stop = false;
  be.take_loss_totals();  // start from zero whatever ran on this backend before

  for (int64_t epoch = result.resumed_from_epoch; epoch < cfg.epochs && !stop; ++epoch) {
    const std::vector<int64_t> order = io::epoch_permutation(n, cfg.seed, epoch);
    const std::span<const int64_t> epoch_order = std::span<const int64_t>(order).first(size_t(used));
    Buffer order_store;
    const auto* order_dev =
        static_cast<const int64_t*>(be.device_view(order.data(), order.size() * sizeof(int64_t), order_store));
    // Running sums since the epoch began; training time excludes the evaluations.
    double loss_sum = 0, train_seconds = 0;
    int64_t correct = 0, seen = 0;
    auto t_train = Clock::now();
    auto last_progress = t_train - std::chrono::seconds(1);
    auto read_totals = [&] {
      const LossTotals t = be.take_loss_totals();
      loss_sum += t.loss_sum;
      correct += t.correct;
      seen += t.examples;
    };
    // Evaluates on the test set and reports; true when the accuracy target is reached.
    auto evaluation = [&] {
      read_totals();
      train_seconds += since(t_train);
      Metrics m;
      m.epoch = epoch + 1;
      m.step = step;
      const double all_seen = strategy.sum(double(seen));
      m.loss = strategy.sum(loss_sum) / all_seen;
      m.train_accuracy = strategy.sum(double(correct)) / all_seen;
      m.images_per_sec = all_seen / train_seconds;
      m.workers = int64_t(strategy.sum(1.0));
      if (eval) {
        const auto t_eval = Clock::now();
        result.last_eval = evaluate(model, *eval);
        excluded_seconds += since(t_eval);
        m.test_accuracy = result.last_eval.accuracy;
        m.test_loss = result.last_eval.loss;
      }
      m.seconds = since(t_start);
      result.evaluations.push_back(m);
      if (cfg.on_eval) cfg.on_eval(m);
      t_train = Clock::now();
      return eval && cfg.stop_at_accuracy > 0 && m.test_accuracy >= cfg.stop_at_accuracy;
    };
    int64_t s = 0;  // steps of this epoch done
    for (; s < steps && !stop; ++s) {
      // This worker's part of the global batch (the last one may be smaller; it still divides
      // evenly because `used` is a multiple of the world size).
      const std::span<const int64_t> batch =
          io::shard(io::batch_slice(epoch_order, s, global_batch), int(rank), int(world));
      const int64_t b = int64_t(batch.size());
      const int64_t first = batch.data() - order.data();
      float lr = scheduled_lr(cfg.lr_schedule, cfg.optimizer.lr, step, total_steps);
      if (step < cfg.warmup_steps) lr *= float(step + 1) / float(cfg.warmup_steps);
      opt.set_lr(lr);
      if (steps_in_call == cfg.untimed_steps) {  // the timed steps start: the warm-up is done
        be.synchronize();
        t_timed = Clock::now();
        excluded_seconds = 0;
      }
      auto t = Clock::now();
      be.begin_step(b);
      be.gather(b, sample, order_dev + first, images, labels, x.f32(), y.i32());
      model.forward(x.f32(), b, true, step_key(cfg.seed, step), uint64_t(rank * b));
      model.loss_accumulate(y.i32(), b);
      t = phase("forward", t);
      model.backward(ready);
      t = phase("backward", t);
      strategy.finish_step(model, opt);
      be.end_step();
      phase("update", t);
      ++step;
      if (steps_in_call++ >= cfg.untimed_steps) result.train_images += b;
      if (cfg.max_steps > 0 && step >= cfg.max_steps) stop = true;
      const bool last = s + 1 == steps || stop;
      // Progress reads the totals (a wait on a GPU) at most 5 times a second.
      if (cfg.on_step && (last || since(last_progress) >= 0.2)) {
        read_totals();
        last_progress = Clock::now();
        cfg.on_step({epoch + 1, cfg.epochs, s + 1, steps, loss_sum / double(seen), double(correct) / double(seen),
                     double(seen) * strategy.world() / (train_seconds + since(t_train))});
      }
      if ((cfg.eval_every > 0 && step % cfg.eval_every == 0) || last) {
        if (evaluation()) {
          result.reached_target = true;
          stop = true;
        }
      }
    }
    // Only a whole epoch is checkpointed (a stop at its last step still completes it).
    if (!cfg.checkpoint_dir.empty() && strategy.rank() == 0 && s == steps) {
      const auto t_checkpoint = Clock::now();
      strategy.before_checkpoint(model, opt);
      io::Checkpoint ck;
      ck.model = {model.arch(), io::default_signature(model), model.get_params(), {}};
      ck.optimizer = opt.state();
      ck.epochs_done = epoch + 1;
      ck.global_step = step;
      ck.seed = cfg.seed;
      ck.batch_size = cfg.batch_size;
      ctx.log("checkpoint " + io::write_checkpoint(cfg.checkpoint_dir, ck).string());
      excluded_seconds += since(t_checkpoint);
    }
  }
  be.synchronize();
  if (steps_in_call > cfg.untimed_steps) result.train_seconds = since(t_timed) - excluded_seconds;
  result.global_step = step;
  return result;
}

TrainResult train(Context& ctx, Model& model, const io::Dataset& train_set, const io::Dataset* eval,
                  const TrainConfig& config) {
  LocalStrategy local;
  return train(ctx, model, train_set, eval, config, local);
}

}  // namespace strand
