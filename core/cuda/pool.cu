// Max and average pooling with any window and stride (PoolDesc), the CPU's results bit for bit
// (core/cpu/pool.cpp): the same comparisons, and every sum adds the same terms in the same order
// starting from zero. Forward runs one thread per output element. Backward gathers: one thread
// per input element adds the windows that cover it in row-major window order, which is the order
// in which the CPU's scatter loop adds them, so dx needs no clearing and no atomics. Max backward
// first finds each window's maximum in x (the CPU looks again too, never at y).
// The 2x2 stride-2 max pool has its own kernels (maxpool2x2.cu), which the layer picks.
#include <cstdint>
#include <string>

#include <strand/core/cuda/check.hpp>
#include <strand/core/cuda/kernels.hpp>
#include <strand/core/error.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cuda {
namespace {

// Index is uint32_t when every offset fits (64-bit division is slow on the GPU), else int64_t.
template <class Index>
struct Geometry {
  Index planes, H, W, oh, ow, kh, kw, sh, sw;
};

template <class Index>
Geometry<Index> geometry(const PoolDesc& d) {
  return {
      Index(d.batch * d.channels), Index(d.in_h),     Index(d.in_w),     Index(d.out_h()), Index(d.out_w()),
      Index(d.kernel_h),           Index(d.kernel_w), Index(d.stride_h), Index(d.stride_w)};
}

// Index within the plane of the first maximum of the window at (y0, x0), strict '>' in
// row-major order, as the CPU's window_argmax.
template <class Index>
__device__ Index window_argmax(const Geometry<Index>& g, const float* __restrict__ plane, Index y0,
                               Index x0) {
  Index best = y0 * g.W + x0;
  float m = plane[best];
  for (Index i = 0; i < g.kh; ++i) {
    for (Index j = 0; j < g.kw; ++j) {
      const Index at = (y0 + i) * g.W + x0 + j;
      if (plane[at] > m) {
        m = plane[at];
        best = at;
      }
    }
  }
  return best;
}

// y [P,oh,ow] from x [P,H,W] (P = batch * channels planes).
template <class Index, bool Max>
__global__ void pool_forward_kernel(Geometry<Index> g, float inv, const float* __restrict__ x,
                                    float* __restrict__ y) {
  const Index n = g.planes * g.oh * g.ow;
  for (Index i = blockIdx.x * Index{blockDim.x} + threadIdx.x; i < n; i += Index{gridDim.x} * blockDim.x) {
    const Index row = i / g.ow, ox = i - row * g.ow;  // row = p * oh + oy
    const Index p = row / g.oh, oy = row - p * g.oh;
    const float* plane = x + p * g.H * g.W;
    const Index y0 = oy * g.sh, x0 = ox * g.sw;
    if constexpr (Max) {
      y[i] = plane[window_argmax(g, plane, y0, x0)];
    } else {
      float s = 0.0f;
      for (Index a = 0; a < g.kh; ++a) {
        const float* r = plane + (y0 + a) * g.W + x0;
        for (Index b = 0; b < g.kw; ++b) s += r[b];
      }
      y[i] = s * inv;
    }
  }
}

// argmax [P,oh,ow]: the within-plane index of each window's first maximum.
template <class Index>
__global__ void pool_argmax_kernel(Geometry<Index> g, const float* __restrict__ x,
                                   int32_t* __restrict__ argmax) {
  const Index n = g.planes * g.oh * g.ow;
  for (Index i = blockIdx.x * Index{blockDim.x} + threadIdx.x; i < n; i += Index{gridDim.x} * blockDim.x) {
    const Index row = i / g.ow, ox = i - row * g.ow;
    const Index p = row / g.oh, oy = row - p * g.oh;
    argmax[i] = int32_t(window_argmax(g, x + p * g.H * g.W, oy * g.sh, ox * g.sw));
  }
}

template <class Index>
__device__ __forceinline__ Index lesser(Index a, Index b) {
  return a < b ? a : b;
}

// dx [P,H,W]: for each input element, the windows (oy, ox) covering it, oy then ox ascending:
// oy*sh <= iy < oy*sh + kh, so oy runs from the first window ending past iy to the last
// starting at or before it. Max adds dy where the window's maximum is this element; average
// adds dy * inv, the product rounded on its own as on the CPU (__fmul_rn: no fused multiply-add).
template <class Index, bool Max>
__global__ void pool_backward_kernel(Geometry<Index> g, float inv, const int32_t* __restrict__ argmax,
                                     const float* __restrict__ dy, float* __restrict__ dx) {
  const Index n = g.planes * g.H * g.W;
  for (Index i = blockIdx.x * Index{blockDim.x} + threadIdx.x; i < n; i += Index{gridDim.x} * blockDim.x) {
    const Index row = i / g.W, ix = i - row * g.W;  // row = p * H + iy
    const Index p = row / g.H, iy = row - p * g.H;
    const Index oy0 = iy < g.kh ? 0 : (iy - g.kh) / g.sh + 1, oy1 = lesser(iy / g.sh, g.oh - 1);
    const Index ox0 = ix < g.kw ? 0 : (ix - g.kw) / g.sw + 1, ox1 = lesser(ix / g.sw, g.ow - 1);
    const auto mine = int32_t(iy * g.W + ix);
    float s = 0.0f;
    for (Index oy = oy0; oy <= oy1; ++oy) {
      for (Index ox = ox0; ox <= ox1; ++ox) {
        const Index o = (p * g.oh + oy) * g.ow + ox;
        if constexpr (Max) {
          if (argmax[o] == mine) s += dy[o];
        } else {
          s += __fmul_rn(dy[o], inv);
        }
      }
    }
    dx[i] = s;
  }
}

// 32-bit indexing when the largest offset (and the grid-stride overshoot) fits.
bool fits_u32(int64_t n) { return n < (int64_t{1} << 31); }

int64_t input_floats(const PoolDesc& d) { return d.batch * d.channels * d.in_h * d.in_w; }
int64_t output_floats(const PoolDesc& d) { return d.batch * d.channels * d.out_h() * d.out_w(); }

// The shared checks, plus the argmax's int32 index within a plane.
void check_desc(const PoolDesc& d, const char* where) {
  check_pool(d, where);
  STRAND_CHECK(d.in_h * d.in_w < (int64_t{1} << 31), Shape,
               "pooling on the GPU takes planes of fewer than 2^31 pixels, got " + std::to_string(d.in_h) +
                   "x" + std::to_string(d.in_w),
               where);
}

template <class Index>
void launch_forward(PoolKind kind, const PoolDesc& d, float inv, const float* x, float* y,
                    cudaStream_t stream) {
  const Geometry<Index> g = geometry<Index>(d);
  const int64_t n = output_floats(d);
  if (kind == PoolKind::Max) {
    pool_forward_kernel<Index, true><<<grid_for(n), kBlock, 0, stream>>>(g, inv, x, y);
  } else {
    pool_forward_kernel<Index, false><<<grid_for(n), kBlock, 0, stream>>>(g, inv, x, y);
  }
  STRAND_CUDA_CHECK(cudaGetLastError());
}

template <class Index>
void launch_backward(PoolKind kind, const PoolDesc& d, float inv, const float* x, const float* dy, float* dx,
                     int32_t* argmax, cudaStream_t stream) {
  const Geometry<Index> g = geometry<Index>(d);
  const int64_t nx = input_floats(d);
  if (kind == PoolKind::Max) {
    pool_argmax_kernel<Index><<<grid_for(output_floats(d)), kBlock, 0, stream>>>(g, x, argmax);
    STRAND_CUDA_CHECK(cudaGetLastError());
    pool_backward_kernel<Index, true><<<grid_for(nx), kBlock, 0, stream>>>(g, inv, argmax, dy, dx);
  } else {
    pool_backward_kernel<Index, false><<<grid_for(nx), kBlock, 0, stream>>>(g, inv, nullptr, dy, dx);
  }
  STRAND_CUDA_CHECK(cudaGetLastError());
}

// The CPU's scale: 1/(kh*kw) in float.
float inverse_window(const PoolDesc& d) { return 1.0f / float(d.kernel_h * d.kernel_w); }

}  // namespace

size_t pool_scratch_bytes(PoolKind kind, const PoolDesc& d) {
  return kind == PoolKind::Max ? size_t(output_floats(d)) * sizeof(int32_t) : 0;
}

void pool_forward(PoolKind kind, const PoolDesc& d, const float* x, float* y, cudaStream_t stream) {
  check_desc(d, "cuda::pool_forward");
  if (fits_u32(input_floats(d))) {
    launch_forward<uint32_t>(kind, d, inverse_window(d), x, y, stream);
  } else {
    launch_forward<int64_t>(kind, d, inverse_window(d), x, y, stream);
  }
}

void pool_backward(PoolKind kind, const PoolDesc& d, const float* x, const float* dy, float* dx,
                   void* scratch, cudaStream_t stream) {
  check_desc(d, "cuda::pool_backward");
  auto* argmax = static_cast<int32_t*>(scratch);
  if (fits_u32(input_floats(d))) {
    launch_backward<uint32_t>(kind, d, inverse_window(d), x, dy, dx, argmax, stream);
  } else {
    launch_backward<int64_t>(kind, d, inverse_window(d), x, dy, dx, argmax, stream);
  }
}

}  // namespace strand::cuda
