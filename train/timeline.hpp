// Timeline: a per-process record of what happened when (training phases, each allreduce with
// its bytes), written as a Chrome trace (chrome://tracing, Perfetto): one process per rank,
// one thread row per activity. Thread-safe: the training thread and a communication thread
// record into the same timeline.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

namespace strand {

class Timeline {
 public:
  using Clock = std::chrono::steady_clock;
  // Rows of the trace.
  static constexpr int kCompute = 0, kComm = 1;

  // `rank` becomes the trace's process id; times are relative to `origin` (ranks that agree
  // on an origin, e.g. taken right after a barrier, line up).
  Timeline(int rank, Clock::time_point origin);

  // A complete event [begin, end) on `row`; `bytes` >= 0 is shown as an argument.
  void record(const char* name, int row, Clock::time_point begin, Clock::time_point end, int64_t bytes = -1);
  // Total seconds of the events called `name`.
  double total_seconds(const char* name) const;

  // This rank's events as JSON array elements (comma-separated, no brackets), metadata
  // naming the process and its rows included.
  std::string events_json() const;
  // Writes {"traceEvents": [...]} from several ranks' events_json(), atomically.
  static void write(const std::filesystem::path& path, const std::vector<std::string>& ranks_events);

 private:
  struct Event {
    const char* name;
    int row;
    double begin_us, dur_us;
    int64_t bytes;
  };
  int rank_;
  Clock::time_point origin_;
  mutable std::mutex mu_;
  std::vector<Event> events_;
};

}  // namespace strand
