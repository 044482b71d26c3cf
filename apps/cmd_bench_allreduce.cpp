// strand bench allreduce (under mpirun): allreduce time and bandwidth per algorithm and size,
// as nccl-tests reports them: algbw = bytes / time, busbw = algbw * 2(n-1)/n (the bytes each
// rank's link carries in a bandwidth-optimal allreduce, so the figure is comparable across
// rank counts). Algorithms: our ring and hierarchical, `ring-p2p` = our ring forced onto MPI
// point-to-point between ranks of one host (ring uses shared memory there), `mpi` =
// MPI_Allreduce itself (blocking, the baseline), `mpi-nb` = what `strand train --allreduce mpi`
// runs (MPI_Iallreduce polled with a deadline). Buffers (`--buffer`): `heap` = ordinary memory
// (std::vector), what a caller's own buffer gets; `shared` = each algorithm's buffer comes from
// its communicator's allocate() (an MPI-3 shared window, like MPI_Alloc_mem / NCCL buffer
// registration), which ring and hierarchical reduce without copies when all ranks share one
// machine. With `--device cuda` the buffers are GPU memory (the GPU of the rank's local rank
// modulo the GPUs shown; `cuda:N`: GPU N for every rank):
// `nccl` / `nccl-hierarchical` = NcclCommunicator on them, `staged-ring` /
// `staged-hierarchical` = what training's host algorithms do with GPU gradients (download to
// pinned memory through a Stage, our ring or hierarchical allreduce there, upload, and wait for
// the device), each timed for the whole round trip.
#include <mpi.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include <strand/allreduce/mpi_communicator.hpp>
#include <strand/allreduce/nccl_communicator.hpp>
#include <strand/core/backend.hpp>
#include <strand/core/error.hpp>
#include <strand/io/record.hpp>
#include "apps/commands.hpp"
#include "apps/common.hpp"

namespace strand::cli {

namespace {

const std::vector<std::string> kHostImpls{"ring", "hierarchical", "mpi", "ring-p2p", "mpi-nb"};
const std::vector<std::string> kDeviceImpls{"nccl", "nccl-hierarchical", "staged-ring",
                                            "staged-hierarchical"};
bool on_device(const std::string& impl) {
  return std::find(kDeviceImpls.begin(), kDeviceImpls.end(), impl) != kDeviceImpls.end();
}

struct AllreduceBenchArgs {
  std::vector<std::string> impls{"ring", "hierarchical", "mpi"};
  bool impls_given = false;  // else a GPU run takes nccl and staged-ring
  Device device;
  int64_t min_bytes = 4 << 10, max_bytes = int64_t(256) << 20, factor = 4;
  double seconds = 0.3;  // time budget per size and algorithm (3 rounds of at least 2 iterations)
  double chunk_kib = 1024;
  std::string buffer = "heap";
  bool memcpy_baseline = false, json = false;
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Single-core memcpy bandwidth at `bytes` (read + write counted once, like an allreduce's bytes).
double memcpy_seconds(size_t bytes, int iterations) {
  std::vector<char> a(bytes, 1), b(bytes, 2);
  std::memcpy(b.data(), a.data(), bytes);
  const auto t0 = Clock::now();
  for (int i = 0; i < iterations; ++i) {
    std::memcpy((i % 2 ? a : b).data(), (i % 2 ? b : a).data(), bytes);
  }
  return seconds_since(t0) / iterations;
}

struct Row {
  std::string impl, buffer, device;
  int64_t bytes;
  int ranks;
  double time_us;
  bool in_place = false;  // the allreduces of this row reduced shared buffers in place
};

// The GPU's part of one algorithm: its device buffer, the NCCL communicator or the stage.
struct DeviceSide {
  Buffer data;
  std::unique_ptr<allreduce::NcclCommunicator> nccl;
  std::unique_ptr<Stage> stage;
};

void check_impls(const AllreduceBenchArgs& a) {
  const std::string where = "strand bench allreduce";
  for (const std::string& impl : a.impls) {
    STRAND_CHECK(!on_device(impl) || !a.device.is_cpu(), Usage,
                 "--impl " + impl + " reduces GPU memory: it needs --device cuda", where);
    STRAND_CHECK(on_device(impl) || a.device.is_cpu(), Usage,
                 "--impl " + impl + " reduces host memory; with --device " + a.device.str() +
                     " choose among nccl, nccl-hierarchical, staged-ring, staged-hierarchical",
                 where);
  }
  STRAND_CHECK(a.device.is_cpu() || (a.buffer == "heap" && !a.memcpy_baseline), Usage,
               "--buffer shared and --memcpy are for host memory (--device cpu)", where);
}

void run_bench_allreduce(AllreduceBenchArgs a) {
  STRAND_CHECK(a.min_bytes >= 4 && a.min_bytes <= a.max_bytes && a.factor >= 2, Usage,
               "need 4 <= --min-bytes <= --max-bytes and --factor >= 2", "strand bench allreduce");
  if (!a.device.is_cpu() && !a.impls_given) a.impls = {"nccl", "staged-ring"};
  check_impls(a);
  allreduce::MpiRuntime mpi(nullptr, nullptr);
  // Outside the try: on an error the job is aborted before their (collective) destruction.
  std::vector<std::unique_ptr<allreduce::MpiCommunicator>> comms;
  std::unique_ptr<Backend> gpu;
  std::vector<DeviceSide> device;  // per algorithm, with a GPU
  try {
    std::vector<Row> rows;
    const int me = mpi.world_rank(), p = mpi.world_size();
    // The memcpy baseline is timed in the same rounds as the algorithms at its size when that
    // size is measured (so a load change on the shared machine hits both), else up front.
    constexpr int64_t kMemcpyBytes = 64 << 20;
    bool memcpy_in_rounds = false;
    for (int64_t b = a.min_bytes; b <= a.max_bytes; b *= a.factor) memcpy_in_rounds |= b == kMemcpyBytes;
    double memcpy_best = 1e30;
    if (a.memcpy_baseline && !memcpy_in_rounds && me == 0) memcpy_best = memcpy_seconds(kMemcpyBytes, 20);
    // One communicator per algorithm, all alive at once: each size is timed for every
    // algorithm in alternating rounds (the best round counts), so a shared machine's load
    // changes hit the algorithms alike.
    for (const std::string& impl : a.impls) {
      allreduce::CommOptions o;
      // The host algorithm behind each impl; "mpi" calls MPI_Allreduce itself, NCCL's
      // communicator keeps a ring for its ids and the timing's barriers.
      const bool hierarchical = impl == "hierarchical" || impl == "staged-hierarchical";
      o.algorithm = impl == "mpi-nb" ? allreduce::Algorithm::Mpi
                    : hierarchical   ? allreduce::Algorithm::Hierarchical
                                     : allreduce::Algorithm::Ring;
      o.shared_memory = impl != "ring-p2p";
      o.chunk_bytes = size_t(a.chunk_kib * 1024);
      comms.push_back(std::make_unique<allreduce::MpiCommunicator>(mpi, o));
    }
    // One buffer per algorithm: a shared buffer is reduced without copies only by the
    // communicator that allocated it. With a GPU the host buffer is where values are written and
    // checked, the device buffer what is reduced.
    const size_t max_n = size_t(a.max_bytes / 4);
    Device dev = a.device;
    if (!dev.is_cpu()) {
      // Checked here, not left to the backend: the local rank below is taken modulo the count.
      const int count = cuda_device_count();
      STRAND_CHECK(count > 0, Usage,
                   cuda_built() ? "no CUDA GPU is visible (no NVIDIA driver or no device)"
                                : "this strand was built without CUDA",
                   "--device " + a.device.str() + ", " + comms.front()->where());
      // cuda: one GPU per rank, wrapping round on a host with more ranks than GPUs (staged-*
      // can share one; NCCL refuses two ranks on one GPU). cuda:N: GPU N for every rank.
      dev = dev.resolved(comms.front()->local_rank() % count);
      gpu = make_backend(dev, 1);
      for (size_t k = 0; k < a.impls.size(); ++k) {
        DeviceSide d;
        d.data = gpu->alloc(max_n * sizeof(float));
        if (a.impls[k].starts_with("nccl"))
          d.nccl = std::make_unique<allreduce::NcclCommunicator>(
              *comms[k], dev.index, comms[k]->options().timeout_s, a.impls[k] == "nccl-hierarchical");
        else
          d.stage = gpu->make_stage(int64_t(max_n));
        device.push_back(std::move(d));
      }
    }
    std::vector<std::vector<float>> heap;
    std::vector<allreduce::SharedBuffer> shared;
    std::vector<float*> buffers;
    for (auto& c : comms) {
      if (a.buffer == "shared") {
        shared.push_back(c->allocate(int64_t(max_n)));
        buffers.push_back(shared.back().data());
      } else {
        heap.emplace_back(max_n);
        buffers.push_back(heap.back().data());
      }
    }
    allreduce::MpiCommunicator& control = *comms.front();
    const int hosts = control.host_count();
    std::vector<bool> blocking_mpi;  // impl "mpi": MPI_Allreduce itself, not a communicator
    for (const std::string& impl : a.impls) blocking_mpi.push_back(impl == "mpi");
    auto allreduce = [&](size_t k, int64_t n) {
      if (!device.empty()) {
        DeviceSide& d = device[k];
        if (d.nccl) {
          d.nccl->allreduce_sum(d.data.f32(), n);
          return;
        }
        d.stage->wait(d.stage->download(d.data.f32(), 0, n));
        comms[k]->allreduce_sum(d.stage->host(), n);
        d.stage->upload(d.data.f32(), 0, n);
        d.stage->join();
        gpu->synchronize();
      } else if (blocking_mpi[k]) {
        STRAND_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buffers[k], int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
                         control.where());
      } else {
        comms[k]->allreduce_sum(buffers[k], n);
      }
    };
    constexpr int kRounds = 3;
    for (int64_t bytes = a.min_bytes; bytes <= a.max_bytes; bytes *= a.factor) {
      const int64_t n = bytes / 4;
      std::vector<double> best(a.impls.size(), 1e30);
      std::vector<int64_t> in_place_before;
      for (auto& c : comms) in_place_before.push_back(c->in_place_allreduces());
      for (size_t k = 0; k < a.impls.size(); ++k) {
        // Integer-valued data: the first result is checked exactly.
        float* data = buffers[k];
        for (int64_t i = 0; i < n; ++i) data[i] = float((i + me) % 64);
        if (!device.empty()) gpu->to_device(device[k].data.data(), data, size_t(n) * sizeof(float));
        allreduce(k, n);
        if (!device.empty()) gpu->to_host(data, device[k].data.data(), size_t(n) * sizeof(float));
        for (int64_t i = 0; i < n; i += std::max<int64_t>(1, n / 1000)) {
          int64_t want = 0;
          for (int r = 0; r < p; ++r) want += (i + r) % 64;
          STRAND_CHECK(data[i] == float(want), Internal,
                       a.impls[k] + " allreduce of " + std::to_string(bytes) + " bytes gave a wrong sum at " +
                           std::to_string(i),
                       control.where());
        }
      }
      for (int round = 0; round < kRounds; ++round) {
        for (size_t k = 0; k < a.impls.size(); ++k) {
          // One timed call decides the iteration count, the same on every rank (rank 0's).
          control.allgather(0);
          auto t0 = Clock::now();
          allreduce(k, n);
          double once = seconds_since(t0);
          control.broadcast(&once, sizeof once, 0);
          const int iterations = int(std::clamp(a.seconds / kRounds / std::max(once, 1e-7), 2.0, 1000.0));
          control.allgather(0);
          t0 = Clock::now();
          for (int i = 0; i < iterations; ++i) allreduce(k, n);
          const std::vector<double> all = control.allgather(seconds_since(t0) / iterations);
          best[k] = std::min(best[k], *std::max_element(all.begin(), all.end()));
        }
        if (a.memcpy_baseline && bytes == kMemcpyBytes) {
          control.allgather(0);
          if (me == 0) memcpy_best = std::min(memcpy_best, memcpy_seconds(kMemcpyBytes, 20));
        }
      }
      for (size_t k = 0; k < a.impls.size(); ++k)
        rows.push_back({a.impls[k], dev.is_cpu() ? a.buffer : "device", dev.str(), bytes, p, 1e6 * best[k],
                        comms[k]->in_place_allreduces() > in_place_before[k]});
    }
    if (me != 0) return;
    if (a.memcpy_baseline)
      rows.insert(rows.begin(), {"memcpy", "heap", "cpu", kMemcpyBytes, 1, 1e6 * memcpy_best});
    auto algbw = [](const Row& r) { return double(r.bytes) / (r.time_us * 1e-6) / 1e9; };
    auto busbw = [&](const Row& r) {
      return r.ranks > 1 ? algbw(r) * 2.0 * (r.ranks - 1) / r.ranks : algbw(r);
    };
    if (a.json) {
      nlohmann::json out = nlohmann::json::array();
      for (const Row& r : rows)
        out.push_back({{"impl", r.impl},
                       {"buffer", r.buffer},
                       {"device", r.device},
                       {"in_place", r.in_place},
                       {"bytes", r.bytes},
                       {"ranks", r.ranks},
                       {"time_us", r.time_us},
                       {"algbw_gbps", algbw(r)},
                       {"busbw_gbps", busbw(r)}});
      io::write_record(std::cout, {{"hosts", hosts}, {"rows", out}},
                       io::make_stamp({.on_gpu = !dev.is_cpu()}), 1);
      return;
    }
    std::printf(
        "# strand bench allreduce: %d rank(s) on %d host(s), float32 sum, ring chunk over MPI %.0f KiB\n", p,
        hosts, a.chunk_kib);
    std::printf("# buffers: %s\n",
                !device.empty()
                    ? "GPU memory (cuda: each rank's local rank modulo the GPUs shown; cuda:N: GPU N); "
                      "staged-*: through pinned host memory, timed download to upload"
                : a.buffer == "shared"
                    ? "shared (each algorithm's from its communicator's allocate(), an MPI-3 shared window)"
                    : "heap (std::vector, a caller's ordinary memory)");
    std::printf("# %12s  %-19s  %-7s  %10s  %11s  %11s  %s\n", "size (B)", "impl", "device", "time (us)",
                "algbw GB/s", "busbw GB/s", "in place");
    for (const Row& r : rows)
      std::printf("  %12lld  %-19s  %-7s  %10.1f  %11.3f  %11.3f  %s\n", (long long)r.bytes, r.impl.c_str(),
                  r.device.c_str(), r.time_us, algbw(r), busbw(r),
                  r.impl == "memcpy" || on_device(r.impl) ? "-"  // in place: of shared host buffers
                  : r.in_place                            ? "yes"
                                                          : "no");
  } catch (const std::exception& e) {
    abort_job_on_error(mpi, e);
    throw;
  }
}

}  // namespace

void add_bench_allreduce_command(CLI::App& bench) {
  auto a = std::make_shared<AllreduceBenchArgs>();
  CLI::App* cmd = bench.add_subcommand(
      "allreduce", "Allreduce time and bandwidth per algorithm and size (run under mpirun), like nccl-tests");
  std::vector<std::string> all = kHostImpls;
  all.insert(all.end(), kDeviceImpls.begin(), kDeviceImpls.end());
  cmd->add_option(
         "--impl", a->impls,
         "Algorithms on host memory: ring, hierarchical, mpi (MPI_Allreduce), ring-p2p (ring without shared "
         "memory), mpi-nb (MPI_Iallreduce, as training runs it); on GPU memory (--device cuda, default nccl "
         "staged-ring): nccl, nccl-hierarchical, staged-ring, staged-hierarchical (through pinned memory "
         "into ring / hierarchical)")
      ->check(CLI::IsMember(all))
      ->capture_default_str();
  cmd->add_option_function<std::string>(
         "--device", [a](const std::string& text) { a->device = parse_device(text); },
         "cpu (host buffers) or cuda / cuda:N (GPU buffers; cuda: each rank the GPU of its local rank "
         "modulo the GPUs shown, cuda:N: GPU N for every rank)")
      ->default_str("cpu");
  cmd->add_option("--min-bytes", a->min_bytes, "Smallest buffer")->capture_default_str();
  cmd->add_option("--max-bytes", a->max_bytes, "Largest buffer")->capture_default_str();
  cmd->add_option("--factor", a->factor, "Each size is the previous times this")->capture_default_str();
  cmd->add_option("--seconds", a->seconds, "Time spent per size and algorithm")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--chunk-kib", a->chunk_kib,
                  "Ring pipeline chunk over MPI messages, KiB (shared memory: 256)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option(
         "--buffer", a->buffer,
         "Where the reduced data lives: heap (ordinary memory) or shared (MpiCommunicator::allocate, "
         "reduced without copies between ranks of one machine)")
      ->check(CLI::IsMember({"heap", "shared"}))
      ->capture_default_str();
  cmd->add_flag("--memcpy", a->memcpy_baseline,
                "Also time a single-core memcpy of 64 MiB (row impl \"memcpy\"; in the 64 MiB rounds when "
                "that size is measured)");
  cmd->add_flag(
      "--json", a->json,
      "Print a JSON record: rows of {impl, buffer, device, in_place, bytes, ranks, time_us, algbw_gbps, "
      "busbw_gbps}");
  cmd->callback([a, cmd] {
    a->impls_given = cmd->get_option("--impl")->count() > 0;
    run_bench_allreduce(*a);
  });
}

}  // namespace strand::cli
