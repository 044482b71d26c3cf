// Registry: every exported version of one model (MODEL_DIR/<version>/model.strand, the layout
// `strand train` writes), loaded once at start onto one backend. The newest version is the
// default. Names and versions come from requests only as lookups in memory, so no request can
// reach the file system.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/model.hpp>
#include <strand/io/model_file.hpp>
#include <strand/serve/request.hpp>

namespace strand::serve {

struct ServedVersion {
  int64_t version = 0;
  io::Signature signature;
  InstanceSpec spec;             // what one instance of a request must look like
  std::unique_ptr<Model> model;  // its parameters loaded; run only through an Executor
};

class Registry {
 public:
  // Loads every version under `model_dir`; Io error naming the directory when there is none.
  // `name` is the model name clients use in URLs ([A-Za-z0-9._-], not "." or "..").
  Registry(Backend& backend, const std::filesystem::path& model_dir, std::string name);

  const std::string& name() const { return name_; }
  const std::vector<ServedVersion>& versions() const { return versions_; }  // ascending
  const ServedVersion& newest() const { return versions_.back(); }
  // The version asked for (the newest when none is); null when absent.
  ServedVersion* find(std::optional<int64_t> version);

 private:
  std::string name_;
  std::vector<ServedVersion> versions_;
};

// Whether `name` may be a model name (letters, digits, '.', '_', '-'; not "." or "..").
bool valid_model_name(const std::string& name);

}  // namespace strand::serve
