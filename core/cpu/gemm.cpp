// sgemm, Goto/BLIS style.
//
// op(B) is cut into KC-deep, NC-wide blocks, each packed into NR-wide micro-panels; op(A) into
// MC x KC blocks packed into MR-tall micro-panels. Transposes are undone while packing and edges
// are zero-padded, so one register-blocked microkernel computes every MR x NR tile of C (edge
// tiles only mask their loads and stores of C). The B micro-panel stays in L1 while the
// microkernel walks the packed A block, which stays in L2.
//
// Threads take disjoint ranges of C's columns (or rows, whichever has more tiles) and run the
// whole loop nest on their range with their own packing buffers. Each element of C is summed in
// the same order (KC blocks in turn, one FMA chain over each) whatever the split, so results do
// not depend on the thread count.
//
// Kernel families: AVX-512 (MR x 32 tiles, MR = 8, 10, 12 or 14, whichever pads m least),
// AVX2+FMA (6x16) and portable C++ (4x8). The SIMD ones use target attributes, so the library
// needs no -march flag; the best family the CPU supports is picked once, at first use.
#include <strand/core/cpu/gemm.hpp>
#include <strand/core/cpu/thread_pool.hpp>

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include <strand/core/cpu/gemm_internal.hpp>

#define STRAND_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define STRAND_TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace strand::cpu {
namespace {

using gemm_detail::Family;

// C[0:mr, 0:nr] = alpha * A * B + beta * C (beta == 0: C is not read), where A is a packed
// micro-panel (kc steps of MR values) and B one of kc steps of NR values.
using Microkernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                             float beta, int mr, int nr);

// op(X)[i, p] lives at x[i * rs + p * cs]: (rs, cs) is (ld, 1) untransposed, (1, ld) transposed.
struct Matrix {
  const float* x;
  int64_t rs, cs;
  const float* at(int64_t i, int64_t p) const { return x + i * rs + p * cs; }
};

// Packs op(A)[0:mc, 0:kc] into mr-tall micro-panels (for each p, mr consecutive rows' values),
// zero-padding the last one.
using PackA = void (*)(Matrix a, int64_t mc, int64_t kc, int mr, float* dst);
// Packs op(B)[0:kc, 0:nc] into nr-wide micro-panels (for each p, nr consecutive columns' values)
// that start b_panel_stride(kc, nr) floats apart, zero-padding the last one.
using PackB = void (*)(Matrix b, int64_t kc, int64_t nc, int nr, float* dst);

// Distance between packed B micro-panels. One cache line more than kc * nr floats, so that the
// panels' starts do not all fall in the same cache set when a power of two apart (packing
// writes to all of them at once).
constexpr int64_t b_panel_stride(int64_t kc, int nr) { return kc * nr + 16; }

struct Kernel {
  Microkernel ukr;
  PackA pack_a;
  PackB pack_b;
  int mr, nr;
  int64_t kc, mc, nc;  // cache blocks; mc is a multiple of mr, nc of nr
};

template <int MR>
STRAND_TARGET_AVX512 void ukr_avx512(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                     float alpha, float beta, int mr, int nr) {
  __m512 lo[MR], hi[MR];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) lo[i] = hi[i] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      lo[i] = _mm512_fmadd_ps(ai, b0, lo[i]);
      hi[i] = _mm512_fmadd_ps(ai, b1, hi[i]);
    }
    a += MR;
    b += 32;
  }
  const __mmask16 m_lo = nr >= 16 ? 0xFFFF : (1u << nr) - 1;
  const __mmask16 m_hi = nr >= 32 ? 0xFFFF : nr > 16 ? (1u << (nr - 16)) - 1 : 0;
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    if (i >= mr) break;
    float* ci = c + i * ldc;
    __m512 r_lo = _mm512_mul_ps(lo[i], va), r_hi = _mm512_mul_ps(hi[i], va);
    if (beta != 0.0f) {
      r_lo = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m_lo, ci), r_lo);
      r_hi = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m_hi, ci + 16), r_hi);
    }
    _mm512_mask_storeu_ps(ci, m_lo, r_lo);
    _mm512_mask_storeu_ps(ci + 16, m_hi, r_hi);
  }
}

STRAND_TARGET_AVX2 void ukr_avx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                 float alpha, float beta, int mr, int nr) {
  constexpr int MR = 6;
  __m256 lo[MR], hi[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) lo[i] = hi[i] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      lo[i] = _mm256_fmadd_ps(ai, b0, lo[i]);
      hi[i] = _mm256_fmadd_ps(ai, b1, hi[i]);
    }
    a += MR;
    b += 16;
  }
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m_lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), lane);
  const __m256i m_hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), lane);
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    if (i >= mr) break;
    float* ci = c + i * ldc;
    __m256 r_lo = _mm256_mul_ps(lo[i], va), r_hi = _mm256_mul_ps(hi[i], va);
    if (beta != 0.0f) {
      r_lo = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci, m_lo), r_lo);
      r_hi = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci + 8, m_hi), r_hi);
    }
    _mm256_maskstore_ps(ci, m_lo, r_lo);
    _mm256_maskstore_ps(ci + 8, m_hi, r_hi);
  }
}

void ukr_generic(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta,
                 int mr, int nr) {
  constexpr int MR = 4, NR = 8;
  float acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p, a += MR, b += NR)
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
  for (int i = 0; i < mr; ++i) {
    float* ci = c + i * ldc;
    for (int j = 0; j < nr; ++j) {
      const float r = alpha * acc[i][j];
      ci[j] = beta != 0.0f ? beta * ci[j] + r : r;
    }
  }
}

void pack_a(Matrix a, int64_t mc, int64_t kc, int mr, float* dst) {
  for (int64_t i0 = 0; i0 < mc; i0 += mr, dst += mr * kc) {
    const int rows = static_cast<int>(std::min<int64_t>(mr, mc - i0));
    if (a.cs == 1) {  // read along A's rows, which are contiguous
      for (int i = 0; i < rows; ++i) {
        const float* src = a.at(i0 + i, 0);
        for (int64_t p = 0; p < kc; ++p) dst[p * mr + i] = src[p];
      }
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = a.at(i0, p);
        for (int i = 0; i < rows; ++i) dst[p * mr + i] = src[i * a.rs];
      }
    }
    for (int i = rows; i < mr; ++i)
      for (int64_t p = 0; p < kc; ++p) dst[p * mr + i] = 0.0f;
  }
}

void pack_b(Matrix b, int64_t kc, int64_t nc, int nr, float* dst) {
  for (int64_t j0 = 0; j0 < nc; j0 += nr, dst += b_panel_stride(kc, nr)) {
    const int cols = static_cast<int>(std::min<int64_t>(nr, nc - j0));
    if (b.cs == 1) {
      for (int64_t p = 0; p < kc; ++p) {
        std::memcpy(dst + p * nr, b.at(p, j0), sizeof(float) * cols);
        std::fill(dst + p * nr + cols, dst + (p + 1) * nr, 0.0f);
      }
    } else {  // read along op(B)'s columns, which are contiguous
      for (int j = 0; j < cols; ++j) {
        const float* src = b.at(0, j0 + j);
        for (int64_t p = 0; p < kc; ++p) dst[p * nr + j] = src[p];
      }
      for (int j = cols; j < nr; ++j)
        for (int64_t p = 0; p < kc; ++p) dst[p * nr + j] = 0.0f;
    }
  }
}

// In-register transpose of an 8x8 block: r[i] holds row i on entry and column i on return.
[[gnu::always_inline]] STRAND_TARGET_AVX2 inline void transpose8(__m256 r[8]) {
  __m256 t[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {  // interleave row pairs
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 2
  for (int i = 0; i < 2; ++i) {  // 4x4 transposes within each 128-bit lane
    r[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {  // then swap the lanes: rows 0-3 with rows 4-7
    t[c] = _mm256_permute2f128_ps(r[c], r[4 + c], 0x20);
    t[4 + c] = _mm256_permute2f128_ps(r[c], r[4 + c], 0x31);
  }
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) r[i] = t[i];
}

// pack_b for nr a multiple of 8. When op(B) = B^T (a dense layer's weights in its forward pass),
// scalar packing gathers every value on its own; here full 8x8 blocks are transposed in
// registers, and only partial panels and the last few steps of p are left to pack_b.
STRAND_TARGET_AVX2 void pack_b_avx2(Matrix b, int64_t kc, int64_t nc, int nr, float* dst) {
  if (b.cs == 1) {  // rows of op(B) are contiguous: pack_b copies them
    pack_b(b, kc, nc, nr, dst);
    return;
  }
  const int64_t stride = b_panel_stride(kc, nr);
  const int64_t full_p = kc / 8 * 8;
  for (int64_t j0 = 0; j0 < nc; j0 += nr, dst += stride) {
    if (nc - j0 < nr) {
      pack_b({b.at(0, j0), b.rs, b.cs}, kc, nc - j0, nr, dst);
      continue;
    }
    for (int h = 0; h < nr; h += 8) {
      for (int64_t p0 = 0; p0 < full_p; p0 += 8) {
        __m256 r[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(b.at(p0, j0 + h + i));
        transpose8(r);
#pragma GCC unroll 8
        for (int q = 0; q < 8; ++q) _mm256_store_ps(dst + (p0 + q) * nr + h, r[q]);
      }
      for (int64_t p = full_p; p < kc; ++p)
        for (int i = 0; i < 8; ++i) dst[p * nr + h + i] = *b.at(p, j0 + h + i);
    }
  }
}

// In-register transpose of a 16x16 block: r[i] holds row i on entry and column i on return.
// The maskz forms with a full mask are the same instructions; the plain ones trip GCC 12's
// -Wuninitialized on their _mm512_undefined_ps() (GCC bug 105593).
[[gnu::always_inline]] STRAND_TARGET_AVX512 inline void transpose16(__m512 r[16]) {
  constexpr __mmask16 kAll = 0xFFFF;
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {  // interleave row pairs
    t[2 * i] = _mm512_maskz_unpacklo_ps(kAll, r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_maskz_unpackhi_ps(kAll, r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {  // 4x4 transposes within each 128-bit lane
    r[4 * i] = _mm512_maskz_shuffle_ps(kAll, t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_maskz_shuffle_ps(kAll, t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_maskz_shuffle_ps(kAll, t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_maskz_shuffle_ps(kAll, t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {  // then the 4x4 transpose of the lanes themselves
    t[c] = _mm512_maskz_shuffle_f32x4(kAll, r[c], r[4 + c], 0x88);
    t[4 + c] = _mm512_maskz_shuffle_f32x4(kAll, r[c], r[4 + c], 0xDD);
    t[8 + c] = _mm512_maskz_shuffle_f32x4(kAll, r[8 + c], r[12 + c], 0x88);
    t[12 + c] = _mm512_maskz_shuffle_f32x4(kAll, r[8 + c], r[12 + c], 0xDD);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm512_maskz_shuffle_f32x4(kAll, t[c], t[8 + c], 0x88);
    r[8 + c] = _mm512_maskz_shuffle_f32x4(kAll, t[c], t[8 + c], 0xDD);
    r[4 + c] = _mm512_maskz_shuffle_f32x4(kAll, t[4 + c], t[12 + c], 0x88);
    r[12 + c] = _mm512_maskz_shuffle_f32x4(kAll, t[4 + c], t[12 + c], 0xDD);
  }
}

// r[q] = column q of the rows x cols block at x (row stride ld), zero past `rows`; rows and
// cols are at most 16.
[[gnu::always_inline]] STRAND_TARGET_AVX512 inline void load_transposed(const float* x, int64_t ld, int rows,
                                                                        int cols, __m512 r[16]) {
  const __mmask16 mask = static_cast<__mmask16>((1u << cols) - 1);
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i)
    r[i] = i < rows ? _mm512_maskz_loadu_ps(mask, x + i * ld) : _mm512_setzero_ps();
  transpose16(r);
}

// pack_a for mr <= 16, transposing 16x16 blocks in registers when A's rows are contiguous.
STRAND_TARGET_AVX512 void pack_a_avx512(Matrix a, int64_t mc, int64_t kc, int mr, float* dst) {
  const __mmask16 panel = static_cast<__mmask16>((1u << mr) - 1);
  for (int64_t i0 = 0; i0 < mc; i0 += mr, dst += mr * kc) {
    const int rows = static_cast<int>(std::min<int64_t>(mr, mc - i0));
    if (a.cs == 1) {
      for (int64_t p0 = 0; p0 < kc; p0 += 16) {
        const int cols = static_cast<int>(std::min<int64_t>(16, kc - p0));
        __m512 r[16];
        load_transposed(a.at(i0, p0), a.rs, rows, cols, r);
#pragma GCC unroll 16
        for (int q = 0; q < 16; ++q)
          if (q < cols) _mm512_mask_storeu_ps(dst + (p0 + q) * mr, panel, r[q]);
      }
    } else {  // op(A) = A^T: each p's values are already contiguous
      const __mmask16 valid = static_cast<__mmask16>((1u << rows) - 1);
      for (int64_t p = 0; p < kc; ++p)
        _mm512_mask_storeu_ps(dst + p * mr, panel, _mm512_maskz_loadu_ps(valid, a.at(i0, p)));
    }
  }
}

// pack_b for nr == NR, a multiple of 16 (a constant, for cheap panel indexing), transposing
// 16x16 blocks in registers when op(B) = B^T.
template <int NR>
STRAND_TARGET_AVX512 void pack_b_avx512(Matrix b, int64_t kc, int64_t nc, int /*nr*/, float* dst) {
  constexpr int nr = NR;
  const int64_t stride = b_panel_stride(kc, nr);
  if (b.cs == 1) {
    // Row by row, so that B is read sequentially (it often comes from memory); each row is
    // dealt out to all the panels.
    const int64_t full = nc / 16 * 16;
    for (int64_t p = 0; p < kc; ++p) {
      const float* src = b.at(p, 0);
      float* row = dst + p * nr;  // row p of the first panel
      int64_t j = 0;
      for (; j < full; j += 16) _mm512_store_ps(row + (j / nr) * stride + j % nr, _mm512_loadu_ps(src + j));
      for (; j < (nc + nr - 1) / nr * nr; j += 16) {  // partial and padding vectors
        const int cols = static_cast<int>(std::clamp<int64_t>(nc - j, 0, 16));
        const __mmask16 valid = static_cast<__mmask16>((1u << cols) - 1);
        _mm512_store_ps(row + (j / nr) * stride + j % nr, _mm512_maskz_loadu_ps(valid, src + j));
      }
    }
    return;
  }
  for (int64_t j0 = 0; j0 < nc; j0 += nr, dst += stride) {
    for (int h = 0; h < nr; h += 16) {
      const int cols = static_cast<int>(std::clamp<int64_t>(nc - j0 - h, 0, 16));
      if (cols == 0) {
        for (int64_t p = 0; p < kc; ++p) _mm512_store_ps(dst + p * nr + h, _mm512_setzero_ps());
        continue;
      }
      for (int64_t p0 = 0; p0 < kc; p0 += 16) {
        const int depth = static_cast<int>(std::min<int64_t>(16, kc - p0));
        __m512 r[16];
        load_transposed(b.at(p0, j0 + h), b.cs, cols, depth, r);
#pragma GCC unroll 16
        for (int q = 0; q < 16; ++q)
          if (q < depth) _mm512_store_ps(dst + (p0 + q) * nr + h, r[q]);
      }
    }
  }
}

// Several tile heights, so that common m (64, 100, ...) need no padded rows.
constexpr Kernel kAvx512[] = {
    {&ukr_avx512<8>, &pack_a_avx512, &pack_b_avx512<32>, 8, 32, 256, 160, 4096},
    {&ukr_avx512<10>, &pack_a_avx512, &pack_b_avx512<32>, 10, 32, 256, 160, 4096},
    {&ukr_avx512<12>, &pack_a_avx512, &pack_b_avx512<32>, 12, 32, 256, 168, 4096},
    {&ukr_avx512<14>, &pack_a_avx512, &pack_b_avx512<32>, 14, 32, 256, 168, 4096},
};
constexpr Kernel kAvx2[] = {{&ukr_avx2, &pack_a, &pack_b_avx2, 6, 16, 256, 96, 4096}};
constexpr Kernel kGeneric[] = {{&ukr_generic, &pack_a, &pack_b, 4, 8, 256, 64, 4096}};

// 64-byte aligned per-thread packing space, kept between calls so that repeated GEMMs do not
// pay for allocation and page faults each time.
float* scratch(std::vector<float>& buf, std::size_t floats) {
  if (buf.size() < floats + 16) buf.resize(floats + 16);
  const auto addr = reinterpret_cast<std::uintptr_t>(buf.data());
  return reinterpret_cast<float*>((addr + 63) & ~std::uintptr_t{63});
}

struct Problem {
  Matrix a, b;
  float* c;
  int64_t ldc, k;
  float alpha, beta;
};

// Even KC blocks: k = 300 runs as 2 x 150 rather than 256 + 44.
int64_t kc_for(const Kernel& kn, int64_t k) {
  const int64_t k_blocks = (k + kn.kc - 1) / kn.kc;
  return (k + k_blocks - 1) / k_blocks;
}
int64_t mc_for(const Kernel& kn, int64_t rows) { return std::min(kn.mc, (rows + kn.mr - 1) / kn.mr * kn.mr); }

// A packed once for all of rows [m0, m1): every (KC, MC) block at its own place. The first
// gemm_range() given it fills it, later ones (the same thread's next column chunks of the same
// product) only read it.
struct PackedA {
  float* data = nullptr;  // [k block][m block][mc * kc]
  bool filled = false;
  static int64_t floats(const Kernel& kn, int64_t rows, int64_t k) {
    const int64_t kc = kc_for(kn, k), mc = mc_for(kn, rows);
    return (k + kc - 1) / kc * ((rows + mc - 1) / mc) * mc * kc;
  }
};

// C[m0:m1, n0:n1] of the problem, on the calling thread.
void gemm_range(const Kernel& kn, const Problem& pr, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                PackedA* packed = nullptr) {
  const int64_t kc = kc_for(kn, pr.k);
  const int64_t mc = mc_for(kn, m1 - m0);
  const int64_t nc = std::min(kn.nc, (n1 - n0 + kn.nr - 1) / kn.nr * kn.nr);
  const int64_t m_blocks = (m1 - m0 + mc - 1) / mc;
  thread_local std::vector<float> a_buf, b_buf;
  float* const pa = packed ? nullptr : scratch(a_buf, static_cast<std::size_t>(mc * kc));
  float* const pb = scratch(b_buf, static_cast<std::size_t>(b_panel_stride(kc, kn.nr) * nc / kn.nr));

  for (int64_t jc = n0; jc < n1; jc += nc) {
    const int64_t n_cur = std::min(nc, n1 - jc);
    for (int64_t pc = 0; pc < pr.k; pc += kc) {
      const int64_t k_cur = std::min(kc, pr.k - pc);
      kn.pack_b({pr.b.at(pc, jc), pr.b.rs, pr.b.cs}, k_cur, n_cur, kn.nr, pb);
      // Later KC blocks accumulate onto what the earlier ones wrote.
      const float beta = pc == 0 ? pr.beta : 1.0f;
      for (int64_t ic = m0; ic < m1; ic += mc) {
        const int64_t m_cur = std::min(mc, m1 - ic);
        float* const a_block = packed ? packed->data + (pc / kc * m_blocks + (ic - m0) / mc) * mc * kc : pa;
        if (!packed || !packed->filled)
          kn.pack_a({pr.a.at(ic, pc), pr.a.rs, pr.a.cs}, m_cur, k_cur, kn.mr, a_block);
        for (int64_t jr = 0; jr < n_cur; jr += kn.nr) {
          const int nr = static_cast<int>(std::min<int64_t>(kn.nr, n_cur - jr));
          for (int64_t ir = 0; ir < m_cur; ir += kn.mr) {
            const int mr = static_cast<int>(std::min<int64_t>(kn.mr, m_cur - ir));
            kn.ukr(k_cur, a_block + ir * k_cur, pb + jr / kn.nr * b_panel_stride(k_cur, kn.nr),
                   pr.c + (ic + ir) * pr.ldc + jc + jr, pr.ldc, pr.alpha, beta, mr, nr);
          }
        }
      }
    }
    if (packed) packed->filled = true;  // the first column block packed every block of A
  }
}

// C = beta * C, for the cases with no product to add (k == 0 or alpha == 0).
void scale_c(int64_t m, int64_t n, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.0f)
      std::fill(ci, ci + n, 0.0f);
    else
      for (int64_t j = 0; j < n; ++j) ci[j] *= beta;
  }
}

// The family's kernel that pads m least, counting taller tiles slightly cheaper per row (each
// B vector they load serves more rows). The choice depends on m alone, so it is the same for every
// thread's part; it does not change results anyway, as every tile sums in the same order.
const Kernel& kernel_for(Family family, int64_t m) {
  std::span<const Kernel> options = kGeneric;
  if (family == Family::avx512) options = kAvx512;
  if (family == Family::avx2) options = kAvx2;
  const Kernel* best = &options.front();
  double best_cost = 0;
  for (const Kernel& kn : options) {
    const double cost = double((m + kn.mr - 1) / kn.mr * kn.mr) * (1.0 + 0.5 / kn.mr);
    if (&kn == &options.front() || cost < best_cost) {
      best = &kn;
      best_cost = cost;
    }
  }
  return *best;
}

// Unpacked product for small k (see sgemm_small_k): rows of A are broadcast, rows of B loaded
// straight from memory. R rows of C by up to 32 columns per call, masks covering the columns.
template <int R>
STRAND_TARGET_AVX512 void small_k_tile_avx512(int64_t k, const float* a, int64_t lda, const float* b,
                                              int64_t ldb, float* c, int64_t ldc, __mmask16 m0,
                                              __mmask16 m1) {
  __m512 lo[R], hi[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) lo[r] = hi[r] = _mm512_setzero_ps();
  for (int64_t p = 0; p < k; ++p) {
    const __m512 b0 = _mm512_maskz_loadu_ps(m0, b + p * ldb);
    const __m512 b1 = _mm512_maskz_loadu_ps(m1, b + p * ldb + 16);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * lda + p]);
      lo[r] = _mm512_fmadd_ps(av, b0, lo[r]);
      hi[r] = _mm512_fmadd_ps(av, b1, hi[r]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, lo[r]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, hi[r]);
  }
}

using SmallKTile = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t, __mmask16,
                            __mmask16);

template <int... R>
constexpr std::array<SmallKTile, sizeof...(R)> small_k_tiles(std::integer_sequence<int, R...>) {
  return {&small_k_tile_avx512<R + 1>...};
}

constexpr int kSmallKRows = 12;  // 24 accumulators of the 32 registers

STRAND_TARGET_AVX512 void sgemm_small_k_avx512(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                                               const float* b, int64_t ldb, float* c, int64_t ldc) {
  static constexpr auto tiles = small_k_tiles(std::make_integer_sequence<int, kSmallKRows>{});
  for (int64_t j = 0; j < n; j += 32) {
    const int64_t cols = std::min<int64_t>(32, n - j);
    const auto m0 = static_cast<__mmask16>(cols >= 16 ? 0xFFFF : (1u << cols) - 1);
    const auto m1 = static_cast<__mmask16>(cols <= 16 ? 0 : cols >= 32 ? 0xFFFF : (1u << (cols - 16)) - 1);
    for (int64_t i = 0; i < m; i += kSmallKRows) {
      const int64_t rows = std::min<int64_t>(kSmallKRows, m - i);
      tiles[rows - 1](k, a + i * lda, lda, b + j, ldb, c + i * ldc + j, ldc, m0, m1);
    }
  }
}

Family best_family() {
  static const Family family = [] {
    if (gemm_detail::family_supported(Family::avx512)) return Family::avx512;
    if (gemm_detail::family_supported(Family::avx2)) return Family::avx2;
    return Family::generic;
  }();
  return family;
}

}  // namespace

namespace gemm_detail {

bool family_supported(Family family) {
  __builtin_cpu_init();
  switch (family) {
    case Family::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("fma");
    case Family::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Family::generic:
      return true;
  }
  return false;
}

void sgemm_with(Family family, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                ThreadPool* pool) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.0f) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  const Kernel& kn = kernel_for(family, m);
  const Matrix op_a = trans_a ? Matrix{a, 1, lda} : Matrix{a, lda, 1};
  const Matrix op_b = trans_b ? Matrix{b, 1, ldb} : Matrix{b, ldb, 1};
  const Problem pr{op_a, op_b, c, ldc, k, alpha, beta};

  // Split whichever dimension of C has more microkernel tiles, in whole tiles.
  const int64_t tiles_m = (m + kn.mr - 1) / kn.mr, tiles_n = (n + kn.nr - 1) / kn.nr;
  const bool split_n = tiles_n >= tiles_m;
  const int64_t tiles = split_n ? tiles_n : tiles_m;
  // Below ~1M multiply-adds a second thread costs more to wake than it saves.
  constexpr int64_t kMinParallelMacs = int64_t{1} << 20;
  int64_t team = std::clamp<int64_t>(pool ? pool->size() : 1, 1, tiles);
  if (m * n * k < kMinParallelMacs) team = 1;

  if (team == 1) {
    gemm_range(kn, pr, 0, m, 0, n);
    return;
  }
  if (split_n) {
    // Column chunks of whole tiles, a few per thread, to whichever thread is free, so a thread
    // the OS preempts holds up one chunk rather than half the product; each thread packs A
    // once for all its chunks.
    const int64_t chunk_tiles = std::max<int64_t>(1, tiles / (int64_t{ThreadPool::kChunksPerThread} * team));
    const int64_t chunks = (tiles + chunk_tiles - 1) / chunk_tiles;
    thread_local std::vector<float> a_packed;
    std::vector<PackedA> packed(static_cast<std::size_t>(team));
    pool->run_chunks(chunks, [&](int t, int64_t c) {
      PackedA& pa = packed[static_cast<std::size_t>(t)];
      if (!pa.data) pa.data = scratch(a_packed, static_cast<std::size_t>(PackedA::floats(kn, m, k)));
      gemm_range(kn, pr, 0, m, c * chunk_tiles * kn.nr, std::min(n, (c + 1) * chunk_tiles * kn.nr), &pa);
    });
    return;
  }
  // Row halves: chunks of rows would each repack all of B.
  pool->run(static_cast<int>(team), [&](int part) {
    const int64_t t0 = tiles * part / team, t1 = tiles * (part + 1) / team;
    gemm_range(kn, pr, t0 * kn.mr, std::min(m, t1 * kn.mr), 0, n);
  });
}

}  // namespace gemm_detail

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc, ThreadPool* pool) {
  gemm_detail::sgemm_with(best_family(), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                          pool);
}

void sgemm_small_k(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                   float* c, int64_t ldc) {
  if (best_family() == Family::avx512 && m > 0 && n > 0) {
    sgemm_small_k_avx512(m, n, k, a, lda, b, ldb, c, ldc);
    return;
  }
  sgemm(false, false, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc, nullptr);
}

const char* sgemm_kernel_name() {
  switch (best_family()) {
    case Family::avx512:
      return "avx512";
    case Family::avx2:
      return "avx2";
    case Family::generic:
      break;
  }
  return "generic";
}

}  // namespace strand::cpu
