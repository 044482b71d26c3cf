#include "apps/progress.hpp"

#include <unistd.h>
#include <chrono>

namespace strand::cli {

namespace {
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Progress::Progress(std::FILE* out) : out_(out), tty_(::isatty(::fileno(out)) != 0) {}

void Progress::step(const StepProgress& p) {
  const bool last = p.step_in_epoch == p.steps_per_epoch;
  if (tty_) {
    const double t = now_seconds();
    if (!last && t - last_draw_ < 0.1) return;  // redraw at most 10 times a second
    last_draw_ = t;
    constexpr int kWidth = 30;
    const int filled = int(kWidth * p.step_in_epoch / p.steps_per_epoch);
    std::string bar(size_t(filled), '#');
    bar.append(size_t(kWidth - filled), '.');
    std::fprintf(out_, "\r\033[Kepoch %lld/%lld [%s] %lld/%lld  loss %.4f  acc %.2f%%  %.0f img/s",
                 (long long)p.epoch, (long long)p.epochs, bar.c_str(), (long long)p.step_in_epoch,
                 (long long)p.steps_per_epoch, p.loss, 100 * p.accuracy, p.images_per_sec);
    open_line_ = true;
  } else {
    const int64_t decile = 10 * p.step_in_epoch / p.steps_per_epoch;
    if (decile == last_decile_) return;
    last_decile_ = decile;
    std::fprintf(out_, "[strand] epoch %lld/%lld step %lld/%lld  loss %.4f  acc %.2f%%  %.0f img/s\n",
                 (long long)p.epoch, (long long)p.epochs, (long long)p.step_in_epoch,
                 (long long)p.steps_per_epoch, p.loss, 100 * p.accuracy, p.images_per_sec);
  }
  std::fflush(out_);
}

void Progress::end_epoch() {
  if (open_line_) std::fputc('\n', out_);
  open_line_ = false;
  last_decile_ = -1;
  std::fflush(out_);
}

}  // namespace strand::cli
