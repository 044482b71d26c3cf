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
