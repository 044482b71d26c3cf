// Winograd F(2x2, 5x5) and F(4x4, 3x3), in the Lavin & Gray formulation
// Y = A^T [(G g G^T) . (B^T d B)] A. Both use 6x6 tiles and the same interpolation points
// 0, 1, -1, 2, -2 and infinity (exact, small-integer transforms), so they share B^T; G and A^T
// are those points' rows cut to the kernel's R taps and the tile's M outputs:
//
//   B^T = [4  0 -5  0 1 0;  0 -4 -4  1 1 0;  0  4 -4 -1 1 0;
//          0 -2 -1  2 1 0;  0  2 -1 -2 1 0;  0  4  0 -5 0 1]
//   G (6 x R), row k = f_k * [1, p_k, ..., p_k^(R-1)] for p = 0, 1, -1, 2, -2 with
//          f = 1/4, -1/6, -1/6, 1/24, 1/24; last row [0 ... 0 1]
//   A^T (M x 6), row k = [0^k, 1, (-1)^k, 2^k, (-2)^k, (k == M-1)]
//
// Layouts keep channels innermost so every transform is a vector loop over channels, for any
// batch size (batch 1 included): the input is repacked per image to padded [Hp,Wp,C]; the
// transformed tiles are V[36][T][C] and the products M[36][T][O] (T = tiles in a block of
// images, sized so V and M stay in L2); the 36 products M[xi] = V[xi] U[xi] are sgemm calls
// with U[36][C][O] the transformed filters.
#include <strand/core/cpu/conv2d_winograd.hpp>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include <strand/core/cpu/gemm.hpp>
#include <strand/core/error.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cpu {
namespace {

constexpr int64_t kXi = 36;                   // transformed tile: 6x6
constexpr int64_t kBlockFloats = 256 * 1024;  // V + M per block: 1 MiB, half of a core's L2

// An RxR filter bank read through strides: g(o, c, i, j) = base[o*so + c*sc + i*si + j*sj].
// Negative si, sj read the kernels rotated by 180 degrees.
struct FilterView {
  const float* base;
  int64_t so, sc, si, sj;
};

// The convolution computed: x [B,C,H,W] -> y [B,O,OH,OW], RxR taps (R = 3 or 5), input padded
// by pad_h/w, in tiles of MxM outputs (M = 7 - R).
struct Shape {
  int64_t batch, c, h, w, o, oh, ow, pad_h, pad_w, r;
  int64_t m() const { return 7 - r; }
  int64_t tiles_h() const { return (oh + m() - 1) / m(); }
  int64_t tiles_w() const { return (ow + m() - 1) / m(); }
  int64_t tiles() const { return tiles_h() * tiles_w(); }
  int64_t padded_h() const { return m() * tiles_h() + r - 1; }
  int64_t padded_w() const { return m() * tiles_w() + r - 1; }
};

// U[xi][c][o] = G g(o, c) G^T for channels [c0, c1). scratch: R * (R + 6) * O floats.
template <int R>
STRAND_VECTOR_CLONES void transform_filters(const FilterView& f, int64_t C, int64_t O, int64_t c0, int64_t c1,
                                            float* U, float* scratch) {
  float* g = scratch;              // [R*R][O]
  float* t = scratch + R * R * O;  // [R][6][O]: each kernel row times G^T
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t k = 0; k < R * R; ++k) {
      const float* src = f.base + c * f.sc + (k / R) * f.si + (k % R) * f.sj;
      for (int64_t o = 0; o < O; ++o) g[k * O + o] = src[o * f.so];
    }
    // Row pass then column pass, each the same R -> 6 map.
    for (int pass = 0; pass < 2; ++pass) {
      for (int64_t r = 0; r < (pass == 0 ? R : 6); ++r) {
        // Pass 0: inputs g[r][0..R-1], outputs t[r][0..5]; pass 1: inputs t[0..R-1][r], outputs U[0..5][r].
        const int64_t in_stride = pass == 0 ? O : 6 * O;
        const float* in = pass == 0 ? g + r * R * O : t + r * O;
        float* out[6];
        for (int64_t k = 0; k < 6; ++k)
          out[k] = pass == 0 ? t + (r * 6 + k) * O : U + ((k * 6 + r) * C + c) * O;
#pragma omp simd
        for (int64_t o = 0; o < O; ++o) {
          const float a = in[o], b = in[in_stride + o], cc = in[2 * in_stride + o];
          out[0][o] = a * 0.25f;
          if constexpr (R == 5) {
            const float d = in[3 * in_stride + o], e = in[4 * in_stride + o];
            out[1][o] = (a + b + cc + d + e) * (-1.0f / 6.0f);
            out[2][o] = (a - b + cc - d + e) * (-1.0f / 6.0f);
            out[3][o] = (a + 2.0f * b + 4.0f * cc + 8.0f * d + 16.0f * e) * (1.0f / 24.0f);
            out[4][o] = (a - 2.0f * b + 4.0f * cc - 8.0f * d + 16.0f * e) * (1.0f / 24.0f);
            out[5][o] = e;
          } else {
            out[1][o] = (a + b + cc) * (-1.0f / 6.0f);
            out[2][o] = (a - b + cc) * (-1.0f / 6.0f);
            out[3][o] = (a + 2.0f * b + 4.0f * cc) * (1.0f / 24.0f);
            out[4][o] = (a - 2.0f * b + 4.0f * cc) * (1.0f / 24.0f);
            out[5][o] = cc;
          }
        }
      }
    }
  }
}

// B^T applied to 6 vectors of C channels: in[k * in_stride + c] -> out[k][c].
inline void apply_bt(const float* in, int64_t in_stride, float* const out[6], int64_t C) {
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) {
    const float d0 = in[c], d1 = in[in_stride + c], d2 = in[2 * in_stride + c], d3 = in[3 * in_stride + c],
                d4 = in[4 * in_stride + c], d5 = in[5 * in_stride + c];
    out[0][c] = 4.0f * d0 - 5.0f * d2 + d4;
    out[1][c] = -4.0f * (d1 + d2) + d3 + d4;
    out[2][c] = 4.0f * (d1 - d2) - d3 + d4;
    out[3][c] = 2.0f * (d3 - d1) - d2 + d4;
    out[4][c] = 2.0f * (d1 - d3) - d2 + d4;
    out[5][c] = 4.0f * d1 - 5.0f * d3 + d5;
  }
}

// V[xi][tile][c] = (B^T d B)[xi] for the 6x6 patch d starting at `patch` in a padded [Hp,Wp,C]
// image. tmp: 36 * C floats. v_plane: distance between V's xi planes.
STRAND_VECTOR_CLONES void transform_input_tile(const float* patch, int64_t row_stride, int64_t C, float* tmp,
                                               float* v, int64_t v_plane) {
  float* out[6];
  for (int64_t u = 0; u < 6; ++u) {  // rows: tmp[u][x] = (d B)[u][x]
    for (int64_t x = 0; x < 6; ++x) out[x] = tmp + (u * 6 + x) * C;
    apply_bt(patch + u * row_stride, C, out, C);
  }
  for (int64_t x = 0; x < 6; ++x) {  // columns: V[y][x] = (B^T tmp)[y][x]
    for (int64_t y = 0; y < 6; ++y) out[y] = v + (y * 6 + x) * v_plane;
    apply_bt(tmp + x * C, 6 * C, out, C);
  }
}

// out[k][o] = (A^T v)[k] + b for k < M, v the 6 values v(0)..v(5). F(2x2, 5x5) sums in the
// order it always has, so its results keep their bits.
template <int M, class V>
inline void apply_at(V v, float b, float* const out[M], int64_t o) {
  const float v0 = v(0), v1 = v(1), v2 = v(2), v3 = v(3), v4 = v(4), v5 = v(5);
  if constexpr (M == 2) {
    out[0][o] = v0 + v1 + v2 + v3 + v4 + b;
    out[1][o] = v1 - v2 + 2.0f * (v3 - v4) + v5 + b;
  } else {
    const float sp = v1 + v2, sm = v1 - v2, tp = v3 + v4, tm = v3 - v4;
    out[0][o] = v0 + sp + tp + b;
    out[1][o] = sm + 2.0f * tm + b;
    out[2][o] = sp + 4.0f * tp + b;
    out[3][o] = sm + 8.0f * tm + v5 + b;
  }
}

// The MxM outputs of one tile from its products M[xi][o] (planes m_plane apart), plus bias,
// into yh [OH*OW, O] at output position (oy, ox); columns past the edge are skipped, rows past
// it written to a scratch row. s: (6 * M + 1) * O floats.
template <int M>
STRAND_VECTOR_CLONES void transform_output_tile(const float* m, int64_t m_plane, int64_t O, const float* bias,
                                                float* s, float* yh, int64_t oy, int64_t ox, int64_t oh,
                                                int64_t ow) {
  float* out[M];
  for (int64_t y = 0; y < 6; ++y) {  // s[y][i] = (M A)[y][i]
    const float* row = m + y * 6 * m_plane;
    for (int64_t i = 0; i < M; ++i) out[i] = s + (y * M + i) * O;
#pragma omp simd
    for (int64_t o = 0; o < O; ++o)
      apply_at<M>([&](int j) { return row[j * m_plane + o]; }, -0.0f, out, o);  // x + -0 is x, bit for bit
  }
  float* spill = s + 6 * M * O;
  for (int64_t i = 0; i < M && ox + i < ow; ++i) {  // Y[r][i] = (A^T s)[r][i]
    for (int64_t r = 0; r < M; ++r) out[r] = oy + r < oh ? yh + ((oy + r) * ow + ox + i) * O : spill;
    const float* col = s + i * O;
#pragma omp simd
    for (int64_t o = 0; o < O; ++o)
      apply_at<M>([&](int y) { return col[y * M * O + o]; }, bias ? bias[o] : 0.0f, out, o);
  }
}

// xh [Hp,Wp,C] = image x [C,H,W] shifted by the padding. Only the image's own positions are
// written: the border stays as zero_border() left it. A vector loop over channels (a gather).
STRAND_VECTOR_CLONES void pack_padded(const Shape& s, const float* x, float* xh) {
  const int64_t wp = s.padded_w(), C = s.c, hw = s.h * s.w;
  const int64_t y_lo = std::max<int64_t>(0, -s.pad_h), y_hi = std::min(s.h, s.padded_h() - s.pad_h);
  const int64_t x_lo = std::max<int64_t>(0, -s.pad_w), x_hi = std::min(s.w, wp - s.pad_w);
  for (int64_t iy = y_lo; iy < y_hi; ++iy)
    for (int64_t ix = x_lo; ix < x_hi; ++ix) {
      const float* src = x + iy * s.w + ix;
      float* dst = xh + ((iy + s.pad_h) * wp + ix + s.pad_w) * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) dst[c] = src[c * hw];
    }
}

// Zeroes xh wholly; pack_padded never writes the padding, so once per buffer is enough.
void zero_border(const Shape& s, float* xh) {
  std::memset(xh, 0, sizeof(float) * s.padded_h() * s.padded_w() * s.c);
}

// y [O, P] = yh [P, O]^T.
STRAND_VECTOR_CLONES void unpack_output(int64_t P, int64_t O, const float* yh, float* y) {
  for (int64_t o = 0; o < O; ++o) {
    float* dst = y + o * P;
#pragma omp simd
    for (int64_t p = 0; p < P; ++p) dst[p] = yh[p * O + o];
  }
}

template <int R>
void winograd_conv(const Shape& s, const float* x, const FilterView& f, const float* bias, float* y,
                   Workspace& ws, ThreadPool& pool) {
  constexpr int64_t kM = 7 - R;
  const int64_t C = s.c, O = s.o, tiles = s.tiles(), P = s.oh * s.ow;
  const int64_t per_image = kXi * tiles * (C + O);
  const int64_t block = std::clamp<int64_t>(kBlockFloats / per_image, 1, s.batch);
  const int chunks = static_cast<int>(std::min<int64_t>(s.batch, pool.size()));
  ThreadPool* gemm_pool = chunks == 1 ? &pool : nullptr;  // batch 1: threads go to sgemm
  // Slot 0: U. Other slots, one per thread: padded image, tile scratch, V, M, output scratch, yh.
  const int64_t v_size = kXi * block * tiles * C, m_size = kXi * block * tiles * O;
  const int64_t xh_size = s.padded_h() * s.padded_w() * C;
  const int64_t s_size = (6 * kM + 1) * O;
  const int64_t chunk_size = xh_size + kXi * C + v_size + m_size + s_size + P * O;
  const int64_t u_size = kXi * C * O;
  ws.reserve(1 + pool.size(), static_cast<size_t>(std::max({u_size, chunk_size, R * (R + 6) * O})));
  float* U = ws.slot(0);

  const int parts = static_cast<int>(std::min<int64_t>(C, pool.size()));
  pool.run(parts, [&](int part) {
    transform_filters<R>(f, C, O, C * part / parts, C * (part + 1) / parts, U, ws.slot(1 + part));
  });

  auto body = [&](int chunk, int64_t b0, int64_t b1) {
    float* xh = ws.slot(1 + chunk);
    float* tmp = xh + xh_size;
    float* V = tmp + kXi * C;
    float* M = V + v_size;
    float* sbuf = M + m_size;
    float* yh = sbuf + s_size;
    const int64_t row_stride = s.padded_w() * C;
    zero_border(s, xh);
    for (int64_t n0 = b0; n0 < b1; n0 += block) {
      const int64_t nb = std::min(block, b1 - n0), T = nb * tiles;
      for (int64_t i = 0; i < nb; ++i) {
        pack_padded(s, x + (n0 + i) * C * s.h * s.w, xh);
        for (int64_t ty = 0; ty < s.tiles_h(); ++ty)
          for (int64_t tx = 0; tx < s.tiles_w(); ++tx) {
            const int64_t t = i * tiles + ty * s.tiles_w() + tx;
            transform_input_tile(xh + (kM * ty) * row_stride + (kM * tx) * C, row_stride, C, tmp, V + t * C,
                                 T * C);
          }
      }
      for (int64_t xi = 0; xi < kXi; ++xi) {
        if (gemm_pool)  // one chunk (batch 1): the products are the only work to share
          sgemm(false, false, T, O, C, 1.0f, V + xi * T * C, C, U + xi * C * O, O, 0.0f, M + xi * T * O, O,
                gemm_pool);
        else
          sgemm_small_k(T, O, C, V + xi * T * C, C, U + xi * C * O, O, M + xi * T * O, O);
      }
      for (int64_t i = 0; i < nb; ++i) {
        for (int64_t ty = 0; ty < s.tiles_h(); ++ty)
          for (int64_t tx = 0; tx < s.tiles_w(); ++tx) {
            const int64_t t = i * tiles + ty * s.tiles_w() + tx;
            transform_output_tile<kM>(M + t * O, T * O, O, bias, sbuf, yh, kM * ty, kM * tx, s.oh, s.ow);
          }
        unpack_output(P, O, yh, y + (n0 + i) * O * P);
      }
    }
  };
  if (chunks == 1) {
    body(0, 0, s.batch);
  } else {
    // Groups of images to whichever thread is free, a few per thread (images are independent,
    // and a tile's sums do not depend on the group it is in).
    const int64_t group = std::min(block, (s.batch + 4 * chunks - 1) / (4 * chunks));
    pool.run_chunks((s.batch + group - 1) / group,
                    [&](int t, int64_t g) { body(t, g * group, std::min(s.batch, (g + 1) * group)); });
  }
}

}  // namespace

bool winograd_applies(const Conv2dDesc& d) {
  const bool kernel = (d.kernel_h == 5 && d.kernel_w == 5) || (d.kernel_h == 3 && d.kernel_w == 3);
  // The input gradient pads dy by kernel - 1 - pad, which must not be negative.
  const bool pad = d.pad_h < d.kernel_h && d.pad_w < d.kernel_w;
  return kernel && pad && d.unit_stride() && d.in_c >= 8 && d.out_c >= 8 && d.batch > 0;
}

namespace {

// Runs body(std::integral_constant<int, R>{}) for the kernel size R of a shape Winograd takes.
template <class Body>
void with_kernel_size(const Conv2dDesc& d, const char* where, Body&& body) {
  check_conv2d(d, where);
  STRAND_CHECK(
      winograd_applies(d), Shape,
      "Winograd takes stride-1 3x3 and 5x5 kernels padded by less than their size, 8+ channels each side",
      where);
  if (d.kernel_h == 5) {
    body(std::integral_constant<int, 5>{});
  } else {
    body(std::integral_constant<int, 3>{});
  }
}

}  // namespace

void winograd_conv2d_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b, float* y,
                             Workspace& ws, ThreadPool& pool) {
  with_kernel_size(d, "cpu::winograd_conv2d_forward", [&](auto kernel) {
    constexpr int R = decltype(kernel)::value;
    const Shape s{d.batch, d.in_c, d.in_h, d.in_w, d.out_c, d.out_h(), d.out_w(), d.pad_h, d.pad_w, R};
    winograd_conv<R>(s, x, FilterView{w, d.in_c * R * R, R * R, R, 1}, b, y, ws, pool);
  });
}

void winograd_conv2d_backward_data(const Conv2dDesc& d, const float* w, const float* dy, float* dx,
                                   Workspace& ws, ThreadPool& pool) {
  // dx[c] = sum over o of dy[o] correlated with w[o][c] rotated 180 degrees, on dy padded by
  // (kernel - 1 - pad): the output has the input's size again.
  with_kernel_size(d, "cpu::winograd_conv2d_backward_data", [&](auto kernel) {
    constexpr int R = decltype(kernel)::value;
    const Shape s{d.batch, d.out_c, d.out_h(),       d.out_w(),       d.in_c,
                  d.in_h,  d.in_w,  R - 1 - d.pad_h, R - 1 - d.pad_w, R};
    winograd_conv<R>(s, dy, FilterView{w + R * R - 1, R * R, d.in_c * R * R, -R, -1}, nullptr, dx, ws, pool);
  });
}

}  // namespace strand::cpu
