// ReLU, elementwise; y may alias x and dx may alias dy (so no __restrict__).
#include <strand/core/cuda/check.hpp>
#include <strand/core/cuda/kernels.hpp>

namespace strand::cuda {
namespace {

__global__ void relu_forward_kernel(int64_t n, const float* x, float* y) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

// The gradient passes where the output is positive (equivalently, where the input was).
__global__ void relu_backward_kernel(int64_t n, const float* y, const float* dy, float* dx) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

}  // namespace

void relu_forward(int64_t n, const float* x, float* y, cudaStream_t stream) {
  if (n <= 0) return;
  relu_forward_kernel<<<grid_for(n), kBlock, 0, stream>>>(n, x, y);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

void relu_backward(int64_t n, const float* y, const float* dy, float* dx, cudaStream_t stream) {
  if (n <= 0) return;
  relu_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(n, y, dy, dx);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

}  // namespace strand::cuda
