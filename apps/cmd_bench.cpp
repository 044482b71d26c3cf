// strand bench train: training throughput of one process, as one JSON object.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "apps/commands.hpp"
#include "apps/common.hpp"
#include "core/cpu/gemm.hpp"
#include "core/error.hpp"
#include "models/models.hpp"
#include "train/trainer.hpp"

namespace strand::cli {

namespace {

struct BenchArgs {
  std::string model = "mnist_cnn";
  std::string data;
  DeviceArgs device;
  int64_t batch_size = 100, steps = 50, warmup = 5;
  int threads = default_threads();
  bool json = false;
};

// Uniform pixels and labels: throughput does not depend on the values.
io::Dataset synthetic(const Shape& sample, int64_t n) {
  io::Dataset d;
  d.sample_shape = sample;
  d.images.resize(size_t(n * sample.numel()));
  d.labels.resize(size_t(n));
  for (size_t i = 0; i < d.images.size(); ++i) d.images[i] = float(mix64(i) >> 40) / 16777216.0f;
  for (size_t i = 0; i < d.labels.size(); ++i) d.labels[i] = int32_t(mix64(~i) % 10);
  return d;
}

void run_bench_train(const BenchArgs& a) {
  STRAND_CHECK(a.steps >= 1 && a.warmup >= 0, Usage, "--steps must be >= 1 and --warmup >= 0", "strand bench train");
  Context ctx = make_context(a.device, a.threads);
  Model model(ctx.backend(), models::by_name(a.model));
  const std::filesystem::path data_dir = a.data.empty() ? default_mnist_cache() : std::filesystem::path(a.data);
  io::Dataset data;
  std::string source;
  if (!a.data.empty() || std::filesystem::exists(data_dir)) {
    data = std::move(load_data(ctx, data_dir).train);
    source = data_dir.string();
  } else {
    data = synthetic(model.arch().input, std::min<int64_t>(60000, a.batch_size * (a.steps + a.warmup)));
    source = "synthetic";
    ctx.log("no MNIST cache at " + data_dir.string() + ": timing on synthetic data");
  }

  TrainConfig cfg;
  cfg.batch_size = a.batch_size;
  cfg.epochs = (a.batch_size * (a.steps + a.warmup)) / data.size() + 2;
  if (a.warmup > 0) {
    cfg.max_steps = a.warmup;
    train(ctx, model, data, nullptr, cfg);
  }
  cfg.max_steps = a.steps;
  const auto t0 = std::chrono::steady_clock::now();
  const TrainResult r = train(ctx, model, data, nullptr, cfg);
  ctx.backend().synchronize();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double ips = double(r.global_step * a.batch_size) / secs;
  // Training costs about three forward passes (forward, input gradient, weight gradient).
  const double gflops = 3 * model.forward_flops_per_sample() * ips / 1e9;
  if (a.json) {
    std::cout << nlohmann::json{{"model", a.model},       {"batch_size", a.batch_size}, {"threads", a.threads}, {"device", a.device.device}, {"tf32", a.device.tf32},
                                {"steps", r.global_step}, {"images_per_sec", ips},     {"seconds", secs},
                                {"gflops_per_sec", gflops}, {"gemm_kernel", cpu::sgemm_kernel_name()},
                                {"data", source}}
                     .dump()
              << '\n';
  } else {
    std::printf("%s on %s, batch %lld, %d thread(s): %.0f images/s (%.1f GFLOP/s, %lld steps in %.2f s, gemm %s)\n",
                a.model.c_str(), a.device.device.c_str(), (long long)a.batch_size, a.threads, ips, gflops, (long long)r.global_step, secs,
                cpu::sgemm_kernel_name());
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto a = std::make_shared<BenchArgs>();
  CLI::App* tr = bench->add_subcommand("train", "Training throughput of one process (images/s)");
  tr->add_option("--model", a->model, "Model")->check(CLI::IsMember(models::names()))->capture_default_str();
  tr->add_option("--data", a->data, "MNIST directory (default: the scripts/setup cache, else synthetic data)");
  tr->add_option("--batch-size", a->batch_size, "Images per step")->check(CLI::PositiveNumber)->capture_default_str();
  tr->add_option("--threads", a->threads, "CPU threads")->check(CLI::PositiveNumber)->capture_default_str();
  tr->add_option("--steps", a->steps, "Timed steps")->check(CLI::PositiveNumber)->capture_default_str();
  tr->add_option("--warmup", a->warmup, "Untimed steps first")->check(CLI::NonNegativeNumber)->capture_default_str();
  add_device_options(*tr, a->device);
  tr->add_flag("--json", a->json, "Print one JSON object");
  tr->callback([a] { run_bench_train(*a); });
}

}  // namespace strand::cli
