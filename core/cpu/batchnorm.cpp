// Batch normalization per channel of x [B,C,S] (backend.hpp BatchNormDesc). Channels run in
// parallel; each channel's sums are taken per image row in float (vectorized) and added up in
// double, image by image, in a fixed order, so the statistics do not depend on the thread count.
#include <cmath>

#include <strand/core/cpu/kernels.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cpu {
namespace {

int64_t grain(const BatchNormDesc& d) { return std::max<int64_t>(1, kParallelMin / (d.batch * d.spatial)); }

STRAND_VECTOR_CLONES float row_sum(const float* x, int64_t n) {
  float t = 0.0f;
#pragma omp simd reduction(+ : t)
  for (int64_t i = 0; i < n; ++i) t += x[i];
  return t;
}

STRAND_VECTOR_CLONES float row_sq_dev(const float* x, int64_t n, float mean) {
  float t = 0.0f;
#pragma omp simd reduction(+ : t)
  for (int64_t i = 0; i < n; ++i) t += (x[i] - mean) * (x[i] - mean);
  return t;
}

STRAND_VECTOR_CLONES void row_affine(const float* x, int64_t n, float scale, float shift, float* y) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale + shift;
}

// sum(dy) and sum(dy * (x - mean)) over one row.
STRAND_VECTOR_CLONES void row_grad_sums(const float* x, const float* dy, int64_t n, float mean, float& s_dy,
                                        float& s_dyx) {
  float a = 0.0f, b = 0.0f;
#pragma omp simd reduction(+ : a, b)
  for (int64_t i = 0; i < n; ++i) {
    a += dy[i];
    b += dy[i] * (x[i] - mean);
  }
  s_dy = a;
  s_dyx = b;
}

// dx = k * (dy - mean_dy - (x - mean) * c) over one row.
STRAND_VECTOR_CLONES void row_grad_input(const float* x, const float* dy, int64_t n, float mean, float k,
                                         float mean_dy, float c, float* dx) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dx[i] = k * (dy[i] - mean_dy - (x[i] - mean) * c);
}

}  // namespace

void batchnorm_forward_train(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                             const float* running, float* y, float* saved, float* running_delta,
                             ThreadPool& pool) {
  check_batchnorm(d, "cpu::batchnorm_forward_train");
  const int64_t C = d.channels, S = d.spatial, M = d.batch * S;
  pool.parallel_for(C, grain(d), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double sum = 0;
      for (int64_t n = 0; n < d.batch; ++n) sum += row_sum(x + (n * C + c) * S, S);
      const double mean = sum / double(M);
      const float m = float(mean);
      double sq = 0;
      for (int64_t n = 0; n < d.batch; ++n) sq += row_sq_dev(x + (n * C + c) * S, S, m);
      const double var = sq / double(M);
      const float istd = float(1.0 / std::sqrt(var + double(d.eps)));
      const float scale = gamma_beta[c] * istd, shift = gamma_beta[C + c] - m * scale;
      for (int64_t n = 0; n < d.batch; ++n)
        row_affine(x + (n * C + c) * S, S, scale, shift, y + (n * C + c) * S);
      saved[c] = m;
      saved[C + c] = istd;
      const RunningDelta r = batchnorm_running_delta(d, M, mean, var, running[c], running[C + c]);
      running_delta[c] = r.mean;
      running_delta[C + c] = r.var;
    }
  });
}

void batchnorm_forward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                             const float* running, float* y, ThreadPool& pool) {
  check_batchnorm(d, "cpu::batchnorm_forward_infer");
  const int64_t C = d.channels, S = d.spatial;
  pool.parallel_for(d.batch * C, grain(d), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t c = r % C;
      const float scale = gamma_beta[c] / std::sqrt(running[C + c] + d.eps);
      const float shift = gamma_beta[C + c] - running[c] * scale;
      row_affine(x + r * S, S, scale, shift, y + r * S);
    }
  });
}

void batchnorm_backward(const BatchNormDesc& d, const float* x, const float* gamma_beta, const float* saved,
                        const float* dy, float* dx, float* dgamma_beta, ThreadPool& pool) {
  check_batchnorm(d, "cpu::batchnorm_backward");
  const int64_t C = d.channels, S = d.spatial, M = d.batch * S;
  pool.parallel_for(C, grain(d), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const float mean = saved[c], istd = saved[C + c];
      double sum_dy = 0, sum_dy_xc = 0;  // sums of dy and dy * (x - mean)
      for (int64_t n = 0; n < d.batch; ++n) {
        float a, b;
        row_grad_sums(x + (n * C + c) * S, dy + (n * C + c) * S, S, mean, a, b);
        sum_dy += a;
        sum_dy_xc += b;
      }
      const double sum_dy_xhat = sum_dy_xc * double(istd);
      dgamma_beta[c] = float(sum_dy_xhat);
      dgamma_beta[C + c] = float(sum_dy);
      if (!dx) continue;
      // dx = gamma*istd/M * (M*dy - sum(dy) - xhat*sum(dy*xhat)), xhat = (x - mean) * istd
      const float k = gamma_beta[c] * istd, mean_dy = float(sum_dy / double(M)),
                  c_x = float(sum_dy_xhat / double(M)) * istd;
      for (int64_t n = 0; n < d.batch; ++n)
        row_grad_input(x + (n * C + c) * S, dy + (n * C + c) * S, S, mean, k, mean_dy, c_x,
                       dx + (n * C + c) * S);
    }
  });
}

void batchnorm_backward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                              const float* running, const float* dy, float* dx, float* dgamma_beta,
                              ThreadPool& pool) {
  check_batchnorm(d, "cpu::batchnorm_backward_infer");
  const int64_t C = d.channels, S = d.spatial;
  pool.parallel_for(C, grain(d), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const float mean = running[c], istd = 1.f / std::sqrt(running[C + c] + d.eps);
      double sum_dy = 0, sum_dy_xc = 0;
      for (int64_t n = 0; n < d.batch; ++n) {
        float a, b;
        row_grad_sums(x + (n * C + c) * S, dy + (n * C + c) * S, S, mean, a, b);
        sum_dy += a;
        sum_dy_xc += b;
      }
      dgamma_beta[c] = float(sum_dy_xc * double(istd));
      dgamma_beta[C + c] = float(sum_dy);
      if (!dx) continue;
      for (int64_t n = 0; n < d.batch; ++n)
        row_affine(dy + (n * C + c) * S, S, gamma_beta[c] * istd, 0.f, dx + (n * C + c) * S);
    }
  });
}

}  // namespace strand::cpu
