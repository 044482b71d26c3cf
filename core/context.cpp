#include <strand/core/context.hpp>

#include <strand/core/error.hpp>

#include <iostream>

namespace strand {

Context::Context(std::unique_ptr<Backend> backend, Identity id, LogSink sink)
    : backend_(std::move(backend)), id_(std::move(id)), sink_(std::move(sink)) {
  STRAND_CHECK(backend_ != nullptr, Usage, "a Context needs a backend", "Context");
}

std::string Identity::where() const {
  std::string s;
  if (world > 1) s = "rank " + std::to_string(rank) + "/" + std::to_string(world);
  if (!host.empty()) s += (s.empty() ? "" : " ") + host;
  return s;
}

std::string Context::where() const { return id_.where(); }

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
