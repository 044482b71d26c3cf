// Inverted dropout with the stateless mask dropout_keep(key, i, rate) from backend.hpp, so
// forward and backward (and every backend) agree without a stored mask.
#include <string>

#include "core/cpu/kernels.hpp"
#include "core/error.hpp"
#include "core/op_checks.hpp"

namespace strand::cpu {
void dropout_forward(int64_t n, float rate, uint64_t key, const float* x, float* y,
                     ThreadPool& pool) {
  const float scale = dropout_scale(rate, "cpu::dropout_forward");
  pool.parallel_for(n, kParallelMin, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const float v = x[i] * scale;  // unconditional load, so the loop vectorizes
      y[i] = dropout_keep(key, static_cast<uint64_t>(i), rate) ? v : 0.0f;
    }
  });
}

void dropout_backward(int64_t n, float rate, uint64_t key, const float* dy, float* dx,
                      ThreadPool& pool) {
  const float scale = dropout_scale(rate, "cpu::dropout_backward");
  pool.parallel_for(n, kParallelMin, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const float g = dy[i] * scale;
      dx[i] = dropout_keep(key, static_cast<uint64_t>(i), rate) ? g : 0.0f;
    }
  });
}

}  // namespace strand::cpu
