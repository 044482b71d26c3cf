#include <strand/models/models.hpp>

#include <strand/core/error.hpp>
#include <strand/core/text.hpp>
#include "models/builtin_files.hpp"

namespace strand::models {

std::vector<std::string> names() {
  std::vector<std::string> out;
  for (const BuiltinFile& f : builtin_files()) out.emplace_back(f.name);
  return out;
}

std::string builtin_text(const std::string& name) {
  for (const BuiltinFile& f : builtin_files())
    if (f.name == name) return std::string(f.json);
  throw Error(ErrorKind::Usage, "unknown model '" + name + "' (known: " + join(names(), ", ") + ")", "model");
}

ModelSpec builtin(const std::string& name) {
  ModelSpec m = parse_model_json(builtin_text(name), "built-in " + name);
  m.source = "built-in";
  return m;
}

ModelArch by_name(const std::string& name) { return builtin(name).arch; }
ModelArch mnist_cnn() { return by_name("mnist_cnn"); }
ModelArch mnist_mlp() { return by_name("mnist_mlp"); }

}  // namespace strand::models
