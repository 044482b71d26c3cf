#include "train/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.hpp"

namespace strand {

LrSchedule parse_lr_schedule(std::string_view text) {
  if (text == "constant") return LrSchedule::Constant;
  if (text == "linear") return LrSchedule::Linear;
  if (text == "cosine") return LrSchedule::Cosine;
  throw Error(ErrorKind::Usage,
              "unknown learning-rate schedule '" + std::string(text) + "' (choose constant, linear or cosine)",
              "lr schedule");
}

std::string_view to_string(LrSchedule schedule) {
  switch (schedule) {
    case LrSchedule::Constant: return "constant";
    case LrSchedule::Linear: return "linear";
    case LrSchedule::Cosine: return "cosine";
  }
  return "?";
}

float Schedule::lr(float base, int64_t step, int64_t total) const {
  const double t = total > 0 ? std::min(1.0, double(step) / double(total)) : 0.0;
  float rate = base;
  switch (kind) {
    case LrSchedule::Constant: break;
    case LrSchedule::Linear: rate = float(base * (1.0 - t)); break;
    case LrSchedule::Cosine: rate = float(base * 0.5 * (1.0 + std::cos(3.14159265358979323846 * t))); break;
  }
  if (step < warmup_steps) rate *= float(step + 1) / float(warmup_steps);
  return rate;
}

}  // namespace strand
