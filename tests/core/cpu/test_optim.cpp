// Optimizer steps against values worked out by hand (formulas in the comments).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/error.hpp>
#include "tests/core/kernel_test_util.hpp"

namespace strand {
namespace {

using V = std::vector<float>;

void expect_values(const V& got, const V& want, float tol = 1e-6f) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

TEST(Optim, SgdStep) {
  auto be = make_cpu_backend(1);
  V p = {1, 2, 3};
  const V g = {0.5f, -1, 2};
  be->sgd_step(3, 0.1f, p.data(), g.data());  // p - 0.1 g
  expect_values(p, {0.95f, 2.1f, 2.8f});
}

TEST(Optim, MomentumTwoSteps) {
  auto be = make_cpu_backend(1);
  V p = {1, 2, 3}, vel = {0, 0, 0};
  const V g = {0.5f, -1, 2};
  be->momentum_step(3, 0.1f, 0.9f, p.data(), g.data(), vel.data());  // v = g; p -= 0.1 v
  expect_values(vel, {0.5f, -1, 2});
  expect_values(p, {0.95f, 2.1f, 2.8f});
  be->momentum_step(3, 0.1f, 0.9f, p.data(), g.data(), vel.data());  // v = 1.9 g; p -= 0.1 v
  expect_values(vel, {0.95f, -1.9f, 3.8f});
  expect_values(p, {0.855f, 2.29f, 2.42f});
}

// lr 0.1, beta1 0.9, beta2 0.999, eps 1e-8.
TEST(Optim, AdamTwoSteps) {
  auto be = make_cpu_backend(1);
  V p = {1, 2, 3}, m = {0, 0, 0}, v = {0, 0, 0};
  // Step 1, g = (0.5, -1, 2): m = 0.1 g, v = 0.001 g^2, m_hat = g, v_hat = g^2, so each
  // parameter moves by lr * g / |g| = 0.1 against the gradient's sign.
  const V g1 = {0.5f, -1, 2};
  be->adam_step(3, 0.1f, 0.9f, 0.999f, 1e-8f, 1, p.data(), g1.data(), m.data(), v.data());
  expect_values(m, {0.05f, -0.1f, 0.2f});
  expect_values(v, {0.00025f, 0.001f, 0.004f}, 1e-7f);  // 1 - 0.999f is off by 1e-5 relative
  expect_values(p, {0.9f, 2.1f, 2.9f});
  // Step 2, g = (0.1, 0.2, -0.3): m = 0.9 m + 0.1 g = (0.055, -0.07, 0.15);
  // v = 0.999 v + 0.001 g^2 = (0.00025975, 0.001039, 0.004086);
  // m_hat = m / 0.19, v_hat = v / 0.001999; e.g. element 0: 0.289474 / sqrt(0.129940) = 0.803043
  // so p0 = 0.9 - 0.0803043 = 0.8196957. Likewise p1 = 2.1511026, p2 = 2.8447802.
  const V g2 = {0.1f, 0.2f, -0.3f};
  be->adam_step(3, 0.1f, 0.9f, 0.999f, 1e-8f, 2, p.data(), g2.data(), m.data(), v.data());
  expect_values(m, {0.055f, -0.07f, 0.15f});
  expect_values(v, {0.00025975f, 0.001039f, 0.004086f}, 1e-7f);
  expect_values(p, {0.8196959f, 2.1511026f, 2.8447802f}, 2e-6f);
}

// eps is added to sqrt(v_hat), the bias-corrected estimate: step 1 moves by lr g / (|g| + eps).
TEST(Optim, AdamEpsAddsToCorrectedRootV) {
  auto be = make_cpu_backend(1);
  V p = {1, 2, 3}, m = {0, 0, 0}, v = {0, 0, 0};
  const V g = {0.5f, -1, 2};
  be->adam_step(3, 0.1f, 0.9f, 0.999f, 0.5f, 1, p.data(), g.data(), m.data(), v.data());
  // 0.1 * 0.5 / 1.0 = 0.05, 0.1 * -1 / 1.5 = -0.0666667, 0.1 * 2 / 2.5 = 0.08
  expect_values(p, {0.95f, 2.0666667f, 2.92f});
}

TEST(Optim, ParallelPathMatchesSerial) {
  // mnist_cnn's 3.27M parameters (models/op_cases.hpp): the 2-thread run must equal the
  // 1-thread run bit for bit.
  const int64_t n = models::op_named(models::op_cases(models::mnist_cnn(), 1), "adam").elements;
  ASSERT_EQ(n, 3274634);
  const V g = test::random_vec(n, 1);
  V p1 = test::random_vec(n, 2), m1(n), v1(n);
  V p2 = p1, m2(n), v2(n);
  auto one = make_cpu_backend(1), two = make_cpu_backend(2);
  for (int64_t step = 1; step <= 2; ++step) {
    one->adam_step(n, 1e-3f, 0.9f, 0.999f, 1e-8f, step, p1.data(), g.data(), m1.data(), v1.data());
    two->adam_step(n, 1e-3f, 0.9f, 0.999f, 1e-8f, step, p2.data(), g.data(), m2.data(), v2.data());
  }
  EXPECT_TRUE(test::same_bits(p1, p2));
  EXPECT_TRUE(test::same_bits(v1, v2));
  // And the step did something: every parameter moved by about lr.
  const V p0 = test::random_vec(n, 2);
  EXPECT_NEAR(std::abs(p1[12345] - p0[12345]), 2e-3, 1e-4);
}

TEST(Optim, AdamStepZeroIsUsageError) {
  auto be = make_cpu_backend(1);
  V p = {1}, g = {1}, m = {0}, v = {0};
  try {
    be->adam_step(1, 0.1f, 0.9f, 0.999f, 1e-8f, 0, p.data(), g.data(), m.data(), v.data());
    ADD_FAILURE() << "step 0 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
  }
}

}  // namespace
}  // namespace strand
