// sgemm against a naive double-accumulating reference: transposes, alpha/beta, odd and padded
// shapes, k == 0, every kernel family this CPU supports, and bit-identical results across thread
// counts and repeated calls.
#include <gtest/gtest.h>

#include <thread>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <strand/core/cpu/gemm.hpp>
#include <strand/core/cpu/gemm_internal.hpp>
#include <strand/core/cpu/thread_pool.hpp>

namespace {

using strand::cpu::gemm_detail::Family;

struct Shape {
  bool ta, tb;
  int64_t m, n, k;
  int64_t pad = 0;  // added to every leading dimension
};

// Operands of a shape, with leading dimensions `pad` larger than needed. Padding holds NaN so
// that reading outside the matrices shows up in the result.
struct Operands {
  Shape s;
  int64_t lda, ldb, ldc;
  std::vector<float> a, b, c;

  Operands(Shape shape, uint32_t seed) : s(shape) {
    lda = (s.ta ? s.m : s.k) + s.pad;
    ldb = (s.tb ? s.k : s.n) + s.pad;
    ldc = s.n + s.pad;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    a.assign(static_cast<size_t>((s.ta ? s.k : s.m) * lda), nan);
    b.assign(static_cast<size_t>((s.tb ? s.n : s.k) * ldb), nan);
    c.assign(static_cast<size_t>(s.m * ldc), nan);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t p = 0; p < s.k; ++p) a[idx_a(i, p)] = dist(rng);
    for (int64_t p = 0; p < s.k; ++p)
      for (int64_t j = 0; j < s.n; ++j) b[idx_b(p, j)] = dist(rng);
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = 0; j < s.n; ++j) c[static_cast<size_t>(i * ldc + j)] = dist(rng);
  }
  size_t idx_a(int64_t i, int64_t p) const { return static_cast<size_t>(s.ta ? p * lda + i : i * lda + p); }
  size_t idx_b(int64_t p, int64_t j) const { return static_cast<size_t>(s.tb ? j * ldb + p : p * ldb + j); }
  void fill_c(float value) {
    for (int64_t i = 0; i < s.m; ++i) std::fill_n(c.begin() + i * ldc, s.n, value);
  }
};

std::vector<float> run(const Operands& op, float alpha, float beta, int threads,
                       const Family* family = nullptr) {
  strand::cpu::ThreadPool pool(threads);
  std::vector<float> c = op.c;
  const Shape& s = op.s;
  if (family)
    strand::cpu::gemm_detail::sgemm_with(*family, s.ta, s.tb, s.m, s.n, s.k, alpha, op.a.data(), op.lda,
                                         op.b.data(), op.ldb, beta, c.data(), op.ldc, &pool);
  else
    strand::cpu::sgemm(s.ta, s.tb, s.m, s.n, s.k, alpha, op.a.data(), op.lda, op.b.data(), op.ldb, beta,
                       c.data(), op.ldc, &pool);
  return c;
}

// Checks `got` (C after the call) element by element against a double-precision reference,
// within a bound proportional to k and the magnitude of the terms summed; the padding of C
// must be untouched.
void expect_matches_reference(const Operands& op, float alpha, float beta, const std::vector<float>& got) {
  const Shape& s = op.s;
  constexpr double eps = std::numeric_limits<float>::epsilon();
  int failures = 0;
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = 0; j < op.ldc; ++j) {
      const size_t at = static_cast<size_t>(i * op.ldc + j);
      if (j >= s.n) {  // padding: same bits as before
        ASSERT_EQ(std::memcmp(&got[at], &op.c[at], sizeof(float)), 0) << "row " << i;
        continue;
      }
      double sum = 0, magnitude = 0;
      for (int64_t p = 0; p < s.k; ++p) {
        const double term = double(op.a[op.idx_a(i, p)]) * double(op.b[op.idx_b(p, j)]);
        sum += term;
        magnitude += std::fabs(term);
      }
      double want = double(alpha) * sum;
      magnitude = std::fabs(alpha) * magnitude;
      if (beta != 0.0f) {
        want += double(beta) * double(op.c[at]);
        magnitude += std::fabs(double(beta) * double(op.c[at]));
      }
      const double tol = 2.0 * double(s.k + 2) * eps * magnitude + 1e-30;
      if (!(std::fabs(double(got[at]) - want) <= tol) && ++failures <= 5)
        ADD_FAILURE() << "C[" << i << "," << j << "] = " << got[at] << ", want " << want << " (tol " << tol
                      << ")";
    }
  }
  EXPECT_EQ(failures, 0);
}

std::string describe(const Shape& s, float alpha, float beta) {
  return "ta=" + std::to_string(s.ta) + " tb=" + std::to_string(s.tb) + " m=" + std::to_string(s.m) +
         " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k) + " pad=" + std::to_string(s.pad) +
         " alpha=" + std::to_string(alpha) + " beta=" + std::to_string(beta);
}

constexpr int64_t kOddSizes[] = {1, 3, 17, 31, 33, 65, 100, 257};

TEST(Sgemm, AllTransposesAndOddSizes) {
  uint32_t seed = 1;
  for (int t = 0; t < 4; ++t)
    for (int64_t m : kOddSizes)
      for (int64_t n : kOddSizes)
        for (int64_t k : {1, 17, 100, 300}) {
          // Skip the largest combinations: the reference is slow and they add nothing new.
          if (m * n * k > 3'000'000) continue;
          const Shape s{(t & 1) != 0, (t & 2) != 0, m, n, k};
          SCOPED_TRACE(describe(s, 1.0f, 0.0f));
          const Operands op(s, seed++);
          expect_matches_reference(op, 1.0f, 0.0f, run(op, 1.0f, 0.0f, 2));
        }
}

TEST(Sgemm, AlphaBeta) {
  const float alphas[] = {1.0f, -0.5f, 2.0f};
  const float betas[] = {0.0f, 1.0f, -1.5f, 0.25f};
  uint32_t seed = 100;
  for (int t = 0; t < 4; ++t)
    for (float alpha : alphas)
      for (float beta : betas)
        for (int64_t k : {3, 257, 600}) {  // 600 spans several cache blocks of k
          const Shape s{(t & 1) != 0, (t & 2) != 0, 33, 65, k};
          SCOPED_TRACE(describe(s, alpha, beta));
          const Operands op(s, seed++);
          expect_matches_reference(op, alpha, beta, run(op, alpha, beta, 1));
        }
}

TEST(Sgemm, LeadingDimensionsLargerThanNeeded) {
  uint32_t seed = 200;
  for (int t = 0; t < 4; ++t)
    for (int64_t pad : {1, 7, 64}) {
      const Shape s{(t & 1) != 0, (t & 2) != 0, 31, 100, 65, pad};
      SCOPED_TRACE(describe(s, 0.75f, 0.5f));
      const Operands op(s, seed++);
      expect_matches_reference(op, 0.75f, 0.5f, run(op, 0.75f, 0.5f, 2));
    }
}

// The unpacked small-k product (Winograd's 36 products): every row count of its 12-row tiles,
// column counts around its 16-wide masks, k from 0 to past the tile, padded leading dimensions
// (NaN there must not leak in), and C overwritten whatever it held.
TEST(SgemmSmallK, MatchesReferenceOnAwkwardSizes) {
  for (int64_t m : {1, 5, 11, 12, 13, 25, 49})
    for (int64_t n : {1, 7, 15, 16, 17, 31, 32, 33, 64, 70})
      for (int64_t k : {0, 1, 3, 32, 37}) {
        Operands op(Shape{false, false, m, n, k, 3}, static_cast<uint32_t>(m * 10007 + n * 101 + k));
        SCOPED_TRACE(describe(op.s, 1.0f, 0.0f));
        std::vector<float> c = op.c;
        strand::cpu::sgemm_small_k(m, n, k, op.a.data(), op.lda, op.b.data(), op.ldb, c.data(), op.ldc);
        expect_matches_reference(op, 1.0f, 0.0f, c);
      }
}

TEST(Sgemm, BetaZeroIgnoresNaNInC) {
  for (int t = 0; t < 4; ++t) {
    const Shape s{(t & 1) != 0, (t & 2) != 0, 65, 33, 17, 3};
    SCOPED_TRACE(describe(s, 1.0f, 0.0f));
    Operands op(s, 300 + t);
    op.fill_c(std::numeric_limits<float>::quiet_NaN());
    expect_matches_reference(op, 1.0f, 0.0f, run(op, 1.0f, 0.0f, 2));
  }
}

TEST(Sgemm, ZeroK) {
  for (float beta : {0.0f, 1.0f, -2.0f}) {
    const Shape s{false, false, 17, 31, 0, 2};
    SCOPED_TRACE(describe(s, 1.0f, beta));
    Operands op(s, 400);
    if (beta == 0.0f) op.fill_c(std::numeric_limits<float>::quiet_NaN());
    expect_matches_reference(op, 1.0f, beta, run(op, 1.0f, beta, 2));
  }
}

TEST(Sgemm, ZeroAlphaOnlyScalesC) {
  const Shape s{false, true, 33, 17, 65};
  Operands op(s, 500);
  expect_matches_reference(op, 0.0f, 0.5f, run(op, 0.0f, 0.5f, 1));
}

TEST(Sgemm, EmptyOutputIsANoOp) {
  float c = 1.0f;
  strand::cpu::ThreadPool pool(2);
  strand::cpu::sgemm(false, false, 0, 5, 5, 1.0f, nullptr, 5, nullptr, 5, 0.0f, &c, 5, &pool);
  strand::cpu::sgemm(false, false, 5, 0, 5, 1.0f, nullptr, 5, nullptr, 5, 0.0f, &c, 1, &pool);
  EXPECT_EQ(c, 1.0f);
}

// Shapes big enough to be split across threads, with edge tiles in both dimensions, and the
// two ways of splitting (wide C is split by columns, tall C by rows).
const Shape kThreadedShapes[] = {
    {false, false, 257, 301, 129}, {true, true, 100, 1000, 300},  {false, true, 1000, 33, 600},
    {true, false, 64, 196, 800},   {false, true, 333, 2000, 520},  // split by columns into chunks: A packed
                                                                   // once per thread, 3x3 blocks
};

TEST(Sgemm, BitIdenticalAcrossThreadCountsAndCalls) {
  uint32_t seed = 600;
  for (const Shape& s : kThreadedShapes) {
    SCOPED_TRACE(describe(s, 1.0f, 0.5f));
    const Operands op(s, seed++);
    const std::vector<float> one = run(op, 1.0f, 0.5f, 1);
    expect_matches_reference(op, 1.0f, 0.5f, one);
    for (int threads : {1, 2, 3, 4}) {
      SCOPED_TRACE("threads=" + std::to_string(threads));
      const std::vector<float> again = run(op, 1.0f, 0.5f, threads);
      EXPECT_EQ(std::memcmp(one.data(), again.data(), one.size() * sizeof(float)), 0);
    }
  }
}

TEST(Sgemm, NestedAndConcurrentCallsShareOnePool) {
  const Shape s = kThreadedShapes[0];
  const Operands op(s, 700);
  const std::vector<float> want = run(op, 1.0f, 0.0f, 1);
  strand::cpu::ThreadPool pool(2);
  auto call = [&] {
    std::vector<float> c = op.c;
    strand::cpu::sgemm(s.ta, s.tb, s.m, s.n, s.k, 1.0f, op.a.data(), op.lda, op.b.data(), op.ldb, 0.0f,
                       c.data(), op.ldc, &pool);
    return c;
  };
  // From inside a part of the pool's own job: the nested call runs serially.
  std::vector<std::vector<float>> nested(2);
  pool.run(2, [&](int part) { nested[static_cast<size_t>(part)] = call(); });
  // From two threads at once: one gets the pool, the other runs serially.
  std::vector<float> a, b;
  std::thread other([&] { a = call(); });
  b = call();
  other.join();
  for (const auto* g : {&nested[0], &nested[1], &a, &b})
    EXPECT_EQ(std::memcmp(want.data(), g->data(), want.size() * sizeof(float)), 0);
}

// sgemm must pick the fastest kernels this CPU can run by itself (no environment variable):
// on an AVX-512 machine that is never the AVX2 or portable path.
TEST(Sgemm, PicksTheFastestKernelsTheCpuSupports) {
  const std::string name = strand::cpu::sgemm_kernel_name();
  const char* want = family_supported(Family::avx512) ? "avx512"
                     : family_supported(Family::avx2) ? "avx2"
                                                      : "generic";
  EXPECT_EQ(name, want);
}

TEST(SgemmFamilies, EachSupportedFamilyMatchesReference) {
  const std::pair<Family, const char*> families[] = {
      {Family::avx512, "avx512"}, {Family::avx2, "avx2"}, {Family::generic, "generic"}};
  EXPECT_TRUE(strand::cpu::gemm_detail::family_supported(Family::generic));
  uint32_t seed = 800;
  for (const auto& [family, name] : families) {
    if (!strand::cpu::gemm_detail::family_supported(family)) {
      std::printf("skipping unsupported kernel family %s\n", name);
      continue;
    }
    SCOPED_TRACE(name);
    for (int t = 0; t < 4; ++t)
      for (int64_t size : {1, 17, 33, 100}) {
        const Shape s{(t & 1) != 0, (t & 2) != 0, size, size + 14, 300, 5};
        SCOPED_TRACE(describe(s, -1.25f, 0.5f));
        const Operands op(s, seed++);
        expect_matches_reference(op, -1.25f, 0.5f, run(op, -1.25f, 0.5f, 2, &family));
      }
    for (const Shape& s : kThreadedShapes) {
      SCOPED_TRACE(describe(s, 1.0f, 0.0f));
      Operands op(s, seed++);
      op.fill_c(std::numeric_limits<float>::quiet_NaN());
      const std::vector<float> one = run(op, 1.0f, 0.0f, 1, &family);
      expect_matches_reference(op, 1.0f, 0.0f, one);
      const std::vector<float> two = run(op, 1.0f, 0.0f, 2, &family);
      EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0);
    }
  }
}

}  // namespace
