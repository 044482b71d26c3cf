// The kernel calls of a model's training step with their shapes at a batch size, derived from
// its architecture (models.hpp): the one table of op cases that the kernel tests, the
// CUDA-against-CPU tests and the layer benchmarks (bench/bench_layers.cpp,
// bench/gpu/bench_cuda_layers.cpp) iterate, in the spirit of ggml's test-backend-ops. In the
// order a step runs them forward: the batch's gather, each layer that calls a kernel, the
// loss, Adam over all parameters.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/model.hpp>

namespace strand::models {

enum class OpKind { Gather, Conv2d, MaxPool2x2, Pool, BatchNorm, Dense, Relu, Dropout, SoftmaxXent, Adam };

struct OpCase {
  // The layer type and its ordinal among the model's layers of that type ("conv1", "pool2",
  // "relu3", "dense1", "dropout1"); "gather", "softmax_xent", "adam" for the step's own.
  std::string name = {};
  OpKind kind = OpKind::Gather;
  int64_t batch = 0;
  Conv2dDesc conv = {};   // Conv2d
  Pool2dDesc pool = {};   // MaxPool2x2 (a max pool 2x2 stride 2: its fast path)
  PoolDesc pooling = {};  // Pool: any other pooling, global_avgpool included
  PoolKind pool_kind = PoolKind::Max;
  BatchNormDesc batchnorm = {};  // BatchNorm
  DenseDesc dense = {};          // Dense
  int64_t elements = 0;          // Relu, Dropout: per batch; Adam: the model's parameters
  int64_t sample = 0;            // Gather: floats per sample
  int64_t classes = 0;           // SoftmaxXent
  float rate = 0;                // Dropout
  // The ReLUs the model folds into their neighbours (core/model.cpp): one right after a conv2d
  // runs in the conv's forward (conv2d_relu_forward), one right before a max pool in the pool's
  // backward (relu_maxpool2x2_backward). Set on the conv or pool that takes it over, and on
  // the ReLU, whose pass then does not run on its own.
  bool relu_in_forward = false;
  bool relu_in_backward = false;
  bool needs_dx = true;  // false for the model's first layer: its input gradient is never used
};

// Shape error (naming the layer) for an architecture whose layers do not fit together.
std::vector<OpCase> op_cases(const ModelArch& arch, int64_t batch);
// The ops of kind `kind` in `cases`.
std::vector<OpCase> ops_of(const std::vector<OpCase>& cases, OpKind kind);
// The op called `name`; Usage error naming the known ones when there is none.
const OpCase& op_named(const std::vector<OpCase>& cases, const std::string& name);

}  // namespace strand::models
