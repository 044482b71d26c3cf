// Progress of a training run on stderr: a redrawn bar on a terminal, a plain line every
// tenth of an epoch otherwise (logs, CI, pipes).
#pragma once

#include <cstdio>
#include <string>

#include <strand/train/trainer.hpp>

namespace strand::cli {

class Progress {
 public:
  explicit Progress(std::FILE* out);
  void step(const StepProgress& p);
  void end_epoch();  // finishes the bar's line

 private:
  std::FILE* out_;
  bool tty_;
  bool open_line_ = false;
  double last_draw_ = -1;
  int64_t last_decile_ = -1;
};

}  // namespace strand::cli
