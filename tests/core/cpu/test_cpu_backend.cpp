// CpuBackend memory and construction, and a self-check of the gradient checker itself.
#include <gtest/gtest.h>

#include <cstdint>
#include <utility>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/cpu/cpu_backend.hpp>
#include <strand/core/error.hpp>
#include "tests/core/kernel_test_util.hpp"

namespace strand {
namespace {

TEST(CpuBackend, RejectsFewerThanOneThread) {
  for (int bad : {0, -3}) {
    try {
      make_cpu_backend(bad);
      ADD_FAILURE() << "threads " << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
    }
  }
  EXPECT_EQ(make_cpu_backend(2)->name(), "cpu");
  EXPECT_EQ(cpu::CpuBackend(3).threads(), 3);
}

TEST(CpuBackend, AllocIsAlignedAndZeroed) {
  auto be = make_cpu_backend(2);
  for (size_t bytes : {size_t{4}, size_t{100}, size_t{1} << 20}) {
    Buffer buf = be->alloc(bytes);
    ASSERT_NE(buf.data(), nullptr);
    EXPECT_EQ(buf.bytes(), bytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(buf.data()) % 64, 0u);
    const auto* p = static_cast<const unsigned char*>(buf.data());
    for (size_t i = 0; i < bytes; ++i) ASSERT_EQ(p[i], 0) << i;
  }
  EXPECT_EQ(be->alloc(0).bytes(), 0u);
}

TEST(CpuBackend, Copies) {
  auto be = make_cpu_backend(2);
  const int64_t n = 70001;
  Buffer buf = be->alloc(n * sizeof(float));
  std::vector<float> host(n);
  const std::vector<float> src = test::random_vec(n, 1);
  be->to_device(buf.data(), src.data(), n * sizeof(float));
  be->to_host(host.data(), buf.data(), n * sizeof(float));
  EXPECT_TRUE(test::same_bits(host, src));
}

TEST(CpuBackend, GatherCopiesTheNamedRows) {
  auto be = make_cpu_backend(2);
  const int64_t n = 50, sample = 7;
  const std::vector<float> images = test::random_vec(n * sample, 5);
  std::vector<int32_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[size_t(i)] = int32_t(i % 10);
  const std::vector<int64_t> idx{49, 0, 17, 17, 3};
  std::vector<float> x(idx.size() * sample, -1.0f);
  std::vector<int32_t> y(idx.size(), -1);
  be->gather({.batch = int64_t(idx.size()), .width = sample}, idx.data(), images.data(), labels.data(),
             x.data(), y.data());
  for (size_t i = 0; i < idx.size(); ++i) {
    EXPECT_EQ(y[i], labels[size_t(idx[i])]);
    for (int64_t k = 0; k < sample; ++k)
      EXPECT_EQ(x[i * sample + size_t(k)], images[size_t(idx[i] * sample + k)]);
  }
  Buffer storage;
  EXPECT_EQ(be->device_view(images.data(), images.size() * sizeof(float), storage), images.data());
  EXPECT_EQ(storage.bytes(), 0u);  // the CPU reads host memory where it is
}

TEST(CpuBackend, AccumulatedLossEqualsTheSynchronousOne) {
  auto be = make_cpu_backend(2);
  const int64_t batch = 6, classes = 4;
  const std::vector<float> logits = test::random_vec(batch * classes, 8, -3.0f, 3.0f);
  const std::vector<int32_t> labels{0, 1, 2, 3, 3, 1};
  std::vector<float> g1(logits.size()), g2(logits.size());
  const LossResult once = be->softmax_xent(batch, classes, logits.data(), labels.data(), g1.data());
  EXPECT_EQ(be->take_loss_totals().examples, 0);  // the synchronous form leaves the totals alone
  be->softmax_xent_accumulate(batch, classes, logits.data(), labels.data(), g2.data());
  be->softmax_xent_accumulate(batch, classes, logits.data(), labels.data(), g2.data());
  EXPECT_TRUE(test::same_bits(g1, g2));
  const LossTotals t = be->take_loss_totals();
  EXPECT_EQ(t.examples, 2 * batch);
  EXPECT_EQ(t.correct, 2 * once.correct);
  EXPECT_NEAR(t.loss_sum, 2 * batch * once.loss, 1e-9);
  EXPECT_EQ(be->take_loss_totals().examples, 0);  // taking starts new totals
}

// The checker the gradient tests rely on must reject slightly wrong gradients.
// The fused forms the model uses give exactly what the two calls they replace give.
TEST(CpuBackend, FusedReluFormsEqualTheTwoCalls) {
  auto be = make_cpu_backend(2);
  auto fill = [](std::vector<float>& v, uint32_t seed) {
    uint32_t s = seed;
    for (float& f : v) f = float(int((s = s * 1664525u + 1013904223u) >> 29)) - 3.5f;  // ties, zeros
  };
  // im2col (one input channel) and Winograd (5x5, >= 8 channels) paths.
  for (const Conv2dDesc& d : {Conv2dDesc{3, 1, 9, 8, 4, 5, 5, 2, 2}, Conv2dDesc{2, 8, 7, 6, 9, 5, 5, 2, 2}}) {
    std::vector<float> x(size_t(d.batch * d.in_c * d.in_h * d.in_w)), w(size_t(d.out_c * d.in_c * 25)),
        b(size_t(d.out_c));
    fill(x, 1), fill(w, 2), fill(b, 3);
    const size_t ny = size_t(d.batch * d.out_c * d.out_h() * d.out_w());
    std::vector<float> two(ny), fused(ny);
    be->conv2d_forward(d, x.data(), w.data(), b.data(), two.data());
    be->relu_forward(int64_t(ny), two.data(), two.data());
    be->conv2d_relu_forward(d, x.data(), w.data(), b.data(), fused.data());
    EXPECT_EQ(fused, two) << "in_c " << d.in_c;
  }
  for (const Pool2dDesc d : {Pool2dDesc{2, 3, 8, 8}, Pool2dDesc{1, 2, 7, 5}}) {
    const size_t nx = size_t(d.batch * d.channels * d.in_h * d.in_w);
    const size_t ny = size_t(d.batch * d.channels * d.out_h() * d.out_w());
    std::vector<float> x(nx), y(ny), dy(ny), two(nx), fused(nx);
    fill(x, 4), fill(dy, 5);
    be->relu_forward(int64_t(nx), x.data(), x.data());  // x is a ReLU's output
    be->maxpool2x2_forward(d, x.data(), y.data());
    be->maxpool2x2_backward(d, x.data(), y.data(), dy.data(), two.data());
    be->relu_backward(int64_t(nx), x.data(), two.data(), two.data());
    be->relu_maxpool2x2_backward(d, x.data(), y.data(), dy.data(), fused.data());
    EXPECT_EQ(fused, two) << d.in_h << "x" << d.in_w;
  }
}

TEST(GradCheck, RejectsWrongGradients) {
  std::vector<float> p = test::random_vec(20, 3);
  const std::vector<float> r = test::random_vec(20, 4);
  auto loss = [&] {  // L = sum r_i p_i^2, dL/dp = 2 r p
    double s = 0;
    for (size_t i = 0; i < p.size(); ++i) s += static_cast<double>(r[i]) * p[i] * p[i];
    return s;
  };
  std::vector<float> exact(20);
  for (size_t i = 0; i < 20; ++i) exact[i] = 2 * r[i] * p[i];
  const std::vector<double> num = test::numeric_grad(p, 1e-2f, loss);
  EXPECT_TRUE(test::grads_match(exact, num, 1e-3));
  std::vector<float> off = exact;
  off[7] *= 1.05f;  // one element 5% off
  EXPECT_FALSE(test::grads_match(off, num, 1e-3));
  std::vector<float> swapped = exact;
  std::swap(swapped[2], swapped[3]);  // an indexing mistake
  EXPECT_FALSE(test::grads_match(swapped, num, 1e-3));
  EXPECT_FALSE(test::grads_match(std::vector<float>(20, 0.0f), num, 1e-3));
  EXPECT_FALSE(test::grads_match(exact, std::vector<double>(20, 0.0), 1e-3));  // vacuous check
}

}  // namespace
}  // namespace strand
