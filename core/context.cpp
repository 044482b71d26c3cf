#include <strand/core/context.hpp>

#include <strand/core/error.hpp>

#include <iostream>

namespace strand {

Context::Context(std::unique_ptr<Backend> backend, Identity id, LogSink sink)
    : backend_(std::move(backend)), id_(std::move(id)), sink_(std::move(sink)) {
  STRAND_CHECK(backend_ != nullptr, Usage, "a Context needs a backend", "Context");
}

std::string Context::where() const {
  std::string s;
  if (id_.world > 1) s = "rank " + std::to_string(id_.rank) + "/" + std::to_string(id_.world);
  if (!id_.host.empty()) s += (s.empty() ? "" : " ") + id_.host;
  return s;
}

void Context::log(std::string_view message) const {
  std::string w = where();
  std::string line = "[strand" + (w.empty() ? std::string() : " " + w) + "] ";
  line += message;
  if (sink_) {
    sink_(line);
  } else {
    std::cerr << line << '\n';
  }
}

}  // namespace strand
