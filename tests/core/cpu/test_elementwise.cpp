// relu and dropout.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/error.hpp>
#include "tests/core/kernel_test_util.hpp"

namespace strand {
namespace {

using test::random_vec;

// Values in [-1,-0.1] U [0.1,1]: a step of 0.01 never crosses relu's kink at 0.
std::vector<float> away_from_zero(size_t n, uint32_t seed) {
  std::vector<float> v = random_vec(n, seed, 0.1f, 1.0f);
  for (size_t i = 0; i < n; i += 2) v[i] = -v[i];
  return v;
}

class Elementwise : public testing::TestWithParam<int> {};

// 100003 elements: above the parallel threshold and not a multiple of the vector width.
TEST_P(Elementwise, ReluMatchesReferenceAndWorksInPlace) {
  auto be = make_cpu_backend(GetParam());
  const int64_t n = 100003;
  const std::vector<float> x = random_vec(n, 1), dy = random_vec(n, 2);
  std::vector<float> y(n), dx(n);
  be->relu_forward(n, x.data(), y.data());
  be->relu_backward(n, y.data(), dy.data(), dx.data());
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(y[i], x[i] > 0 ? x[i] : 0.0f) << i;
    ASSERT_EQ(dx[i], x[i] > 0 ? dy[i] : 0.0f) << i;
  }
  std::vector<float> inplace = x, g = dy;
  be->relu_forward(n, inplace.data(), inplace.data());
  be->relu_backward(n, inplace.data(), g.data(), g.data());
  EXPECT_TRUE(test::same_bits(inplace, y));
  EXPECT_TRUE(test::same_bits(g, dx));
}

TEST_P(Elementwise, DropoutUsesSharedMaskAndScale) {
  auto be = make_cpu_backend(GetParam());
  const int64_t n = 100003;
  const float rate = 0.4f;
  const uint64_t key = 0x1234abcdULL;
  const std::vector<float> x = random_vec(n, 3), dy = random_vec(n, 4);
  std::vector<float> y(n), dx(n);
  be->dropout_forward(n, rate, key, 0, x.data(), y.data());
  be->dropout_backward(n, rate, key, 0, dy.data(), dx.data());
  const float scale = 1.0f / (1.0f - rate);
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = dropout_keep(key, static_cast<uint64_t>(i), rate);
    kept += keep;
    ASSERT_EQ(y[i], keep ? x[i] * scale : 0.0f) << i;
    ASSERT_EQ(dx[i], keep ? dy[i] * scale : 0.0f) << i;
  }
  // The mask keeps about 1 - rate of the elements (binomial sd ~ 155 here).
  EXPECT_NEAR(static_cast<double>(kept) / n, 1.0 - rate, 0.01);

  // Another key gives another mask.
  std::vector<float> y2(n);
  be->dropout_forward(n, rate, key + 1, 0, x.data(), y2.data());
  EXPECT_FALSE(test::same_bits(y, y2));

  // In place.
  std::vector<float> inplace = x;
  be->dropout_forward(n, rate, key, 0, inplace.data(), inplace.data());
  EXPECT_TRUE(test::same_bits(inplace, y));

  // A tail run with `first` set draws the masks of the same elements in the whole run (what a
  // data-parallel rank holding the back of the global batch relies on).
  const int64_t first = 4097;
  std::vector<float> tail(n - first), dtail(n - first);
  be->dropout_forward(n - first, rate, key, first, x.data() + first, tail.data());
  be->dropout_backward(n - first, rate, key, first, dy.data() + first, dtail.data());
  EXPECT_TRUE(test::same_bits(tail, std::vector<float>(y.begin() + first, y.end())));
  EXPECT_TRUE(test::same_bits(dtail, std::vector<float>(dx.begin() + first, dx.end())));
}

INSTANTIATE_TEST_SUITE_P(Threads, Elementwise, testing::Values(1, 2));

TEST(ReluGrad, FiniteDifferences) {
  auto be = make_cpu_backend(1);
  const int64_t n = 40;
  std::vector<float> x = away_from_zero(n, 5), y(n), dx(n);
  const std::vector<float> r = random_vec(n, 6);
  auto loss = [&] {
    be->relu_forward(n, x.data(), y.data());
    return test::project(r, y);
  };
  loss();
  be->relu_backward(n, y.data(), r.data(), dx.data());
  EXPECT_TRUE(test::grads_match(dx, test::numeric_grad(x, 0.01f, loss), 1e-3));
}

TEST(DropoutGrad, FiniteDifferences) {
  auto be = make_cpu_backend(1);
  const int64_t n = 40;
  std::vector<float> x = random_vec(n, 7), y(n), dx(n);
  const std::vector<float> r = random_vec(n, 8);
  auto loss = [&] {
    be->dropout_forward(n, 0.4f, 99, 0, x.data(), y.data());
    return test::project(r, y);
  };
  be->dropout_backward(n, 0.4f, 99, 0, r.data(), dx.data());
  EXPECT_TRUE(test::grads_match(dx, test::numeric_grad(x, 0.1f, loss), 1e-3));
}

TEST(DropoutEdges, RateZeroIsIdentityAndRateOneIsRejected) {
  auto be = make_cpu_backend(1);
  const std::vector<float> x = random_vec(1000, 9);
  std::vector<float> y(1000);
  be->dropout_forward(1000, 0.0f, 5, 0, x.data(), y.data());
  EXPECT_TRUE(test::same_bits(x, y));
  for (float bad : {1.0f, -0.1f, std::nanf("")}) {
    try {
      be->dropout_forward(1000, bad, 5, 0, x.data(), y.data());
      ADD_FAILURE() << "rate " << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
    }
  }
}

}  // namespace
}  // namespace strand
