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
#include "allreduce/mpi_communicator.hpp"
#include "allreduce/nccl_communicator.hpp"
#include "allreduce/strategy.hpp"
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
  // Data parallelism (--strategy allreduce, under mpirun).
  std::string strategy = "local";
  std::string allreduce = "ring";
  bool hierarchical = false, scale_lr = false;
  double fusion_mib = double(allreduce::AllreduceStrategy::kDefaultFusionBytes) / (1 << 20);
  double comm_timeout = 45;
  int64_t global_batch_size = 0, warmup_steps = -1;
  std::string timeline;
};

// What a data-parallel run adds to a local one: MPI, the communicator, the strategy.
struct Distributed {
  allreduce::MpiRuntime* mpi;
  std::unique_ptr<allreduce::MpiCommunicator> comm;
  std::unique_ptr<allreduce::NcclCommunicator> nccl;  // --device cuda: gradients reduced on the GPUs
  std::unique_ptr<Timeline> timeline;
  std::unique_ptr<allreduce::AllreduceStrategy> strategy;
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

// `dist` is null for a local run; for a data-parallel one it holds the MPI runtime and
// receives the communicators, owned by the caller so that they outlive an error's unwinding
// (their destruction is collective and would wait for the peers).
void train_job(CLI::App& cmd, TrainArgs& a, Distributed* distributed) {
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

  Distributed local_run{nullptr, nullptr, nullptr, nullptr, nullptr};
  Distributed& dist = distributed ? *distributed : local_run;
  allreduce::MpiRuntime* mpi = dist.mpi;
  Identity id;
  if (mpi) {
    id = {mpi->world_rank(), mpi->world_size(), mpi->host()};
    allreduce::CommOptions co;
    STRAND_CHECK(!a.hierarchical || a.allreduce == "ring" || a.allreduce == "hierarchical", Usage,
                 "--hierarchical contradicts --allreduce " + a.allreduce, "strand train");
    co.algorithm = a.hierarchical ? "hierarchical" : a.allreduce;
    co.timeout_s = a.comm_timeout;
    co.stall_warning_s = std::min(10.0, a.comm_timeout / 3);
    dist.comm = std::make_unique<allreduce::MpiCommunicator>(*mpi, co);
    dist.comm->allgather(0);  // every rank is here: the timeline's common origin
    if (!a.timeline.empty()) dist.timeline = std::make_unique<Timeline>(id.rank, std::chrono::steady_clock::now());
    cfg.timeline = dist.timeline.get();
    const int64_t world = id.world;
    if (a.global_batch_size > 0) {
      STRAND_CHECK(a.global_batch_size % world == 0, Usage,
                   "--global-batch-size " + std::to_string(a.global_batch_size) + " does not divide over " +
                       std::to_string(world) + " ranks",
                   "strand train");
      cfg.batch_size = a.global_batch_size / world;
    }
    // Goyal et al.: the learning rate grows with the global batch, reached after a warm-up.
    if (a.scale_lr) cfg.optimizer.lr *= float(world);
    cfg.warmup_steps = a.warmup_steps >= 0 ? a.warmup_steps : (a.scale_lr ? 100 : 0);
    allreduce::Communicator* grads_comm = dist.comm.get();
    if (a.device.device.rfind("cuda", 0) == 0) {
      // One GPU per rank: plain "cuda" means the GPU of this rank's index on its host.
      if (a.device.device == "cuda") a.device.device = "cuda:" + std::to_string(dist.comm->local_rank());
      a.device.graphs = false;  // the strategy waits for the device inside a step
      const std::string index = a.device.device.substr(5);
      STRAND_CHECK(a.device.device[4] == ':' && !index.empty() && index.find_first_not_of("0123456789") == std::string::npos,
                   Usage, "--device '" + a.device.device + "' is not cuda or cuda:N", "strand train");
      dist.nccl = std::make_unique<allreduce::NcclCommunicator>(*dist.comm, std::stoi(index),
                                                                a.comm_timeout);
      grads_comm = dist.nccl.get();
    }
    dist.strategy = std::make_unique<allreduce::AllreduceStrategy>(
        *grads_comm, size_t(a.fusion_mib * (1 << 20)), dist.timeline.get());
  } else {
    STRAND_CHECK(a.global_batch_size == 0 && !a.scale_lr && a.timeline.empty(), Usage,
                 "--global-batch-size, --scale-lr and --timeline need --strategy allreduce", "strand train");
    cfg.warmup_steps = std::max<int64_t>(a.warmup_steps, 0);
  }
  const bool chief = id.rank == 0;  // writes the metrics, the checkpoints and the export

  Context ctx = make_context(a.device, a.threads, id);
  Model model(ctx.backend(), models::by_name(a.model));
  const io::MnistSplits data = load_data(ctx, a.data);

  std::ofstream metrics;
  if (!a.metrics.empty() && chief) {
    metrics.open(a.metrics, a.resume ? std::ios::app : std::ios::trunc);
    STRAND_CHECK(metrics.is_open(), Io, "cannot open the metrics file for writing", a.metrics);
  }
  Progress progress(stderr);
  if (chief) cfg.on_step = [&](const StepProgress& p) { progress.step(p); };
  cfg.on_eval = [&](const Metrics& m) {
    if (!chief) return;
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

  if (chief)
    ctx.log("training " + a.model + " (" + std::to_string(model.param_count()) + " parameters) for " +
            std::to_string(a.epochs) + " epoch(s), batch " + std::to_string(cfg.batch_size) +
            (dist.strategy ? " per rank x " + std::to_string(id.world) + " ranks (" + dist.strategy->name() + ")" : "") +
            ", " + a.optimizer + " lr " + compact(cfg.optimizer.lr) + ", " + std::to_string(a.threads) + " thread(s)");
  const auto t_train = std::chrono::steady_clock::now();
  const TrainResult r = dist.strategy ? train(ctx, model, data.train, &data.eval, cfg, *dist.strategy)
                                      : train(ctx, model, data.train, &data.eval, cfg);
  if (dist.strategy) {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_train).count();
    const double wait = dist.comm->sum(dist.strategy->wait_seconds()) / id.world;
    if (chief)
      ctx.log("waited for gradient allreduce " + compact(wait) + " s of " + compact(secs) +
              " s (mean over ranks, evaluations included in the total)");
    if (dist.timeline) {
      const std::vector<std::string> events = dist.comm->gather_to_root(dist.timeline->events_json());
      if (chief) {
        Timeline::write(a.timeline, events);
        ctx.log("timeline " + a.timeline);
      }
    }
  }
  if (!chief) return;
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

void run_train(CLI::App& cmd, TrainArgs& a) {
  if (a.strategy == "local") {
    STRAND_CHECK(!a.hierarchical && a.allreduce == "ring", Usage, "--hierarchical and --allreduce need --strategy allreduce", "strand train");
    train_job(cmd, a, nullptr);
    return;
  }
  allreduce::MpiRuntime mpi(nullptr, nullptr);
  Distributed dist{&mpi, nullptr, nullptr, nullptr, nullptr};
  try {
    train_job(cmd, a, &dist);
  } catch (const std::exception& e) {
    // Peers blocked in a collective would wait for their own timeouts: end the whole job now,
    // before the communicators' (collective) destruction.
    if (mpi.world_size() > 1) {
      const auto* se = dynamic_cast<const Error*>(&e);
      std::cerr << "strand: " << e.what() << std::endl;
      mpi.abort(se && se->kind() == ErrorKind::Usage ? 2 : 1);
    }
    throw;
  }
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
  cmd->add_option("--strategy", a->strategy, "local, or allreduce (data parallel over the ranks of an mpirun job)")
      ->check(CLI::IsMember({"local", "allreduce"}))->capture_default_str();
  cmd->add_option("--allreduce", a->allreduce, "Allreduce algorithm: ring (ours), hierarchical or mpi (MPI_Allreduce)")
      ->check(CLI::IsMember({"ring", "hierarchical", "mpi"}))->capture_default_str();
  cmd->add_flag("--hierarchical", a->hierarchical, "Same as --allreduce hierarchical: reduce within hosts, ring across");
  cmd->add_option("--fusion-threshold", a->fusion_mib, "Gradient bucket size in MiB (tensor fusion)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--global-batch-size", a->global_batch_size, "Images per step over all ranks (default --batch-size x ranks)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--scale-lr", a->scale_lr, "Multiply --lr by the number of ranks, after a warm-up (--warmup-steps, default 100)");
  cmd->add_option("--warmup-steps", a->warmup_steps, "Ramp the learning rate up linearly over this many steps")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--timeline", a->timeline, "Write a Chrome trace of every rank's steps and allreduces here (rank 0)");
  cmd->add_option("--comm-timeout", a->comm_timeout, "Seconds without a message from a peer before the job stops")
      ->check(CLI::PositiveNumber)->capture_default_str();
  cmd->callback([cmd, a] { run_train(*cmd, *a); });
}

}  // namespace strand::cli
