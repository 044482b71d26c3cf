// ReLU, elementwise; y may alias x and dx may alias dy.
#include <strand/core/cpu/kernels.hpp>

namespace strand::cpu {
namespace {

STRAND_VECTOR_CLONES void relu_forward_range(int64_t begin, int64_t end, const float* x, float* y) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

// The gradient passes where the output is positive (equivalently, where the input was).
// dy is loaded unconditionally: a load under the condition blocks vectorization.
STRAND_VECTOR_CLONES void relu_backward_range(int64_t begin, int64_t end, const float* y, const float* dy,
                                              float* dx) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const float g = dy[i];
    dx[i] = y[i] > 0.0f ? g : 0.0f;
  }
}

}  // namespace

void relu_forward(int64_t n, const float* x, float* y, ThreadPool& pool) {
  pool.parallel_for(n, kParallelMin,
                    [&](int64_t begin, int64_t end) { relu_forward_range(begin, end, x, y); });
}

void relu_backward(int64_t n, const float* y, const float* dy, float* dx, ThreadPool& pool) {
  pool.parallel_for(n, kParallelMin,
                    [&](int64_t begin, int64_t end) { relu_backward_range(begin, end, y, dy, dx); });
}

}  // namespace strand::cpu
