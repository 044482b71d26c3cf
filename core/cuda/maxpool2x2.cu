// 2x2 stride-2 max pooling with the CPU's exact semantics: the first maximum in row-major
// window order wins (strict '>'), and odd trailing rows/columns are not pooled and get zero
// gradient.
#include <cstdint>
#include <string>

#include <strand/core/cuda/check.hpp>
#include <strand/core/cuda/kernels.hpp>
#include <strand/core/error.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cuda {
namespace {

// Index is uint32_t when every offset fits (the common case), else int64_t: 64-bit division
// costs tens of instructions on the GPU, and these kernels are otherwise pure memory traffic.

// One thread per output element y [P,oh,ow] (P = B*C planes), reading x [P,H,W].
template <class Index>
__global__ void maxpool_forward_kernel(Index planes, Index H, Index W, const float* __restrict__ x,
                                       float* __restrict__ y) {
  const Index oh = H / 2, ow = W / 2, n = planes * oh * ow;
  for (Index i = blockIdx.x * Index{blockDim.x} + threadIdx.x; i < n; i += Index{gridDim.x} * blockDim.x) {
    const Index row = i / ow, ox = i - row * ow;  // row = p * oh + oy
    const Index p = row / oh, oy = row - p * oh;
    const float* r0 = x + (p * H + 2 * oy) * W + 2 * ox;  // top-left of the window
    const float* r1 = r0 + W;
    float m = r0[0];
    m = r0[1] > m ? r0[1] : m;
    m = r1[0] > m ? r1[0] : m;
    m = r1[1] > m ? r1[1] : m;
    y[i] = m;
  }
}

// Window position (0..3, row-major) of the first element equal to the max m, as on the CPU.
__device__ __forceinline__ int first_max(float a, float b, float c, float d, float m) {
  return a == m ? 0 : b == m ? 1 : c == m ? 2 : d == m ? 3 : 4;
}

// Even H and W (and 8-byte aligned x, dx): one thread per window writes its four dx; every dx element is
// written once. Relu: also zero where x <= 0 (the ReLU before the pool, fused).
template <class Index, bool Relu>
__global__ void maxpool_backward_even_kernel(Index planes, Index H, Index W, const float* __restrict__ x,
                                             const float* __restrict__ y, const float* __restrict__ dy,
                                             float* __restrict__ dx) {
  const Index oh = H / 2, ow = W / 2, n = planes * oh * ow;
  for (Index i = blockIdx.x * Index{blockDim.x} + threadIdx.x; i < n; i += Index{gridDim.x} * blockDim.x) {
    const Index row = i / ow, ox = i - row * ow;
    const Index p = row / oh, oy = row - p * oh;
    const Index top = (p * H + 2 * oy) * W + 2 * ox;
    // Even W keeps every window's pair 8-byte aligned.
    const float2 a = *reinterpret_cast<const float2*>(x + top);
    const float2 b = *reinterpret_cast<const float2*>(x + top + W);
    const float g = dy[i];
    const int f = first_max(a.x, a.y, b.x, b.y, y[i]);
    // Only the window's max can pass, so the ReLU mask is that one value's sign.
    const float h = !Relu || (f == 0 ? a.x : f == 1 ? a.y : f == 2 ? b.x : b.y) > 0.0f ? g : 0.0f;
    *reinterpret_cast<float2*>(dx + top) = make_float2(f == 0 ? h : 0.0f, f == 1 ? h : 0.0f);
    *reinterpret_cast<float2*>(dx + top + W) = make_float2(f == 2 ? h : 0.0f, f == 3 ? h : 0.0f);
  }
}

// Any H and W: one thread per INPUT element dx [P,H,W], so the unpooled trailing row and
// column are written too (with zero) and dx needs no clearing. Relu: as above.
template <class Index, bool Relu>
__global__ void maxpool_backward_kernel(Index planes, Index H, Index W, const float* __restrict__ x,
                                        const float* __restrict__ y, const float* __restrict__ dy,
                                        float* __restrict__ dx) {
  const Index oh = H / 2, ow = W / 2, n = planes * H * W;
  for (Index i = blockIdx.x * Index{blockDim.x} + threadIdx.x; i < n; i += Index{gridDim.x} * blockDim.x) {
    const Index row = i / W, ix = i - row * W;  // row = p * H + iy
    const Index p = row / H, iy = row - p * H;
    const Index ox = ix / 2, oy = iy / 2;
    if (ox >= ow || oy >= oh) {  // trailing odd row or column
      dx[i] = 0.0f;
      continue;
    }
    const Index o = (p * oh + oy) * ow + ox;
    const float* r0 = x + (p * H + 2 * oy) * W + 2 * ox;
    const float* r1 = r0 + W;
    const int f = first_max(r0[0], r0[1], r1[0], r1[1], y[o]);
    const int mine = int((iy - 2 * oy) * 2 + (ix - 2 * ox));
    dx[i] = mine == f && (!Relu || (mine < 2 ? r0 : r1)[mine & 1] > 0.0f) ? dy[o] : 0.0f;
  }
}

// 32-bit indexing when the largest offset (and the grid-stride overshoot) fits.
bool fits_u32(int64_t n) { return n < (int64_t{1} << 31); }

template <bool Relu>
void launch_backward(const Pool2dDesc& d, const float* x, const float* y, const float* dy, float* dx,
                     cudaStream_t stream) {
  const int64_t planes = d.batch * d.channels;
  const int64_t nx = planes * d.in_h * d.in_w;
  const bool small = fits_u32(nx);
  const bool aligned = (reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(dx)) % 8 == 0;
  if (d.in_h % 2 == 0 && d.in_w % 2 == 0 && aligned) {
    const int64_t n = planes * d.out_h() * d.out_w();
    if (small) {
      maxpool_backward_even_kernel<uint32_t, Relu><<<grid_for(n), kBlock, 0, stream>>>(
          uint32_t(planes), uint32_t(d.in_h), uint32_t(d.in_w), x, y, dy, dx);
    } else {
      maxpool_backward_even_kernel<int64_t, Relu>
          <<<grid_for(n), kBlock, 0, stream>>>(planes, d.in_h, d.in_w, x, y, dy, dx);
    }
  } else if (small) {
    maxpool_backward_kernel<uint32_t, Relu><<<grid_for(nx), kBlock, 0, stream>>>(
        uint32_t(planes), uint32_t(d.in_h), uint32_t(d.in_w), x, y, dy, dx);
  } else {
    maxpool_backward_kernel<int64_t, Relu>
        <<<grid_for(nx), kBlock, 0, stream>>>(planes, d.in_h, d.in_w, x, y, dy, dx);
  }
  STRAND_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void maxpool2x2_forward(const Pool2dDesc& d, const float* x, float* y, cudaStream_t stream) {
  check_maxpool2x2(d, "cuda::maxpool2x2_forward");
  const int64_t planes = d.batch * d.channels;
  const int64_t n = planes * d.out_h() * d.out_w();
  if (fits_u32(planes * d.in_h * d.in_w)) {
    maxpool_forward_kernel<uint32_t>
        <<<grid_for(n), kBlock, 0, stream>>>(uint32_t(planes), uint32_t(d.in_h), uint32_t(d.in_w), x, y);
  } else {
    maxpool_forward_kernel<int64_t><<<grid_for(n), kBlock, 0, stream>>>(planes, d.in_h, d.in_w, x, y);
  }
  STRAND_CUDA_CHECK(cudaGetLastError());
}

void maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y, const float* dy, float* dx,
                         bool relu, cudaStream_t stream) {
  check_maxpool2x2(d, "cuda::maxpool2x2_backward");
  if (relu) {
    launch_backward<true>(d, x, y, dy, dx, stream);
  } else {
    launch_backward<false>(d, x, y, dy, dx, stream);
  }
}

}  // namespace strand::cuda
