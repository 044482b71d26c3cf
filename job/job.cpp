#include <strand/job/job.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <thread>

#include <strand/allreduce/mpi_communicator.hpp>
#include <strand/allreduce/mpi_runtime.hpp>
#include <strand/allreduce/nccl_communicator.hpp>
#include <strand/core/error.hpp>
#include <strand/core/text.hpp>
#include <strand/io/dataset.hpp>
#include <strand/io/model_file.hpp>
#include <strand/job/curves.hpp>
#include <strand/job/identity.hpp>
#include <strand/job/launch.hpp>
#include <strand/models/models.hpp>
#include <strand/ps/header.hpp>
#include <strand/ps/strategy.hpp>

namespace strand::job {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// The spec's recipe with its checkpoint directory in place.
TrainConfig recipe(const JobSpec& spec) {
  TrainConfig cfg = spec.train;
  if (cfg.checkpoint_dir.empty()) cfg.checkpoint_dir = spec.model_dir / "checkpoints";
  return cfg;
}

// Per-worker batch, learning-rate scaling and warm-up of a job with `world` workers.
TrainConfig sized_for(const JobSpec& spec, int64_t world) {
  TrainConfig cfg = recipe(spec);
  const StrategySpec& st = spec.strategy;
  if (st.global_batch_size > 0) {
    STRAND_CHECK(st.global_batch_size % world == 0, Usage,
                 "--global-batch-size " + std::to_string(st.global_batch_size) + " does not divide over " +
                     std::to_string(world) + " ranks",
                 "strand train");
    cfg.batch_size = st.global_batch_size / world;
  }
  if (st.scale_lr) cfg.optimizer.lr *= float(world);
  return cfg;
}

// The communicators, servers and strategy of a distributed run. Owned by run_job's caller
// frame so that they outlive an error's unwinding until on_failure has run (their destruction
// is collective and would wait for the peers).
struct Distributed {
  allreduce::MpiRuntime* mpi = nullptr;
  Activity activity = {};  // what this rank does, for its heartbeats
  std::unique_ptr<HeartbeatSender> heartbeat = {};
  std::unique_ptr<allreduce::MpiCommunicator> comm = {};
  std::unique_ptr<allreduce::NcclCommunicator> nccl = {};  // GPU ranks: gradients reduced on the GPUs
  // The model's gradients when the ranks share one machine (CPU).
  std::optional<allreduce::SharedBuffer> shared_grads = {};
  std::unique_ptr<Timeline> timeline = {};
  std::unique_ptr<allreduce::AllreduceStrategy> allreduce = {};
  std::unique_ptr<ps::Server> server = {};  // this host's, on its first rank (mpirun)
  std::unique_ptr<ps::PsStrategy> ps = {};
  // The SageMaker launch (no MPI): the servers of every host and the job's token.
  std::vector<std::string> sm_servers = {};
  uint64_t sm_token = 0;
  // Without MPI, where this process also runs its host's server (the Slurm launch's first task
  // on each node): server `index` of `count`, listening on address:port.
  struct ServerPlan {
    int index = 0, count = 1;
    std::string address;
    int port = 0;
  };
  std::optional<ServerPlan> own_server = {};
  std::optional<ps::Joining> joining = {};  // a worker joining a running job: its rank, the job
};

ps::ServerOptions server_options(const JobSpec& spec, int workers, int index, int servers, uint64_t token,
                                 int64_t param_count, const std::string& address, int port) {
  return {.bind = "tcp://" + address + ":" + std::to_string(port),
          .allow_any_interface = address == "0.0.0.0",  // only when the bind spec asked for it
          .token = token,
          .index = index,
          .map = ps::ShardMap::build(param_count, spec.strategy.ps.chunk_bytes, servers),
          .workers = workers,
          .consistency = spec.strategy.ps.consistency,
          .worker_timeout_s = spec.strategy.comm_timeout_s};
}

// The address other hosts reach a server at: its bound endpoint, or for a server bound to
// every interface, this host's own address with the bound port.
std::string reachable(const ps::Server& server, const std::string& host) {
  const std::string& ep = server.endpoint();
  const size_t any = ep.find("0.0.0.0");
  if (any == std::string::npos) return ep;
  return ep.substr(0, any) + ps_bind_address("", host) + ep.substr(any + 7);
}

// Seconds a worker gives a listening server to accept a connection at the start.
constexpr double kReachTimeoutS = 5;

// The workers' view of a ps job; under mpirun also this host's server (first rank on each
// host), the token (rank 0's, from STRAND_PS_TOKEN or random) and the server addresses (in
// host order by lowest rank), all exchanged over MPI.
ps::PsConfig start_ps(const Context& ctx, const JobSpec& spec, Distributed& dist, int64_t param_count) {
  const Identity& id = ctx.identity();
  ps::PsConfig pc;
  pc.rank = id.rank;
  pc.workers = id.world;
  pc.chunk_bytes = spec.strategy.ps.chunk_bytes;
  pc.timeline = dist.timeline.get();
  pc.dispatch.server_timeout_s = spec.strategy.comm_timeout_s;
  if (!dist.mpi) {
    if (const auto& plan = dist.own_server)
      dist.server = std::make_unique<ps::Server>(
          ctx, server_options(spec, id.world, plan->index, plan->count, dist.sm_token, param_count,
                              plan->address, plan->port));
    pc.servers = dist.sm_servers;
    pc.token = dist.sm_token;
    pc.joining = dist.joining;
    if (dist.joining) pc.dispatch.connect_timeout_s = spec.strategy.comm_timeout_s;
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
    dist.server = std::make_unique<ps::Server>(
        ctx, server_options(spec, id.world, index, count, token, param_count,
                            ps_bind_address(spec.strategy.ps.bind, id.host), spec.strategy.ps.port));
  // "ENDPOINT HOST" of each server, in host order.
  const std::vector<std::string> endpoints =
      comm.gather_to_root(leader ? reachable(*dist.server, id.host) + " " + id.host : "");
  std::string joined;
  for (const std::string& e : endpoints)
    if (!e.empty()) joined += e + "\n";
  uint64_t length = joined.size();
  comm.broadcast(&length, sizeof length, 0);
  joined.resize(size_t(length));
  comm.broadcast(joined.data(), joined.size(), 0);
  std::vector<std::string> server_hosts;
  for (size_t b = 0; b < joined.size();) {
    const size_t e = joined.find('\n', b), space = joined.find(' ', b);
    pc.servers.push_back(joined.substr(b, space - b));
    server_hosts.push_back(joined.substr(space + 1, e - space - 1));
    b = e + 1;
  }
  // Every worker reaches every server now, or the job fails at once naming the one it cannot
  // (the servers listen already): not after the workers' connect timeout.
  for (size_t i = 0; i < pc.servers.size(); ++i) {
    const std::string server =
        "PS server " + std::to_string(i) + " (host " + server_hosts[i] + ") at " + pc.servers[i];
    STRAND_CHECK(comm.node_count() == 1 || !is_loopback_endpoint(pc.servers[i]), Usage,
                 server +
                     " listens on loopback, which the job's other machines cannot reach (its host name "
                     "resolves to loopback and no other interface is up, or --ps-bind says so): give "
                     "--ps-bind an address, network or interface the hosts share",
                 id.where());
    const std::string why = tcp_probe(pc.servers[i], kReachTimeoutS);
    STRAND_CHECK(why.empty(), Io, "cannot reach " + server + ": " + why, id.where());
  }
  pc.token = token;
  return pc;
}

// Serves until every worker has left or been dropped, or until nothing has happened on this
// server (no update, no departure) for `idle_limit` seconds: a worker that never reached it
// (it died before its first message) is never dropped, and must not keep the host up forever.
// With `unheard_limit` > 0 (the host's own workers are gone), also once no worker has sent
// anything, heartbeats included, for that long: none is left that needs this server.
// Four of a worker's heartbeats (ps::DispatchOptions::heartbeat_s).
constexpr double kUnheardLimit = 4 * ps::DispatchOptions{}.heartbeat_s;

void wait_for_departures(const Context& ctx, const ps::Server& server, int workers, double idle_limit,
                         double unheard_limit) {
  const int first_workers = workers;  // and those that joined
  bool logged = false;
  ps::ServerStats last = server.stats();
  auto last_change = Clock::now(), last_heard = last_change;
  for (;;) {
    const ps::ServerStats st = server.stats();
    const int64_t done = st.workers_left + st.workers_dropped;
    workers = std::max(workers, int(st.joined) + first_workers);
    if (done >= workers) return;
    if (st.heard != last.heard) last_heard = Clock::now();
    if (done != last.workers_left + last.workers_dropped || st.updates != last.updates)
      last_change = Clock::now();
    last = st;
    if (since(last_change) > idle_limit) {
      ctx.log("no worker has been heard from for " + std::to_string(int(idle_limit)) + " s; " +
              std::to_string(workers - done) + " of " + std::to_string(workers) +
              " never left: stopping the server");
      return;
    }
    if (unheard_limit > 0 && since(last_heard) > unheard_limit) {
      ctx.log("this host's workers have exited and no other worker has sent anything for " +
              compact(unheard_limit) + " s (" + std::to_string(workers - done) + " of " +
              std::to_string(workers) + " never left): stopping the server");
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

// Appends one JSON line per evaluation (the chief's) and keeps the page of curves beside it.
class MetricsFile {
 public:
  MetricsFile(const std::filesystem::path& path, bool append) : path_(path) {
    if (path.empty()) return;
    out_.open(path, append ? std::ios::app : std::ios::trunc);
    STRAND_CHECK(out_.is_open(), Io, "cannot open the metrics file for writing", path.string());
    // A resumed job's page also plots the earlier runs' lines.
    page_.emplace(path, append ? read_metrics_file(path) : std::vector<Metrics>());
  }
  void write(const Metrics& m) {
    if (!out_.is_open()) return;
    out_ << metrics_line(m) << '\n' << std::flush;
    STRAND_CHECK(out_.good(), Io, "cannot write the metrics file", path_.string());
    page_->add(m);
  }

 private:
  std::filesystem::path path_;
  std::ofstream out_;
  std::optional<CurvesPage> page_;
};

// Sets up this rank's communicators and strategy (dist), trains, exports on the chief.
JobResult train_rank_on(const JobSpec& spec, const JobHooks& hooks, const Identity& id, Distributed& dist) {
  const StrategySpec& st = spec.strategy;
  const bool ps = st.kind == StrategyKind::Ps;
  if (spec.heartbeat && !dist.heartbeat)
    dist.heartbeat = std::make_unique<HeartbeatSender>(*spec.heartbeat, id, dist.activity);
  // A joiner sizes its recipe as the job's first workers did (the learning rate of --scale-lr),
  // and its batch is their share of the job's global batch.
  TrainConfig cfg = sized_for(spec, dist.joining ? dist.joining->job.workers : id.world);
  if (dist.joining) cfg.batch_size = dist.joining->job.global_batch / dist.joining->job.workers;
  cfg.activity = &dist.activity;
  DeviceSpec device = spec.device;
  const allreduce::Algorithm algorithm = allreduce_algorithm(st.allreduce, device.device);
  if (dist.mpi) {
    allreduce::CommOptions co;
    // NCCL's ranks keep an MPI communicator for the ids, broadcasts and metrics: a ring.
    co.algorithm = ps                                ? allreduce::Algorithm::Mpi
                   : allreduce::on_device(algorithm) ? allreduce::Algorithm::Ring
                                                     : algorithm;
    co.timeout_s = st.comm_timeout_s;
    // A ps job's MPI only exchanges the token and the server addresses, and gathers the timeline.
    if (!ps) co.stall_warning_s = std::min(10.0, st.comm_timeout_s / 3);
    dist.comm = std::make_unique<allreduce::MpiCommunicator>(*dist.mpi, co);
    dist.comm->allgather(0);  // every rank is here: the timeline's common origin
    if (!spec.timeline.empty()) dist.timeline = std::make_unique<Timeline>(id.rank, Clock::now());
    cfg.timeline = dist.timeline.get();
  }
  const bool allreduce_ranks = !ps && dist.mpi;
  const bool nccl = allreduce_ranks && allreduce::on_device(algorithm);
  if ((ps || allreduce_ranks) && !device.device.is_cpu()) {
    device.device = device.device.resolved(id.local_rank);  // one GPU per rank
    // A stage's copies (ps, and allreduce over host memory) cannot be recorded into a CUDA
    // graph; NCCL's collectives on a lane can, with the rest of the step.
    if (!nccl) device.cuda.graphs = false;
  }
  if (nccl)
    dist.nccl =
        std::make_unique<allreduce::NcclCommunicator>(*dist.comm, device.device.index, st.comm_timeout_s,
                                                      algorithm == allreduce::Algorithm::NcclHierarchical);
  const bool chief = id.rank == 0;  // writes the metrics, the checkpoints and the export
  Context ctx = make_context(device, id);
  if (allreduce_ranks) {
    allreduce::Communicator& grads =
        dist.nccl ? static_cast<allreduce::Communicator&>(*dist.nccl) : *dist.comm;
    dist.allreduce = std::make_unique<allreduce::AllreduceStrategy>(grads, st.allreduce.fusion_bytes,
                                                                    dist.timeline.get(), &dist.activity);
  }

  const io::DataSplits data = load_data(ctx, spec.data, data_options(spec));
  const io::Dataset* eval = data.eval ? &*data.eval : nullptr;
  Model model(ctx.backend(), job_arch(spec, data.classes));
  // Ranks sharing one machine (CPU): the gradients live in the communicator's shared windows,
  // where its ring reduces them without copying between the ranks' buffers. Collective, the
  // same choice on every rank.
  if (dist.allreduce && device.device.is_cpu() && dist.comm->shares_buffers()) {
    dist.shared_grads.emplace(dist.comm->allocate(model.param_count()));
    model.place_grads(dist.shared_grads->data());
  }
  const std::filesystem::path ps_job_file = cfg.checkpoint_dir / kPsJobFile;
  if (ps) {
    const ps::PsConfig pc = start_ps(ctx, spec, dist, model.trainable_count());
    dist.ps = std::make_unique<ps::PsStrategy>(ctx, pc, model.trainable_count());
    if (chief) write_ps_job_file(ps_job_file, {pc.servers, pc.token, pc.chunk_bytes});
  }
  LocalStrategy local;
  Strategy& strategy = ps               ? static_cast<Strategy&>(*dist.ps)
                       : dist.allreduce ? static_cast<Strategy&>(*dist.allreduce)
                                        : local;

  MetricsFile metrics(chief ? spec.metrics : std::filesystem::path(), cfg.resume);
  if (chief) cfg.on_step = hooks.on_step;
  cfg.on_eval = [&](const Metrics& m) {
    if (!chief) return;
    if (hooks.on_eval) hooks.on_eval(m);
    char line[256];
    std::snprintf(
        line, sizeof line,
        "epoch %lld step %lld: loss %.4f, train accuracy %.2f%%, test accuracy %.2f%%, %.0f images/s, %.1f s",
        (long long)m.epoch, (long long)m.step, m.loss, 100 * m.train_accuracy, 100 * m.test_accuracy,
        m.images_per_sec, m.seconds);
    ctx.log(line);
    metrics.write(m);
  };

  if (chief)
    ctx.log("training " + model.arch().name + " (" + std::to_string(model.param_count()) +
            " parameters) for " + std::to_string(cfg.epochs) + " epoch(s), batch " +
            std::to_string(cfg.batch_size) +
            (st.kind != StrategyKind::Local
                 ? " per rank x " + std::to_string(id.world) + " ranks" +
                       (dist.comm ? " on " + std::to_string(dist.comm->host_count()) +
                                        (dist.comm->host_count() == 1 ? " host" : " hosts")
                                  : "") +
                       " (" + strategy.name() + (ps ? " " + st.ps.consistency.str() : "") + ")"
                 : "") +
            ", " + std::string(to_string(cfg.optimizer.kind)) + " lr " + compact(cfg.optimizer.lr) + ", " +
            std::to_string(device.threads) + " thread(s)");
  const auto t_train = Clock::now();
  JobResult out;
  out.chief = chief;
  out.train = train(ctx, model, data.train, eval, cfg, strategy);
  TrainResult& r = out.train;
  if (dist.ps) {
    dist.ps->sum(0);  // every live worker has pushed its last step
    if (chief) {
      // The export holds the servers' parameters: in async and ssp modes other workers' last
      // gradients may have landed after this worker's last pull.
      Optimizer collected(ctx.backend(), cfg.optimizer, model.param_count(), model.trainable_count());
      dist.ps->collect(model, collected);
      if (st.ps.consistency.mode != ps::Consistency::Sync && eval) r.last_eval = evaluate(model, *eval);
    }
    dist.ps->leave();
    if (chief) std::filesystem::remove(ps_job_file);  // no worker can join any more
    if (dist.server) wait_for_departures(ctx, *dist.server, id.world, 2 * st.comm_timeout_s, 0);
  }
  if (dist.allreduce) {
    const double wait = dist.comm->sum(dist.allreduce->wait_seconds()) / id.world;
    if (chief)
      ctx.log("waited for gradient allreduce " + compact(wait) + " s of " + compact(since(t_train)) +
              " s (mean over ranks, evaluations included in the total)" +
              (dist.shared_grads ? "; " + std::to_string(dist.comm->in_place_allreduces()) +
                                       " allreduces in place in shared memory"
                                 : std::string()));
  }
  if (dist.timeline) {
    const std::vector<std::string> events = dist.comm->gather_to_root(dist.timeline->events_json());
    if (chief) {
      Timeline::write(spec.timeline, events);
      ctx.log("timeline " + spec.timeline.string());
    }
  }
  if (!chief) return out;
  if (r.reached_target) ctx.log("reached test accuracy " + compact(cfg.stop_at_accuracy) + ": stopping");
  // A run resumed from its last epoch trains nothing and is evaluated here.
  if (eval) out.final_eval = r.evaluations.empty() ? evaluate(model, *eval) : r.last_eval;
  io::ModelFile file{model.arch(),
                     io::default_signature(model),
                     model.get_params(),
                     {{"epochs", std::to_string(cfg.epochs)},
                      {"steps", std::to_string(r.global_step)},
                      {"optimizer", std::string(to_string(cfg.optimizer.kind))},
                      {"seed", std::to_string(cfg.seed)},
                      {"created", utc_now()},
                      {"strand_version", STRAND_VERSION}}};
  if (eval) file.metadata["test_accuracy"] = std::to_string(out.final_eval.accuracy);
  out.version = io::export_model(spec.model_dir, file);
  out.exported = spec.model_dir / std::to_string(out.version);
  char acc[48] = "no evaluation set";
  if (eval) std::snprintf(acc, sizeof acc, "test accuracy %.2f%%", 100 * out.final_eval.accuracy);
  ctx.log(std::string(acc) + "; exported version " + std::to_string(out.version) + " to " +
          (out.exported / io::kModelFileName).string());
  return out;
}

// train_rank_on; an error on a GPU rank (a missing device, its memory full) also names the
// rank, its host and the device.
JobResult train_rank(const JobSpec& spec, const JobHooks& hooks, const Identity& id, Distributed& dist) {
  if (spec.device.device.is_cpu()) return train_rank_on(spec, hooks, id, dist);
  try {
    return train_rank_on(spec, hooks, id, dist);
  } catch (const Error& e) {
    const std::string device = spec.device.device.resolved(id.local_rank).str();
    const std::string rank = id.where();
    const std::string here = (rank.empty() ? "" : rank + ", ") + device;
    if (e.where().starts_with(here)) throw;  // located already (NCCL names rank and device)
    throw Error(e.kind(), e.message(), here + (e.where().empty() ? "" : ": " + e.where()));
  }
}

// The trainable parameters the servers hold: their count may depend on the labels.
int64_t served_params(const Context& ctx, const JobSpec& spec) {
  const ModelArch arch = spec.model.classes
                             ? spec.model.arch
                             : job_arch(spec, load_data(ctx, spec.data, data_options(spec)).classes);
  return Model(ctx.backend(), arch).trainable_count();
}

// The TF_CONFIG launch: every task is a process of its own. A ps task serves its shard until
// the workers are done; the others are workers (chief first), their servers those of
// cluster.ps.
JobResult run_tf_config(const JobSpec& spec, const JobHooks& hooks, const std::string& tf_config) {
  const TfConfig tf = parse_tf_config(tf_config);
  const PsSpec& p = spec.strategy.ps;
  const uint64_t env_token = token_from_env();
  const uint64_t token = env_token ? env_token : tf.token;
  const int world = int(tf.workers.size());
  if (!tf.server) {
    Distributed dist{.sm_token = token};
    for (const TfConfig::Task& t : tf.servers)
      dist.sm_servers.push_back("tcp://" + server_address(t.host, p.bind, is_this_machine(t.host)) + ":" +
                                std::to_string(t.port));
    // Tasks on one host are told apart by their order in the cluster (a GPU each, say).
    const std::string& host = tf.workers[size_t(tf.index)].host;
    Identity id{.rank = tf.index, .world = world, .host = host, .local_rank = 0, .local_size = 0};
    for (int r = 0; r < world; ++r) {
      if (tf.workers[size_t(r)].host != host) continue;
      id.local_rank += r < tf.index;
      ++id.local_size;
    }
    return train_rank(spec, hooks, id, dist);
  }
  const TfConfig::Task& me = tf.servers[size_t(tf.index)];
  STRAND_CHECK(p.port == 0 || p.port == me.port, Usage,
               "--ps-port " + std::to_string(p.port) +
                   " contradicts TF_CONFIG, where this ps task listens on " + std::to_string(me.port),
               "strand train");
  Context ctx(make_cpu_backend(1), {.rank = 0, .world = 1, .host = me.host});
  const int64_t params = served_params(ctx, spec);
  ps::Server server(ctx, server_options(spec, world, tf.index, int(tf.servers.size()), token, params,
                                        ps_bind_address(p.bind, me.host), me.port));
  ctx.log("TF_CONFIG: ps task " + std::to_string(tf.index) + " of " + std::to_string(tf.servers.size()) +
          ", serving " + std::to_string(world) + " worker(s)");
  wait_for_departures(ctx, server, world, 2 * spec.strategy.comm_timeout_s, 0);
  return {};
}

// The Slurm launch without MPI (srun): the first task on each node also runs the node's
// server on --ps-port (kSageMakerPort by default) at the node's address; every task finds the
// servers from the step's node list. The token comes from the job and step ids (or
// STRAND_PS_TOKEN).
JobResult run_slurm_ps(const JobSpec& spec, const JobHooks& hooks, const Environment& env) {
  const PsSpec& p = spec.strategy.ps;
  const Identity id = discover_identity(Launcher::Slurm, env);
  const SlurmNodes nodes = slurm_nodes(env);
  const int port = p.port ? p.port : kSageMakerPort;
  const std::string* job_id = env.get("SLURM_JOB_ID");
  const std::string* step_id = env.get("SLURM_STEP_ID");
  const uint64_t env_token = token_from_env();
  Distributed dist{.sm_token = env_token ? env_token
                                         : token_from_text("slurm " + (job_id ? *job_id : "") + "." +
                                                           (step_id ? *step_id : ""))};
  for (size_t i = 0; i < nodes.hosts.size(); ++i)
    dist.sm_servers.push_back("tcp://" + server_address(nodes.hosts[i], p.bind, int(i) == nodes.current) +
                              ":" + std::to_string(port));
  if (id.local_rank == 0)
    dist.own_server = Distributed::ServerPlan{.index = nodes.current,
                                              .count = int(nodes.hosts.size()),
                                              .address = ps_bind_address(p.bind, id.host),
                                              .port = port};
  return train_rank(spec, hooks, id, dist);
}

// The SageMaker launch: the same command on every host of SM_HOSTS. The host's process runs
// the host's server and starts workers_per_host workers (this command again, with kWorkerEnv
// set); the token comes from STRAND_PS_TOKEN (there is no channel to share a generated one).
JobResult run_sagemaker(const JobSpec& spec, const JobHooks& hooks, const Environment& env) {
  const PsSpec& p = spec.strategy.ps;
  const std::string* hosts_json = env.get("SM_HOSTS");
  const std::string* current = env.get("SM_CURRENT_HOST");
  const SageMakerHosts sm =
      sagemaker_hosts(hosts_json ? hosts_json->c_str() : nullptr, current ? current->c_str() : nullptr);
  const uint64_t token = token_from_env();
  STRAND_CHECK(token != 0, Usage,
               "the SageMaker launch needs the job's token: the same 1 to 16 hex digits on every host",
               "STRAND_PS_TOKEN");
  const int port = p.port ? p.port : kSageMakerPort;
  const int per_host = p.workers_per_host, world = int(sm.hosts.size()) * per_host;
  const std::string& host = sm.hosts[size_t(sm.current)];
  if (env.get(kWorkerEnv)) {
    Distributed dist{.sm_token = token};
    for (size_t i = 0; i < sm.hosts.size(); ++i)
      dist.sm_servers.push_back("tcp://" + server_address(sm.hosts[i], p.bind, int(i) == sm.current) + ":" +
                                std::to_string(port));
    return train_rank(spec, hooks, discover_identity(Launcher::SageMaker, env, nullptr, per_host), dist);
  }
  Context ctx(make_cpu_backend(1), {.rank = 0, .world = 1, .host = host});
  const int64_t params = served_params(ctx, spec);
  // By default the address the other hosts resolve this host's name to; this host's own
  // workers meet it there (server_address).
  const std::string address = ps_bind_address(p.bind, host);
  ps::Server server(
      ctx, server_options(spec, world, sm.current, int(sm.hosts.size()), token, params, address, port));
  const std::vector<int> pids = spawn_workers(per_host);
  std::string pid_list;
  for (int pid : pids) pid_list += (pid_list.empty() ? "" : " ") + std::to_string(pid);
  ctx.log("host " + std::to_string(sm.current + 1) + " of " + std::to_string(sm.hosts.size()) + ": workers " +
          std::to_string(sm.current * per_host) + ".." +
          std::to_string(sm.current * per_host + per_host - 1) + " of " + std::to_string(world) + " (pids " +
          pid_list + ")");
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
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
    const std::string who = "worker rank " + std::to_string(sm.current * per_host + int(i)) + " (pid " +
                            std::to_string(pid) + ")";
    const std::string how = WIFSIGNALED(status) ? "was killed by signal " + std::to_string(WTERMSIG(status))
                                                : "exited with status " + std::to_string(WEXITSTATUS(status));
    ctx.log(who + " " + how);
    failures += (failures.empty() ? "" : "; ") + who + " " + how;
  }
  // Also when every worker here failed (maybe before reaching any server): the other hosts'
  // workers may still need this server, for as long as they are heard from (a live worker
  // sends a heartbeat every half second even while it waits).
  wait_for_departures(ctx, server, world, 2 * spec.strategy.comm_timeout_s, kUnheardLimit);
  STRAND_CHECK(failures.empty(), Io, failures, "strand train on " + host);
  return {};
}

}  // namespace

Context make_context(const DeviceSpec& d, Identity id) {
  STRAND_CHECK(d.threads >= 1, Usage, "--threads must be at least 1", "strand");
  Context ctx(make_backend(d.device, d.threads, d.cuda), std::move(id));
  if (!d.device.is_cpu())
    ctx.log("running on " + d.device.str() + (d.cuda.tf32 ? " with TF32 math" : "") +
            (d.cuda.cudnn_benchmark ? ", timed cuDNN algorithm choice" : ""));
  return ctx;
}

namespace {
std::string shape_and_pixels(const io::Dataset& d) {
  return d.sample_shape.str() + (d.pixels == PixelType::U8 ? " uint8" : " float32");
}

// "data DIR (FORMAT files): WHAT, read in N ms", timed from `t0`.
void log_loaded(const Context& ctx, const std::filesystem::path& dir, const std::string& format,
                const std::string& what, Clock::time_point t0) {
  ctx.log("data " + dir.string() + " (" + format + " files): " + what + ", read in " +
          std::to_string(int64_t(since(t0) * 1000)) + " ms");
}
}  // namespace

io::DataOptions data_options(const JobSpec& spec) {
  return {.layout = spec.layout, .classes = spec.model.classes, .val_split = spec.val_split};
}

io::Dataset load_split(const Context& ctx, const std::filesystem::path& dir, io::Split split,
                       const io::DataOptions& options) {
  const auto t0 = Clock::now();
  std::string format;
  io::Dataset d = io::load_data_split(dir, split, options, &format);
  log_loaded(
      ctx, dir, format,
      std::to_string(d.size()) + (split == io::Split::train ? " training" : " evaluation") + " images " +
          shape_and_pixels(d) +
          (split == io::Split::eval && options.val_split > 0 ? " (held out of the training files)" : ""),
      t0);
  return d;
}

io::DataSplits load_data(const Context& ctx, const std::filesystem::path& dir,
                         const io::DataOptions& options) {
  const auto t0 = Clock::now();
  io::DataSplits s = io::load_data_dir(dir, options);
  const std::string eval = !s.eval                 ? "no evaluation set"
                           : options.val_split > 0 ? std::to_string(s.eval->size()) +
                                                         " evaluation images held out of the training files"
                                                   : std::to_string(s.eval->size()) + " evaluation images";
  log_loaded(ctx, dir, s.format,
             std::to_string(s.train.size()) + " training images " + shape_and_pixels(s.train) + ", " + eval +
                 ", " + std::to_string(s.classes) + " classes",
             t0);
  return s;
}

namespace {
constexpr Name<StrategyKind> kStrategyNames[] = {
    {StrategyKind::Local, "local"}, {StrategyKind::Allreduce, "allreduce"}, {StrategyKind::Ps, "ps"}};
}  // namespace

StrategyKind parse_strategy(std::string_view text) {
  return parse_name(kStrategyNames, text, "strategy", "strategy");
}

std::string_view to_string(StrategyKind kind) { return name_of(kStrategyNames, kind); }

ModelArch job_arch(const JobSpec& spec, int64_t classes) { return spec.model.with_classes(classes); }

void validate(const JobSpec& spec) {
  const std::string where = "strand train";
  STRAND_CHECK(!spec.data.empty(), Usage, "--data is required (or set SM_CHANNEL_TRAINING)", where);
  STRAND_CHECK(!spec.model_dir.empty(), Usage, "--model-dir is required (or set SM_MODEL_DIR)", where);
  validate(recipe(spec));
  STRAND_CHECK(spec.val_split >= 0 && spec.val_split < 1, Usage,
               "--val-split must be in (0, 1), got " + compact(spec.val_split), where);
  const StrategySpec& st = spec.strategy;
  STRAND_CHECK(st.comm_timeout_s > 0, Usage, "the communication timeout must be positive", where);
  STRAND_CHECK(st.ps.workers_per_host >= 1, Usage, "--workers-per-host must be at least 1", where);
  if (st.ps.join) {
    STRAND_CHECK(st.kind == StrategyKind::Ps, Usage, "--ps-join needs --strategy ps", where);
    STRAND_CHECK(!spec.train.resume, Usage,
                 "--ps-join takes the running job's state from its servers: drop --resume", where);
    STRAND_CHECK(spec.timeline.empty(), Usage, "--timeline is gathered over MPI: a joiner has none", where);
  }
  if (st.kind == StrategyKind::Local) {
    STRAND_CHECK(st.global_batch_size == 0 && !st.scale_lr && spec.timeline.empty(), Usage,
                 "--global-batch-size, --scale-lr and --timeline need --strategy allreduce", where);
  }
  if (st.kind == StrategyKind::Allreduce) (void)allreduce_algorithm(st.allreduce, spec.device.device);
}

allreduce::Algorithm allreduce_algorithm(const AllreduceSpec& spec, Device device) {
  using allreduce::Algorithm;
  const std::string where = "strand train";
  Algorithm a = spec.algorithm.value_or(device.is_cpu() ? Algorithm::Ring : Algorithm::Nccl);
  if (spec.hierarchical) {
    STRAND_CHECK(a != Algorithm::Mpi, Usage, "--hierarchical contradicts --allreduce mpi", where);
    if (a == Algorithm::Ring) a = Algorithm::Hierarchical;
    if (a == Algorithm::Nccl) a = Algorithm::NcclHierarchical;
  }
  STRAND_CHECK(!on_device(a) || !device.is_cpu(), Usage,
               "--allreduce " + std::string(to_string(a)) + " reduces GPU memory: it needs --device cuda",
               where);
  return a;
}

namespace {

// A worker joining a running ps job (PsSpec::join): the servers from the job's file, a rank
// from server 0, then training from the step the servers agree on. No MPI.
JobResult join_job(const JobSpec& spec, const JobHooks& hooks) {
  const std::filesystem::path file = recipe(spec).checkpoint_dir / kPsJobFile;
  const PsJobFile job = read_ps_job_file(file);
  STRAND_CHECK(job.chunk_bytes == spec.strategy.ps.chunk_bytes, Usage,
               "the job's chunks are " + std::to_string(job.chunk_bytes) +
                   " bytes, this command's --ps-chunk-bytes " + std::to_string(spec.strategy.ps.chunk_bytes) +
                   " (the same command must join)",
               file.string());
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  Context boot(make_cpu_backend(1), {.host = name});
  ps::WorkerOptions o{.servers = job.servers, .token = job.token};
  // The job runs already: a server that does not answer is gone (a stale file), not starting.
  o.dispatch.server_timeout_s = o.dispatch.connect_timeout_s = spec.strategy.comm_timeout_s;
  boot.log("joining the job of " + file.string() + " (" + std::to_string(job.servers.size()) + " servers)");
  const ps::Joining joining = ps::Worker::request_rank(boot, o);
  Distributed dist{.sm_servers = job.servers, .sm_token = job.token, .joining = joining};
  return train_rank(spec, hooks, {.rank = joining.rank, .world = joining.rank + 1, .host = name}, dist);
}

}  // namespace

JobResult run_job(const JobSpec& spec, const JobHooks& hooks) {
  validate(spec);
  const StrategySpec& st = spec.strategy;
  if (st.kind == StrategyKind::Ps && st.ps.join) return join_job(spec, hooks);
  const Environment env = Environment::current();
  const Launcher launcher = detect_launcher(env);
  if (st.kind == StrategyKind::Local) {
    Distributed none;
    return train_rank(spec, hooks, discover_identity(Launcher::Single, env), none);
  }
  const std::string where = "strand train";
  if (st.kind == StrategyKind::Ps) {
    if (launcher == Launcher::TfConfig) return run_tf_config(spec, hooks, *env.get(kTfConfigEnv));
    if (launcher == Launcher::SageMaker) return run_sagemaker(spec, hooks, env);
    if (launcher == Launcher::Slurm) return run_slurm_ps(spec, hooks, env);
    STRAND_CHECK(launcher != Launcher::Torchrun, Usage,
                 "--strategy ps finds its servers from mpirun, srun, TF_CONFIG or SM_HOSTS; under torchrun "
                 "(RANK, WORLD_SIZE) no launcher says which host runs which server",
                 where);
  } else {
    STRAND_CHECK(launcher != Launcher::Slurm || discover_identity(launcher, env).world == 1, Usage,
                 "srun started this task without MPI (SLURM_PROCID): --strategy allreduce reduces over "
                 "MPI, start it with srun --mpi=pmix",
                 where);
    STRAND_CHECK(launcher != Launcher::Torchrun, Usage,
                 "--strategy allreduce reduces over MPI: start it with mpirun or srun --mpi=pmix, not "
                 "torchrun (RANK, WORLD_SIZE)",
                 where);
    STRAND_CHECK(launcher != Launcher::SageMaker || discover_identity(launcher, env).world == 1, Usage,
                 "--strategy allreduce on several SageMaker hosts runs under mpirun (SageMaker's mpi "
                 "distribution); SM_HOSTS alone starts one process per host",
                 where);
  }
  allreduce::MpiRuntime mpi(nullptr, nullptr);
  Distributed dist{.mpi = &mpi};
  try {
    const Identity id = discover_identity(Launcher::Mpi, env, &mpi);
    STRAND_CHECK(st.kind != StrategyKind::Ps || st.ps.workers_per_host == 1, Usage,
                 "--workers-per-host is for the SageMaker launch (SM_HOSTS); under mpirun, -np and -H place "
                 "the workers",
                 "strand train");
    return train_rank(spec, hooks, id, dist);
  } catch (const std::exception& e) {
    // Its goodbye before an abort: the launcher must not take the rank that chose to end the
    // job for one that died.
    dist.heartbeat.reset();
    if (hooks.on_failure && mpi.world_size() > 1) hooks.on_failure(mpi, e);
    throw;
  }
}

}  // namespace strand::job
