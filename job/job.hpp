// job — a training job from one JobSpec: the model, the data, the recipe, the strategy with its
// options, the device, checkpoints, metrics and timeline, and run_job(), which turns it into a
// running job (context, communicators, parameter servers, strategy), trains, and exports the
// model. The CLI (`strand train`) only parses argv, SM_HPS and the environment into a JobSpec;
// a library user gets everything the CLI can do through the same call.
//
// Launch: a Local job runs in this process. Allreduce and Ps jobs run under mpirun, one
// process per rank (a process started alone is a job of one); a Ps job with SM_HOSTS set runs
// the SageMaker launch instead (job/launch.hpp): this process runs its host's server and starts
// its workers. The process's place comes from job/identity.hpp.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <strand/allreduce/communicator.hpp>
#include <strand/allreduce/mpi_runtime.hpp>
#include <strand/allreduce/strategy.hpp>
#include <strand/core/backend.hpp>
#include <strand/core/context.hpp>
#include <strand/io/dataset.hpp>
#include <strand/job/heartbeat.hpp>
#include <strand/models/models.hpp>
#include <strand/ps/server.hpp>
#include <strand/ps/shard.hpp>
#include <strand/train/trainer.hpp>

namespace strand::job {

enum class StrategyKind {
  Local,      // one process
  Allreduce,  // data parallel: gradients averaged by ring allreduce (MPI on the CPU, NCCL on GPUs)
  Ps,         // data parallel: parameter servers, one per host, apply the updates
};
// "local", "allreduce" or "ps"; Usage error naming the text otherwise.
StrategyKind parse_strategy(std::string_view text);
std::string_view to_string(StrategyKind kind);

struct AllreduceSpec {
  // Unset: nccl for GPU ranks, ring for CPU ranks (allreduce_algorithm()).
  std::optional<allreduce::Algorithm> algorithm;
  bool hierarchical = false;  // ring -> hierarchical, nccl -> nccl-hierarchical
  size_t fusion_bytes = allreduce::AllreduceStrategy::kDefaultFusionBytes;  // gradient bucket size
};

struct PsSpec {
  ps::Consistency consistency;
  int64_t chunk_bytes = ps::kDefaultChunkBytes;  // the unit of push, pull and sharding
  // The servers' port: 0 is any free one under mpirun, kSageMakerPort under the SageMaker launch.
  int port = 0;
  std::string bind;          // where a host's server listens (job/launch.hpp ps_bind_address)
  int workers_per_host = 1;  // the SageMaker launch's worker processes per host
  // Join the running job whose rank 0 wrote kPsJobFile (job/launch.hpp) into this job's
  // checkpoint directory: this process is one more worker from the next step on, without MPI.
  bool join = false;
};
// The SageMaker launch has no channel to exchange addresses: every host must know the port.
inline constexpr int kSageMakerPort = 18470;

struct StrategySpec {
  StrategyKind kind = StrategyKind::Local;
  AllreduceSpec allreduce;
  PsSpec ps;
  // Seconds without a message from a peer before the job stops (ps: a silent server ends the
  // worker, a silent worker is dropped).
  double comm_timeout_s = 45;
  int64_t global_batch_size = 0;  // images per step over all ranks; 0: the batch size x ranks
  // Goyal et al. 2017: the learning rate times the ranks, best reached after a warm-up
  // (train.schedule.warmup_steps; the CLI's default with --scale-lr is 100).
  bool scale_lr = false;
};

struct DeviceSpec {
  Device device;
  CudaOptions cuda;
  int threads = 1;  // CPU threads
};

// A context on `d.device`, logging to stderr as `id`.
Context make_context(const DeviceSpec& d, Identity id = {});
// A labelled image set from `dir` (io::load_data_dir: both splits; io::load_data_split: one),
// with a log line saying what was found.
io::DataSplits load_data(const Context& ctx, const std::filesystem::path& dir,
                         const io::DataOptions& options = {});
io::Dataset load_split(const Context& ctx, const std::filesystem::path& dir, io::Split split,
                       const io::DataOptions& options = {});

struct JobSpec {
  // A built-in model or a model file (models/model_json.hpp); its class count may come from
  // the training labels.
  models::ModelSpec model = models::builtin("mnist_cnn");
  std::filesystem::path data;  // IDX files or the SageMaker layout (train_data.npy, ...): io::load_data_dir
  io::ImageLayout layout = io::ImageLayout::Auto;  // of 4-D .npy images
  // In (0, 1): evaluate on this fraction of the training files, held out (io::DataOptions);
  // the directory may then hold no evaluation files. 0: the evaluation files, if any.
  double val_split = 0;
  std::filesystem::path model_dir;  // the export goes to model_dir/<version>/
  // The recipe: epochs, batch per worker, seed, optimizer, schedule, resume, evaluations. Its
  // checkpoint_dir, when empty, becomes model_dir/checkpoints.
  TrainConfig train;
  StrategySpec strategy;
  DeviceSpec device;
  std::filesystem::path metrics;   // when set, the chief appends one JSON line per evaluation
  std::filesystem::path timeline;  // when set, a Chrome trace of every rank's steps (mpirun jobs)
  // When set (by `strand launch`, in kHeartbeatEnv), each rank sends heartbeats there.
  std::optional<HeartbeatTarget> heartbeat;
};

// How the job reads its data: the spec's layout and validation split, and the model's class
// count when it fixes one (the labels are checked against it).
io::DataOptions data_options(const JobSpec& spec);

// The job's network for data of `classes` classes (io::DataSplits::classes): the model's, sized
// to it where the model takes its class count from the labels.
ModelArch job_arch(const JobSpec& spec, int64_t classes);

// Usage error naming the setting when the spec contradicts itself (e.g. a timeline without a
// distributed strategy, a parameter server on a GPU).
void validate(const JobSpec& spec);

// The allreduce algorithm of a job's ranks on `device`: the spec's, else nccl on a GPU and ring
// on the CPU, made hierarchical when asked. Usage error for a combination that cannot run
// (nccl on the CPU, --hierarchical with mpi).
allreduce::Algorithm allreduce_algorithm(const AllreduceSpec& spec, Device device);

struct JobHooks {
  // The chief's (rank 0's) progress and evaluations.
  std::function<void(const StepProgress&)> on_step;
  std::function<void(const Metrics&)> on_eval;
  // Called with the error of a failed rank of a multi-rank job before its communicators are
  // torn down (their destruction is collective and would wait for the peers): the CLI ends the
  // whole job there (MPI_Abort). Without it the error is rethrown and the peers time out.
  std::function<void(const allreduce::MpiRuntime&, const std::exception&)> on_failure;
};

struct JobResult {
  bool chief = false;  // this process exported the model (the other results are its only)
  TrainResult train;
  EvalResult final_eval;
  int64_t version = 0;             // the exported version
  std::filesystem::path exported;  // model_dir/<version>/
};

// Runs the job this process is part of. Every process of a distributed job calls it with the
// same spec.
JobResult run_job(const JobSpec& spec, const JobHooks& hooks = {});

}  // namespace strand::job
