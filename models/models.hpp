// The models strand ships, as model files (models/files/*.json, model_json.hpp):
//   mnist_cnn  SageMaker's TensorFlow MNIST example (mnist.py): conv 5x5x32 same + ReLU +
//              pool 2x2, conv 5x5x64 same + ReLU + pool 2x2, dense 1024 + ReLU, dropout 0.4,
//              dense 10. 3,274,634 parameters.
//   mnist_mlp  the example's mnist-2.py: flatten, dense 1024 + ReLU, dropout 0.4, dense 10.
//   mnist_bn   two 3x3 convolutions with batchnorm and pooling, dense 128, dense 10: a tenth
//              of mnist_cnn's work per image.
//   cifar_cnn  for 3x32x32 images: four 3x3 convolutions with batchnorm (one strided), max
//              pooling, global average pooling, dense 10.
#pragma once

#include <string>
#include <vector>

#include <strand/core/model.hpp>
#include <strand/models/model_json.hpp>

namespace strand::models {

ModelArch mnist_cnn();
ModelArch mnist_mlp();

std::vector<std::string> names();
// Usage error naming the known models when `name` is not one of them.
ModelSpec builtin(const std::string& name);
ModelArch by_name(const std::string& name);
// The built-in model's file, as shipped.
std::string builtin_text(const std::string& name);

}  // namespace strand::models
