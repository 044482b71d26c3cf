// The batch gather with pixel conversion and augmentation: the CPU kernel against a reference
// written from the definition (backend.hpp GatherDesc), uint8 against float32 storage, the
// draws (range, balance, determinism), the augmentation parser, and training with
// augmentation: deterministic, exactly resumable, refused where samples have no image shape.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/error.hpp>
#include <strand/io/dataset.hpp>
#include <strand/train/trainer.hpp>
#include "tests/io/io_test_util.hpp"
#include "tests/train/tiny_task.hpp"

namespace strand {
namespace {

namespace fs = std::filesystem;
using io::testing::TempDir;
using test::banded;
using test::tiny_cnn;

// out[c][y][x] = in[c][y - dy][flip ? W-1-(x-dx) : x-dx], zero where that is outside the image.
template <class T>
std::vector<float> reference_gather(const GatherDesc& d, const std::vector<int64_t>& idx,
                                    const std::vector<T>& in) {
  std::vector<float> out;
  const uint64_t key = augment_key(d.seed, d.epoch);
  for (int64_t src : idx) {
    const AugmentDraw a = d.augment.any() ? augment_draw(key, uint64_t(src), d.augment) : AugmentDraw{};
    for (int64_t c = 0; c < d.channels; ++c)
      for (int64_t y = 0; y < d.height; ++y)
        for (int64_t x = 0; x < d.width; ++x) {
          const int64_t sy = y - a.dy, sx0 = x - a.dx, sx = a.flip ? d.width - 1 - sx0 : sx0;
          float v = 0;
          if (sy >= 0 && sy < d.height && sx0 >= 0 && sx0 < d.width) {
            const T p = in[size_t(((src * d.channels + c) * d.height + sy) * d.width + sx)];
            if constexpr (std::is_same_v<T, uint8_t>)
              v = float(p) / 255.0f;
            else
              v = p;
          }
          out.push_back(v);
        }
  }
  return out;
}

struct Gathered {
  std::vector<float> x;
  std::vector<int32_t> y;
};

Gathered cpu_gather(const GatherDesc& d, const std::vector<int64_t>& idx, const void* images,
                    const std::vector<int32_t>& labels, int threads = 2) {
  auto be = make_cpu_backend(threads);
  Gathered g{std::vector<float>(size_t(d.batch * d.sample()), -7.0f),
             std::vector<int32_t>(size_t(d.batch), -1)};
  be->gather(d, idx.data(), images, labels.data(), g.x.data(), g.y.data());
  return g;
}

TEST(Gather, MatchesTheReferenceForEveryPixelTypeAndAugmentation) {
  const int64_t n = 40;
  const Augmentation none, shift{.shift = 2}, flip{.flip = true}, both{.shift = 3, .flip = true},
      huge{.shift = 9};  // moves beyond the image: blank samples
  for (const Shape& image : {Shape{3, 5, 7}, Shape{1, 28, 28}, Shape{2, 1, 6}})
    for (const Augmentation& aug : {none, shift, flip, both, huge}) {
      SCOPED_TRACE(image.str() + " " + to_string(aug));
      GatherDesc d{.batch = 0, .channels = image[0], .height = image[1], .width = image[2]};
      d.augment = aug;
      d.seed = 5;
      d.epoch = 2;
      std::vector<int64_t> idx;
      for (int64_t i = 0; i < 33; ++i) idx.push_back((i * 17) % n);
      d.batch = int64_t(idx.size());
      std::vector<uint8_t> u8(size_t(n * d.sample()));
      std::vector<float> f32(u8.size());
      for (size_t i = 0; i < u8.size(); ++i) {
        u8[i] = uint8_t(mix64(i) & 0xff);
        f32[i] = float(mix64(i + 99) >> 40) / 16777216.0f - 0.5f;
      }
      std::vector<int32_t> labels(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) labels[size_t(i)] = int32_t(i * 3 % 11);

      d.pixels = PixelType::F32;
      const Gathered gf = cpu_gather(d, idx, f32.data(), labels);
      EXPECT_EQ(gf.x, reference_gather(d, idx, f32));
      d.pixels = PixelType::U8;
      const Gathered gu = cpu_gather(d, idx, u8.data(), labels);
      EXPECT_EQ(gu.x, reference_gather(d, idx, u8));
      for (size_t i = 0; i < idx.size(); ++i) EXPECT_EQ(gu.y[i], labels[size_t(idx[i])]);
      // Threads split the batch only: one thread gives the same bits.
      EXPECT_EQ(cpu_gather(d, idx, u8.data(), labels, 1).x, gu.x);
      // uint8 storage gathers what its float32 conversion gathers.
      io::Dataset set{image, {}, labels, PixelType::U8, u8};
      const io::Dataset as_f32 = io::to_f32(set);
      d.pixels = PixelType::F32;
      EXPECT_EQ(cpu_gather(d, idx, as_f32.images.data(), labels).x, gu.x);
    }
}

// Worked by hand on one 1x3x3 image, for draws found among the sample indices.
TEST(Gather, MovesAndMirrorsAsDocumented) {
  const Augmentation aug{.shift = 1, .flip = true};
  const uint64_t key = augment_key(1, 0);
  int64_t wanted = -1;
  for (int64_t i = 0; i < 1000 && wanted < 0; ++i) {
    const AugmentDraw a = augment_draw(key, uint64_t(i), aug);
    if (a.dy == 1 && a.dx == -1 && a.flip) wanted = i;
  }
  ASSERT_GE(wanted, 0) << "no draw (dy 1, dx -1, flip) among 1000 indices";
  std::vector<float> images(size_t((wanted + 1) * 9), 0.0f);
  for (int p = 0; p < 9; ++p) images[size_t(wanted * 9 + p)] = float(p + 1);  // rows 1 2 3 / 4 5 6 / 7 8 9
  const std::vector<int32_t> labels(size_t(wanted + 1), 0);
  GatherDesc d{.batch = 1, .channels = 1, .height = 3, .width = 3, .augment = aug, .seed = 1, .epoch = 0};
  // Mirrored: 3 2 1 / 6 5 4 / 9 8 7; then down one row and left one column.
  EXPECT_EQ(cpu_gather(d, {wanted}, images.data(), labels).x,
            (std::vector<float>{0, 0, 0, 2, 1, 0, 5, 4, 0}));
}

TEST(Gather, DrawsCoverTheRangeEvenlyAndDependOnSeedEpochAndIndex) {
  const Augmentation aug{.shift = 2, .flip = true};
  const uint64_t key = augment_key(42, 3);
  std::vector<int64_t> dx(5, 0), dy(5, 0);
  int64_t flips = 0;
  const int64_t n = 50000;
  for (int64_t i = 0; i < n; ++i) {
    const AugmentDraw a = augment_draw(key, uint64_t(i), aug);
    ASSERT_TRUE(a.dx >= -2 && a.dx <= 2 && a.dy >= -2 && a.dy <= 2) << i;
    ++dx[size_t(a.dx + 2)];
    ++dy[size_t(a.dy + 2)];
    flips += a.flip;
  }
  for (int k = 0; k < 5; ++k) {
    EXPECT_NEAR(double(dx[size_t(k)]) / n, 0.2, 0.01) << "dx " << k - 2;
    EXPECT_NEAR(double(dy[size_t(k)]) / n, 0.2, 0.01) << "dy " << k - 2;
  }
  EXPECT_NEAR(double(flips) / n, 0.5, 0.01);
  const auto same = [&](uint64_t other_key, uint64_t i) {
    const AugmentDraw a = augment_draw(key, i, aug), b = augment_draw(other_key, i, aug);
    return a.dx == b.dx && a.dy == b.dy && a.flip == b.flip;
  };
  int differ_seed = 0, differ_epoch = 0;
  for (uint64_t i = 0; i < 200; ++i) {
    EXPECT_TRUE(same(augment_key(42, 3), i));
    differ_seed += !same(augment_key(43, 3), i);
    differ_epoch += !same(augment_key(42, 4), i);
  }
  EXPECT_GT(differ_seed, 100);
  EXPECT_GT(differ_epoch, 100);
  const AugmentDraw off = augment_draw(key, 7, Augmentation{});
  EXPECT_TRUE(off.dx == 0 && off.dy == 0 && !off.flip) << "no augmentation draws no move";
}

TEST(Augmentation, ParsesItsFormsAndNamesBadText) {
  EXPECT_EQ(parse_augmentation("shift:2"), (Augmentation{.shift = 2}));
  EXPECT_EQ(parse_augmentation("flip"), (Augmentation{.flip = true}));
  EXPECT_EQ(parse_augmentation("shift:2,flip"), (Augmentation{.shift = 2, .flip = true}));
  EXPECT_EQ(parse_augmentation("flip,shift:4,shift:4"), (Augmentation{.shift = 4, .flip = true}));
  EXPECT_EQ(parse_augmentation("none"), Augmentation{});
  for (const Augmentation& a : {Augmentation{}, Augmentation{.shift = 3}, Augmentation{.flip = true},
                                Augmentation{.shift = 1, .flip = true}})
    EXPECT_EQ(parse_augmentation(to_string(a)), a) << to_string(a);
  for (const char* bad : {"", "shift", "shift:", "shift:0", "shift:-1", "shift:2x", "shift:1.5",
                          "shift:1073741824", "flip,", "rotate", "shift:2,shift:3", "none,flip", "FLIP"}) {
    try {
      parse_augmentation(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage) << bad;
      EXPECT_NE(std::string(e.what()).find("'" + std::string(bad) + "'"), std::string::npos) << e.what();
    }
  }
}

TrainConfig augmented(int64_t epochs, const fs::path& ckpt = {}) {
  TrainConfig c = test::tiny_recipe(32, 0);
  c.epochs = epochs;
  c.checkpoint_dir = ckpt;
  c.augment = {.shift = 1, .flip = true};
  return c;
}

std::vector<float> train_params(const io::Dataset& data, const TrainConfig& c, int threads = 2) {
  Context ctx(make_cpu_backend(threads));
  Model m(ctx.backend(), tiny_cnn());
  train(ctx, m, data, nullptr, c);
  return m.get_params();
}

TEST(TrainAugmented, IsDeterministicAndChangesTheRun) {
  const io::Dataset data = banded(200, 1, true);
  const std::vector<float> a = train_params(data, augmented(2)), b = train_params(data, augmented(2));
  EXPECT_TRUE(a == b) << "augmented training is not a function of the seed";
  TrainConfig plain = augmented(2);
  plain.augment = {};
  EXPECT_FALSE(a == train_params(data, plain)) << "the augmentation changed nothing";
}

// Augmentation depends on (seed, epoch, index) only: a run resumed from a checkpoint ends with
// the uninterrupted run's bits.
TEST(TrainAugmented, ResumeEqualsUninterrupted) {
  const io::Dataset data = banded(200, 1, true);
  TempDir a, b;
  const std::vector<float> uninterrupted = train_params(data, augmented(3, a.path()));
  TrainConfig first = augmented(3, b.path());
  first.max_steps = 14;  // 7 steps an epoch: stops after epoch 2
  train_params(data, first);
  TrainConfig rest = augmented(3, b.path());
  rest.resume = true;
  EXPECT_TRUE(train_params(data, rest) == uninterrupted) << "resumed augmented training diverged";
}

// Evaluation never augments: the last evaluation of a run is what evaluate() says afterwards.
TEST(TrainAugmented, EvaluationSeesThePlainImages) {
  const io::Dataset data = banded(200, 1, true), test_set = banded(100, 2, true);
  Context ctx(make_cpu_backend(2));
  Model m(ctx.backend(), tiny_cnn());
  const TrainResult r = train(ctx, m, data, &test_set, augmented(2));
  EXPECT_EQ(r.last_eval.accuracy, evaluate(m, test_set).accuracy);
  EXPECT_EQ(r.last_eval.loss, evaluate(m, test_set).loss);
}

TEST(TrainAugmented, RefusedWithoutAnImageShapeOrWithABadShift) {
  using namespace strand::layers;
  const ModelArch flat{"flat", Shape{64}, {dense(10)}};
  io::Dataset rows = banded(50, 1);
  rows.sample_shape = Shape{64};
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), flat);
  try {
    train(ctx, m, rows, nullptr, augmented(1));
    ADD_FAILURE() << "augmented flat rows";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(std::string(e.what()).find("no image shape"), std::string::npos) << e.what();
  }
  TrainConfig c = augmented(1);
  c.augment.shift = -1;
  EXPECT_THROW(validate(c), Error);
  // Flat rows take the model's image shape: [64] rows into an [1,8,8] model can be augmented.
  Model cnn(ctx.backend(), tiny_cnn());
  EXPECT_EQ(train(ctx, cnn, rows, nullptr, augmented(1)).global_step, 2);
}

}  // namespace
}  // namespace strand
