// Library example: train mnist_cnn for a few hundred steps with the C++ API, evaluate it and
// export it, without the CLI.
//   build/examples/train_mnist DATA_DIR MODEL_DIR [STEPS]
#include <cstdio>
#include <cstdlib>
#include <string>

#include <strand/core/context.hpp>
#include <strand/core/error.hpp>
#include <strand/core/model.hpp>
#include <strand/io/dataset.hpp>
#include <strand/io/model_file.hpp>
#include <strand/models/models.hpp>
#include <strand/train/trainer.hpp>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s DATA_DIR MODEL_DIR [STEPS]\n", argv[0]);
    return 2;
  }
  try {
    strand::Context ctx(strand::make_cpu_backend(2));
    strand::Model model(ctx.backend(), strand::models::mnist_cnn());
    const strand::io::DataSplits data = strand::io::load_data_dir(argv[1]);

    strand::TrainConfig cfg;  // the CLI's recipe: Adam 0.002 on a cosine schedule, batch 64, seed 42
    cfg.max_steps = argc > 3 ? std::atoll(argv[3]) : 300;
    cfg.on_eval = [&](const strand::Metrics& m) {
      std::printf("step %lld: loss %.4f, test accuracy %.2f%%\n", (long long)m.step, m.loss,
                  100 * m.test_accuracy);
    };
    strand::train(ctx, model, data.train, data.eval ? &*data.eval : nullptr, cfg);

    const strand::io::ModelFile file{
        model.arch(), strand::io::default_signature(model), model.get_params(), {}};
    const int64_t version = strand::io::export_model(argv[2], file);
    std::printf("exported version %lld to %s\n", (long long)version, argv[2]);
  } catch (const strand::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
