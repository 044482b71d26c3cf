// A CPU backend that stages like a GPU, for testing without one what a strategy does with a
// Stage (core/backend.hpp): make_stage() gives a DeferredStage, whose downloads land only when
// polled or waited for (until then the mirror holds NaN, so data read too early poisons the
// result) and whose uploads reach the model only at join(). With lanes, make_lane() gives a
// DeferredLane, whose queued work runs only when the backend's kernels must wait for it (at
// join()), so a strategy that updates before joining uses unreduced gradients. Every kernel
// runs on CpuBackend.
#pragma once

#include <algorithm>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include <strand/core/backend.hpp>

namespace strand::test {

struct StageCounts {
  int64_t downloads = 0, uploads = 0, joins = 0;
  int64_t not_yet = 0;  // done() answers "not landed yet"
};

class DeferredStage final : public Stage {
 public:
  DeferredStage(int64_t floats, StageCounts& counts)
      : host_(size_t(floats), std::numeric_limits<float>::quiet_NaN()), counts_(counts) {}

  float* host() override { return host_.data(); }

  Fence download(const float* device, int64_t begin, int64_t end) override {
    ++counts_.downloads;
    // What the device holds now (its kernels ran already) is what the copy will deliver.
    downloads_.push_back({begin, std::vector<float>(device + begin, device + end)});
    std::fill(host_.begin() + begin, host_.begin() + end, std::numeric_limits<float>::quiet_NaN());
    return ++issued_;
  }
  // Every other call lands the oldest download, the others none: polls see copies running.
  bool done(Fence f) override {
    if (landed_ < f && !downloads_.empty() && (busy_ = !busy_) == false) land();
    if (landed_ < f) ++counts_.not_yet;
    return landed_ >= f;
  }
  void wait(Fence f) override {
    while (landed_ < f && !downloads_.empty()) land();
  }
  void upload(float* device, int64_t begin, int64_t end) override {
    ++counts_.uploads;
    uploads_.push_back({device + begin, std::vector<float>(host_.begin() + begin, host_.begin() + end)});
  }
  void join() override {
    ++counts_.joins;
    for (const Upload& u : uploads_) std::copy(u.data.begin(), u.data.end(), u.device);
    uploads_.clear();
  }

 private:
  struct Download {
    int64_t begin;
    std::vector<float> data;
  };
  struct Upload {
    float* device;
    std::vector<float> data;
  };
  void land() {
    const Download& d = downloads_.front();
    std::copy(d.data.begin(), d.data.end(), host_.begin() + d.begin);
    downloads_.pop_front();
    ++landed_;
  }

  std::vector<float> host_;
  StageCounts& counts_;
  std::deque<Download> downloads_;
  std::deque<Upload> uploads_;
  Fence issued_ = 0, landed_ = 0;
  bool busy_ = false;
};

struct LaneCounts {
  int64_t follows = 0, joins = 0, queued = 0, marks = 0;
  int64_t unfollowed = 0;  // work queued without a follow() since the previous work
};

class DeferredLane final : public Lane {
 public:
  explicit DeferredLane(LaneCounts& counts) : counts_(counts) {}

  // What a test communicator calls from its queue_allreduce_mean() (native() is this lane).
  void queue(std::function<void()> work) {
    ++counts_.queued;
    if (!followed_) ++counts_.unfollowed;
    followed_ = false;
    work_.push_back(std::move(work));
  }

  void follow() override {
    ++counts_.follows;
    followed_ = true;
  }
  void join() override {
    ++counts_.joins;
    for (auto& w : work_) w();
    work_.clear();
  }
  void* native() override { return this; }
  Mark mark() override {
    ++counts_.marks;
    return ++issued_;
  }
  // Every other poll passes the oldest mark: waits see the device still busy.
  bool passed(Mark m) override {
    if (passed_ < m && (busy_ = !busy_) == false) ++passed_;
    return passed_ >= m;
  }
  double join_wait_seconds() override { return 0; }

 private:
  LaneCounts& counts_;
  std::deque<std::function<void()>> work_;
  bool followed_ = false, busy_ = false;
  Mark issued_ = 0, passed_ = 0;
};

class StagedCpuBackend final : public Backend {
 public:
  explicit StagedCpuBackend(int threads, bool lanes = false)
      : cpu_(make_cpu_backend(threads)), lanes_(lanes) {}
  const StageCounts& counts() const { return counts_; }
  const LaneCounts& lane_counts() const { return lane_counts_; }

  std::unique_ptr<Stage> make_stage(int64_t floats) override {
    return std::make_unique<DeferredStage>(floats, counts_);
  }
  std::unique_ptr<Lane> make_lane() override {
    return lanes_ ? std::make_unique<DeferredLane>(lane_counts_) : nullptr;
  }

  std::string name() const override { return "cpu (staged)"; }
  DeviceKind kind() const override { return cpu_->kind(); }
  Buffer alloc(size_t bytes) override {
    Buffer b = cpu_->alloc(bytes);  // re-owned: ~Buffer calls this backend's free()
    Buffer mine(this, b.data(), b.bytes());
    owned_.push_back(std::move(b));
    return mine;
  }
  void free(void* ptr) noexcept override {
    std::erase_if(owned_, [&](const Buffer& b) { return b.data() == ptr; });
  }
  void to_device(void* dst, const void* src, size_t bytes) override { cpu_->to_device(dst, src, bytes); }
  void to_host(void* dst, const void* src, size_t bytes) override { cpu_->to_host(dst, src, bytes); }
  void synchronize() override { cpu_->synchronize(); }
  void begin_step(int64_t batch) override { cpu_->begin_step(batch); }
  void end_step() override { cpu_->end_step(); }
  const void* device_view(const void* host, size_t bytes, Buffer& storage) override {
    return cpu_->device_view(host, bytes, storage);
  }
  void gather(const GatherDesc& d, const int64_t* indices, const void* images, const int32_t* labels,
              float* x, int32_t* y) override {
    cpu_->gather(d, indices, images, labels, x, y);
  }
  void conv2d_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b,
                      float* y) override {
    cpu_->conv2d_forward(d, x, w, b, y);
  }
  void conv2d_backward(const Conv2dDesc& d, const float* x, const float* w, const float* dy, float* dx,
                       float* dw, float* db) override {
    cpu_->conv2d_backward(d, x, w, dy, dx, dw, db);
  }
  void maxpool2x2_forward(const Pool2dDesc& d, const float* x, float* y) override {
    cpu_->maxpool2x2_forward(d, x, y);
  }
  void maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y, const float* dy,
                           float* dx) override {
    cpu_->maxpool2x2_backward(d, x, y, dy, dx);
  }
  void pool_forward(PoolKind kind, const PoolDesc& d, const float* x, float* y) override {
    cpu_->pool_forward(kind, d, x, y);
  }
  void pool_backward(PoolKind kind, const PoolDesc& d, const float* x, const float* dy, float* dx) override {
    cpu_->pool_backward(kind, d, x, dy, dx);
  }
  void batchnorm_forward_train(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                               const float* running, float* y, float* saved, float* running_delta) override {
    cpu_->batchnorm_forward_train(d, x, gamma_beta, running, y, saved, running_delta);
  }
  void batchnorm_forward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                               const float* running, float* y) override {
    cpu_->batchnorm_forward_infer(d, x, gamma_beta, running, y);
  }
  void batchnorm_backward(const BatchNormDesc& d, const float* x, const float* gamma_beta, const float* saved,
                          const float* dy, float* dx, float* dgamma_beta) override {
    cpu_->batchnorm_backward(d, x, gamma_beta, saved, dy, dx, dgamma_beta);
  }
  void batchnorm_backward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                                const float* running, const float* dy, float* dx,
                                float* dgamma_beta) override {
    cpu_->batchnorm_backward_infer(d, x, gamma_beta, running, dy, dx, dgamma_beta);
  }
  void dense_forward(const DenseDesc& d, const float* x, const float* w, const float* b, float* y) override {
    cpu_->dense_forward(d, x, w, b, y);
  }
  void dense_backward(const DenseDesc& d, const float* x, const float* w, const float* dy, float* dx,
                      float* dw, float* db) override {
    cpu_->dense_backward(d, x, w, dy, dx, dw, db);
  }
  void relu_forward(int64_t n, const float* x, float* y) override { cpu_->relu_forward(n, x, y); }
  void relu_backward(int64_t n, const float* y, const float* dy, float* dx) override {
    cpu_->relu_backward(n, y, dy, dx);
  }
  void conv2d_relu_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b,
                           float* y) override {
    cpu_->conv2d_relu_forward(d, x, w, b, y);
  }
  void relu_maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y, const float* dy,
                                float* dx) override {
    cpu_->relu_maxpool2x2_backward(d, x, y, dy, dx);
  }
  void dropout_forward(int64_t n, float rate, uint64_t key, uint64_t first, const float* x,
                       float* y) override {
    cpu_->dropout_forward(n, rate, key, first, x, y);
  }
  void dropout_backward(int64_t n, float rate, uint64_t key, uint64_t first, const float* dy,
                        float* dx) override {
    cpu_->dropout_backward(n, rate, key, first, dy, dx);
  }
  LossResult softmax_xent(int64_t batch, int64_t classes, const float* logits, const int32_t* labels,
                          float* dlogits) override {
    return cpu_->softmax_xent(batch, classes, logits, labels, dlogits);
  }
  void softmax_xent_accumulate(int64_t batch, int64_t classes, const float* logits, const int32_t* labels,
                               float* dlogits) override {
    cpu_->softmax_xent_accumulate(batch, classes, logits, labels, dlogits);
  }
  LossTotals take_loss_totals() override { return cpu_->take_loss_totals(); }
  void softmax(int64_t batch, int64_t classes, const float* logits, float* probs) override {
    cpu_->softmax(batch, classes, logits, probs);
  }
  void sgd_step(int64_t n, float lr, float* params, const float* grads) override {
    cpu_->sgd_step(n, lr, params, grads);
  }
  void momentum_step(int64_t n, float lr, float momentum, float* params, const float* grads,
                     float* velocity) override {
    cpu_->momentum_step(n, lr, momentum, params, grads, velocity);
  }
  void adam_step(int64_t n, float lr, float beta1, float beta2, float eps, int64_t step, float* params,
                 const float* grads, float* m, float* v) override {
    cpu_->adam_step(n, lr, beta1, beta2, eps, step, params, grads, m, v);
  }

 private:
  std::unique_ptr<Backend> cpu_;
  bool lanes_;
  std::vector<Buffer> owned_;  // the CPU backend's buffers behind the ones handed out
  StageCounts counts_;
  LaneCounts lane_counts_;
};

}  // namespace strand::test
