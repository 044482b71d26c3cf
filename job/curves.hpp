// curves — the metrics file's lines (one JSON object per evaluation, JobSpec::metrics) and the
// page of curves drawn from them beside it: FILE.html, a self-contained HTML page with inline
// SVG charts of the training loss, training and test accuracy, test loss and images/s against
// the step, one line per worker where the workers' values differ. The page has no scripts and
// loads nothing, so it opens offline in any browser; it is rewritten atomically at every
// evaluation, so a reload never shows a torn file.
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <strand/train/trainer.hpp>

namespace strand::job {

// One evaluation as a metrics line (JSON, no newline): the Metrics fields by name, with
// `per_worker` (objects, null for a worker that has left) only when more than one worker trains.
std::string metrics_line(const Metrics& m);
// A metrics line back (fields missing from an older line keep Metrics' defaults; null, as a
// non-finite number is written, reads as NaN); Format error at `where` for a line that is not one.
Metrics parse_metrics_line(std::string_view line, const std::string& where);
// Every line of a metrics file; none when it does not exist. Format error naming FILE:LINE.
std::vector<Metrics> read_metrics_file(const std::filesystem::path& path);

// The page beside metrics file FILE: FILE.html (one rule, never FILE itself).
std::filesystem::path curves_path(const std::filesystem::path& metrics);

// The page for `evaluations` in the order they were written, titled `title`. An evaluation at
// a step not past the one before starts a resumed run: it replaces the earlier run's
// evaluations from that step on (those past the checkpoint the run resumed from).
std::string render_curves(std::span<const Metrics> evaluations, std::string_view title);

// The page of one metrics file, written when made and rewritten at every add().
class CurvesPage {
 public:
  // `earlier`: the evaluations the metrics file already holds (a resumed job appends to it).
  CurvesPage(const std::filesystem::path& metrics, std::vector<Metrics> earlier);
  void add(const Metrics& m);
  const std::filesystem::path& path() const { return path_; }

 private:
  void write() const;

  std::filesystem::path path_;
  std::string title_;
  std::vector<Metrics> evaluations_;
};

}  // namespace strand::job
