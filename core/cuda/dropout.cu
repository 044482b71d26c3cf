// Inverted dropout with the stateless mask dropout_keep(key, first + i, rate) from backend.hpp (a
// constexpr function, callable here through --expt-relaxed-constexpr), so the masks are the
// CPU's bit for bit. y may alias x and dx may alias dy.
#include <string>

#include <strand/core/cuda/check.hpp>
#include <strand/core/cuda/kernels.hpp>
#include <strand/core/error.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cuda {
namespace {

// Forward and backward are the same map: out[i] = keep(first + i) ? in[i] * scale : 0.
__global__ void dropout_kernel(int64_t n, float rate, float scale, uint64_t key, uint64_t first,
                               const float* in, float* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    out[i] = dropout_keep(key, first + static_cast<uint64_t>(i), rate) ? in[i] * scale : 0.0f;
}

void launch(int64_t n, float rate, uint64_t key, uint64_t first, const float* in, float* out,
            cudaStream_t stream, const char* where) {
  const float scale = dropout_scale(rate, where);
  if (n <= 0) return;
  dropout_kernel<<<grid_for(n), kBlock, 0, stream>>>(n, rate, scale, key, first, in, out);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void dropout_forward(int64_t n, float rate, uint64_t key, uint64_t first, const float* x, float* y,
                     cudaStream_t stream) {
  launch(n, rate, key, first, x, y, stream, "cuda::dropout_forward");
}

void dropout_backward(int64_t n, float rate, uint64_t key, uint64_t first, const float* dy, float* dx,
                      cudaStream_t stream) {
  launch(n, rate, key, first, dy, dx, stream, "cuda::dropout_backward");
}

}  // namespace strand::cuda
