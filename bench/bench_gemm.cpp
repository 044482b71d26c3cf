// sgemm throughput at the shapes the CNN runs at batch 100, on 1 and 2 threads.
// Conv layers run as GEMMs over im2col columns: conv2 has 64 output channels, 14x14 output
// pixels and 32 x 5 x 5 = 800 inputs per pixel. dense1 maps 3136 -> 1024 with weights stored
// [out, in]; dense2 maps 1024 -> 10.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/cpu/gemm.hpp"
#include "core/cpu/thread_pool.hpp"

namespace {

struct Shape {
  bool trans_a, trans_b;
  int64_t m, n, k;
};

void BM_sgemm(benchmark::State& state, Shape s) {
  strand::cpu::ThreadPool pool(static_cast<int>(state.range(0)));
  std::vector<float> a(static_cast<size_t>(s.m * s.k)), b(static_cast<size_t>(s.k * s.n));
  std::vector<float> c(static_cast<size_t>(s.m * s.n));
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& x : a) x = dist(rng);
  for (float& x : b) x = dist(rng);
  const int64_t lda = s.trans_a ? s.m : s.k, ldb = s.trans_b ? s.k : s.n;
  for (auto _ : state) {
    strand::cpu::sgemm(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb,
                       0.0f, c.data(), s.n, &pool);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * double(s.m) * double(s.n) * double(s.k);
  state.counters["FLOP/s"] =
      benchmark::Counter(flops * double(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(strand::cpu::sgemm_kernel_name());
}

// Real time: with 2 threads the calling thread's CPU time says little.
#define STRAND_GEMM_BENCH(name, ...)                    \
  BENCHMARK_CAPTURE(BM_sgemm, name, Shape{__VA_ARGS__}) \
      ->ArgName("threads")                              \
      ->Arg(1)                                          \
      ->Arg(2)                                          \
      ->UseRealTime()

// conv2 forward, one image at a time: W[64, 800] x cols[800, 196].
STRAND_GEMM_BENCH(conv2_fwd_image, false, false, 64, 196, 800);
// conv2 forward, the whole batch's columns side by side: W[64, 800] x cols[800, 19600].
STRAND_GEMM_BENCH(conv2_fwd_batch, false, false, 64, 19600, 800);
// conv2 weight gradient per image: dY[64, 196] x cols[800, 196]^T.
STRAND_GEMM_BENCH(conv2_wgrad_image, false, true, 64, 800, 196);
// conv2 input gradient per image: W[64, 800]^T x dY[64, 196].
STRAND_GEMM_BENCH(conv2_dcols_image, true, false, 800, 196, 64);
// dense1 forward: X[100, 3136] x W[1024, 3136]^T.
STRAND_GEMM_BENCH(dense1_fwd, false, true, 100, 1024, 3136);
// dense1 input gradient: dY[100, 1024] x W[1024, 3136].
STRAND_GEMM_BENCH(dense1_dx, false, false, 100, 3136, 1024);
// dense1 weight gradient: dY[100, 1024]^T x X[100, 3136].
STRAND_GEMM_BENCH(dense1_dw, true, false, 1024, 3136, 100);
// dense2 forward: X[100, 1024] x W[10, 1024]^T.
STRAND_GEMM_BENCH(dense2_fwd, false, true, 100, 10, 1024);
STRAND_GEMM_BENCH(square_1024, false, false, 1024, 1024, 1024);

}  // namespace
