// NcclCommunicator in a build without CUDA/NCCL (-Dcuda=disabled, or no nvcc at build time).
#include <strand/allreduce/nccl_communicator.hpp>
#include <strand/core/error.hpp>

namespace strand::allreduce {

struct NcclCommunicator::State {};

bool nccl_built() { return false; }

NcclCommunicator::NcclCommunicator(MpiCommunicator& host_comm, int, double, bool hierarchical)
    : host_(host_comm), hierarchical_(hierarchical) {
  throw Error(
      ErrorKind::Usage,
      "this strand was built without NCCL (rebuild with -Dcuda=enabled where CUDA and NCCL are installed)",
      host_comm.where());
}

NcclCommunicator::~NcclCommunicator() = default;

// Unreachable: the constructor throws.
void NcclCommunicator::allreduce_sum(float*, int64_t) {}
void NcclCommunicator::allreduce_mean(float*, int64_t) {}
void NcclCommunicator::queue_allreduce_mean(Lane&, float*, int64_t) {}
void NcclCommunicator::wait(Lane&, int64_t) {}

}  // namespace strand::allreduce
