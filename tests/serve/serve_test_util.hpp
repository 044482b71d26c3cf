// Shared by the serve tests: exported models in a temporary directory and a served endpoint.
#pragma once

#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <strand/core/context.hpp>
#include <strand/io/model_file.hpp>
#include <strand/models/models.hpp>
#include <strand/serve/endpoint.hpp>
#include <strand/serve/server.hpp>

namespace strand::serve::test {

// MODEL_DIR with version 1: mnist_mlp with seeded weights; version 2 (the default): all
// parameters zero, so every prediction is exactly ten 0.1s and bodies can be spelled out.
class ModelDir {
 public:
  ModelDir()
      : dir_(std::filesystem::temp_directory_path() / ("strand-serve-test-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(dir_);
    Context ctx(make_cpu_backend(1));
    Model m(ctx.backend(), models::mnist_mlp());
    m.init(7);
    seeded_ = m.get_params();
    io::export_model(dir_, {m.arch(), io::default_signature(m), seeded_, {}});
    io::export_model(dir_,
                     {m.arch(), io::default_signature(m), std::vector<float>(seeded_.size(), 0.0f), {}});
  }
  ~ModelDir() { std::filesystem::remove_all(dir_); }
  const std::filesystem::path& path() const { return dir_; }
  const std::vector<float>& seeded_params() const { return seeded_; }

 private:
  std::filesystem::path dir_;
  std::vector<float> seeded_;
};

// A running endpoint on a free port.
struct Served {
  Served(const std::filesystem::path& dir, BatchOptions batch = {}, ServerOptions opts = {})
      : ctx(make_cpu_backend(2)),
        registry(ctx.backend(), dir, "mnist"),
        executor(batch),
        endpoint(registry, executor),
        server(endpoint, [&] {
          opts.port = 0;
          return opts;
        }()) {
    server.start();
  }
  Context ctx;
  Registry registry;
  Executor executor;
  Endpoint endpoint;
  Server server;
};

inline std::string uniform_row() { return "[0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1]"; }

// n deterministic images in [0, 1).
inline std::vector<float> images(int64_t n, uint64_t seed = 1) {
  std::vector<float> x(size_t(n * 784));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(mix64(seed * 1000003 + i) >> 40) / 16777216.0f;
  return x;
}

// Rows of 784 floats as a simplified-JSON body, [[...],[...]], each float printed shortest
// round-trip (std::to_chars).
inline std::string json_rows(const std::vector<float>& x) {
  std::string b = "[";
  char buf[32];
  for (size_t r = 0; r < x.size() / 784; ++r) {
    b += r ? ",[" : "[";
    for (size_t k = 0; k < 784; ++k) {
      if (k) b += ',';
      b.append(buf, std::to_chars(buf, buf + sizeof buf, x[r * 784 + k]).ptr);
    }
    b += "]";
  }
  return b + "]";
}

}  // namespace strand::serve::test
