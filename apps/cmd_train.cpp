// strand train: parses argv, SM_HPS and the environment into a job::JobSpec, runs it
// (job/job.hpp) and prints where the model went.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <strand/core/error.hpp>
#include <strand/core/text.hpp>
#include <strand/io/dataset.hpp>
#include <strand/job/job.hpp>
#include <strand/job/launch.hpp>
#include <strand/models/models.hpp>
#include "apps/commands.hpp"
#include "apps/common.hpp"
#include "apps/progress.hpp"
#include "apps/sagemaker.hpp"

namespace strand::cli {

namespace {

struct TrainArgs {
  job::JobSpec spec;
  DeviceArgs device;
  int threads = default_threads();
  double fusion_mib = double(job::AllreduceSpec{}.fusion_bytes) / (1 << 20);
  bool hierarchical = false;
  int64_t warmup_steps = -1;
  std::string checkpoint_dir;
};

// An option whose text is parsed once, here, into `target` by `parse` (a Usage error names
// the text); `shown` is the default --help prints.
template <class T, class Parse>
CLI::Option* add_parsed(CLI::App& cmd, const std::string& name, T& target, Parse parse,
                        const std::string& help, const std::string& shown) {
  return cmd
      .add_option_function<std::string>(
          name, [&target, parse](const std::string& v) { target = parse(v); }, help)
      ->default_str(shown);
}

job::JobSpec job_spec(CLI::App& cmd, TrainArgs& a) {
  apply_sagemaker_hyperparameters(cmd, std::getenv("SM_HPS"));
  job::JobSpec spec = a.spec;
  job::StrategySpec& st = spec.strategy;
  // TF_CONFIG describes a parameter-server job (job/launch.hpp): it needs no --strategy.
  if (std::getenv(job::kTfConfigEnv)) {
    if (cmd.get_option("--strategy")->count() == 0) st.kind = job::StrategyKind::Ps;
    STRAND_CHECK(st.kind == job::StrategyKind::Ps, Usage,
                 "TF_CONFIG describes a parameter-server job; --strategy " +
                     std::string(job::to_string(st.kind)) +
                     " contradicts it (unset TF_CONFIG, or use --strategy ps)",
                 "strand train");
  }
  // A --ps-* flag with another strategy would be silently ignored: say so instead.
  if (st.kind != job::StrategyKind::Ps) {
    for (const char* flag :
         {"--ps-mode", "--ps-chunk-bytes", "--ps-port", "--ps-bind", "--workers-per-host", "--ps-join"})
      STRAND_CHECK(cmd.get_option(flag)->count() == 0, Usage,
                   std::string(flag) + " needs --strategy ps (the strategy is " +
                       std::string(job::to_string(st.kind)) + ")",
                   "strand train");
  }
  if (st.kind == job::StrategyKind::Local)
    STRAND_CHECK(!a.hierarchical && !st.allreduce.algorithm, Usage,
                 "--hierarchical and --allreduce need --strategy allreduce", "strand train");
  st.allreduce.hierarchical = a.hierarchical;
  st.allreduce.fusion_bytes = size_t(a.fusion_mib * (1 << 20));
  if (a.warmup_steps >= 0)
    spec.train.schedule.warmup_steps = a.warmup_steps;
  else if (st.scale_lr)
    spec.train.schedule.warmup_steps = 100;
  spec.device = {
      .device = a.device.device,
      .cuda = {.tf32 = a.device.tf32, .graphs = a.device.graphs, .cudnn_benchmark = a.device.cudnn_benchmark},
      .threads = a.threads};
  spec.train.checkpoint_dir = a.checkpoint_dir;  // empty: MODEL_DIR/checkpoints
  if (const char* beat = std::getenv(job::kHeartbeatEnv)) spec.heartbeat = job::parse_heartbeat_target(beat);
  return spec;
}

void run_train(CLI::App& cmd, TrainArgs& a) {
  const job::JobSpec spec = job_spec(cmd, a);
  Progress progress(stderr);
  const job::JobHooks hooks{.on_step = [&](const StepProgress& p) { progress.step(p); },
                            .on_eval = [&](const Metrics&) { progress.end_epoch(); },
                            .on_failure = abort_job_on_error};
  const job::JobResult r = job::run_job(spec, hooks);
  if (r.chief) std::cout << r.exported.string() << '\n';
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  job::JobSpec& s = a->spec;
  TrainConfig& t = s.train;
  job::StrategySpec& st = s.strategy;
  CLI::App* cmd = app.add_subcommand("train", "Train a model and export it to MODEL_DIR/<version>/");
  add_parsed(*cmd, "--model", s.model, models::find_model,
             "Model to train: a built-in one (" + join(models::names(), ", ") +
                 ") or a model file (JSON; see `strand model file mnist_cnn` for one)",
             "mnist_cnn");
  cmd->add_option(
         "--data", s.data,
         "Data directory: IDX files (train-images-idx3-ubyte, ...) or the .npy layout (train_data.npy, "
         "train_labels.npy and, optionally, eval_data.npy, eval_labels.npy); images [N,H,W], "
         "[N,C,H,W], [N,H,W,C] or [N,F], uint8 or float32/64; labels 0..K-1")
      ->envname("SM_CHANNEL_TRAINING");
  add_parsed(*cmd, "--layout", s.layout, io::parse_image_layout,
             "Layout of 4-D .npy images: nchw or nhwc (transposed once at load); auto tells them apart by "
             "the dimension that can be a channel count (1 to 4) and asks for this flag when both can",
             std::string(io::to_string(s.layout)));
  cmd->add_option("--val-split", s.val_split,
                  "Evaluate on this fraction of the training files (0 < F < 1), held out the same way for "
                  "every seed (`strand eval --val-split F` finds it); an error when the directory has "
                  "evaluation files too")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option_function<std::vector<std::string>>(
         "--augment",
         [&t](const std::vector<std::string>& items) { t.augment = parse_augmentation(join(items, ",")); },
         "Augment the training batches: shift:P (move each image by up to P pixels in x and y, zeros "
         "filling in), flip (mirror it left-right with probability 1/2), or both: shift:2,flip (or the "
         "flag twice). Drawn per image from the seed, the epoch and the image's index")
      ->default_str(to_string(t.augment));
  cmd->add_option("--model-dir", s.model_dir, "Where the exported model goes")->envname("SM_MODEL_DIR");
  cmd->add_option("--epochs", t.epochs, "Epochs to train")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--batch-size", t.batch_size, "Images per step")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--lr", t.optimizer.lr, "Learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  add_parsed(*cmd, "--optimizer", t.optimizer.kind, parse_optimizer_kind, "sgd, momentum or adam",
             std::string(to_string(t.optimizer.kind)));
  add_parsed(*cmd, "--lr-schedule", t.schedule.kind, parse_lr_schedule,
             "Learning rate over the run: constant, linear or cosine (to 0)",
             std::string(to_string(t.schedule.kind)));
  cmd->add_option("--momentum", t.optimizer.momentum, "Momentum (optimizer momentum)")
      ->check(CLI::Range(0.0, 0.999999))
      ->capture_default_str();
  cmd->add_option("--seed", t.seed, "Seed for initialisation, shuffling and dropout")->capture_default_str();
  cmd->add_option("--threads", a->threads, "CPU threads")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--metrics", s.metrics,
                  "Append one JSON line per evaluation to this file, and draw them beside it in the "
                  "file's name + .html (a self-contained page of curves, rewritten at every evaluation)");
  cmd->add_option("--checkpoint-dir", a->checkpoint_dir,
                  "Checkpoint directory (default MODEL_DIR/checkpoints)");
  cmd->add_option(
         "--checkpoint-every", t.checkpoint_every,
         "Also checkpoint every this many steps, inside epochs (written in the background; the newest "
         "two checkpoints are kept)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--checkpoint-every-seconds", t.checkpoint_every_seconds,
                  "Also checkpoint at the first step this many seconds after the previous checkpoint")
      ->check(CLI::PositiveNumber);
  cmd->add_flag(
      "--resume", t.resume,
      "Continue from the newest checkpoint (an epoch's end or inside one: the run then ends with the "
      "weights of an uninterrupted one)");
  cmd->add_option("--eval-every", t.eval_every, "Also evaluate on the test set every this many steps")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--stop-at-accuracy", t.stop_at_accuracy,
                  "Stop at the first evaluation reaching this test accuracy (e.g. 0.99), export, exit 0")
      ->check(CLI::Range(0.0, 1.0));
  add_device_options(*cmd, a->device);
  add_parsed(*cmd, "--strategy", st.kind, job::parse_strategy,
             "local; allreduce (data parallel over the ranks of an mpirun job); ps (parameter servers, one "
             "per host: under mpirun, or the SageMaker launch when SM_HOSTS is set; with TF_CONFIG set, "
             "its ps tasks; the default there)",
             std::string(job::to_string(st.kind)));
  add_parsed(*cmd, "--allreduce", st.allreduce.algorithm, allreduce::parse_algorithm,
             "Allreduce algorithm: ring (ours), hierarchical or mpi (MPI_Allreduce) over host memory "
             "(on a GPU, buckets staged through pinned memory); nccl or nccl-hierarchical on GPU memory",
             "nccl on a GPU, else ring");
  cmd->add_flag("--hierarchical", a->hierarchical,
                "Reduce within each host, then across one leader per host: ring becomes hierarchical, "
                "nccl nccl-hierarchical");
  cmd->add_option("--fusion-threshold", a->fusion_mib, "Gradient bucket size in MiB (tensor fusion)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--global-batch-size", st.global_batch_size,
                  "Images per step over all ranks (default --batch-size x ranks)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--scale-lr", st.scale_lr,
                "Multiply --lr by the number of ranks, after a warm-up (--warmup-steps, default 100)");
  cmd->add_option("--warmup-steps", a->warmup_steps,
                  "Ramp the learning rate up linearly over this many steps")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--timeline", s.timeline,
                  "Write a Chrome trace of every rank's steps and allreduces here (rank 0)");
  cmd->add_option(
         "--comm-timeout", st.comm_timeout_s,
         "Seconds without a message from a peer before the job stops (ps: a silent server ends the worker, "
         "a silent worker is dropped)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_parsed(*cmd, "--ps-mode", st.ps.consistency, ps::Consistency::parse,
             "ps consistency: sync, async or ssp:S (at most S steps ahead of the slowest)",
             st.ps.consistency.str());
  cmd->add_option("--ps-chunk-bytes", st.ps.chunk_bytes,
                  "ps: bytes per parameter chunk (the unit of push, pull and sharding)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--ps-port", st.ps.port,
                  "ps: the servers' port (default: any free one under mpirun, " +
                      std::to_string(job::kSageMakerPort) + " under the SageMaker launch)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option(
      "--ps-bind", st.ps.bind,
      "ps: where a host's server listens: an IPv4 address, a network (10.77.0.0/24: this host's address in "
      "it), an interface name, or * (every interface). Default: the host name's address if it is this "
      "machine's, else the first non-loopback interface");
  cmd->add_flag(
      "--ps-join", st.ps.join,
      "ps: join the running job as one more worker, from its next step on (run the job's own command "
      "with this flag added, anywhere its servers can be reached: rank 0 left the way in, " +
          std::string(job::kPsJobFile) + ", in the checkpoint directory)");
  cmd->add_option("--workers-per-host", st.ps.workers_per_host,
                  "ps, SageMaker launch: worker processes each host starts")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->callback([cmd, a] { run_train(*cmd, *a); });
}

}  // namespace strand::cli
