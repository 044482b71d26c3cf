#include <strand/core/optimizer.hpp>

#include <cmath>
#include <string>

#include <strand/core/error.hpp>
#include <strand/core/text.hpp>

namespace strand {

namespace {
constexpr Name<OptimizerKind> kOptimizerNames[] = {
    {OptimizerKind::Sgd, "sgd"}, {OptimizerKind::Momentum, "momentum"}, {OptimizerKind::Adam, "adam"}};
}  // namespace

OptimizerKind parse_optimizer_kind(std::string_view text) {
  return parse_name(kOptimizerNames, text, "optimizer", "optimizer");
}

std::string_view to_string(OptimizerKind kind) { return name_of(kOptimizerNames, kind); }

size_t slot_count(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::Sgd:
      return 0;
    case OptimizerKind::Momentum:
      return 1;
    case OptimizerKind::Adam:
      return 2;
  }
  return 0;
}

void validate(const OptimizerConfig& c) {
  const std::string where = "optimizer";
  // A kind cast from a number (a file, the wire) may name none of the three.
  const bool known =
      c.kind == OptimizerKind::Sgd || c.kind == OptimizerKind::Momentum || c.kind == OptimizerKind::Adam;
  STRAND_CHECK(known, Usage, "unknown optimizer kind " + std::to_string(int(c.kind)), where);
  STRAND_CHECK(std::isfinite(c.lr) && c.lr > 0, Usage,
               "learning rate must be > 0, got " + std::to_string(c.lr), where);
  STRAND_CHECK(c.momentum >= 0 && c.momentum < 1, Usage, "momentum must be in [0,1)", where);
  STRAND_CHECK(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1, Usage,
               "Adam betas must be in [0,1)", where);
  STRAND_CHECK(c.eps > 0, Usage, "Adam epsilon must be > 0", where);
}

void update_step(Backend& be, const OptimizerConfig& c, int64_t step, int64_t n, float* params,
                 const float* grads, std::span<const Buffer> slots) {
  STRAND_CHECK(
      slots.size() == slot_count(c.kind), Internal,
      std::to_string(slots.size()) + " state buffers for optimizer '" + std::string(to_string(c.kind)) + "'",
      "optimizer");
  switch (c.kind) {
    case OptimizerKind::Sgd:
      be.sgd_step(n, c.lr, params, grads);
      break;
    case OptimizerKind::Momentum:
      be.momentum_step(n, c.lr, c.momentum, params, grads, slots[0].f32());
      break;
    case OptimizerKind::Adam:
      be.adam_step(n, c.lr, c.beta1, c.beta2, c.eps, step, params, grads, slots[0].f32(), slots[1].f32());
      break;
  }
}

void state_step(Backend& be, int64_t n, float* state, const float* deltas) {
  if (n > 0) be.sgd_step(n, 1.0f, state, deltas);
}

Optimizer::Optimizer(Backend& backend, OptimizerConfig cfg, int64_t n, int64_t trainable)
    : be_(backend), cfg_(cfg), n_(trainable < 0 ? n : trainable), total_(n) {
  validate(cfg_);
  STRAND_CHECK(n_ <= total_, Usage, std::to_string(n_) + " trainable parameters of " + std::to_string(total_),
               "optimizer");
  for (size_t i = 0; i < slot_count(cfg_.kind); ++i) slots_.push_back(be_.alloc(size_t(n_) * sizeof(float)));
}

void Optimizer::set_lr(float lr) {
  STRAND_CHECK(std::isfinite(lr) && lr >= 0, Usage, "learning rate must be >= 0, got " + std::to_string(lr),
               "optimizer");
  cfg_.lr = lr;
}

void Optimizer::step(float* params, const float* grads) {
  ++step_;
  update_step(be_, cfg_, step_, n_, params, grads, slots_);
  state_step(be_, total_ - n_, params + n_, grads + n_);
}

OptimizerState Optimizer::state() const {
  OptimizerState s{.kind = cfg_.kind, .step = step_, .slots = {}};
  for (const Buffer& b : slots_) {
    s.slots.emplace_back(size_t(n_));
    be_.to_host(s.slots.back().data(), b.data(), size_t(n_) * sizeof(float));
  }
  return s;
}

void Optimizer::load_state(const OptimizerState& s) {
  const std::string where = "optimizer state";
  STRAND_CHECK(s.kind == cfg_.kind, Format,
               "saved state is for optimizer '" + std::string(to_string(s.kind)) + "', this run uses '" +
                   std::string(to_string(cfg_.kind)) + "'",
               where);
  STRAND_CHECK(s.slots.size() == slots_.size() && s.step >= 0, Format,
               "saved state has the wrong number of slots", where);
  for (const auto& slot : s.slots)
    STRAND_CHECK(int64_t(slot.size()) == n_, Format,
                 "saved state has " + std::to_string(slot.size()) + " values per slot, the model has " +
                     std::to_string(n_),
                 where);
  for (size_t i = 0; i < slots_.size(); ++i)
    be_.to_device(slots_[i].data(), s.slots[i].data(), size_t(n_) * sizeof(float));
  step_ = s.step;
}

}  // namespace strand
