// strand train: train a model on MNIST-layout data and export it.
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "apps/commands.hpp"
#include "apps/common.hpp"
#include "apps/progress.hpp"
#include "apps/sagemaker.hpp"
#include "core/error.hpp"
#include "io/model_file.hpp"
#include "models/models.hpp"
#include "train/trainer.hpp"

namespace strand::cli {

namespace {

struct TrainArgs {
  std::string model = "mnist_cnn";
  std::string data, model_dir, metrics, checkpoint_dir;
  DeviceArgs device;
  // The defaults are the fastest recipe to 99% found on MNIST (README "Defaults").
  int64_t epochs = 1, batch_size = 64, eval_every = 0;
  double stop_at_accuracy = 0;
  float lr = 2e-3f, momentum = 0.9f;
  std::string optimizer = "adam";
  std::string lr_schedule = "cosine";
  uint64_t seed = 42;
  int threads = default_threads();
  bool resume = false;
};

std::string compact(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

void run_train(CLI::App& cmd, TrainArgs& a) {
  apply_sagemaker_hyperparameters(cmd, std::getenv("SM_HPS"));
  STRAND_CHECK(!a.data.empty(), Usage, "--data is required (or set SM_CHANNEL_TRAINING)", "strand train");
  STRAND_CHECK(!a.model_dir.empty(), Usage, "--model-dir is required (or set SM_MODEL_DIR)", "strand train");
  const std::filesystem::path model_dir = a.model_dir;

  TrainConfig cfg;
  cfg.epochs = a.epochs;
  cfg.batch_size = a.batch_size;
  cfg.seed = a.seed;
  cfg.optimizer.kind = a.optimizer;
  cfg.optimizer.lr = a.lr;
  cfg.optimizer.momentum = a.momentum;
  cfg.lr_schedule = a.lr_schedule;
  validate(cfg.optimizer);
  cfg.checkpoint_dir = a.checkpoint_dir.empty() ? model_dir / "checkpoints" : std::filesystem::path(a.checkpoint_dir);
  cfg.resume = a.resume;
  cfg.eval_every = a.eval_every;
  cfg.stop_at_accuracy = a.stop_at_accuracy;

  Context ctx = make_context(a.device, a.threads);
  Model model(ctx.backend(), models::by_name(a.model));
  const io::MnistSplits data = load_data(ctx, a.data);

  std::ofstream metrics;
  if (!a.metrics.empty()) {
    metrics.open(a.metrics, a.resume ? std::ios::app : std::ios::trunc);
    STRAND_CHECK(metrics.is_open(), Io, "cannot open the metrics file for writing", a.metrics);
  }
  Progress progress(stderr);
  cfg.on_step = [&](const StepProgress& p) { progress.step(p); };
  cfg.on_eval = [&](const Metrics& m) {
    progress.end_epoch();
    char line[256];
    std::snprintf(line, sizeof line,
                  "epoch %lld step %lld: loss %.4f, train accuracy %.2f%%, test accuracy %.2f%%, %.0f images/s, %.1f s",
                  (long long)m.epoch, (long long)m.step, m.loss, 100 * m.train_accuracy, 100 * m.test_accuracy,
                  m.images_per_sec, m.seconds);
    ctx.log(line);
    if (metrics.is_open()) {
      nlohmann::json j = {{"epoch", m.epoch},
                          {"step", m.step},
                          {"loss", m.loss},
                          {"train_accuracy", m.train_accuracy},
                          {"test_accuracy", m.test_accuracy},
                          {"test_loss", m.test_loss},
                          {"images_per_sec", m.images_per_sec},
                          {"seconds", m.seconds}};
      metrics << j.dump() << '\n' << std::flush;
      STRAND_CHECK(metrics.good(), Io, "cannot write the metrics file", a.metrics);
    }
  };

  ctx.log("training " + a.model + " (" + std::to_string(model.param_count()) + " parameters) for " +
          std::to_string(a.epochs) + " epoch(s), batch " + std::to_string(a.batch_size) + ", " + a.optimizer +
          " lr " + compact(a.lr) + ", " + std::to_string(a.threads) + " thread(s)");
  const TrainResult r = train(ctx, model, data.train, &data.eval, cfg);
  if (r.reached_target) ctx.log("reached test accuracy " + compact(a.stop_at_accuracy) + ": stopping");
  // A run resumed from its last epoch trains nothing and is evaluated here.
  const EvalResult final_eval = r.evaluations.empty() ? evaluate(model, data.eval) : r.last_eval;
  io::ModelFile file{model.arch(), io::default_signature(model), model.get_params(),
                     {{"test_accuracy", std::to_string(final_eval.accuracy)},
                      {"epochs", std::to_string(a.epochs)},
                      {"steps", std::to_string(r.global_step)},
                      {"optimizer", a.optimizer},
                      {"seed", std::to_string(a.seed)},
                      {"created", utc_now()},
                      {"strand_version", STRAND_VERSION}}};
  const int64_t version = io::export_model(model_dir, file);
  const auto out = model_dir / std::to_string(version);
  char acc[32];
  std::snprintf(acc, sizeof acc, "%.2f%%", 100 * final_eval.accuracy);
  ctx.log(std::string("test accuracy ") + acc + "; exported version " + std::to_string(version) + " to " +
          (out / io::kModelFileName).string());
  std::cout << out.string() << '\n';
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("train", "Train a model and export it to MODEL_DIR/<version>/");
  cmd->add_option("--model", a->model, "Model to train")->check(CLI::IsMember(models::names()))->capture_default_str();
  cmd->add_option("--data", a->data, "Data directory: MNIST IDX files or train_data.npy/...")
      ->envname("SM_CHANNEL_TRAINING");
  cmd->add_option("--model-dir", a->model_dir, "Where the exported model goes")->envname("SM_MODEL_DIR");
  cmd->add_option("--epochs", a->epochs, "Epochs to train")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--batch-size", a->batch_size, "Images per step")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--lr", a->lr, "Learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--optimizer", a->optimizer, "sgd, momentum or adam")
      ->check(CLI::IsMember({"sgd", "momentum", "adam"}))->capture_default_str();
  cmd->add_option("--lr-schedule", a->lr_schedule, "Learning rate over the run: constant, linear or cosine (to 0)")
      ->check(CLI::IsMember({"constant", "linear", "cosine"}))->capture_default_str();
  cmd->add_option("--momentum", a->momentum, "Momentum (optimizer momentum)")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  cmd->add_option("--seed", a->seed, "Seed for initialisation, shuffling and dropout")->capture_default_str();
  cmd->add_option("--threads", a->threads, "CPU threads")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--metrics", a->metrics, "Append one JSON line per evaluation to this file");
  cmd->add_option("--checkpoint-dir", a->checkpoint_dir, "Checkpoint directory (default MODEL_DIR/checkpoints)");
  cmd->add_flag("--resume", a->resume, "Continue from the newest checkpoint");
  cmd->add_option("--eval-every", a->eval_every, "Also evaluate on the test set every this many steps")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--stop-at-accuracy", a->stop_at_accuracy,
                  "Stop at the first evaluation reaching this test accuracy (e.g. 0.99), export, exit 0")
      ->check(CLI::Range(0.0, 1.0));
  add_device_options(*cmd, a->device);
  cmd->callback([cmd, a] { run_train(*cmd, *a); });
}

}  // namespace strand::cli
