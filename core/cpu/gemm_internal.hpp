// Test hook for sgemm: runs one named kernel family instead of the one picked for this CPU, so
// tests can check every family the machine supports against a reference.
#pragma once

#include <cstdint>

#include <strand/core/cpu/thread_pool.hpp>

namespace strand::cpu::gemm_detail {

enum class Family { avx512, avx2, generic };

// Whether this CPU can run the family's kernels (generic always can).
bool family_supported(Family family);

// sgemm (see gemm.hpp) forced onto `family`; the family must be supported.
void sgemm_with(Family family, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                ThreadPool* pool);

}  // namespace strand::cpu::gemm_detail
