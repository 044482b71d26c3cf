// Training loop: learning happens, resuming from a checkpoint ends with exactly the weights
// of an uninterrupted run, exports are versioned, evaluation counts add up, and the strategy's
// gather of per-worker metrics skips a worker that has left.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include <filesystem>
#include <fstream>
#include <tuple>

#include <strand/core/error.hpp>
#include <strand/core/layers.hpp>
#include <strand/io/model_file.hpp>
#include <strand/train/trainer.hpp>
#include "tests/train/tiny_task.hpp"

namespace strand {
namespace {

namespace fs = std::filesystem;
using namespace strand::layers;
using test::banded;
using test::tiny_cnn;

struct TempDir {
  TempDir()
      : path(fs::temp_directory_path() /
             ("strand-train-" + std::to_string(::getpid()) + "-" + std::to_string(counter++))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path path;
  static inline int counter = 0;
};

TrainConfig config(int64_t epochs, const fs::path& ckpt) {
  TrainConfig c;
  c.epochs = epochs;
  c.batch_size = 32;  // 500 samples: 15 full batches and a partial one each epoch
  c.seed = 3;
  c.checkpoint_dir = ckpt;
  // The recipe these tests were written for (the library defaults are the CLI's since).
  c.optimizer.lr = 1e-3f;
  c.schedule.kind = LrSchedule::Constant;
  return c;
}

TEST(Train, LearnsASimpleTask) {
  Context ctx(make_cpu_backend(2));
  Model m(ctx.backend(), tiny_cnn());
  const io::Dataset train_set = banded(500, 1, true), test_set = banded(200, 2, true);
  TrainConfig c = config(4, {});
  c.optimizer.lr = 1e-2f;
  const auto t0 = std::chrono::steady_clock::now();
  const TrainResult r = train(ctx, m, train_set, &test_set, c);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.evaluations.size(), 4u);
  EXPECT_LT(r.evaluations.back().loss, r.evaluations.front().loss);
  EXPECT_GT(r.evaluations.back().test_accuracy, 0.8);
  EXPECT_EQ(r.global_step, 4 * 16);
  // 16 steps an epoch of 500 images: 15 of 32 and a last one of 20.
  EXPECT_EQ(r.train_images, 4 * 500);
  EXPECT_GT(r.train_seconds, 0.0);
  EXPECT_LT(r.train_seconds, wall);  // set-up and the 4 evaluations are not in it
}

// A benchmark's warm-up: the first untimed_steps train but are left out of the timed figures.
TEST(Train, UntimedStepsAreLeftOutOfTheTimedFigures) {
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), tiny_cnn());
  const io::Dataset train_set = banded(500, 1, true);
  TrainConfig c = config(1, {});
  c.untimed_steps = 10;
  const TrainResult r = train(ctx, m, train_set, nullptr, c);
  EXPECT_EQ(r.global_step, 16);
  EXPECT_EQ(r.train_images, 500 - 10 * 32);
  EXPECT_GT(r.train_seconds, 0.0);
  c.untimed_steps = 16;  // nothing left to time
  const TrainResult none = train(ctx, m, train_set, nullptr, c);
  EXPECT_EQ(none.train_images, 0);
  EXPECT_EQ(none.train_seconds, 0.0);
}

// The learning-rate schedule is a function of the global step, so resuming keeps to it too;
// batchnorm's running statistics travel in the checkpoint with the parameters.
class Resume : public testing::TestWithParam<std::tuple<const char*, bool>> {};

TEST_P(Resume, EqualsUninterrupted) {
  const io::Dataset train_set = banded(500, 1, true), test_set = banded(100, 2, true);
  const ModelArch arch = std::get<1>(GetParam()) ? test::tiny_bn() : tiny_cnn();
  TempDir a, b;
  std::vector<float> uninterrupted, resumed;
  {
    Context ctx(make_cpu_backend(2));
    Model m(ctx.backend(), arch);
    TrainConfig c = config(3, a.path);
    c.schedule.kind = parse_lr_schedule(std::get<0>(GetParam()));
    train(ctx, m, train_set, &test_set, c);
    uninterrupted = m.get_params();
  }
  {
    Context ctx(make_cpu_backend(2));
    Model m(ctx.backend(), arch);
    TrainConfig c = config(3, b.path);
    c.schedule.kind = parse_lr_schedule(std::get<0>(GetParam()));
    c.max_steps = 32;  // "crashes" after epoch 2 (16 steps an epoch)
    train(ctx, m, train_set, &test_set, c);
  }
  {
    Context ctx(make_cpu_backend(2));
    Model m(ctx.backend(), arch);
    TrainConfig c = config(3, b.path);
    c.schedule.kind = parse_lr_schedule(std::get<0>(GetParam()));
    c.resume = true;
    const TrainResult r = train(ctx, m, train_set, &test_set, c);
    EXPECT_EQ(r.resumed_from_epoch, 2);
    ASSERT_EQ(r.evaluations.size(), 1u);
    EXPECT_EQ(r.evaluations[0].epoch, 3);
    resumed = m.get_params();
  }
  ASSERT_EQ(uninterrupted.size(), resumed.size());
  EXPECT_TRUE(uninterrupted == resumed) << "resumed training diverged from the uninterrupted run";
  // Two checkpoints are kept: epochs 2 and 3.
  EXPECT_TRUE(fs::exists(b.path / "checkpoint-3.strand"));
  EXPECT_TRUE(fs::exists(b.path / "checkpoint-2.strand"));
  EXPECT_FALSE(fs::exists(b.path / "checkpoint-1.strand"));
}

// Checkpoints inside epochs (every 5 steps): a run that stops at step 40, 8 steps into epoch 3,
// resumes there and ends with the uninterrupted run's weights. Which of the earlier ones reach
// the disk depends on the disk (a checkpoint still queued when the next is taken is replaced
// by it); the newest always does, and no more than two are kept.
TEST_P(Resume, InsideAnEpochEqualsUninterrupted) {
  const io::Dataset train_set = banded(500, 1, true), test_set = banded(100, 2, true);
  const ModelArch arch = std::get<1>(GetParam()) ? test::tiny_bn() : tiny_cnn();
  auto run = [&](const fs::path& dir, int64_t max_steps, bool resume) {
    Context ctx(make_cpu_backend(2));
    Model m(ctx.backend(), arch);
    TrainConfig c = config(3, dir);
    c.schedule.kind = parse_lr_schedule(std::get<0>(GetParam()));
    c.checkpoint_every = 5;
    c.max_steps = max_steps;
    c.resume = resume;
    const TrainResult r = train(ctx, m, train_set, &test_set, c);
    return std::make_pair(r, m.get_params());
  };
  TempDir a, b;
  const std::vector<float> uninterrupted = run(a.path, 0, false).second;
  run(b.path, 40, false);
  ASSERT_EQ(io::latest_checkpoint(b.path), b.path / "checkpoint-2-8.strand");  // step 40
  EXPECT_LE(std::distance(fs::directory_iterator(b.path), fs::directory_iterator()), 2);
  const io::Checkpoint ck = io::load_checkpoint(b.path / "checkpoint-2-8.strand");
  EXPECT_EQ(ck.epochs_done, 2);
  EXPECT_EQ(ck.step_in_epoch, 8);
  EXPECT_EQ(ck.global_step, 40);
  EXPECT_EQ(ck.global_batch, 32);
  const auto [r, resumed] = run(b.path, 0, true);
  EXPECT_EQ(r.resumed_from_epoch, 2);
  EXPECT_EQ(r.resumed_from_step, 40);
  EXPECT_EQ(r.global_step, 48);
  ASSERT_EQ(r.evaluations.size(), 1u);
  EXPECT_EQ(r.evaluations[0].epoch, 3);
  EXPECT_TRUE(uninterrupted == resumed) << "resumed training diverged from the uninterrupted run";
  EXPECT_EQ(io::latest_checkpoint(b.path), b.path / "checkpoint-3.strand");
  EXPECT_LE(std::distance(fs::directory_iterator(b.path), fs::directory_iterator()), 2);
}

INSTANTIATE_TEST_SUITE_P(Schedules, Resume,
                         testing::Combine(testing::Values("constant", "cosine"), testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) ? "_batchnorm" : "");
                         });

TEST(Train, SchedulesChangeTheRunAndUnknownOnesAreRefused) {
  const io::Dataset train_set = banded(200, 1, true);
  auto run = [&](const char* schedule) {
    Context ctx(make_cpu_backend(1));
    Model m(ctx.backend(), tiny_cnn());
    TrainConfig c = config(2, {});
    c.schedule.kind = parse_lr_schedule(schedule);
    train(ctx, m, train_set, nullptr, c);
    return m.get_params();
  };
  EXPECT_NE(run("constant"), run("linear"));
  EXPECT_NE(run("linear"), run("cosine"));
  EXPECT_THROW(run("exponential"), Error);
}

TEST(Schedule, ParsesItsNamesAndRefusesOthers) {
  for (LrSchedule k : {LrSchedule::Constant, LrSchedule::Linear, LrSchedule::Cosine})
    EXPECT_EQ(parse_lr_schedule(to_string(k)), k);
  for (const char* bad : {"", "Cosine", "cosine ", "exponential"})
    EXPECT_THROW(parse_lr_schedule(bad), Error) << bad;
}

TEST(Schedule, RatesFollowTheStepWithAWarmup) {
  const Schedule constant{.kind = LrSchedule::Constant}, linear{.kind = LrSchedule::Linear};
  const Schedule cosine{.kind = LrSchedule::Cosine, .warmup_steps = 4};
  EXPECT_FLOAT_EQ(constant.lr(0.5f, 7, 10), 0.5f);
  EXPECT_FLOAT_EQ(linear.lr(0.5f, 5, 10), 0.25f);
  EXPECT_FLOAT_EQ(linear.lr(0.5f, 10, 10), 0.0f);
  EXPECT_FLOAT_EQ(cosine.lr(1.0f, 5, 10), 0.5f * (1.0f + std::cos(3.14159265f * 0.5f)));
  // The warm-up ramps the scheduled rate up over its first steps: (step + 1) / warmup.
  EXPECT_FLOAT_EQ(cosine.lr(1.0f, 0, 1000), 0.25f * (0.5f * (1.0f + 1.0f)));
  EXPECT_FLOAT_EQ(cosine.lr(1.0f, 1, 1000), 0.5f * Schedule{.kind = LrSchedule::Cosine}.lr(1.0f, 1, 1000));
  EXPECT_FLOAT_EQ(cosine.lr(1.0f, 4, 1000), Schedule{.kind = LrSchedule::Cosine}.lr(1.0f, 4, 1000));  // done
}

TEST(Train, LibraryDefaultsAreTheCliRecipe) {
  const TrainConfig c;
  EXPECT_EQ(c.epochs, 1);
  EXPECT_EQ(c.batch_size, 32);
  EXPECT_EQ(c.seed, 42u);
  EXPECT_EQ(c.optimizer.kind, OptimizerKind::Adam);
  EXPECT_FLOAT_EQ(c.optimizer.lr, 0.002f);
  EXPECT_EQ(c.schedule.kind, LrSchedule::Cosine);
  EXPECT_EQ(c.schedule.warmup_steps, 0);
}

TEST(Train, EvaluatesEveryNStepsAndStopsAtTheTarget) {
  Context ctx(make_cpu_backend(2));
  const io::Dataset train_set = banded(500, 1, true), test_set = banded(200, 2, true);
  TrainConfig c = config(6, {});
  c.optimizer.lr = 1e-2f;
  c.eval_every = 5;
  {
    Model m(ctx.backend(), tiny_cnn());
    const TrainResult r = train(ctx, m, train_set, &test_set, c);
    // 16 steps an epoch: evaluations at steps 5, 10, 15 and the epoch end (16), then 20, ...
    ASSERT_GE(r.evaluations.size(), 4u);
    EXPECT_EQ(r.evaluations[0].step, 5);
    EXPECT_EQ(r.evaluations[3].step, 16);
    EXPECT_EQ(r.evaluations[3].epoch, 1);
    EXPECT_EQ(r.evaluations[4].step, 20);
    EXPECT_FALSE(r.reached_target);
  }
  c.stop_at_accuracy = 0.5;
  Model m(ctx.backend(), tiny_cnn());
  const TrainResult r = train(ctx, m, train_set, &test_set, c);
  ASSERT_TRUE(r.reached_target);
  EXPECT_GE(r.evaluations.back().test_accuracy, 0.5);
  for (size_t i = 0; i + 1 < r.evaluations.size(); ++i) EXPECT_LT(r.evaluations[i].test_accuracy, 0.5);
  EXPECT_EQ(r.global_step, r.evaluations.back().step);
  c.stop_at_accuracy = 1.5;
  EXPECT_THROW(train(ctx, m, train_set, &test_set, c), Error);
  c.stop_at_accuracy = 0.5;
  EXPECT_THROW(train(ctx, m, train_set, nullptr, c), Error);  // nothing to measure it on
}

TEST(Train, ResumingWithOtherSettingsIsRefused) {
  const io::Dataset train_set = banded(100, 1, true);
  TempDir dir;
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), tiny_cnn());
  train(ctx, m, train_set, nullptr, config(1, dir.path));
  TrainConfig c = config(2, dir.path);
  c.resume = true;
  c.seed = 4;
  EXPECT_THROW(train(ctx, m, train_set, nullptr, c), Error);
  c.seed = 3;
  Model other(ctx.backend(), {"other", Shape{1, 8, 8}, {flatten(), dense(10)}});
  EXPECT_THROW(train(ctx, other, train_set, nullptr, c), Error);
}

// At the first step that many seconds after the last checkpoint: a tiny interval checkpoints
// every step (the last one, step 7, always reaches the disk), an hour none in a short run.
TEST(Train, CheckpointsEverySoManySeconds) {
  const io::Dataset train_set = banded(500, 1, true);
  Context ctx(make_cpu_backend(1));
  for (const double seconds : {1e-9, 3600.0}) {
    TempDir dir;
    Model m(ctx.backend(), tiny_cnn());
    TrainConfig c = config(1, dir.path);
    c.checkpoint_every_seconds = seconds;
    c.max_steps = 7;
    train(ctx, m, train_set, nullptr, c);
    if (seconds < 1) {
      EXPECT_EQ(io::latest_checkpoint(dir.path), dir.path / "checkpoint-0-7.strand");
    } else {
      EXPECT_FALSE(io::latest_checkpoint(dir.path));
    }
  }
}

// A write that fails on the background thread ends the run with its Io error, naming the
// directory; periodic checkpoints need a directory.
TEST(Train, AFailedBackgroundWriteIsReported) {
  const io::Dataset train_set = banded(200, 1, true);
  TempDir dir;
  std::ofstream(dir.path / "file") << "not a directory";
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), tiny_cnn());
  TrainConfig c = config(1, dir.path / "file" / "checkpoints");
  c.checkpoint_every = 2;
  try {
    train(ctx, m, train_set, nullptr, c);
    FAIL() << "a run whose checkpoints cannot be written succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io) << e.what();
    EXPECT_NE(e.where().find("checkpoints"), std::string::npos) << e.where();
  }
  c = config(1, {});
  c.checkpoint_every = 2;
  EXPECT_THROW(train(ctx, m, train_set, nullptr, c), Error);
}

// Rank 0 of `world` workers in one thread's view: every sum is multiplied by the world (the
// other workers are the same), so a run's global batch is its batch times the world.
class RankZeroOf final : public Strategy {
 public:
  explicit RankZeroOf(int world) : world_(world) {}
  std::string name() const override { return "rank 0 of several"; }
  void finish_step(Model& model, Optimizer& optimizer) override {
    optimizer.step(model.params(), model.grads());
  }
  double sum(double value) override { return world_ * value; }
  int world() const override { return world_; }

 private:
  int world_;
};

// The global batch stays the checkpoint's on any number of workers: the same command on twice
// the workers trains half the batch on each; a world it does not divide over, or a batch that
// changes the global one, is refused with both batches named. (That the ranks then follow the
// uninterrupted run is tests/allreduce/test_data_parallel.cpp's.)
TEST(Train, ResumingOnOtherWorkersKeepsTheGlobalBatch) {
  const io::Dataset train_set = banded(500, 1, true);
  TempDir dir;
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), tiny_cnn());
  TrainConfig c = config(2, dir.path);  // batch 32
  c.checkpoint_every = 4;
  c.max_steps = 20;  // epoch 2, step 4
  train(ctx, m, train_set, nullptr, c);
  c.max_steps = 22;
  c.resume = true;
  auto refused = [&](Strategy& strategy, int64_t batch, const std::string& fragment) {
    TrainConfig r = c;
    r.batch_size = batch;
    try {
      train(ctx, m, train_set, nullptr, r, strategy);
      ADD_FAILURE() << "resumed with batch " << batch << " on " << strategy.world() << " workers";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  RankZeroOf one(1), two(2), three(3);
  refused(one, 24, "batch size 32 per worker, 32 images a step over all; this run asks for 24 per worker");
  refused(three, 32, "which does not divide over this run's 3 workers");
  refused(two, 24, "this run asks for 24 per worker (48 images a step over 2 workers)");
  const TrainResult r = train(ctx, m, train_set, nullptr, c, two);  // 16 per worker
  EXPECT_EQ(r.resumed_from_step, 20);
  EXPECT_EQ(r.global_step, 22);
  c.max_steps = 24;
  c.batch_size = 16;  // asked for explicitly: the same
  EXPECT_EQ(train(ctx, m, train_set, nullptr, c, two).global_step, 24);
  const io::Checkpoint ck = io::load_checkpoint(*io::latest_checkpoint(dir.path));
  EXPECT_EQ(ck.batch_size, 16);
  EXPECT_EQ(ck.global_batch, 32);
}

TEST(Train, ResumeWithoutCheckpointStartsFresh) {
  const io::Dataset train_set = banded(64, 1, true);
  TempDir dir;
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), tiny_cnn());
  TrainConfig c = config(1, dir.path);
  c.resume = true;
  EXPECT_EQ(train(ctx, m, train_set, nullptr, c).resumed_from_epoch, 0);
}

TEST(Train, MismatchedDataIsRejected) {
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), tiny_cnn());
  io::Dataset wrong = banded(10, 1, true);
  wrong.sample_shape = Shape{1, 28, 28};
  EXPECT_THROW(train(ctx, m, wrong, nullptr, config(1, {})), Error);
  EXPECT_THROW(train(ctx, m, banded(10, 1, true), nullptr, config(0, {})), Error);
}

TEST(Evaluate, ConfusionMatrixAddsUp) {
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), tiny_cnn());
  m.init(1);
  const io::Dataset data = banded(123, 5, true);
  const EvalResult r = evaluate(m, data, 50);
  EXPECT_EQ(r.examples, 123);
  int64_t total = 0, diagonal = 0;
  for (size_t i = 0; i < r.confusion.size(); ++i)
    for (size_t j = 0; j < r.confusion[i].size(); ++j) {
      total += r.confusion[i][j];
      if (i == j) diagonal += r.confusion[i][j];
    }
  EXPECT_EQ(total, 123);
  EXPECT_DOUBLE_EQ(r.accuracy, double(diagonal) / 123);
}

// Workers in threads of one process: sum() adds the values of the `parties` taking part, as a
// parameter server adds those of the live workers.
class ThreadSums {
 public:
  explicit ThreadSums(int parties) : parties_(parties) {}
  double sum(double value) {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t round = round_;
    total_ += value;
    if (++arrived_ == parties_) {
      result_ = total_, total_ = 0, arrived_ = 0, ++round_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return round_ != round; });
    }
    return result_;  // the next round cannot complete without this worker
  }

 private:
  const int parties_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t round_ = 0;
  double total_ = 0, result_ = 0;
};

class ThreadWorker final : public Strategy {
 public:
  ThreadWorker(ThreadSums& sums, int rank, int world) : sums_(sums), rank_(rank), world_(world) {}
  std::string name() const override { return "threads"; }
  void finish_step(Model& model, Optimizer& optimizer) override {
    optimizer.step(model.params(), model.grads());
  }
  double sum(double value) override { return sums_.sum(value); }
  int rank() const override { return rank_; }
  int world() const override { return world_; }

 private:
  ThreadSums& sums_;
  int rank_, world_;
};

TEST(Strategy, GatherGivesEachWorkersValuesAndNoneForOneThatLeft) {
  ThreadSums sums(2);  // of 3 workers, worker 1 has left
  std::vector<std::vector<double>> got[3];
  std::vector<std::thread> threads;
  for (int r : {0, 2})
    threads.emplace_back([&, r] {
      ThreadWorker worker(sums, r, 3);
      const double own[] = {10.0 + r, -double(r)};
      got[r] = worker.gather(own);
    });
  for (std::thread& t : threads) t.join();
  const std::vector<std::vector<double>> want = {{10, 0}, {}, {12, -2}};
  EXPECT_EQ(got[0], want);
  EXPECT_EQ(got[2], want);
  EXPECT_EQ(LocalStrategy().gather(std::vector<double>{4, 5}), (std::vector<std::vector<double>>{{4, 5}}));
}

}  // namespace
}  // namespace strand
