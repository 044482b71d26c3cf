// Hand-written CUDA kernels behind CudaBackend, mirroring core/cpu/kernels.hpp name for name:
// each function launches on `stream` and returns without waiting; every launch is checked
// (STRAND_CUDA_CHECK on cudaGetLastError). Layouts and contracts are those of backend.hpp.
// Convolution (cuDNN) and dense (cuBLAS) live in conv2d.cu and dense.cu; the helpers they
// need for bias terms are here.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include <strand/core/backend.hpp>

namespace strand::cuda {

// Launch shape of the elementwise kernels: grid-stride loops over n >= 1 items, the grid
// capped so huge n needs no grid larger than the hardware allows.
inline constexpr int kBlock = 256;
inline unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + kBlock - 1) / kBlock, int64_t{1} << 16));
}

// 2x2 max pooling, stride 2: same tie rule as the CPU (first maximum in row-major order).
// With `relu`, backward also zeroes dx where x <= 0 (x being a ReLU's output).
void maxpool2x2_forward(const Pool2dDesc& d, const float* x, float* y, cudaStream_t stream);
void maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y, const float* dy, float* dx,
                         bool relu, cudaStream_t stream);

// Pooling over any window and stride (PoolDesc, pool.cu) with the CPU's semantics and order of
// additions, so results are the CPU's bits: max takes each window's first maximum (strict '>'),
// average sums a window row by row and scales by 1/(kh*kw); backward writes every dx element,
// adding the windows over it in row-major window order (overlaps sum, uncovered pixels get 0).
// Max backward finds each window's maximum in x again, into `scratch` of
// pool_scratch_bytes(kind, d) bytes (none for average).
size_t pool_scratch_bytes(PoolKind kind, const PoolDesc& d);
void pool_forward(PoolKind kind, const PoolDesc& d, const float* x, float* y, cudaStream_t stream);
void pool_backward(PoolKind kind, const PoolDesc& d, const float* x, const float* dy, float* dx,
                   void* scratch, cudaStream_t stream);

// Batch normalization (BatchNormDesc, batchnorm.cu) with the CPU's formulas: per-channel
// statistics in double (one block per channel), the affine map and dx in float.
void batchnorm_forward_train(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                             const float* running, float* y, float* saved, float* running_delta,
                             cudaStream_t stream);
void batchnorm_forward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                             const float* running, float* y, cudaStream_t stream);
void batchnorm_backward(const BatchNormDesc& d, const float* x, const float* gamma_beta, const float* saved,
                        const float* dy, float* dx, float* dgamma_beta, cudaStream_t stream);
void batchnorm_backward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                              const float* running, const float* dy, float* dx, float* dgamma_beta,
                              cudaStream_t stream);

void relu_forward(int64_t n, const float* x, float* y, cudaStream_t stream);
void relu_backward(int64_t n, const float* y, const float* dy, float* dx, cudaStream_t stream);

// Mask from dropout_keep(key, first + i, rate) (backend.hpp), bit-identical to the CPU's.
void dropout_forward(int64_t n, float rate, uint64_t key, uint64_t first, const float* x, float* y,
                     cudaStream_t stream);
void dropout_backward(int64_t n, float rate, uint64_t key, uint64_t first, const float* dy, float* dx,
                      cudaStream_t stream);

// dlogits [B,C] = (softmax - onehot) / B. Per-row losses are summed in row order into
// *loss_sum (device, double), arg-max hits into *correct (device), and rows whose label lies
// outside [0,C) are counted into *bad_labels (device) — the backend turns that into an error.
// The three outputs are overwritten, not accumulated.
void softmax_xent(int64_t batch, int64_t classes, const float* logits, const int32_t* labels, float* dlogits,
                  double* loss_sum, int64_t* correct, int64_t* bad_labels, cudaStream_t stream);
void softmax(int64_t batch, int64_t classes, const float* logits, float* probs, cudaStream_t stream);
// Adds one softmax_xent result (device scalars) to running totals (device scalars).
void add_loss_totals(const double* loss_sum, const int64_t* correct, const int64_t* bad_labels,
                     double* total_loss, int64_t* total_correct, int64_t* total_bad, cudaStream_t stream);

// Direct convolution (conv2d_direct.cu) for one input channel, a square 3x3 or 5x5 kernel, unit
// stride, a bias and small images (mnist_cnn's conv1), where cuDNN's general algorithms are
// several times slower. `bias`: the call has one (b, db not null); its kernels always write it.
bool conv2d_direct_supported(const Conv2dDesc& d, bool bias);
// y = conv(x, w) + b, then ReLU when `relu`.
void conv2d_direct_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b, float* y,
                           bool relu, cudaStream_t stream);
// dw and db (overwritten) from x and dy, deterministic; part: scratch of
// conv2d_direct_partial_floats(d) floats.
int64_t conv2d_direct_partial_floats(const Conv2dDesc& d);
void conv2d_direct_backward_filter(const Conv2dDesc& d, const float* x, const float* dy, float* part,
                                   float* dw, float* db, cudaStream_t stream);

// x [b,C,H,W] = images[indices[i]] as float32, augmented as d says, y [b] = labels[indices[i]]
// (all device memory): the CPU's bits (backend.hpp GatherDesc).
void gather(const GatherDesc& d, const int64_t* indices, const void* images, const int32_t* labels, float* x,
            int32_t* y, cudaStream_t stream);

// y [rows, cols] += b [cols] broadcast over rows (dense bias).
void add_bias_rows(int64_t rows, int64_t cols, const float* b, float* y, cudaStream_t stream);
// db [cols] = column sums of dy [rows, cols] (dense bias gradient), deterministic: rows are
// summed in fixed chunks, then the chunks in order. part: scratch of
// bias_grad_rows_chunks(rows) * cols floats.
int64_t bias_grad_rows_chunks(int64_t rows);
void bias_grad_rows(int64_t rows, int64_t cols, const float* dy, float* part, float* db, cudaStream_t stream);

void sgd_step(int64_t n, float lr, float* params, const float* grads, cudaStream_t stream);
void momentum_step(int64_t n, float lr, float momentum, float* params, const float* grads, float* velocity,
                   cudaStream_t stream);
// Adam with bias correction; `step` counts from 1. Same update formula as the CPU kernel.
void adam_step(int64_t n, float lr, float beta1, float beta2, float eps, int64_t step, float* params,
               const float* grads, float* m, float* v, cudaStream_t stream);

}  // namespace strand::cuda
