#include "apps/common.hpp"

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <sched.h>

#include "core/error.hpp"

namespace strand::cli {

int default_threads() {
  // Respect an affinity mask (taskset, mpirun binding) rather than counting every core.
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return 1;
}

std::filesystem::path default_mnist_cache() {
  if (const char* c = std::getenv("STRAND_CACHE"); c && *c) return std::filesystem::path(c) / "mnist";
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home && *home ? home : "/tmp") / ".cache" / "strand" / "mnist";
}

Context make_context(const DeviceArgs& d, int threads, Identity id) {
  STRAND_CHECK(threads >= 1, Usage, "--threads must be at least 1", "strand");
  Context ctx(make_backend(parse_device(d.device), threads, CudaOptions{.tf32 = d.tf32, .graphs = d.graphs, .cudnn_benchmark = d.cudnn_benchmark}),
              std::move(id));
  if (d.device != "cpu") {
    ctx.log("running on " + d.device + (d.tf32 ? " with TF32 math" : "") +
            (d.cudnn_benchmark ? ", timed cuDNN algorithm choice" : ""));
  }
  return ctx;
}

void add_device_options(CLI::App& cmd, DeviceArgs& d) {
  cmd.add_option("--device", d.device, "cpu, cuda (GPU 0) or cuda:N")->capture_default_str();
  cmd.add_flag("--tf32", d.tf32, "GPU: let convolutions and matrix products use TF32 tensor cores "
                                 "(faster at large batches, ~1e-3 relative error)");
  cmd.add_flag("--cudnn-benchmark", d.cudnn_benchmark,
               "GPU: time cuDNN's convolution algorithms once per shape and keep the fastest, "
               "deterministic or not (like torch.backends.cudnn.benchmark); without it cuDNN's "
               "heuristics pick deterministic algorithms, the same every run");
}

namespace {
// "data DIR (LAYOUT layout): WHAT, read in N ms", timed from `t0`.
void log_loaded(const Context& ctx, const std::filesystem::path& dir, const std::string& layout,
                const std::string& what, std::chrono::steady_clock::time_point t0) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  ctx.log("data " + dir.string() + " (" + layout + " layout): " + what + ", read in " + std::to_string(ms.count()) +
          " ms");
}
}  // namespace

io::Dataset load_split(const Context& ctx, const std::filesystem::path& dir, io::MnistSplit split) {
  const auto t0 = std::chrono::steady_clock::now();
  std::string layout;
  io::Dataset d = io::load_mnist_split(dir, split, &layout);
  log_loaded(ctx, dir, layout,
             std::to_string(d.size()) + (split == io::MnistSplit::train ? " train" : " test") + " images", t0);
  return d;
}

io::MnistSplits load_data(const Context& ctx, const std::filesystem::path& dir) {
  const auto t0 = std::chrono::steady_clock::now();
  io::MnistSplits s = io::load_mnist_dir(dir);
  log_loaded(ctx, dir, s.layout,
             std::to_string(s.train.size()) + " train, " + std::to_string(s.eval.size()) + " test images", t0);
  return s;
}

void abort_job_on_error(const allreduce::MpiRuntime& mpi, const std::exception& e) {
  if (mpi.world_size() <= 1) return;
  const auto* se = dynamic_cast<const Error*>(&e);
  std::cerr << "strand: " << e.what() << std::endl;
  mpi.abort(se && se->kind() == ErrorKind::Usage ? 2 : 1);
}

}  // namespace strand::cli
