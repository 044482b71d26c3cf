// Batch assembly on the GPU: one thread per copied float, labels by the first column's threads.
#include <strand/core/cuda/check.hpp>
#include <strand/core/cuda/kernels.hpp>

namespace strand::cuda {
namespace {

// Index: uint32_t when b * sample fits (64-bit division is slow on the GPU), else int64_t.
template <class Index>
__global__ void gather_kernel(Index b, Index sample, const int64_t* __restrict__ indices,
                              const float* __restrict__ images, const int32_t* __restrict__ labels,
                              float* __restrict__ x, int32_t* __restrict__ y) {
  const Index n = b * sample;
  for (Index e = blockIdx.x * Index(blockDim.x) + threadIdx.x; e < n; e += Index(gridDim.x) * blockDim.x) {
    const Index row = e / sample, col = e - row * sample;
    const int64_t src = indices[row];
    x[e] = images[src * sample + col];
    if (col == 0) y[row] = labels[src];
  }
}

}  // namespace

void gather(int64_t b, int64_t sample, const int64_t* indices, const float* images, const int32_t* labels,
            float* x, int32_t* y, cudaStream_t stream) {
  if (b <= 0) return;
  const int64_t n = b * sample;
  if (n < (int64_t{1} << 31)) {
    gather_kernel<uint32_t>
        <<<grid_for(n), kBlock, 0, stream>>>(uint32_t(b), uint32_t(sample), indices, images, labels, x, y);
  } else {
    gather_kernel<int64_t><<<grid_for(n), kBlock, 0, stream>>>(b, sample, indices, images, labels, x, y);
  }
  STRAND_CUDA_CHECK(cudaGetLastError());
}

}  // namespace strand::cuda
