// Optimizer steps, elementwise over flat parameter buffers.
#include <cmath>
#include <string>

#include "core/cpu/kernels.hpp"
#include "core/error.hpp"

namespace strand::cpu {

void sgd_step(int64_t n, float lr, float* params, const float* grads, ThreadPool& pool) {
  pool.parallel_for(n, kParallelMin, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) params[i] -= lr * grads[i];
  });
}

void momentum_step(int64_t n, float lr, float momentum, float* params, const float* grads,
                   float* velocity, ThreadPool& pool) {
  pool.parallel_for(n, kParallelMin, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      velocity[i] = momentum * velocity[i] + grads[i];
      params[i] -= lr * velocity[i];
    }
  });
}

void adam_step(int64_t n, float lr, float beta1, float beta2, float eps, int64_t step,
               float* params, const float* grads, float* m, float* v, ThreadPool& pool) {
  STRAND_CHECK(step >= 1, Usage, "adam step counts from 1, got " + std::to_string(step),
               "cpu::adam_step");
  // Bias corrections folded into two scalars: p -= lr_t * m / (sqrt(v) * c2 + eps), which is
  // lr * m_hat / (sqrt(v_hat) + eps) with m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t).
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  const float lr_t = static_cast<float>(lr / bc1);
  const float c2 = static_cast<float>(1.0 / std::sqrt(bc2));
  const float one_m_b1 = 1.0f - beta1, one_m_b2 = 1.0f - beta2;
  pool.parallel_for(n, kParallelMin, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const float g = grads[i];
      m[i] = beta1 * m[i] + one_m_b1 * g;
      v[i] = beta2 * v[i] + one_m_b2 * g * g;
      params[i] -= lr_t * m[i] / (std::sqrt(v[i]) * c2 + eps);
    }
  });
}

}  // namespace strand::cpu
