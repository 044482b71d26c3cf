// CudaBackend::make_lane: a stream of its own beside the backend's, forked from and joined to
// it by events. Inside a recorded step those events are how a capture spans two streams, so the
// lane's work (NCCL's kernels) is recorded into the step's graph with the compute kernels and
// still runs beside them at each replay. Two timed events around the join measure how long the
// compute stream waited there; inside a capture they become event-record nodes
// (cudaEventRecordExternal).
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include <strand/core/cuda/check.hpp>
#include <strand/core/cuda/cuda_backend.hpp>
#include <strand/core/error.hpp>

namespace strand::cuda {
namespace {

using EventPtr = Unique<cudaEvent_t, cudaEventDestroy>;

EventPtr make_event(unsigned flags) {
  cudaEvent_t e = nullptr;
  STRAND_CUDA_CHECK(cudaEventCreateWithFlags(&e, flags));
  return EventPtr(e);
}

class CudaLane final : public Lane {
 public:
  CudaLane(int device, cudaStream_t compute)
      : device_(device),
        compute_(compute),
        fork_(make_event(cudaEventDisableTiming)),
        joined_(make_event(cudaEventDisableTiming)),
        before_join_(make_event(cudaEventDefault)),
        after_join_(make_event(cudaEventDefault)) {
    activate();
    cudaStream_t s = nullptr;
    STRAND_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    lane_.reset(s);
  }
  ~CudaLane() override {
    (void)cudaSetDevice(device_);
    (void)cudaStreamSynchronize(lane_.get());
  }

  // One event each for the fork and the join serves every bucket: a wait takes the event's
  // state at the call, so re-recording it later changes nothing already queued.
  void follow() override {
    activate();
    STRAND_CUDA_CHECK(cudaEventRecord(fork_.get(), compute_));
    STRAND_CUDA_CHECK(cudaStreamWaitEvent(lane_.get(), fork_.get(), 0));
    forked_ = true;
  }

  void join() override {
    activate();
    // Nothing queued since the last join: inside a capture the lane is not part of it, and
    // waiting for its event would reach outside the recorded step.
    if (!forked_) {
      timed_ = false;
      return;
    }
    forked_ = false;
    const unsigned flags = capturing() ? cudaEventRecordExternal : cudaEventRecordDefault;
    STRAND_CUDA_CHECK(cudaEventRecord(joined_.get(), lane_.get()));
    STRAND_CUDA_CHECK(cudaEventRecordWithFlags(before_join_.get(), compute_, flags));
    STRAND_CUDA_CHECK(cudaStreamWaitEvent(compute_, joined_.get(), 0));
    STRAND_CUDA_CHECK(cudaEventRecordWithFlags(after_join_.get(), compute_, flags));
    timed_ = true;
  }

  void* native() override { return lane_.get(); }

  Mark mark() override {
    activate();
    STRAND_CHECK(!capturing(), Usage, "a lane's mark cannot be taken inside a recorded step",
                 "cuda:" + std::to_string(device_));
    EventPtr e = spare_.empty() ? make_event(cudaEventDisableTiming) : take_spare();
    STRAND_CUDA_CHECK(cudaEventRecord(e.get(), compute_));
    marks_.push_back({++issued_, std::move(e)});
    return issued_;
  }

  bool passed(Mark m) override {
    activate();
    while (passed_ < m && !marks_.empty()) {
      const cudaError_t q = cudaEventQuery(marks_.front().event.get());
      if (q == cudaErrorNotReady) return false;
      STRAND_CUDA_CHECK(q);
      passed_ = marks_.front().mark;
      spare_.push_back(std::move(marks_.front().event));
      marks_.pop_front();
    }
    return passed_ >= m;
  }

  double join_wait_seconds() override {
    if (!timed_) return -1;
    float ms = 0;
    // Events recorded by a graph's nodes are timed like any other; should a driver not time
    // them, the wait is reported as not measured rather than failing the step.
    if (cudaEventElapsedTime(&ms, before_join_.get(), after_join_.get()) != cudaSuccess) {
      (void)cudaGetLastError();
      return -1;
    }
    return double(ms) * 1e-3;
  }

 private:
  struct Pending {
    Mark mark;
    EventPtr event;
  };
  void activate() const { STRAND_CUDA_CHECK(cudaSetDevice(device_)); }
  bool capturing() const {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    STRAND_CUDA_CHECK(cudaStreamIsCapturing(compute_, &status));
    return status != cudaStreamCaptureStatusNone;
  }
  EventPtr take_spare() {
    EventPtr e = std::move(spare_.back());
    spare_.pop_back();
    return e;
  }

  int device_;
  cudaStream_t compute_;  // the backend's
  EventPtr fork_, joined_, before_join_, after_join_;
  std::vector<EventPtr> spare_;
  std::deque<Pending> marks_;
  StreamPtr lane_;  // after the events: destroyed (drained) before them
  Mark issued_ = 0, passed_ = 0;
  bool forked_ = false;  // follow() since the last join()
  bool timed_ = false;
};

}  // namespace

std::unique_ptr<Lane> CudaBackend::make_lane() { return std::make_unique<CudaLane>(device_, stream_.get()); }

}  // namespace strand::cuda
