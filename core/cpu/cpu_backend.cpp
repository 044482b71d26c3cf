// CpuBackend: forwards every kernel to core/cpu/kernels.hpp with its thread pool and workspace.
#include <strand/core/cpu/cpu_backend.hpp>

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include <strand/core/error.hpp>

namespace strand {
namespace cpu {

CpuBackend::CpuBackend(int threads) : pool_(threads) {}

// A millisecond covers parsing a typical request (50 MNIST images: ~0.1 ms).
void CpuBackend::expect_work() { pool_.wake(std::chrono::microseconds(1000)); }

Buffer CpuBackend::alloc(size_t bytes) {
  if (bytes == 0) return Buffer(this, nullptr, 0);
  // 64-byte alignment puts every buffer on a cache line and an AVX-512 vector boundary;
  // aligned_alloc wants the size to be a multiple of the alignment.
  const size_t padded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, padded);
  STRAND_CHECK(p != nullptr, Io, "out of host memory allocating " + std::to_string(bytes) + " bytes",
               "cpu::alloc");
  std::memset(p, 0, padded);
  return Buffer(this, p, bytes);
}

void CpuBackend::free(void* ptr) noexcept { std::free(ptr); }

void CpuBackend::to_device(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}

void CpuBackend::to_host(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}

void CpuBackend::conv2d_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b,
                                float* y) {
  cpu::conv2d_forward(d, x, w, b, y, ws_, pool_);
}
void CpuBackend::conv2d_relu_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b,
                                     float* y) {
  // Two passes: the ReLU applied with the bias inside the conv kernels (im2col's bias loop,
  // Winograd's output unpacking) measured slower in training, 3,780-3,930 against 4,030-4,230
  // images/s (mnist_cnn, batch 100, 2 threads, runs interleaved on an idle machine).
  cpu::conv2d_forward(d, x, w, b, y, ws_, pool_);
  cpu::relu_forward(d.batch * d.out_c * d.out_h() * d.out_w(), y, y, pool_);
}
void CpuBackend::conv2d_backward(const Conv2dDesc& d, const float* x, const float* w, const float* dy,
                                 float* dx, float* dw, float* db) {
  cpu::conv2d_backward(d, x, w, dy, dx, dw, db, ws_, pool_);
}
void CpuBackend::maxpool2x2_forward(const Pool2dDesc& d, const float* x, float* y) {
  cpu::maxpool2x2_forward(d, x, y, pool_);
}
void CpuBackend::maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y, const float* dy,
                                     float* dx) {
  cpu::maxpool2x2_backward(d, x, y, dy, dx, false, pool_);
}
void CpuBackend::relu_maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y,
                                          const float* dy, float* dx) {
  cpu::maxpool2x2_backward(d, x, y, dy, dx, true, pool_);
}
void CpuBackend::pool_forward(PoolKind kind, const PoolDesc& d, const float* x, float* y) {
  cpu::pool_forward(kind, d, x, y, pool_);
}
void CpuBackend::pool_backward(PoolKind kind, const PoolDesc& d, const float* x, const float* dy, float* dx) {
  cpu::pool_backward(kind, d, x, dy, dx, pool_);
}
void CpuBackend::batchnorm_forward_train(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                                         const float* running, float* y, float* saved, float* running_delta) {
  cpu::batchnorm_forward_train(d, x, gamma_beta, running, y, saved, running_delta, pool_);
}
void CpuBackend::batchnorm_forward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                                         const float* running, float* y) {
  cpu::batchnorm_forward_infer(d, x, gamma_beta, running, y, pool_);
}
void CpuBackend::batchnorm_backward(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                                    const float* saved, const float* dy, float* dx, float* dgamma_beta) {
  cpu::batchnorm_backward(d, x, gamma_beta, saved, dy, dx, dgamma_beta, pool_);
}
void CpuBackend::batchnorm_backward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                                          const float* running, const float* dy, float* dx,
                                          float* dgamma_beta) {
  cpu::batchnorm_backward_infer(d, x, gamma_beta, running, dy, dx, dgamma_beta, pool_);
}
void CpuBackend::dense_forward(const DenseDesc& d, const float* x, const float* w, const float* b, float* y) {
  cpu::dense_forward(d, x, w, b, y, pool_);
}
void CpuBackend::dense_backward(const DenseDesc& d, const float* x, const float* w, const float* dy,
                                float* dx, float* dw, float* db) {
  cpu::dense_backward(d, x, w, dy, dx, dw, db, pool_);
}
void CpuBackend::relu_forward(int64_t n, const float* x, float* y) { cpu::relu_forward(n, x, y, pool_); }
void CpuBackend::relu_backward(int64_t n, const float* y, const float* dy, float* dx) {
  cpu::relu_backward(n, y, dy, dx, pool_);
}
void CpuBackend::dropout_forward(int64_t n, float rate, uint64_t key, uint64_t first, const float* x,
                                 float* y) {
  cpu::dropout_forward(n, rate, key, first, x, y, pool_);
}
void CpuBackend::dropout_backward(int64_t n, float rate, uint64_t key, uint64_t first, const float* dy,
                                  float* dx) {
  cpu::dropout_backward(n, rate, key, first, dy, dx, pool_);
}
void CpuBackend::softmax_xent_accumulate(int64_t batch, int64_t classes, const float* logits,
                                         const int32_t* labels, float* dlogits) {
  const LossResult r = cpu::softmax_xent(batch, classes, logits, labels, dlogits, ws_, pool_);
  totals_.loss_sum += r.loss * static_cast<double>(batch);
  totals_.correct += r.correct;
  totals_.examples += batch;
}

LossTotals CpuBackend::take_loss_totals() { return std::exchange(totals_, LossTotals{}); }

const void* CpuBackend::device_view(const void* host, size_t, Buffer&) { return host; }

void CpuBackend::gather(const GatherDesc& d, const int64_t* indices, const void* images,
                        const int32_t* labels, float* x, int32_t* y) {
  cpu::gather(d, indices, images, labels, x, y, pool_);
}

LossResult CpuBackend::softmax_xent(int64_t batch, int64_t classes, const float* logits,
                                    const int32_t* labels, float* dlogits) {
  return cpu::softmax_xent(batch, classes, logits, labels, dlogits, ws_, pool_);
}
void CpuBackend::softmax(int64_t batch, int64_t classes, const float* logits, float* probs) {
  cpu::softmax(batch, classes, logits, probs, pool_);
}
void CpuBackend::sgd_step(int64_t n, float lr, float* params, const float* grads) {
  cpu::sgd_step(n, lr, params, grads, pool_);
}
void CpuBackend::momentum_step(int64_t n, float lr, float momentum, float* params, const float* grads,
                               float* velocity) {
  cpu::momentum_step(n, lr, momentum, params, grads, velocity, pool_);
}
void CpuBackend::adam_step(int64_t n, float lr, float beta1, float beta2, float eps, int64_t step,
                           float* params, const float* grads, float* m, float* v) {
  cpu::adam_step(n, lr, beta1, beta2, eps, step, params, grads, m, v, pool_);
}

}  // namespace cpu

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<cpu::CpuBackend>(threads); }

}  // namespace strand
