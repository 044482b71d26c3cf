// The text of each built-in model file, by name, in the order `strand model list` shows them.
#pragma once

#include <span>
#include <string_view>

namespace strand::models {

struct BuiltinFile {
  std::string_view name, json;
};
std::span<const BuiltinFile> builtin_files();

}  // namespace strand::models
