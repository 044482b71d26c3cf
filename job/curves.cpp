#include <strand/job/curves.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>

#include <strand/core/error.hpp>
#include <strand/core/text.hpp>
#include <strand/io/atomic_file.hpp>

namespace strand::job {

namespace {

using nlohmann::json;

// A field of a metrics line: `fallback` when absent (a line of an older strand), NaN for null.
double number(const json& j, const char* key, double fallback, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (it->is_null()) return std::numeric_limits<double>::quiet_NaN();
  STRAND_CHECK(it->is_number(), Format, std::string("metrics field '") + key + "' is not a number", where);
  return it->get<double>();
}

int64_t integer(const json& j, const char* key, int64_t fallback, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end()) return fallback;
  STRAND_CHECK(it->is_number_integer(), Format, std::string("metrics field '") + key + "' is not an integer",
               where);
  return it->get<int64_t>();
}

WorkerMetrics parse_worker(const json& j, const std::string& where) {
  STRAND_CHECK(j.is_object(), Format, "a per_worker entry is neither an object nor null", where);
  const WorkerMetrics d;
  return {.loss = number(j, "loss", d.loss, where),
          .train_accuracy = number(j, "train_accuracy", d.train_accuracy, where),
          .test_accuracy = number(j, "test_accuracy", d.test_accuracy, where),
          .test_loss = number(j, "test_loss", d.test_loss, where),
          .images_per_sec = number(j, "images_per_sec", d.images_per_sec, where)};
}

// --- the page

std::string escape(std::string_view text) {
  std::string out;
  for (char c : text) switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  return out;
}

// Locale-independent numbers: pixel coordinates to a tenth; values to `digits` significant
// digits, whole from 1000 up (six for ticks hides their rounding error, 0.30000000000000004).
std::string pixels(double v) {
  char buf[32];
  return std::string(buf, std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, 1).ptr);
}
std::string label(double v, int digits = 4) {
  char buf[32];
  if (std::abs(v) >= 1000)
    return std::string(buf,
                       std::to_chars(buf, buf + sizeof buf, std::round(v), std::chars_format::fixed, 0).ptr);
  return std::string(buf, std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, digits).ptr);
}

std::optional<double> finite(double v) { return std::isfinite(v) ? std::optional<double>(v) : std::nullopt; }
// A test-set value: -1 when the job has no test set.
std::optional<double> tested(double v, double scale) { return v < 0 ? std::nullopt : finite(scale * v); }

struct Chart {
  const char* id;
  const char* title;
  const char* name;  // the job's line when the workers are not drawn apart
  std::optional<double> (*all)(const Metrics&);
  std::optional<double> (*worker)(const WorkerMetrics&);
  // The job's value is rank 0's own (its evaluation on the test set), not one over all workers.
  bool chief_only;
  bool from_zero;
};

const Chart kCharts[] = {
    {"loss", "Training loss", "training loss", [](const Metrics& m) { return finite(m.loss); },
     [](const WorkerMetrics& w) { return finite(w.loss); }, false, false},
    {"train_accuracy", "Training accuracy (%)", "training accuracy",
     [](const Metrics& m) { return finite(100 * m.train_accuracy); },
     [](const WorkerMetrics& w) { return finite(100 * w.train_accuracy); }, false, false},
    {"test_accuracy", "Test accuracy (%)", "test accuracy",
     [](const Metrics& m) { return tested(m.test_accuracy, 100); },
     [](const WorkerMetrics& w) { return tested(w.test_accuracy, 100); }, true, false},
    {"test_loss", "Test loss", "test loss", [](const Metrics& m) { return tested(m.test_loss, 1); },
     [](const WorkerMetrics& w) { return tested(w.test_loss, 1); }, true, false},
    {"images_per_sec", "Training images per second", "images/s",
     [](const Metrics& m) { return finite(m.images_per_sec); },
     [](const WorkerMetrics& w) { return finite(w.images_per_sec); }, false, true},
};

const char* const kWorkerColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                     "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};

struct Point {
  double step, value;
};
struct Series {
  std::string name, color;
  double width = 1.5;
  std::vector<Point> points;
};

// The job's line, and one per worker when some evaluation has workers with different values
// (the job's line is then left out where it is only rank 0's).
std::vector<Series> series_of(const Chart& c, std::span<const Metrics> evals) {
  size_t workers = 0;
  for (const Metrics& m : evals) workers = std::max(workers, m.per_worker.size());
  std::vector<Series> each(workers);
  bool differ = false;
  for (const Metrics& m : evals) {
    std::optional<double> first;
    for (size_t k = 0; k < m.per_worker.size(); ++k) {
      const std::optional<double> v = m.per_worker[k] ? c.worker(*m.per_worker[k]) : std::nullopt;
      if (!v) continue;
      each[k].points.push_back({double(m.step), *v});
      if (first && *first != *v) differ = true;
      if (!first) first = v;
    }
  }
  std::vector<Series> out;
  if (!(differ && c.chief_only)) {
    Series all{differ ? "all workers" : c.name, "#222", 2.5, {}};
    for (const Metrics& m : evals)
      if (const std::optional<double> v = c.all(m)) all.points.push_back({double(m.step), *v});
    if (!all.points.empty()) out.push_back(std::move(all));
  }
  if (differ)
    for (size_t k = 0; k < workers; ++k) {
      if (each[k].points.empty()) continue;
      each[k].name = "worker " + std::to_string(k);
      each[k].color = kWorkerColors[k % std::size(kWorkerColors)];
      out.push_back(std::move(each[k]));
    }
  return out;
}

// [lo, hi] widened to multiples of a 1-2-5 step that gives about `ticks` intervals.
struct Axis {
  double lo, hi, step;
};
Axis nice_axis(double lo, double hi, int ticks) {
  if (!(hi > lo)) {
    const double pad = lo == 0 ? 1 : std::abs(lo) / 20;
    lo -= pad, hi += pad;
  }
  const double raw = (hi - lo) / ticks;
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  const double f = raw / mag;
  const double step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  return {std::floor(lo / step) * step, std::ceil(hi / step) * step, step};
}
std::vector<double> ticks(const Axis& a) {
  std::vector<double> t;
  for (int i = 0; a.lo + i * a.step <= a.hi + a.step / 1000; ++i) t.push_back(a.lo + i * a.step);
  return t;
}

constexpr double kWidth = 460, kHeight = 240, kLeft = 60, kRight = 14, kTop = 10, kBottom = 36;

std::string chart_html(const Chart& c, const std::vector<Series>& series) {
  double max_step = 1, lo = std::numeric_limits<double>::infinity(), hi = -lo;
  if (c.from_zero) lo = hi = 0;
  for (const Series& s : series)
    for (const Point& p : s.points) {
      max_step = std::max(max_step, p.step);
      lo = std::min(lo, p.value), hi = std::max(hi, p.value);
    }
  const Axis xa = nice_axis(0, max_step, 5), ya = nice_axis(lo, hi, 4);
  const double w = kWidth - kLeft - kRight, h = kHeight - kTop - kBottom;
  const auto x = [&](double step) { return pixels(kLeft + (step - xa.lo) / (xa.hi - xa.lo) * w); };
  const auto y = [&](double v) { return pixels(kTop + (ya.hi - v) / (ya.hi - ya.lo) * h); };

  std::string o = "<figure class=\"chart\" data-chart=\"" + std::string(c.id) + "\" data-series=\"" +
                  std::to_string(series.size()) + "\">\n<figcaption>" + c.title + "</figcaption>\n";
  o += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + label(kWidth) + "\" height=\"" +
       label(kHeight) + "\" viewBox=\"0 0 " + label(kWidth) + " " + label(kHeight) +
       "\" role=\"img\" aria-label=\"" + c.title + " against the step\">\n";
  for (double t : ticks(ya))
    o += "<line class=\"grid\" x1=\"" + pixels(kLeft) + "\" x2=\"" + pixels(kLeft + w) + "\" y1=\"" + y(t) +
         "\" y2=\"" + y(t) + "\"/><text class=\"y\" x=\"" + pixels(kLeft - 6) + "\" y=\"" + y(t) + "\">" +
         label(t, 6) + "</text>\n";
  for (double t : ticks(xa))
    o += "<line class=\"grid\" x1=\"" + x(t) + "\" x2=\"" + x(t) + "\" y1=\"" + pixels(kTop) + "\" y2=\"" +
         pixels(kTop + h) + "\"/><text class=\"x\" x=\"" + x(t) + "\" y=\"" + pixels(kTop + h + 14) + "\">" +
         label(t, 6) + "</text>\n";
  o +=
      "<text class=\"x\" x=\"" + pixels(kLeft + w / 2) + "\" y=\"" + pixels(kHeight - 4) + "\">step</text>\n";
  for (const Series& s : series) {
    std::string points;
    for (const Point& p : s.points) (points += points.empty() ? "" : " ") += x(p.step) + "," + y(p.value);
    o += "<polyline class=\"series\" data-series=\"" + escape(s.name) + "\" data-points=\"" +
         std::to_string(s.points.size()) + "\" stroke=\"" + s.color + "\" stroke-width=\"" + label(s.width) +
         "\" points=\"" + points + "\"><title>" + escape(s.name) + "</title></polyline>\n";
    // A line through one point draws nothing.
    if (s.points.size() == 1)
      o += "<circle cx=\"" + x(s.points[0].step) + "\" cy=\"" + y(s.points[0].value) + "\" r=\"3\" fill=\"" +
           s.color + "\"/>\n";
  }
  o += "</svg>\n<ul class=\"legend\">";
  for (const Series& s : series)
    o += "<li><span class=\"swatch\" style=\"background:" + s.color + "\"></span>" + escape(s.name) + " <b>" +
         label(s.points.back().value) + "</b></li>";
  return o + "</ul>\n</figure>\n";
}

std::string summary(const Metrics& m) {
  std::string s = "step " + std::to_string(m.step) + " (epoch " + std::to_string(m.epoch) +
                  "): training loss " + label(m.loss) + ", training accuracy " +
                  label(100 * m.train_accuracy) + "%";
  if (m.test_accuracy >= 0)
    s += ", test accuracy " + label(100 * m.test_accuracy) + "%, test loss " + label(m.test_loss);
  return s + ", " + label(m.images_per_sec) + " images/s, " + std::to_string(m.workers) +
         (m.workers == 1 ? " worker" : " workers") + ", " + label(m.seconds) + " s into the run";
}

constexpr std::string_view kStyle =
    "body{font:14px system-ui,sans-serif;margin:1em 2em;color:#222}"
    "h1{font-size:1.3em}.charts{display:flex;flex-wrap:wrap;gap:1em 2em}"
    ".chart{margin:0;width:460px}figcaption{font-weight:600;margin-bottom:.2em}"
    "svg{display:block;background:#fff}svg text{font-size:11px;fill:#555}"
    "text.y{text-anchor:end;dominant-baseline:middle}text.x{text-anchor:middle}"
    "line.grid{stroke:#e4e4e4;stroke-width:1}polyline.series{fill:none;stroke-linejoin:round}"
    ".legend{list-style:none;padding:0;margin:.3em 0 0;display:flex;flex-wrap:wrap;gap:.2em 1em}"
    ".swatch{display:inline-block;width:1.2em;height:.25em;margin-right:.3em;vertical-align:middle}"
    ".note{color:#666;font-size:.9em}";

}  // namespace

std::string metrics_line(const Metrics& m) {
  json j = {{"epoch", m.epoch},
            {"step", m.step},
            {"loss", m.loss},
            {"train_accuracy", m.train_accuracy},
            {"test_accuracy", m.test_accuracy},
            {"test_loss", m.test_loss},
            {"images_per_sec", m.images_per_sec},
            {"seconds", m.seconds},
            {"workers", m.workers}};
  if (!m.per_worker.empty()) {
    json& each = j["per_worker"] = json::array();
    for (const std::optional<WorkerMetrics>& w : m.per_worker)
      each.push_back(w ? json{{"loss", w->loss},
                              {"train_accuracy", w->train_accuracy},
                              {"test_accuracy", w->test_accuracy},
                              {"test_loss", w->test_loss},
                              {"images_per_sec", w->images_per_sec}}
                       : json(nullptr));
  }
  return j.dump();
}

Metrics parse_metrics_line(std::string_view line, const std::string& where) {
  const json j = json::parse(line, nullptr, false);
  STRAND_CHECK(j.is_object(), Format, "not a metrics line (a JSON object)", where);
  STRAND_CHECK(j.contains("step"), Format, "a metrics line without 'step'", where);
  const Metrics d;
  Metrics m{.epoch = integer(j, "epoch", d.epoch, where),
            .step = integer(j, "step", 0, where),
            .loss = number(j, "loss", d.loss, where),
            .train_accuracy = number(j, "train_accuracy", d.train_accuracy, where),
            .test_accuracy = number(j, "test_accuracy", d.test_accuracy, where),
            .test_loss = number(j, "test_loss", d.test_loss, where),
            .images_per_sec = number(j, "images_per_sec", d.images_per_sec, where),
            .seconds = number(j, "seconds", d.seconds, where),
            .workers = integer(j, "workers", d.workers, where)};
  if (const auto it = j.find("per_worker"); it != j.end()) {
    STRAND_CHECK(it->is_array(), Format, "metrics field 'per_worker' is not an array", where);
    for (const json& w : *it)
      m.per_worker.push_back(w.is_null() ? std::nullopt
                                         : std::optional<WorkerMetrics>(parse_worker(w, where)));
  }
  return m;
}

std::vector<Metrics> read_metrics_file(const std::filesystem::path& path) {
  std::vector<Metrics> out;
  if (!std::filesystem::exists(path)) return out;
  std::ifstream in(path);
  STRAND_CHECK(in.is_open(), Io, "cannot open the metrics file for reading", path.string());
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n)
    if (!trim(line).empty()) out.push_back(parse_metrics_line(line, path.string() + ":" + std::to_string(n)));
  STRAND_CHECK(in.eof(), Io, "cannot read the metrics file", path.string());
  return out;
}

std::filesystem::path curves_path(const std::filesystem::path& metrics) {
  std::filesystem::path page = metrics;
  return page += ".html";
}

std::string render_curves(std::span<const Metrics> evaluations, std::string_view title) {
  std::vector<Metrics> plotted;
  for (const Metrics& m : evaluations) {
    while (!plotted.empty() && plotted.back().step >= m.step) plotted.pop_back();
    plotted.push_back(m);
  }
  const std::string t = escape(title);
  std::string o = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" + t +
                  " - strand training curves</title>\n<style>" + std::string(kStyle) +
                  "</style>\n</head>\n<body>\n<h1>Training curves: " + t + "</h1>\n";
  if (plotted.empty()) return o + "<p class=\"summary\">No evaluation yet.</p>\n</body>\n</html>\n";
  o += "<p class=\"summary\" data-evaluations=\"" + std::to_string(plotted.size()) + "\">" +
       std::to_string(plotted.size()) + (plotted.size() == 1 ? " evaluation" : " evaluations") +
       "; the last at " + escape(summary(plotted.back())) + ".</p>\n<div class=\"charts\">\n";
  for (const Chart& c : kCharts)
    if (const std::vector<Series> series = series_of(c, plotted); !series.empty()) o += chart_html(c, series);
  return o + "</div>\n<p class=\"note\">Rewritten by strand train at every evaluation from the lines of " +
         t + "; reload to see the newest.</p>\n</body>\n</html>\n";
}

CurvesPage::CurvesPage(const std::filesystem::path& metrics, std::vector<Metrics> earlier)
    : path_(curves_path(metrics)), title_(metrics.filename().string()), evaluations_(std::move(earlier)) {
  write();
}

void CurvesPage::add(const Metrics& m) {
  evaluations_.push_back(m);
  write();
}

void CurvesPage::write() const { io::write_file_atomic(path_, render_curves(evaluations_, title_)); }

}  // namespace strand::job
