#include <strand/models/model_json.hpp>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include <strand/core/error.hpp>
#include <strand/core/layers.hpp>
#include <strand/core/text.hpp>
#include <strand/models/models.hpp>

namespace strand::models {
namespace {

using nlohmann::json;

// Where in the file: "model file F: layer 4 (maxpool)".
struct Place {
  const std::string& source;
  std::string what;  // "" for the top level
  std::string str() const { return "model file " + source + (what.empty() ? "" : ": " + what); }
};

[[noreturn]] void fail(const Place& at, const std::string& message, ErrorKind kind = ErrorKind::Format) {
  throw Error(kind, message, at.str());
}

std::string show(const json& v) {
  std::string s = v.dump();
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

void check_keys(const Place& at, const json& obj, const std::set<std::string>& known) {
  for (const auto& [key, value] : obj.items()) {
    if (known.count(key)) continue;
    fail(at, "unknown key '" + key + "' (known: " + join({known.begin(), known.end()}, ", ") + ")");
  }
}

int64_t integer(const Place& at, const std::string& key, const json& v, int64_t lo, int64_t hi) {
  if (v.is_number()) {
    const double d = v.get<double>();
    if (d == std::floor(d) && d >= double(lo) && d <= double(hi)) return int64_t(d);
  }
  fail(at, "'" + key + "' must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
               "], got " + show(v));
}

// A size that may be one number or a pair [h, w].
std::pair<int64_t, int64_t> pair_of(const Place& at, const std::string& key, const json& v, int64_t lo,
                                    int64_t hi) {
  if (v.is_array()) {
    if (v.size() != 2) fail(at, "'" + key + "' must be a number or a pair [h, w], got " + show(v));
    return {integer(at, key, v[0], lo, hi), integer(at, key, v[1], lo, hi)};
  }
  const int64_t n = integer(at, key, v, lo, hi);
  return {n, n};
}

double number(const Place& at, const std::string& key, const json& v) {
  if (!v.is_number()) fail(at, "'" + key + "' must be a number, got " + show(v));
  return v.get<double>();
}

const json& required(const Place& at, const json& obj, const std::string& key, const std::string& type) {
  if (!obj.contains(key)) fail(at, type + " needs '" + key + "'");
  return obj.at(key);
}

// One layer object -> its spec; `classes_layer` is set when its units are "classes".
LayerSpec layer_spec(const Place& at, const json& l, int64_t classes, bool& classes_layer) {
  const std::string type = l.at("type").get<std::string>();
  LayerSpec s{type, {}};
  auto set_pair = [&](const char* h, const char* w, std::pair<int64_t, int64_t> v) {
    s.attrs[h] = double(v.first);
    s.attrs[w] = double(v.second);
  };
  if (type == "conv2d") {
    check_keys(at, l, {"type", "filters", "kernel", "stride", "padding", "bias"});
    s.attrs["filters"] = double(integer(at, "filters", required(at, l, "filters", type), 1, 1 << 16));
    set_pair("kernel_h", "kernel_w", pair_of(at, "kernel", required(at, l, "kernel", type), 1, 64));
    set_pair(
        "stride_h", "stride_w",
        l.contains("stride") ? pair_of(at, "stride", l["stride"], 1, 64) : std::pair<int64_t, int64_t>{1, 1});
    const json pad = l.value("padding", json("valid"));
    if (pad.is_string()) {
      const std::string p = pad.get<std::string>();
      if (p != "same" && p != "valid")
        fail(at, "'padding' must be \"same\", \"valid\", n or [h, w], got " + show(pad));
      s.attrs["same"] = p == "same" ? 1 : 0;
    } else {
      s.attrs["same"] = 0;
      set_pair("pad_h", "pad_w", pair_of(at, "padding", pad, 0, 64));
    }
    if (l.contains("bias")) {
      if (!l["bias"].is_boolean()) fail(at, "'bias' must be true or false, got " + show(l["bias"]));
      s.attrs["bias"] = l["bias"].get<bool>() ? 1 : 0;
    }
  } else if (type == "maxpool" || type == "avgpool") {
    check_keys(at, l, {"type", "kernel", "stride"});
    const auto k = pair_of(at, "kernel", required(at, l, "kernel", type), 1, 1 << 16);
    set_pair("kernel_h", "kernel_w", k);
    set_pair("stride_h", "stride_w",
             l.contains("stride") ? pair_of(at, "stride", l["stride"], 1, 1 << 16) : k);
  } else if (type == "batchnorm") {
    check_keys(at, l, {"type", "momentum", "epsilon"});
    s.attrs["momentum"] = l.contains("momentum") ? number(at, "momentum", l["momentum"]) : 0.99;
    s.attrs["epsilon"] = l.contains("epsilon") ? number(at, "epsilon", l["epsilon"]) : 1e-3;
  } else if (type == "dense") {
    check_keys(at, l, {"type", "units"});
    const json& u = required(at, l, "units", type);
    classes_layer = u.is_string();
    if (classes_layer && u.get<std::string>() != "classes")
      fail(at, "'units' must be a number or \"classes\", got " + show(u));
    s.attrs["units"] = double(classes_layer ? classes : integer(at, "units", u, 1, 1 << 24));
  } else if (type == "dropout") {
    check_keys(at, l, {"type", "rate"});
    s.attrs["rate"] = number(at, "rate", required(at, l, "rate", type));
  } else if (type == "relu" || type == "flatten" || type == "global_avgpool") {
    check_keys(at, l, {"type"});
  } else {
    fail(at,
         "unknown layer type '" + type +
             "' (known: conv2d, maxpool, avgpool, global_avgpool, batchnorm, dense, relu, flatten, dropout)");
  }
  // The layer checks its values (ranges, combinations) and gives its canonical settings.
  try {
    return make_layer(s)->spec();
  } catch (const Error& e) {
    fail(at, e.message(), e.kind());
  }
}

// A provisional class count for the shape check of a model whose count comes from the labels.
constexpr int64_t kProvisionalClasses = 2;

// Binds every layer (the shapes and settings checked) and returns the output shape.
Shape check_shapes(const ModelArch& arch, const std::string& source) {
  Shape shape = arch.input;
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    try {
      shape = make_layer(arch.layers[i])->bind(shape);
    } catch (const Error& e) {
      throw Error(e.kind(), e.message(),
                  "model file " + source + ": layer " + std::to_string(i) + " (" + describe(arch.layers[i]) +
                      ", input " + shape.str() + ")");
    }
  }
  return shape;
}

}  // namespace

ModelSpec parse_model_json(std::string_view text, const std::string& source) {
  const Place top{source, ""};
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    // Line and column of the byte the parser stopped at.
    size_t line = 1, col = 1;
    for (size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
      if (text[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    fail(top, "not valid JSON at line " + std::to_string(line) + ", column " + std::to_string(col));
  }
  if (!doc.is_object()) fail(top, "must hold one JSON object, got " + show(doc));
  check_keys(top, doc, {"name", "description", "input", "classes", "layers"});
  ModelSpec m;
  m.source = source;
  if (doc.contains("name")) {
    if (!doc["name"].is_string() || doc["name"].get<std::string>().empty())
      fail(top, "'name' must be a non-empty string, got " + show(doc["name"]));
    m.arch.name = doc["name"].get<std::string>();
  } else {
    m.arch.name = std::filesystem::path(source).stem().string();
  }
  if (doc.contains("description")) {
    if (!doc["description"].is_string()) fail(top, "'description' must be a string");
    m.description = doc["description"].get<std::string>();
  }
  const json& input = required(top, doc, "input", "a model");
  if (!input.is_array() || (input.size() != 3 && input.size() != 1))
    fail(top, "'input' must be [channels, height, width] or [features], got " + show(input));
  std::vector<int64_t> dims;
  for (const json& d : input) dims.push_back(integer(top, "input", d, 1, 1 << 20));
  m.arch.input = Shape(dims);
  if (doc.contains("classes")) m.classes = integer(top, "classes", doc["classes"], 1, 1 << 24);
  const json& layers = required(top, doc, "layers", "a model");
  if (!layers.is_array() || layers.empty()) fail(top, "'layers' must be a non-empty list");
  for (size_t i = 0; i < layers.size(); ++i) {
    const json& l = layers[i];
    const std::string type =
        l.is_object() && l.contains("type") && l["type"].is_string() ? l["type"].get<std::string>() : "?";
    const Place at{source, "layer " + std::to_string(i) + " (" + type + ")"};
    if (!l.is_object()) fail(at, "must be an object, got " + show(l));
    if (type == "?") fail(at, "needs a 'type' string");
    bool classes_layer = false;
    m.arch.layers.push_back(layer_spec(at, l, m.classes.value_or(kProvisionalClasses), classes_layer));
    if (classes_layer) m.class_layers.push_back(i);
  }
  const Shape out = check_shapes(m.arch, source);
  if (out.rank() != 1)
    fail(top,
         "the last layer's output " + out.str() + " is not a vector of class scores: end with a dense layer",
         ErrorKind::Shape);
  if (m.classes && out[0] != *m.classes)
    fail(top,
         "the model ends with " + std::to_string(out[0]) + " outputs but says \"classes\": " +
             std::to_string(*m.classes) + " (give the last dense layer \"units\": \"classes\")",
         ErrorKind::Shape);
  if (!m.classes && m.class_layers.empty()) m.classes = out[0];
  return m;
}

ModelArch ModelSpec::with_classes(int64_t k) const {
  if (classes) return arch;
  STRAND_CHECK(k >= 1, Usage, "a model needs at least 1 class, got " + std::to_string(k),
               "model " + arch.name);
  ModelArch a = arch;
  for (size_t i : class_layers) a.layers[i].attrs["units"] = double(k);
  const Shape out = check_shapes(a, source);
  STRAND_CHECK(out.rank() == 1 && out[0] == k, Shape,
               "with " + std::to_string(k) + " classes the model ends with " + out.str() + " outputs",
               "model file " + source);
  return a;
}

ModelSpec read_model_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  STRAND_CHECK(in.good(), Io, "cannot read the model file (does it exist?)", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  STRAND_CHECK(!in.bad(), Io, "cannot read the model file", path.string());
  return parse_model_json(ss.str(), path.string());
}

namespace {

// A setting the layer keeps as a float, written as the shortest decimal that reads back as that
// float (0.9, not 0.8999999761581421).
double shortest(double v) {
  char text[32];
  const auto end = std::to_chars(text, text + sizeof text, float(v)).ptr;
  return std::strtod(std::string(text, end).c_str(), nullptr);
}

json layer_object(const LayerSpec& s) {
  auto size = [](double h, double w) {
    return h == w ? json(int64_t(h)) : json::array({int64_t(h), int64_t(w)});
  };
  json l = {{"type", s.type}};
  auto a = [&](const char* key) { return s.attr(key); };
  if (s.type == "conv2d") {
    l["filters"] = int64_t(a("filters"));
    l["kernel"] = size(a("kernel_h"), a("kernel_w"));
    if (a("stride_h") != 1 || a("stride_w") != 1) l["stride"] = size(a("stride_h"), a("stride_w"));
    if (a("same") != 0) {
      l["padding"] = "same";
    } else if (s.attr_or("pad_h", 0) == 0 && s.attr_or("pad_w", 0) == 0) {
      l["padding"] = "valid";
    } else {
      l["padding"] = size(a("pad_h"), a("pad_w"));
    }
    if (a("bias") == 0) l["bias"] = false;
  } else if (s.type == "maxpool" || s.type == "avgpool") {
    l["kernel"] = size(a("kernel_h"), a("kernel_w"));
    if (a("stride_h") != a("kernel_h") || a("stride_w") != a("kernel_w"))
      l["stride"] = size(a("stride_h"), a("stride_w"));
  } else if (s.type == "batchnorm") {
    l["momentum"] = shortest(a("momentum"));
    l["epsilon"] = shortest(a("epsilon"));
  } else if (s.type == "dense") {
    l["units"] = int64_t(a("units"));
  } else if (s.type == "dropout") {
    l["rate"] = shortest(a("rate"));
  }
  return l;
}

}  // namespace

std::string layer_json(const LayerSpec& canonical) { return layer_object(canonical).dump(-1, ' ', false); }

std::string to_model_json(const ModelArch& arch, const std::string& description) {
  json layers = json::array();
  Shape shape = arch.input;
  for (const LayerSpec& given : arch.layers) {
    std::unique_ptr<Layer> layer = make_layer(given);
    shape = layer->bind(shape);
    layers.push_back(layer_object(layer->spec()));  // canonical settings
  }
  json doc = json::object();
  doc["name"] = arch.name;
  if (!description.empty()) doc["description"] = description;
  doc["input"] = arch.input.dims();
  doc["classes"] = shape.numel();
  doc["layers"] = layers;
  // One layer per line: readable and diffable.
  std::string out = "{\n";
  for (const char* key : {"name", "description", "input", "classes"})
    if (doc.contains(key)) out += "  \"" + std::string(key) + "\": " + doc[key].dump() + ",\n";
  out += "  \"layers\": [\n";
  for (size_t i = 0; i < layers.size(); ++i)
    out += "    " + layers[i].dump(-1, ' ', false) + (i + 1 < layers.size() ? ",\n" : "\n");
  out += "  ]\n}\n";
  return out;
}

ModelSpec find_model(const std::string& name_or_path) {
  for (const std::string& n : names())
    if (n == name_or_path) return builtin(n);
  if (std::filesystem::exists(name_or_path)) return read_model_file(name_or_path);
  throw Error(ErrorKind::Usage,
              "'" + name_or_path + "' is neither a built-in model (" + join(names(), ", ") +
                  ") nor a model file that exists",
              "model");
}

}  // namespace strand::models
