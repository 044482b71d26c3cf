// Model: flat buffer layout, gradients through every layer type against finite differences,
// the grads-ready ranges a strategy relies on, and errors for architectures that do not fit.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include <strand/core/error.hpp>
#include <strand/core/layers.hpp>
#include <strand/core/model.hpp>
#include <strand/core/optimizer.hpp>
#include <strand/models/models.hpp>

namespace strand {
namespace {

using namespace strand::layers;

// Every layer type, small enough for finite differences: conv same and valid, pooling,
// flatten, dense, relu and dropout (training mode, so the mask is live).
ModelArch small_arch() {
  return {"small",
          Shape{2, 8, 8},
          {conv2d(3, 3, true), relu(), maxpool2x2(),  // [3,4,4]
           conv2d(4, 3, false), relu(),               // [4,2,2]
           flatten(), dense(6), relu(), dropout(0.3), dense(5)}};
}

std::vector<float> uniform(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = float(mix64(seed + i) >> 40) / 16777216.0f;
  return v;
}

TEST(Model, MnistCnnLayoutMatchesTheExample) {
  auto be = make_cpu_backend(1);
  Model m(*be, models::mnist_cnn());
  EXPECT_EQ(m.param_count(), 3274634);  // 832 + 51264 + 3212288 + 10250
  EXPECT_EQ(m.output_shape(), Shape{10});
  const std::vector<int64_t> expected{0,     832,   832,     832,     52096,   52096,
                                      52096, 52096, 3264384, 3264384, 3264384, 3274634};
  EXPECT_EQ(m.param_offsets(), expected);
  Model mlp(*be, models::mnist_mlp());
  EXPECT_EQ(mlp.param_count(), 784 * 1024 + 1024 + 1024 * 10 + 10);
}

// Analytic gradients of every trainable parameter range against central differences of the
// loss (batch 3, so batchnorm's batch statistics are live when `training`; otherwise batchnorm
// normalizes with running statistics moved off their initial values).
void expect_gradients_match(const ModelArch& arch, bool training = true) {
  auto be = make_cpu_backend(1);
  Model m(*be, arch);
  m.init(7);
  // Move biases off zero (and batchnorm's gamma off one) so ReLU kinks are not hit exactly.
  std::vector<float> p = m.get_params();
  for (int64_t i = 0; i < m.trainable_count(); ++i)
    p[size_t(i)] += 0.05f * (float(mix64(uint64_t(i)) >> 40) / 16777216.0f - 0.5f);
  for (int64_t i = m.trainable_count(); i < m.param_count(); ++i)  // mean +-0.25, variance 0.75..1.25
    p[size_t(i)] += 0.5f * (float(mix64(uint64_t(i)) >> 40) / 16777216.0f - 0.5f);
  m.set_params(p);
  const int64_t batch = 3;
  const std::vector<float> x = uniform(size_t(batch * arch.input.numel()), 99);
  const std::vector<int32_t> y{1, 4, 2};
  const uint64_t key = 12345;
  auto loss_at = [&](const std::vector<float>& params) {
    m.set_params(params);
    m.forward(x.data(), batch, training, key);
    return m.loss(y.data(), batch).loss;
  };
  loss_at(p);
  m.backward();
  const std::vector<float> analytic(m.grads(), m.grads() + m.param_count());
  if (!training) {
    for (int64_t i = m.trainable_count(); i < m.param_count(); ++i)
      ASSERT_EQ(analytic[size_t(i)], 0.f) << "an inference step moved running statistic " << i;
  }
  const auto& off = m.param_offsets();
  for (size_t layer = 0; layer + 1 < off.size(); ++layer) {
    if (off[layer + 1] == off[layer]) continue;
    double diff2 = 0, sum2 = 0;
    for (int64_t i = off[layer]; i < off[layer + 1]; i += 1 + (off[layer + 1] - off[layer]) / 40) {
      const float h = 1e-2f;
      std::vector<float> q = p;
      q[size_t(i)] += h;
      const double up = loss_at(q);
      q[size_t(i)] -= 2 * h;
      const double down = loss_at(q);
      const double fd = (up - down) / (2 * h);
      diff2 += (fd - analytic[size_t(i)]) * (fd - analytic[size_t(i)]);
      sum2 += fd * fd + double(analytic[size_t(i)]) * analytic[size_t(i)];
    }
    ASSERT_GT(sum2, 1e-12) << arch.name << " layer " << layer << " has no gradient at all";
    EXPECT_LT(std::sqrt(diff2 / sum2), 2e-2)
        << arch.name << " layer " << layer << " (" << describe(m.arch().layers[layer]) << ")"
        << (training ? "" : ", inference mode");
  }
}

TEST(Model, GradientsMatchFiniteDifferences) { expect_gradients_match(small_arch()); }

// Each new layer and option with a layer with parameters before it, so its input gradient is
// checked too: strides (equal and unequal), explicit padding, no bias, overlapping and
// average pooling, global average pooling, batchnorm after a convolution and a dense layer.
TEST(Model, NewLayersMatchFiniteDifferences) {
  // No ReLU after the strided convolutions or a batchnorm over 3 samples (one of 3 normalized
  // values sits near 0), and small max-pool windows: a kink
  // crossed by the finite difference's step would be counted against the analytic gradient
  // (test_kernels checks pooling's gradients at the kernel).
  const std::vector<ModelArch> archs = {
      {"strided",
       Shape{2, 9, 9},
       {conv2d(3, 3, 3, {.stride_h = 2, .stride_w = 2}),                                         // [3,5,5]
        conv2d(4, 3, 2, {.stride_h = 1, .stride_w = 2, .same = false, .pad_h = 1, .pad_w = 0}),  // [4,5,2]
        flatten(), dense(5)}},
      {"batchnorm",
       Shape{2, 9, 9},
       {conv2d(3, 3, 3, {.bias = false}), batchnorm(0.9, 1e-3), avgpool(3, 2),  // [3,4,4]
        flatten(), dense(6), batchnorm(), dense(5)}},
      {"pooling",
       Shape{2, 8, 8},
       {conv2d(3, 3, true), avgpool(3, 1), maxpool(3, 3),  // [3,2,2]
        conv2d(4, 1, false), global_avgpool(), dense(5)}},
  };
  for (const ModelArch& a : archs) expect_gradients_match(a);
  // Inference mode: batchnorm is the affine map its running statistics make.
  expect_gradients_match(archs[1], false);
}

TEST(Model, BatchnormKeepsRunningStatisticsAsState) {
  auto be = make_cpu_backend(1);
  const double momentum = 0.8;
  Model m(*be, {"bn", Shape{2}, {batchnorm(momentum, 1e-3), dense(2)}});
  m.init(1);
  EXPECT_EQ(m.trainable_count(), 4 + 6);
  EXPECT_EQ(m.param_count(), 4 + 6 + 4);
  const std::vector<float> init = m.get_params();
  EXPECT_EQ(std::vector<float>(init.begin() + 10, init.end()), (std::vector<float>{0, 0, 1, 1}));
  // Feature 0 takes 1, 2, 3, 6 (mean 3, unbiased variance 14/3); feature 1 is constant 5.
  const std::vector<float> x{1, 5, 2, 5, 3, 5, 6, 5};
  const std::vector<int32_t> y{0, 1, 0, 1};
  m.forward(x.data(), 4, true, 0);
  m.loss(y.data(), 4);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  m.backward([&](int64_t b, int64_t e) { ranges.emplace_back(b, e); });
  ASSERT_FALSE(ranges.empty());
  EXPECT_EQ(ranges.front(), std::make_pair(m.trainable_count(), m.param_count()));
  const std::vector<float> delta(m.grads() + 10, m.grads() + 14);
  const double keep = 1 - momentum;
  EXPECT_NEAR(delta[0], keep * (0 - 3.0), 1e-6);
  EXPECT_NEAR(delta[1], keep * (0 - 5.0), 1e-6);
  EXPECT_NEAR(delta[2], keep * (1 - 14.0 / 3.0), 1e-6);
  EXPECT_NEAR(delta[3], keep * (1 - 0.0), 1e-6);
  // The optimizer trains the first 10 and applies the state rule to the rest, whatever its kind.
  Optimizer opt(*be, OptimizerConfig{.kind = OptimizerKind::Adam, .lr = 0.1f}, m.param_count(),
                m.trainable_count());
  opt.step(m.params(), m.grads());
  const std::vector<float> after = m.get_params();
  EXPECT_NEAR(after[10], momentum * 0 + keep * 3.0, 1e-6);
  EXPECT_NEAR(after[12], momentum * 1 + keep * 14.0 / 3.0, 1e-6);
  EXPECT_EQ(opt.state().slots[0].size(), size_t(m.trainable_count()));
  // Inference normalizes with the running statistics: feature 0 = (x - mean) / sqrt(var + eps).
  Model probe(*be, {"probe", Shape{2}, {batchnorm(momentum, 1e-3)}});
  std::vector<float> pp{1, 1, 0, 0, 2.f, 5.f, 4.f, 1.f};  // gamma, beta, mean, variance
  probe.set_params(pp);
  const std::vector<float> px{4, 6};
  const float* out = probe.forward(px.data(), 1, false, 0);
  EXPECT_NEAR(out[0], (4 - 2) / std::sqrt(4 + 1e-3), 1e-5);
  EXPECT_NEAR(out[1], (6 - 5) / std::sqrt(1 + 1e-3), 1e-5);
}

TEST(Model, OlderSpecsReadAsTheirCanonicalForms) {
  auto be = make_cpu_backend(1);
  const ModelArch old{"old",
                      Shape{1, 8, 8},
                      {LayerSpec{"conv2d", {{"filters", 2}, {"kernel", 3}, {"same", 1}}},
                       LayerSpec{"maxpool2x2", {}}, flatten(), dense(3)}};
  const ModelArch now{"now", Shape{1, 8, 8}, {conv2d(2, 3, true), maxpool(2, 2), flatten(), dense(3)}};
  Model a(*be, old), b(*be, now);
  a.init(4);
  b.init(4);
  EXPECT_EQ(a.get_params(), b.get_params());
  EXPECT_EQ(a.summary()[0].spec, b.summary()[0].spec);
  EXPECT_EQ(a.summary()[1].spec, b.summary()[1].spec);
}

TEST(Model, SettingsAreCheckedByName) {
  auto be = make_cpu_backend(1);
  auto error_of = [&](const ModelArch& arch) -> std::string {
    try {
      Model m(*be, arch);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  LayerSpec typo = conv2d(2, 3, true);
  typo.attrs["strides_h"] = 2;
  EXPECT_NE(error_of({"m", Shape{1, 8, 8}, {typo}}).find("no setting 'strides_h'"), std::string::npos);
  const std::string pool = error_of({"m", Shape{1, 7, 7}, {maxpool(2, 2)}});
  EXPECT_NE(pool.find("layer 0 (maxpool 2x2"), std::string::npos) << pool;
  EXPECT_NE(pool.find("input 7x7 is not divisible"), std::string::npos) << pool;
  EXPECT_NE(error_of({"m", Shape{1, 8, 8}, {conv2d(2, 4, true)}}).find("odd kernel"), std::string::npos);
  EXPECT_NE(error_of({"m", Shape{4}, {batchnorm(1.5)}}).find("'momentum' must be in [0,1)"),
            std::string::npos);
  EXPECT_NE(error_of({"m", Shape{4}, {global_avgpool()}}).find("image [C,H,W]"), std::string::npos);
}

TEST(Model, GradsReadyCoversTheBufferLastLayerFirst) {
  auto be = make_cpu_backend(1);
  Model m(*be, small_arch());
  m.init(1);
  const std::vector<float> x = uniform(2 * 2 * 8 * 8, 3);
  const std::vector<int32_t> y{0, 3};
  m.forward(x.data(), 2, true, 9);
  m.loss(y.data(), 2);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  m.backward([&](int64_t b, int64_t e) { ranges.emplace_back(b, e); });
  ASSERT_FALSE(ranges.empty());
  EXPECT_EQ(ranges.front().second, m.param_count());
  EXPECT_EQ(ranges.back().first, 0);
  for (size_t i = 1; i < ranges.size(); ++i) EXPECT_EQ(ranges[i].second, ranges[i - 1].first);
}

TEST(Model, SameSeedSameStepsSameBits) {
  auto run = [] {
    auto be = make_cpu_backend(2);
    Model m(*be, small_arch());
    m.init(5);
    const std::vector<float> x = uniform(4 * 2 * 8 * 8, 11);
    const std::vector<int32_t> y{0, 1, 2, 3};
    for (int step = 0; step < 3; ++step) {
      m.forward(x.data(), 4, true, uint64_t(step));
      m.loss(y.data(), 4);
      m.backward();
      be->sgd_step(m.param_count(), 0.1f, m.params(), m.grads());
    }
    return m.get_params();
  };
  EXPECT_EQ(run(), run());
}

TEST(Model, DropoutIsIdentityAtInference) {
  auto be = make_cpu_backend(1);
  Model a(*be, {"a", Shape{6}, {dense(4), dropout(0.5), dense(3)}});
  Model b(*be, {"b", Shape{6}, {dense(4), dense(3)}});
  a.init(3);
  b.set_params(a.get_params());
  const std::vector<float> x = uniform(12, 4);
  std::vector<float> pa(6), pb(6);
  a.predict(x.data(), 2, pa.data());
  b.predict(x.data(), 2, pb.data());
  EXPECT_EQ(pa, pb);
  EXPECT_NEAR(pa[0] + pa[1] + pa[2], 1.0, 1e-6);
}

TEST(Model, ArchitecturesThatDoNotFitAreShapeErrors) {
  auto be = make_cpu_backend(1);
  try {
    Model m(*be, {"bad", Shape{1, 4, 4}, {conv2d(2, 7, false)}});
    FAIL() << "a 7x7 valid kernel on 4x4 input must be rejected";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Shape);
    EXPECT_NE(std::string(e.what()).find("layer 0 (conv2d 7x7x2 valid"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Model(*be, {"bad", Shape{1, 4, 4}, {dense(3)}}), Error);  // dense needs flatten
  EXPECT_THROW(Model(*be, {"bad", Shape{4}, {LayerSpec{"softplus", {}}}}), Error);
  EXPECT_THROW(Model(*be, {"bad", Shape{4}, {dropout(1.0)}}), Error);
  EXPECT_THROW(models::by_name("resnet50"), Error);
}

TEST(Model, SetParamsChecksTheSize) {
  auto be = make_cpu_backend(1);
  Model m(*be, small_arch());
  std::vector<float> wrong(size_t(m.param_count() - 1));
  EXPECT_THROW(m.set_params(wrong), Error);
}

}  // namespace
}  // namespace strand
