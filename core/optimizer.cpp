#include "core/optimizer.hpp"

#include <cmath>

#include "core/error.hpp"

namespace strand {

void validate(const OptimizerConfig& c) {
  const std::string where = "optimizer";
  STRAND_CHECK(c.kind == "sgd" || c.kind == "momentum" || c.kind == "adam", Usage,
               "unknown optimizer '" + c.kind + "' (choose sgd, momentum or adam)", where);
  STRAND_CHECK(std::isfinite(c.lr) && c.lr > 0, Usage, "learning rate must be > 0, got " + std::to_string(c.lr), where);
  STRAND_CHECK(c.momentum >= 0 && c.momentum < 1, Usage, "momentum must be in [0,1)", where);
  STRAND_CHECK(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1, Usage, "Adam betas must be in [0,1)", where);
  STRAND_CHECK(c.eps > 0, Usage, "Adam epsilon must be > 0", where);
}

static size_t slot_count(const std::string& kind) { return kind == "adam" ? 2 : kind == "momentum" ? 1 : 0; }

Optimizer::Optimizer(Backend& backend, OptimizerConfig cfg, int64_t n) : be_(backend), cfg_(std::move(cfg)), n_(n) {
  validate(cfg_);
  for (size_t i = 0; i < slot_count(cfg_.kind); ++i) slots_.push_back(be_.alloc(size_t(n_) * sizeof(float)));
}

void Optimizer::set_lr(float lr) {
  STRAND_CHECK(std::isfinite(lr) && lr >= 0, Usage, "learning rate must be >= 0, got " + std::to_string(lr),
               "optimizer");
  cfg_.lr = lr;
}

void Optimizer::step(float* params, const float* grads) {
  ++step_;
  if (cfg_.kind == "sgd") {
    be_.sgd_step(n_, cfg_.lr, params, grads);
  } else if (cfg_.kind == "momentum") {
    be_.momentum_step(n_, cfg_.lr, cfg_.momentum, params, grads, slots_[0].f32());
  } else {
    be_.adam_step(n_, cfg_.lr, cfg_.beta1, cfg_.beta2, cfg_.eps, step_, params, grads, slots_[0].f32(),
                  slots_[1].f32());
  }
}

OptimizerState Optimizer::state() const {
  OptimizerState s{cfg_.kind, step_, {}};
  for (const Buffer& b : slots_) {
    s.slots.emplace_back(size_t(n_));
    be_.to_host(s.slots.back().data(), b.data(), size_t(n_) * sizeof(float));
  }
  return s;
}

void Optimizer::load_state(const OptimizerState& s) {
  const std::string where = "optimizer state";
  STRAND_CHECK(s.kind == cfg_.kind, Format,
               "saved state is for optimizer '" + s.kind + "', this run uses '" + cfg_.kind + "'", where);
  STRAND_CHECK(s.slots.size() == slots_.size() && s.step >= 0, Format, "saved state has the wrong number of slots", where);
  for (const auto& slot : s.slots)
    STRAND_CHECK(int64_t(slot.size()) == n_, Format,
                 "saved state has " + std::to_string(slot.size()) + " values per slot, the model has " + std::to_string(n_),
                 where);
  for (size_t i = 0; i < slots_.size(); ++i)
    be_.to_device(slots_[i].data(), s.slots[i].data(), size_t(n_) * sizeof(float));
  step_ = s.step;
}

}  // namespace strand
