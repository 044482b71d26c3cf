// CudaBackend::make_stage: a pinned host mirror and a copy stream of its own. A download waits
// (cudaStreamWaitEvent) for an event recorded on the backend's stream at the call, so it copies
// what the kernels queued so far wrote, while later kernels run on; its fence is an event on the
// copy stream. join() makes the backend's stream wait for an event recorded after the uploads.
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
using PinnedPtr = Unique<void*, cudaFreeHost>;

EventPtr make_event() {
  cudaEvent_t e = nullptr;
  STRAND_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return EventPtr(e);
}

class CudaStage final : public Stage {
 public:
  CudaStage(int device, cudaStream_t compute, int64_t floats) : device_(device), compute_(compute) {
    activate();
    void* p = nullptr;
    STRAND_CUDA_CHECK(cudaHostAlloc(&p, size_t(floats) * sizeof(float), cudaHostAllocDefault));
    host_.reset(p);
    cudaStream_t s = nullptr;
    STRAND_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    copies_.reset(s);
  }
  ~CudaStage() override {
    // The pinned memory and the stream go after this body: nothing may still copy into them.
    (void)cudaSetDevice(device_);
    (void)cudaStreamSynchronize(copies_.get());
  }

  float* host() override { return static_cast<float*>(host_.get()); }

  Fence download(const float* device, int64_t begin, int64_t end) override {
    activate();
    not_capturing();
    EventPtr written = take_event();
    STRAND_CUDA_CHECK(cudaEventRecord(written.get(), compute_));
    STRAND_CUDA_CHECK(cudaStreamWaitEvent(copies_.get(), written.get(), 0));
    STRAND_CUDA_CHECK(cudaMemcpyAsync(host() + begin, device + begin, size_t(end - begin) * sizeof(float),
                                      cudaMemcpyDeviceToHost, copies_.get()));
    EventPtr landed = take_event();
    STRAND_CUDA_CHECK(cudaEventRecord(landed.get(), copies_.get()));
    spare_.push_back(std::move(written));  // may be re-recorded: the wait above already holds it
    pending_.push_back({++issued_, std::move(landed)});
    return issued_;
  }

  bool done(Fence f) override {
    while (landed_ < f && !pending_.empty()) {
      const cudaError_t q = cudaEventQuery(pending_.front().event.get());
      if (q == cudaErrorNotReady) return false;
      STRAND_CUDA_CHECK(q);
      retire();
    }
    return landed_ >= f;
  }

  void wait(Fence f) override {
    while (landed_ < f && !pending_.empty()) {
      STRAND_CUDA_CHECK(cudaEventSynchronize(pending_.front().event.get()));
      retire();
    }
  }

  void upload(float* device, int64_t begin, int64_t end) override {
    activate();
    STRAND_CUDA_CHECK(cudaMemcpyAsync(device + begin, host() + begin, size_t(end - begin) * sizeof(float),
                                      cudaMemcpyHostToDevice, copies_.get()));
  }

  void join() override {
    activate();
    not_capturing();
    EventPtr uploaded = take_event();
    STRAND_CUDA_CHECK(cudaEventRecord(uploaded.get(), copies_.get()));
    STRAND_CUDA_CHECK(cudaStreamWaitEvent(compute_, uploaded.get(), 0));
    // host() may be rewritten once join() returns (the contract): the uploads must have read it.
    STRAND_CUDA_CHECK(cudaEventSynchronize(uploaded.get()));
    spare_.push_back(std::move(uploaded));
  }

 private:
  struct Pending {
    Fence fence;
    EventPtr event;
  };
  void activate() const { STRAND_CUDA_CHECK(cudaSetDevice(device_)); }
  // Events between the two streams would enter a recorded step and fire only at its replay.
  void not_capturing() const {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    STRAND_CUDA_CHECK(cudaStreamIsCapturing(compute_, &status));
    STRAND_CHECK(status == cudaStreamCaptureStatusNone, Usage,
                 "a stage's copies cannot be recorded into a CUDA graph step (run without graphs)",
                 "cuda:" + std::to_string(device_));
  }
  EventPtr take_event() {
    if (spare_.empty()) return make_event();
    EventPtr e = std::move(spare_.back());
    spare_.pop_back();
    return e;
  }
  void retire() {
    landed_ = pending_.front().fence;
    spare_.push_back(std::move(pending_.front().event));
    pending_.pop_front();
  }

  int device_;
  cudaStream_t compute_;  // the backend's: kernels run there
  PinnedPtr host_;
  std::vector<EventPtr> spare_;  // before the stream: destroyed after it is drained
  std::deque<Pending> pending_;
  StreamPtr copies_;
  Fence issued_ = 0, landed_ = 0;
};

}  // namespace

std::unique_ptr<Stage> CudaBackend::make_stage(int64_t floats) {
  return std::make_unique<CudaStage>(device_, stream_.get(), floats);
}

}  // namespace strand::cuda
