// CpuBackend: host memory (64-byte aligned, zero-filled) and the kernels of kernels.hpp run
// on the backend's own thread pool. It owns the kernels' scratch memory, so one
// CpuBackend must not run two kernels at the same time; use one backend per caller thread.
#pragma once

#include <strand/core/backend.hpp>
#include <strand/core/cpu/kernels.hpp>

namespace strand::cpu {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads);  // threads >= 1, else Error(Usage)

  int threads() const { return pool_.size(); }
  std::string name() const override { return "cpu"; }
  DeviceKind kind() const override { return DeviceKind::Cpu; }
  void expect_work() override;
  void run_host_parts(int parts, const std::function<void(int part)>& body) override {
    pool_.run(parts, body);
  }

  Buffer alloc(size_t bytes) override;
  void free(void* ptr) noexcept override;
  void to_device(void* dst, const void* src, size_t bytes) override;
  void to_host(void* dst, const void* src, size_t bytes) override;

  void conv2d_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b, float* y) override;
  void conv2d_backward(const Conv2dDesc& d, const float* x, const float* w, const float* dy, float* dx,
                       float* dw, float* db) override;
  void maxpool2x2_forward(const Pool2dDesc& d, const float* x, float* y) override;
  void conv2d_relu_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b,
                           float* y) override;
  void relu_maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y, const float* dy,
                                float* dx) override;
  void maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y, const float* dy,
                           float* dx) override;
  void pool_forward(PoolKind kind, const PoolDesc& d, const float* x, float* y) override;
  void pool_backward(PoolKind kind, const PoolDesc& d, const float* x, const float* dy, float* dx) override;
  void batchnorm_forward_train(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                               const float* running, float* y, float* saved, float* running_delta) override;
  void batchnorm_forward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                               const float* running, float* y) override;
  void batchnorm_backward(const BatchNormDesc& d, const float* x, const float* gamma_beta, const float* saved,
                          const float* dy, float* dx, float* dgamma_beta) override;
  void batchnorm_backward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                                const float* running, const float* dy, float* dx,
                                float* dgamma_beta) override;
  void dense_forward(const DenseDesc& d, const float* x, const float* w, const float* b, float* y) override;
  void dense_backward(const DenseDesc& d, const float* x, const float* w, const float* dy, float* dx,
                      float* dw, float* db) override;
  void relu_forward(int64_t n, const float* x, float* y) override;
  void relu_backward(int64_t n, const float* y, const float* dy, float* dx) override;
  void dropout_forward(int64_t n, float rate, uint64_t key, uint64_t first, const float* x,
                       float* y) override;
  void dropout_backward(int64_t n, float rate, uint64_t key, uint64_t first, const float* dy,
                        float* dx) override;
  LossResult softmax_xent(int64_t batch, int64_t classes, const float* logits, const int32_t* labels,
                          float* dlogits) override;
  void softmax_xent_accumulate(int64_t batch, int64_t classes, const float* logits, const int32_t* labels,
                               float* dlogits) override;
  LossTotals take_loss_totals() override;
  const void* device_view(const void* host, size_t bytes, Buffer& storage) override;
  void gather(const GatherDesc& d, const int64_t* indices, const void* images, const int32_t* labels,
              float* x, int32_t* y) override;
  void softmax(int64_t batch, int64_t classes, const float* logits, float* probs) override;
  void sgd_step(int64_t n, float lr, float* params, const float* grads) override;
  void momentum_step(int64_t n, float lr, float momentum, float* params, const float* grads,
                     float* velocity) override;
  void adam_step(int64_t n, float lr, float beta1, float beta2, float eps, int64_t step, float* params,
                 const float* grads, float* m, float* v) override;

 private:
  ThreadPool pool_;
  Workspace ws_;  // conv im2col columns, per-chunk dw partials, per-row losses
  LossTotals totals_;
};

}  // namespace strand::cpu
