// Every operation of one mnist_cnn training step on the CUDA backend at the model's real shapes,
// as the model runs them (the ReLUs after the convolutions fused into them and into the pools'
// backward), for several batch sizes and math modes: milliseconds per call, FLOP/s for
// convolutions and dense layers, memory GB/s for the elementwise kernels, and each row's share
// of the step. The sum of the rows is the step's GPU time without launch gaps; below it, the
// whole step of a Model (forward, loss, backward, Adam) eager and as a CUDA graph. Also prints
// the cuDNN algorithms each mode chose. The ops and shapes come from models/op_cases.hpp.
//
//   bench_cuda_layers [--batches 100,512,4096] [--reps N] [--json FILE]
//
// Exit 77 (skipped) without a GPU, like the GPU tests.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/cuda/cuda_backend.hpp>
#include <strand/core/error.hpp>
#include <strand/core/model.hpp>
#include <strand/core/optimizer.hpp>
#include <strand/io/record.hpp>
#include <strand/models/models.hpp>
#include <strand/models/op_cases.hpp>

namespace {

using strand::Backend;
using strand::Buffer;
using strand::models::OpCase;
using strand::models::OpKind;

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

using Add =
    std::function<void(const std::string& op, double flops, double bytes, const std::function<void()>& f)>;

constexpr int64_t kDatasetImages = 60000;  // MNIST's training set, which gather picks from

// Times op `c`'s forward pass as the model runs it (nothing for a ReLU fused into its conv).
void time_forward(Env& env, const OpCase& c, const Add& add) {
  Backend& be = *env.be;
  const double f4 = sizeof(float);
  const int64_t B = c.batch;
  switch (c.kind) {
    case OpKind::Gather: {
      // mnist_cnn's images stored as float32 and as uint8, plain and augmented (shift:2,flip).
      const strand::Shape& image = strand::models::mnist_cnn().input;
      Buffer images = env.random(kDatasetImages * c.sample, 21),
             images_u8 = be.alloc(size_t(kDatasetImages * c.sample)),
             labels = be.alloc(kDatasetImages * sizeof(int32_t));
      std::vector<int64_t> idx(static_cast<size_t>(B));
      for (int64_t i = 0; i < B; ++i) idx[size_t(i)] = (i * 7919) % kDatasetImages;
      Buffer indices = be.alloc(size_t(B) * sizeof(int64_t));
      be.to_device(indices.data(), idx.data(), idx.size() * sizeof(int64_t));
      Buffer x = env.zeros(B * c.sample), y = be.alloc(size_t(B) * sizeof(int32_t));
      for (strand::PixelType pixels : {strand::PixelType::F32, strand::PixelType::U8})
        for (bool augment : {false, true}) {
          const bool u8 = pixels == strand::PixelType::U8;
          strand::GatherDesc d;
          d.batch = B;
          d.channels = image[0];
          d.height = image[1];
          d.width = image[2];
          d.pixels = pixels;
          if (augment) d.augment = {.shift = 2, .flip = true};
          add(c.name + (u8 ? " u8" : "") + (augment ? "+augment" : ""), 0,
              double(B * c.sample) * ((u8 ? 1 : f4) + f4), [&, d] {
                be.gather(d, static_cast<const int64_t*>(indices.data()),
                          u8 ? images_u8.data() : images.data(), labels.i32(), x.f32(), y.i32());
              });
        }
      break;
    }
    case OpKind::Conv2d: {
      const strand::Conv2dDesc& d = c.conv;
      Buffer x = env.random(d.batch * d.in_c * d.in_h * d.in_w, 1);
      Buffer w = env.random(d.out_c * d.in_c * d.kernel_h * d.kernel_w, 2), b = env.random(d.out_c, 3);
      Buffer y = env.zeros(d.batch * d.out_c * d.out_h() * d.out_w());
      if (c.relu_in_forward) {
        add(c.name + "+relu forward", d.flops(), 0,
            [&] { be.conv2d_relu_forward(d, x.f32(), w.f32(), b.f32(), y.f32()); });
      } else {
        add(c.name + " forward", d.flops(), 0,
            [&] { be.conv2d_forward(d, x.f32(), w.f32(), b.f32(), y.f32()); });
      }
      break;
    }
    case OpKind::MaxPool2x2: {
      const strand::Pool2dDesc& d = c.pool;
      const int64_t nx = d.batch * d.channels * d.in_h * d.in_w;
      Buffer x = env.random(nx, 4), y = env.zeros(d.batch * d.channels * d.out_h() * d.out_w());
      add(c.name + " forward", 0, 1.25 * nx * f4, [&] { be.maxpool2x2_forward(d, x.f32(), y.f32()); });
      break;
    }
    case OpKind::Pool: {
      const strand::PoolDesc& d = c.pooling;
      const int64_t nx = d.batch * d.channels * d.in_h * d.in_w,
                    ny = d.batch * d.channels * d.out_h() * d.out_w();
      Buffer x = env.random(nx, 4), y = env.zeros(ny);
      add(c.name + " forward", 0, double(nx + ny) * f4,
          [&] { be.pool_forward(c.pool_kind, d, x.f32(), y.f32()); });
      break;
    }
    case OpKind::BatchNorm: {
      const strand::BatchNormDesc& d = c.batchnorm;
      const int64_t n = d.batch * d.channels * d.spatial;
      Buffer x = env.random(n, 10), gb = env.random(2 * d.channels, 11), running = env.zeros(2 * d.channels);
      Buffer y = env.zeros(n), saved = env.zeros(2 * d.channels), delta = env.zeros(2 * d.channels);
      add(c.name + " forward", 0, 4.0 * n * f4, [&] {  // x read three times, y written
        be.batchnorm_forward_train(d, x.f32(), gb.f32(), running.f32(), y.f32(), saved.f32(), delta.f32());
      });
      break;
    }
    case OpKind::Dense: {
      const strand::DenseDesc& d = c.dense;
      Buffer x = env.random(d.batch * d.in, 5), w = env.random(d.out * d.in, 6), b = env.random(d.out, 7);
      Buffer y = env.zeros(d.batch * d.out);
      add(c.name + " forward", d.flops(), 0,
          [&] { be.dense_forward(d, x.f32(), w.f32(), b.f32(), y.f32()); });
      break;
    }
    case OpKind::Relu: {
      if (c.relu_in_forward) break;
      Buffer h = env.random(c.elements, 8);
      add(c.name + " forward", 0, 2.0 * c.elements * f4,
          [&] { be.relu_forward(c.elements, h.f32(), h.f32()); });
      break;
    }
    case OpKind::Dropout: {
      Buffer h = env.random(c.elements, 9);
      add(c.name + " forward", 0, 2.0 * c.elements * f4,
          [&] { be.dropout_forward(c.elements, c.rate, 42, 0, h.f32(), h.f32()); });
      break;
    }
    case OpKind::SoftmaxXent: {
      Buffer logits = env.random(B * c.classes, 18), dlogits = env.zeros(B * c.classes);
      Buffer labels = be.alloc(size_t(B) * sizeof(int32_t));  // zeros: class 0
      add(c.name, 0, 0,
          [&] { be.softmax_xent_accumulate(B, c.classes, logits.f32(), labels.i32(), dlogits.f32()); });
      (void)be.take_loss_totals();
      break;
    }
    case OpKind::Adam: {
      Buffer p = env.random(c.elements, 19), g = env.random(c.elements, 20);
      Buffer m = env.zeros(c.elements), v = env.zeros(c.elements);
      int64_t step = 0;
      add(c.name, 0, 7.0 * c.elements * f4, [&] {
        be.adam_step(c.elements, 1e-3f, 0.9f, 0.999f, 1e-8f, ++step, p.f32(), g.f32(), m.f32(), v.f32());
      });
      break;
    }
  }
}

// Times op `c`'s backward pass as the model runs it (the first layer without its input
// gradient, a ReLU before a pool inside the pool's).
void time_backward(Env& env, const OpCase& c, const Add& add) {
  Backend& be = *env.be;
  const double f4 = sizeof(float);
  switch (c.kind) {
    case OpKind::Conv2d: {
      const strand::Conv2dDesc& d = c.conv;
      const int64_t nx = d.batch * d.in_c * d.in_h * d.in_w, nw = d.out_c * d.in_c * d.kernel_h * d.kernel_w;
      Buffer x = env.random(nx, 1), w = env.random(nw, 2),
             dy = env.random(d.batch * d.out_c * d.out_h() * d.out_w(), 3);
      Buffer dx = env.zeros(nx), dw = env.zeros(nw), db = env.zeros(d.out_c);
      add(c.name + " backward", (c.needs_dx ? 2 : 1) * d.flops(), 0, [&] {
        be.conv2d_backward(d, x.f32(), w.f32(), dy.f32(), c.needs_dx ? dx.f32() : nullptr, dw.f32(),
                           db.f32());
      });
      break;
    }
    case OpKind::MaxPool2x2: {
      const strand::Pool2dDesc& d = c.pool;
      const int64_t nx = d.batch * d.channels * d.in_h * d.in_w,
                    ny = d.batch * d.channels * d.out_h() * d.out_w();
      Buffer x = env.random(nx, 4), y = env.zeros(ny), dy = env.random(ny, 5), dx = env.zeros(nx);
      be.maxpool2x2_forward(d, x.f32(), y.f32());
      if (c.relu_in_backward) {
        add(c.name + "+relu backward", 0, 2.5 * nx * f4,
            [&] { be.relu_maxpool2x2_backward(d, x.f32(), y.f32(), dy.f32(), dx.f32()); });
      } else {
        add(c.name + " backward", 0, 2.5 * nx * f4,
            [&] { be.maxpool2x2_backward(d, x.f32(), y.f32(), dy.f32(), dx.f32()); });
      }
      break;
    }
    case OpKind::Pool: {
      const strand::PoolDesc& d = c.pooling;
      const int64_t nx = d.batch * d.channels * d.in_h * d.in_w,
                    ny = d.batch * d.channels * d.out_h() * d.out_w();
      Buffer x = env.random(nx, 4), dy = env.random(ny, 5), dx = env.zeros(nx);
      add(c.name + " backward", 0, double(2 * nx + ny) * f4,
          [&] { be.pool_backward(c.pool_kind, d, x.f32(), dy.f32(), dx.f32()); });
      break;
    }
    case OpKind::BatchNorm: {
      const strand::BatchNormDesc& d = c.batchnorm;
      const int64_t n = d.batch * d.channels * d.spatial;
      Buffer x = env.random(n, 10), gb = env.random(2 * d.channels, 11), running = env.zeros(2 * d.channels);
      Buffer y = env.zeros(n), saved = env.zeros(2 * d.channels), delta = env.zeros(2 * d.channels);
      Buffer dy = env.random(n, 12), dx = env.zeros(n), dgb = env.zeros(2 * d.channels);
      be.batchnorm_forward_train(d, x.f32(), gb.f32(), running.f32(), y.f32(), saved.f32(), delta.f32());
      add(c.name + " backward", 0, 5.0 * n * f4, [&] {  // x and dy read twice, dx written
        be.batchnorm_backward(d, x.f32(), gb.f32(), saved.f32(), dy.f32(), dx.f32(), dgb.f32());
      });
      break;
    }
    case OpKind::Dense: {
      const strand::DenseDesc& d = c.dense;
      Buffer x = env.random(d.batch * d.in, 5), w = env.random(d.out * d.in, 6),
             dy = env.random(d.batch * d.out, 7);
      Buffer dx = env.zeros(d.batch * d.in), dw = env.zeros(d.out * d.in), db = env.zeros(d.out);
      add(c.name + " backward", (c.needs_dx ? 2 : 1) * d.flops(), 0, [&] {
        be.dense_backward(d, x.f32(), w.f32(), dy.f32(), c.needs_dx ? dx.f32() : nullptr, dw.f32(), db.f32());
      });
      break;
    }
    case OpKind::Relu: {
      if (c.relu_in_backward) break;
      Buffer h = env.random(c.elements, 14), dh = env.random(c.elements, 15);
      add(c.name + " backward", 0, 3.0 * c.elements * f4,
          [&] { be.relu_backward(c.elements, h.f32(), dh.f32(), dh.f32()); });
      break;
    }
    case OpKind::Dropout: {
      Buffer dh = env.random(c.elements, 15);
      add(c.name + " backward", 0, 2.0 * c.elements * f4,
          [&] { be.dropout_backward(c.elements, c.rate, 42, 0, dh.f32(), dh.f32()); });
      break;
    }
    case OpKind::Gather:
    case OpKind::SoftmaxXent:  // forward and backward in one call, timed with the forward
    case OpKind::Adam:
      break;
  }
}

// Every op of a step (models/op_cases.hpp) in the order the step runs them: forward, the
// loss, backward in reverse, Adam last.
std::vector<Row> run_mode(const Mode& mode, int64_t B, int reps, std::string& algos) {
  Env env(mode.options);
  Backend& be = *env.be;
  const std::vector<OpCase> ops = strand::models::op_cases(strand::models::mnist_cnn(), B);
  std::vector<Row> rows;
  const Add add = [&](const std::string& op, double flops, double bytes, const std::function<void()>& f) {
    rows.push_back({mode.name, op, B, time_ms(be, reps, f), flops, bytes});
  };
  for (const OpCase& c : ops)
    if (c.kind != OpKind::Adam) time_forward(env, c, add);
  for (auto c = ops.rbegin(); c != ops.rend(); ++c) time_backward(env, *c, add);
  time_forward(env, strand::models::ops_of(ops, OpKind::Adam).at(0), add);
  // The ops mnist_cnn lacks (general pooling, batchnorm), from the shipped models that have them.
  for (const char* other : {"mnist_bn", "cifar_cnn"})
    for (OpCase c : strand::models::op_cases(strand::models::by_name(other), B))
      if (c.kind == OpKind::Pool || c.kind == OpKind::BatchNorm) {
        c.name = std::string(other) + " " + c.name;
        time_forward(env, c, add);
        time_backward(env, c, add);
      }

  // The whole step through the Model, eager and (on a second backend) as CUDA graphs.
  for (bool graphs : {false, true}) {
    strand::CudaOptions o = mode.options;
    o.graphs = graphs;
    std::unique_ptr<Backend> owned = graphs ? strand::make_cuda_backend(0, o) : nullptr;
    Backend& mb = graphs ? *owned : be;
    strand::Model model(mb, strand::models::by_name("mnist_cnn"));
    model.init(1);
    strand::Optimizer opt(mb, strand::OptimizerConfig{}, model.param_count());
    Buffer mx = mb.alloc(size_t(B * model.arch().input.numel()) * sizeof(float));
    Buffer my = mb.alloc(size_t(B) * sizeof(int32_t));
    uint64_t key = 0;
    rows.push_back({mode.name, graphs ? "model step (graphs)" : "model step (eager)", B,
                    time_ms(mb, reps,
                            [&] {
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
  algos += std::string(mode.name) + " batch " + std::to_string(B) + ":";
  for (const OpCase& c : strand::models::ops_of(ops, OpKind::Conv2d)) {
    algos += " " + c.name + " " + cuda.conv_algorithms(c.conv, /*bias=*/true) + ";";
  }
  algos.back() = '\n';
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
        std::puts(
            "Usage: bench_cuda_layers [--batches 100,512,4096] [--reps N] [--json FILE]\n"
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
      nlohmann::json rows = nlohmann::json::array();
      for (const Row& r : all)
        rows.push_back({{"mode", r.mode},
                        {"op", r.op},
                        {"batch", r.batch},
                        {"ms", r.ms},
                        {"flops", r.flops},
                        {"bytes", r.bytes}});
      cudaDeviceProp prop{};
      const std::string gpu = cudaGetDeviceProperties(&prop, 0) == cudaSuccess ? prop.name : "";
      strand::io::write_record(json_path, {{"reps", reps}, {"rows", rows}, {"cudnn_algorithms", algos}},
                               strand::io::make_stamp({.on_gpu = true, .gpu = gpu}));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_layers: %s\n", e.what());
    return 1;
  }
  return 0;
}
