#include <strand/serve/response.hpp>

#include <charconv>

#include <nlohmann/json.hpp>

namespace strand::serve {

namespace {

void append_row(std::string& out, const float* p, int64_t classes) {
  char buf[32];
  out += '[';
  for (int64_t c = 0; c < classes; ++c) {
    if (c) out += ',';
    const auto r = std::to_chars(buf, buf + sizeof(buf), p[c]);
    out.append(buf, r.ptr);
  }
  out += ']';
}

}  // namespace

std::string predictions_json(const float* probs, int64_t rows, int64_t classes, Layout layout) {
  std::string out;
  out.reserve(size_t(32 + rows * (classes * 16 + 2)));
  out += layout == Layout::Row ? "{\"predictions\":[" : "{\"outputs\":[";
  for (int64_t r = 0; r < rows; ++r) {
    if (r) out += ',';
    append_row(out, probs + r * classes, classes);
  }
  out += "]}";
  return out;
}

std::string predictions_json_lines(const float* probs, int64_t rows, int64_t classes) {
  std::string out;
  out.reserve(size_t(rows * (classes * 16 + 3)));
  for (int64_t r = 0; r < rows; ++r) {
    append_row(out, probs + r * classes, classes);
    out += '\n';
  }
  return out;
}

std::string error_json(std::string_view message) {
  return nlohmann::json{{"error", std::string(message)}}.dump(-1, ' ', false,
                                                              nlohmann::json::error_handler_t::replace);
}

}  // namespace strand::serve
