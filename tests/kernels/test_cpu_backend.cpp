// CpuBackend memory and construction, and a self-check of the gradient checker itself.
#include <gtest/gtest.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "core/backend.hpp"
#include "core/cpu/cpu_backend.hpp"
#include "core/error.hpp"
#include "tests/kernels/kernel_test_util.hpp"

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

// The checker the gradient tests rely on must reject slightly wrong gradients.
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
