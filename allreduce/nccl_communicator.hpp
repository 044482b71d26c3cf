// NcclCommunicator: the Communicator for CUDA device buffers. allreduce_sum() runs
// ncclAllReduce on its own stream of GPU `device`; the NCCL unique id travels from rank 0 over
// an MPI communicator, which also carries broadcasts, allgathers and gathers (host memory).
// Built when meson finds CUDA (nccl.cpp); otherwise constructing one throws a Usage error
// saying strand was built without NCCL (no_nccl.cpp).
#pragma once

#include <memory>

#include <strand/allreduce/mpi_communicator.hpp>

namespace strand::allreduce {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over every rank of `host_comm`; one GPU per rank. Waits honour
  // host_comm's timeout: a stalled allreduce aborts the NCCL communicator and throws Timeout.
  NcclCommunicator(MpiCommunicator& host_comm, int device, double timeout_s);
  ~NcclCommunicator() override;

  std::string name() const override { return "nccl"; }
  bool reduces_device_buffers() const override { return true; }
  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  const std::string& host() const override { return host_.host(); }

  void allreduce_sum(float* device_data, int64_t n) override;
  void allreduce_mean(float* device_data, int64_t n) override;
  void broadcast(void* data, size_t bytes, int root) override { host_.broadcast(data, bytes, root); }
  std::vector<double> allgather(double value) override { return host_.allgather(value); }
  std::vector<std::string> gather_to_root(const std::string& text) override {
    return host_.gather_to_root(text);
  }

  struct State;  // NCCL and CUDA handles

 private:
  void reduce(float* device_data, int64_t n, int op);  // op: an ncclRedOp_t
  MpiCommunicator& host_;
  std::unique_ptr<State> state_;
};

// Whether this build has NCCL.
bool nccl_built();

}  // namespace strand::allreduce
