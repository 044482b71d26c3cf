// strand train: train a model on MNIST-layout data and export it.
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "apps/commands.hpp"
#include "apps/common.hpp"
#include "apps/progress.hpp"
#include "apps/ps_launch.hpp"
#include "apps/sagemaker.hpp"
#include "allreduce/mpi_communicator.hpp"
#include "allreduce/nccl_communicator.hpp"
#include "allreduce/strategy.hpp"
#include "core/error.hpp"
#include "io/model_file.hpp"
#include "models/models.hpp"
#include "ps/header.hpp"
#include "ps/server.hpp"
#include "ps/strategy.hpp"
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
  // Parameter servers (--strategy ps).
  std::string ps_mode = "sync", ps_bind;
  int64_t ps_chunk_bytes = ps::kDefaultChunkBytes;
  int ps_port = 0;  // 0: any free port under mpirun, kSageMakerPort under the SageMaker launch
  int workers_per_host = 1;
};

// The SageMaker launch has no channel to exchange addresses: every host must know the port.
constexpr int kSageMakerPort = 18470;

// What a data-parallel run adds to a local one: MPI, the communicator, the strategy.
struct Distributed {
  allreduce::MpiRuntime* mpi = nullptr;
  std::unique_ptr<allreduce::MpiCommunicator> comm;
  std::unique_ptr<allreduce::NcclCommunicator> nccl;  // --device cuda: gradients reduced on the GPUs
  // The model's gradients when the ranks share one machine (CPU): here, not in train_job, so
  // that an error frees them (collectively) only after abort_job_on_error.
  std::optional<allreduce::SharedBuffer> shared_grads;
  std::unique_ptr<Timeline> timeline;
  std::unique_ptr<allreduce::AllreduceStrategy> strategy;
  // --strategy ps under the SageMaker launch (mpi is null): this worker's place and the servers.
  int sm_rank = 0, sm_world = 1;
  std::string sm_host = {};
  uint64_t sm_token = 0;
  std::vector<std::string> sm_servers = {};
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

// Per-worker batch, learning-rate scaling and warm-up of a job with `world` workers.
void size_batches(const TrainArgs& a, int64_t world, TrainConfig& cfg) {
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
}

ps::ServerOptions server_options(const TrainArgs& a, int workers, int index, int servers, uint64_t token,
                                 int64_t param_count, const std::string& address, int port) {
  ps::ServerOptions o;
  o.bind = "tcp://" + address + ":" + std::to_string(port);
  o.allow_any_interface = address == "0.0.0.0";  // only when --ps-bind asked for it
  o.token = token;
  o.index = index;
  o.map = ps::ShardMap::build(param_count, a.ps_chunk_bytes, servers);
  o.workers = workers;
  o.consistency = ps::Consistency::parse(a.ps_mode);
  o.worker_timeout_s = a.comm_timeout;
  return o;
}

// The address other hosts reach a server at: its bound endpoint, or for a server bound to
// every interface, this host's own address with the bound port.
std::string reachable(const ps::Server& server, const std::string& host) {
  const std::string& ep = server.endpoint();
  const size_t any = ep.find("0.0.0.0");
  if (any == std::string::npos) return ep;
  return ep.substr(0, any) + ps_bind_address("", host) + ep.substr(any + 7);
}

// The workers' view of the job; under mpirun also this host's server (first rank on each
// host), the token (rank 0's, from STRAND_PS_TOKEN or random) and the server addresses (in
// host order by lowest rank), all exchanged over MPI.
ps::PsConfig start_ps(const Context& ctx, const TrainArgs& a, Distributed& dist, const Identity& id,
                      int64_t param_count, std::unique_ptr<ps::Server>& server) {
  ps::PsConfig pc;
  pc.rank = id.rank;
  pc.workers = id.world;
  pc.chunk_bytes = a.ps_chunk_bytes;
  pc.dispatch.server_timeout_s = a.comm_timeout;
  pc.timeline = dist.timeline.get();
  if (!dist.mpi) {
    pc.servers = dist.sm_servers;
    pc.token = dist.sm_token;
    return pc;
  }
  allreduce::MpiCommunicator& comm = *dist.comm;
  const bool leader = comm.local_rank() == 0;
  const std::vector<double> leaders = comm.allgather(leader ? 1 : 0);
  int index = 0, count = 0;
  for (int r = 0; r < id.world; ++r) {
    if (leaders[size_t(r)] > 0 && r < id.rank) ++index;
    count += leaders[size_t(r)] > 0;
  }
  uint64_t token = 0;
  if (id.rank == 0) {
    token = token_from_env();
    if (token == 0) token = ps::random_token();
  }
  comm.broadcast(&token, sizeof token, 0);
  if (leader)
    server = std::make_unique<ps::Server>(
        ctx, server_options(a, id.world, index, count, token, param_count, ps_bind_address(a.ps_bind, id.host), a.ps_port));
  const std::vector<std::string> endpoints = comm.gather_to_root(leader ? reachable(*server, id.host) : "");
  std::string joined;
  for (const std::string& e : endpoints)
    if (!e.empty()) joined += e + "\n";
  uint64_t length = joined.size();
  comm.broadcast(&length, sizeof length, 0);
  joined.resize(size_t(length));
  comm.broadcast(joined.data(), joined.size(), 0);
  for (size_t b = 0; b < joined.size();) {
    const size_t e = joined.find('\n', b);
    pc.servers.push_back(joined.substr(b, e - b));
    b = e + 1;
  }
  pc.token = token;
  return pc;
}

// A server stays up until every worker has left or been dropped (the others still use it).
// Serves until every worker has left or been dropped, or until nothing has happened on this
// server (no update, no departure) for `idle_limit` seconds: a worker that never reached it
// (it died before its first message) is never dropped, and must not keep the host up forever.
void wait_for_departures(const Context& ctx, const ps::Server& server, int workers, double idle_limit) {
  bool logged = false;
  ps::ServerStats last = server.stats();
  auto last_change = std::chrono::steady_clock::now();
  for (;;) {
    const ps::ServerStats st = server.stats();
    const int64_t done = st.workers_left + st.workers_dropped;
    if (done >= workers) return;
    if (done != last.workers_left + last.workers_dropped || st.updates != last.updates) {
      last = st;
      last_change = std::chrono::steady_clock::now();
    } else if (std::chrono::steady_clock::now() - last_change > std::chrono::duration<double>(idle_limit)) {
      ctx.log("no worker has been heard from for " + std::to_string(int(idle_limit)) + " s; " +
              std::to_string(workers - done) + " of " + std::to_string(workers) +
              " never left: stopping the server");
      return;
    }
    if (!logged) {
      ctx.log("serving until the other workers are done (" + std::to_string(done) + " of " +
              std::to_string(workers) + " so far)");
      logged = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
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

  Distributed local_run;
  Distributed& dist = distributed ? *distributed : local_run;
  allreduce::MpiRuntime* mpi = dist.mpi;
  const bool ps = a.strategy == "ps";
  Identity id;
  if (ps) {
    STRAND_CHECK(a.device.device == "cpu", Usage, "--strategy ps trains on the CPU only", "--device " + a.device.device);
    if (mpi) {
      STRAND_CHECK(a.workers_per_host == 1, Usage,
                   "--workers-per-host is for the SageMaker launch (SM_HOSTS); under mpirun, -np and -H place the workers",
                   "strand train");
      id = {mpi->world_rank(), mpi->world_size(), mpi->host()};
      // MPI only exchanges the token and the server addresses, and gathers the timeline.
      allreduce::CommOptions co;
      co.algorithm = "mpi";
      co.timeout_s = a.comm_timeout;
      dist.comm = std::make_unique<allreduce::MpiCommunicator>(*mpi, co);
      dist.comm->allgather(0);  // every rank is here: the timeline's common origin
      if (!a.timeline.empty()) dist.timeline = std::make_unique<Timeline>(id.rank, std::chrono::steady_clock::now());
      cfg.timeline = dist.timeline.get();
    } else {
      id = {dist.sm_rank, dist.sm_world, dist.sm_host};
      STRAND_CHECK(a.timeline.empty(), Usage, "--timeline needs an mpirun launch (its ranks' traces are gathered over MPI)",
                   "strand train");
    }
    size_batches(a, id.world, cfg);
  } else if (mpi) {
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
    size_batches(a, id.world, cfg);
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
  // Ranks sharing one machine (CPU): the gradients live in the communicator's shared windows,
  // where its ring reduces them without copying between the ranks' buffers. Collective, the
  // same choice on every rank.
  if (dist.strategy && !dist.nccl && dist.comm->shares_buffers()) {
    dist.shared_grads.emplace(dist.comm->allocate(model.param_count()));
    model.place_grads(dist.shared_grads->data());
  }
  const io::MnistSplits data = load_data(ctx, a.data);
  // The server (first rank on a host, under mpirun) outlives this process's worker.
  std::unique_ptr<ps::Server> server;
  std::unique_ptr<ps::PsStrategy> ps_strategy;
  if (ps) ps_strategy = std::make_unique<ps::PsStrategy>(ctx, start_ps(ctx, a, dist, id, model.param_count(), server),
                                                         model.param_count());
  Strategy* strategy = ps ? static_cast<Strategy*>(ps_strategy.get()) : dist.strategy.get();

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
                          {"seconds", m.seconds},
                          {"workers", m.workers}};
      metrics << j.dump() << '\n' << std::flush;
      STRAND_CHECK(metrics.good(), Io, "cannot write the metrics file", a.metrics);
    }
  };

  if (chief)
    ctx.log("training " + a.model + " (" + std::to_string(model.param_count()) + " parameters) for " +
            std::to_string(a.epochs) + " epoch(s), batch " + std::to_string(cfg.batch_size) +
            (strategy ? " per rank x " + std::to_string(id.world) + " ranks (" + strategy->name() +
                            (ps ? " " + a.ps_mode : "") + ")"
                      : "") +
            ", " + a.optimizer + " lr " + compact(cfg.optimizer.lr) + ", " + std::to_string(a.threads) + " thread(s)");
  const auto t_train = std::chrono::steady_clock::now();
  TrainResult r = strategy ? train(ctx, model, data.train, &data.eval, cfg, *strategy)
                            : train(ctx, model, data.train, &data.eval, cfg);
  if (ps_strategy) {
    ps_strategy->sum(0);  // every live worker has pushed its last step
    if (chief) {
      // The export holds the servers' parameters: in async and ssp modes other workers'
      // last gradients may have landed after this worker's last pull.
      Optimizer collected(ctx.backend(), cfg.optimizer, model.param_count());
      ps_strategy->collect(model, collected);
      if (ps::Consistency::parse(a.ps_mode).mode != ps::Consistency::Sync) r.last_eval = evaluate(model, data.eval);
    }
    ps_strategy->leave();
    if (server) wait_for_departures(ctx, *server, id.world, 2 * a.comm_timeout);
  }
  if (dist.strategy) {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_train).count();
    const double wait = dist.comm->sum(dist.strategy->wait_seconds()) / id.world;
    if (chief)
      ctx.log("waited for gradient allreduce " + compact(wait) + " s of " + compact(secs) +
              " s (mean over ranks, evaluations included in the total)" +
              (dist.shared_grads ? "; " + std::to_string(dist.comm->in_place_allreduces()) +
                                       " allreduces in place in shared memory"
                                 : std::string()));
  }
  if (dist.timeline) {
    const std::vector<std::string> events = dist.comm->gather_to_root(dist.timeline->events_json());
    if (chief) {
      Timeline::write(a.timeline, events);
      ctx.log("timeline " + a.timeline);
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

// The SageMaker launch: the same command on every host of SM_HOSTS. The host's process runs
// the host's server and starts --workers-per-host workers (this command again, with
// STRAND_PS_WORKER set); worker i on host h is rank h x workers-per-host + i. The token comes
// from STRAND_PS_TOKEN (there is no channel to share a generated one).
void run_sagemaker(CLI::App& cmd, TrainArgs& a) {
  apply_sagemaker_hyperparameters(cmd, std::getenv("SM_HPS"));
  const SageMakerHosts sm = sagemaker_hosts(std::getenv("SM_HOSTS"), std::getenv("SM_CURRENT_HOST"));
  const uint64_t token = token_from_env();
  STRAND_CHECK(token != 0, Usage,
               "the SageMaker launch needs the job's token: the same 1 to 16 hex digits on every host", "STRAND_PS_TOKEN");
  const int port = a.ps_port ? a.ps_port : kSageMakerPort;
  const int per_host = a.workers_per_host, world = int(sm.hosts.size()) * per_host;
  const std::string& host = sm.hosts[size_t(sm.current)];
  if (const char* w = std::getenv(kWorkerEnv)) {
    Distributed dist;
    const int local = std::atoi(w);
    STRAND_CHECK(local >= 0 && local < per_host, Usage, "worker index outside --workers-per-host", kWorkerEnv);
    dist.sm_rank = sm.current * per_host + local;
    dist.sm_world = world;
    dist.sm_host = host;
    dist.sm_token = token;
    for (const std::string& h : sm.hosts) dist.sm_servers.push_back("tcp://" + resolve_ipv4(h) + ":" + std::to_string(port));
    train_job(cmd, a, &dist);
    return;
  }
  Context ctx = make_context(DeviceArgs{}, 1, {0, 1, host});
  const int64_t params = Model(ctx.backend(), models::by_name(a.model)).param_count();
  // The address the other hosts resolve this host's name to, unless --ps-bind says otherwise.
  const std::string address = a.ps_bind.empty() ? resolve_ipv4(host) : ps_bind_address(a.ps_bind, host);
  ps::Server server(ctx, server_options(a, world, sm.current, int(sm.hosts.size()), token, params, address, port));
  const std::vector<int> pids = spawn_workers(per_host);
  ctx.log("host " + std::to_string(sm.current + 1) + " of " + std::to_string(sm.hosts.size()) + ": workers " +
          std::to_string(sm.current * per_host) + ".." + std::to_string(sm.current * per_host + per_host - 1) + " of " +
          std::to_string(world) + " (pids " + [&] {
            std::string list;
            for (int pid : pids) list += (list.empty() ? "" : " ") + std::to_string(pid);
            return list;
          }() + ")");
  std::string failures;
  for (size_t done = 0; done < pids.size();) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorKind::Io, "waitpid failed while waiting for the workers", host);
    }
    size_t i = 0;
    while (i < pids.size() && pids[i] != pid) ++i;
    if (i == pids.size()) continue;
    ++done;
    const std::string who = "worker rank " + std::to_string(sm.current * per_host + int(i)) + " (pid " + std::to_string(pid) + ")";
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      continue;
    }
    const std::string how = WIFSIGNALED(status) ? "was killed by signal " + std::to_string(WTERMSIG(status))
                                                : "exited with status " + std::to_string(WEXITSTATUS(status));
    ctx.log(who + " " + how);
    failures += (failures.empty() ? "" : "; ") + who + " " + how;
  }
  // Also when every worker here failed (maybe before reaching any server): the other hosts'
  // workers may still need this server, for as long as they are heard from.
  wait_for_departures(ctx, server, world, 2 * a.comm_timeout);
  STRAND_CHECK(failures.empty(), Io, failures, "strand train on " + host);
}

void run_train(CLI::App& cmd, TrainArgs& a) {
  // A --ps-* flag with another strategy would be silently ignored: say so instead.
  if (a.strategy != "ps") {
    for (const char* flag : {"--ps-mode", "--ps-chunk-bytes", "--ps-port", "--ps-bind", "--workers-per-host"})
      STRAND_CHECK(cmd.get_option(flag)->count() == 0, Usage,
                   std::string(flag) + " needs --strategy ps (the strategy is " + a.strategy + ")", "strand train");
  }
  if (a.strategy == "ps" && std::getenv("SM_HOSTS")) {
    run_sagemaker(cmd, a);
    return;
  }
  if (a.strategy == "local") {
    STRAND_CHECK(!a.hierarchical && a.allreduce == "ring", Usage, "--hierarchical and --allreduce need --strategy allreduce", "strand train");
    train_job(cmd, a, nullptr);
    return;
  }
  allreduce::MpiRuntime mpi(nullptr, nullptr);
  Distributed dist;
  dist.mpi = &mpi;
  try {
    train_job(cmd, a, &dist);
  } catch (const std::exception& e) {
    abort_job_on_error(mpi, e);  // before the communicators' (collective) destruction
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
  cmd->add_option("--strategy", a->strategy,
                  "local; allreduce (data parallel over the ranks of an mpirun job); ps (parameter servers, one per host: "
                  "under mpirun, or the SageMaker launch when SM_HOSTS is set)")
      ->check(CLI::IsMember({"local", "allreduce", "ps"}))->capture_default_str();
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
  cmd->add_option("--comm-timeout", a->comm_timeout,
                  "Seconds without a message from a peer before the job stops (ps: a silent server ends the worker, "
                  "a silent worker is dropped)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--ps-mode", a->ps_mode, "ps consistency: sync, async or ssp:S (at most S steps ahead of the slowest)")
      ->check([](const std::string& v) {
        try {
          ps::Consistency::parse(v);
          return std::string();
        } catch (const Error& e) {
          return std::string(e.what());
        }
      })
      ->capture_default_str();
  cmd->add_option("--ps-chunk-bytes", a->ps_chunk_bytes, "ps: bytes per parameter chunk (the unit of push, pull and sharding)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--ps-port", a->ps_port,
                  "ps: the servers' port (default: any free one under mpirun, " + std::to_string(kSageMakerPort) +
                      " under the SageMaker launch)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--ps-bind", a->ps_bind,
                  "ps: where a host's server listens: an IPv4 address, a network (10.77.0.0/24: this host's address in "
                  "it), an interface name, or * (every interface). Default: the host name's address if it is this "
                  "machine's, else the first non-loopback interface");
  cmd->add_option("--workers-per-host", a->workers_per_host, "ps, SageMaker launch: worker processes each host starts")
      ->check(CLI::PositiveNumber)->capture_default_str();
  cmd->callback([cmd, a] { run_train(*cmd, *a); });
}

}  // namespace strand::cli
