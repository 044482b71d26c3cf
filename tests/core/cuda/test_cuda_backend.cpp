// CudaBackend against the CPU reference (make_cpu_backend(1)): every kernel forward and
// backward on the same random inputs, at several shapes (odd sizes, batch 1, one channel,
// same and valid padding), plus memory, stage copies, errors, determinism and a whole mnist_cnn step.
// Without a GPU the suite reports itself skipped (exit 77, which meson counts as skipped).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/context.hpp>
#include <strand/core/error.hpp>
#include <strand/core/model.hpp>
#include <strand/io/dataset.hpp>
#include <strand/models/models.hpp>
#include <strand/train/trainer.hpp>
#include "tests/core/kernel_test_util.hpp"

namespace strand {
namespace {

using test::download;
using test::norm_rel;
using test::random_vec;
using test::rel_close;
using test::same_bits;
using test::tie_vec;
using test::upload;

// One CPU and one CUDA backend for the whole suite: creating cuDNN/cuBLAS handles is slow.
class Cuda : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    cpu_ = make_cpu_backend(1);
    gpu_ = make_cuda_backend(0);
  }
  static void TearDownTestSuite() {
    gpu_.reset();
    cpu_.reset();
  }
  static Backend& cpu() { return *cpu_; }
  static Backend& gpu() { return *gpu_; }

 private:
  static inline std::unique_ptr<Backend> cpu_, gpu_;
};

TEST_F(Cuda, EntryPoints) {
  EXPECT_TRUE(cuda_built());
  EXPECT_EQ(gpu().name(), "cuda");
  EXPECT_EQ(make_backend(parse_device("cuda:0"), 1)->name(), "cuda");
  for (int bad : {-1, cuda_device_count()}) {
    try {
      make_cuda_backend(bad);
      ADD_FAILURE() << "device " << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage) << e.what();
    }
  }
}

TEST_F(Cuda, AllocIsZeroed) {
  for (size_t bytes : {size_t{4}, size_t{1001}, (size_t{1} << 22) + 3}) {
    // Fill a block and free it first, so a recycled block would show stale bytes.
    { Buffer dirty = upload(gpu(), std::vector<unsigned char>(bytes, 0xAB)); }
    Buffer buf = gpu().alloc(bytes);
    ASSERT_NE(buf.data(), nullptr);
    EXPECT_EQ(buf.bytes(), bytes);
    const auto host = download<unsigned char>(gpu(), buf);
    for (size_t i = 0; i < bytes; ++i) ASSERT_EQ(host[i], 0) << i;
  }
  EXPECT_EQ(gpu().alloc(0).data(), nullptr);
}

TEST_F(Cuda, CopiesRoundTrip) {
  const std::vector<float> f = random_vec(70001, 1);
  EXPECT_TRUE(same_bits(download(gpu(), upload(gpu(), f)), f));
  const std::vector<int32_t> i{0, -1, 7, 2147483647, -2147483647 - 1};
  EXPECT_EQ(download<int32_t>(gpu(), upload(gpu(), i)), i);
}

// A stage's download copies what the kernels queued before it wrote, its upload lands before
// the kernels queued after join(); both on sub-ranges, while the mirror's other floats stay.
TEST_F(Cuda, StageCopiesAreOrderedWithTheKernels) {
  const int64_t n = 1000003;
  const std::vector<float> p0 = random_vec(size_t(n), 31), g = random_vec(size_t(n), 32);
  Buffer params = upload(gpu(), p0), grads = upload(gpu(), g);
  std::unique_ptr<Stage> stage = gpu().make_stage(n);
  ASSERT_NE(stage, nullptr);
  EXPECT_EQ(cpu().make_stage(n), nullptr);             // host memory needs no stage
  gpu().sgd_step(n, 1.0f, params.f32(), grads.f32());  // params = p0 - g, queued
  const Stage::Fence a = stage->download(params.f32(), 0, n / 2);
  const Stage::Fence b = stage->download(params.f32(), n / 2, n);
  EXPECT_EQ(b, a + 1);
  while (!stage->done(a)) {
  }
  stage->wait(b);
  EXPECT_TRUE(stage->done(b));
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(stage->host()[i], p0[size_t(i)] - g[size_t(i)]) << i;
  // Upload [7, n-7) of a new vector, then a kernel that reads it: params = new - g.
  const std::vector<float> fresh = random_vec(size_t(n), 33);
  std::copy(fresh.begin(), fresh.end(), stage->host());
  stage->upload(params.f32(), 7, n - 7);
  stage->join();
  gpu().sgd_step(n, 1.0f, params.f32(), grads.f32());
  const std::vector<float> got = download(gpu(), params);
  for (int64_t i = 0; i < n; ++i) {
    const bool up = i >= 7 && i < n - 7;
    const float before = up ? fresh[size_t(i)] : p0[size_t(i)] - g[size_t(i)];
    ASSERT_EQ(got[size_t(i)], before - g[size_t(i)]) << i;
  }
}

// ---- conv2d

class CudaConv : public Cuda, public testing::WithParamInterface<Conv2dDesc> {};

TEST_P(CudaConv, MatchesCpu) {
  const Conv2dDesc d = GetParam();
  const size_t nx = size_t(d.batch * d.in_c * d.in_h * d.in_w);
  const size_t nw = size_t(d.out_c * d.in_c * d.kernel_h * d.kernel_w);
  const size_t ny = size_t(d.batch * d.out_c * d.out_h() * d.out_w());
  const auto x = random_vec(nx, 1), w = random_vec(nw, 2), b = random_vec(size_t(d.out_c), 3);
  const auto dy = random_vec(ny, 4);

  struct Out {
    std::vector<float> y, dx, dw, db, dw_no_dx, y_relu, y_no_bias, dx_no_bias, dw_no_bias;
  };
  auto run = [&](Backend& be) {
    Buffer bx = upload(be, x), bw = upload(be, w), bb = upload(be, b), bdy = upload(be, dy);
    Buffer by = be.alloc(ny * 4), bdx = be.alloc(nx * 4), bdw = be.alloc(nw * 4);
    Buffer bdb = be.alloc(size_t(d.out_c) * 4);
    be.conv2d_forward(d, bx.f32(), bw.f32(), bb.f32(), by.f32());
    be.conv2d_backward(d, bx.f32(), bw.f32(), bdy.f32(), bdx.f32(), bdw.f32(), bdb.f32());
    Out o{download(be, by), download(be, bdx), download(be, bdw), download(be, bdb), {}, {}, {}, {}, {}};
    be.conv2d_backward(d, bx.f32(), bw.f32(), bdy.f32(), nullptr, bdw.f32(), bdb.f32());
    o.dw_no_dx = download(be, bdw);
    be.conv2d_relu_forward(d, bx.f32(), bw.f32(), bb.f32(), by.f32());  // the CPU: two passes
    o.y_relu = download(be, by);
    // Without a bias (a convolution before batchnorm): no bias added, no db written.
    be.conv2d_forward(d, bx.f32(), bw.f32(), nullptr, by.f32());
    be.conv2d_backward(d, bx.f32(), bw.f32(), bdy.f32(), bdx.f32(), bdw.f32(), nullptr);
    o.y_no_bias = download(be, by);
    o.dx_no_bias = download(be, bdx);
    o.dw_no_bias = download(be, bdw);
    return o;
  };
  const Out want = run(cpu()), got = run(gpu());
  EXPECT_TRUE(rel_close(got.y, want.y)) << "y";
  EXPECT_TRUE(rel_close(got.y_relu, want.y_relu)) << "y with the fused ReLU";
  for (size_t i = 0; i < got.y.size(); ++i) {  // and exactly relu(y) on the GPU itself
    ASSERT_EQ(got.y_relu[i], got.y[i] > 0.0f ? got.y[i] : 0.0f) << "fused ReLU, element " << i;
  }
  EXPECT_TRUE(rel_close(got.dx, want.dx)) << "dx";
  EXPECT_TRUE(rel_close(got.dw, want.dw)) << "dw";
  EXPECT_TRUE(rel_close(got.db, want.db)) << "db";
  EXPECT_TRUE(rel_close(got.y_no_bias, want.y_no_bias)) << "y without a bias";
  EXPECT_TRUE(rel_close(got.dx_no_bias, want.dx_no_bias)) << "dx without a bias";
  EXPECT_TRUE(rel_close(got.dw_no_bias, want.dw_no_bias)) << "dw without a bias";
  // Deterministic algorithms: the second backward gives the same bits.
  EXPECT_TRUE(same_bits(got.dw_no_dx, got.dw)) << "dw not reproducible";
  EXPECT_TRUE(same_bits(run(gpu()).dx, got.dx)) << "dx not reproducible";
}

// Edge cases, then the models' convolutions at batch 2 and 4 (models/op_cases.hpp).
INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaConv,
    testing::ValuesIn(test::joined<Conv2dDesc>(
        {Conv2dDesc{1, 3, 7, 5, 4, 3, 3, 1, 1},  // batch 1, odd sizes, same
         Conv2dDesc{3, 2, 9, 6, 5, 3, 2, 0, 0},  // valid, non-square kernel
         Conv2dDesc{2, 4, 6, 7, 3, 5, 5, 2, 2},  // same, kernel near the size
         Conv2dDesc{1, 1, 5, 5, 1, 5, 5, 0, 0},  // 1 channel, 1x1 output
         Conv2dDesc{2, 3, 4, 4, 2, 3, 3, 2, 1},  // padding wider than needed
         // Strides: even and odd sizes (trailing rows a stride does not reach), unequal strides,
         // and one input channel, which the direct kernels must leave to cuDNN.
         Conv2dDesc{2, 3, 9, 8, 4, 3, 3, 1, 1, 2, 2}, Conv2dDesc{1, 2, 7, 7, 3, 3, 2, 0, 1, 2, 1},
         Conv2dDesc{3, 1, 9, 7, 4, 3, 3, 1, 1, 2, 2}, Conv2dDesc{2, 1, 28, 28, 8, 5, 5, 2, 2, 2, 2},
         // One input channel: the direct kernels (conv2d_direct.cu), 3x3 and 5x5, several
         // image chunks with a partial last one, and an image too large for them (cuDNN again).
         Conv2dDesc{3, 1, 9, 7, 4, 3, 3, 1, 1}, Conv2dDesc{2, 1, 6, 5, 3, 3, 3, 0, 0},
         Conv2dDesc{70, 1, 28, 28, 8, 5, 5, 2, 2}, Conv2dDesc{1, 1, 100, 100, 2, 5, 5, 2, 2}},
        test::model_convs({2, 4}))));

TEST_F(Cuda, ConvRejectsBadShapes) {
  Conv2dDesc d;
  d.batch = 1, d.in_c = 1, d.in_h = 3, d.in_w = 3, d.out_c = 1, d.kernel_h = 5, d.kernel_w = 5;
  try {
    gpu().conv2d_forward(d, nullptr, nullptr, nullptr, nullptr);
    ADD_FAILURE() << "kernel larger than the input accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Shape);
  }
}

// ---- max pool

class CudaPool : public Cuda, public testing::WithParamInterface<Pool2dDesc> {};

TEST_P(CudaPool, MatchesCpuBitForBit) {
  const Pool2dDesc d = GetParam();
  const size_t nx = size_t(d.batch * d.channels * d.in_h * d.in_w);
  const size_t ny = size_t(d.batch * d.channels * d.out_h() * d.out_w());
  // ties: many exact ties (and zeros, for the fused ReLU's mask); offset: x and dx one float
  // past an aligned address, which the vectorised even-size kernel must not take.
  for (bool ties : {false, true}) {
    for (int offset : {0, 1}) {
      auto x = ties ? tie_vec(nx + 1, 5) : random_vec(nx + 1, 5);
      const auto dy = random_vec(ny, 6);
      const auto junk = random_vec(nx + 1, 7);  // dx starts dirty: every element must be written
      struct Out {
        std::vector<float> y, dx, dx_relu;
      };
      auto run = [&](Backend& be) {
        Buffer bx = upload(be, x), bdy = upload(be, dy), bdx = upload(be, junk);
        Buffer by = be.alloc(ny * 4);
        const float* px = bx.f32() + offset;
        float* pdx = bdx.f32() + offset;
        be.maxpool2x2_forward(d, px, by.f32());
        be.maxpool2x2_backward(d, px, by.f32(), bdy.f32(), pdx);
        Out o{download(be, by), download(be, bdx), {}};
        be.relu_maxpool2x2_backward(d, px, by.f32(), bdy.f32(), pdx);  // the CPU: two passes
        o.dx_relu = download(be, bdx);
        return o;
      };
      const Out want = run(cpu()), got = run(gpu());
      EXPECT_TRUE(same_bits(got.y, want.y)) << "y, ties " << ties << ", offset " << offset;
      EXPECT_TRUE(same_bits(got.dx, want.dx)) << "dx, ties " << ties << ", offset " << offset;
      EXPECT_TRUE(same_bits(got.dx_relu, want.dx_relu))
          << "dx through the fused ReLU, ties " << ties << ", offset " << offset;
    }
  }
}

// Edge cases, then the models' pools at batch 100 (models/op_cases.hpp).
INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaPool,
    testing::ValuesIn(test::joined<Pool2dDesc>({Pool2dDesc{2, 3, 8, 8}, Pool2dDesc{1, 1, 7, 5},
                                                Pool2dDesc{3, 2, 9, 10}, Pool2dDesc{1, 1, 2, 2}},
                                               test::model_pools({100}))));

// ---- pooling (any window and stride)

class CudaPooling : public Cuda, public testing::WithParamInterface<PoolDesc> {};

TEST_P(CudaPooling, MatchesCpuBitForBit) {
  const PoolDesc d = GetParam();
  const size_t nx = size_t(d.batch * d.channels * d.in_h * d.in_w);
  const size_t ny = size_t(d.batch * d.channels * d.out_h() * d.out_w());
  for (PoolKind kind : {PoolKind::Max, PoolKind::Avg}) {
    for (bool ties : {false, true}) {
      const auto x = ties ? tie_vec(nx, 8) : random_vec(nx, 8), dy = random_vec(ny, 9);
      const auto junk = random_vec(nx, 10);  // dx starts dirty: every element must be written
      auto run = [&](Backend& be) {
        Buffer bx = upload(be, x), bdy = upload(be, dy), bdx = upload(be, junk), by = be.alloc(ny * 4);
        be.pool_forward(kind, d, bx.f32(), by.f32());
        be.pool_backward(kind, d, bx.f32(), bdy.f32(), bdx.f32());
        return std::pair(download(be, by), download(be, bdx));
      };
      const auto want = run(cpu()), got = run(gpu());
      const char* k = kind == PoolKind::Max ? "max" : "avg";
      EXPECT_TRUE(same_bits(got.first, want.first)) << k << " y, ties " << ties;
      EXPECT_TRUE(same_bits(got.second, want.second)) << k << " dx, ties " << ties;
    }
  }
}

// Overlapping windows, odd sizes with dropped edges, unequal windows and strides, a global
// average pool.
INSTANTIATE_TEST_SUITE_P(Shapes, CudaPooling,
                         testing::Values(PoolDesc{2, 3, 9, 9, 3, 3, 2, 2}, PoolDesc{1, 2, 7, 5, 2, 2, 2, 2},
                                         PoolDesc{1, 1, 5, 8, 2, 3, 1, 2}, PoolDesc{2, 4, 6, 6, 6, 6, 6, 6},
                                         PoolDesc{3, 2, 10, 10, 3, 3, 3, 3}));

// ---- batch normalization

class CudaBatchNorm : public Cuda, public testing::WithParamInterface<BatchNormDesc> {};

TEST_P(CudaBatchNorm, MatchesCpuInBothModes) {
  const BatchNormDesc d = GetParam();
  const size_t n = size_t(d.batch * d.channels * d.spatial), C2 = size_t(2 * d.channels);
  const auto x = random_vec(n, 11, -2.0f, 3.0f), gb = random_vec(C2, 12), dy = random_vec(n, 13);
  std::vector<float> running = random_vec(C2, 14);
  for (size_t c = size_t(d.channels); c < C2; ++c) running[c] = 0.5f + std::abs(running[c]);  // variances
  struct Out {
    std::vector<float> y, saved, delta, dx, dgb, dgb_no_dx, y_infer, dx_infer, dgb_infer;
  };
  auto run = [&](Backend& be) {
    Buffer bx = upload(be, x), bgb = upload(be, gb), bdy = upload(be, dy), brun = upload(be, running);
    Buffer by = be.alloc(n * 4), bsaved = be.alloc(C2 * 4), bdelta = be.alloc(C2 * 4), bdx = be.alloc(n * 4),
           bdgb = be.alloc(C2 * 4);
    Out o;
    be.batchnorm_forward_train(d, bx.f32(), bgb.f32(), brun.f32(), by.f32(), bsaved.f32(), bdelta.f32());
    be.batchnorm_backward(d, bx.f32(), bgb.f32(), bsaved.f32(), bdy.f32(), bdx.f32(), bdgb.f32());
    o.y = download(be, by), o.saved = download(be, bsaved), o.delta = download(be, bdelta);
    o.dx = download(be, bdx), o.dgb = download(be, bdgb);
    be.batchnorm_backward(d, bx.f32(), bgb.f32(), bsaved.f32(), bdy.f32(), nullptr, bdgb.f32());
    o.dgb_no_dx = download(be, bdgb);
    be.batchnorm_forward_infer(d, bx.f32(), bgb.f32(), brun.f32(), by.f32());
    be.batchnorm_backward_infer(d, bx.f32(), bgb.f32(), brun.f32(), bdy.f32(), bdx.f32(), bdgb.f32());
    o.y_infer = download(be, by), o.dx_infer = download(be, bdx), o.dgb_infer = download(be, bdgb);
    return o;
  };
  const Out want = run(cpu()), got = run(gpu());
  EXPECT_TRUE(rel_close(got.y, want.y)) << "training y";
  EXPECT_TRUE(rel_close(got.saved, want.saved)) << "saved mean and 1/std";
  EXPECT_TRUE(rel_close(got.delta, want.delta)) << "running-statistic deltas";
  EXPECT_TRUE(rel_close(got.dx, want.dx)) << "training dx";
  EXPECT_TRUE(rel_close(got.dgb, want.dgb)) << "training dgamma, dbeta";
  EXPECT_TRUE(same_bits(got.dgb_no_dx, got.dgb)) << "dgamma, dbeta change without dx";
  EXPECT_TRUE(rel_close(got.y_infer, want.y_infer)) << "inference y";
  EXPECT_TRUE(rel_close(got.dx_infer, want.dx_infer)) << "inference dx";
  EXPECT_TRUE(rel_close(got.dgb_infer, want.dgb_infer)) << "inference dgamma, dbeta";
}

// After a convolution (spatial > 1), after a dense layer (spatial 1), one sample of one value
// per channel (the unbiased variance's M = 1 case), and mnist_bn's first one at batch 64.
INSTANTIATE_TEST_SUITE_P(Shapes, CudaBatchNorm,
                         testing::Values(BatchNormDesc{4, 3, 25, 1e-3f, 0.9f},
                                         BatchNormDesc{16, 10, 1, 1e-3f, 0.99f},
                                         BatchNormDesc{1, 5, 1, 1e-3f, 0.9f},
                                         BatchNormDesc{64, 24, 784, 1e-3f, 0.9f}));

// ---- dense

class CudaDense : public Cuda, public testing::WithParamInterface<DenseDesc> {};

TEST_P(CudaDense, MatchesCpu) {
  const DenseDesc d = GetParam();
  const size_t nx = size_t(d.batch * d.in), nw = size_t(d.out * d.in), ny = size_t(d.batch * d.out);
  const auto x = random_vec(nx, 8), w = random_vec(nw, 9), b = random_vec(size_t(d.out), 10);
  const auto dy = random_vec(ny, 11);
  auto run = [&](Backend& be) {
    Buffer bx = upload(be, x), bw = upload(be, w), bb = upload(be, b), bdy = upload(be, dy);
    Buffer by = be.alloc(ny * 4), bdx = be.alloc(nx * 4), bdw = be.alloc(nw * 4);
    Buffer bdb = be.alloc(size_t(d.out) * 4);
    be.dense_forward(d, bx.f32(), bw.f32(), bb.f32(), by.f32());
    be.dense_backward(d, bx.f32(), bw.f32(), bdy.f32(), bdx.f32(), bdw.f32(), bdb.f32());
    std::vector<std::vector<float>> o{download(be, by), download(be, bdx), download(be, bdw),
                                      download(be, bdb)};
    be.dense_backward(d, bx.f32(), bw.f32(), bdy.f32(), nullptr, bdw.f32(), bdb.f32());
    o.push_back(download(be, bdw));
    return o;
  };
  const auto want = run(cpu()), got = run(gpu());
  const char* names[] = {"y", "dx", "dw", "db", "dw without dx"};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(rel_close(got[i], want[i])) << names[i];
}

// Edge cases, then the models' dense layers at batch 100 (models/op_cases.hpp).
INSTANTIATE_TEST_SUITE_P(Shapes, CudaDense,
                         testing::ValuesIn(test::joined<DenseDesc>({DenseDesc{1, 1, 1}, DenseDesc{3, 7, 5},
                                                                    DenseDesc{17, 33, 10},
                                                                    DenseDesc{1, 100, 1}},
                                                                   test::model_denses({100}))));

// ---- elementwise

TEST_F(Cuda, ReluMatchesCpuBitForBit) {
  const int64_t n = 100003;
  const auto x = random_vec(size_t(n), 12), dy = random_vec(size_t(n), 13);
  auto run = [&](Backend& be) {
    Buffer bx = upload(be, x), bdy = upload(be, dy), by = be.alloc(size_t(n) * 4);
    be.relu_forward(n, bx.f32(), by.f32());
    be.relu_backward(n, by.f32(), bdy.f32(), bdy.f32());  // in place, as allowed
    be.relu_forward(n, bx.f32(), bx.f32());               // in place
    return std::vector{download(be, by), download(be, bdy), download(be, bx)};
  };
  const auto want = run(cpu()), got = run(gpu());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(same_bits(got[i], want[i])) << i;
}

TEST_F(Cuda, DropoutMasksMatchCpuBitForBit) {
  const int64_t n = 100003;
  const auto x = random_vec(size_t(n), 14), dy = random_vec(size_t(n), 15);
  for (float rate : {0.0f, 0.4f, 0.9f}) {
    const uint64_t key = 0x1234567890abcdefULL + uint64_t(rate * 10);
    auto run = [&](Backend& be) {
      Buffer bx = upload(be, x), bdy = upload(be, dy), by = be.alloc(size_t(n) * 4);
      be.dropout_forward(n, rate, key, 0, bx.f32(), by.f32());
      be.dropout_backward(n, rate, key, 0, bdy.f32(), bdy.f32());  // in place
      return std::make_pair(download(be, by), download(be, bdy));
    };
    const auto want = run(cpu()), got = run(gpu());
    EXPECT_TRUE(same_bits(got.first, want.first)) << "forward, rate " << rate;
    EXPECT_TRUE(same_bits(got.second, want.second)) << "backward, rate " << rate;
  }
  try {
    gpu().dropout_forward(1, 1.0f, 0, 0, nullptr, nullptr);
    ADD_FAILURE() << "rate 1 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
  }
}

// ---- softmax cross-entropy

TEST_F(Cuda, SoftmaxXentMatchesCpu) {
  struct Case {
    int64_t batch, classes;
    bool ties, in_place;
  };
  // 300 and 1000 rows span several tiles of the single-block kernel.
  for (Case c : {Case{1, 10, false, false}, Case{100, 10, false, false}, Case{300, 37, true, false},
                 Case{1000, 10, false, true}, Case{5, 1, false, false}}) {
    const size_t n = size_t(c.batch * c.classes);
    auto logits = c.ties ? tie_vec(n, 16) : random_vec(n, 16, -8.0f, 8.0f);
    std::vector<int32_t> labels(size_t(c.batch));
    for (size_t i = 0; i < labels.size(); ++i) labels[i] = int32_t((i * 7 + 3) % size_t(c.classes));
    auto run = [&](Backend& be) {
      Buffer bl = upload(be, logits), blab = upload(be, labels), bg = be.alloc(n * 4);
      float* g = c.in_place ? bl.f32() : bg.f32();
      const LossResult r = be.softmax_xent(c.batch, c.classes, bl.f32(), blab.i32(), g);
      Buffer bp = upload(be, logits);
      be.softmax(c.batch, c.classes, bp.f32(), bp.f32());  // in place, as allowed
      return std::make_tuple(r, download(be, c.in_place ? bl : bg), download(be, bp));
    };
    const auto [want, want_g, want_p] = run(cpu());
    const auto [got, got_g, got_p] = run(gpu());
    const std::string what = "batch " + std::to_string(c.batch) + " classes " + std::to_string(c.classes);
    EXPECT_NEAR(got.loss, want.loss, 1e-5 * (1 + std::abs(want.loss))) << what;
    EXPECT_EQ(got.correct, want.correct) << what;
    EXPECT_TRUE(rel_close(got_g, want_g)) << what;
    EXPECT_TRUE(rel_close(got_p, want_p)) << what;
  }
}

TEST_F(Cuda, SoftmaxXentRejectsBadLabels) {
  const std::vector<float> logits = random_vec(40, 17);
  for (int32_t bad : {-1, 10}) {
    Buffer bl = upload(gpu(), logits), bg = gpu().alloc(40 * 4);
    Buffer blab = upload(gpu(), std::vector<int32_t>{1, bad, 3, 4});
    try {
      gpu().softmax_xent(4, 10, bl.f32(), blab.i32(), bg.f32());
      ADD_FAILURE() << "label " << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage) << e.what();
      EXPECT_NE(e.message().find("1 of 4"), std::string::npos) << e.what();
    }
  }
  // The backend is still usable afterwards.
  Buffer bl = upload(gpu(), logits), bg = gpu().alloc(40 * 4);
  Buffer blab = upload(gpu(), std::vector<int32_t>{1, 2, 3, 4});
  EXPECT_GT(gpu().softmax_xent(4, 10, bl.f32(), blab.i32(), bg.f32()).loss, 0.0);
}

TEST_F(Cuda, AccumulatedLossTotalsMatchCpu) {
  const int64_t batch = 100, classes = 10;
  const std::vector<float> logits = random_vec(size_t(batch * classes), 18, -4.0f, 4.0f);
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = int32_t(i % 10);
  auto run = [&](Backend& be) {
    Buffer bl = upload(be, logits), blab = upload(be, labels), bg = be.alloc(size_t(batch * classes) * 4);
    be.take_loss_totals();
    for (int k = 0; k < 3; ++k) be.softmax_xent_accumulate(batch, classes, bl.f32(), blab.i32(), bg.f32());
    return std::make_pair(be.take_loss_totals(), download<float>(be, bg));
  };
  const auto [want, want_g] = run(cpu());
  const auto [got, got_g] = run(gpu());
  EXPECT_EQ(got.examples, 300);
  EXPECT_EQ(got.correct, want.correct);
  EXPECT_NEAR(got.loss_sum, want.loss_sum, 1e-5 * want.loss_sum);
  EXPECT_TRUE(rel_close(got_g, want_g));
  EXPECT_EQ(gpu().take_loss_totals().examples, 0);
  // A bad label surfaces when the totals are taken, and the totals start over.
  Buffer bl = upload(gpu(), logits), bg = gpu().alloc(size_t(batch * classes) * 4);
  std::vector<int32_t> bad = labels;
  bad[7] = 12;
  Buffer blab = upload(gpu(), bad);
  gpu().softmax_xent_accumulate(batch, classes, bl.f32(), blab.i32(), bg.f32());
  EXPECT_THROW(gpu().take_loss_totals(), Error);
  EXPECT_EQ(gpu().take_loss_totals().examples, 0);
}

// Every pixel type with and without augmentation, flat and image-shaped samples: the same bits
// as the CPU (integer moves, the same u8_pixel conversion and draws).
TEST_F(Cuda, GatherAndDeviceViewMatchCpu) {
  const int64_t n = 300;
  const std::vector<int64_t> idx{299, 0, 5, 5, 123, 42, 7, 250, 251, 252, 253, 254};
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = int32_t(i % 10);
  const Augmentation none, shift{.shift = 3}, flip{.flip = true}, both{.shift = 2, .flip = true};
  for (const Shape& image : {Shape{1, 28, 28}, Shape{3, 7, 5}, Shape{1, 1, 784}})
    for (PixelType pixels : {PixelType::F32, PixelType::U8})
      for (const Augmentation& aug : {none, shift, flip, both}) {
        if (aug.any() && image[1] == 1) continue;
        SCOPED_TRACE(image.str() + (pixels == PixelType::U8 ? " u8 " : " f32 ") + to_string(aug));
        GatherDesc d{.batch = int64_t(idx.size()),
                     .channels = image[0],
                     .height = image[1],
                     .width = image[2],
                     .pixels = pixels,
                     .augment = aug,
                     .seed = 9,
                     .epoch = 4};
        const std::vector<float> f32 = random_vec(size_t(n * d.sample()), 19);
        std::vector<uint8_t> u8(f32.size());
        for (size_t i = 0; i < u8.size(); ++i) u8[i] = uint8_t(mix64(i) & 0xff);
        const void* host = pixels == PixelType::U8 ? static_cast<const void*>(u8.data()) : f32.data();
        const size_t bytes = pixels == PixelType::U8 ? u8.size() : f32.size() * 4;
        auto run = [&](Backend& be) {
          Buffer si, sl, sx;
          const void* di = be.device_view(host, bytes, si);
          const auto* dl = static_cast<const int32_t*>(be.device_view(labels.data(), labels.size() * 4, sl));
          const auto* dx = static_cast<const int64_t*>(be.device_view(idx.data(), idx.size() * 8, sx));
          Buffer x = be.alloc(size_t(d.batch * d.sample()) * 4), y = be.alloc(size_t(d.batch) * 4);
          be.gather(d, dx, di, dl, x.f32(), y.i32());
          return std::make_pair(download<float>(be, x), download<int32_t>(be, y));
        };
        const auto want = run(cpu());
        const auto got = run(gpu());
        EXPECT_TRUE(same_bits(got.first, want.first));
        EXPECT_EQ(got.second, want.second);
      }
}

// ---- optimizers

TEST_F(Cuda, OptimizersMatchCpu) {
  const int64_t n = 50001;
  const auto p0 = random_vec(size_t(n), 18), g = random_vec(size_t(n), 19);
  auto run = [&](Backend& be) {
    Buffer p = upload(be, p0), bg = upload(be, g);
    Buffer vel = be.alloc(size_t(n) * 4), pm = upload(be, p0), pa = upload(be, p0);
    Buffer m = be.alloc(size_t(n) * 4), v = be.alloc(size_t(n) * 4);
    for (int64_t step = 1; step <= 3; ++step) {
      be.sgd_step(n, 0.01f, p.f32(), bg.f32());
      be.momentum_step(n, 0.01f, 0.9f, pm.f32(), bg.f32(), vel.f32());
      be.adam_step(n, 0.002f, 0.9f, 0.999f, 1e-8f, step, pa.f32(), bg.f32(), m.f32(), v.f32());
    }
    return std::vector{download(be, p),  download(be, pm), download(be, vel),
                       download(be, pa), download(be, m),  download(be, v)};
  };
  const auto want = run(cpu()), got = run(gpu());
  const char* names[] = {"sgd params", "momentum params", "velocity", "adam params", "m", "v"};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(rel_close(got[i], want[i], 1e-5)) << names[i];
  try {
    gpu().adam_step(1, 0.1f, 0.9f, 0.999f, 1e-8f, 0, nullptr, nullptr, nullptr, nullptr);
    ADD_FAILURE() << "adam step 0 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
  }
}

// ---- a whole model

// TF32 (--tf32) trades FP32 accuracy for tensor cores: a whole mnist_cnn step stays within
// TF32's own tolerance of the CPU (10-bit mantissas: about 1e-3 per product, compounded over
// four layers and the ReLU masks they move: an H100 gave 2.6-3.4% on the gradients of conv1,
// conv2 and dense1, and under 1% on the logits). A wrong algorithm or layout is off by ~100%.
TEST_F(Cuda, Tf32StepMatchesCpuWithinTf32Tolerance) {
  const int64_t batch = 64;
  auto tf32 = make_cuda_backend(0, CudaOptions{.tf32 = true});
  Model on_cpu(cpu(), models::mnist_cnn());
  Model on_gpu(*tf32, models::mnist_cnn());
  on_cpu.init(43);
  on_gpu.set_params(on_cpu.get_params());
  const auto x = random_vec(size_t(batch * 784), 21, 0.0f, 1.0f);
  std::vector<int32_t> y(static_cast<size_t>(batch));
  for (size_t i = 0; i < y.size(); ++i) y[i] = int32_t(i % 10);
  auto run = [&](Model& m) {
    Backend& be = m.backend();
    Buffer bx = upload(be, x), by = upload(be, y);
    const float* logits = m.forward(bx.f32(), batch, true, 99);
    std::vector<float> host_logits(size_t(batch * 10));
    be.to_host(host_logits.data(), logits, host_logits.size() * 4);
    m.loss(by.i32(), batch);
    m.backward();
    std::vector<float> grads(size_t(m.param_count()));
    be.to_host(grads.data(), m.grads(), grads.size() * 4);
    return std::make_pair(host_logits, grads);
  };
  const auto want = run(on_cpu), got = run(on_gpu);
  EXPECT_LT(norm_rel(got.first, want.first), 1e-2);
  const auto& off = on_cpu.param_offsets();
  for (size_t l = 0; l + 1 < off.size(); ++l) {
    if (off[l + 1] == off[l]) continue;
    const std::vector<float> g(got.second.begin() + off[l], got.second.begin() + off[l + 1]);
    const std::vector<float> w(want.second.begin() + off[l], want.second.begin() + off[l + 1]);
    EXPECT_LT(norm_rel(g, w), 6e-2) << "layer " << l;
  }
}

// Steps replayed from CUDA graphs run the same kernels with the same arguments as eager steps:
// two epochs (with a partial last batch, which changes the graph's shape twice an epoch) end
// with bit-identical weights.
TEST_F(Cuda, GraphStepsGiveTheSameWeightsAsPlainSteps) {
  io::Dataset data;
  data.sample_shape = Shape{1, 28, 28};
  data.images = random_vec(300 * 784, 22, 0.0f, 1.0f);
  data.labels.resize(300);
  for (size_t i = 0; i < data.labels.size(); ++i) data.labels[i] = int32_t((i * 7) % 10);
  TrainConfig cfg;
  cfg.epochs = 2;
  cfg.batch_size = 32;  // 9 full batches and one of 12 per epoch
  auto train_with = [&](bool graphs) {
    Context ctx(make_cuda_backend(0, CudaOptions{.graphs = graphs}));
    Model m(ctx.backend(), models::mnist_cnn());
    const TrainResult r = train(ctx, m, data, nullptr, cfg);
    EXPECT_EQ(r.global_step, 20);
    return m.get_params();
  };
  const std::vector<float> plain = train_with(false), graphed = train_with(true);
  EXPECT_TRUE(same_bits(graphed, plain));
}

TEST_F(Cuda, MnistCnnStepMatchesCpu) {
  const int64_t batch = 16;
  Model on_cpu(cpu(), models::mnist_cnn());
  Model on_gpu(gpu(), models::mnist_cnn());
  on_cpu.init(42);
  on_gpu.set_params(on_cpu.get_params());
  const auto x = random_vec(size_t(batch * 784), 20, 0.0f, 1.0f);
  std::vector<int32_t> y(static_cast<size_t>(batch));
  for (size_t i = 0; i < y.size(); ++i) y[i] = int32_t(i % 10);
  const uint64_t key = 777;  // training mode: dropout is live, with the same masks on both

  struct Out {
    std::vector<float> logits, grads;
    LossResult loss;
  };
  auto run = [&](Model& m) {
    Backend& be = m.backend();
    Buffer bx = upload(be, x), by = upload(be, y);
    const float* logits = m.forward(bx.f32(), batch, true, key);
    std::vector<float> host_logits(size_t(batch * 10));
    be.to_host(host_logits.data(), logits, host_logits.size() * 4);
    const LossResult loss = m.loss(by.i32(), batch);
    m.backward();
    std::vector<float> grads(size_t(m.param_count()));
    be.to_host(grads.data(), m.grads(), grads.size() * 4);
    return Out{host_logits, grads, loss};
  };
  const Out want = run(on_cpu), got = run(on_gpu);
  EXPECT_LT(norm_rel(got.logits, want.logits), 1e-4);
  EXPECT_NEAR(got.loss.loss, want.loss.loss, 1e-4 * want.loss.loss);
  EXPECT_EQ(got.loss.correct, want.loss.correct);
  // Per layer, so a wrong small layer is not hidden by the big dense one.
  const auto& off = on_cpu.param_offsets();
  for (size_t l = 0; l + 1 < off.size(); ++l) {
    if (off[l + 1] == off[l]) continue;
    const std::vector<float> g(got.grads.begin() + off[l], got.grads.begin() + off[l + 1]);
    const std::vector<float> w(want.grads.begin() + off[l], want.grads.begin() + off[l + 1]);
    EXPECT_LT(norm_rel(g, w), 1e-3) << "layer " << l;
  }

  std::vector<float> p_cpu(size_t(batch * 10)), p_gpu(size_t(batch * 10));
  on_cpu.predict(x.data(), batch, p_cpu.data());
  on_gpu.predict(x.data(), batch, p_gpu.data());
  EXPECT_LT(norm_rel(p_gpu, p_cpu), 1e-4);
}

}  // namespace
}  // namespace strand

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (strand::cuda_device_count() == 0) {
    std::printf("SKIP: no GPU present (%d tests not run)\n",
                testing::UnitTest::GetInstance()->total_test_count());
    return 77;
  }
  return RUN_ALL_TESTS();
}
