// Model files: a network described as JSON, read and shape-checked in one call. The built-in
// models (models.hpp) are such files too (models/files/*.json, compiled in and installed).
//
//   {"name": "mine", "input": [3, 32, 32], "classes": 10,
//    "layers": [{"type": "conv2d", "filters": 32, "kernel": 3, "padding": "same"}, ...,
//               {"type": "dense", "units": "classes"}]}
//
// Keys: name (default: the file's stem), description, input ([C,H,W] or [F]; required),
// classes (optional: without it the class count comes from the training labels), layers.
// Layer keys by type (a pair [h, w] may stand for any size):
//   conv2d     filters, kernel, stride (1), padding ("same" | "valid" | n | [h, w]; "valid"),
//              bias (true)
//   maxpool, avgpool  kernel, stride (the kernel)
//   global_avgpool, relu, flatten
//   batchnorm  momentum (0.99), epsilon (0.001)
//   dense      units (a number, or "classes")
//   dropout    rate
// Errors (Format for the JSON, Shape for layers that do not fit) name the file and the layer
// by index and type; an unknown key is an error, never ignored.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <strand/core/model.hpp>

namespace strand::models {

struct ModelSpec {
  ModelArch arch;  // with its class count; provisional (2) where it comes from the labels
  std::string description;
  std::string source;                // the file, or "built-in"
  std::optional<int64_t> classes;    // nullopt: from the labels (the "classes" layers)
  std::vector<size_t> class_layers;  // dense layers whose units are the class count

  // The architecture for a data set with `classes` classes: the "classes" layers sized to it.
  // A model with a fixed class count returns its own (the job checks the labels against it).
  ModelArch with_classes(int64_t classes) const;
};

// `source` names the text in errors.
ModelSpec parse_model_json(std::string_view text, const std::string& source);
ModelSpec read_model_file(const std::filesystem::path& path);
// The canonical file of an architecture: parse_model_json(to_model_json(a)).arch == a.
std::string to_model_json(const ModelArch& arch, const std::string& description = {});

// One layer as the model file writes it, from its canonical settings (Layer::spec()).
std::string layer_json(const LayerSpec& canonical);

// A built-in model by name, else a model file by path; a Usage error listing the built-ins
// when it is neither.
ModelSpec find_model(const std::string& name_or_path);

}  // namespace strand::models
