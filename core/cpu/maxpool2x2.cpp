// 2x2 stride-2 max pooling over each [H,W] plane; planes run in parallel, output columns
// are vectorized. Odd trailing rows/columns are not pooled and get zero gradient.
#include <string>

#include <strand/core/cpu/kernels.hpp>
#include <strand/core/error.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cpu {
void maxpool2x2_forward(const Pool2dDesc& d, const float* x, float* y, ThreadPool& pool) {
  check_maxpool2x2(d, "cpu::maxpool2x2_forward");
  const int64_t planes = d.batch * d.channels, H = d.in_h, W = d.in_w;
  const int64_t oh = d.out_h(), ow = d.out_w();
  pool.parallel_for(planes, kParallelMin / (H * W), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      for (int64_t oy = 0; oy < oh; ++oy) {
        const float* r0 = x + (p * H + 2 * oy) * W;  // top row of the windows
        const float* r1 = r0 + W;
        float* out = y + (p * oh + oy) * ow;
#pragma omp simd
        for (int64_t ox = 0; ox < ow; ++ox) {
          // Strict '>' keeps the first maximum, the one backward routes to.
          float m = r0[2 * ox];
          m = r0[2 * ox + 1] > m ? r0[2 * ox + 1] : m;
          m = r1[2 * ox] > m ? r1[2 * ox] : m;
          m = r1[2 * ox + 1] > m ? r1[2 * ox + 1] : m;
          out[ox] = m;
        }
      }
    }
  });
}

void maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y, const float* dy, float* dx,
                         bool relu, ThreadPool& pool) {
  check_maxpool2x2(d, "cpu::maxpool2x2_backward");
  const int64_t planes = d.batch * d.channels, H = d.in_h, W = d.in_w;
  const int64_t oh = d.out_h(), ow = d.out_w();
  pool.parallel_for(planes, kParallelMin / (H * W), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      for (int64_t oy = 0; oy < oh; ++oy) {
        const float* x0 = x + (p * H + 2 * oy) * W;
        const float* x1 = x0 + W;
        float* d0 = dx + (p * H + 2 * oy) * W;
        float* d1 = d0 + W;
        const float* ym = y + (p * oh + oy) * ow;
        const float* g = dy + (p * oh + oy) * ow;
#pragma omp simd
        for (int64_t ox = 0; ox < ow; ++ox) {
          // Every window position is written, so dx needs no clearing beforehand. All loads
          // are unconditional and the tests use '&', not '&&': branches would block vectorizing.
          // Only the window's first maximum passes the gradient, so the fused ReLU's mask is
          // that one value's sign.
          const float m = ym[ox], gl = g[ox];
          const float gv = relu & !(m > 0.0f) ? 0.0f : gl;
          const float a = x0[2 * ox], b = x0[2 * ox + 1], c = x1[2 * ox], e = x1[2 * ox + 1];
          const bool t0 = a == m;
          const bool t1 = !t0 & (b == m);
          const bool t2 = !(t0 | t1) & (c == m);
          const bool t3 = !(t0 | t1 | t2) & (e == m);
          d0[2 * ox] = t0 ? gv : 0.0f;
          d0[2 * ox + 1] = t1 ? gv : 0.0f;
          d1[2 * ox] = t2 ? gv : 0.0f;
          d1[2 * ox + 1] = t3 ? gv : 0.0f;
        }
        if (W % 2) d0[W - 1] = d1[W - 1] = 0.0f;
      }
      if (H % 2) {
        float* last = dx + (p * H + H - 1) * W;
        for (int64_t i = 0; i < W; ++i) last[i] = 0.0f;
      }
    }
  });
}

}  // namespace strand::cpu
