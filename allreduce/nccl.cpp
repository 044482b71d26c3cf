// NcclCommunicator with NCCL (built when meson finds CUDA).
#include <cuda_runtime.h>
#include <nccl.h>
#include <chrono>

#include <strand/allreduce/nccl_communicator.hpp>
#include <strand/core/error.hpp>

// One check macro per status-returning library: NCCL's and the CUDA runtime's codes become a
// strand::Error naming the call, the library's message and the rank/host.
#define STRAND_NCCL_CHECK(call, where)                                                              \
  do {                                                                                              \
    const ncclResult_t strand_nccl_rc_ = (call);                                                    \
    if (strand_nccl_rc_ != ncclSuccess)                                                             \
      throw ::strand::Error(::strand::ErrorKind::Io,                                                \
                            std::string(#call) + " failed: " + ncclGetErrorString(strand_nccl_rc_), \
                            (where));                                                               \
  } while (0)
#define STRAND_CUDART_CHECK(call, where)                                                            \
  do {                                                                                              \
    const cudaError_t strand_cuda_rc_ = (call);                                                     \
    if (strand_cuda_rc_ != cudaSuccess)                                                             \
      throw ::strand::Error(::strand::ErrorKind::Io,                                                \
                            std::string(#call) + " failed: " + cudaGetErrorString(strand_cuda_rc_), \
                            (where));                                                               \
  } while (0)

namespace strand::allreduce {

struct NcclCommunicator::State {
  int device = 0;
  double timeout_s = 45;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  bool aborted = false;
};

bool nccl_built() { return true; }

NcclCommunicator::NcclCommunicator(MpiCommunicator& host_comm, int device, double timeout_s)
    : host_(host_comm), state_(std::make_unique<State>()) {
  const std::string where = host_.where();
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
  STRAND_CHECK(device >= 0 && device < count, Usage,
               "GPU " + std::to_string(device) + " does not exist (" + std::to_string(count) + " visible)",
               where);
  state_->device = device;
  state_->timeout_s = timeout_s;
  STRAND_CUDART_CHECK(cudaSetDevice(device), where);
  STRAND_CUDART_CHECK(cudaStreamCreateWithFlags(&state_->stream, cudaStreamNonBlocking), where);
  ncclUniqueId id{};
  if (host_.rank() == 0) STRAND_NCCL_CHECK(ncclGetUniqueId(&id), where);
  host_.broadcast(&id, sizeof id, 0);
  STRAND_NCCL_CHECK(ncclCommInitRank(&state_->comm, host_.size(), id, host_.rank()), where);
}

NcclCommunicator::~NcclCommunicator() {
  if (state_->comm) {
    if (state_->aborted) {
      ncclCommAbort(state_->comm);
    } else {
      ncclCommDestroy(state_->comm);
    }
  }
  if (state_->stream) cudaStreamDestroy(state_->stream);
}

void NcclCommunicator::allreduce_sum(float* data, int64_t n) { reduce(data, n, ncclSum); }
void NcclCommunicator::allreduce_mean(float* data, int64_t n) { reduce(data, n, ncclAvg); }

void NcclCommunicator::reduce(float* data, int64_t n, int op) {
  const std::string where = host_.where();
  if (n == 0) return;
  STRAND_CUDART_CHECK(cudaSetDevice(state_->device), where);
  STRAND_NCCL_CHECK(
      ncclAllReduce(data, data, size_t(n), ncclFloat, ncclRedOp_t(op), state_->comm, state_->stream), where);
  // Poll instead of cudaStreamSynchronize, so a dead peer cannot hang this rank forever.
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    const cudaError_t q = cudaStreamQuery(state_->stream);
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady) STRAND_CUDART_CHECK(q, where);
    ncclResult_t async = ncclSuccess;
    STRAND_NCCL_CHECK(ncclCommGetAsyncError(state_->comm, &async), where);
    STRAND_NCCL_CHECK(async, where);
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > state_->timeout_s) {
      state_->aborted = true;
      throw Error(ErrorKind::Timeout,
                  "ncclAllReduce of " + std::to_string(n) + " floats did not finish in " +
                      std::to_string(int(state_->timeout_s)) + " s: a rank has died or hangs",
                  where);
    }
  }
}

}  // namespace strand::allreduce
