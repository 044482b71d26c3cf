// MpiCommunicator: the Communicator for host buffers over MPI (see communicator.hpp for the
// algorithms). Owns its MPI communicators (duplicated from MPI_COMM_WORLD, freed on
// destruction), so several can coexist without their messages mixing.
#pragma once

#include <memory>

#include "allreduce/communicator.hpp"
#include "allreduce/mpi_runtime.hpp"

namespace strand::allreduce {

class MpiCommunicator final : public Communicator {
 public:
  // Collective: every rank of MPI_COMM_WORLD constructs one with the same options. Usage
  // error for an unknown algorithm.
  MpiCommunicator(const MpiRuntime& runtime, CommOptions options);
  ~MpiCommunicator() override;

  std::string name() const override { return options_.algorithm; }
  int rank() const override;
  int size() const override;
  const std::string& host() const override;
  // Ranks on this host and this rank's index among them (by world rank).
  int local_rank() const;
  int local_size() const;
  int host_count() const;

  void allreduce_sum(float* data, int64_t n) override;
  void broadcast(void* data, size_t bytes, int root) override;
  std::vector<double> allgather(double value) override;
  std::vector<std::string> gather_to_root(const std::string& text) override;

  struct Groups;  // the MPI communicators: world, this host, host leaders

 private:
  CommOptions options_;
  std::unique_ptr<Groups> groups_;
  std::vector<float> scratch_;
};

}  // namespace strand::allreduce
