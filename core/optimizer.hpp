// Optimizers over a model's flat parameter buffer: SGD, momentum, Adam. Their state (velocity,
// Adam moments, step count) is one flat buffer per slot, so it checkpoints in one piece.
// update_step() is the one update rule: Optimizer applies it to the whole buffer, the parameter
// server (ps/server) to each chunk of its shard.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <strand/core/backend.hpp>

namespace strand {

enum class OptimizerKind : uint8_t { Sgd, Momentum, Adam };

// "sgd", "momentum" or "adam"; Usage error naming the text and the choices otherwise.
OptimizerKind parse_optimizer_kind(std::string_view text);
std::string_view to_string(OptimizerKind kind);
// State buffers of n floats the kind keeps: momentum {velocity}, adam {m, v}, sgd none.
size_t slot_count(OptimizerKind kind);

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::Adam;
  float lr = 2e-3f;  // the CLI's default too
  float momentum = 0.9f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  bool operator==(const OptimizerConfig&) const = default;
};

// Usage error unless the kind is known and the numbers are sensible (lr > 0, betas in [0,1) ...).
void validate(const OptimizerConfig& cfg);

// One step of cfg's rule with learning rate cfg.lr over n floats of `be`'s memory:
// params -= update(grads). `slots` are the slot_count(cfg.kind) state buffers of n floats;
// `step` numbers this step from 1 (Adam's bias correction).
void update_step(Backend& be, const OptimizerConfig& cfg, int64_t step, int64_t n, float* params,
                 const float* grads, std::span<const Buffer> slots);

// The state rule (core/model.hpp): state -= deltas over n floats, whatever the optimizer.
void state_step(Backend& be, int64_t n, float* state, const float* deltas);

// Host copy of an optimizer's state, for checkpoints (io/model_file stores the kind as its name).
struct OptimizerState {
  OptimizerKind kind = OptimizerKind::Adam;
  int64_t step = 0;
  std::vector<std::vector<float>> slots;  // momentum: {velocity}; adam: {m, v}; sgd: {}
};

class Optimizer {
 public:
  // Over a model's n floats, of which the first `trainable` (all when negative) take cfg's rule
  // and the rest, its state, the state rule. Slots cover the trainable floats.
  Optimizer(Backend& backend, OptimizerConfig cfg, int64_t n, int64_t trainable = -1);

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
  int64_t n_;      // trainable
  int64_t total_;  // trainable + state
  int64_t step_ = 0;
  std::vector<Buffer> slots_;
};

}  // namespace strand
