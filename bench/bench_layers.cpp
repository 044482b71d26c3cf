// Forward and backward of every op of a mnist_cnn training step, at the model's shapes at
// batch 100 (models/op_cases.hpp), on the CPU backend with 1 and 2 threads: each op as the
// model runs it (the ReLUs next to the convolutions and pools fused into them) and, for
// convolutions and pools, also alone; the batch gather also from uint8 pixels and with
// augmentation. Conv and dense report FLOP/s; times are wall-clock.
//   bench_layers [--json FILE] [Google Benchmark flags, e.g. --benchmark_filter=conv]
#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/models/models.hpp>
#include <strand/models/op_cases.hpp>
#include "bench/bench_main.hpp"

namespace {

using strand::Backend;
using strand::Buffer;
using strand::models::OpCase;
using strand::models::OpKind;

constexpr int64_t kBatch = 100;
constexpr int64_t kDatasetImages = 60000;  // MNIST's training set, which gather picks from

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

void set_flops(benchmark::State& state, double flops_per_iter) {
  state.counters["FLOP/s"] = benchmark::Counter(flops_per_iter * static_cast<double>(state.iterations()),
                                                benchmark::Counter::kIsRate);
}

int threads_of(const benchmark::State& state) { return static_cast<int>(state.range(0)); }

// relu: the fused form the model runs (the ReLU after the convolution applied with the bias).
void conv_forward(benchmark::State& state, const strand::Conv2dDesc& d, bool relu) {
  Env env(threads_of(state));
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

void conv_backward(benchmark::State& state, const strand::Conv2dDesc& d, bool need_dx) {
  Env env(threads_of(state));
  Buffer x = env.random(d.batch * d.in_c * d.in_h * d.in_w, 1);
  Buffer w = env.random(d.out_c * d.in_c * d.kernel_h * d.kernel_w, 2);
  Buffer dy = env.random(d.batch * d.out_c * d.out_h() * d.out_w(), 3);
  Buffer dx = env.zeros(d.batch * d.in_c * d.in_h * d.in_w);
  Buffer dw = env.zeros(d.out_c * d.in_c * d.kernel_h * d.kernel_w);
  Buffer db = env.zeros(d.out_c);
  for (auto _ : state) {
    env.be->conv2d_backward(d, x.f32(), w.f32(), dy.f32(), need_dx ? dx.f32() : nullptr, dw.f32(), db.f32());
  }
  set_flops(state, (need_dx ? 2 : 1) * d.flops());
}

void pool_forward(benchmark::State& state, const strand::Pool2dDesc& d) {
  Env env(threads_of(state));
  Buffer x = env.random(d.batch * d.channels * d.in_h * d.in_w, 1);
  Buffer y = env.zeros(d.batch * d.channels * d.out_h() * d.out_w());
  for (auto _ : state) env.be->maxpool2x2_forward(d, x.f32(), y.f32());
}

// relu: the fused form the model runs (the preceding ReLU's backward folded in).
void pool_backward(benchmark::State& state, const strand::Pool2dDesc& d, bool relu) {
  Env env(threads_of(state));
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

void general_pool_forward(benchmark::State& state, strand::PoolKind kind, const strand::PoolDesc& d) {
  Env env(threads_of(state));
  Buffer x = env.random(d.batch * d.channels * d.in_h * d.in_w, 1);
  Buffer y = env.zeros(d.batch * d.channels * d.out_h() * d.out_w());
  for (auto _ : state) env.be->pool_forward(kind, d, x.f32(), y.f32());
}

void general_pool_backward(benchmark::State& state, strand::PoolKind kind, const strand::PoolDesc& d) {
  Env env(threads_of(state));
  const int64_t nx = d.batch * d.channels * d.in_h * d.in_w;
  Buffer x = env.random(nx, 1), dy = env.random(d.batch * d.channels * d.out_h() * d.out_w(), 2);
  Buffer dx = env.zeros(nx);
  for (auto _ : state) env.be->pool_backward(kind, d, x.f32(), dy.f32(), dx.f32());
}

void batchnorm_forward(benchmark::State& state, const strand::BatchNormDesc& d, bool training) {
  Env env(threads_of(state));
  const int64_t n = d.batch * d.channels * d.spatial;
  Buffer x = env.random(n, 1), y = env.zeros(n), gb = env.random(2 * d.channels, 2);
  Buffer running = env.random(2 * d.channels, 3), saved = env.zeros(2 * d.channels),
         delta = env.zeros(2 * d.channels);
  for (auto _ : state) {
    if (training) {
      env.be->batchnorm_forward_train(d, x.f32(), gb.f32(), running.f32(), y.f32(), saved.f32(), delta.f32());
    } else {
      env.be->batchnorm_forward_infer(d, x.f32(), gb.f32(), running.f32(), y.f32());
    }
  }
}

void batchnorm_backward(benchmark::State& state, const strand::BatchNormDesc& d, bool need_dx) {
  Env env(threads_of(state));
  const int64_t n = d.batch * d.channels * d.spatial;
  Buffer x = env.random(n, 1), y = env.zeros(n), dy = env.random(n, 4), dx = env.zeros(n);
  Buffer gb = env.random(2 * d.channels, 2), running = env.random(2 * d.channels, 3);
  Buffer saved = env.zeros(2 * d.channels), delta = env.zeros(2 * d.channels),
         dgb = env.zeros(2 * d.channels);
  env.be->batchnorm_forward_train(d, x.f32(), gb.f32(), running.f32(), y.f32(), saved.f32(), delta.f32());
  for (auto _ : state) {
    env.be->batchnorm_backward(d, x.f32(), gb.f32(), saved.f32(), dy.f32(), need_dx ? dx.f32() : nullptr,
                               dgb.f32());
  }
}

void dense_forward(benchmark::State& state, const strand::DenseDesc& d) {
  Env env(threads_of(state));
  Buffer x = env.random(d.batch * d.in, 1), w = env.random(d.out * d.in, 2);
  Buffer b = env.random(d.out, 3), y = env.zeros(d.batch * d.out);
  for (auto _ : state) env.be->dense_forward(d, x.f32(), w.f32(), b.f32(), y.f32());
  set_flops(state, d.flops());
}

void dense_backward(benchmark::State& state, const strand::DenseDesc& d, bool need_dx) {
  Env env(threads_of(state));
  Buffer x = env.random(d.batch * d.in, 1), w = env.random(d.out * d.in, 2);
  Buffer dy = env.random(d.batch * d.out, 3), dx = env.zeros(d.batch * d.in);
  Buffer dw = env.zeros(d.out * d.in), db = env.zeros(d.out);
  for (auto _ : state) {
    env.be->dense_backward(d, x.f32(), w.f32(), dy.f32(), need_dx ? dx.f32() : nullptr, dw.f32(), db.f32());
  }
  set_flops(state, (need_dx ? 2 : 1) * d.flops());  // dx and dw
}

void relu_forward(benchmark::State& state, int64_t n) {
  Env env(threads_of(state));
  Buffer x = env.random(n, 1), y = env.zeros(n);
  for (auto _ : state) env.be->relu_forward(n, x.f32(), y.f32());
}

void relu_backward(benchmark::State& state, int64_t n) {
  Env env(threads_of(state));
  Buffer y = env.random(n, 1), dy = env.random(n, 2), dx = env.zeros(n);
  for (auto _ : state) env.be->relu_backward(n, y.f32(), dy.f32(), dx.f32());
}

void dropout_forward(benchmark::State& state, int64_t n, float rate) {
  Env env(threads_of(state));
  Buffer x = env.random(n, 1), y = env.zeros(n);
  for (auto _ : state) env.be->dropout_forward(n, rate, 42, 0, x.f32(), y.f32());
}

void dropout_backward(benchmark::State& state, int64_t n, float rate) {
  Env env(threads_of(state));
  Buffer dy = env.random(n, 1), dx = env.zeros(n);
  for (auto _ : state) env.be->dropout_backward(n, rate, 42, 0, dy.f32(), dx.f32());
}

// Forward and backward in one call: the loss kernel also writes dlogits.
void softmax_xent(benchmark::State& state, int64_t batch, int64_t classes) {
  Env env(threads_of(state));
  Buffer logits = env.random(batch * classes, 1), dlogits = env.zeros(batch * classes);
  Buffer labels = env.be->alloc(batch * sizeof(int32_t));
  for (int64_t n = 0; n < batch; ++n) labels.i32()[n] = static_cast<int32_t>(n % classes);
  for (auto _ : state) {
    benchmark::DoNotOptimize(env.be->softmax_xent(batch, classes, logits.f32(), labels.i32(), dlogits.f32()));
  }
}

// Every parameter of the model.
void adam_step(benchmark::State& state, int64_t params) {
  Env env(threads_of(state));
  Buffer p = env.random(params, 1), g = env.random(params, 2);
  Buffer m = env.zeros(params), v = env.zeros(params);
  int64_t step = 0;
  for (auto _ : state) {
    env.be->adam_step(params, 1e-3f, 0.9f, 0.999f, 1e-8f, ++step, p.f32(), g.f32(), m.f32(), v.f32());
  }
}

// The batch's images and labels picked from the whole training set, stored as d.pixels, augmented
// as d says (zeros: a copy is a copy, and the draws do not depend on the pixels).
void gather(benchmark::State& state, const strand::GatherDesc& d) {
  Env env(threads_of(state));
  const size_t pixel_bytes = d.pixels == strand::PixelType::U8 ? 1 : sizeof(float);
  Buffer images = env.be->alloc(size_t(kDatasetImages * d.sample()) * pixel_bytes);
  Buffer x = env.zeros(d.batch * d.sample());
  std::vector<int32_t> labels(kDatasetImages), y(static_cast<size_t>(d.batch));
  std::vector<int64_t> idx(static_cast<size_t>(d.batch));
  for (int64_t i = 0; i < d.batch; ++i) idx[size_t(i)] = (i * 7919) % kDatasetImages;
  for (auto _ : state) env.be->gather(d, idx.data(), images.data(), labels.data(), x.f32(), y.data());
}

void add(const std::string& name, std::function<void(benchmark::State&)> body) {
  benchmark::RegisterBenchmark(name.c_str(), [body](benchmark::State& s) { body(s); })
      ->ArgName("threads")
      ->Arg(1)
      ->Arg(2)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

// The gathers of a model with input `input`: float32 and uint8 pixels, with and without
// augmentation (shift:2,flip) where the input is an image; mnist_cnn's also at the CLI's
// default batch of 64 ("gather/b64...").
void add_gathers(const std::string& name, const strand::Shape& input, const OpCase& c, bool cli_batch) {
  strand::GatherDesc d;
  if (input.rank() == 3) {
    d.channels = input[0];
    d.height = input[1];
    d.width = input[2];
  } else {
    d.width = c.sample;
  }
  for (int64_t batch : cli_batch ? std::vector<int64_t>{c.batch, 64} : std::vector<int64_t>{c.batch})
    for (strand::PixelType pixels : {strand::PixelType::F32, strand::PixelType::U8})
      for (bool augment : {false, true}) {
        if (augment && input.rank() != 3) continue;
        d.batch = batch;
        d.pixels = pixels;
        d.augment = augment ? strand::Augmentation{.shift = 2, .flip = true} : strand::Augmentation{};
        std::string n = name;  // appends: g++ 12 gives a false -Wrestrict on const char* + std::string&&
        if (batch != c.batch) n += "/b" + std::to_string(batch);
        if (pixels == strand::PixelType::U8) n += "/u8";
        if (augment) n += "+augment";
        add(n, [d](benchmark::State& s) { gather(s, d); });
      }
}

}  // namespace

void register_benchmarks() {
  // mnist_cnn's ops by their names; the other built-in models' prefixed with the model's.
  for (const std::string& model : strand::models::names())
    for (const OpCase& c : strand::models::op_cases(strand::models::by_name(model), kBatch)) {
      const std::string n = (model == "mnist_cnn" ? "" : model + "/") + c.name;
      switch (c.kind) {
        case OpKind::Gather:
          add_gathers(n, strand::models::by_name(model).input, c, model == "mnist_cnn");
          break;
        case OpKind::Conv2d:
          add(n + "/forward", [c](benchmark::State& s) { conv_forward(s, c.conv, false); });
          if (c.relu_in_forward)
            add(n + "+relu/forward", [c](benchmark::State& s) { conv_forward(s, c.conv, true); });
          add(n + "/backward", [c](benchmark::State& s) { conv_backward(s, c.conv, c.needs_dx); });
          break;
        case OpKind::MaxPool2x2:
          add(n + "/forward", [c](benchmark::State& s) { pool_forward(s, c.pool); });
          add(n + "/backward", [c](benchmark::State& s) { pool_backward(s, c.pool, false); });
          if (c.relu_in_backward)
            add(n + "+relu/backward", [c](benchmark::State& s) { pool_backward(s, c.pool, true); });
          break;
        case OpKind::Pool:
          add(n + "/forward", [c](benchmark::State& s) { general_pool_forward(s, c.pool_kind, c.pooling); });
          add(n + "/backward",
              [c](benchmark::State& s) { general_pool_backward(s, c.pool_kind, c.pooling); });
          break;
        case OpKind::BatchNorm:
          add(n + "/forward", [c](benchmark::State& s) { batchnorm_forward(s, c.batchnorm, true); });
          add(n + "/inference", [c](benchmark::State& s) { batchnorm_forward(s, c.batchnorm, false); });
          add(n + "/backward", [c](benchmark::State& s) { batchnorm_backward(s, c.batchnorm, c.needs_dx); });
          break;
        case OpKind::Dense:
          add(n + "/forward", [c](benchmark::State& s) { dense_forward(s, c.dense); });
          add(n + "/backward", [c](benchmark::State& s) { dense_backward(s, c.dense, c.needs_dx); });
          break;
        case OpKind::Relu:  // a fused ReLU has no pass of its own: its conv's and pool's rows time it
          if (!c.relu_in_forward)
            add(n + "/forward", [c](benchmark::State& s) { relu_forward(s, c.elements); });
          if (!c.relu_in_backward)
            add(n + "/backward", [c](benchmark::State& s) { relu_backward(s, c.elements); });
          break;
        case OpKind::Dropout:
          add(n + "/forward", [c](benchmark::State& s) { dropout_forward(s, c.elements, c.rate); });
          add(n + "/backward", [c](benchmark::State& s) { dropout_backward(s, c.elements, c.rate); });
          break;
        case OpKind::SoftmaxXent:
          add(n, [c](benchmark::State& s) { softmax_xent(s, c.batch, c.classes); });
          break;
        case OpKind::Adam:
          add(n, [c](benchmark::State& s) { adam_step(s, c.elements); });
          break;
      }
    }
}
