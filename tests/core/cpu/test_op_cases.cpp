// The op table (models/op_cases.hpp) that the kernel tests, the CUDA tests and the layer
// benchmarks iterate: it must give the shapes the Model itself runs.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <strand/core/error.hpp>
#include <strand/core/layers.hpp>
#include <strand/core/model.hpp>
#include <strand/models/models.hpp>
#include <strand/models/op_cases.hpp>

namespace strand {
namespace {

using models::OpCase;
using models::OpKind;

std::vector<std::string> names_of(const std::vector<OpCase>& cases) {
  std::vector<std::string> out;
  for (const OpCase& c : cases) out.push_back(c.name);
  return out;
}

TEST(OpCases, MnistCnnAtBatch100) {
  const auto ops = models::op_cases(models::mnist_cnn(), 100);
  EXPECT_EQ(names_of(ops),
            (std::vector<std::string>{"gather", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2",
                                      "dense1", "relu3", "dropout1", "dense2", "softmax_xent", "adam"}));
  const Conv2dDesc c1 = models::op_named(ops, "conv1").conv, c2 = models::op_named(ops, "conv2").conv;
  EXPECT_EQ(c1.batch, 100);
  EXPECT_EQ(c1.in_c, 1);
  EXPECT_EQ(c1.in_h, 28);
  EXPECT_EQ(c1.out_c, 32);
  EXPECT_EQ(c1.kernel_h, 5);
  EXPECT_EQ(c1.pad_h, 2);  // 'same'
  EXPECT_EQ(c1.pad_w, 2);
  EXPECT_EQ(c2.in_c, 32);
  EXPECT_EQ(c2.in_w, 14);
  EXPECT_EQ(c2.out_c, 64);
  const Pool2dDesc p2 = models::op_named(ops, "pool2").pool;
  EXPECT_EQ(p2.channels, 64);
  EXPECT_EQ(p2.in_h, 14);
  const DenseDesc d1 = models::op_named(ops, "dense1").dense, d2 = models::op_named(ops, "dense2").dense;
  EXPECT_EQ(d1.in, 3136);
  EXPECT_EQ(d1.out, 1024);
  EXPECT_EQ(d2.in, 1024);
  EXPECT_EQ(d2.out, 10);
  EXPECT_EQ(models::op_named(ops, "relu3").elements, 100 * 1024);
  EXPECT_EQ(models::op_named(ops, "dropout1").rate, 0.4f);
  EXPECT_EQ(models::op_named(ops, "softmax_xent").classes, 10);
  EXPECT_EQ(models::op_named(ops, "gather").sample, 784);
  // Only the first layer skips its input gradient.
  EXPECT_FALSE(models::op_named(ops, "conv1").needs_dx);
  EXPECT_TRUE(models::op_named(ops, "conv2").needs_dx);
  // The fusions core/model.cpp makes: the ReLUs after the convolutions run in them and in the
  // pools' backward; the one after dense1 runs on its own.
  EXPECT_TRUE(models::op_named(ops, "conv1").relu_in_forward);
  EXPECT_TRUE(models::op_named(ops, "pool2").relu_in_backward);
  EXPECT_TRUE(models::op_named(ops, "relu1").relu_in_forward);
  EXPECT_TRUE(models::op_named(ops, "relu1").relu_in_backward);
  EXPECT_FALSE(models::op_named(ops, "relu3").relu_in_forward);
  EXPECT_FALSE(models::op_named(ops, "relu3").relu_in_backward);
}

// Parameters and FLOPs agree with the Model built from the same architecture, for every model.
TEST(OpCases, AgreeWithTheModel) {
  for (const std::string& name : models::names()) {
    SCOPED_TRACE(name);
    auto be = make_cpu_backend(1);
    const Model model(*be, models::by_name(name));
    const auto ops = models::op_cases(model.arch(), 7);
    double flops = 0;
    for (const OpCase& c : ops) {
      EXPECT_EQ(c.batch, 7) << c.name;
      if (c.kind == OpKind::Conv2d) flops += c.conv.flops();
      if (c.kind == OpKind::Dense) flops += c.dense.flops();
    }
    EXPECT_DOUBLE_EQ(flops, 7 * model.forward_flops_per_sample());
    EXPECT_EQ(models::op_named(ops, "adam").elements, model.trainable_count());
    EXPECT_EQ(models::op_named(ops, "softmax_xent").classes, model.classes());
  }
}

TEST(OpCases, MlpSkipsFlattenAndKeepsDx) {
  const auto ops = models::op_cases(models::mnist_mlp(), 3);
  EXPECT_EQ(names_of(ops), (std::vector<std::string>{"gather", "dense1", "relu1", "dropout1", "dense2",
                                                     "softmax_xent", "adam"}));
  EXPECT_EQ(models::op_named(ops, "dense1").dense.in, 784);
  // Layer 0 is the flatten: dense1's input gradient is computed, as the Model does.
  EXPECT_TRUE(models::op_named(ops, "dense1").needs_dx);
  EXPECT_EQ(models::ops_of(ops, OpKind::Dense).size(), 2u);
}

TEST(OpCases, Errors) {
  const auto ops = models::op_cases(models::mnist_cnn(), 1);
  try {
    models::op_named(ops, "conv9");
    ADD_FAILURE() << "conv9 found";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(e.message().find("conv2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(models::op_cases(models::mnist_cnn(), 0), Error);
  ModelArch small = models::mnist_cnn();
  small.input = Shape{1, 3, 3};  // too small for a 5x5 'same' conv after two pools
  try {
    models::op_cases(small, 1);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Shape) << e.what();
  }
}

}  // namespace
}  // namespace strand

// The fast paths are taken exactly where they apply: the 2x2 stride-2 max pool (with the ReLU
// before it folded into its backward) and conv+ReLU; other pools, and a conv followed by
// batchnorm, take the general kernels.
namespace strand {
namespace {
TEST(OpCases, FastPathsOnlyWhereTheyApply) {
  const auto bn = models::op_cases(models::by_name("cifar_cnn"), 4);
  EXPECT_FALSE(models::op_named(bn, "conv2").relu_in_forward);  // batchnorm sits between
  EXPECT_EQ(models::op_named(bn, "conv2").conv.stride_h, 2);
  EXPECT_EQ(models::op_named(bn, "pool1").kind, models::OpKind::MaxPool2x2);
  EXPECT_TRUE(models::op_named(bn, "pool1").relu_in_backward);
  EXPECT_EQ(models::op_named(bn, "pool2").kind, models::OpKind::Pool);  // global_avgpool
  EXPECT_EQ(models::op_named(bn, "pool2").pooling.kernel_h, 8);
  EXPECT_EQ(models::op_named(bn, "batchnorm1").batchnorm.spatial, 32 * 32);
  using namespace strand::layers;
  const ModelArch overlap{
      "o", Shape{1, 9, 9}, {conv2d(2, 3, true), relu(), maxpool(3, 2), flatten(), dense(3)}};
  const auto ops = models::op_cases(overlap, 2);
  EXPECT_EQ(models::op_named(ops, "pool1").kind, models::OpKind::Pool);
  EXPECT_TRUE(models::op_named(ops, "conv1").relu_in_forward);
  EXPECT_FALSE(models::op_named(ops, "relu1").relu_in_backward);
}
}  // namespace
}  // namespace strand
