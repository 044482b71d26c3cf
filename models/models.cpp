#include <strand/models/models.hpp>

#include <strand/core/error.hpp>
#include <strand/core/layers.hpp>

namespace strand::models {

using namespace strand::layers;

ModelArch mnist_cnn() {
  return {"mnist_cnn",
          Shape{1, 28, 28},
          {conv2d(32, 5, true), relu(), maxpool2x2(),  // [32,14,14]
           conv2d(64, 5, true), relu(), maxpool2x2(),  // [64,7,7]
           flatten(),                                  // [3136]
           dense(1024), relu(), dropout(0.4),          // [1024]
           dense(10)}};                                // [10] logits
}

ModelArch mnist_mlp() {
  return {"mnist_mlp", Shape{1, 28, 28}, {flatten(), dense(1024), relu(), dropout(0.4), dense(10)}};
}

std::vector<std::string> names() { return {"mnist_cnn", "mnist_mlp"}; }

ModelArch by_name(const std::string& name) {
  if (name == "mnist_cnn") return mnist_cnn();
  if (name == "mnist_mlp") return mnist_mlp();
  std::string known;
  for (const auto& n : names()) known += (known.empty() ? "" : ", ") + n;
  throw Error(ErrorKind::Usage, "unknown model '" + name + "' (known: " + known + ")", "model");
}

}  // namespace strand::models
