#include <strand/train/activity.hpp>

namespace strand {

const char* to_string(Phase phase) {
  switch (phase) {
    case Phase::Starting:
      return "starting";
    case Phase::Forward:
      return "forward";
    case Phase::Backward:
      return "backward";
    case Phase::Reduce:
      return "reduce";
    case Phase::Update:
      return "update";
    case Phase::Checkpoint:
      return "checkpoint";
    case Phase::Evaluate:
      return "evaluate";
    case Phase::Finishing:
      return "finishing";
  }
  return "?";
}

}  // namespace strand
