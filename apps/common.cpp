#include "apps/common.hpp"

#include <sched.h>
#include <cstdlib>
#include <iostream>

#include <strand/core/error.hpp>

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
  return job::make_context(
      {.device = d.device,
       .cuda = {.tf32 = d.tf32, .graphs = d.graphs, .cudnn_benchmark = d.cudnn_benchmark},
       .threads = threads},
      std::move(id));
}

void add_device_options(CLI::App& cmd, DeviceArgs& d) {
  cmd.add_option_function<std::string>(
         "--device", [&d](const std::string& text) { d.device = parse_device(text); },
         "cpu, cuda (GPU 0) or cuda:N")
      ->default_str("cpu");
  cmd.add_flag("--tf32", d.tf32,
               "GPU: let convolutions and matrix products use TF32 tensor cores "
               "(faster at large batches, ~1e-3 relative error)");
  cmd.add_flag("--cudnn-benchmark", d.cudnn_benchmark,
               "GPU: time cuDNN's convolution algorithms once per shape and keep the fastest, "
               "deterministic or not (like torch.backends.cudnn.benchmark); without it cuDNN's "
               "heuristics pick deterministic algorithms, the same every run");
  cmd.add_flag("!--no-cuda-graphs", d.graphs,
               "GPU: launch each kernel of a training step by itself instead of replaying the step "
               "recorded as a CUDA graph");
}

void abort_job_on_error(const allreduce::MpiRuntime& mpi, const std::exception& e) {
  if (mpi.world_size() <= 1) return;
  const auto* se = dynamic_cast<const Error*>(&e);
  std::cerr << "strand: " << e.what() << std::endl;
  mpi.abort(se && se->kind() == ErrorKind::Usage ? 2 : 1);
}

}  // namespace strand::cli
