// Batch normalization per channel of x [B,C,S] (backend.hpp BatchNormDesc). Channels run in
// parallel; each channel's sums are taken in double, image by image, in a fixed order, so the
// statistics do not depend on the thread count.
#include <cmath>

#include <strand/core/cpu/kernels.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cpu {
namespace {

int64_t grain(const BatchNormDesc& d) { return std::max<int64_t>(1, kParallelMin / (d.batch * d.spatial)); }

}  // namespace

void batchnorm_forward_train(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                             const float* running, float* y, float* saved, float* running_delta,
                             ThreadPool& pool) {
  check_batchnorm(d, "cpu::batchnorm_forward_train");
  const int64_t C = d.channels, S = d.spatial, M = d.batch * S;
  pool.parallel_for(C, grain(d), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double sum = 0;
      for (int64_t n = 0; n < d.batch; ++n) {
        const float* row = x + (n * C + c) * S;
        for (int64_t s = 0; s < S; ++s) sum += row[s];
      }
      const double mean = sum / double(M);
      double sq = 0;
      for (int64_t n = 0; n < d.batch; ++n) {
        const float* row = x + (n * C + c) * S;
        for (int64_t s = 0; s < S; ++s) sq += (row[s] - mean) * (row[s] - mean);
      }
      const double var = sq / double(M);
      const float istd = float(1.0 / std::sqrt(var + double(d.eps)));
      const float m = float(mean), scale = gamma_beta[c] * istd, shift = gamma_beta[C + c];
      for (int64_t n = 0; n < d.batch; ++n) {
        const float* row = x + (n * C + c) * S;
        float* out = y + (n * C + c) * S;
        for (int64_t s = 0; s < S; ++s) out[s] = (row[s] - m) * scale + shift;
      }
      saved[c] = m;
      saved[C + c] = istd;
      const double unbiased = M > 1 ? var * double(M) / double(M - 1) : var;
      const double keep = 1.0 - double(d.momentum);
      running_delta[c] = float(keep * (double(running[c]) - mean));
      running_delta[C + c] = float(keep * (double(running[C + c]) - unbiased));
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
      const float* row = x + r * S;
      float* out = y + r * S;
#pragma omp simd
      for (int64_t s = 0; s < S; ++s) out[s] = row[s] * scale + shift;
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
      double sum_dy = 0, sum_dy_xhat = 0;
      for (int64_t n = 0; n < d.batch; ++n) {
        const float* row = x + (n * C + c) * S;
        const float* g = dy + (n * C + c) * S;
        for (int64_t s = 0; s < S; ++s) {
          sum_dy += g[s];
          sum_dy_xhat += double(g[s]) * double((row[s] - mean) * istd);
        }
      }
      dgamma_beta[c] = float(sum_dy_xhat);
      dgamma_beta[C + c] = float(sum_dy);
      if (!dx) continue;
      // dx = gamma*istd/M * (M*dy - sum(dy) - xhat*sum(dy*xhat))
      const float k = gamma_beta[c] * istd, mean_dy = float(sum_dy / double(M)),
                  mean_dy_xhat = float(sum_dy_xhat / double(M));
      for (int64_t n = 0; n < d.batch; ++n) {
        const float* row = x + (n * C + c) * S;
        const float* g = dy + (n * C + c) * S;
        float* out = dx + (n * C + c) * S;
        for (int64_t s = 0; s < S; ++s) {
          const float xhat = (row[s] - mean) * istd;
          out[s] = k * (g[s] - mean_dy - xhat * mean_dy_xhat);
        }
      }
    }
  });
}

}  // namespace strand::cpu
