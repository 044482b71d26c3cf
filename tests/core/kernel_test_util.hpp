// Helpers shared by the kernel tests and the CUDA-against-CPU tests (tests/core/cuda): seeded
// random data, copies to and from a backend, a central-difference gradient checker and
// tolerance comparisons. References themselves live next to each test.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/models/models.hpp>
#include <strand/models/op_cases.hpp>

namespace strand::test {

inline std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// The descriptors of the ops of kind `kind` in every model strand ships (models/op_cases.hpp)
// at each of `batches`, each shape once: the model shapes the tests check, from the one table.
template <class Desc>
std::vector<Desc> model_descs(models::OpKind kind, std::initializer_list<int64_t> batches,
                              Desc models::OpCase::*member) {
  std::vector<Desc> out;
  for (int64_t batch : batches)
    for (const std::string& name : models::names())
      for (const models::OpCase& c : models::ops_of(models::op_cases(models::by_name(name), batch), kind)) {
        const Desc& d = c.*member;
        // The descriptors are plain int64_t fields: equal bytes, equal shapes.
        if (std::none_of(out.begin(), out.end(),
                         [&](const Desc& o) { return std::memcmp(&o, &d, sizeof d) == 0; }))
          out.push_back(d);
      }
  return out;
}
inline std::vector<Conv2dDesc> model_convs(std::initializer_list<int64_t> batches) {
  return model_descs(models::OpKind::Conv2d, batches, &models::OpCase::conv);
}
inline std::vector<Pool2dDesc> model_pools(std::initializer_list<int64_t> batches) {
  return model_descs(models::OpKind::MaxPool2x2, batches, &models::OpCase::pool);
}
inline std::vector<DenseDesc> model_denses(std::initializer_list<int64_t> batches) {
  return model_descs(models::OpKind::Dense, batches, &models::OpCase::dense);
}
// `hand` (the tests' own edge cases) followed by `models`.
template <class Desc>
std::vector<Desc> joined(std::vector<Desc> hand, const std::vector<Desc>& models) {
  hand.insert(hand.end(), models.begin(), models.end());
  return hand;
}

// Small integers as floats: many exact ties, for the max-pool and arg-max tie rules.
inline std::vector<float> tie_vec(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(-2, 2);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(dist(rng));
  return v;
}

template <class T>
Buffer upload(Backend& be, const std::vector<T>& host) {
  Buffer b = be.alloc(host.size() * sizeof(T));
  be.to_device(b.data(), host.data(), host.size() * sizeof(T));
  return b;
}

template <class T = float>
std::vector<T> download(Backend& be, const Buffer& b) {
  std::vector<T> host(b.bytes() / sizeof(T));
  be.to_host(host.data(), b.data(), b.bytes());
  return host;
}

// L = sum r_i * y_i in double: the random projection whose gradient w.r.t. y is r.
inline double project(const std::vector<float>& r, const std::vector<float>& y) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += static_cast<double>(r[i]) * y[i];
  return s;
}

// dL/dp by central differences, perturbing each element of p in place (and restoring it).
inline std::vector<double> numeric_grad(std::vector<float>& p, float h, const std::function<double()>& loss) {
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
      return testing::AssertionFailure() << "element " << i << ": analytic " << a << " vs numeric " << n
                                         << " (tol " << tol << ", rms " << rms << ")";
    }
  }
  return testing::AssertionSuccess();
}

// |got - want| <= tol * (1 + |want|) elementwise.
inline testing::AssertionResult all_close(const std::vector<float>& got, const std::vector<double>& want,
                                          double tol) {
  if (got.size() != want.size()) return testing::AssertionFailure() << "size mismatch";
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::abs(got[i] - want[i]) <= tol * (1.0 + std::abs(want[i])))) {
      return testing::AssertionFailure() << "element " << i << ": got " << got[i] << " want " << want[i];
    }
  }
  return testing::AssertionSuccess();
}

// Every element within rtol of max(|want|, rms(want)): relative error for ordinary elements,
// and sums that cancel to ~0 are held to the scale of the whole tensor.
inline testing::AssertionResult rel_close(const std::vector<float>& got, const std::vector<float>& want,
                                          double rtol = 1e-4) {
  if (got.size() != want.size()) return testing::AssertionFailure() << "size mismatch";
  double sq = 0;
  for (float w : want) sq += double(w) * w;
  const double rms = std::sqrt(sq / double(std::max<size_t>(want.size(), 1)));
  for (size_t i = 0; i < want.size(); ++i) {
    const double tol = rtol * std::max(std::abs(double(want[i])), rms) + 1e-30;
    if (!(std::abs(double(got[i]) - want[i]) <= tol))
      return testing::AssertionFailure()
             << "element " << i << ": got " << got[i] << " want " << want[i] << " (tol " << tol << ")";
  }
  return testing::AssertionSuccess();
}

// ‖got − want‖ / ‖want‖.
inline double norm_rel(const std::vector<float>& got, const std::vector<float>& want) {
  double d = 0, w = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    d += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    w += double(want[i]) * want[i];
  }
  return std::sqrt(d / std::max(w, 1e-300));
}

inline testing::AssertionResult same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return testing::AssertionFailure() << "size mismatch";
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0)
      return testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs " << b[i];
  return testing::AssertionSuccess();
}

}  // namespace strand::test
