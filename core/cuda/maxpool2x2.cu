// 2x2 stride-2 max pooling with the CPU's exact semantics: the first maximum in row-major
// window order wins (strict '>'), and odd trailing rows/columns are not pooled and get zero
// gradient.
#include <string>

#include "core/cuda/check.hpp"
#include "core/cuda/kernels.hpp"
#include "core/error.hpp"
#include "core/op_checks.hpp"

namespace strand::cuda {
namespace {

// One thread per output element y [P,oh,ow] (P = B*C planes), reading x [P,H,W].
__global__ void maxpool_forward_kernel(int64_t planes, int64_t H, int64_t W,
                                       const float* __restrict__ x, float* __restrict__ y) {
  const int64_t oh = H / 2, ow = W / 2, n = planes * oh * ow;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t ox = i % ow, oy = (i / ow) % oh, p = i / (ow * oh);
    const float* r0 = x + (p * H + 2 * oy) * W + 2 * ox;  // top-left of the window
    const float* r1 = r0 + W;
    float m = r0[0];
    m = r0[1] > m ? r0[1] : m;
    m = r1[0] > m ? r1[0] : m;
    m = r1[1] > m ? r1[1] : m;
    y[i] = m;
  }
}

// One thread per INPUT element dx [P,H,W], so every element (the unpooled trailing row and
// column included) is written exactly once and dx needs no clearing. An element gets its
// window's dy iff it is the first window position equal to the window's max y, as on the CPU.
__global__ void maxpool_backward_kernel(int64_t planes, int64_t H, int64_t W,
                                        const float* __restrict__ x, const float* __restrict__ y,
                                        const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t oh = H / 2, ow = W / 2, n = planes * H * W;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t ix = i % W, iy = (i / W) % H, p = i / (W * H);
    const int64_t ox = ix / 2, oy = iy / 2;
    if (ox >= ow || oy >= oh) {  // trailing odd row or column
      dx[i] = 0.0f;
      continue;
    }
    const int64_t o = (p * oh + oy) * ow + ox;
    const float* r0 = x + (p * H + 2 * oy) * W + 2 * ox;
    const float* r1 = r0 + W;
    const float m = y[o];
    // Window position (0..3, row-major) of the first element equal to the max.
    const int first = r0[0] == m ? 0 : r0[1] == m ? 1 : r1[0] == m ? 2 : r1[1] == m ? 3 : 4;
    const int mine = int((iy - 2 * oy) * 2 + (ix - 2 * ox));
    dx[i] = mine == first ? dy[o] : 0.0f;
  }
}

}  // namespace

void maxpool2x2_forward(const Pool2dDesc& d, const float* x, float* y, cudaStream_t stream) {
  check_maxpool2x2(d, "cuda::maxpool2x2_forward");
  const int64_t n = d.batch * d.channels * d.out_h() * d.out_w();
  maxpool_forward_kernel<<<grid_for(n), kBlock, 0, stream>>>(d.batch * d.channels, d.in_h,
                                                             d.in_w, x, y);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

void maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y, const float* dy,
                         float* dx, cudaStream_t stream) {
  check_maxpool2x2(d, "cuda::maxpool2x2_backward");
  const int64_t n = d.batch * d.channels * d.in_h * d.in_w;
  maxpool_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(d.batch * d.channels, d.in_h,
                                                              d.in_w, x, y, dy, dx);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

}  // namespace strand::cuda
