// Small helpers the CLI's commands share.
#pragma once

#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>

#include <strand/allreduce/mpi_runtime.hpp>
#include <strand/core/context.hpp>
#include <strand/io/dataset.hpp>
#include <strand/job/job.hpp>

namespace strand::cli {

int default_threads();                        // the cores this process may use
std::filesystem::path default_mnist_cache();  // ${STRAND_CACHE:-~/.cache/strand}/mnist
// Where a command runs: --device (parsed once, by parse_device), --tf32, --cudnn-benchmark.
struct DeviceArgs {
  Device device;
  bool tf32 = false;
  bool cudnn_benchmark = false;
  bool graphs = true;
};
// A context on `device` (threads apply to the CPU), logging to stderr.
Context make_context(const DeviceArgs& device, int threads, Identity id = {});
// Registers --device, --tf32, --cudnn-benchmark and --no-cuda-graphs on a command.
void add_device_options(CLI::App& cmd, DeviceArgs& device);
using job::load_data;
using job::load_split;
// A command of a multi-rank job that failed: print the error and end the whole job now
// (MPI_Abort; exit code 2 for a usage error, else 1), since peers blocked in a collective would
// otherwise wait for their own timeouts. Returns for a single rank, to rethrow as usual.
void abort_job_on_error(const allreduce::MpiRuntime& mpi, const std::exception& e);

}  // namespace strand::cli
