// strand model summary NAME: each layer of a model with its output shape, parameters and
// forward FLOPs per image, as text or a JSON record.
#include <cstdio>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include <strand/core/backend.hpp>
#include <strand/core/model.hpp>
#include <strand/models/models.hpp>
#include "apps/commands.hpp"

namespace strand::cli {

namespace {

struct SummaryArgs {
  std::string model;
  bool json = false;
};

void run_summary(const SummaryArgs& a) {
  // Shapes and counts need no kernels: the CPU backend binds the layers.
  const std::unique_ptr<Backend> cpu = make_cpu_backend(1);
  const Model model(*cpu, models::by_name(a.model));
  const std::vector<LayerSummary> layers = model.summary();
  if (a.json) {
    nlohmann::json rows = nlohmann::json::array();
    for (const LayerSummary& l : layers)
      rows.push_back({{"type", l.spec.type},
                      {"options", l.spec.attrs},
                      {"output", l.output.dims()},
                      {"params", l.params},
                      {"flops", l.flops}});
    const nlohmann::json out = {{"model", model.arch().name},
                                {"input", model.arch().input.dims()},
                                {"classes", model.classes()},
                                {"params", model.param_count()},
                                {"flops", model.forward_flops_per_sample()},
                                {"layers", rows}};
    std::cout << out.dump() << '\n';
    return;
  }
  std::printf("%s: input %s, %lld classes, %lld parameters, %.2f MFLOPs per image (forward)\n",
              model.arch().name.c_str(), model.arch().input.str().c_str(), (long long)model.classes(),
              (long long)model.param_count(), model.forward_flops_per_sample() / 1e6);
  std::printf("%3s  %-34s  %-14s  %10s  %10s\n", "#", "layer", "output", "params", "MFLOPs");
  for (size_t i = 0; i < layers.size(); ++i)
    std::printf("%3zu  %-34s  %-14s  %10lld  %10.3f\n", i, describe(layers[i].spec).c_str(),
                layers[i].output.str().c_str(), (long long)layers[i].params, layers[i].flops / 1e6);
}

}  // namespace

void add_model_command(CLI::App& app) {
  CLI::App* model = app.add_subcommand("model", "Look at a model");
  model->require_subcommand(1);
  auto a = std::make_shared<SummaryArgs>();
  CLI::App* summary =
      model->add_subcommand("summary", "Each layer's output shape, parameters and forward FLOPs per image");
  summary->add_option("model", a->model, "A built-in model: mnist_cnn or mnist_mlp")->required();
  summary->add_flag(
      "--json", a->json,
      "Print one JSON object: model, input, classes, params, flops, and per layer type, options, "
      "output, params, flops");
  summary->callback([a] { run_summary(*a); });
}

}  // namespace strand::cli
