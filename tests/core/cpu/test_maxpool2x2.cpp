#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/error.hpp>
#include "tests/core/kernel_test_util.hpp"

namespace strand {
namespace {

using test::random_vec;

// Reference: scan each window row-major, keep the first strictly larger value.
void naive_pool(const Pool2dDesc& d, const std::vector<float>& x, const std::vector<float>& dy,
                std::vector<double>& y, std::vector<double>& dx) {
  const int64_t oh = d.out_h(), ow = d.out_w();
  y.assign(d.batch * d.channels * oh * ow, 0.0);
  dx.assign(x.size(), 0.0);
  for (int64_t p = 0; p < d.batch * d.channels; ++p)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        int64_t best = (p * d.in_h + 2 * oy) * d.in_w + 2 * ox;
        for (int64_t i = 0; i < 2; ++i)
          for (int64_t j = 0; j < 2; ++j) {
            const int64_t xi = (p * d.in_h + 2 * oy + i) * d.in_w + 2 * ox + j;
            if (x[xi] > x[best]) best = xi;
          }
        const int64_t yi = (p * oh + oy) * ow + ox;
        y[yi] = x[best];
        dx[best] = dy[yi];
      }
}

// Distinct values at least 0.01 apart, so a small finite-difference step never changes
// which element of a window is the maximum.
std::vector<float> spaced_values(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = 0.01f * static_cast<float>(i) - 0.005f * n;
  std::shuffle(v.begin(), v.end(), std::mt19937(seed));
  return v;
}

// Odd sizes (dropped trailing rows and columns), then the models' pools at batch 2
// (models/op_cases.hpp).
const std::vector<Pool2dDesc> kShapes = test::joined<Pool2dDesc>(
    {{1, 1, 2, 2}, {2, 3, 5, 7}, {3, 2, 6, 6}, {1, 4, 9, 4}, {3, 5, 7, 3}}, test::model_pools({2}));

class PoolVsNaive : public testing::TestWithParam<int> {};

TEST_P(PoolVsNaive, ForwardAndBackwardMatchReference) {
  auto be = make_cpu_backend(GetParam());
  uint32_t seed = 1;
  for (const Pool2dDesc& d : kShapes) {
    SCOPED_TRACE(testing::Message() << d.batch << "x" << d.channels << "x" << d.in_h << "x" << d.in_w);
    const std::vector<float> x = random_vec(d.batch * d.channels * d.in_h * d.in_w, ++seed);
    const std::vector<float> dy = random_vec(d.batch * d.channels * d.out_h() * d.out_w(), ++seed);
    std::vector<double> y_ref, dx_ref;
    naive_pool(d, x, dy, y_ref, dx_ref);
    std::vector<float> y(dy.size());
    // NaN garbage in dx: every element, odd trailing rows/columns included, must be written.
    std::vector<float> dx(x.size(), std::numeric_limits<float>::quiet_NaN());
    be->maxpool2x2_forward(d, x.data(), y.data());
    be->maxpool2x2_backward(d, x.data(), y.data(), dy.data(), dx.data());
    EXPECT_TRUE(test::all_close(y, y_ref, 0.0));
    EXPECT_TRUE(test::all_close(dx, dx_ref, 0.0));
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, PoolVsNaive, testing::Values(1, 2));

TEST(MaxPoolTies, GradientGoesToFirstMaximumRowMajor) {
  auto be = make_cpu_backend(1);
  const Pool2dDesc d{1, 1, 2, 4};
  // Window 0: all equal -> top-left. Window 1: max 5 at top-right and bottom-left -> top-right.
  const std::vector<float> x = {1, 1, 0, 5, 1, 1, 5, 2};
  std::vector<float> y(2), dx(8);
  const std::vector<float> dy = {3, 4};
  be->maxpool2x2_forward(d, x.data(), y.data());
  be->maxpool2x2_backward(d, x.data(), y.data(), dy.data(), dx.data());
  EXPECT_EQ(y, (std::vector<float>{1, 5}));
  EXPECT_EQ(dx, (std::vector<float>{3, 0, 0, 4, 0, 0, 0, 0}));
}

TEST(MaxPoolGrad, FiniteDifferences) {
  auto be = make_cpu_backend(2);
  for (const Pool2dDesc& d : {Pool2dDesc{2, 3, 5, 7}, Pool2dDesc{1, 2, 4, 6}}) {
    std::vector<float> x = spaced_values(d.batch * d.channels * d.in_h * d.in_w, 3);
    const size_t ny = d.batch * d.channels * d.out_h() * d.out_w();
    const std::vector<float> r = random_vec(ny, 4);
    std::vector<float> y(ny), dx(x.size());
    auto loss = [&] {
      be->maxpool2x2_forward(d, x.data(), y.data());
      return test::project(r, y);
    };
    loss();
    be->maxpool2x2_backward(d, x.data(), y.data(), r.data(), dx.data());
    EXPECT_TRUE(test::grads_match(dx, test::numeric_grad(x, 0.002f, loss), 1e-3));
  }
}

TEST(MaxPoolErrors, TooSmallInputThrowsShapeError) {
  auto be = make_cpu_backend(1);
  std::vector<float> buf(16);
  try {
    be->maxpool2x2_forward(Pool2dDesc{1, 1, 1, 4}, buf.data(), buf.data());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Shape);
  }
}

}  // namespace
}  // namespace strand
