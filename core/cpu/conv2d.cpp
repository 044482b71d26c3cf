// Conv2d as im2col + sgemm, one image at a time, images split into contiguous chunks, one per
// thread (any stride and padding). Stride-1 3x3 and 5x5 kernels over enough channels take Winograd instead
// (conv2d_winograd.hpp) for the forward pass and the input gradient; the weight gradient always comes from
// im2col. Per image: col [K,P] with K = in_c*kh*kw, P = oh*ow;
//   forward   y_b [out_c,P]  = w [out_c,K] * col
//   dx        dcol [K,P]     = w^T * dy_b, then col2im adds dcol back into dx_b
//   dw        dw [out_c,K]  += dy_b * col^T   (partial per chunk, summed in chunk order)
#include <algorithm>
#include <cstring>
#include <string>

#include <strand/core/cpu/conv2d_winograd.hpp>
#include <strand/core/cpu/gemm.hpp>
#include <strand/core/cpu/kernels.hpp>
#include <strand/core/error.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cpu {
namespace {

// ceil(a / b) for b > 0 and any sign of a.
inline int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// Valid output columns [lo, hi) for kernel column j: those reading inside the image
// (0 <= ox*stride + j - pad < in).
inline void valid_range(int64_t j, int64_t pad, int64_t stride, int64_t in, int64_t out, int64_t& lo,
                        int64_t& hi) {
  lo = std::clamp<int64_t>(ceil_div(pad - j, stride), 0, out);
  hi = std::clamp<int64_t>(ceil_div(in + pad - j, stride), lo, out);
}

// x_b [in_c,H,W] -> col [K,P]; row (c,i,j), column (oy,ox) holds
// x_b[c, oy*sh+i-ph, ox*sw+j-pw] or 0.
void im2col(const Conv2dDesc& d, const float* x, float* col) {
  const int64_t oh = d.out_h(), ow = d.out_w(), sh = d.stride_h, sw = d.stride_w;
  for (int64_t c = 0; c < d.in_c; ++c) {
    for (int64_t i = 0; i < d.kernel_h; ++i) {
      for (int64_t j = 0; j < d.kernel_w; ++j) {
        int64_t lo, hi;
        valid_range(j, d.pad_w, sw, d.in_w, ow, lo, hi);
        float* row = col + ((c * d.kernel_h + i) * d.kernel_w + j) * oh * ow;
        if (lo == hi) {  // this kernel column only ever reads padding
          std::memset(row, 0, sizeof(float) * oh * ow);
          continue;
        }
        for (int64_t oy = 0; oy < oh; ++oy) {
          float* out = row + oy * ow;
          const int64_t iy = oy * sh + i - d.pad_h;
          if (iy < 0 || iy >= d.in_h) {
            std::memset(out, 0, sizeof(float) * ow);
            continue;
          }
          // Input column of output column lo: inside the row since lo < hi.
          const float* in = x + (c * d.in_h + iy) * d.in_w + (lo * sw + j - d.pad_w);
          std::fill(out, out + lo, 0.0f);
          if (sw == 1) {
            std::memcpy(out + lo, in, sizeof(float) * (hi - lo));
          } else {
            for (int64_t k = 0; k < hi - lo; ++k) out[lo + k] = in[k * sw];
          }
          std::fill(out + hi, out + ow, 0.0f);
        }
      }
    }
  }
}

// dx_b [in_c,H,W] = sum of col [K,P] entries over the positions im2col read them from.
void col2im(const Conv2dDesc& d, const float* col, float* dx) {
  const int64_t oh = d.out_h(), ow = d.out_w(), sh = d.stride_h, sw = d.stride_w;
  std::memset(dx, 0, sizeof(float) * d.in_c * d.in_h * d.in_w);
  for (int64_t c = 0; c < d.in_c; ++c) {
    for (int64_t i = 0; i < d.kernel_h; ++i) {
      for (int64_t j = 0; j < d.kernel_w; ++j) {
        int64_t lo, hi;
        valid_range(j, d.pad_w, sw, d.in_w, ow, lo, hi);
        if (lo == hi) continue;
        const float* row = col + ((c * d.kernel_h + i) * d.kernel_w + j) * oh * ow;
        for (int64_t oy = 0; oy < oh; ++oy) {
          const int64_t iy = oy * sh + i - d.pad_h;
          if (iy < 0 || iy >= d.in_h) continue;
          float* out = dx + (c * d.in_h + iy) * d.in_w + (lo * sw + j - d.pad_w);
          const float* in = row + oy * ow + lo;
          if (sw == 1) {
#pragma omp simd
            for (int64_t k = 0; k < hi - lo; ++k) out[k] += in[k];
          } else {
            for (int64_t k = 0; k < hi - lo; ++k) out[k * sw] += in[k];
          }
        }
      }
    }
  }
}

// Runs body(chunk, first_image, end_image) for `chunks` contiguous batch ranges. With one
// chunk it runs on the calling thread so the body's sgemm may use every thread itself.
template <class Body>
void for_chunks(ThreadPool& pool, int64_t batch, int chunks, Body&& body) {
  auto range = [&](int c) { return batch * c / chunks; };
  if (chunks == 1) {
    body(0, int64_t{0}, batch);
    return;
  }
  pool.run(chunks, [&](int c) { body(c, range(c), range(c + 1)); });
}

int chunk_count(int64_t batch, const ThreadPool& pool) {
  return static_cast<int>(std::min<int64_t>(batch, pool.size()));
}

}  // namespace

void conv2d_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b, float* y,
                    Workspace& ws, ThreadPool& pool) {
  check_conv2d(d, "cpu::conv2d_forward");
  if (winograd_applies(d)) {
    winograd_conv2d_forward(d, x, w, b, y, ws, pool);
    return;
  }
  const int64_t K = d.in_c * d.kernel_h * d.kernel_w, P = d.out_h() * d.out_w();
  auto image = [&](float* col, int64_t n, ThreadPool* gemm_pool) {  // col: [K,P] scratch
    float* yb = y + n * d.out_c * P;                                // [out_c,P]
    im2col(d, x + n * d.in_c * d.in_h * d.in_w, col);
    sgemm(false, false, d.out_c, P, K, 1.0f, w, K, col, P, 0.0f, yb, P, gemm_pool);
    for (int64_t o = 0; b && o < d.out_c; ++o) {
      const float bias = b[o];
#pragma omp simd
      for (int64_t p = 0; p < P; ++p) yb[o * P + p] += bias;
    }
  };
  if (chunk_count(d.batch, pool) == 1) {  // one image or one thread: threads go to sgemm
    ws.reserve(1, static_cast<size_t>(K * P));
    for (int64_t n = 0; n < d.batch; ++n) image(ws.slot(0), n, &pool);
    return;
  }
  // One image at a time to whichever thread is free (images are independent).
  ws.reserve(pool.size(), static_cast<size_t>(K * P));
  pool.run_chunks(d.batch, [&](int t, int64_t n) { image(ws.slot(t), n, nullptr); });
}

void conv2d_backward(const Conv2dDesc& d, const float* x, const float* w, const float* dy, float* dx,
                     float* dw, float* db, Workspace& ws, ThreadPool& pool) {
  check_conv2d(d, "cpu::conv2d_backward");
  const bool winograd_dx = dx && winograd_applies(d);
  const int64_t K = d.in_c * d.kernel_h * d.kernel_w, P = d.out_h() * d.out_w();
  const int64_t wsize = d.out_c * K;
  const int chunks = chunk_count(d.batch, pool);
  ThreadPool* gemm_pool = chunks == 1 ? &pool : nullptr;
  // Slot layout: col [K,P], dcol [K,P], dw partial [out_c,K] (chunk 0 writes dw directly).
  ws.reserve(chunks, static_cast<size_t>(2 * K * P + wsize));
  for_chunks(pool, d.batch, chunks, [&](int c, int64_t b0, int64_t b1) {
    float* col = ws.slot(c);
    float* dcol = col + K * P;
    float* dw_part = c == 0 ? dw : dcol + K * P;
    for (int64_t n = b0; n < b1; ++n) {
      const float* dyb = dy + n * d.out_c * P;  // [out_c,P]
      im2col(d, x + n * d.in_c * d.in_h * d.in_w, col);
      sgemm(false, true, d.out_c, K, P, 1.0f, dyb, P, col, P, n == b0 ? 0.0f : 1.0f, dw_part, K, gemm_pool);
      if (dx && !winograd_dx) {
        sgemm(true, false, K, P, d.out_c, 1.0f, w, K, dyb, P, 0.0f, dcol, P, gemm_pool);
        col2im(d, dcol, dx + n * d.in_c * d.in_h * d.in_w);
      }
    }
  });
  // Partials are added in chunk order, so dw does not depend on which thread finished first.
  for (int c = 1; c < chunks; ++c) {
    const float* part = ws.slot(c) + 2 * K * P;  // [out_c,K]
#pragma omp simd
    for (int64_t e = 0; e < wsize; ++e) dw[e] += part[e];
  }
  // db[o] = sum over images and pixels of dy, summed in a fixed order per channel.
  if (db)
    pool.parallel_for(d.out_c, kParallelMin / (d.batch * P), [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        float s = 0.0f;
        for (int64_t n = 0; n < d.batch; ++n) {
          const float* row = dy + (n * d.out_c + o) * P;
          float t = 0.0f;
#pragma omp simd reduction(+ : t)
          for (int64_t p = 0; p < P; ++p) t += row[p];
          s += t;
        }
        db[o] = s;
      }
    });
  if (winograd_dx) winograd_conv2d_backward_data(d, w, dy, dx, ws, pool);
}

}  // namespace strand::cpu
