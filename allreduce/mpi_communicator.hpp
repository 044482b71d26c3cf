// MpiCommunicator: the Communicator for host buffers over MPI (see communicator.hpp for the
// algorithms). Owns its MPI communicators (duplicated from MPI_COMM_WORLD, freed on
// destruction), so several can coexist without their messages mixing.
#pragma once

#include <cstdint>
#include <memory>

#include <strand/allreduce/communicator.hpp>
#include <strand/allreduce/mpi_runtime.hpp>

namespace strand::allreduce {

// Host memory from MpiCommunicator::allocate(): n floats that the communicator's ranks on one
// machine can read and write in each other's processes (an MPI-3 shared window), or plain
// memory where the ranks span hosts. Move-only. Destruction is collective like the
// allocation: every rank destroys its buffers in the same order. The communicator's
// destruction frees the shared windows still allocated; data() is null from then on.
class SharedBuffer {
 public:
  SharedBuffer(SharedBuffer&&) noexcept;
  SharedBuffer& operator=(SharedBuffer&&) noexcept;
  ~SharedBuffer();

  float* data() const;
  int64_t size() const;

  struct Impl;

 private:
  friend class MpiCommunicator;
  explicit SharedBuffer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class MpiCommunicator final : public Communicator {
 public:
  // Collective: every rank of MPI_COMM_WORLD constructs one with the same options. Usage
  // error for a timeout or stall warning that is not positive.
  MpiCommunicator(const MpiRuntime& runtime, CommOptions options);
  ~MpiCommunicator() override;

  std::string name() const override { return std::string(to_string(options_.algorithm)); }
  int rank() const override;
  int size() const override;
  const std::string& host() const override;
  // Ranks on this host and this rank's index among them (by world rank). Hosts are the
  // machines the launcher placed the ranks on (MPI_COMM_TYPE_SHARED), not host names: two
  // machines with one name are two hosts; a name (STRAND_HOST) splits one machine further.
  int local_rank() const;
  int local_size() const;
  int host_count() const;
  // Machines, as the launcher placed the ranks (host_count() without the split by name).
  int node_count() const;
  const CommOptions& options() const { return options_; }
  // World rank of this host's leader (its lowest rank).
  int leader_rank() const;

  // In place, through the algorithm chosen in CommOptions. When all ranks share one machine
  // and every rank passes a range of a buffer from allocate() (ranges of at least
  // kZeroCopyMinBytes), ring and hierarchical copy nothing: each rank sums its share of the
  // range straight from every rank's buffer, in rank order, and writes the sum into all of
  // them. Other buffers go through the ring's shared-memory slots.
  void allreduce_sum(float* data, int64_t n) override;
  // From this size on, every call (heap buffers too) first runs the handshake that compares
  // the ranks' buffers; below it that handshake would be a visible share of a 1-2 us ring.
  static constexpr int64_t kZeroCopyMinBytes = 64 << 10;
  // Collective: every rank calls it with the same n, in the same order as its other
  // allocate() calls on this communicator (like MPI_Alloc_mem or NCCL's buffer registration).
  // Zero-initialised.
  SharedBuffer allocate(int64_t n);
  // Whether allocate() gives shared windows: every rank shares this machine's memory (and
  // CommOptions::shared_memory is on). Otherwise it gives plain memory.
  bool shares_buffers() const;
  // allreduce_sum() calls so far that reduced shared buffers in place (without the ring).
  int64_t in_place_allreduces() const { return in_place_; }
  void broadcast(void* data, size_t bytes, int root) override;
  std::vector<double> allgather(double value) override;
  std::vector<std::string> gather_to_root(const std::string& text) override;

  struct Groups;  // the MPI communicators: world, this host, host leaders

 private:
  CommOptions options_;
  std::unique_ptr<Groups> groups_;
  std::vector<float> scratch_;
  int64_t in_place_ = 0;
};

}  // namespace strand::allreduce
