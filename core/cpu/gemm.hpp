// Single-precision GEMM for the CPU backend, with kernels chosen at run time from the CPU's
// features (AVX-512, AVX2+FMA, or portable C++), so no environment variable is needed.
#pragma once

#include <cstdint>

namespace strand::cpu {

class ThreadPool;

// C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, all row-major.
// op(A) = A (lda >= k) or, with trans_a, A^T where A is [k,m] (lda >= m); likewise B.
// beta == 0 means C is written without being read (NaNs in C do not propagate).
// Runs on `pool` (nullptr: on the calling thread alone). Work is split over rows/columns of C,
// never over k, so every element's summation order, and therefore the result, is the same for
// any number of threads.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc, ThreadPool* pool);

// C[m,n] = A[m,k] * B[k,n] (row-major, no transposes, C overwritten) on the calling thread, for
// k small enough (tens) that sgemm's packing would cost a noticeable share of the work: A's
// values are broadcast and B's rows read in place. Same results for any caller's threading.
void sgemm_small_k(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                   float* c, int64_t ldc);

// The kernel family sgemm selected on this CPU: "avx512", "avx2" or "generic".
const char* sgemm_kernel_name();

}  // namespace strand::cpu
