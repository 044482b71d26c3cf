#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/error.hpp>
#include "tests/core/kernel_test_util.hpp"

namespace strand {
namespace {

using test::random_vec;

struct XentRef {
  double loss = 0;
  int64_t correct = 0;
  std::vector<double> grad, probs;
};

XentRef naive_xent(int64_t batch, int64_t classes, const std::vector<float>& logits,
                   const std::vector<int32_t>& labels) {
  XentRef r;
  r.grad.resize(logits.size());
  r.probs.resize(logits.size());
  for (int64_t n = 0; n < batch; ++n) {
    double z = 0;
    int64_t arg = 0;
    for (int64_t j = 0; j < classes; ++j) {
      z += std::exp(static_cast<double>(logits[n * classes + j]));
      if (logits[n * classes + j] > logits[n * classes + arg]) arg = j;
    }
    r.loss -= std::log(std::exp(static_cast<double>(logits[n * classes + labels[n]])) / z) / batch;
    r.correct += arg == labels[n];
    for (int64_t j = 0; j < classes; ++j) {
      const double p = std::exp(static_cast<double>(logits[n * classes + j])) / z;
      r.probs[n * classes + j] = p;
      r.grad[n * classes + j] = (p - (j == labels[n] ? 1.0 : 0.0)) / batch;
    }
  }
  return r;
}

std::vector<int32_t> random_labels(int64_t batch, int64_t classes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> l(batch);
  for (auto& v : l) v = static_cast<int32_t>(rng() % classes);
  return l;
}

class XentVsNaive : public testing::TestWithParam<int> {};

TEST_P(XentVsNaive, LossGradientAccuracyAndSoftmaxMatchReference) {
  auto be = make_cpu_backend(GetParam());
  // The model's at batch 100 (models/op_cases.hpp); {4000,10} goes through the parallel path.
  const models::OpCase model = models::op_named(models::op_cases(models::mnist_cnn(), 100), "softmax_xent");
  for (auto [batch, classes] :
       {std::pair<int64_t, int64_t>{1, 1}, {3, 5}, {model.batch, model.classes}, {7, 33}, {4000, 10}}) {
    SCOPED_TRACE(testing::Message() << batch << "x" << classes);
    const std::vector<float> logits = random_vec(batch * classes, 11, -4.0f, 4.0f);
    const std::vector<int32_t> labels = random_labels(batch, classes, 12);
    const XentRef ref = naive_xent(batch, classes, logits, labels);
    std::vector<float> grad(logits.size()), probs(logits.size());
    const LossResult res = be->softmax_xent(batch, classes, logits.data(), labels.data(), grad.data());
    EXPECT_NEAR(res.loss, ref.loss, 1e-5 * (1 + ref.loss));
    EXPECT_EQ(res.correct, ref.correct);
    EXPECT_TRUE(test::all_close(grad, ref.grad, 1e-5));
    be->softmax(batch, classes, logits.data(), probs.data());
    EXPECT_TRUE(test::all_close(probs, ref.probs, 1e-5));
    const std::vector<float> before = probs;
    be->softmax(batch, classes, probs.data(), probs.data());  // in place
    EXPECT_TRUE(test::all_close(probs, naive_xent(batch, classes, before, labels).probs, 1e-5));
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, XentVsNaive, testing::Values(1, 2));

TEST(XentStability, LargeLogitsDoNotOverflow) {
  auto be = make_cpu_backend(1);
  const std::vector<float> logits = {1000.0f, 0.0f, -1000.0f, 500.0f, 500.0f, 0.0f};
  const std::vector<int32_t> labels = {0, 2};
  std::vector<float> grad(6);
  const LossResult res = be->softmax_xent(2, 3, logits.data(), labels.data(), grad.data());
  // Row 0: loss ~0, right. Row 1: loss 500 + log 2, wrong; mean over 2 rows.
  EXPECT_NEAR(res.loss, (500.0 + std::log(2.0)) / 2, 1e-3);
  EXPECT_EQ(res.correct, 1);
  EXPECT_TRUE(test::all_close(grad, {0, 0, 0, 0.25, 0.25, -0.5}, 1e-6));
}

TEST(XentGrad, FiniteDifferences) {
  auto be = make_cpu_backend(1);
  const int64_t batch = 3, classes = 5;
  std::vector<float> logits = random_vec(batch * classes, 13, -2.0f, 2.0f);
  const std::vector<int32_t> labels = {4, 0, 2};
  std::vector<float> grad(logits.size()), scratch(logits.size());
  auto loss = [&] {
    return be->softmax_xent(batch, classes, logits.data(), labels.data(), scratch.data()).loss;
  };
  be->softmax_xent(batch, classes, logits.data(), labels.data(), grad.data());
  // Smooth but not linear: h balances truncation (h^2) against float rounding (1e-7 / h).
  EXPECT_TRUE(test::grads_match(grad, test::numeric_grad(logits, 1e-2f, loss), 1e-2));
}

TEST(XentErrors, LabelOutOfRangeIsUsageError) {
  auto be = make_cpu_backend(2);
  const std::vector<float> logits(20);
  std::vector<float> grad(20);
  for (int32_t bad : {10, -1}) {
    const std::vector<int32_t> labels = {0, bad};
    try {
      be->softmax_xent(2, 10, logits.data(), labels.data(), grad.data());
      ADD_FAILURE() << "label " << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_NE(std::string(e.what()).find("label"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace strand
