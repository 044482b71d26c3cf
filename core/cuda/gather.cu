// Batch assembly on the GPU: one thread per output float, labels by each sample's first
// thread. Conversion (u8_pixel) and the augmentation draw (augment_draw) are backend.hpp's
// constexpr functions, callable here through --expt-relaxed-constexpr, so the bits are the CPU's.
#include <strand/core/cuda/check.hpp>
#include <strand/core/cuda/kernels.hpp>

namespace strand::cuda {
namespace {

__device__ inline float to_f32(float v) { return v; }
__device__ inline float to_f32(uint8_t v) { return u8_pixel(v); }

// Index: uint32_t when b * sample fits (64-bit division is slow on the GPU), else int64_t.
// out[c][y][x] = in[c][y - dy][flip ? W-1-(x-dx) : x-dx], zero outside the image.
template <class Index, class T>
__global__ void gather_kernel(GatherDesc d, uint64_t key, const int64_t* __restrict__ indices,
                              const T* __restrict__ images, const int32_t* __restrict__ labels,
                              float* __restrict__ x, int32_t* __restrict__ y) {
  const Index sample = Index(d.sample()), h = Index(d.height), w = Index(d.width), plane = h * w;
  const Index n = Index(d.batch) * sample;
  for (Index e = blockIdx.x * Index(blockDim.x) + threadIdx.x; e < n; e += Index(gridDim.x) * blockDim.x) {
    const Index row = e / sample, col = e - row * sample;
    const int64_t src = indices[row];
    if (col == 0) y[row] = labels[src];
    const T* in = images + src * int64_t(sample);
    if (!d.augment.any()) {
      x[e] = to_f32(in[col]);
      continue;
    }
    const Index c = col / plane, rem = col - c * plane, yy = rem / w, xx = rem - yy * w;
    const AugmentDraw a = augment_draw(key, uint64_t(src), d.augment);
    const int64_t sy = int64_t(yy) - a.dy, sx = int64_t(xx) - a.dx;
    const bool inside = sy >= 0 && sy < int64_t(h) && sx >= 0 && sx < int64_t(w);
    x[e] = inside ? to_f32(in[(int64_t(c) * h + sy) * w + (a.flip ? int64_t(w) - 1 - sx : sx)]) : 0.0f;
  }
}

template <class T>
void launch(const GatherDesc& d, const int64_t* indices, const T* images, const int32_t* labels, float* x,
            int32_t* y, cudaStream_t stream) {
  const int64_t n = d.batch * d.sample();
  const uint64_t key = augment_key(d.seed, d.epoch);
  if (n < (int64_t{1} << 31)) {
    gather_kernel<uint32_t, T><<<grid_for(n), kBlock, 0, stream>>>(d, key, indices, images, labels, x, y);
  } else {
    gather_kernel<int64_t, T><<<grid_for(n), kBlock, 0, stream>>>(d, key, indices, images, labels, x, y);
  }
  STRAND_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void gather(const GatherDesc& d, const int64_t* indices, const void* images, const int32_t* labels, float* x,
            int32_t* y, cudaStream_t stream) {
  if (d.batch <= 0) return;
  if (d.pixels == PixelType::U8)
    launch(d, indices, static_cast<const uint8_t*>(images), labels, x, y, stream);
  else
    launch(d, indices, static_cast<const float*>(images), labels, x, y, stream);
}

}  // namespace strand::cuda
