// Optimizer steps, elementwise over flat parameter buffers, with the CPU's formulas
// (core/cpu/optim.cpp); Adam's bias corrections are computed on the host in double as there.
#include <cmath>
#include <string>

#include <strand/core/cuda/check.hpp>
#include <strand/core/cuda/kernels.hpp>
#include <strand/core/error.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cuda {
namespace {

__global__ void sgd_kernel(int64_t n, float lr, float* __restrict__ params, const float* __restrict__ grads) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    params[i] -= lr * grads[i];
}

__global__ void momentum_kernel(int64_t n, float lr, float momentum, float* __restrict__ params,
                                const float* __restrict__ grads, float* __restrict__ velocity) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float v = momentum * velocity[i] + grads[i];
    velocity[i] = v;
    params[i] -= lr * v;
  }
}

__global__ void adam_kernel(int64_t n, float beta1, float beta2, float one_m_b1, float one_m_b2, float lr_t,
                            float c2, float eps, float* __restrict__ params, const float* __restrict__ grads,
                            float* __restrict__ m, float* __restrict__ v) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float g = grads[i];
    const float mi = beta1 * m[i] + one_m_b1 * g;
    const float vi = beta2 * v[i] + one_m_b2 * g * g;
    m[i] = mi;
    v[i] = vi;
    params[i] -= lr_t * mi / (sqrtf(vi) * c2 + eps);
  }
}

}  // namespace

void sgd_step(int64_t n, float lr, float* params, const float* grads, cudaStream_t stream) {
  if (n <= 0) return;
  sgd_kernel<<<grid_for(n), kBlock, 0, stream>>>(n, lr, params, grads);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

void momentum_step(int64_t n, float lr, float momentum, float* params, const float* grads, float* velocity,
                   cudaStream_t stream) {
  if (n <= 0) return;
  momentum_kernel<<<grid_for(n), kBlock, 0, stream>>>(n, lr, momentum, params, grads, velocity);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

void adam_step(int64_t n, float lr, float beta1, float beta2, float eps, int64_t step, float* params,
               const float* grads, float* m, float* v, cudaStream_t stream) {
  // The same two scalars as the CPU (op_checks.hpp), so the update matches it.
  const auto [lr_t, c2] = adam_scalars(lr, beta1, beta2, step, "cuda::adam_step");
  if (n <= 0) return;
  adam_kernel<<<grid_for(n), kBlock, 0, stream>>>(n, beta1, beta2, 1.0f - beta1, 1.0f - beta2, lr_t, c2, eps,
                                                  params, grads, m, v);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

}  // namespace strand::cuda
