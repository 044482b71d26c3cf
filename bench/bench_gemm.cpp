// sgemm throughput at the shapes the CNN runs at batch 100 (models/op_cases.hpp), on 1 and 2
// threads. Conv layers run as GEMMs over im2col columns: conv2 has 64 output channels, 14x14
// output pixels and 32 x 5 x 5 = 800 inputs per pixel. dense1 maps 3136 -> 1024 with weights
// stored [out, in]; dense2 maps 1024 -> 10.
//   bench_gemm [--json FILE] [Google Benchmark flags]
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <strand/core/cpu/gemm.hpp>
#include <strand/core/cpu/thread_pool.hpp>
#include <strand/models/models.hpp>
#include <strand/models/op_cases.hpp>
#include "bench/bench_main.hpp"

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
    strand::cpu::sgemm(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f,
                       c.data(), s.n, &pool);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * double(s.m) * double(s.n) * double(s.k);
  state.counters["FLOP/s"] =
      benchmark::Counter(flops * double(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(strand::cpu::sgemm_kernel_name());
}

void add(const std::string& name, Shape shape) {
  // Real time: with 2 threads the calling thread's CPU time says little.
  benchmark::RegisterBenchmark(("BM_sgemm/" + name).c_str(),
                               [shape](benchmark::State& s) { BM_sgemm(s, shape); })
      ->ArgName("threads")
      ->Arg(1)
      ->Arg(2)
      ->UseRealTime();
}

}  // namespace

void register_benchmarks() {
  using strand::models::op_named;
  const auto ops = strand::models::op_cases(strand::models::mnist_cnn(), 100);
  const strand::Conv2dDesc c2 = op_named(ops, "conv2").conv;
  const strand::DenseDesc d1 = op_named(ops, "dense1").dense, d2 = op_named(ops, "dense2").dense;
  const int64_t pixels = c2.out_h() * c2.out_w(), taps = c2.in_c * c2.kernel_h * c2.kernel_w;
  // conv2 forward, one image at a time: W[64, 800] x cols[800, 196].
  add("conv2_fwd_image", {false, false, c2.out_c, pixels, taps});
  // conv2 forward, the whole batch's columns side by side: W[64, 800] x cols[800, 19600].
  add("conv2_fwd_batch", {false, false, c2.out_c, c2.batch * pixels, taps});
  // conv2 weight gradient per image: dY[64, 196] x cols[800, 196]^T.
  add("conv2_wgrad_image", {false, true, c2.out_c, taps, pixels});
  // conv2 input gradient per image: W[64, 800]^T x dY[64, 196].
  add("conv2_dcols_image", {true, false, taps, pixels, c2.out_c});
  // dense1 forward: X[100, 3136] x W[1024, 3136]^T.
  add("dense1_fwd", {false, true, d1.batch, d1.out, d1.in});
  // dense1 input gradient: dY[100, 1024] x W[1024, 3136].
  add("dense1_dx", {false, false, d1.batch, d1.in, d1.out});
  // dense1 weight gradient: dY[100, 1024]^T x X[100, 3136].
  add("dense1_dw", {true, false, d1.out, d1.in, d1.batch});
  // dense2 forward: X[100, 1024] x W[10, 1024]^T.
  add("dense2_fwd", {false, true, d2.batch, d2.out, d2.in});
  add("square_1024", {false, false, 1024, 1024, 1024});
}
