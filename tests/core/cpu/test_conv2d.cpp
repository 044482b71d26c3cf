#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/cpu/conv2d_winograd.hpp>
#include <strand/core/error.hpp>
#include "tests/core/kernel_test_util.hpp"

namespace strand {
namespace {

using test::all_close;
using test::grads_match;
using test::numeric_grad;
using test::project;
using test::random_vec;

struct ConvRef {
  std::vector<double> y, dx, dw, db;
  // Sum of |term| behind each element of y, dx and dw: the scale float rounding errors grow with.
  std::vector<double> y_scale, dx_scale, dw_scale;
};

// Direct 7-loop convolution in double, straight from the definition.
ConvRef naive_conv(const Conv2dDesc& d, const std::vector<float>& x, const std::vector<float>& w,
                   const std::vector<float>& b, const std::vector<float>& dy) {
  const int64_t oh = d.out_h(), ow = d.out_w();
  ConvRef r;
  r.y.assign(d.batch * d.out_c * oh * ow, 0.0);
  r.y_scale.assign(r.y.size(), 0.0);
  r.dx.assign(x.size(), 0.0);
  r.dx_scale.assign(x.size(), 0.0);
  r.dw.assign(w.size(), 0.0);
  r.dw_scale.assign(w.size(), 0.0);
  r.db.assign(b.size(), 0.0);
  for (int64_t n = 0; n < d.batch; ++n)
    for (int64_t o = 0; o < d.out_c; ++o)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          const int64_t yi = ((n * d.out_c + o) * oh + oy) * ow + ox;
          double s = b[o], scale = std::abs(b[o]);
          r.db[o] += dy[yi];
          for (int64_t c = 0; c < d.in_c; ++c)
            for (int64_t i = 0; i < d.kernel_h; ++i)
              for (int64_t j = 0; j < d.kernel_w; ++j) {
                const int64_t iy = oy * d.stride_h + i - d.pad_h, ix = ox * d.stride_w + j - d.pad_w;
                if (iy < 0 || iy >= d.in_h || ix < 0 || ix >= d.in_w) continue;
                const int64_t xi = ((n * d.in_c + c) * d.in_h + iy) * d.in_w + ix;
                const int64_t wi = ((o * d.in_c + c) * d.kernel_h + i) * d.kernel_w + j;
                s += static_cast<double>(w[wi]) * x[xi];
                scale += std::abs(static_cast<double>(w[wi]) * x[xi]);
                r.dx[xi] += static_cast<double>(w[wi]) * dy[yi];
                r.dx_scale[xi] += std::abs(static_cast<double>(w[wi]) * dy[yi]);
                r.dw[wi] += static_cast<double>(x[xi]) * dy[yi];
                r.dw_scale[wi] += std::abs(static_cast<double>(x[xi]) * dy[yi]);
              }
          r.y[yi] = s;
          r.y_scale[yi] = scale;
        }
  return r;
}

// |got - want| <= tol * (1 + scale) elementwise: an error relative to the magnitude of the
// terms summed, which is what bounds rounding (the result itself may cancel to near zero).
testing::AssertionResult close_to_scale(const std::vector<float>& got, const std::vector<double>& want,
                                        const std::vector<double>& scale, double tol) {
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::abs(got[i] - want[i]) <= tol * (1.0 + scale[i]))) {
      return testing::AssertionFailure() << "element " << i << ": got " << got[i] << " want " << want[i]
                                         << " (terms' magnitude " << scale[i] << ")";
    }
  }
  return testing::AssertionSuccess();
}

struct Sizes {
  std::vector<float> x, w, b, y;
};

Sizes make_data(const Conv2dDesc& d, uint32_t seed) {
  Sizes s;
  s.x = random_vec(d.batch * d.in_c * d.in_h * d.in_w, seed);
  s.w = random_vec(d.out_c * d.in_c * d.kernel_h * d.kernel_w, seed + 1);
  s.b = random_vec(d.out_c, seed + 2);
  s.y.assign(d.batch * d.out_c * d.out_h() * d.out_w(), 0.0f);
  return s;
}

Conv2dDesc desc(int64_t batch, int64_t in_c, int64_t h, int64_t w, int64_t out_c, int64_t kh, int64_t kw,
                int64_t ph, int64_t pw, int64_t sh = 1, int64_t sw = 1) {
  return Conv2dDesc{batch, in_c, h, w, out_c, kh, kw, ph, pw, sh, sw};
}

// 'same' (pad = (k-1)/2), 'valid' (pad 0), rectangular, even kernels, 1x1, a kernel larger
// than the image (a 1-wide image, where some kernel columns only see padding), 1 and several
// channels, batch 1 and > 1 (5 splits unevenly over 2 and 3). The 5x5 and 3x3 shapes with 8 or
// more channels take the Winograd path (see WinogradPath below): output sizes that are not
// multiples of the tile (partial edge tiles: 2x2 for 5x5, 4x4 for 3x3), channel counts that are
// not multiples of the vector width, padding 0 to kernel - 1 (the input gradient then pads by
// kernel - 1 to 0), several images per tile block. Then the models' convolutions at batch 2
// (models/op_cases.hpp).
const std::vector<Conv2dDesc> kShapes = test::joined<Conv2dDesc>(
    {
        desc(1, 1, 7, 7, 2, 5, 5, 2, 2),
        desc(3, 3, 6, 9, 4, 3, 5, 1, 2),
        desc(2, 2, 8, 7, 3, 3, 3, 0, 0),
        desc(5, 3, 5, 4, 2, 2, 3, 0, 1),
        desc(2, 1, 2, 3, 2, 5, 5, 2, 2),
        desc(4, 2, 9, 9, 3, 1, 1, 0, 0),
        desc(3, 4, 14, 14, 8, 5, 5, 2, 2),
        desc(5, 32, 7, 7, 16, 5, 5, 2, 2),
        desc(2, 2, 3, 1, 3, 3, 5, 1, 2),
        desc(1, 8, 5, 5, 8, 5, 5, 2, 2),
        desc(3, 9, 11, 8, 11, 5, 5, 0, 1),
        desc(2, 16, 6, 7, 8, 5, 5, 4, 3),
        desc(7, 8, 12, 13, 17, 5, 5, 1, 2),
        desc(1, 8, 3, 3, 8, 3, 3, 1, 1),
        desc(3, 9, 10, 7, 11, 3, 3, 0, 1),
        desc(2, 16, 6, 9, 8, 3, 3, 2, 1),
        desc(7, 24, 14, 14, 19, 3, 3, 1, 1),
        // Strides: equal and unequal, a stride the input does not divide (floor), a stride
        // larger than the kernel (some pixels never read), and a 5x5 over 8+ channels (not Winograd).
        desc(2, 3, 9, 9, 4, 3, 3, 1, 1, 2, 2),
        desc(3, 2, 10, 7, 3, 3, 2, 0, 1, 1, 3),
        desc(2, 1, 8, 8, 2, 2, 2, 0, 0, 3, 3),
        desc(2, 8, 11, 12, 8, 5, 5, 2, 2, 2, 2),
    },
    test::model_convs({2}));

class ConvVsNaive : public testing::TestWithParam<int> {};

TEST_P(ConvVsNaive, ForwardAndBackwardMatchReference) {
  const int threads = GetParam();
  auto be = make_cpu_backend(threads);  // one backend for all shapes: workspace is reused
  uint32_t seed = 100;
  for (const Conv2dDesc& d : kShapes) {
    SCOPED_TRACE(testing::Message() << "shape " << d.batch << "," << d.in_c << "," << d.in_h << "x" << d.in_w
                                    << " -> " << d.out_c << " k" << d.kernel_h << "x" << d.kernel_w << " p"
                                    << d.pad_h << "x" << d.pad_w << " s" << d.stride_h << "x" << d.stride_w);
    Sizes s = make_data(d, seed += 10);
    const std::vector<float> dy = random_vec(s.y.size(), seed + 5);
    const ConvRef ref = naive_conv(d, s.x, s.w, s.b, dy);

    // Garbage in the outputs must be overwritten, not accumulated into.
    std::fill(s.y.begin(), s.y.end(), 7.0f);
    be->conv2d_forward(d, s.x.data(), s.w.data(), s.b.data(), s.y.data());
    // Winograd's transforms scale terms by up to ~25 before summing them, so its rounding error
    // is ~1e-6 of the terms' magnitude where im2col's is ~1e-7; a wrong transform is off by O(1).
    EXPECT_TRUE(close_to_scale(s.y, ref.y, ref.y_scale, 5e-6));

    std::vector<float> dx(s.x.size(), 7.0f), dw(s.w.size(), 7.0f), db(s.b.size(), 7.0f);
    be->conv2d_backward(d, s.x.data(), s.w.data(), dy.data(), dx.data(), dw.data(), db.data());
    EXPECT_TRUE(close_to_scale(dx, ref.dx, ref.dx_scale, 5e-6));
    EXPECT_TRUE(close_to_scale(dw, ref.dw, ref.dw_scale, 1e-6));
    EXPECT_TRUE(all_close(db, ref.db, 1e-5));

    // dx == null (first layer) still produces dw and db.
    std::fill(dw.begin(), dw.end(), 7.0f);
    std::fill(db.begin(), db.end(), 7.0f);
    be->conv2d_backward(d, s.x.data(), s.w.data(), dy.data(), nullptr, dw.data(), db.data());
    EXPECT_TRUE(close_to_scale(dw, ref.dw, ref.dw_scale, 1e-6));
    EXPECT_TRUE(all_close(db, ref.db, 1e-5));
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, ConvVsNaive, testing::Values(1, 2, 3));

// Central differences of L = sum(r * conv(x, w, b)) against conv2d_backward with dy = r.
// conv is linear in each argument, so a large step is exact up to float rounding.
TEST(Conv2dGrad, FiniteDifferences) {
  auto be = make_cpu_backend(2);
  for (const Conv2dDesc& d :
       {desc(2, 2, 5, 6, 3, 3, 3, 1, 1), desc(3, 1, 4, 5, 2, 2, 3, 0, 1), desc(1, 3, 3, 3, 2, 5, 5, 2, 2),
        desc(2, 2, 3, 1, 3, 3, 5, 1, 2), desc(2, 8, 4, 5, 8, 5, 5, 2, 2),  // the last two: Winograd
        desc(2, 8, 5, 6, 8, 3, 3, 1, 0)}) {
    Sizes s = make_data(d, 7);
    const std::vector<float> r = random_vec(s.y.size(), 8);
    auto loss = [&] {
      be->conv2d_forward(d, s.x.data(), s.w.data(), s.b.data(), s.y.data());
      return project(r, s.y);
    };
    std::vector<float> dx(s.x.size()), dw(s.w.size()), db(s.b.size());
    be->conv2d_backward(d, s.x.data(), s.w.data(), r.data(), dx.data(), dw.data(), db.data());
    EXPECT_TRUE(grads_match(dx, numeric_grad(s.x, 0.1f, loss), 1e-3)) << "dx";
    EXPECT_TRUE(grads_match(dw, numeric_grad(s.w, 0.1f, loss), 1e-3)) << "dw";
    EXPECT_TRUE(grads_match(db, numeric_grad(s.b, 0.1f, loss), 1e-3)) << "db";
  }
}

TEST(Conv2dDeterminism, RepeatedBackwardIsBitIdentical) {
  const Conv2dDesc d = desc(7, 8, 14, 14, 16, 5, 5, 2, 2);
  Sizes s = make_data(d, 21);
  const std::vector<float> dy = random_vec(s.y.size(), 22);
  auto be = make_cpu_backend(2);
  std::vector<float> dx1(s.x.size()), dw1(s.w.size()), db1(s.b.size());
  std::vector<float> dx2(s.x.size()), dw2(s.w.size()), db2(s.b.size());
  be->conv2d_backward(d, s.x.data(), s.w.data(), dy.data(), dx1.data(), dw1.data(), db1.data());
  be->conv2d_backward(d, s.x.data(), s.w.data(), dy.data(), dx2.data(), dw2.data(), db2.data());
  EXPECT_TRUE(test::same_bits(dx1, dx2));
  EXPECT_TRUE(test::same_bits(dw1, dw2));
  EXPECT_TRUE(test::same_bits(db1, db2));
}

// Forward and dx are computed image by image, so they do not depend on the thread count
// (im2col and Winograd paths alike).
class Conv2dThreads : public testing::TestWithParam<Conv2dDesc> {};

TEST_P(Conv2dThreads, ForwardAndDxIndependentOfThreads) {
  const Conv2dDesc d = GetParam();
  Sizes s = make_data(d, 31);
  const std::vector<float> dy = random_vec(s.y.size(), 32);
  std::vector<float> y1(s.y.size()), y2(s.y.size()), dx1(s.x.size()), dx2(s.x.size());
  std::vector<float> dw(s.w.size()), db(s.b.size());
  auto one = make_cpu_backend(1), two = make_cpu_backend(2);
  one->conv2d_forward(d, s.x.data(), s.w.data(), s.b.data(), y1.data());
  two->conv2d_forward(d, s.x.data(), s.w.data(), s.b.data(), y2.data());
  one->conv2d_backward(d, s.x.data(), s.w.data(), dy.data(), dx1.data(), dw.data(), db.data());
  two->conv2d_backward(d, s.x.data(), s.w.data(), dy.data(), dx2.data(), dw.data(), db.data());
  EXPECT_TRUE(test::same_bits(y1, y2));
  EXPECT_TRUE(test::same_bits(dx1, dx2));
}

INSTANTIATE_TEST_SUITE_P(Shapes, Conv2dThreads,
                         testing::Values(desc(5, 4, 9, 11, 6, 3, 3, 1, 1), desc(5, 16, 9, 11, 8, 5, 5, 2, 2),
                                         desc(5, 16, 9, 11, 8, 3, 3, 1, 1)));

// The built-in models' convolutions take the fast path exactly where it applies: stride 1, 3x3
// or 5x5, 8 or more channels each side. A change to winograd_applies() that silently drops one
// back to im2col, or sends a first layer on few channels through Winograd, fails here.
TEST(WinogradPath, TakenForTheModelsConvolutionsThatFit) {
  auto conv = [](const std::string& model, const std::string& op) {
    return models::op_named(models::op_cases(models::by_name(model), 100), op).conv;
  };
  EXPECT_TRUE(cpu::winograd_applies(conv("mnist_cnn", "conv2")));   // 5x5, 32 -> 64
  EXPECT_FALSE(cpu::winograd_applies(conv("mnist_cnn", "conv1")));  // one input channel
  EXPECT_TRUE(cpu::winograd_applies(conv("mnist_bn", "conv2")));    // 3x3, 24 -> 48
  EXPECT_FALSE(cpu::winograd_applies(conv("mnist_bn", "conv1")));
  EXPECT_FALSE(cpu::winograd_applies(conv("cifar_cnn", "conv1")));  // three input channels
  EXPECT_FALSE(cpu::winograd_applies(conv("cifar_cnn", "conv2")));  // stride 2
  EXPECT_TRUE(cpu::winograd_applies(conv("cifar_cnn", "conv3")));
  EXPECT_TRUE(cpu::winograd_applies(conv("cifar_cnn", "conv4")));
  Conv2dDesc conv2_7x7 = conv("mnist_cnn", "conv2");  // no other kernel sizes
  conv2_7x7.kernel_h = conv2_7x7.kernel_w = 7;
  conv2_7x7.pad_h = conv2_7x7.pad_w = 3;
  EXPECT_FALSE(cpu::winograd_applies(conv2_7x7));
  EXPECT_FALSE(cpu::winograd_applies(desc(2, 8, 11, 12, 8, 3, 5, 1, 2)));  // not square
}

TEST(WinogradPath, NeverTakenForStridesOrPaddingFromTheKernelSizeUp) {
  EXPECT_FALSE(cpu::winograd_applies(desc(2, 8, 11, 12, 8, 5, 5, 2, 2, 2, 2)));
  EXPECT_FALSE(cpu::winograd_applies(desc(2, 8, 11, 12, 8, 5, 5, 2, 2, 1, 2)));
  EXPECT_FALSE(cpu::winograd_applies(desc(2, 8, 11, 12, 8, 3, 3, 1, 1, 2, 2)));
  EXPECT_TRUE(cpu::winograd_applies(desc(2, 8, 11, 12, 8, 5, 5, 2, 2)));
  EXPECT_TRUE(cpu::winograd_applies(desc(2, 8, 11, 12, 8, 3, 3, 2, 2)));
  EXPECT_FALSE(cpu::winograd_applies(desc(2, 8, 11, 12, 8, 3, 3, 3, 2)));
  EXPECT_FALSE(cpu::winograd_applies(desc(2, 8, 11, 12, 8, 5, 5, 2, 5)));
}

// A null bias (a convolution before batchnorm) is a zero bias, on every path, and leaves the
// bias gradient unwritten.
TEST(Conv2dNoBias, NullBiasIsZeroBias) {
  auto be = make_cpu_backend(2);
  for (const Conv2dDesc& d : {desc(2, 3, 9, 9, 4, 3, 3, 1, 1, 2, 2), desc(2, 8, 9, 9, 8, 5, 5, 2, 2)}) {
    Sizes s = make_data(d, 7);
    const std::vector<float> zero(size_t(d.out_c), 0.0f);
    std::vector<float> with(s.y.size()), without(s.y.size());
    be->conv2d_forward(d, s.x.data(), s.w.data(), zero.data(), with.data());
    be->conv2d_forward(d, s.x.data(), s.w.data(), nullptr, without.data());
    EXPECT_EQ(with, without);
    be->conv2d_relu_forward(d, s.x.data(), s.w.data(), nullptr, without.data());
    for (float& v : with) v = std::max(v, 0.0f);
    EXPECT_EQ(with, without);
    const std::vector<float> dy = random_vec(s.y.size(), 9);
    std::vector<float> dx(s.x.size()), dw(s.w.size()), dw0(s.w.size()), db(zero.size());
    be->conv2d_backward(d, s.x.data(), s.w.data(), dy.data(), dx.data(), dw.data(), nullptr);
    be->conv2d_backward(d, s.x.data(), s.w.data(), dy.data(), nullptr, dw0.data(), db.data());
    EXPECT_EQ(dw, dw0);
  }
}

TEST(Conv2dErrors, BadShapesThrowShapeErrors) {
  auto be = make_cpu_backend(1);
  std::vector<float> buf(4096);
  auto expect_shape_error = [&](const Conv2dDesc& d) {
    try {
      be->conv2d_forward(d, buf.data(), buf.data(), buf.data(), buf.data());
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Shape);
      EXPECT_NE(std::string(e.what()).find("conv2d"), std::string::npos) << e.what();
    }
  };
  expect_shape_error(desc(1, 1, 3, 3, 1, 5, 5, 0, 0));        // kernel larger than the input
  expect_shape_error(desc(0, 1, 8, 8, 1, 3, 3, 1, 1));        // empty batch
  expect_shape_error(desc(1, 1, 8, 8, 1, 3, 3, -1, 1));       // negative padding
  expect_shape_error(desc(1, 1, 8, 8, 1, 3, 3, 1, 1, 0, 1));  // zero stride
  expect_shape_error(desc(1, 1, 2, 8, 1, 3, 3, 0, 1, 2, 1));  // kernel taller than the input
}

}  // namespace
}  // namespace strand
