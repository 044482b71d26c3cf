// strand's allreduce module: what data-parallel training needs to move between processes.
//
//   Communicator       the interface: in-place sum over all ranks, broadcast from a root,
//                      allgather of a number (metrics), gather of a string (timelines)
//   MpiCommunicator    host (CPU) buffers over MPI, three allreduce algorithms:
//                        ring         our chunked, pipelined ring (reduce-scatter + allgather)
//                                     over MPI point-to-point; between ranks that share a
//                                     machine's memory, through an MPI-3 shared window, and
//                                     buffers from MpiCommunicator::allocate() are reduced
//                                     in place there, without the ring's copies
//                        hierarchical ranks grouped by host name: reduce within each host, ring
//                                     among one leader per host, broadcast within each host
//                        mpi          MPI's own allreduce (the baseline)
//   NcclCommunicator   device (CUDA) buffers through NCCL (nccl_communicator.hpp), flat or
//                      hierarchical (within hosts, then across one leader per host); its
//                      collectives can be queued on a Lane (core/backend.hpp) beside backward
//   MpiRuntime         MPI's lifetime, owned by main() or a test (mpi_runtime.hpp)
//   AllreduceStrategy  train/strategy.hpp's Strategy: gradient buckets reduced by a background
//                      thread while backward runs (strategy.hpp)
//
// MpiCommunicator is composed of the module's internal parts (not installed): Group
// (group.hpp, deadline-polled messages), ShmChannel (shm_channel.hpp, the shared-memory ring
// link), SharedReduce (shared_reduce.hpp, in-place reduction of allocate()'s buffers), Ring
// (ring.hpp) and hierarchical_allreduce (hierarchical.hpp).
//
// Failures: every wait polls with a deadline. A peer that sends nothing for
// CommOptions::timeout_s makes this rank throw Error(Timeout) naming the peer's rank and host;
// after stall_warning_s it logs which ranks it is still waiting for.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace strand {
class Lane;  // core/backend.hpp
}

namespace strand::allreduce {

// MpiCommunicator's allreduce algorithms over host memory (above), and NcclCommunicator's
// over device memory, flat or hierarchical.
enum class Algorithm { Ring, Hierarchical, Mpi, Nccl, NcclHierarchical };
// "ring", "hierarchical", "mpi", "nccl" or "nccl-hierarchical"; Error(Usage) naming the text
// and the choices otherwise.
Algorithm parse_algorithm(std::string_view text);
std::string_view to_string(Algorithm algorithm);
// Whether the algorithm reduces device (GPU) memory: NCCL's.
inline bool on_device(Algorithm a) { return a == Algorithm::Nccl || a == Algorithm::NcclHierarchical; }

struct CommOptions {
  Algorithm algorithm = Algorithm::Ring;
  double timeout_s = 45;        // a peer silent this long has died or hangs
  double stall_warning_s = 10;  // then log the ranks not yet heard from
  // Unit of the ring's pipeline over MPI messages: large enough to amortise a message (over
  // TCP, 1 MiB beat 256 KiB), small enough that reducing one chunk overlaps the transfer of
  // the next. The shared-memory path uses 256 KiB slots of its own.
  size_t chunk_bytes = 1 << 20;
  // Ranks that share a machine's memory exchange ring chunks through a shared-memory window
  // instead of MPI messages (ring, and the hierarchical algorithm's in-host reduction).
  bool shared_memory = true;
  std::function<void(std::string_view)> log;  // stall warnings; stderr when empty
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string name() const = 0;  // "ring", "hierarchical", "mpi", "nccl": for log lines
  // Whether allreduce_sum() takes device (GPU) memory rather than host memory.
  virtual bool reduces_device_buffers() const { return false; }
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const std::string& host() const = 0;
  // "rank 1/4 host-a", for error locations and log lines.
  std::string where() const;

  // data[0, n) becomes the element-wise sum over all ranks, the same bits on every rank.
  // Host memory for MPI communicators, device memory for NCCL.
  virtual void allreduce_sum(float* data, int64_t n) = 0;
  // The element-wise mean: the sum scaled by 1/size() (exact for power-of-two sizes); NCCL
  // averages on the device.
  virtual void allreduce_mean(float* data, int64_t n);
  // Device collectives (communicators that reduce device buffers; a Usage error on others):
  // data[0, n) becomes the mean over the ranks, queued on `lane` behind the lane's earlier work;
  // returns at once, also inside a recorded step (CUDA graph).
  virtual void queue_allreduce_mean(Lane& lane, float* data, int64_t n);
  // Outside a step: waits until the device has passed `mark` of `lane`. A rank that has died or
  // hangs inside a queued collective ends the wait after the timeout with Error(Timeout)
  // naming it.
  virtual void wait(Lane& lane, int64_t mark);
  // bytes of `data` on `root` are copied to every rank (host memory).
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  // Every rank's value, in rank order.
  virtual std::vector<double> allgather(double value) = 0;
  // Rank 0 receives every rank's string in rank order; other ranks get an empty vector.
  virtual std::vector<std::string> gather_to_root(const std::string& text) = 0;

  double sum(double value);
};

}  // namespace strand::allreduce
