#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/error.hpp>
#include "tests/core/kernel_test_util.hpp"

namespace strand {
namespace {

using test::all_close;
using test::random_vec;

struct DenseData {
  std::vector<float> x, w, b, y;
};

DenseData make_data(const DenseDesc& d, uint32_t seed) {
  return {random_vec(d.batch * d.in, seed), random_vec(d.out * d.in, seed + 1), random_vec(d.out, seed + 2),
          std::vector<float>(d.batch * d.out)};
}

// Edge cases, then the models' dense layers at batch 2 (models/op_cases.hpp).
const std::vector<DenseDesc> kShapes = test::joined<DenseDesc>(
    {{1, 1, 1}, {3, 7, 5}, {4, 33, 17}, {1, 64, 10}, {100, 96, 10}, {9, 130, 67}}, test::model_denses({2}));

class DenseVsNaive : public testing::TestWithParam<int> {};

TEST_P(DenseVsNaive, ForwardAndBackwardMatchReference) {
  auto be = make_cpu_backend(GetParam());
  uint32_t seed = 50;
  for (const DenseDesc& d : kShapes) {
    SCOPED_TRACE(testing::Message() << "batch " << d.batch << " in " << d.in << " out " << d.out);
    DenseData s = make_data(d, seed += 3);
    const std::vector<float> dy = random_vec(d.batch * d.out, seed + 100);
    std::vector<double> y_ref(d.batch * d.out), dx_ref(d.batch * d.in, 0.0), dw_ref(d.out * d.in, 0.0),
        db_ref(d.out, 0.0);
    for (int64_t n = 0; n < d.batch; ++n)
      for (int64_t o = 0; o < d.out; ++o) {
        const double g = dy[n * d.out + o];
        double acc = s.b[o];
        for (int64_t i = 0; i < d.in; ++i) {
          acc += static_cast<double>(s.x[n * d.in + i]) * s.w[o * d.in + i];
          dx_ref[n * d.in + i] += g * s.w[o * d.in + i];
          dw_ref[o * d.in + i] += g * s.x[n * d.in + i];
        }
        y_ref[n * d.out + o] = acc;
        db_ref[o] += g;
      }
    be->dense_forward(d, s.x.data(), s.w.data(), s.b.data(), s.y.data());
    EXPECT_TRUE(all_close(s.y, y_ref, 1e-5));

    std::vector<float> dx(s.x.size(), 7.0f), dw(s.w.size(), 7.0f), db(s.b.size(), 7.0f);
    be->dense_backward(d, s.x.data(), s.w.data(), dy.data(), dx.data(), dw.data(), db.data());
    EXPECT_TRUE(all_close(dx, dx_ref, 1e-5));
    EXPECT_TRUE(all_close(dw, dw_ref, 1e-5));
    EXPECT_TRUE(all_close(db, db_ref, 1e-5));

    std::fill(dw.begin(), dw.end(), 7.0f);
    be->dense_backward(d, s.x.data(), s.w.data(), dy.data(), nullptr, dw.data(), db.data());
    EXPECT_TRUE(all_close(dw, dw_ref, 1e-5));
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, DenseVsNaive, testing::Values(1, 2));

TEST(DenseGrad, FiniteDifferences) {
  auto be = make_cpu_backend(2);
  const DenseDesc d{3, 11, 6};
  DenseData s = make_data(d, 9);
  const std::vector<float> r = random_vec(s.y.size(), 10);
  auto loss = [&] {
    be->dense_forward(d, s.x.data(), s.w.data(), s.b.data(), s.y.data());
    return test::project(r, s.y);
  };
  std::vector<float> dx(s.x.size()), dw(s.w.size()), db(s.b.size());
  be->dense_backward(d, s.x.data(), s.w.data(), r.data(), dx.data(), dw.data(), db.data());
  EXPECT_TRUE(test::grads_match(dx, test::numeric_grad(s.x, 0.1f, loss), 1e-3)) << "dx";
  EXPECT_TRUE(test::grads_match(dw, test::numeric_grad(s.w, 0.1f, loss), 1e-3)) << "dw";
  EXPECT_TRUE(test::grads_match(db, test::numeric_grad(s.b, 0.1f, loss), 1e-3)) << "db";
}

// The models' dense layers at batch 100 (mnist_cnn's dense1: 100 x 3136 -> 1024, ...).
TEST(DenseDeterminism, RepeatedBackwardIsBitIdentical) {
  for (const DenseDesc& d : test::model_denses({100})) {
    SCOPED_TRACE(testing::Message() << "batch " << d.batch << " in " << d.in << " out " << d.out);
    DenseData s = make_data(d, 11);
    const std::vector<float> dy = random_vec(d.batch * d.out, 12);
    auto be = make_cpu_backend(2);
    std::vector<float> dx1(s.x.size()), dw1(s.w.size()), db1(d.out);
    std::vector<float> dx2(s.x.size()), dw2(s.w.size()), db2(d.out);
    be->dense_backward(d, s.x.data(), s.w.data(), dy.data(), dx1.data(), dw1.data(), db1.data());
    be->dense_backward(d, s.x.data(), s.w.data(), dy.data(), dx2.data(), dw2.data(), db2.data());
    EXPECT_TRUE(test::same_bits(dx1, dx2));
    EXPECT_TRUE(test::same_bits(dw1, dw2));
    EXPECT_TRUE(test::same_bits(db1, db2));
  }
}

TEST(DenseErrors, ZeroSizeThrowsShapeError) {
  auto be = make_cpu_backend(1);
  std::vector<float> buf(16);
  try {
    be->dense_forward(DenseDesc{2, 0, 3}, buf.data(), buf.data(), buf.data(), buf.data());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Shape);
    EXPECT_NE(std::string(e.what()).find("dense"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace strand
