// strand model summary|file|list: a model's layers with their output shapes, parameters and
// forward FLOPs per image (text or JSON), its canonical model file, and the built-in models.
#include <cstdio>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include <strand/core/backend.hpp>
#include <strand/core/model.hpp>
#include <strand/core/text.hpp>
#include <strand/models/models.hpp>
#include "apps/commands.hpp"

namespace strand::cli {

namespace {

struct ModelArgs {
  std::string model;
  int64_t classes = 0;  // for a model that takes its class count from the labels
  bool json = false;
};

ModelArch arch_of(const ModelArgs& a) {
  const models::ModelSpec m = models::find_model(a.model);
  if (a.classes > 0) return m.with_classes(a.classes);
  return m.arch;
}

void run_summary(const ModelArgs& a) {
  const models::ModelSpec spec = models::find_model(a.model);
  // Shapes and counts need no kernels: the CPU backend binds the layers.
  const std::unique_ptr<Backend> cpu = make_cpu_backend(1);
  const Model model(*cpu, arch_of(a));
  const std::vector<LayerSummary> layers = model.summary();
  if (a.json) {
    nlohmann::json rows = nlohmann::json::array();
    for (const LayerSummary& l : layers)
      rows.push_back({{"layer", nlohmann::json::parse(models::layer_json(l.spec))},
                      {"output", l.output.dims()},
                      {"params", l.params},
                      {"state", l.state},
                      {"flops", l.flops}});
    const nlohmann::json out = {{"model", model.arch().name},
                                {"source", spec.source},
                                {"input", model.arch().input.dims()},
                                {"classes", model.classes()},
                                {"classes_from_labels", !spec.classes.has_value()},
                                {"params", model.param_count()},
                                {"trainable", model.trainable_count()},
                                {"flops", model.forward_flops_per_sample()},
                                {"layers", rows}};
    std::cout << out.dump() << '\n';
    return;
  }
  std::printf(
      "%s (%s): input %s, %lld classes%s, %lld parameters (%lld trained), %.2f MFLOPs per image "
      "(forward)\n",
      model.arch().name.c_str(), spec.source.c_str(), model.arch().input.str().c_str(),
      (long long)model.classes(), spec.classes ? "" : " (from the labels; --classes sets them here)",
      (long long)model.param_count(), (long long)model.trainable_count(),
      model.forward_flops_per_sample() / 1e6);
  std::printf("%3s  %-34s  %-14s  %10s  %10s\n", "#", "layer", "output", "params", "MFLOPs");
  for (size_t i = 0; i < layers.size(); ++i)
    std::printf("%3zu  %-34s  %-14s  %10lld  %10.3f\n", i, describe(layers[i].spec).c_str(),
                layers[i].output.str().c_str(), (long long)layers[i].params, layers[i].flops / 1e6);
}

}  // namespace

void add_model_command(CLI::App& app) {
  CLI::App* model = app.add_subcommand("model", "Look at a model: a built-in one or a model file");
  model->require_subcommand(1);
  auto a = std::make_shared<ModelArgs>();
  const std::string what = "A built-in model (" + join(models::names(), ", ") + ") or a model file (.json)";
  CLI::App* summary =
      model->add_subcommand("summary", "Each layer's output shape, parameters and forward FLOPs per image");
  summary->add_option("model", a->model, what)->required();
  summary->add_option("--classes", a->classes, "Class count for a model that takes it from the labels")
      ->check(CLI::PositiveNumber);
  summary->add_flag("--json", a->json,
                    "Print one JSON object: model, source, input, classes, params, trainable, flops, and per "
                    "layer: layer (as the model file writes it), output, params, state, flops");
  summary->callback([a] { run_summary(*a); });
  CLI::App* file = model->add_subcommand(
      "file", "Print a model as a model file, each setting spelt out: a start for one of your own");
  file->add_option("model", a->model, what)->required();
  file->callback([a] {
    const models::ModelSpec m = models::find_model(a->model);
    std::cout << models::to_model_json(m.arch, m.description);
  });
  CLI::App* list = model->add_subcommand("list", "The built-in models");
  list->callback([] {
    for (const std::string& name : models::names())
      std::printf("%-10s  %s\n", name.c_str(), models::builtin(name).description.c_str());
  });
}

}  // namespace strand::cli
