// strand model summary|file|diff|list: a model's layers with their output shapes, parameters and
// forward FLOPs per image (text or JSON), its canonical model file, how far two trained models'
// parameters differ, and the built-in models.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include <strand/core/backend.hpp>
#include <strand/core/error.hpp>
#include <strand/core/model.hpp>
#include <strand/core/text.hpp>
#include <strand/io/model_file.hpp>
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

// A model file, an export's directory (its model.strand) or a checkpoint, told apart by magic.
io::ModelFile read_any_model(std::filesystem::path path) {
  if (std::filesystem::is_directory(path)) path /= io::kModelFileName;
  std::ifstream f(path, std::ios::binary);
  STRAND_CHECK(f.good(), Io, "cannot open it", path.string());
  char magic[8] = {};
  f.read(magic, sizeof magic);
  if (std::string_view(magic, sizeof magic) == "STRANDCK") return io::load_checkpoint(path).model;
  return io::load_model_file(path);
}

// A Format error (exit 1) when the largest parameter difference is over the tolerance; a Usage
// error when the models do not have the same parameters at all.
struct DiffArgs {
  std::string a, b;
  double tolerance = -1;  // none
};

void run_diff(const DiffArgs& args) {
  const std::string &a_path = args.a, &b_path = args.b;
  const double tolerance = args.tolerance;
  const io::ModelFile a = read_any_model(a_path), b = read_any_model(b_path);
  STRAND_CHECK(a.params.size() == b.params.size(), Usage,
               "they have " + std::to_string(a.params.size()) + " and " + std::to_string(b.params.size()) +
                   " parameters: not the same model",
               a_path + " vs " + b_path);
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < a.params.size(); ++i) {
    const double d = std::abs(double(a.params[i]) - double(b.params[i]));
    if (!(d <= worst)) {  // a NaN counts as the worst
      worst = d;
      at = i;
    }
  }
  std::printf("%zu parameters; largest difference %.3g (parameter %zu: %.9g vs %.9g)\n", a.params.size(),
              worst, at, a.params.empty() ? 0.0 : double(a.params[at]),
              b.params.empty() ? 0.0 : double(b.params[at]));
  char over[96];
  std::snprintf(over, sizeof over, "the largest difference %.3g is over the tolerance %.3g", worst,
                tolerance);
  STRAND_CHECK(tolerance < 0 || worst <= tolerance, Format, over, a_path + " vs " + b_path);
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
  auto d = std::make_shared<DiffArgs>();
  CLI::App* diff = model->add_subcommand(
      "diff",
      "The largest difference between two models' parameters (exports, their directories or checkpoints)");
  diff->add_option("a", d->a, "A model file, export directory or checkpoint")->required();
  diff->add_option("b", d->b, "Another")->required();
  diff->add_option("--tolerance", d->tolerance, "Exit 1 when the largest difference is over this")
      ->check(CLI::NonNegativeNumber);
  diff->callback([d] { run_diff(*d); });
  CLI::App* list = model->add_subcommand("list", "The built-in models");
  list->callback([] {
    for (const std::string& name : models::names())
      std::printf("%-10s  %s\n", name.c_str(), models::builtin(name).description.c_str());
  });
}

}  // namespace strand::cli
