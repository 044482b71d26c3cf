// Dense layer on multi-threaded sgemm. x [B,in], w [out,in], b [out], y [B,out].
#include <string>

#include <strand/core/cpu/gemm.hpp>
#include <strand/core/cpu/kernels.hpp>
#include <strand/core/error.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cpu {
void dense_forward(const DenseDesc& d, const float* x, const float* w, const float* b, float* y,
                   ThreadPool& pool) {
  check_dense(d, "cpu::dense_forward");
  // y starts as the bias rows so sgemm accumulates onto it (beta = 1) in one pass.
  for (int64_t n = 0; n < d.batch; ++n) {
#pragma omp simd
    for (int64_t o = 0; o < d.out; ++o) y[n * d.out + o] = b[o];
  }
  sgemm(false, true, d.batch, d.out, d.in, 1.0f, x, d.in, w, d.in, 1.0f, y, d.out, &pool);
}

void dense_backward(const DenseDesc& d, const float* x, const float* w, const float* dy, float* dx, float* dw,
                    float* db, ThreadPool& pool) {
  check_dense(d, "cpu::dense_backward");
  // dw [out,in] = dy^T [out,B] * x [B,in]
  sgemm(true, false, d.out, d.in, d.batch, 1.0f, dy, d.out, x, d.in, 0.0f, dw, d.in, &pool);
  // dx [B,in] = dy [B,out] * w [out,in]
  if (dx) sgemm(false, false, d.batch, d.in, d.out, 1.0f, dy, d.out, w, d.in, 0.0f, dx, d.in, &pool);
    // db[o] sums its column of dy in row order; rows are added whole so the loop vectorizes.
    // It is a few microseconds of work, not worth waking threads for.
#pragma omp simd
  for (int64_t o = 0; o < d.out; ++o) db[o] = dy[o];
  for (int64_t n = 1; n < d.batch; ++n) {
#pragma omp simd
    for (int64_t o = 0; o < d.out; ++o) db[o] += dy[n * d.out + o];
  }
}

}  // namespace strand::cpu
