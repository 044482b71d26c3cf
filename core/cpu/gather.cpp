// Batch assembly: copies the rows a batch's indices name into contiguous x and y.
#include <cstring>

#include <strand/core/cpu/kernels.hpp>

namespace strand::cpu {

void gather(int64_t b, int64_t sample, const int64_t* indices, const float* images, const int32_t* labels,
            float* x, int32_t* y, ThreadPool& pool) {
  // Rows are copied whole; threads only pay off when the batch moves enough bytes.
  pool.parallel_for(b, kParallelMin / sample + 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      std::memcpy(x + i * sample, images + indices[i] * sample, sizeof(float) * size_t(sample));
      y[i] = labels[indices[i]];
    }
  });
}

}  // namespace strand::cpu
