// Optimizer steps, elementwise over flat parameter buffers.
#include <cmath>
#include <string>

#include <strand/core/cpu/kernels.hpp>
#include <strand/core/error.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cpu {

void sgd_step(int64_t n, float lr, float* params, const float* grads, ThreadPool& pool) {
  pool.parallel_for(n, kParallelMin, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) params[i] -= lr * grads[i];
  });
}

void momentum_step(int64_t n, float lr, float momentum, float* params, const float* grads, float* velocity,
                   ThreadPool& pool) {
  pool.parallel_for(n, kParallelMin, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      velocity[i] = momentum * velocity[i] + grads[i];
      params[i] -= lr * velocity[i];
    }
  });
}

namespace {
STRAND_VECTOR_CLONES void adam_range(int64_t begin, int64_t end, float beta1, float beta2, float lr_t,
                                     float c2, float eps, float* params, const float* grads, float* m,
                                     float* v) {
  const float one_m_b1 = 1.0f - beta1, one_m_b2 = 1.0f - beta2;
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const float g = grads[i];
    m[i] = beta1 * m[i] + one_m_b1 * g;
    v[i] = beta2 * v[i] + one_m_b2 * g * g;
    params[i] -= lr_t * m[i] / (std::sqrt(v[i]) * c2 + eps);
  }
}
}  // namespace

void adam_step(int64_t n, float lr, float beta1, float beta2, float eps, int64_t step, float* params,
               const float* grads, float* m, float* v, ThreadPool& pool) {
  const auto [lr_t, c2] = adam_scalars(lr, beta1, beta2, step, "cpu::adam_step");
  pool.parallel_for(n, kParallelMin, [&](int64_t begin, int64_t end) {
    adam_range(begin, end, beta1, beta2, lr_t, c2, eps, params, grads, m, v);
  });
}

}  // namespace strand::cpu
