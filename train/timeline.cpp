#include <strand/train/timeline.hpp>

#include <nlohmann/json.hpp>

#include <strand/io/atomic_file.hpp>

namespace strand {

Timeline::Timeline(int rank, Clock::time_point origin) : rank_(rank), origin_(origin) {}

void Timeline::record(const char* name, int row, Clock::time_point begin, Clock::time_point end,
                      int64_t bytes) {
  const double b = std::chrono::duration<double, std::micro>(begin - origin_).count();
  const double d = std::chrono::duration<double, std::micro>(end - begin).count();
  std::lock_guard<std::mutex> lock(mu_);
  events_.push_back({name, row, b, d, bytes});
}

double Timeline::total_seconds(const char* name) const {
  std::lock_guard<std::mutex> lock(mu_);
  double us = 0;
  for (const Event& e : events_)
    if (std::string_view(e.name) == name) us += e.dur_us;
  return us / 1e6;
}

std::string Timeline::events_json() const {
  using nlohmann::json;
  std::string out;
  auto add = [&](const json& j) { out += (out.empty() ? "" : ",\n") + j.dump(); };
  add({{"name", "process_name"},
       {"ph", "M"},
       {"pid", rank_},
       {"args", {{"name", "rank " + std::to_string(rank_)}}}});
  add({{"name", "thread_name"},
       {"ph", "M"},
       {"pid", rank_},
       {"tid", kCompute},
       {"args", {{"name", "compute"}}}});
  add({{"name", "thread_name"},
       {"ph", "M"},
       {"pid", rank_},
       {"tid", kComm},
       {"args", {{"name", "communication"}}}});
  std::lock_guard<std::mutex> lock(mu_);
  for (const Event& e : events_) {
    json j = {{"name", e.name}, {"ph", "X"},        {"pid", rank_},
              {"tid", e.row},   {"ts", e.begin_us}, {"dur", e.dur_us}};
    if (e.bytes >= 0) j["args"] = {{"bytes", e.bytes}};
    add(j);
  }
  return out;
}

void Timeline::write(const std::filesystem::path& path, const std::vector<std::string>& ranks_events) {
  std::string text = "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n";
  bool first = true;
  for (const std::string& r : ranks_events) {
    if (r.empty()) continue;
    text += (first ? "" : ",\n") + r;
    first = false;
  }
  text += "\n]}\n";
  io::write_file_atomic(path, std::string_view(text));
}

}  // namespace strand
