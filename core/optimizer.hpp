// Optimizers over a model's flat parameter buffer: SGD, momentum, Adam. Their state (velocity,
// Adam moments, step count) is one flat buffer per slot, so it checkpoints in one piece.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/backend.hpp"

namespace strand {

struct OptimizerConfig {
  std::string kind = "adam";  // "sgd", "momentum", "adam"
  float lr = 2e-3f;  // the CLI's default too
  float momentum = 0.9f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
};

// Usage error unless kind is known and the numbers are sensible (lr > 0, betas in [0,1) ...).
void validate(const OptimizerConfig& cfg);

// Host copy of an optimizer's state, for checkpoints.
struct OptimizerState {
  std::string kind;
  int64_t step = 0;
  std::vector<std::vector<float>> slots;  // momentum: {velocity}; adam: {m, v}; sgd: {}
  template <class Archive>
  void serialize(Archive& ar) { ar(kind, step, slots); }
};

class Optimizer {
 public:
  Optimizer(Backend& backend, OptimizerConfig cfg, int64_t n);

  const OptimizerConfig& config() const { return cfg_; }
  // The learning rate of the next steps (schedules change it between steps).
  void set_lr(float lr);
  int64_t steps_taken() const { return step_; }
  // params -= update(grads); both device buffers of n floats.
  void step(float* params, const float* grads);

  OptimizerState state() const;
  void load_state(const OptimizerState& s);  // Format error when it does not fit this optimizer

 private:
  Backend& be_;
  OptimizerConfig cfg_;
  int64_t n_;
  int64_t step_ = 0;
  std::vector<Buffer> slots_;
};

}  // namespace strand
