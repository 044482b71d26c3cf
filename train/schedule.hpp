// The learning rate of each step: a schedule over the whole run from the optimizer's base rate,
// after an optional linear warm-up. A pure function of the global step, so a resumed run
// follows the same schedule as an uninterrupted one.
#pragma once

#include <cstdint>
#include <string_view>

namespace strand {

enum class LrSchedule {
  Constant,
  Linear,  // down to 0 at the last step
  Cosine,  // half a cosine down to 0 at the last step
};
// "constant", "linear" or "cosine"; Usage error naming the text otherwise.
LrSchedule parse_lr_schedule(std::string_view text);
std::string_view to_string(LrSchedule schedule);

struct Schedule {
  LrSchedule kind = LrSchedule::Cosine;
  // The first warmup_steps steps ramp the rate linearly up to the schedule's value (for large
  // global batches with a scaled learning rate, Goyal et al. 2017).
  int64_t warmup_steps = 0;
  // The rate at global `step` (0-based) of a run of `total` steps starting from `base`.
  float lr(float base, int64_t step, int64_t total) const;
};

}  // namespace strand
