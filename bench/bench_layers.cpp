// Forward and backward of every layer of the MNIST CNN at its real shapes, batch 100, on the
// CPU backend with 1 and 2 threads. Conv and dense report FLOP/s; times are wall-clock.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "core/backend.hpp"

namespace {

using strand::Backend;
using strand::Buffer;

constexpr int64_t kBatch = 100;

// A backend with `threads` threads and helpers to fill its buffers with random data.
struct Env {
  explicit Env(int threads) : be(strand::make_cpu_backend(threads)) {}

  Buffer random(int64_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> host(n);
    for (float& v : host) v = dist(rng);
    Buffer b = be->alloc(n * sizeof(float));
    be->to_device(b.data(), host.data(), n * sizeof(float));
    return b;
  }
  Buffer zeros(int64_t n) { return be->alloc(n * sizeof(float)); }

  std::unique_ptr<Backend> be;
};

void configure(benchmark::internal::Benchmark* b) {
  b->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
}

void set_flops(benchmark::State& state, double flops_per_iter) {
  state.counters["FLOP/s"] = benchmark::Counter(flops_per_iter * static_cast<double>(state.iterations()),
                                                benchmark::Counter::kIsRate);
}

// conv1: 1 -> 32, 28x28; conv2: 32 -> 64, 14x14; both 5x5 'same'.
const strand::Conv2dDesc kConv1{kBatch, 1, 28, 28, 32, 5, 5, 2, 2};
const strand::Conv2dDesc kConv2{kBatch, 32, 14, 14, 64, 5, 5, 2, 2};
const strand::Pool2dDesc kPool1{kBatch, 32, 28, 28};
const strand::Pool2dDesc kPool2{kBatch, 64, 14, 14};
const strand::DenseDesc kDense1{kBatch, 3136, 1024};
const strand::DenseDesc kDense2{kBatch, 1024, 10};

// relu: the fused form the model runs (the ReLU after the convolution applied with the bias).
void conv_forward(benchmark::State& state, const strand::Conv2dDesc& d, bool relu = false) {
  Env env(static_cast<int>(state.range(0)));
  Buffer x = env.random(d.batch * d.in_c * d.in_h * d.in_w, 1);
  Buffer w = env.random(d.out_c * d.in_c * d.kernel_h * d.kernel_w, 2);
  Buffer b = env.random(d.out_c, 3);
  Buffer y = env.zeros(d.batch * d.out_c * d.out_h() * d.out_w());
  for (auto _ : state) {
    if (relu) {
      env.be->conv2d_relu_forward(d, x.f32(), w.f32(), b.f32(), y.f32());
    } else {
      env.be->conv2d_forward(d, x.f32(), w.f32(), b.f32(), y.f32());
    }
  }
  set_flops(state, d.flops());
}

// The first conv layer needs no input gradient, as in the model.
void conv_backward(benchmark::State& state, const strand::Conv2dDesc& d, bool need_dx) {
  Env env(static_cast<int>(state.range(0)));
  Buffer x = env.random(d.batch * d.in_c * d.in_h * d.in_w, 1);
  Buffer w = env.random(d.out_c * d.in_c * d.kernel_h * d.kernel_w, 2);
  Buffer dy = env.random(d.batch * d.out_c * d.out_h() * d.out_w(), 3);
  Buffer dx = env.zeros(d.batch * d.in_c * d.in_h * d.in_w);
  Buffer dw = env.zeros(d.out_c * d.in_c * d.kernel_h * d.kernel_w);
  Buffer db = env.zeros(d.out_c);
  for (auto _ : state) {
    env.be->conv2d_backward(d, x.f32(), w.f32(), dy.f32(), need_dx ? dx.f32() : nullptr, dw.f32(),
                            db.f32());
  }
  set_flops(state, (need_dx ? 2 : 1) * d.flops());
}

void pool_forward(benchmark::State& state, const strand::Pool2dDesc& d) {
  Env env(static_cast<int>(state.range(0)));
  Buffer x = env.random(d.batch * d.channels * d.in_h * d.in_w, 1);
  Buffer y = env.zeros(d.batch * d.channels * d.out_h() * d.out_w());
  for (auto _ : state) env.be->maxpool2x2_forward(d, x.f32(), y.f32());
}

// relu: the fused form the model runs (the preceding ReLU's backward folded in).
void pool_backward(benchmark::State& state, const strand::Pool2dDesc& d, bool relu = false) {
  Env env(static_cast<int>(state.range(0)));
  const int64_t nx = d.batch * d.channels * d.in_h * d.in_w;
  const int64_t ny = d.batch * d.channels * d.out_h() * d.out_w();
  Buffer x = env.random(nx, 1), y = env.zeros(ny), dy = env.random(ny, 2), dx = env.zeros(nx);
  env.be->maxpool2x2_forward(d, x.f32(), y.f32());
  for (auto _ : state) {
    if (relu) {
      env.be->relu_maxpool2x2_backward(d, x.f32(), y.f32(), dy.f32(), dx.f32());
    } else {
      env.be->maxpool2x2_backward(d, x.f32(), y.f32(), dy.f32(), dx.f32());
    }
  }
}

void dense_forward(benchmark::State& state, const strand::DenseDesc& d) {
  Env env(static_cast<int>(state.range(0)));
  Buffer x = env.random(d.batch * d.in, 1), w = env.random(d.out * d.in, 2);
  Buffer b = env.random(d.out, 3), y = env.zeros(d.batch * d.out);
  for (auto _ : state) env.be->dense_forward(d, x.f32(), w.f32(), b.f32(), y.f32());
  set_flops(state, d.flops());
}

void dense_backward(benchmark::State& state, const strand::DenseDesc& d) {
  Env env(static_cast<int>(state.range(0)));
  Buffer x = env.random(d.batch * d.in, 1), w = env.random(d.out * d.in, 2);
  Buffer dy = env.random(d.batch * d.out, 3), dx = env.zeros(d.batch * d.in);
  Buffer dw = env.zeros(d.out * d.in), db = env.zeros(d.out);
  for (auto _ : state) {
    env.be->dense_backward(d, x.f32(), w.f32(), dy.f32(), dx.f32(), dw.f32(), db.f32());
  }
  set_flops(state, 2 * d.flops());  // dx and dw
}

void BM_Conv1Forward(benchmark::State& s) { conv_forward(s, kConv1); }
void BM_Conv1ReluForward(benchmark::State& s) { conv_forward(s, kConv1, true); }
void BM_Conv2ReluForward(benchmark::State& s) { conv_forward(s, kConv2, true); }
void BM_Pool1ReluBackward(benchmark::State& s) { pool_backward(s, kPool1, true); }
void BM_Pool2ReluBackward(benchmark::State& s) { pool_backward(s, kPool2, true); }
void BM_Conv1Backward(benchmark::State& s) { conv_backward(s, kConv1, false); }
void BM_Pool1Forward(benchmark::State& s) { pool_forward(s, kPool1); }
void BM_Pool1Backward(benchmark::State& s) { pool_backward(s, kPool1); }
void BM_Conv2Forward(benchmark::State& s) { conv_forward(s, kConv2); }
void BM_Conv2Backward(benchmark::State& s) { conv_backward(s, kConv2, true); }
void BM_Pool2Forward(benchmark::State& s) { pool_forward(s, kPool2); }
void BM_Pool2Backward(benchmark::State& s) { pool_backward(s, kPool2); }
void BM_Dense1Forward(benchmark::State& s) { dense_forward(s, kDense1); }
void BM_Dense1Backward(benchmark::State& s) { dense_backward(s, kDense1); }
void BM_Dense2Forward(benchmark::State& s) { dense_forward(s, kDense2); }
void BM_Dense2Backward(benchmark::State& s) { dense_backward(s, kDense2); }

constexpr int64_t kHidden = kBatch * 1024;  // relu and dropout act on [100,1024]

void BM_ReluForward(benchmark::State& state) {
  Env env(static_cast<int>(state.range(0)));
  Buffer x = env.random(kHidden, 1), y = env.zeros(kHidden);
  for (auto _ : state) env.be->relu_forward(kHidden, x.f32(), y.f32());
}

void BM_ReluBackward(benchmark::State& state) {
  Env env(static_cast<int>(state.range(0)));
  Buffer y = env.random(kHidden, 1), dy = env.random(kHidden, 2), dx = env.zeros(kHidden);
  for (auto _ : state) env.be->relu_backward(kHidden, y.f32(), dy.f32(), dx.f32());
}

void BM_DropoutForward(benchmark::State& state) {
  Env env(static_cast<int>(state.range(0)));
  Buffer x = env.random(kHidden, 1), y = env.zeros(kHidden);
  for (auto _ : state) env.be->dropout_forward(kHidden, 0.4f, 42, 0, x.f32(), y.f32());
}

void BM_DropoutBackward(benchmark::State& state) {
  Env env(static_cast<int>(state.range(0)));
  Buffer dy = env.random(kHidden, 1), dx = env.zeros(kHidden);
  for (auto _ : state) env.be->dropout_backward(kHidden, 0.4f, 42, 0, dy.f32(), dx.f32());
}

// Forward and backward in one call: the loss kernel also writes dlogits.
void BM_SoftmaxXent(benchmark::State& state) {
  Env env(static_cast<int>(state.range(0)));
  Buffer logits = env.random(kBatch * 10, 1), dlogits = env.zeros(kBatch * 10);
  Buffer labels = env.be->alloc(kBatch * sizeof(int32_t));
  for (int64_t n = 0; n < kBatch; ++n) labels.i32()[n] = static_cast<int32_t>(n % 10);
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        env.be->softmax_xent(kBatch, 10, logits.f32(), labels.i32(), dlogits.f32()));
  }
}

// Every parameter of the model: 832 + 51264 + 3212288 + 10250.
void BM_AdamStep(benchmark::State& state) {
  constexpr int64_t kParams = 3274634;
  Env env(static_cast<int>(state.range(0)));
  Buffer p = env.random(kParams, 1), g = env.random(kParams, 2);
  Buffer m = env.zeros(kParams), v = env.zeros(kParams);
  int64_t step = 0;
  for (auto _ : state) {
    env.be->adam_step(kParams, 1e-3f, 0.9f, 0.999f, 1e-8f, ++step, p.f32(), g.f32(), m.f32(),
                      v.f32());
  }
}

BENCHMARK(BM_Conv1Forward)->Apply(configure);
BENCHMARK(BM_Conv1ReluForward)->Apply(configure);
BENCHMARK(BM_Conv2ReluForward)->Apply(configure);
BENCHMARK(BM_Pool1ReluBackward)->Apply(configure);
BENCHMARK(BM_Pool2ReluBackward)->Apply(configure);
BENCHMARK(BM_Conv1Backward)->Apply(configure);
BENCHMARK(BM_Pool1Forward)->Apply(configure);
BENCHMARK(BM_Pool1Backward)->Apply(configure);
BENCHMARK(BM_Conv2Forward)->Apply(configure);
BENCHMARK(BM_Conv2Backward)->Apply(configure);
BENCHMARK(BM_Pool2Forward)->Apply(configure);
BENCHMARK(BM_Pool2Backward)->Apply(configure);
BENCHMARK(BM_Dense1Forward)->Apply(configure);
BENCHMARK(BM_Dense1Backward)->Apply(configure);
BENCHMARK(BM_ReluForward)->Apply(configure);
BENCHMARK(BM_ReluBackward)->Apply(configure);
BENCHMARK(BM_DropoutForward)->Apply(configure);
BENCHMARK(BM_DropoutBackward)->Apply(configure);
BENCHMARK(BM_Dense2Forward)->Apply(configure);
BENCHMARK(BM_Dense2Backward)->Apply(configure);
BENCHMARK(BM_SoftmaxXent)->Apply(configure);
BENCHMARK(BM_AdamStep)->Apply(configure);

}  // namespace
