// Model files (models/model_json.hpp): the built-ins round-trip, every error names the file,
// the layer and what is wrong, and the class count can come from the labels.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <strand/core/error.hpp>
#include <strand/core/layers.hpp>
#include <strand/models/model_json.hpp>
#include <strand/models/models.hpp>

namespace strand {
namespace {

using models::parse_model_json;

std::string error_of(const std::string& text, ErrorKind* kind = nullptr) {
  try {
    parse_model_json(text, "m.json");
  } catch (const Error& e) {
    if (kind) *kind = e.kind();
    return e.what();
  }
  return "no error";
}

// A model whose one layer is `layer` (JSON), on a 1x8x8 input, ending in dense 3.
std::string with_layer(const std::string& layer) {
  return R"({"input": [1, 8, 8], "layers": [)" + layer +
         R"(, {"type": "flatten"}, {"type": "dense", "units": 3}]})";
}

TEST(ModelJson, BuiltinsRoundTrip) {
  for (const std::string& name : models::names()) {
    SCOPED_TRACE(name);
    const models::ModelSpec m = models::builtin(name);
    EXPECT_EQ(m.arch.name, name);
    const std::string text = models::to_model_json(m.arch, m.description);
    const models::ModelSpec again = parse_model_json(text, "again");
    EXPECT_EQ(again.arch, m.arch);
    EXPECT_EQ(again.description, m.description);
    EXPECT_EQ(models::to_model_json(again.arch, again.description), text);
  }
  EXPECT_EQ(models::mnist_cnn().layers[2], layers::maxpool(2, 2));
  EXPECT_EQ(models::mnist_cnn().layers[0], layers::conv2d(32, 5, true));
}

TEST(ModelJson, EveryOptionIsRead) {
  const models::ModelSpec m = parse_model_json(R"({
    "name": "all", "input": [3, 17, 16], "classes": 4,
    "layers": [
      {"type": "conv2d", "filters": 8, "kernel": [3, 2], "stride": [2, 1], "padding": [1, 0], "bias": false},
      {"type": "batchnorm", "momentum": 0.9, "epsilon": 1e-5},
      {"type": "relu"},
      {"type": "avgpool", "kernel": 3, "stride": 1},
      {"type": "maxpool", "kernel": [2, 1], "stride": [1, 2]},
      {"type": "global_avgpool"},
      {"type": "dropout", "rate": 0.25},
      {"type": "dense", "units": "classes"}
    ]})",
                                               "all.json");
  EXPECT_EQ(m.classes, 4);
  EXPECT_EQ(m.class_layers, std::vector<size_t>{7});
  const LayerSpec& conv = m.arch.layers[0];
  EXPECT_EQ(conv.attr("kernel_h"), 3);
  EXPECT_EQ(conv.attr("kernel_w"), 2);
  EXPECT_EQ(conv.attr("stride_h"), 2);
  EXPECT_EQ(conv.attr("pad_h"), 1);
  EXPECT_EQ(conv.attr("bias"), 0);
  EXPECT_EQ(m.arch.layers[4].attr("stride_w"), 2);
  EXPECT_FLOAT_EQ(float(m.arch.layers[1].attr("epsilon")), 1e-5f);
  EXPECT_EQ(parse_model_json(models::to_model_json(m.arch), "x").arch, m.arch);
}

TEST(ModelJson, ClassesFromTheLabels) {
  const std::string text =
      R"({"input": [4], "layers": [{"type": "dense", "units": 5}, {"type": "dense", "units": "classes"}]})";
  const models::ModelSpec m = parse_model_json(text, "c.json");
  EXPECT_FALSE(m.classes.has_value());
  EXPECT_EQ(m.arch.name, "c");
  EXPECT_EQ(m.with_classes(7).layers[1].attr("units"), 7);
  const models::ModelSpec fixed = models::builtin("mnist_cnn");
  EXPECT_EQ(fixed.classes, 10);
  EXPECT_EQ(fixed.with_classes(3), fixed.arch);  // the job checks the labels against 10
  // No "classes" and no "classes" layer: the last layer's width.
  EXPECT_EQ(parse_model_json(R"({"input": [4], "layers": [{"type": "dense", "units": 6}]})", "d").classes, 6);
}

TEST(ModelJson, ErrorsNameTheFileTheLayerAndTheProblem) {
  ErrorKind kind{};
  std::string e = error_of("{\n  \"input\": [1, 8, 8],\n  \"layers\": [}\n", &kind);
  EXPECT_EQ(kind, ErrorKind::Format);
  EXPECT_NE(e.find("m.json"), std::string::npos) << e;
  EXPECT_NE(e.find("line 3"), std::string::npos) << e;
  EXPECT_NE(error_of("[1, 2]").find("one JSON object"), std::string::npos);
  EXPECT_NE(error_of(R"({"input": [1, 8, 8], "layer": []})").find("unknown key 'layer'"), std::string::npos);
  EXPECT_NE(error_of(R"({"layers": [{"type": "relu"}]})").find("needs 'input'"), std::string::npos);
  EXPECT_NE(error_of(R"({"input": [1, 8], "layers": [{"type": "relu"}]})").find("[channels, height, width]"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"input": [1, 8, 8], "layers": []})").find("non-empty list"), std::string::npos);
  e = error_of(with_layer(R"({"type": "conv3d", "filters": 2})"));
  EXPECT_NE(e.find("layer 0 (conv3d)"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown layer type 'conv3d'"), std::string::npos) << e;
  e = error_of(with_layer(R"({"type": "conv2d", "filters": 2, "kernel": 3, "strides": 2})"));
  EXPECT_NE(e.find("layer 0 (conv2d): format error: unknown key 'strides'"), std::string::npos) << e;
  e = error_of(with_layer(R"({"type": "conv2d", "filters": 2})"));
  EXPECT_NE(e.find("conv2d needs 'kernel'"), std::string::npos) << e;
  e = error_of(with_layer(R"({"type": "conv2d", "filters": 2.5, "kernel": 3})"));
  EXPECT_NE(e.find("'filters' must be an integer"), std::string::npos) << e;
  e = error_of(with_layer(R"({"type": "conv2d", "filters": 2, "kernel": 3, "padding": "full"})"));
  EXPECT_NE(e.find("'padding' must be"), std::string::npos) << e;
  e = error_of(with_layer(R"({"type": "conv2d", "filters": 2, "kernel": 3, "bias": 1})"));
  EXPECT_NE(e.find("'bias' must be true or false"), std::string::npos) << e;
  e = error_of(with_layer(R"({"type": "dropout"})"));
  EXPECT_NE(e.find("dropout needs 'rate'"), std::string::npos) << e;
  e = error_of(with_layer(R"({"type": "dropout", "rate": 1.5})"));
  EXPECT_NE(e.find("'rate' must be in [0,1)"), std::string::npos) << e;
  e = error_of(with_layer(R"({"type": "batchnorm", "momentum": "high"})"));
  EXPECT_NE(e.find("'momentum' must be a number"), std::string::npos) << e;
  e = error_of(R"({"input": [4], "layers": [{"type": "dense", "units": "clases"}]})");
  EXPECT_NE(e.find("\"classes\""), std::string::npos) << e;
  e = error_of(R"({"type": 3})");
  EXPECT_NE(e.find("unknown key 'type'"), std::string::npos) << e;
  e = error_of(R"({"input": [1, 8, 8], "layers": [3]})");
  EXPECT_NE(e.find("layer 0 (?): format error: must be an object"), std::string::npos) << e;
}

TEST(ModelJson, ShapeErrorsNameTheLayerAndItsInput) {
  ErrorKind kind{};
  // 28 -> 14 -> 7: the third pool cannot halve 7x7.
  const std::string text = R"({"input": [1, 28, 28], "layers": [
      {"type": "maxpool", "kernel": 2}, {"type": "conv2d", "filters": 4, "kernel": 3, "padding": "same"},
      {"type": "maxpool", "kernel": 2}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
      {"type": "flatten"}, {"type": "dense", "units": 2}]})";
  std::string e = error_of(text, &kind);
  EXPECT_EQ(kind, ErrorKind::Shape);
  EXPECT_NE(e.find("layer 4 (maxpool 2x2, input [4,7,7])"), std::string::npos) << e;
  EXPECT_NE(e.find("input 7x7 is not divisible"), std::string::npos) << e;
  e = error_of(R"({"input": [1, 8, 8], "layers": [{"type": "dense", "units": 3}]})", &kind);
  EXPECT_NE(e.find("layer 0 (dense 3, input [1,8,8])"), std::string::npos) << e;
  EXPECT_NE(e.find("add a flatten"), std::string::npos) << e;
  e = error_of(R"({"input": [1, 4, 4], "layers": [{"type": "conv2d", "filters": 2, "kernel": 5}]})", &kind);
  EXPECT_NE(e.find("larger than its padded input"), std::string::npos) << e;
  e = error_of(
      R"({"input": [1, 4, 4], "layers": [{"type": "conv2d", "filters": 2, "kernel": 2, "padding": "same"}]})");
  EXPECT_NE(e.find("odd kernel"), std::string::npos) << e;
  e = error_of(R"({"input": [1, 4, 4], "layers": [{"type": "relu"}]})", &kind);
  EXPECT_NE(e.find("not a vector of class scores"), std::string::npos) << e;
  e = error_of(R"({"input": [4], "classes": 3, "layers": [{"type": "dense", "units": 5}]})", &kind);
  EXPECT_NE(e.find("ends with 5 outputs but says \"classes\": 3"), std::string::npos) << e;
}

TEST(ModelJson, FindModelTakesANameOrAFile) {
  EXPECT_EQ(models::find_model("mnist_mlp").arch, models::mnist_mlp());
  const auto path = std::filesystem::temp_directory_path() / "strand_test_model.json";
  std::ofstream(path) << models::builtin_text("mnist_bn");
  const models::ModelSpec m = models::find_model(path.string());
  EXPECT_EQ(m.arch, models::by_name("mnist_bn"));
  EXPECT_EQ(m.source, path.string());
  std::filesystem::remove(path);
  try {
    models::find_model("resnet50");
    FAIL() << "resnet50 found";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(std::string(e.what()).find("mnist_cnn, mnist_mlp, mnist_bn, cifar_cnn"), std::string::npos);
  }
  EXPECT_THROW(models::read_model_file("/nonexistent/m.json"), Error);
}

}  // namespace
}  // namespace strand
