#include <strand/train/schedule.hpp>

#include <algorithm>
#include <cmath>
#include <string>

#include <strand/core/text.hpp>

namespace strand {

namespace {
constexpr Name<LrSchedule> kScheduleNames[] = {
    {LrSchedule::Constant, "constant"}, {LrSchedule::Linear, "linear"}, {LrSchedule::Cosine, "cosine"}};
}  // namespace

LrSchedule parse_lr_schedule(std::string_view text) {
  return parse_name(kScheduleNames, text, "learning-rate schedule", "lr schedule");
}

std::string_view to_string(LrSchedule schedule) { return name_of(kScheduleNames, schedule); }

float Schedule::lr(float base, int64_t step, int64_t total) const {
  const double t = total > 0 ? std::min(1.0, double(step) / double(total)) : 0.0;
  float rate = base;
  switch (kind) {
    case LrSchedule::Constant:
      break;
    case LrSchedule::Linear:
      rate = float(base * (1.0 - t));
      break;
    case LrSchedule::Cosine:
      rate = float(base * 0.5 * (1.0 + std::cos(3.14159265358979323846 * t)));
      break;
  }
  if (step < warmup_steps) rate *= float(step + 1) / float(warmup_steps);
  return rate;
}

}  // namespace strand
