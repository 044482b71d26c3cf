// The CPU's general pooling and batchnorm kernels against naive double-precision references
// and central differences; the CUDA tests compare the GPU against these kernels.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/error.hpp>
#include "tests/core/kernel_test_util.hpp"

namespace strand {
namespace {

using test::all_close;
using test::random_vec;

std::vector<PoolDesc> pool_shapes() {
  return {
      {2, 3, 9, 9, 3, 3, 2, 2},    // overlapping windows
      {1, 2, 8, 6, 2, 3, 2, 3},    // rectangular, stride = kernel
      {2, 1, 7, 7, 3, 3, 1, 1},    // stride 1, heavy overlap
      {3, 4, 5, 6, 5, 6, 1, 1},    // one window: global pooling
      {1, 2, 10, 10, 2, 2, 3, 3},  // stride beyond the window: uncovered pixels
  };
}

// y and dx of a pool, from definitions.
void naive_pool(PoolKind kind, const PoolDesc& d, const std::vector<float>& x, const std::vector<float>& dy,
                std::vector<double>& y, std::vector<double>& dx) {
  const int64_t oh = d.out_h(), ow = d.out_w(), k = d.kernel_h * d.kernel_w;
  y.assign(size_t(d.batch * d.channels * oh * ow), 0.0);
  dx.assign(x.size(), 0.0);
  for (int64_t p = 0; p < d.batch * d.channels; ++p)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        const int64_t yi = (p * oh + oy) * ow + ox;
        int64_t best = -1;
        double sum = 0;
        for (int64_t i = 0; i < d.kernel_h; ++i)
          for (int64_t j = 0; j < d.kernel_w; ++j) {
            const int64_t xi = (p * d.in_h + oy * d.stride_h + i) * d.in_w + ox * d.stride_w + j;
            sum += x[size_t(xi)];
            if (best < 0 || x[size_t(xi)] > x[size_t(best)]) best = xi;
          }
        if (kind == PoolKind::Max) {
          y[size_t(yi)] = x[size_t(best)];
          dx[size_t(best)] += dy[size_t(yi)];
        } else {
          y[size_t(yi)] = sum / double(k);
          for (int64_t i = 0; i < d.kernel_h; ++i)
            for (int64_t j = 0; j < d.kernel_w; ++j)
              dx[size_t((p * d.in_h + oy * d.stride_h + i) * d.in_w + ox * d.stride_w + j)] +=
                  dy[size_t(yi)] / double(k);
        }
      }
}

TEST(Pool, MaxAndAverageMatchTheDefinition) {
  for (int threads : {1, 2, 3}) {
    auto be = make_cpu_backend(threads);
    uint32_t seed = 1;
    for (const PoolDesc& d : pool_shapes())
      for (PoolKind kind : {PoolKind::Max, PoolKind::Avg}) {
        SCOPED_TRACE(testing::Message() << "kind " << int(kind) << " in " << d.in_h << "x" << d.in_w << " k "
                                        << d.kernel_h << "x" << d.kernel_w << " s " << d.stride_h << "x"
                                        << d.stride_w << " threads " << threads);
        // Small integers: ties, where max pooling must pick each window's first maximum.
        const std::vector<float> x = test::tie_vec(size_t(d.batch * d.channels * d.in_h * d.in_w), seed++);
        const std::vector<float> dy =
            random_vec(size_t(d.batch * d.channels * d.out_h() * d.out_w()), seed++);
        std::vector<float> y(dy.size()), dx(x.size(), 7.0f);  // dx starts dirty: the kernel writes all of it
        be->pool_forward(kind, d, x.data(), y.data());
        be->pool_backward(kind, d, x.data(), dy.data(), dx.data());
        std::vector<double> ry, rdx;
        naive_pool(kind, d, x, dy, ry, rdx);
        EXPECT_TRUE(all_close(y, ry, 1e-6));
        EXPECT_TRUE(all_close(dx, rdx, 1e-5));
      }
  }
}

TEST(Pool, GradientsMatchFiniteDifferences) {
  auto be = make_cpu_backend(1);
  for (const PoolDesc& d : pool_shapes())
    for (PoolKind kind : {PoolKind::Max, PoolKind::Avg}) {
      // Distinct, well separated values: no maximum changes under the step.
      std::vector<float> x(size_t(d.batch * d.channels * d.in_h * d.in_w));
      for (size_t i = 0; i < x.size(); ++i) x[i] = float((i * 7919) % x.size()) * 0.05f;
      const std::vector<float> r = random_vec(size_t(d.batch * d.channels * d.out_h() * d.out_w()), 5);
      std::vector<float> y(r.size()), dx(x.size());
      be->pool_backward(kind, d, x.data(), r.data(), dx.data());
      const std::vector<double> fd = test::numeric_grad(x, 1e-2f, [&] {
        be->pool_forward(kind, d, x.data(), y.data());
        return test::project(r, y);
      });
      EXPECT_TRUE(test::grads_match(dx, fd, 5e-3)) << "kind " << int(kind) << " k " << d.kernel_h;
    }
}

TEST(Pool, BadShapesAreShapeErrors) {
  auto be = make_cpu_backend(1);
  std::vector<float> buf(256);
  EXPECT_THROW(be->pool_forward(PoolKind::Max, PoolDesc{1, 1, 2, 8, 3, 3, 1, 1}, buf.data(), buf.data()),
               Error);
  EXPECT_THROW(be->pool_forward(PoolKind::Avg, PoolDesc{1, 1, 8, 8, 2, 2, 0, 1}, buf.data(), buf.data()),
               Error);
}

std::vector<BatchNormDesc> bn_shapes() {
  return {
      {4, 3, 25, 1e-3f, 0.9f}, {5, 7, 1, 1e-5f, 0.99f}, {1, 2, 9, 1e-3f, 0.5f}, {3, 64, 49, 1e-3f, 0.99f}};
}

TEST(BatchNorm, TrainingMatchesTheDefinition) {
  for (int threads : {1, 2}) {
    auto be = make_cpu_backend(threads);
    for (const BatchNormDesc& d : bn_shapes()) {
      const int64_t C = d.channels, S = d.spatial, M = d.batch * S, n = d.batch * C * S;
      const std::vector<float> x = random_vec(size_t(n), 3, -2.0f, 3.0f);
      const std::vector<float> gb = random_vec(size_t(2 * C), 4);
      const std::vector<float> running = random_vec(size_t(2 * C), 6, 0.5f, 2.0f);
      std::vector<float> y(static_cast<size_t>(n)), saved(size_t(2 * C)), delta(size_t(2 * C));
      be->batchnorm_forward_train(d, x.data(), gb.data(), running.data(), y.data(), saved.data(),
                                  delta.data());
      std::vector<double> ry(static_cast<size_t>(n)), rsaved(size_t(2 * C)), rdelta(size_t(2 * C));
      for (int64_t c = 0; c < C; ++c) {
        double mean = 0, var = 0;
        for (int64_t b = 0; b < d.batch; ++b)
          for (int64_t s = 0; s < S; ++s) mean += x[size_t((b * C + c) * S + s)];
        mean /= double(M);
        for (int64_t b = 0; b < d.batch; ++b)
          for (int64_t s = 0; s < S; ++s) var += std::pow(x[size_t((b * C + c) * S + s)] - mean, 2);
        var /= double(M);
        const double istd = 1 / std::sqrt(var + d.eps);
        for (int64_t b = 0; b < d.batch; ++b)
          for (int64_t s = 0; s < S; ++s) {
            const size_t i = size_t((b * C + c) * S + s);
            ry[i] = gb[size_t(c)] * (x[i] - mean) * istd + gb[size_t(C + c)];
          }
        rsaved[size_t(c)] = mean;
        rsaved[size_t(C + c)] = istd;
        const double unbiased = M > 1 ? var * double(M) / double(M - 1) : var;
        rdelta[size_t(c)] = (1 - d.momentum) * (running[size_t(c)] - mean);
        rdelta[size_t(C + c)] = (1 - d.momentum) * (running[size_t(C + c)] - unbiased);
      }
      EXPECT_TRUE(all_close(y, ry, 1e-5));
      EXPECT_TRUE(all_close(saved, rsaved, 1e-5));
      EXPECT_TRUE(all_close(delta, rdelta, 1e-5));
      // Inference with the running statistics: an affine map per channel.
      be->batchnorm_forward_infer(d, x.data(), gb.data(), running.data(), y.data());
      for (int64_t i = 0; i < n; ++i) {
        const int64_t c = (i / S) % C;
        ry[size_t(i)] = gb[size_t(c)] * (x[size_t(i)] - running[size_t(c)]) /
                            std::sqrt(double(running[size_t(C + c)]) + d.eps) +
                        gb[size_t(C + c)];
      }
      EXPECT_TRUE(all_close(y, ry, 1e-5));
    }
  }
}

TEST(BatchNorm, GradientsMatchFiniteDifferences) {
  auto be = make_cpu_backend(1);
  for (const BatchNormDesc& d : {BatchNormDesc{4, 3, 6, 1e-3f, 0.9f}, BatchNormDesc{5, 4, 1, 1e-3f, 0.9f}}) {
    const int64_t C = d.channels, n = d.batch * C * d.spatial;
    std::vector<float> x = random_vec(size_t(n), 8, -1.0f, 2.0f);
    std::vector<float> gb = random_vec(size_t(2 * C), 9);
    const std::vector<float> running(size_t(2 * C), 1.0f), r = random_vec(size_t(n), 10);
    std::vector<float> y(static_cast<size_t>(n)), saved(size_t(2 * C)), delta(size_t(2 * C)),
        dx(static_cast<size_t>(n)), dgb(size_t(2 * C));
    auto loss = [&] {
      be->batchnorm_forward_train(d, x.data(), gb.data(), running.data(), y.data(), saved.data(),
                                  delta.data());
      return test::project(r, y);
    };
    loss();
    be->batchnorm_backward(d, x.data(), gb.data(), saved.data(), r.data(), dx.data(), dgb.data());
    EXPECT_TRUE(test::grads_match(dx, test::numeric_grad(x, 1e-2f, loss), 2e-3));
    EXPECT_TRUE(test::grads_match(dgb, test::numeric_grad(gb, 1e-2f, loss), 2e-3));
  }
}

// Inference mode: the running statistics are constants, so the layer is affine per channel.
TEST(BatchNorm, InferenceGradientsMatchFiniteDifferences) {
  auto be = make_cpu_backend(1);
  for (const BatchNormDesc& d : {BatchNormDesc{4, 3, 6, 1e-3f, 0.9f}, BatchNormDesc{5, 4, 1, 1e-3f, 0.9f}}) {
    const int64_t C = d.channels, n = d.batch * C * d.spatial;
    std::vector<float> x = random_vec(size_t(n), 8, -1.0f, 2.0f);
    std::vector<float> gb = random_vec(size_t(2 * C), 9);
    std::vector<float> running = random_vec(size_t(2 * C), 11, -0.5f, 0.5f);
    for (int64_t c = 0; c < C; ++c) running[size_t(C + c)] += 1.0f;  // variances 0.5..1.5
    const std::vector<float> r = random_vec(size_t(n), 10);
    std::vector<float> y(static_cast<size_t>(n)), dx(static_cast<size_t>(n)), dgb(size_t(2 * C));
    auto loss = [&] {
      be->batchnorm_forward_infer(d, x.data(), gb.data(), running.data(), y.data());
      return test::project(r, y);
    };
    be->batchnorm_backward_infer(d, x.data(), gb.data(), running.data(), r.data(), dx.data(), dgb.data());
    EXPECT_TRUE(test::grads_match(dx, test::numeric_grad(x, 1e-2f, loss), 2e-3));
    EXPECT_TRUE(test::grads_match(dgb, test::numeric_grad(gb, 1e-2f, loss), 2e-3));
  }
}

TEST(BatchNorm, BadSettingsAreErrors) {
  auto be = make_cpu_backend(1);
  std::vector<float> buf(64);
  EXPECT_THROW(
      be->batchnorm_forward_infer({2, 2, 2, 0.0f, 0.9f}, buf.data(), buf.data(), buf.data(), buf.data()),
      Error);
  EXPECT_THROW(
      be->batchnorm_forward_infer({2, 2, 2, 1e-3f, 1.0f}, buf.data(), buf.data(), buf.data(), buf.data()),
      Error);
  EXPECT_THROW(
      be->batchnorm_forward_infer({0, 2, 2, 1e-3f, 0.9f}, buf.data(), buf.data(), buf.data(), buf.data()),
      Error);
}

}  // namespace
}  // namespace strand
