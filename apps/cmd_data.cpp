// strand data mnist: write MNIST in the layout of SageMaker's TensorFlow example.
#include <iostream>
#include <memory>

#include <strand/core/error.hpp>
#include "apps/commands.hpp"
#include "apps/common.hpp"

namespace strand::cli {

namespace {
struct DataArgs {
  std::string out, source;
};

void run_mnist(const DataArgs& a) {
  STRAND_CHECK(!a.out.empty(), Usage, "--out is required", "strand data mnist");
  const std::filesystem::path source =
      a.source.empty() ? default_mnist_cache() : std::filesystem::path(a.source);
  Context ctx = make_context(DeviceArgs{}, 1);
  if (!std::filesystem::exists(source))
    throw Error(ErrorKind::Io,
                "no MNIST files here; run scripts/setup to download them, or pass --source DIR",
                source.string());
  const io::DataSplits s = load_data(ctx, source);
  STRAND_CHECK(s.eval, Io, "no MNIST test files (t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)",
               source.string());
  io::write_mnist_npy(s, a.out);
  const std::string pixels = std::to_string(s.train.sample_shape.numel());
  ctx.log("wrote train_data.npy [" + std::to_string(s.train.size()) + "," + pixels +
          "], train_labels.npy, eval_data.npy [" + std::to_string(s.eval->size()) + "," + pixels +
          "], eval_labels.npy to " + a.out);
}
}  // namespace

void add_data_command(CLI::App& app) {
  CLI::App* data = app.add_subcommand("data", "Prepare data sets");
  data->require_subcommand(1);
  auto a = std::make_shared<DataArgs>();
  CLI::App* mnist = data->add_subcommand(
      "mnist",
      "Write MNIST as train_data.npy (float32 [60000,784] in [0,1]), train_labels.npy (int32), "
      "eval_data.npy, eval_labels.npy");
  mnist->add_option("--out", a->out, "Output directory");
  mnist->add_option("--source", a->source,
                    "Directory with the four MNIST IDX files (default: the scripts/setup cache)");
  mnist->callback([a] { run_mnist(*a); });
}

}  // namespace strand::cli
