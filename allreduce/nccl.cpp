// NcclCommunicator with NCCL (built when meson finds CUDA).
#include <cuda_runtime.h>
#include <nccl.h>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>
#include <vector>

#include <strand/allreduce/nccl_communicator.hpp>
#include <strand/core/backend.hpp>
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
  float mean_scale = 1;
  cudaStream_t stream = nullptr;  // allreduce_sum/mean's
  // Flat: `world`. Hierarchical: `local` (this host's ranks, the leader as NCCL rank 0) and,
  // on leaders of a multi-host job, `leaders`; `premul` scales by 1/size while it reduces.
  ncclComm_t world = nullptr, local = nullptr, leaders = nullptr;
  ncclRedOp_t premul{};
  bool has_premul = false;

  std::vector<ncclComm_t> comms() const {
    std::vector<ncclComm_t> out;
    for (ncclComm_t c : {world, local, leaders})
      if (c) out.push_back(c);
    return out;
  }
  // After a timeout: frees the device from kernels that wait for a peer.
  void abort() {
    for (ncclComm_t* c : {&world, &local, &leaders})
      if (*c) {
        ncclCommAbort(*c);
        *c = nullptr;
      }
    has_premul = false;
  }
};

bool nccl_built() { return true; }

namespace {

ncclComm_t init_comm(int size, const ncclUniqueId& id, int rank, const std::string& where) {
  ncclComm_t c = nullptr;
  const ncclResult_t rc = ncclCommInitRank(&c, size, id, rank);
  if (rc != ncclSuccess)
    throw Error(ErrorKind::Io,
                std::string("ncclCommInitRank failed: ") + ncclGetErrorString(rc) +
                    " (ranks that share a GPU must look like different hosts to NCCL: give each its own "
                    "NCCL_HOSTID and set NCCL_SOCKET_IFNAME=lo; NCCL_DEBUG=WARN says more)",
                where);
  return c;
}

}  // namespace

NcclCommunicator::NcclCommunicator(MpiCommunicator& host_comm, int device, double timeout_s,
                                   bool hierarchical)
    : host_(host_comm), hierarchical_(hierarchical), state_(std::make_unique<State>()) {
  const std::string where = host_.where() + ", cuda:" + std::to_string(device);
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
  STRAND_CHECK(device >= 0 && device < count, Usage,
               "GPU " + std::to_string(device) + " does not exist (" + std::to_string(count) + " visible)",
               where);
  State& s = *state_;
  s.device = device;
  s.timeout_s = timeout_s;
  s.mean_scale = 1.0f / float(host_.size());
  STRAND_CUDART_CHECK(cudaSetDevice(device), where);
  STRAND_CUDART_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), where);
  if (!hierarchical_) {
    ncclUniqueId id{};
    if (host_.rank() == 0) STRAND_NCCL_CHECK(ncclGetUniqueId(&id), where);
    host_.broadcast(&id, sizeof id, 0);
    s.world = init_comm(host_.size(), id, host_.rank(), where);
    return;
  }
  // Each host's leader makes the id of its host's communicator; every rank takes part in each
  // broadcast and keeps its own leader's. Rank 0, the first host's leader, makes the leaders'.
  const std::vector<double> leads = host_.allgather(host_.local_rank() == 0 ? 1 : 0);
  ncclUniqueId local_id{}, leaders_id{};
  int leader_index = 0;
  for (int r = 0; r < host_.size(); ++r) {
    if (leads[size_t(r)] == 0) continue;
    if (r < host_.rank()) ++leader_index;
    ncclUniqueId id{};
    if (r == host_.rank()) STRAND_NCCL_CHECK(ncclGetUniqueId(&id), where);
    host_.broadcast(&id, sizeof id, r);
    if (r == host_.leader_rank()) local_id = id;
  }
  if (host_.rank() == 0) STRAND_NCCL_CHECK(ncclGetUniqueId(&leaders_id), where);
  host_.broadcast(&leaders_id, sizeof leaders_id, 0);
  s.local = init_comm(host_.local_size(), local_id, host_.local_rank(), where);
  if (host_.local_rank() == 0 && host_.host_count() > 1)
    s.leaders = init_comm(host_.host_count(), leaders_id, leader_index, where);
  STRAND_NCCL_CHECK(
      ncclRedOpCreatePreMulSum(&s.premul, &s.mean_scale, ncclFloat, ncclScalarHostImmediate, s.local), where);
  s.has_premul = true;
}

NcclCommunicator::~NcclCommunicator() {
  State& s = *state_;
  (void)cudaSetDevice(s.device);
  if (s.has_premul) ncclRedOpDestroy(s.premul, s.local);
  for (ncclComm_t c : s.comms()) ncclCommDestroy(c);
  if (s.stream) cudaStreamDestroy(s.stream);
}

namespace {

// Queues data[0, n) := the sum (or mean) over every rank on `stream`.
void queue_reduce(NcclCommunicator::State& s, bool hierarchical, cudaStream_t stream, float* data, int64_t n,
                  bool mean, const std::string& where) {
  STRAND_CHECK(!s.comms().empty(), Usage, "the NCCL communicator was aborted after a timeout", where);
  STRAND_CUDART_CHECK(cudaSetDevice(s.device), where);
  const size_t count = size_t(n);
  if (!hierarchical) {
    STRAND_NCCL_CHECK(ncclAllReduce(data, data, count, ncclFloat, mean ? ncclAvg : ncclSum, s.world, stream),
                      where);
    return;
  }
  STRAND_NCCL_CHECK(ncclReduce(data, data, count, ncclFloat, mean ? s.premul : ncclSum, 0, s.local, stream),
                    where);
  if (s.leaders)
    STRAND_NCCL_CHECK(ncclAllReduce(data, data, count, ncclFloat, ncclSum, s.leaders, stream), where);
  STRAND_NCCL_CHECK(ncclBroadcast(data, data, count, ncclFloat, 0, s.local, stream), where);
}

}  // namespace

void NcclCommunicator::allreduce_sum(float* data, int64_t n) {
  if (n == 0) return;
  queue_reduce(*state_, hierarchical_, state_->stream, data, n, false, host_.where());
  wait_for([&] { return poll_stream(state_->stream); });
}

void NcclCommunicator::allreduce_mean(float* data, int64_t n) {
  if (n == 0) return;
  queue_reduce(*state_, hierarchical_, state_->stream, data, n, true, host_.where());
  wait_for([&] { return poll_stream(state_->stream); });
}

void NcclCommunicator::queue_allreduce_mean(Lane& lane, float* data, int64_t n) {
  if (n == 0) return;
  queue_reduce(*state_, hierarchical_, static_cast<cudaStream_t>(lane.native()), data, n, true,
               host_.where());
}

void NcclCommunicator::wait(Lane& lane, int64_t mark) {
  wait_for([&] { return lane.passed(mark); });
}

bool NcclCommunicator::poll_stream(void* stream) {
  const cudaError_t q = cudaStreamQuery(static_cast<cudaStream_t>(stream));
  if (q == cudaErrorNotReady) return false;
  STRAND_CUDART_CHECK(q, host_.where());
  return true;
}

void NcclCommunicator::wait_for(const std::function<bool()>& done) {
  const std::string where = host_.where();
  State& s = *state_;
  const CommOptions& o = host_.options();
  bool warned = false;
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    if (done()) return;
    for (ncclComm_t c : s.comms()) {
      ncclResult_t async = ncclSuccess;
      STRAND_NCCL_CHECK(ncclCommGetAsyncError(c, &async), where);
      STRAND_NCCL_CHECK(async, where);
    }
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (waited > s.timeout_s) break;
    if (!warned && waited > o.stall_warning_s) {
      warned = true;
      const std::string line = "[strand " + where + "] stalled " + std::to_string(int(waited)) +
                               " s in NCCL collectives: a rank is late or hangs (the roll call after " +
                               std::to_string(int(s.timeout_s)) + " s names it)";
      if (o.log)
        o.log(line);
      else
        std::cerr << line << '\n';
    }
    if (waited > 1e-3)
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    else
      std::this_thread::yield();
  }
  s.abort();
  // NCCL cannot say which peer it waits for; the MPI communicator's deadline-polled messages
  // can: every live rank comes here after its own timeout, the missing one does not.
  const std::string what = "NCCL collectives did not finish in " + std::to_string(int(s.timeout_s)) + " s";
  try {
    host_.allgather(0);
  } catch (const Error& e) {
    throw Error(ErrorKind::Timeout, what + ", and a roll call over MPI found a rank missing: " + e.message(),
                where);
  }
  throw Error(
      ErrorKind::Timeout,
      what +
          ", yet every rank answered a roll call over MPI: NCCL itself stalled (NCCL_DEBUG=WARN says more)",
      where);
}

}  // namespace strand::allreduce
