// Max and average pooling with any window and stride (PoolDesc), one [H,W] plane per task.
// Backward walks the windows in row-major order and adds into dx, so overlapping windows sum
// in a fixed order and the result does not depend on the thread count. The 2x2 stride-2 max
// pool has its own vectorized kernels (maxpool2x2.cpp).
#include <algorithm>
#include <cstring>

#include <strand/core/cpu/kernels.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cpu {
namespace {

// Row-major index within the plane of the window's first maximum (strict '>').
inline int64_t window_argmax(const float* plane, int64_t W, int64_t y0, int64_t x0, int64_t kh, int64_t kw) {
  int64_t best = y0 * W + x0;
  float m = plane[best];
  for (int64_t i = 0; i < kh; ++i) {
    for (int64_t j = 0; j < kw; ++j) {
      const int64_t at = (y0 + i) * W + x0 + j;
      if (plane[at] > m) {
        m = plane[at];
        best = at;
      }
    }
  }
  return best;
}

}  // namespace

void pool_forward(PoolKind kind, const PoolDesc& d, const float* x, float* y, ThreadPool& pool) {
  check_pool(d, "cpu::pool_forward");
  const int64_t planes = d.batch * d.channels, H = d.in_h, W = d.in_w;
  const int64_t oh = d.out_h(), ow = d.out_w();
  const float inv = 1.0f / float(d.kernel_h * d.kernel_w);
  pool.parallel_for(planes, std::max<int64_t>(1, kParallelMin / (H * W)), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const float* in = x + p * H * W;
      float* out = y + p * oh * ow;
      for (int64_t oy = 0; oy < oh; ++oy) {
        for (int64_t ox = 0; ox < ow; ++ox) {
          const int64_t y0 = oy * d.stride_h, x0 = ox * d.stride_w;
          if (kind == PoolKind::Max) {
            out[oy * ow + ox] = in[window_argmax(in, W, y0, x0, d.kernel_h, d.kernel_w)];
            continue;
          }
          float s = 0.0f;
          for (int64_t i = 0; i < d.kernel_h; ++i) {
            const float* row = in + (y0 + i) * W + x0;
            for (int64_t j = 0; j < d.kernel_w; ++j) s += row[j];
          }
          out[oy * ow + ox] = s * inv;
        }
      }
    }
  });
}

void pool_backward(PoolKind kind, const PoolDesc& d, const float* x, const float* dy, float* dx,
                   ThreadPool& pool) {
  check_pool(d, "cpu::pool_backward");
  const int64_t planes = d.batch * d.channels, H = d.in_h, W = d.in_w;
  const int64_t oh = d.out_h(), ow = d.out_w();
  const float inv = 1.0f / float(d.kernel_h * d.kernel_w);
  pool.parallel_for(planes, std::max<int64_t>(1, kParallelMin / (H * W)), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const float* in = x + p * H * W;
      const float* g = dy + p * oh * ow;
      float* out = dx + p * H * W;
      std::memset(out, 0, sizeof(float) * size_t(H * W));
      for (int64_t oy = 0; oy < oh; ++oy) {
        for (int64_t ox = 0; ox < ow; ++ox) {
          const int64_t y0 = oy * d.stride_h, x0 = ox * d.stride_w;
          const float gv = g[oy * ow + ox];
          if (kind == PoolKind::Max) {
            out[window_argmax(in, W, y0, x0, d.kernel_h, d.kernel_w)] += gv;
            continue;
          }
          for (int64_t i = 0; i < d.kernel_h; ++i) {
            float* row = out + (y0 + i) * W + x0;
            for (int64_t j = 0; j < d.kernel_w; ++j) row[j] += gv * inv;
          }
        }
      }
    }
  });
}

}  // namespace strand::cpu
