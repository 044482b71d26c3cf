// Optimizer: the configured kind's update, state round trips for checkpoints, the kind's
// names, the update rule it shares with the parameter server, and errors.
#include <gtest/gtest.h>

#include <strand/core/error.hpp>
#include <strand/core/optimizer.hpp>

#include <string>
#include <vector>

namespace strand {
namespace {

constexpr OptimizerKind kKinds[] = {OptimizerKind::Sgd, OptimizerKind::Momentum, OptimizerKind::Adam};

TEST(Optimizer, MomentumMatchesHandComputedSteps) {
  auto be = make_cpu_backend(1);
  Optimizer opt(*be, {.kind = OptimizerKind::Momentum, .lr = 0.5f, .momentum = 0.9f}, 2);
  float p[2] = {1.f, -1.f};
  const float g[2] = {0.2f, 0.4f};
  opt.step(p, g);  // v = g; p -= 0.5 g
  EXPECT_FLOAT_EQ(p[0], 0.9f);
  EXPECT_FLOAT_EQ(p[1], -1.2f);
  opt.step(p, g);  // v = 0.9 g + g = 1.9 g; p -= 0.95 g
  EXPECT_FLOAT_EQ(p[0], 0.9f - 0.19f);
  EXPECT_FLOAT_EQ(p[1], -1.2f - 0.38f);
}

TEST(Optimizer, StateRoundTripContinuesIdentically) {
  auto be = make_cpu_backend(1);
  OptimizerConfig cfg;  // adam
  Optimizer a(*be, cfg, 3);
  float pa[3] = {1, 2, 3};
  const float g1[3] = {0.1f, -0.2f, 0.3f}, g2[3] = {-0.3f, 0.1f, 0.05f};
  a.step(pa, g1);
  Optimizer b(*be, cfg, 3);
  b.load_state(a.state());
  float pb[3] = {pa[0], pa[1], pa[2]};
  a.step(pa, g2);
  b.step(pb, g2);
  EXPECT_EQ(b.steps_taken(), 2);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(pa[i], pb[i]);
}

TEST(Optimizer, MismatchedStateIsRejected) {
  auto be = make_cpu_backend(1);
  Optimizer adam(*be, {}, 3);
  Optimizer sgd(*be, {.kind = OptimizerKind::Sgd}, 3);
  EXPECT_THROW(sgd.load_state(adam.state()), Error);
  Optimizer adam4(*be, {}, 4);
  EXPECT_THROW(adam4.load_state(adam.state()), Error);
}

TEST(Optimizer, BadConfigsAreUsageErrors) {
  EXPECT_THROW(parse_optimizer_kind("adagrad"), Error);
  EXPECT_THROW(validate({.lr = 0.f}), Error);
  EXPECT_THROW(validate({.kind = OptimizerKind::Momentum, .momentum = 1.f}), Error);
  EXPECT_NO_THROW(validate({}));
}

TEST(OptimizerKind, NamesParseBackAndUnknownOnesAreUsageErrors) {
  for (OptimizerKind k : kKinds) EXPECT_EQ(parse_optimizer_kind(to_string(k)), k);
  EXPECT_EQ(to_string(OptimizerConfig{}.kind), "adam");
  EXPECT_EQ(slot_count(OptimizerKind::Sgd), 0u);
  EXPECT_EQ(slot_count(OptimizerKind::Momentum), 1u);
  EXPECT_EQ(slot_count(OptimizerKind::Adam), 2u);
  for (const char* bad : {"adagrad", "Adam", "", "sgd "}) {
    try {
      parse_optimizer_kind(bad);
      ADD_FAILURE() << "'" << bad << "' parsed";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      const std::string what = e.what();
      EXPECT_NE(what.find("'" + std::string(bad) + "'"), std::string::npos) << what;
      EXPECT_NE(what.find("sgd, momentum or adam"), std::string::npos) << what;
    }
  }
}

// The update rule the parameter server applies chunk by chunk is the Optimizer's: the same
// steps on two halves of the buffer give the Optimizer's parameters and state bit for bit.
TEST(UpdateStep, ChunkByChunkEqualsTheOptimizer) {
  auto be = make_cpu_backend(1);
  const int64_t n = 7, half = 3;
  for (OptimizerKind k : kKinds) {
    const OptimizerConfig cfg{.kind = k, .lr = 0.05f};
    Optimizer whole(*be, cfg, n);
    std::vector<float> p(n), q(n);
    for (int64_t i = 0; i < n; ++i) p[size_t(i)] = q[size_t(i)] = 0.3f * float(i) - 1.f;
    std::vector<Buffer> lo, hi;
    for (size_t s = 0; s < slot_count(k); ++s) {
      for (auto* slots : {&lo, &hi}) {
        slots->push_back(be->alloc(size_t(n) * sizeof(float)));
        std::fill_n(slots->back().f32(), n, 0.f);
      }
    }
    for (int64_t step = 1; step <= 3; ++step) {
      std::vector<float> g(n);
      for (int64_t i = 0; i < n; ++i) g[size_t(i)] = float((i * 7 + step * 3) % 5) - 2.f;
      whole.step(p.data(), g.data());
      update_step(*be, cfg, step, half, q.data(), g.data(), lo);
      update_step(*be, cfg, step, n - half, q.data() + half, g.data() + half, hi);
    }
    EXPECT_TRUE(p == q) << to_string(k);
    const OptimizerState st = whole.state();
    EXPECT_EQ(st.kind, k);
    EXPECT_EQ(st.step, 3);
    ASSERT_EQ(st.slots.size(), slot_count(k));
    for (size_t s = 0; s < st.slots.size(); ++s) {
      std::vector<float> joined(lo[s].f32(), lo[s].f32() + half);
      joined.insert(joined.end(), hi[s].f32(), hi[s].f32() + (n - half));
      EXPECT_TRUE(joined == st.slots[s]) << to_string(k) << " slot " << s;
    }
  }
}

TEST(UpdateStep, WrongNumberOfStateBuffersIsAnInternalError) {
  auto be = make_cpu_backend(1);
  float p[1] = {1}, g[1] = {1};
  try {
    update_step(*be, {.kind = OptimizerKind::Adam}, 1, 1, p, g, {});
    ADD_FAILURE() << "Adam ran without its moments";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Internal);
  }
  EXPECT_EQ(p[0], 1.f);
}

}  // namespace
}  // namespace strand
