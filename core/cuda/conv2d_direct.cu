// Direct convolution for one input channel, a square 3x3 or 5x5 kernel, stride 1 and a bias
// (mnist_cnn's first layer). cuDNN's general algorithms took 0.9 ms forward and 1.8 ms for the filter
// gradient at batch 4096 on a layer whose arithmetic (5 GFLOP) is small next to its memory
// traffic; here each image is staged once in shared memory, the forward writes y once with the
// bias and ReLU applied, and the filter gradient reads dy once, computing the bias gradient in
// the same pass. Sums are in a fixed order (fixed image chunks, then chunks in order), so the
// results are the same bits every run.
#include <algorithm>
#include <cstdint>
#include <string>

#include <strand/core/cuda/check.hpp>
#include <strand/core/cuda/kernels.hpp>
#include <strand/core/error.hpp>

namespace strand::cuda {
namespace {

constexpr int kMaxPaddedPixels = 6144;  // the staged image: 24 KiB of shared memory
constexpr int kMaxWeights = 4096;       // out_c * k * k: 16 KiB (with the bias, under 48 KiB)
constexpr int kImagesPerChunk = 32;     // filter gradient: images summed by one block
constexpr int kGradThreads = 256;

struct Geometry {
  int H, W, OH, OW, PH, PW, ph, pw;  // input, output, padded input, padding
};

Geometry geometry(const Conv2dDesc& d) {
  return {int(d.in_h),
          int(d.in_w),
          int(d.out_h()),
          int(d.out_w()),
          int(d.in_h + 2 * d.pad_h),
          int(d.in_w + 2 * d.pad_w),
          int(d.pad_h),
          int(d.pad_w)};
}

// xs [PH,PW] = image x [H,W] with zero padding; all threads of the block take part.
__device__ void stage_image(const Geometry& g, const float* __restrict__ x, float* xs) {
  for (int i = threadIdx.x; i < g.PH * g.PW; i += blockDim.x) {
    const int r = i / g.PW - g.ph, c = i % g.PW - g.pw;
    xs[i] = r >= 0 && r < g.H && c >= 0 && c < g.W ? x[r * g.W + c] : 0.0f;
  }
}

// One block per image: y [n, o, :] = relu?(b[o] + sum_r w[o,r] * window_p[r]).
template <int K, bool Relu>
__global__ void direct_forward_kernel(Geometry g, int out_c, const float* __restrict__ x,
                                      const float* __restrict__ w, const float* __restrict__ b,
                                      float* __restrict__ y) {
  extern __shared__ float smem[];
  float* ws = smem;                // [out_c, K*K]
  float* bs = ws + out_c * K * K;  // [out_c]
  float* xs = bs + out_c;          // [PH, PW]
  const int64_t n = blockIdx.x;
  const int pixels = g.OH * g.OW;
  for (int i = threadIdx.x; i < out_c * K * K; i += blockDim.x) ws[i] = w[i];
  for (int i = threadIdx.x; i < out_c; i += blockDim.x) bs[i] = b[i];
  stage_image(g, x + n * g.H * g.W, xs);
  __syncthreads();
  float* yn = y + n * out_c * pixels;
  for (int p = threadIdx.x; p < pixels; p += blockDim.x) {
    const int oy = p / g.OW, ox = p - oy * g.OW;
    float win[K * K];
#pragma unroll
    for (int ky = 0; ky < K; ++ky)
#pragma unroll
      for (int kx = 0; kx < K; ++kx) win[ky * K + kx] = xs[(oy + ky) * g.PW + ox + kx];
    for (int o = 0; o < out_c; ++o) {
      float acc = bs[o];
#pragma unroll
      for (int r = 0; r < K * K; ++r) acc = fmaf(ws[o * K * K + r], win[r], acc);
      yn[o * pixels + p] = Relu ? (acc > 0.0f ? acc : 0.0f) : acc;
    }
  }
}

// Block (chunk, o): part [chunk, o, 0..K*K) = sum over the chunk's images and all pixels of
// dy[n,o,p] * window_p, part [chunk, o, K*K] = sum of dy[n,o,p]. Each thread sums its pixels
// in order; the block's threads are then added by a fixed tree (warp shuffles, then warps in
// order).
template <int K>
__global__ void direct_filter_grad_kernel(Geometry g, int64_t batch, int out_c, const float* __restrict__ x,
                                          const float* __restrict__ dy, float* __restrict__ part) {
  constexpr int R = K * K + 1;
  extern __shared__ float smem[];
  float* xs = smem;  // [PH, PW]
  __shared__ float warp_sums[kGradThreads / 32][R];
  const int64_t chunk = blockIdx.x;
  const int o = int(blockIdx.y);
  const int pixels = g.OH * g.OW;
  const int64_t n0 = chunk * kImagesPerChunk;
  const int64_t n1 = n0 + kImagesPerChunk < batch ? n0 + kImagesPerChunk : batch;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.0f;
  for (int64_t n = n0; n < n1; ++n) {
    __syncthreads();  // the previous image's readers are done with xs
    stage_image(g, x + n * g.H * g.W, xs);
    __syncthreads();
    const float* dyn = dy + (n * out_c + o) * pixels;
    for (int p = threadIdx.x; p < pixels; p += blockDim.x) {
      const int oy = p / g.OW, ox = p - oy * g.OW;
      const float gv = dyn[p];
#pragma unroll
      for (int ky = 0; ky < K; ++ky)
#pragma unroll
        for (int kx = 0; kx < K; ++kx)
          acc[ky * K + kx] = fmaf(gv, xs[(oy + ky) * g.PW + ox + kx], acc[ky * K + kx]);
      acc[K * K] += gv;
    }
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float v = acc[r];
    for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
    if (lane == 0) warp_sums[warp][r] = v;
  }
  __syncthreads();
  for (int r = threadIdx.x; r < R; r += blockDim.x) {
    float s = warp_sums[0][r];
    for (int k = 1; k < kGradThreads / 32; ++k) s += warp_sums[k][r];
    part[(chunk * out_c + o) * R + r] = s;
  }
}

// dw [o, r] and db [o]: the chunks' partial sums added in chunk order.
__global__ void direct_filter_grad_finish(int64_t chunks, int out_c, int kk, const float* __restrict__ part,
                                          float* __restrict__ dw, float* __restrict__ db) {
  const int R = kk + 1;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < out_c * R; i += gridDim.x * blockDim.x) {
    float s = 0.0f;
    for (int64_t c = 0; c < chunks; ++c) s += part[c * out_c * R + i];
    const int o = i / R, r = i - o * R;
    if (r < kk) {
      dw[o * kk + r] = s;
    } else {
      db[o] = s;
    }
  }
}

int64_t chunks(const Conv2dDesc& d) { return (d.batch + kImagesPerChunk - 1) / kImagesPerChunk; }

// Threads per forward block: the pixels split into equal rounds of at most 256, in warps.
int forward_threads(int pixels) {
  const int rounds = (pixels + 255) / 256;
  return std::max(32, ((pixels + rounds - 1) / rounds + 31) / 32 * 32);
}

}  // namespace

bool conv2d_direct_supported(const Conv2dDesc& d, bool bias) {
  const int64_t k = d.kernel_h;
  return bias && d.unit_stride() && d.in_c == 1 && d.kernel_w == k && (k == 3 || k == 5) &&
         (d.in_h + 2 * d.pad_h) * (d.in_w + 2 * d.pad_w) <= kMaxPaddedPixels &&
         d.out_c * k * k <= kMaxWeights && d.batch < (int64_t{1} << 31) && d.out_c <= 65535;
}

int64_t conv2d_direct_partial_floats(const Conv2dDesc& d) {
  return chunks(d) * d.out_c * (d.kernel_h * d.kernel_w + 1);
}

void conv2d_direct_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b, float* y,
                           bool relu, cudaStream_t stream) {
  const Geometry g = geometry(d);
  const int k = int(d.kernel_h), out_c = int(d.out_c);
  const size_t smem = size_t(out_c * k * k + out_c + g.PH * g.PW) * sizeof(float);
  const dim3 grid(unsigned(d.batch)), block(unsigned(forward_threads(g.OH * g.OW)));
  if (k == 5) {
    if (relu)
      direct_forward_kernel<5, true><<<grid, block, smem, stream>>>(g, out_c, x, w, b, y);
    else
      direct_forward_kernel<5, false><<<grid, block, smem, stream>>>(g, out_c, x, w, b, y);
  } else {
    if (relu)
      direct_forward_kernel<3, true><<<grid, block, smem, stream>>>(g, out_c, x, w, b, y);
    else
      direct_forward_kernel<3, false><<<grid, block, smem, stream>>>(g, out_c, x, w, b, y);
  }
  STRAND_CUDA_CHECK(cudaGetLastError());
}

void conv2d_direct_backward_filter(const Conv2dDesc& d, const float* x, const float* dy, float* part,
                                   float* dw, float* db, cudaStream_t stream) {
  const Geometry g = geometry(d);
  const int k = int(d.kernel_h), out_c = int(d.out_c);
  const size_t smem = size_t(g.PH * g.PW) * sizeof(float);
  const dim3 grid(unsigned(chunks(d)), unsigned(out_c));
  if (k == 5) {
    direct_filter_grad_kernel<5><<<grid, kGradThreads, smem, stream>>>(g, d.batch, out_c, x, dy, part);
  } else {
    direct_filter_grad_kernel<3><<<grid, kGradThreads, smem, stream>>>(g, d.batch, out_c, x, dy, part);
  }
  STRAND_CUDA_CHECK(cudaGetLastError());
  const int outputs = out_c * (k * k + 1);
  direct_filter_grad_finish<<<unsigned((outputs + 255) / 256), 256, 0, stream>>>(chunks(d), out_c, k * k,
                                                                                 part, dw, db);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

}  // namespace strand::cuda
