// Optimizer: the configured kind's update, state round trips for checkpoints, and errors.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "core/optimizer.hpp"

namespace strand {
namespace {

TEST(Optimizer, MomentumMatchesHandComputedSteps) {
  auto be = make_cpu_backend(1);
  Optimizer opt(*be, {.kind = "momentum", .lr = 0.5f, .momentum = 0.9f}, 2);
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
  Optimizer sgd(*be, {.kind = "sgd"}, 3);
  EXPECT_THROW(sgd.load_state(adam.state()), Error);
  Optimizer adam4(*be, {}, 4);
  EXPECT_THROW(adam4.load_state(adam.state()), Error);
}

TEST(Optimizer, BadConfigsAreUsageErrors) {
  EXPECT_THROW(validate({.kind = "adagrad"}), Error);
  EXPECT_THROW(validate({.lr = 0.f}), Error);
  EXPECT_THROW(validate({.kind = "momentum", .momentum = 1.f}), Error);
  EXPECT_NO_THROW(validate({}));
}

}  // namespace
}  // namespace strand
