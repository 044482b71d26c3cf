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

// Seeded parameters for `arch`, with the running statistics (the state) moved off their
// initial values, so serving in evaluation mode is told from a batch's statistics.
inline std::vector<float> seeded_params(const ModelArch& arch) {
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), arch);
  m.init(7);
  std::vector<float> p = m.get_params();
  for (size_t i = size_t(m.trainable_count()); i < p.size(); ++i)
    p[i] = 0.5f + float(mix64(i) >> 40) / 16777216.0f;  // in [0.5, 1.5): a valid variance too
  return p;
}

inline io::ModelFile model_file(const ModelArch& arch, std::vector<float> params) {
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), arch);
  return {arch, io::default_signature(m), std::move(params), {}};
}

// Version 1 with seeded weights; version 2 (the default version) all parameters zero, so
// every prediction is exactly K equal probabilities and bodies can be spelled out.
inline std::vector<io::ModelFile> seeded_and_zero(const ModelArch& arch) {
  std::vector<float> p = seeded_params(arch);
  const size_t n = p.size();
  return {model_file(arch, std::move(p)), model_file(arch, std::vector<float>(n, 0.0f))};
}

// MODEL_DIR holding `files` as versions 1, 2, ...; by default mnist_mlp's seeded_and_zero.
class ModelDir {
 public:
  explicit ModelDir(const ModelArch& arch = models::mnist_mlp()) : ModelDir(seeded_and_zero(arch)) {}
  explicit ModelDir(const std::vector<io::ModelFile>& files)
      : dir_(std::filesystem::temp_directory_path() /
             ("strand-serve-test-" + std::to_string(::getpid()) + "-" + std::to_string(count_++))),
        seeded_(files.at(0).params) {
    std::filesystem::remove_all(dir_);
    for (const io::ModelFile& f : files) io::export_model(dir_, f);
  }
  ~ModelDir() { std::filesystem::remove_all(dir_); }
  const std::filesystem::path& path() const { return dir_; }
  const std::vector<float>& seeded_params() const { return seeded_; }  // version 1's

 private:
  std::filesystem::path dir_;
  std::vector<float> seeded_;
  static inline int count_ = 0;
};

// A running endpoint on a free port.
struct Served {
  Served(const std::filesystem::path& dir, BatchOptions batch = {}, ServerOptions opts = {},
         const std::string& name = "mnist")
      : ctx(make_cpu_backend(2)),
        registry(ctx.backend(), dir, name),
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

// n deterministic instances of `size` numbers in [0, 1).
inline std::vector<float> images(int64_t n, uint64_t seed = 1, int64_t size = 784) {
  std::vector<float> x(size_t(n * size));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(mix64(seed * 1000003 + i) >> 40) / 16777216.0f;
  return x;
}

// A float list, each printed shortest round-trip (std::to_chars), as the endpoint writes them.
inline std::string json_list(const float* x, size_t n) {
  std::string b = "[";
  char buf[32];
  for (size_t k = 0; k < n; ++k) {
    if (k) b += ',';
    b.append(buf, std::to_chars(buf, buf + sizeof buf, x[k]).ptr);
  }
  return b + "]";
}

// Rows of `size` floats as a simplified-JSON body, [[...],[...]].
inline std::string json_rows(const std::vector<float>& x, size_t size = 784) {
  std::string b = "[";
  for (size_t r = 0; r < x.size() / size; ++r) b += (r ? "," : "") + json_list(x.data() + r * size, size);
  return b + "]";
}

}  // namespace strand::serve::test
