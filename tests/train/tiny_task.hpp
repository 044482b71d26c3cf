// A small model and a learnable synthetic task, shared by the tests that train (single process,
// data-parallel ranks, parameter-server workers): fast enough for unit tests, and with dropout
// so that per-sample masks matter.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/layers.hpp>
#include <strand/io/dataset.hpp>
#include <strand/train/trainer.hpp>

namespace strand::test {

inline ModelArch tiny_cnn() {
  using namespace strand::layers;
  return {"tiny_cnn",
          Shape{1, 8, 8},
          {conv2d(4, 3, true), relu(), maxpool2x2(), flatten(), dense(16), relu(), dropout(0.4), dense(10)}};
}

// tiny_cnn with batch normalization after the convolution and the hidden dense layer and no
// dropout: its running statistics are state beside the parameters, and its per-rank
// normalization is what the distributed tests check.
inline ModelArch tiny_bn() {
  using namespace strand::layers;
  return {"tiny_bn",
          Shape{1, 8, 8},
          {conv2d(4, 3, true), batchnorm(0.9), relu(), maxpool2x2(), flatten(), dense(16), batchnorm(0.9),
           relu(), dense(10)}};
}

// n noisy 8x8 images; image i's label picks the bright anti-diagonal band (and, with
// row_bands, also a band of rows), so the label can be learned from the pixels.
inline io::Dataset banded(int64_t n, uint64_t seed, bool row_bands = false) {
  io::Dataset d;
  d.sample_shape = Shape{1, 8, 8};
  d.images.resize(size_t(n * 64));
  d.labels.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    const int32_t label = int32_t(mix64(seed + uint64_t(i)) % 10);
    d.labels[size_t(i)] = label;
    for (int64_t p = 0; p < 64; ++p) {
      const float noise = float(mix64(seed * 31 + uint64_t(i * 64 + p)) >> 40) / 16777216.0f;
      const bool on = (p / 8 + p % 8) % 10 == label || (row_bands && p / 7 == label);
      d.images[size_t(i * 64 + p)] = 0.3f * noise + (on ? 0.7f : 0.f);
    }
  }
  return d;
}

// The recipe of the equality tests (distributed runs against one process): `steps` steps of
// Adam at lr 1e-2 on a cosine schedule, seed 11.
inline TrainConfig tiny_recipe(int64_t batch, int64_t steps = 20) {
  TrainConfig c;
  c.batch_size = batch;
  c.seed = 11;
  c.max_steps = steps;
  c.epochs = 50;
  c.optimizer.lr = 1e-2f;
  c.schedule.kind = LrSchedule::Cosine;
  return c;
}

// One step of plain SGD (lr 0.1, constant) with batch `batch`, seed 11: a step whose update is
// linear in the gradients, so a distributed step is the mean of the ranks' own steps.
inline TrainConfig one_sgd_step(int64_t batch) {
  TrainConfig c = tiny_recipe(batch, 1);
  c.optimizer.kind = OptimizerKind::Sgd;
  c.optimizer.lr = 0.1f;
  c.schedule.kind = LrSchedule::Constant;
  return c;
}

// The samples rank `rank` of `world` trains on in step 0 of epoch 0 (config seed `seed`, batch
// `batch` per rank), as a data set of their own.
inline io::Dataset first_batch_of_rank(const io::Dataset& d, uint64_t seed, int64_t batch, int rank,
                                       int world) {
  const std::vector<int64_t> order = io::epoch_permutation(d.size(), seed, 0);
  const std::span<const int64_t> mine = io::shard(io::batch_slice(order, 0, batch * world), rank, world);
  io::Dataset out;
  out.sample_shape = d.sample_shape;
  const size_t sample = size_t(d.sample_shape.numel());
  for (const int64_t i : mine) {  // the tiny sets are float32
    out.images.insert(out.images.end(), d.images.begin() + i * sample, d.images.begin() + (i + 1) * sample);
    out.labels.push_back(d.labels[size_t(i)]);
  }
  return out;
}

// |a - ref| / |ref| (L2).
inline double rel_l2(const std::vector<float>& a, const std::vector<float>& ref) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    diff += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
    norm += double(ref[i]) * ref[i];
  }
  return std::sqrt(diff / norm);
}

}  // namespace strand::test
