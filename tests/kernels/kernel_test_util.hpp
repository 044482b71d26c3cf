// Helpers shared by the kernel tests: seeded random data, a central-difference gradient
// checker and a tolerance comparison. References themselves live next to each test.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <vector>

namespace strand::test {

inline std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// L = sum r_i * y_i in double: the random projection whose gradient w.r.t. y is r.
inline double project(const std::vector<float>& r, const std::vector<float>& y) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += static_cast<double>(r[i]) * y[i];
  return s;
}

// dL/dp by central differences, perturbing each element of p in place (and restoring it).
inline std::vector<double> numeric_grad(std::vector<float>& p, float h,
                                        const std::function<double()>& loss) {
  std::vector<double> g(p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    const float keep = p[i];
    p[i] = keep + h;
    const double up = loss();
    p[i] = keep - h;
    const double down = loss();
    p[i] = keep;
    g[i] = (up - down) / (2.0 * static_cast<double>(h));
  }
  return g;
}

// Every element within rtol of the larger magnitude, with a floor of rtol times the gradient's
// RMS so elements that are zero up to rounding do not demand exact agreement. A gradient that
// is all zeros would make the check vacuous, so it fails too.
inline testing::AssertionResult grads_match(const std::vector<float>& analytic,
                                            const std::vector<double>& numeric, double rtol) {
  if (analytic.size() != numeric.size()) return testing::AssertionFailure() << "size mismatch";
  double sq = 0;
  for (double g : numeric) sq += g * g;
  const double rms = std::sqrt(sq / static_cast<double>(std::max<size_t>(numeric.size(), 1)));
  if (rms < 1e-6) return testing::AssertionFailure() << "numeric gradient is ~0 (rms " << rms << ")";
  for (size_t i = 0; i < numeric.size(); ++i) {
    const double a = analytic[i], n = numeric[i];
    const double tol = rtol * (std::max(std::abs(a), std::abs(n)) + rms);
    if (!(std::abs(a - n) <= tol)) {
      return testing::AssertionFailure() << "element " << i << ": analytic " << a << " vs numeric "
                                         << n << " (tol " << tol << ", rms " << rms << ")";
    }
  }
  return testing::AssertionSuccess();
}

// |got - want| <= tol * (1 + |want|) elementwise.
inline testing::AssertionResult all_close(const std::vector<float>& got,
                                          const std::vector<double>& want, double tol) {
  if (got.size() != want.size()) return testing::AssertionFailure() << "size mismatch";
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::abs(got[i] - want[i]) <= tol * (1.0 + std::abs(want[i])))) {
      return testing::AssertionFailure() << "element " << i << ": got " << got[i] << " want "
                                         << want[i];
    }
  }
  return testing::AssertionSuccess();
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](float x, float y) {
           return std::memcmp(&x, &y, sizeof(float)) == 0;
         });
}

}  // namespace strand::test
