// Inverted dropout with the stateless mask dropout_keep(key, first + i, rate) from backend.hpp, so
// forward and backward (and every backend) agree without a stored mask.
#include <string>

#include <strand/core/cpu/kernels.hpp>
#include <strand/core/error.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cpu {
namespace {

// out = keep(first + i) ? in * scale : 0. Forward and backward are the same map (x -> y, dy -> dx).
// The input is loaded unconditionally so the loop vectorizes (the hash needs 64-bit multiplies,
// which AVX-512DQ has).
STRAND_VECTOR_CLONES void dropout_range(int64_t begin, int64_t end, float rate, float scale, uint64_t key,
                                        uint64_t first, const float* in, float* out) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const float v = in[i] * scale;
    out[i] = dropout_keep(key, first + static_cast<uint64_t>(i), rate) ? v : 0.0f;
  }
}

void dropout(int64_t n, float rate, uint64_t key, uint64_t first, const float* in, float* out,
             ThreadPool& pool, const char* where) {
  const float scale = dropout_scale(rate, where);
  pool.parallel_for(n, kParallelMin, [&](int64_t begin, int64_t end) {
    dropout_range(begin, end, rate, scale, key, first, in, out);
  });
}

}  // namespace

void dropout_forward(int64_t n, float rate, uint64_t key, uint64_t first, const float* x, float* y,
                     ThreadPool& pool) {
  dropout(n, rate, key, first, x, y, pool, "cpu::dropout_forward");
}

void dropout_backward(int64_t n, float rate, uint64_t key, uint64_t first, const float* dy, float* dx,
                      ThreadPool& pool) {
  dropout(n, rate, key, first, dy, dx, pool, "cpu::dropout_backward");
}

}  // namespace strand::cpu
