// strand bench train: training throughput of one process, as one JSON object.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <vector>

#include <strand/core/cpu/gemm.hpp>
#include <strand/core/error.hpp>
#include <strand/core/text.hpp>
#include <strand/io/record.hpp>
#include <strand/models/models.hpp>
#include <strand/train/trainer.hpp>
#include "apps/commands.hpp"
#include "apps/common.hpp"

namespace strand::cli {

namespace {

struct BenchArgs {
  std::string model = "mnist_cnn";
  std::string data;
  DeviceArgs device;
  int64_t batch_size = 100, steps = 50, warmup = 5;
  int threads = default_threads();
  bool json = false;
  Augmentation augment{};  // bench train only
};

// Registers the flags `bench train` and `bench infer` share; `steps` is what each calls its
// timed repetitions.
void add_common_options(CLI::App& cmd, BenchArgs& a, const char* steps_name, const char* steps_help) {
  cmd.add_option("--model", a.model, "A built-in model (" + join(models::names(), ", ") + ") or a model file")
      ->capture_default_str();
  cmd.add_option("--data", a.data,
                 "MNIST directory, or 'synthetic' (default: the scripts/setup cache for a model of MNIST's "
                 "shape, else synthetic data of the model's shape)");
  cmd.add_option("--batch-size", a.batch_size, "Images per batch")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--threads", a.threads, "CPU threads")->check(CLI::PositiveNumber)->capture_default_str();
  cmd.add_option(steps_name, a.steps, steps_help)->check(CLI::PositiveNumber)->capture_default_str();
  cmd.add_option("--warmup", a.warmup, "Untimed repetitions first")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_device_options(cmd, a.device);
  cmd.add_flag("--json", a.json, "Print one JSON object");
}

io::RecordStamp bench_stamp(const BenchArgs& a) {
  return io::make_stamp({.threads = a.threads, .on_gpu = !a.device.device.is_cpu()});
}

// Uniform pixels and labels: throughput does not depend on the values.
io::Dataset synthetic(const Shape& sample, int64_t n, int64_t classes) {
  io::Dataset d;
  d.sample_shape = sample;
  d.images.resize(size_t(n * sample.numel()));
  d.labels.resize(size_t(n));
  for (size_t i = 0; i < d.images.size(); ++i) d.images[i] = float(mix64(i) >> 40) / 16777216.0f;
  for (size_t i = 0; i < d.labels.size(); ++i) d.labels[i] = int32_t(mix64(~i) % uint64_t(classes));
  return d;
}

// MNIST's training or test split from --data or the cache, else synthetic images; `source`
// says which.
io::Dataset bench_data(const Context& ctx, const BenchArgs& a, const Model& model, bool train_split,
                       std::string& source) {
  const std::filesystem::path data_dir =
      a.data.empty() ? default_mnist_cache() : std::filesystem::path(a.data);
  const bool mnist_shaped = model.arch().input == Shape{1, 28, 28};
  if (a.data != "synthetic" && (!a.data.empty() || (mnist_shaped && std::filesystem::exists(data_dir)))) {
    source = data_dir.string();
    return load_split(ctx, data_dir, train_split ? io::Split::train : io::Split::eval);
  }
  source = "synthetic";
  if (a.data.empty())
    ctx.log(mnist_shaped ? "no MNIST cache at " + data_dir.string() + ": timing on synthetic data"
                         : model.arch().name + " takes " + model.arch().input.str() +
                               " images: timing on synthetic data");
  return synthetic(model.arch().input,
                   std::clamp<int64_t>(a.batch_size * (a.steps + a.warmup), a.batch_size, 60000),
                   model.classes());
}

void run_bench_train(const BenchArgs& a) {
  STRAND_CHECK(a.steps >= 1 && a.warmup >= 0, Usage, "--steps must be >= 1 and --warmup >= 0",
               "strand bench train");
  Context ctx = make_context(a.device, a.threads);
  Model model(ctx.backend(), models::find_model(a.model).with_classes(10));
  std::string source;
  const io::Dataset data = bench_data(ctx, a, model, true, source);

  TrainConfig cfg;
  cfg.batch_size = a.batch_size;
  cfg.augment = a.augment;
  cfg.epochs = (a.batch_size * (a.steps + a.warmup)) / data.size() + 2;
  // An epoch's smaller last batch is a shape of its own (cuDNN plans, a CUDA graph): made first,
  // so that the timed steps do not include it (on the CPU it costs nothing).
  if (const int64_t rest = data.size() % a.batch_size;
      rest != 0 && a.warmup > 0 && !a.device.device.is_cpu()) {
    TrainConfig last = cfg;
    last.batch_size = rest;
    last.max_steps = 2;
    train(ctx, model, data, nullptr, last);
  }
  // One call: the warm-up steps, then the timed ones, timed from their first as the peer times
  // its loop (the copy of the training set to the device and the optimizer's set-up come
  // before; one call also keeps the peak memory that of one optimizer).
  cfg.max_steps = a.warmup + a.steps;
  cfg.untimed_steps = a.warmup;
  const TrainResult r = train(ctx, model, data, nullptr, cfg);
  const double secs = r.train_seconds;
  const double ips = double(r.train_images) / secs;
  // Training costs about three forward passes (forward, input gradient, weight gradient).
  const double gflops = 3 * model.forward_flops_per_sample() * ips / 1e9;
  if (a.json) {
    io::write_record(std::cout,
                     {{"model", a.model},
                      {"batch_size", a.batch_size},
                      {"threads", a.threads},
                      {"device", a.device.device.str()},
                      {"tf32", a.device.tf32},
                      {"cudnn_benchmark", a.device.cudnn_benchmark},
                      {"steps", a.steps},
                      {"augment", to_string(a.augment)},
                      {"images_per_sec", ips},
                      {"seconds", secs},
                      {"gflops_per_sec", gflops},
                      {"gemm_kernel", cpu::sgemm_kernel_name()},
                      {"data", source}},
                     bench_stamp(a));
  } else {
    std::printf(
        "%s on %s, batch %lld, %d thread(s), augment %s: %.0f images/s (%.1f GFLOP/s, %lld steps in %.2f s, "
        "gemm %s)\n",
        a.model.c_str(), a.device.device.str().c_str(), (long long)a.batch_size, a.threads,
        to_string(a.augment).c_str(), ips, gflops, (long long)a.steps, secs, cpu::sgemm_kernel_name());
  }
}

}  // namespace

// Forward passes only (no dropout), as a serving endpoint runs them: each batch is copied in,
// run, turned into probabilities and copied out (Model::predict).
void run_bench_infer(const BenchArgs& a) {
  STRAND_CHECK(a.steps >= 1 && a.warmup >= 0, Usage, "--iterations must be >= 1 and --warmup >= 0",
               "strand bench infer");
  Context ctx = make_context(a.device, a.threads);
  Model model(ctx.backend(), models::find_model(a.model).with_classes(10));
  model.init(42);
  std::string source;
  // Predict takes float32 rows, as a request delivers them.
  const io::Dataset data = io::to_f32(bench_data(ctx, a, model, false, source));
  STRAND_CHECK(data.size() >= a.batch_size, Usage,
               "--batch-size " + std::to_string(a.batch_size) + " is larger than the " +
                   std::to_string(data.size()) + " images available",
               "strand bench infer");
  const int64_t sample = data.sample_shape.numel(), starts = data.size() - a.batch_size + 1;
  std::vector<float> probs(size_t(a.batch_size * model.classes()));
  // Consecutive batches walk through the data, so caches do not hold the same input.
  auto run = [&](int64_t i) {
    const int64_t first = (i * a.batch_size) % starts;
    model.predict(data.images.data() + first * sample, a.batch_size, probs.data());
  };
  for (int64_t i = 0; i < a.warmup; ++i) run(i);
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < a.steps; ++i) run(a.warmup + i);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double ips = double(a.steps * a.batch_size) / secs, latency_ms = 1000 * secs / double(a.steps);
  const double gflops = model.forward_flops_per_sample() * ips / 1e9;
  if (a.json) {
    io::write_record(std::cout,
                     {{"model", a.model},
                      {"batch_size", a.batch_size},
                      {"threads", a.threads},
                      {"device", a.device.device.str()},
                      {"tf32", a.device.tf32},
                      {"iterations", a.steps},
                      {"images_per_sec", ips},
                      {"latency_ms", latency_ms},
                      {"gflops_per_sec", gflops},
                      {"data", source}},
                     bench_stamp(a));
  } else {
    std::printf(
        "%s inference on %s, batch %lld, %d thread(s): %.0f images/s, %.3f ms per batch (%.1f GFLOP/s)\n",
        a.model.c_str(), a.device.device.str().c_str(), (long long)a.batch_size, a.threads, ips, latency_ms,
        gflops);
  }
}

void add_bench_command(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto a = std::make_shared<BenchArgs>();
  CLI::App* tr = bench->add_subcommand("train", "Training throughput of one process (images/s)");
  add_common_options(*tr, *a, "--steps", "Timed training steps");
  tr->add_option_function<std::string>(
        "--augment", [a](const std::string& v) { a->augment = parse_augmentation(v); },
        "Augment the batches as `strand train --augment` does (shift:P, flip, shift:P,flip)")
      ->default_str("none");
  tr->callback([a] { run_bench_train(*a); });
  auto b = std::make_shared<BenchArgs>();
  b->steps = 200;
  b->warmup = 10;
  CLI::App* inf = bench->add_subcommand("infer", "Inference throughput and latency (forward only, images/s)");
  add_common_options(*inf, *b, "--iterations", "Timed batches");
  inf->callback([b] { run_bench_infer(*b); });
  add_bench_serve_command(*bench);
  add_bench_allreduce_command(*bench);
  add_bench_ps_command(*bench);
}

}  // namespace strand::cli
