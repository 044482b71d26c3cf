// Model: flat buffer layout, gradients through every layer type against finite differences,
// the grads-ready ranges a strategy relies on, and errors for architectures that do not fit.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include <strand/core/error.hpp>
#include <strand/core/layers.hpp>
#include <strand/core/model.hpp>
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

TEST(Model, GradientsMatchFiniteDifferences) {
  auto be = make_cpu_backend(1);
  Model m(*be, small_arch());
  m.init(7);
  // Move biases off zero so ReLU kinks are not hit exactly.
  std::vector<float> p = m.get_params();
  for (size_t i = 0; i < p.size(); ++i) p[i] += 0.05f * (float(mix64(i) >> 40) / 16777216.0f - 0.5f);
  m.set_params(p);
  const int64_t batch = 3;
  const std::vector<float> x = uniform(size_t(batch * 2 * 8 * 8), 99);
  const std::vector<int32_t> y{1, 4, 2};
  const uint64_t key = 12345;
  auto loss_at = [&](const std::vector<float>& params) {
    m.set_params(params);
    m.forward(x.data(), batch, true, key);
    return m.loss(y.data(), batch).loss;
  };
  loss_at(p);
  m.backward();
  const std::vector<float> analytic(m.grads(), m.grads() + m.param_count());
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
    ASSERT_GT(sum2, 1e-12) << "layer " << layer << " has no gradient at all";
    EXPECT_LT(std::sqrt(diff2 / sum2), 2e-2)
        << "layer " << layer << " (" << m.arch().layers[layer].type << ")";
  }
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
    EXPECT_NE(std::string(e.what()).find("layer 0 (conv2d)"), std::string::npos) << e.what();
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
