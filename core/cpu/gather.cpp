// Batch assembly: the rows a batch's indices name, converted to float32 and moved as their
// augmentation draws say, into contiguous x and y.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include <strand/core/cpu/kernels.hpp>

namespace strand::cpu {
namespace {

inline float to_f32(float v) { return v; }
inline float to_f32(uint8_t v) { return u8_pixel(v); }

// One sample: out[c][y][x] = in[c][y - dy][flip ? W-1-(x-dx) : x-dx], zero outside the image.
template <class T>
void gather_sample(const GatherDesc& d, const T* in, AugmentDraw a, float* out) {
  const int64_t h = d.height, w = d.width;
  // The columns with a source pixel: 0 <= x - dx < w.
  const int64_t x0 = std::clamp<int64_t>(a.dx, 0, w), x1 = std::clamp<int64_t>(w + a.dx, 0, w);
  for (int64_t c = 0; c < d.channels; ++c)
    for (int64_t y = 0; y < h; ++y) {
      float* row = out + (c * h + y) * w;
      const int64_t sy = y - a.dy;
      if (sy < 0 || sy >= h || x0 >= x1) {
        std::fill(row, row + w, 0.0f);
        continue;
      }
      const T* src = in + (c * h + sy) * w;
      std::fill(row, row + x0, 0.0f);
      std::fill(row + x1, row + w, 0.0f);
      if (a.flip) {
        for (int64_t x = x0; x < x1; ++x) row[x] = to_f32(src[w - 1 - (x - a.dx)]);
      } else if constexpr (std::is_same_v<T, float>) {
        std::memcpy(row + x0, src + (x0 - a.dx), sizeof(float) * size_t(x1 - x0));
      } else {
        for (int64_t x = x0; x < x1; ++x) row[x] = to_f32(src[x - a.dx]);
      }
    }
}

template <class T>
void gather_rows(const GatherDesc& d, const int64_t* indices, const T* images, const int32_t* labels,
                 float* x, int32_t* y, ThreadPool& pool) {
  const int64_t sample = d.sample();
  const uint64_t key = augment_key(d.seed, d.epoch);
  pool.parallel_for(d.batch, kParallelMin / sample + 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t src = indices[i];
      y[i] = labels[src];
      if constexpr (std::is_same_v<T, float>) {
        if (!d.augment.any()) {  // a plain copy of the whole sample
          std::memcpy(x + i * sample, images + src * sample, sizeof(float) * size_t(sample));
          continue;
        }
      }
      const AugmentDraw a = d.augment.any() ? augment_draw(key, uint64_t(src), d.augment) : AugmentDraw{};
      gather_sample(d, images + src * sample, a, x + i * sample);
    }
  });
}

}  // namespace

void gather(const GatherDesc& d, const int64_t* indices, const void* images, const int32_t* labels, float* x,
            int32_t* y, ThreadPool& pool) {
  if (d.pixels == PixelType::U8)
    gather_rows(d, indices, static_cast<const uint8_t*>(images), labels, x, y, pool);
  else
    gather_rows(d, indices, static_cast<const float*>(images), labels, x, y, pool);
}

}  // namespace strand::cpu
