#include <strand/serve/registry.hpp>

#include <cctype>

#include <strand/core/error.hpp>

namespace strand::serve {

bool valid_model_name(const std::string& name) {
  if (name.empty() || name.size() > 128 || name == "." || name == "..") return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
  return true;
}

Registry::Registry(Backend& backend, const std::filesystem::path& model_dir, std::string name)
    : name_(std::move(name)) {
  STRAND_CHECK(valid_model_name(name_), Usage,
               "model name '" + name_ + "' may hold only letters, digits, '.', '_' and '-'", "serve");
  const std::vector<int64_t> found = io::list_versions(model_dir);
  STRAND_CHECK(!found.empty(), Io, "no exported model (no <version>/" + std::string(io::kModelFileName) + ")",
               model_dir.string());
  for (int64_t v : found) {
    io::ModelFile file = io::load_export(model_dir, v);
    ServedVersion s;
    s.version = v;
    s.signature = file.signature;
    s.spec = instance_spec(file.arch.input, file.signature.input_name);  // load_export checked they fit
    s.model = std::make_unique<Model>(backend, std::move(file.arch));
    s.model->set_params(file.params);
    versions_.push_back(std::move(s));
  }
}

ServedVersion* Registry::find(std::optional<int64_t> version) {
  if (!version) return &versions_.back();
  for (ServedVersion& s : versions_)
    if (s.version == *version) return &s;
  return nullptr;
}

}  // namespace strand::serve
