// Batch normalization per channel of x [B,C,S] (backend.hpp BatchNormDesc) with the CPU's
// formulas (core/cpu/batchnorm.cpp): the statistics in double, the variance in two passes
// around the float mean, the affine map and the input gradient in float. The per-channel
// reductions run one block per channel; the elementwise parts over every element.
#include <cstdint>

#include <strand/core/cuda/check.hpp>
#include <strand/core/cuda/kernels.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cuda {
namespace {

constexpr int kReduceBlock = 256;

// The sum of `v` over the block, valid in every thread. `shared` holds kReduceBlock doubles.
__device__ double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int half = kReduceBlock / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
    __syncthreads();
  }
  const double total = shared[0];
  __syncthreads();  // shared is reused by the next call
  return total;
}

// Element i of channel c's M = B*S values, at [n, c, s].
__device__ int64_t at(int64_t i, int64_t c, int64_t C, int64_t S) { return (i / S * C + c) * S + i % S; }

// One block per channel: the batch's mean and biased variance, y, saved and the running deltas.
__global__ void forward_train_kernel(BatchNormDesc d, const float* __restrict__ x,
                                     const float* __restrict__ gamma_beta, const float* __restrict__ running,
                                     float* __restrict__ y, float* __restrict__ saved,
                                     float* __restrict__ running_delta) {
  __shared__ double shared[kReduceBlock];
  const int64_t C = d.channels, S = d.spatial, M = d.batch * S, c = blockIdx.x;
  double sum = 0;
  for (int64_t i = threadIdx.x; i < M; i += kReduceBlock) sum += x[at(i, c, C, S)];
  const double mean = block_sum(sum, shared) / double(M);
  const float m = float(mean);
  double sq = 0;
  for (int64_t i = threadIdx.x; i < M; i += kReduceBlock) {
    const float dev = x[at(i, c, C, S)] - m;
    sq += dev * dev;
  }
  const double var = block_sum(sq, shared) / double(M);
  const float istd = float(1.0 / sqrt(var + double(d.eps)));
  const float scale = gamma_beta[c] * istd, shift = gamma_beta[C + c] - m * scale;
  for (int64_t i = threadIdx.x; i < M; i += kReduceBlock) {
    const int64_t k = at(i, c, C, S);
    y[k] = x[k] * scale + shift;
  }
  if (threadIdx.x == 0) {
    saved[c] = m;
    saved[C + c] = istd;
    const RunningDelta r = batchnorm_running_delta(d, M, mean, var, running[c], running[C + c]);
    running_delta[c] = r.mean;
    running_delta[C + c] = r.var;
  }
}

__global__ void forward_infer_kernel(BatchNormDesc d, const float* __restrict__ x,
                                     const float* __restrict__ gamma_beta, const float* __restrict__ running,
                                     float* __restrict__ y) {
  const int64_t C = d.channels, S = d.spatial, n = d.batch * C * S;
  for (int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; k < n;
       k += int64_t{gridDim.x} * blockDim.x) {
    const int64_t c = k / S % C;
    const float scale = gamma_beta[c] / sqrtf(running[C + c] + d.eps);
    const float shift = gamma_beta[C + c] - running[c] * scale;
    y[k] = x[k] * scale + shift;
  }
}

// One block per channel: dgamma_beta from sum(dy) and sum(dy * (x - mean)); then dx, from a
// training forward's statistics (Train) or the running ones, a fixed affine map (!Train).
template <bool Train>
__global__ void backward_kernel(BatchNormDesc d, const float* __restrict__ x,
                                const float* __restrict__ gamma_beta, const float* __restrict__ stats,
                                const float* __restrict__ dy, float* __restrict__ dx,
                                float* __restrict__ dgamma_beta) {
  __shared__ double shared[kReduceBlock];
  const int64_t C = d.channels, S = d.spatial, M = d.batch * S, c = blockIdx.x;
  // Train: stats = saved {mean, istd}; else running {mean, variance}.
  const float mean = stats[c], istd = Train ? stats[C + c] : 1.f / sqrtf(stats[C + c] + d.eps);
  double a = 0, b = 0;
  for (int64_t i = threadIdx.x; i < M; i += kReduceBlock) {
    const int64_t k = at(i, c, C, S);
    a += dy[k];
    b += dy[k] * (x[k] - mean);
  }
  const double sum_dy = block_sum(a, shared), sum_dy_xhat = block_sum(b, shared) * double(istd);
  if (threadIdx.x == 0) {
    dgamma_beta[c] = float(sum_dy_xhat);
    dgamma_beta[C + c] = float(sum_dy);
  }
  if (!dx) return;
  const float k_scale = gamma_beta[c] * istd;
  const float mean_dy = Train ? float(sum_dy / double(M)) : 0.f;
  const float c_x = Train ? float(sum_dy_xhat / double(M)) * istd : 0.f;
  for (int64_t i = threadIdx.x; i < M; i += kReduceBlock) {
    const int64_t k = at(i, c, C, S);
    dx[k] = Train ? k_scale * (dy[k] - mean_dy - (x[k] - mean) * c_x) : dy[k] * k_scale;
  }
}

}  // namespace

void batchnorm_forward_train(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                             const float* running, float* y, float* saved, float* running_delta,
                             cudaStream_t stream) {
  check_batchnorm(d, "cuda::batchnorm_forward_train");
  forward_train_kernel<<<unsigned(d.channels), kReduceBlock, 0, stream>>>(d, x, gamma_beta, running, y, saved,
                                                                          running_delta);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

void batchnorm_forward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                             const float* running, float* y, cudaStream_t stream) {
  check_batchnorm(d, "cuda::batchnorm_forward_infer");
  forward_infer_kernel<<<grid_for(d.batch * d.channels * d.spatial), kBlock, 0, stream>>>(d, x, gamma_beta,
                                                                                          running, y);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

void batchnorm_backward(const BatchNormDesc& d, const float* x, const float* gamma_beta, const float* saved,
                        const float* dy, float* dx, float* dgamma_beta, cudaStream_t stream) {
  check_batchnorm(d, "cuda::batchnorm_backward");
  backward_kernel<true>
      <<<unsigned(d.channels), kReduceBlock, 0, stream>>>(d, x, gamma_beta, saved, dy, dx, dgamma_beta);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

void batchnorm_backward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                              const float* running, const float* dy, float* dx, float* dgamma_beta,
                              cudaStream_t stream) {
  check_batchnorm(d, "cuda::batchnorm_backward_infer");
  backward_kernel<false>
      <<<unsigned(d.channels), kReduceBlock, 0, stream>>>(d, x, gamma_beta, running, dy, dx, dgamma_beta);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

}  // namespace strand::cuda
