// Batch assembly on the GPU: one thread per copied float, labels by the first column's threads.
#include "core/cuda/check.hpp"
#include "core/cuda/kernels.hpp"

namespace strand::cuda {
namespace {

__global__ void gather_kernel(int64_t b, int64_t sample, const int64_t* __restrict__ indices,
                              const float* __restrict__ images, const int32_t* __restrict__ labels,
                              float* __restrict__ x, int32_t* __restrict__ y) {
  const int64_t n = b * sample;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = e / sample, col = e % sample;
    const int64_t src = indices[row];
    x[e] = images[src * sample + col];
    if (col == 0) y[row] = labels[src];
  }
}

}  // namespace

void gather(int64_t b, int64_t sample, const int64_t* indices, const float* images,
            const int32_t* labels, float* x, int32_t* y, cudaStream_t stream) {
  if (b <= 0) return;
  gather_kernel<<<grid_for(b * sample), kBlock, 0, stream>>>(b, sample, indices, images, labels, x, y);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

}  // namespace strand::cuda
