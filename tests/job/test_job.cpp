// The job module's boundaries: the process's identity under each launcher (from an
// environment the test builds), the strategy parser and the contradictions validate() refuses,
// and a local job run end to end through run_job() alone.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <strand/core/backend.hpp>
#include <strand/core/context.hpp>
#include <strand/core/error.hpp>
#include <strand/core/model.hpp>
#include <strand/io/dataset.hpp>
#include <strand/io/model_file.hpp>
#include <strand/io/npy.hpp>
#include <strand/job/identity.hpp>
#include <strand/job/job.hpp>
#include <strand/job/launch.hpp>
#include <strand/models/model_json.hpp>
#include <strand/train/trainer.hpp>

namespace strand::job {
namespace {

namespace fs = std::filesystem;

Environment env(std::map<std::string, std::string> vars) { return {.vars = std::move(vars)}; }

TEST(Identity, SingleProcessIsRankZeroOfOne) {
  const Identity id = discover_identity(Launcher::Single, env({{"OMPI_COMM_WORLD_RANK", "3"}}));
  EXPECT_EQ(id.rank, 0);
  EXPECT_EQ(id.world, 1);
  EXPECT_EQ(id.local_rank, 0);
}

TEST(Identity, SageMakerWorkersAreNumberedByHostThenIndex) {
  const Environment e = env(
      {{"SM_HOSTS", R"(["algo-1","algo-2","algo-3"])"}, {"SM_CURRENT_HOST", "algo-2"}, {kWorkerEnv, "1"}});
  const Identity id = discover_identity(Launcher::SageMaker, e, nullptr, 2);
  EXPECT_EQ(id.rank, 3);  // host 1, worker 1, two a host
  EXPECT_EQ(id.world, 6);
  EXPECT_EQ(id.host, "algo-2");
  EXPECT_EQ(id.local_rank, 1);
  EXPECT_EQ(id.local_size, 2);
}

// Each broken variable is named in the error.
TEST(Identity, BrokenSageMakerVariablesAreNamed) {
  auto where = [](const Environment& e, int per_host = 1) {
    try {
      discover_identity(Launcher::SageMaker, e, nullptr, per_host);
    } catch (const Error& err) {
      EXPECT_EQ(err.kind(), ErrorKind::Usage);
      return err.where();
    }
    return std::string("no error");
  };
  EXPECT_EQ(where(env({{"SM_CURRENT_HOST", "a"}})), "SM_HOSTS");
  EXPECT_EQ(where(env({{"SM_HOSTS", R"(["a"])"}})), "SM_CURRENT_HOST");
  EXPECT_EQ(where(env({{"SM_HOSTS", "[a"}, {"SM_CURRENT_HOST", "a"}})), "SM_HOSTS");
  EXPECT_EQ(where(env({{"SM_HOSTS", "[]"}, {"SM_CURRENT_HOST", "a"}})), "SM_HOSTS");
  EXPECT_EQ(where(env({{"SM_HOSTS", R"(["a"])"}, {"SM_CURRENT_HOST", "b"}})), "SM_CURRENT_HOST");
  const std::map<std::string, std::string> ok = {{"SM_HOSTS", R"(["a"])"}, {"SM_CURRENT_HOST", "a"}};
  for (const char* bad : {"x", "-1", "1x", ""}) {
    auto vars = ok;
    vars[kWorkerEnv] = bad;
    EXPECT_EQ(where(env(vars)), kWorkerEnv) << bad;
  }
  auto vars = ok;
  vars[kWorkerEnv] = "2";
  EXPECT_EQ(where(env(vars), 2), kWorkerEnv);  // index outside the workers per host
}

// Which launcher started the process, told from its variables; the innermost one counts.
TEST(Identity, TheLauncherIsToldFromItsVariables) {
  EXPECT_EQ(detect_launcher(env({})), Launcher::Single);
  EXPECT_EQ(detect_launcher(env({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}})),
            Launcher::Mpi);
  EXPECT_EQ(detect_launcher(env({{"PMIX_RANK", "1"}, {"SLURM_PROCID", "1"}, {"SLURM_STEP_ID", "0"}})),
            Launcher::Mpi);  // srun --mpi=pmix
  EXPECT_EQ(detect_launcher(env({{"PMI_RANK", "0"}, {"PMI_SIZE", "4"}})), Launcher::Mpi);
  // mpirun inside an sbatch allocation: its ranks inherit the daemons' SLURM_PROCID.
  EXPECT_EQ(
      detect_launcher(env({{"OMPI_COMM_WORLD_RANK", "3"}, {"SLURM_PROCID", "0"}, {"SLURM_STEP_ID", "0"}})),
      Launcher::Mpi);
  EXPECT_EQ(detect_launcher(env({{"SLURM_PROCID", "2"}, {"SLURM_STEP_ID", "0"}})), Launcher::Slurm);
  // The batch script itself is no task of a step.
  EXPECT_EQ(detect_launcher(env({{"SLURM_PROCID", "0"}, {"SLURM_JOB_ID", "7"}})), Launcher::Single);
  // torchrun under srun.
  EXPECT_EQ(detect_launcher(
                env({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"SLURM_PROCID", "1"}, {"SLURM_STEP_ID", "0"}})),
            Launcher::Torchrun);
  EXPECT_EQ(detect_launcher(env({{"RANK", "5"}})), Launcher::Single);  // RANK alone is no launch
  EXPECT_EQ(detect_launcher(env({{kTfConfigEnv, "{}"}})), Launcher::TfConfig);
  EXPECT_EQ(detect_launcher(env({{"SM_HOSTS", R"(["a"])"}, {"SM_CURRENT_HOST", "a"}})), Launcher::SageMaker);
  // mpirun under SageMaker (its mpi distribution).
  EXPECT_EQ(detect_launcher(env({{"SM_HOSTS", R"(["a"])"}, {"OMPI_COMM_WORLD_RANK", "0"}})), Launcher::Mpi);
}

// Two sources that disagree are named, both, with their values.
TEST(Identity, ConflictingSourcesAreNamedBoth) {
  const auto message = [](const Environment& e) {
    try {
      detect_launcher(e);
    } catch (const Error& err) {
      EXPECT_EQ(err.kind(), ErrorKind::Usage);
      return std::string(err.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(env({{"OMPI_COMM_WORLD_RANK", "0"}, {"RANK", "3"}, {"WORLD_SIZE", "4"}}))
                .find("OMPI_COMM_WORLD_RANK=0 and RANK=3 give this process different ranks"),
            std::string::npos);
  EXPECT_NE(message(env({{"OMPI_COMM_WORLD_RANK", "1"}, {"PMIX_RANK", "2"}}))
                .find("OMPI_COMM_WORLD_RANK=1 and PMIX_RANK=2"),
            std::string::npos);
  EXPECT_NE(message(env({{"OMPI_COMM_WORLD_RANK", "1"},
                         {"OMPI_COMM_WORLD_SIZE", "2"},
                         {"RANK", "1"},
                         {"WORLD_SIZE", "3"}}))
                .find("OMPI_COMM_WORLD_SIZE=2 and WORLD_SIZE=3 give this process different world sizes"),
            std::string::npos);
  EXPECT_NE(message(env({{"OMPI_COMM_WORLD_RANK", "1"}, {kTfConfigEnv, "{}"}}))
                .find("OMPI_COMM_WORLD_RANK=1 and TF_CONFIG"),
            std::string::npos);
  EXPECT_NE(
      message(env({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {kTfConfigEnv, "{}"}})).find("RANK=1 and TF_CONFIG"),
      std::string::npos);
  EXPECT_NE(message(env({{kTfConfigEnv, "{}"}, {"SM_HOSTS", "[]"}})).find("TF_CONFIG={} and SM_HOSTS=[]"),
            std::string::npos);
  // Agreeing sources are fine.
  EXPECT_EQ(
      message(env({{"OMPI_COMM_WORLD_RANK", "2"}, {"PMIX_RANK", "2"}, {"RANK", "2"}, {"WORLD_SIZE", "4"}})),
      "no error");
}

TEST(Identity, SlurmTasksArePlacedByTheStep) {
  const Environment e = env({{"SLURM_PROCID", "3"},
                             {"SLURM_STEP_ID", "0"},
                             {"SLURM_STEP_NUM_TASKS", "5"},
                             {"SLURM_LOCALID", "0"},
                             {"SLURM_NODEID", "1"},
                             {"SLURM_STEP_NODELIST", "node[07-08],gpu1"},
                             {"SLURM_STEP_TASKS_PER_NODE", "3,1(x2)"}});
  const Identity id = discover_identity(Launcher::Slurm, e);
  EXPECT_EQ(id.rank, 3);
  EXPECT_EQ(id.world, 5);
  EXPECT_EQ(id.host, "node08");
  EXPECT_EQ(id.local_rank, 0);
  EXPECT_EQ(id.local_size, 1);
  const auto where = [](std::map<std::string, std::string> vars) {
    try {
      discover_identity(Launcher::Slurm, env(std::move(vars)));
    } catch (const Error& err) {
      EXPECT_EQ(err.kind(), ErrorKind::Usage);
      return err.where();
    }
    return std::string("no error");
  };
  std::map<std::string, std::string> ok = e.vars;
  const auto with = [&](const std::string& k, const std::string& v) {
    auto vars = ok;
    if (v.empty())
      vars.erase(k);
    else
      vars[k] = v;
    return vars;
  };
  EXPECT_EQ(where(with("SLURM_PROCID", "5")), "SLURM_PROCID");  // outside the 5 tasks
  EXPECT_EQ(where(with("SLURM_PROCID", "x")), "SLURM_PROCID");
  EXPECT_EQ(where(with("SLURM_NODEID", "3")), "SLURM_NODEID");
  EXPECT_EQ(where(with("SLURM_STEP_NODELIST", "node[07-")), "SLURM_STEP_NODELIST");
  EXPECT_EQ(where(with("SLURM_STEP_TASKS_PER_NODE", "3,x")), "SLURM_STEP_TASKS_PER_NODE");
  EXPECT_EQ(where(with("SLURM_LOCALID", "1")), "SLURM_LOCALID");  // node 1 runs one task
  auto no_list = with("SLURM_STEP_NODELIST", "");
  EXPECT_EQ(where(no_list), "SLURM_JOB_NODELIST");
  EXPECT_EQ(where(with("SLURM_STEP_NUM_TASKS", "")), "SLURM_NTASKS");
}

TEST(Identity, SlurmNodeListsExpand) {
  using V = std::vector<std::string>;
  EXPECT_EQ(expand_slurm_nodelist("a", "L"), V{"a"});
  EXPECT_EQ(expand_slurm_nodelist("node[01-03,7],gpu-a", "L"),
            (V{"node01", "node02", "node03", "node7", "gpu-a"}));
  EXPECT_EQ(expand_slurm_nodelist("x[8-10]-ib,y", "L"), (V{"x8-ib", "x9-ib", "x10-ib", "y"}));
  EXPECT_EQ(expand_slurm_nodelist("n[001-002]", "L"), (V{"n001", "n002"}));
  for (const char* bad :
       {"", ",", "a,", "a,,b", "n[1-", "n[]", "n[3-1]", "n[a-b]", "n[1][2]", "n[1-2-3]", "n[-1]"}) {
    try {
      expand_slurm_nodelist(bad, "L");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage) << bad;
      EXPECT_EQ(e.where(), "L") << bad;
    }
  }
}

TEST(Identity, TorchrunPlacesByItsVariables) {
  const Identity id = discover_identity(Launcher::Torchrun, env({{"RANK", "5"},
                                                                 {"WORLD_SIZE", "8"},
                                                                 {"LOCAL_RANK", "1"},
                                                                 {"LOCAL_WORLD_SIZE", "4"},
                                                                 {"HOSTNAME", "n2"}}));
  EXPECT_EQ(id.rank, 5);
  EXPECT_EQ(id.world, 8);
  EXPECT_EQ(id.local_rank, 1);
  EXPECT_EQ(id.local_size, 4);
  EXPECT_EQ(id.host, "n2");
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"RANK", "8"}, {"RANK", "-1"}, {"WORLD_SIZE", "x"}, {"LOCAL_RANK", "4"}}) {
    std::map<std::string, std::string> vars = {
        {"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "4"}};
    vars[k] = v;
    try {
      discover_identity(Launcher::Torchrun, env(vars));
      ADD_FAILURE() << k << "=" << v << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
    }
  }
}

// A worker without MPI never takes another machine's name that resolves to loopback for an
// address; its own machine's server it meets where that server binds.
TEST(ServerAddress, AnotherMachinesLoopbackNameIsRefused) {
  try {
    server_address("localhost", "", false);
    ADD_FAILURE() << "took 'localhost' for another machine's address";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_EQ(e.where(), "localhost");
    EXPECT_NE(std::string(e.what()).find("resolves to 127.0.0.1"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(is_this_machine("localhost"));
  EXPECT_EQ(server_address("localhost", "127.0.0.1", true), "127.0.0.1");
  EXPECT_EQ(server_address("localhost", "", true), ps_bind_address("", "localhost"));
  EXPECT_EQ(server_address("192.0.2.77", "", false), "192.0.2.77");
}

// SageMaker's parameter-server layout: a ps task and a worker on every host, the master first.
constexpr const char* kCluster =
    R"("cluster": {"master": ["algo-1:2222"], "worker": ["algo-2:2222", "algo-3:2222"],)"
    R"( "ps": ["algo-1:2223", "algo-2:2223", "algo-3:2223"]})";

std::string tf_config(const std::string& task) { return std::string("{") + kCluster + ", " + task + "}"; }

TEST(TfConfig, TasksAreServersOrWorkersChiefFirst) {
  const TfConfig ps = parse_tf_config(tf_config(R"("task": {"type": "ps", "index": 2})"));
  EXPECT_TRUE(ps.server);
  EXPECT_EQ(ps.index, 2);
  ASSERT_EQ(ps.servers.size(), 3u);
  EXPECT_EQ(ps.servers[2].host, "algo-3");
  EXPECT_EQ(ps.servers[2].port, 2223);
  ASSERT_EQ(ps.workers.size(), 3u);
  EXPECT_EQ(ps.workers[0].host, "algo-1");  // the master is worker 0
  const TfConfig master = parse_tf_config(tf_config(R"("task": {"type": "master", "index": 0})"));
  EXPECT_FALSE(master.server);
  EXPECT_EQ(master.index, 0);
  const TfConfig worker = parse_tf_config(tf_config(R"("task": {"type": "worker", "index": 1})"));
  EXPECT_FALSE(worker.server);
  EXPECT_EQ(worker.index, 2);  // after the master and worker 0
  // Every task draws the same token from the cluster; another cluster draws another.
  EXPECT_EQ(ps.token, worker.token);
  EXPECT_NE(ps.token, 0u);
  const TfConfig other = parse_tf_config(
      R"({"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}})");
  EXPECT_NE(other.token, ps.token);
  EXPECT_EQ(other.workers.size(), 1u);  // no chief: the first worker leads
}

// Each broken or inconsistent TF_CONFIG is a usage error naming the key.
TEST(TfConfig, BrokenInputNamesTheKey) {
  const std::string task = R"("task": {"type": "worker", "index": 0})";
  const auto message = [](const std::string& json) {
    try {
      parse_tf_config(json);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage) << json;
      EXPECT_EQ(e.where(), kTfConfigEnv) << json;
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", "not valid JSON"},
      {"[]", "must be a JSON object"},
      {"{" + task + "}", "cluster: missing"},
      {R"({"cluster": [], )" + task + "}", "cluster: missing or not an object"},
      {R"({"cluster": {"worker": ["a:1"]}, )" + task + "}", "cluster.ps: missing or empty"},
      {R"({"cluster": {"worker": ["a:1"], "ps": []}, )" + task + "}", "cluster.ps: missing or empty"},
      {R"({"cluster": {"worker": "a:1", "ps": ["b:2"]}, )" + task + "}", "cluster.worker: must be a list"},
      {R"({"cluster": {"worker": [1], "ps": ["b:2"]}, )" + task + "}", "cluster.worker[0]: must be"},
      {R"({"cluster": {"worker": ["a:1"], "ps": ["b"]}, )" + task + "}",
       "cluster.ps[0]: 'b' is not HOST:PORT"},
      {R"({"cluster": {"worker": ["a:1"], "ps": [":2"]}, )" + task + "}", "cluster.ps[0]: ':2' is not"},
      {R"({"cluster": {"worker": ["a:1"], "ps": ["b:x"]}, )" + task + "}", "cluster.ps[0]: 'b:x': the port"},
      {R"({"cluster": {"worker": ["a:1"], "ps": ["b:70000"]}, )" + task + "}", "cluster.ps[0]: 'b:70000'"},
      {R"({"cluster": {"worker": ["a:1", "a:0"], "ps": ["b:2"]}, )" + task + "}", "cluster.worker[1]"},
      {R"({"cluster": {"evaluator": ["e:1"], "worker": ["a:1"], "ps": ["b:2"]}, )" + task + "}",
       "cluster.evaluator: strand runs chief"},
      {R"({"cluster": {"chief": ["c:1"], "master": ["m:1"], "ps": ["b:2"]}, )" + task + "}",
       "cluster.master: a cluster has a chief or a master"},
      {R"({"cluster": {"chief": ["c:1", "d:1"], "ps": ["b:2"]}, )" + task + "}",
       "cluster.chief: more than one"},
      {R"({"cluster": {"ps": ["b:2"]}, )" + task + "}", "cluster.worker: no chief, master or worker"},
      {std::string("{") + kCluster + "}", "task: missing"},
      {std::string("{") + kCluster + R"(, "task": {"index": 0}})", "task.type: missing"},
      {std::string("{") + kCluster + R"(, "task": {"type": "evaluator", "index": 0}})",
       "task.type: 'evaluator'"},
      {std::string("{") + kCluster + R"(, "task": {"type": "ps", "index": 3}})",
       "task.index: 3 is outside cluster.ps (3 task(s))"},
      {std::string("{") + kCluster + R"(, "task": {"type": "chief", "index": 0}})",
       "task.index: 0 is outside cluster.chief (0 task(s))"},
      {std::string("{") + kCluster + R"(, "task": {"type": "ps", "index": -1}})", "task.index: must be"},
      {std::string("{") + kCluster + R"(, "task": {"type": "ps", "index": "1"}})", "task.index: must be"},
  };
  for (const auto& [json, want] : cases)
    EXPECT_NE(message(json).find(want), std::string::npos) << json << "\n  gave: " << message(json);
}

TEST(Identity, EnvironmentSnapshotReadsTheProcessEnvironment) {
  ::setenv("STRAND_TEST_IDENTITY", "x=y", 1);
  const Environment e = Environment::current();
  ASSERT_NE(e.get("STRAND_TEST_IDENTITY"), nullptr);
  EXPECT_EQ(*e.get("STRAND_TEST_IDENTITY"), "x=y");
  EXPECT_EQ(e.get("STRAND_TEST_IDENTITY_UNSET"), nullptr);
}

TEST(Strategy, ParsesItsNamesAndRefusesOthers) {
  for (StrategyKind k : {StrategyKind::Local, StrategyKind::Allreduce, StrategyKind::Ps})
    EXPECT_EQ(parse_strategy(to_string(k)), k);
  EXPECT_THROW(parse_strategy("horovod"), Error);
  EXPECT_THROW(parse_strategy(""), Error);
  EXPECT_THROW(parse_strategy("Local"), Error);
}

JobSpec spec_in(const fs::path& dir) {
  JobSpec s;
  s.data = dir / "data";
  s.model_dir = dir / "model";
  return s;
}

TEST(Validate, ContradictionsAreRefused) {
  const JobSpec ok = spec_in("/tmp/x");
  EXPECT_NO_THROW(validate(ok));
  auto refused = [&](auto change) {
    JobSpec s = ok;
    change(s);
    EXPECT_THROW(validate(s), Error);
  };
  refused([](JobSpec& s) { s.data.clear(); });
  refused([](JobSpec& s) { s.model_dir.clear(); });
  refused([](JobSpec& s) { s.timeline = "t.json"; });  // a local job has no ranks to trace
  refused([](JobSpec& s) { s.strategy.scale_lr = true; });
  refused([](JobSpec& s) { s.strategy.global_batch_size = 64; });
  refused([](JobSpec& s) { s.train.epochs = 0; });
  refused([](JobSpec& s) { s.train.optimizer.lr = -1; });
  refused([](JobSpec& s) { s.strategy.comm_timeout_s = 0; });
  JobSpec gpu_ps = ok;  // parameter-server workers on GPUs (they stage through pinned memory)
  gpu_ps.strategy.kind = StrategyKind::Ps;
  gpu_ps.device.device = parse_device("cuda:0");
  EXPECT_NO_THROW(validate(gpu_ps));
}

// The algorithm follows the device unless named; --hierarchical picks each one's hierarchical
// form; combinations that cannot run are Usage errors.
TEST(AllreduceAlgorithm, FollowsTheDeviceAndRefusesWhatCannotRun) {
  using allreduce::Algorithm;
  const Device cpu = parse_device("cpu"), gpu = parse_device("cuda");
  auto spec = [](std::optional<Algorithm> a, bool hierarchical) { return AllreduceSpec{a, hierarchical}; };
  EXPECT_EQ(allreduce_algorithm(spec({}, false), cpu), Algorithm::Ring);
  EXPECT_EQ(allreduce_algorithm(spec({}, false), gpu), Algorithm::Nccl);
  EXPECT_EQ(allreduce_algorithm(spec({}, true), cpu), Algorithm::Hierarchical);
  EXPECT_EQ(allreduce_algorithm(spec({}, true), gpu), Algorithm::NcclHierarchical);
  EXPECT_EQ(allreduce_algorithm(spec(Algorithm::Ring, false), gpu), Algorithm::Ring);  // staged
  EXPECT_EQ(allreduce_algorithm(spec(Algorithm::Ring, true), gpu), Algorithm::Hierarchical);
  EXPECT_EQ(allreduce_algorithm(spec(Algorithm::NcclHierarchical, false), gpu), Algorithm::NcclHierarchical);
  for (Algorithm a : {Algorithm::Nccl, Algorithm::NcclHierarchical}) {
    try {
      allreduce_algorithm(spec(a, false), cpu);
      ADD_FAILURE() << to_string(a) << " accepted on the CPU";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_NE(std::string(e.what()).find("needs --device cuda"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(allreduce_algorithm(spec(Algorithm::Mpi, true), gpu), Error);
  for (const char* name : {"ring", "hierarchical", "mpi", "nccl", "nccl-hierarchical"})
    EXPECT_EQ(to_string(allreduce::parse_algorithm(name)), name);
  EXPECT_THROW(allreduce::parse_algorithm("NCCL"), Error);
}

// A few MNIST-shaped images in the SageMaker layout's IDX sibling: written as IDX files.
void write_idx(const fs::path& dir, const std::string& prefix, int n) {
  auto be32 = [](std::ofstream& f, uint32_t v) {
    const unsigned char b[4] = {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)};
    f.write(reinterpret_cast<const char*>(b), 4);
  };
  std::ofstream images(dir / (prefix + "-images-idx3-ubyte"), std::ios::binary);
  be32(images, 0x803);
  be32(images, uint32_t(n));
  be32(images, 28);
  be32(images, 28);
  for (int i = 0; i < n; ++i)
    for (int p = 0; p < 784; ++p)
      images.put(char((p / 28 == (i % 10) * 2) ? 255 : 0));  // a bright row per class
  std::ofstream labels(dir / (prefix + "-labels-idx1-ubyte"), std::ios::binary);
  be32(labels, 0x801);
  be32(labels, uint32_t(n));
  for (int i = 0; i < n; ++i) labels.put(char(i % 10));
}

TEST(RunJob, LocalJobTrainsCheckpointsAndExports) {
  const fs::path dir = fs::temp_directory_path() / ("strand-job-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "data");
  write_idx(dir / "data", "train", 200);
  write_idx(dir / "data", "t10k", 50);
  JobSpec s = spec_in(dir);
  s.model = models::builtin("mnist_mlp");
  s.train.epochs = 2;
  s.train.batch_size = 50;
  s.metrics = dir / "metrics.jsonl";
  int evaluations = 0;
  JobHooks hooks;
  hooks.on_eval = [&](const Metrics&) { ++evaluations; };
  const JobResult r = run_job(s, hooks);
  EXPECT_TRUE(r.chief);
  EXPECT_EQ(r.train.global_step, 8);
  EXPECT_EQ(evaluations, 2);
  EXPECT_EQ(r.version, 1);
  EXPECT_TRUE(fs::exists(r.exported / io::kModelFileName));
  EXPECT_TRUE(fs::exists(dir / "model" / "checkpoints" / "checkpoint-2.strand"));
  std::ifstream metrics(s.metrics);
  int lines = 0;
  for (std::string line; std::getline(metrics, line);) ++lines;
  EXPECT_EQ(lines, 2);
  EXPECT_GT(r.final_eval.accuracy, 0.5);
  fs::remove_all(dir);
}

// The export carries batchnorm's running statistics: a model rebuilt from it evaluates exactly
// as the job's final evaluation did, and the statistics have moved from their initial values.
TEST(RunJob, BatchNormStatisticsTravelInTheExport) {
  const fs::path dir = fs::temp_directory_path() / ("strand-job-bn-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "data");
  write_idx(dir / "data", "train", 200);
  write_idx(dir / "data", "t10k", 50);
  JobSpec s = spec_in(dir);
  s.model = models::builtin("mnist_bn");
  s.train.epochs = 1;
  s.train.batch_size = 50;
  const JobResult r = run_job(s, {});
  const io::ModelFile exported = io::load_export(dir / "model");
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), exported.arch);
  ASSERT_LT(m.trainable_count(), m.param_count()) << "mnist_bn has no running statistics";
  Model fresh(ctx.backend(), exported.arch);
  fresh.init(1);
  const std::vector<float> initial = fresh.get_params();
  EXPECT_FALSE(std::equal(exported.params.begin() + m.trainable_count(), exported.params.end(),
                          initial.begin() + m.trainable_count()))
      << "the exported running statistics are the initial ones";
  m.set_params(exported.params);
  const EvalResult e = evaluate(m, io::load_data_split(dir / "data", io::Split::eval));
  EXPECT_EQ(e.accuracy, r.final_eval.accuracy);
  EXPECT_EQ(e.loss, r.final_eval.loss);
  fs::remove_all(dir);
}

// n colour images, 32x32, channels-last uint8 ([n,32,32,3]): class k is a shape (k / 5: a
// filled square or a hollow ring) in a colour (k % 5) at a random place on a noisy background,
// so the class needs both the channels and the spatial layout.
struct ColourSet {
  std::vector<uint8_t> nhwc;
  std::vector<int32_t> labels;
};
ColourSet colour_shapes(int64_t n, uint64_t seed) {
  static constexpr uint8_t kColours[5][3] = {
      {230, 40, 40}, {40, 230, 40}, {40, 40, 230}, {230, 230, 40}, {40, 230, 230}};
  ColourSet s{std::vector<uint8_t>(size_t(n * 32 * 32 * 3)), std::vector<int32_t>(size_t(n))};
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t r = mix64(seed ^ mix64(uint64_t(i)));
    const int32_t k = int32_t(r % 10);
    s.labels[size_t(i)] = k;
    const int64_t top = int64_t((r >> 8) % 20), left = int64_t((r >> 16) % 20);  // a 12x12 box
    for (int64_t y = 0; y < 32; ++y)
      for (int64_t x = 0; x < 32; ++x) {
        const bool in_box = y >= top && y < top + 12 && x >= left && x < left + 12;
        const bool edge = y < top + 3 || y >= top + 9 || x < left + 3 || x >= left + 9;
        const bool lit = in_box && (k / 5 == 0 || edge);
        for (int64_t c = 0; c < 3; ++c) {
          const uint8_t noise = uint8_t(mix64(r + uint64_t((y * 32 + x) * 3 + c)) % 60);
          s.nhwc[size_t(((i * 32 + y) * 32 + x) * 3 + c)] =
              lit ? uint8_t(kColours[k % 5][c] - noise / 2) : noise;
        }
      }
  }
  return s;
}

// NCHW float32 in [0,1]: what the uint8 set stands for (v / 255), channels first.
std::vector<float> to_nchw_f32(const std::vector<uint8_t>& nhwc, int64_t n) {
  std::vector<float> out(nhwc.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t p = 0; p < 32 * 32; ++p)
        out[size_t((i * 3 + c) * 1024 + p)] = u8_pixel(nhwc[size_t((i * 1024 + p) * 3 + c)]);
  return out;
}

// A model file's network trains on a 3-channel 32x32 ten-class set to >= 95% from NHWC uint8
// .npy files and from NCHW float32 ones; the two stand for the same pixels, so the runs agree
// bit for bit (the layout is told apart from the shape alone).
TEST(RunJob, ColourImagesFromNhwcUint8AndNchwFloat32) {
  const fs::path dir = fs::temp_directory_path() / ("strand-job-colour-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const int64_t n_train = 3000, n_eval = 500;
  const ColourSet train = colour_shapes(n_train, 1), eval = colour_shapes(n_eval, 2);
  for (const char* d : {"u8", "f32"}) fs::create_directories(dir / d / "data");
  io::write_npy(dir / "u8/data/train_data.npy", Shape{n_train, 32, 32, 3}, train.nhwc.data());
  io::write_npy(dir / "u8/data/eval_data.npy", Shape{n_eval, 32, 32, 3}, eval.nhwc.data());
  io::write_npy(dir / "f32/data/train_data.npy", Shape{n_train, 3, 32, 32},
                to_nchw_f32(train.nhwc, n_train).data());
  io::write_npy(dir / "f32/data/eval_data.npy", Shape{n_eval, 3, 32, 32},
                to_nchw_f32(eval.nhwc, n_eval).data());
  for (const char* d : {"u8", "f32"}) {
    io::write_npy(dir / d / "data/train_labels.npy", Shape{n_train}, train.labels.data());
    io::write_npy(dir / d / "data/eval_labels.npy", Shape{n_eval}, eval.labels.data());
  }
  const models::ModelSpec model = models::parse_model_json(R"({
    "name": "colour", "input": [3, 32, 32],
    "layers": [
      {"type": "conv2d", "filters": 16, "kernel": 3, "stride": 2, "padding": "same", "bias": false},
      {"type": "batchnorm", "momentum": 0.9}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
      {"type": "conv2d", "filters": 32, "kernel": 3, "padding": "same"}, {"type": "relu"},
      {"type": "maxpool", "kernel": 2}, {"type": "flatten"}, {"type": "dense", "units": "classes"}
    ]})",
                                                           "colour.json");
  std::vector<JobResult> results;
  for (const char* d : {"u8", "f32"}) {
    JobSpec s = spec_in(dir / d);
    s.model = model;
    s.train.epochs = 4;
    s.train.batch_size = 50;
    results.push_back(run_job(s, {}));
    EXPECT_GE(results.back().final_eval.accuracy, 0.95) << d;
  }
  EXPECT_EQ(results[0].final_eval.accuracy, results[1].final_eval.accuracy);
  EXPECT_EQ(io::load_export(dir / "u8/model").params, io::load_export(dir / "f32/model").params)
      << "uint8 NHWC and float32 NCHW files of the same pixels trained differently";
  fs::remove_all(dir);
}

}  // namespace
}  // namespace strand::job
