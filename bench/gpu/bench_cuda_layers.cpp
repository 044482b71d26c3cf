// Every operation of one mnist_cnn training step on the CUDA backend at the model's real shapes,
// as the model runs them (the ReLUs after the convolutions fused into them and into the pools'
// backward), for several batch sizes and math modes: milliseconds per call, FLOP/s for
// convolutions and dense layers, memory GB/s for the elementwise kernels, and each row's share
// of the step. The sum of the rows is the step's GPU time without launch gaps; below it, the
// whole step of a Model (forward, loss, backward, Adam) eager and as a CUDA graph. Also prints
// the cuDNN algorithms each mode chose.
//
//   bench_cuda_layers [--batches 100,512,4096] [--reps N] [--json FILE]
//
// Exit 77 (skipped) without a GPU, like the GPU tests.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/cuda/cuda_backend.hpp"
#include "core/error.hpp"
#include "core/model.hpp"
#include "core/optimizer.hpp"
#include "models/models.hpp"

namespace {

using strand::Backend;
using strand::Buffer;

struct Mode {
  const char* name;
  strand::CudaOptions options;
};

struct Row {
  std::string mode, op;
  int64_t batch;
  double ms, flops, bytes;  // flops or bytes per call (0 when not meaningful)
};

struct Env {
  explicit Env(strand::CudaOptions o) : be(strand::make_cuda_backend(0, o)) {}
  Buffer random(int64_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> host(static_cast<size_t>(n));
    for (float& v : host) v = dist(rng);
    Buffer b = be->alloc(size_t(n) * sizeof(float));
    be->to_device(b.data(), host.data(), size_t(n) * sizeof(float));
    return b;
  }
  Buffer zeros(int64_t n) { return be->alloc(size_t(n) * sizeof(float)); }
  std::unique_ptr<Backend> be;
};

// Milliseconds per call of `f`: 3 warm-up calls (plans, workspaces), then `reps` timed calls
// between two synchronizations.
double time_ms(Backend& be, int reps, const std::function<void()>& f) {
  for (int i = 0; i < 3; ++i) f();
  be.synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) f();
  be.synchronize();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
}

std::vector<Row> run_mode(const Mode& mode, int64_t B, int reps, std::string& algos) {
  Env env(mode.options);
  Backend& be = *env.be;
  // Shapes of models/mnist_cnn: conv 1->32 28x28, pool, conv 32->64 14x14, pool, dense
  // 3136->1024, relu, dropout 0.4, dense 1024->10.
  const strand::Conv2dDesc c1{B, 1, 28, 28, 32, 5, 5, 2, 2}, c2{B, 32, 14, 14, 64, 5, 5, 2, 2};
  const strand::Pool2dDesc p1{B, 32, 28, 28}, p2{B, 64, 14, 14};
  const strand::DenseDesc d1{B, 3136, 1024}, d2{B, 1024, 10};
  const int64_t a1 = B * 32 * 28 * 28, a2 = B * 64 * 14 * 14, h = B * 1024;

  Buffer x = env.random(B * 784, 1), w1 = env.random(32 * 25, 2), b1 = env.random(32, 3);
  Buffer y1 = env.random(a1, 4), dy1 = env.random(a1, 5), dw1 = env.zeros(32 * 25), db1 = env.zeros(32);
  Buffer q1 = env.zeros(B * 32 * 196), dq1 = env.random(B * 32 * 196, 6);
  Buffer w2 = env.random(64 * 32 * 25, 7), b2 = env.random(64, 8), dw2 = env.zeros(64 * 32 * 25), db2 = env.zeros(64);
  Buffer y2 = env.random(a2, 9), dy2 = env.random(a2, 10), q2 = env.zeros(B * 3136), dq2 = env.random(B * 3136, 11);
  Buffer wd1 = env.random(1024 * 3136, 12), bd1 = env.random(1024, 13), dwd1 = env.zeros(1024 * 3136), dbd1 = env.zeros(1024);
  Buffer hid = env.random(h, 14), dhid = env.random(h, 15);
  Buffer wd2 = env.random(10 * 1024, 16), bd2 = env.random(10, 17), dwd2 = env.zeros(10 * 1024), dbd2 = env.zeros(10);
  Buffer logits = env.random(B * 10, 18), dlogits = env.zeros(B * 10);
  Buffer labels = be.alloc(size_t(B) * sizeof(int32_t));
  constexpr int64_t kParams = 832 + 51264 + 3212288 + 10250;
  Buffer params = env.random(kParams, 19), grads = env.random(kParams, 20), m = env.zeros(kParams), v = env.zeros(kParams);
  Buffer images = env.random(int64_t{60000} * 784, 21), all_labels = be.alloc(60000 * sizeof(int32_t));
  std::vector<int64_t> idx(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) idx[size_t(i)] = (i * 7919) % 60000;
  Buffer indices = be.alloc(size_t(B) * sizeof(int64_t));
  be.to_device(indices.data(), idx.data(), idx.size() * sizeof(int64_t));
  Buffer batch_labels = be.alloc(size_t(B) * sizeof(int32_t));

  std::vector<Row> rows;
  auto add = [&](const char* op, double flops, double bytes, const std::function<void()>& f) {
    rows.push_back({mode.name, op, B, time_ms(be, reps, f), flops, bytes});
  };
  const double f4 = sizeof(float);
  int64_t step = 0;
  add("gather", 0, 2.0 * B * 784 * f4, [&] {
    be.gather(B, 784, static_cast<const int64_t*>(indices.data()), images.f32(), all_labels.i32(), x.f32(),
              batch_labels.i32());
  });
  add("conv1+relu forward", c1.flops(), 0, [&] { be.conv2d_relu_forward(c1, x.f32(), w1.f32(), b1.f32(), y1.f32()); });
  add("pool1 forward", 0, 1.25 * a1 * f4, [&] { be.maxpool2x2_forward(p1, y1.f32(), q1.f32()); });
  add("conv2+relu forward", c2.flops(), 0, [&] { be.conv2d_relu_forward(c2, q1.f32(), w2.f32(), b2.f32(), y2.f32()); });
  add("pool2 forward", 0, 1.25 * a2 * f4, [&] { be.maxpool2x2_forward(p2, y2.f32(), q2.f32()); });
  add("dense1 forward", d1.flops(), 0, [&] { be.dense_forward(d1, q2.f32(), wd1.f32(), bd1.f32(), hid.f32()); });
  add("relu3 forward", 0, 2.0 * h * f4, [&] { be.relu_forward(h, hid.f32(), hid.f32()); });
  add("dropout forward", 0, 2.0 * h * f4, [&] { be.dropout_forward(h, 0.4f, 42, 0, hid.f32(), hid.f32()); });
  add("dense2 forward", d2.flops(), 0, [&] { be.dense_forward(d2, hid.f32(), wd2.f32(), bd2.f32(), logits.f32()); });
  add("softmax xent", 0, 0, [&] {
    be.softmax_xent_accumulate(B, 10, logits.f32(), batch_labels.i32(), dlogits.f32());
  });
  add("dense2 backward", 2 * d2.flops(), 0, [&] {
    be.dense_backward(d2, hid.f32(), wd2.f32(), dlogits.f32(), dhid.f32(), dwd2.f32(), dbd2.f32());
  });
  add("dropout backward", 0, 2.0 * h * f4, [&] { be.dropout_backward(h, 0.4f, 42, 0, dhid.f32(), dhid.f32()); });
  add("relu3 backward", 0, 3.0 * h * f4, [&] { be.relu_backward(h, hid.f32(), dhid.f32(), dhid.f32()); });
  add("dense1 backward", 2 * d1.flops(), 0, [&] {
    be.dense_backward(d1, q2.f32(), wd1.f32(), dhid.f32(), dq2.f32(), dwd1.f32(), dbd1.f32());
  });
  add("pool2+relu backward", 0, 2.5 * a2 * f4, [&] {
    be.relu_maxpool2x2_backward(p2, y2.f32(), q2.f32(), dq2.f32(), dy2.f32());
  });
  add("conv2 backward", 2 * c2.flops(), 0, [&] {
    be.conv2d_backward(c2, q1.f32(), w2.f32(), dy2.f32(), dq1.f32(), dw2.f32(), db2.f32());
  });
  add("pool1+relu backward", 0, 2.5 * a1 * f4, [&] {
    be.relu_maxpool2x2_backward(p1, y1.f32(), q1.f32(), dq1.f32(), dy1.f32());
  });
  add("conv1 backward", c1.flops(), 0, [&] {
    be.conv2d_backward(c1, x.f32(), w1.f32(), dy1.f32(), nullptr, dw1.f32(), db1.f32());
  });
  add("adam", 0, 7.0 * kParams * f4, [&] {
    be.adam_step(kParams, 1e-3f, 0.9f, 0.999f, 1e-8f, ++step, params.f32(), grads.f32(), m.f32(), v.f32());
  });
  (void)be.take_loss_totals();

  // The whole step through the Model, eager and (on a second backend) as CUDA graphs.
  for (bool graphs : {false, true}) {
    strand::CudaOptions o = mode.options;
    o.graphs = graphs;
    std::unique_ptr<Backend> owned = graphs ? strand::make_cuda_backend(0, o) : nullptr;
    Backend& mb = graphs ? *owned : be;
    strand::Model model(mb, strand::models::by_name("mnist_cnn"));
    model.init(1);
    strand::Optimizer opt(mb, strand::OptimizerConfig{}, model.param_count());
    Buffer mx = mb.alloc(size_t(B) * 784 * sizeof(float));
    Buffer my = mb.alloc(size_t(B) * sizeof(int32_t));
    uint64_t key = 0;
    rows.push_back({mode.name, graphs ? "model step (graphs)" : "model step (eager)", B,
                    time_ms(mb, reps, [&] {
                      mb.begin_step(B);
                      model.forward(mx.f32(), B, true, ++key);
                      model.loss_accumulate(my.i32(), B);
                      model.backward({});
                      opt.step(model.params(), model.grads());
                      mb.end_step();
                    }),
                    0, 0});
    (void)mb.take_loss_totals();
  }

  auto& cuda = dynamic_cast<strand::cuda::CudaBackend&>(be);
  algos += std::string(mode.name) + " batch " + std::to_string(B) + ": conv1 " + cuda.conv_algorithms(c1) +
           "; conv2 " + cuda.conv_algorithms(c2) + "\n";
  return rows;
}

std::vector<int64_t> parse_batches(const char* s) {
  std::vector<int64_t> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 1 || v > 65536) {
      throw std::runtime_error("--batches: '" + item + "' is not a batch size in 1..65536");
    }
    out.push_back(v);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> batches{100, 512, 4096};
  int reps = 20;
  std::string json_path;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> const char* {
        if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
        return argv[++i];
      };
      if (a == "--help" || a == "-h") {
        std::puts("Usage: bench_cuda_layers [--batches 100,512,4096] [--reps N] [--json FILE]\n"
                  "Times every operation of a mnist_cnn training step on GPU 0, per batch size, in\n"
                  "FP32 and TF32, with cuDNN's heuristic and timed (--cudnn-benchmark) algorithm choice.");
        return 0;
      } else if (a == "--batches") {
        batches = parse_batches(value());
      } else if (a == "--reps") {
        reps = std::max(1, std::atoi(value()));
      } else if (a == "--json") {
        json_path = value();
      } else {
        throw std::runtime_error("unknown argument '" + a + "' (see --help)");
      }
    }
    if (strand::cuda_device_count() == 0) {
      std::puts("SKIP: no GPU present");
      return 77;
    }
    const Mode modes[] = {{"fp32", {.tf32 = false, .graphs = false, .cudnn_benchmark = false}},
                          {"fp32-search", {.tf32 = false, .graphs = false, .cudnn_benchmark = true}},
                          {"tf32", {.tf32 = true, .graphs = false, .cudnn_benchmark = false}},
                          {"tf32-search", {.tf32 = true, .graphs = false, .cudnn_benchmark = true}}};
    std::vector<Row> all;
    std::string algos;
    for (int64_t B : batches) {
      for (const Mode& mode : modes) {
        std::vector<Row> rows = run_mode(mode, B, reps, algos);
        double total = 0;
        for (const Row& r : rows) total += r.op.starts_with("model step") ? 0.0 : r.ms;
        std::printf("\n%s, batch %lld: %.3f ms summed (%.0f images/s)\n", mode.name, (long long)B, total,
                    1000.0 * double(B) / total);
        std::printf("  %-20s %9s %6s %10s\n", "op", "ms", "share", "rate");
        for (const Row& r : rows) {
          char rate[32] = "";
          if (r.flops > 0) std::snprintf(rate, sizeof rate, "%.1f TFLOP/s", r.flops / r.ms / 1e9);
          if (r.bytes > 0) std::snprintf(rate, sizeof rate, "%.0f GB/s", r.bytes / r.ms / 1e6);
          std::printf("  %-20s %9.4f %5.1f%% %s\n", r.op.c_str(), r.ms, 100.0 * r.ms / total, rate);
        }
        all.insert(all.end(), rows.begin(), rows.end());
      }
    }
    std::printf("\ncuDNN algorithms (fwd / bwd data / bwd filter, cudnn*Algo_t numbers):\n%s", algos.c_str());
    if (!json_path.empty()) {
      std::ofstream out(json_path);
      out << "[\n";
      for (size_t i = 0; i < all.size(); ++i) {
        const Row& r = all[i];
        out << "  {\"mode\": \"" << r.mode << "\", \"op\": \"" << r.op << "\", \"batch\": " << r.batch
            << ", \"ms\": " << r.ms << ", \"flops\": " << r.flops << ", \"bytes\": " << r.bytes << "}"
            << (i + 1 < all.size() ? ",\n" : "\n");
      }
      out << "]\n";
      if (!out) throw std::runtime_error("cannot write " + json_path);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_layers: %s\n", e.what());
    return 1;
  }
  return 0;
}
