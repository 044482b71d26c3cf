// strand eval: test accuracy and confusion matrix of an exported model.
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>

#include <strand/core/error.hpp>
#include <strand/io/model_file.hpp>
#include <strand/train/trainer.hpp>
#include "apps/commands.hpp"
#include "apps/common.hpp"

namespace strand::cli {

namespace {

struct EvalArgs {
  std::string model_dir, data;
  DeviceArgs device;
  io::ImageLayout layout = io::ImageLayout::Auto;
  double val_split = 0;
  int64_t version = 0;  // 0: newest
  int64_t batch_size = 1000;
  int threads = default_threads();
  bool json = false;
};

void run_eval(const EvalArgs& a) {
  STRAND_CHECK(!a.model_dir.empty(), Usage, "--model-dir is required", "strand eval");
  STRAND_CHECK(!a.data.empty(), Usage, "--data is required", "strand eval");
  Context ctx = make_context(a.device, a.threads);
  int64_t version = 0;
  const io::ModelFile file = io::load_export(
      a.model_dir, a.version > 0 ? std::optional<int64_t>(a.version) : std::nullopt, &version);
  Model model(ctx.backend(), file.arch);
  model.set_params(file.params);
  const io::Dataset test =
      load_split(ctx, a.data, io::Split::eval,
                 {.layout = a.layout, .classes = model.classes(), .val_split = a.val_split});
  ctx.log("evaluating " + file.arch.name + " version " + std::to_string(version) + " from " + a.model_dir);
  const EvalResult r = evaluate(model, test, a.batch_size);
  if (a.json) {
    std::cout << nlohmann::json{{"accuracy", r.accuracy},
                                {"loss", r.loss},
                                {"examples", r.examples},
                                {"version", version},
                                {"confusion", r.confusion}}
                     .dump()
              << '\n';
    return;
  }
  std::printf("test accuracy %.2f%% (%lld images), mean loss %.4f\n", 100 * r.accuracy, (long long)r.examples,
              r.loss);
  std::printf("confusion matrix (rows: true label, columns: predicted)\n      ");
  for (size_t j = 0; j < r.confusion.size(); ++j) std::printf("%6zu", j);
  std::printf("\n");
  for (size_t i = 0; i < r.confusion.size(); ++i) {
    std::printf("%6zu", i);
    for (int64_t c : r.confusion[i]) std::printf("%6lld", (long long)c);
    std::printf("\n");
  }
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd =
      app.add_subcommand("eval", "Evaluate an exported model on the test split of a data directory");
  cmd->add_option("--model-dir", a->model_dir, "Model directory holding numbered versions")
      ->envname("SM_MODEL_DIR");
  cmd->add_option("--data", a->data,
                  "Data directory: IDX files or the .npy layout, as for `strand train` (the evaluation files "
                  "suffice)");
  cmd->add_option_function<std::string>(
         "--layout", [a](const std::string& v) { a->layout = io::parse_image_layout(v); },
         "Layout of 4-D .npy images: nchw or nhwc (see `strand train --help`)")
      ->default_str("auto");
  cmd->add_option("--val-split", a->val_split,
                  "Evaluate on the part of the training files `strand train --val-split F` held out")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--version", a->version, "Version to evaluate (default: the newest)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--batch-size", a->batch_size, "Images per forward pass")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--threads", a->threads, "CPU threads")->check(CLI::PositiveNumber)->capture_default_str();
  add_device_options(*cmd, a->device);
  cmd->add_flag("--json", a->json, "Print {\"accuracy\": ..., \"confusion\": [[...]]} instead of a table");
  cmd->callback([a] { run_eval(*a); });
}

}  // namespace strand::cli
