// NcclCommunicator: the Communicator for CUDA device buffers. Flat: one NCCL communicator over
// every rank. Hierarchical: one within each host (ranks grouped by host name, as
// MpiCommunicator groups them) and one among the hosts' leaders; a mean is a reduce to the
// leader (each rank's values pre-scaled by 1/size), an allreduce among the leaders, a broadcast
// within the host, all queued in order on one stream. The NCCL unique ids travel over an MPI
// communicator, which also carries broadcasts, allgathers and gathers (host memory).
//
// Collectives run on a stream: allreduce_sum()/allreduce_mean() on the communicator's own and
// wait for it; queue_allreduce_mean() on a Lane's (beside the backend's kernels, recordable
// into a CUDA graph) and returns, wait() then waiting for a mark of that lane. Every wait polls
// with the timeout: past it the NCCL communicators are aborted (which frees the device from
// kernels waiting for a peer) and a roll call over the MPI communicator names the rank that
// did not answer.
//
// Built when meson finds CUDA (nccl.cpp); otherwise constructing one throws a Usage error
// saying strand was built without NCCL (no_nccl.cpp).
#pragma once

#include <functional>
#include <memory>

#include <strand/allreduce/mpi_communicator.hpp>

namespace strand::allreduce {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over every rank of `host_comm`, GPU `device` for this rank. Two ranks on one GPU
  // need NCCL to see them as different hosts (a distinct NCCL_HOSTID each); initialisation
  // errors say so.
  NcclCommunicator(MpiCommunicator& host_comm, int device, double timeout_s, bool hierarchical = false);
  ~NcclCommunicator() override;

  std::string name() const override { return hierarchical_ ? "nccl-hierarchical" : "nccl"; }
  bool reduces_device_buffers() const override { return true; }
  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  const std::string& host() const override { return host_.host(); }

  void allreduce_sum(float* device_data, int64_t n) override;
  void allreduce_mean(float* device_data, int64_t n) override;
  void queue_allreduce_mean(Lane& lane, float* device_data, int64_t n) override;
  void wait(Lane& lane, int64_t mark) override;
  void broadcast(void* data, size_t bytes, int root) override { host_.broadcast(data, bytes, root); }
  std::vector<double> allgather(double value) override { return host_.allgather(value); }
  std::vector<std::string> gather_to_root(const std::string& text) override {
    return host_.gather_to_root(text);
  }

  struct State;  // NCCL and CUDA handles

 private:
  bool poll_stream(void* stream);  // a cudaStream_t: whether its work has finished
  // Polls `done` within the timeout; past it aborts NCCL and throws Timeout after a roll call.
  void wait_for(const std::function<bool()>& done);

  MpiCommunicator& host_;
  bool hierarchical_;
  std::unique_ptr<State> state_;
};

// Whether this build has NCCL.
bool nccl_built();

}  // namespace strand::allreduce
