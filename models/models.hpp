// The models strand ships, as architectures (layer lists with shapes fixed by the input):
//   mnist_cnn  SageMaker's TensorFlow MNIST example (mnist.py): conv 5x5x32 same + ReLU +
//              pool 2x2, conv 5x5x64 same + ReLU + pool 2x2, dense 1024 + ReLU, dropout 0.4,
//              dense 10. 3,274,634 parameters.
//   mnist_mlp  the example's mnist-2.py: flatten, dense 1024 + ReLU, dropout 0.4, dense 10.
#pragma once

#include <string>
#include <vector>

#include <strand/core/model.hpp>

namespace strand::models {

ModelArch mnist_cnn();
ModelArch mnist_mlp();

std::vector<std::string> names();
// Usage error naming the known models when `name` is not one of them.
ModelArch by_name(const std::string& name);

}  // namespace strand::models
