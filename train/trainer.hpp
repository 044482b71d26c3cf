// The training loop and evaluation: epochs of shuffled batches through a Model, the update
// delegated to a Strategy, an evaluation on the test set after each epoch (and every N steps
// if asked, optionally stopping at a target accuracy), a checkpoint after each epoch (and
// every N steps or seconds if asked, written in the background), and exact resumption from a
// checkpoint, at an epoch's end or inside one. Progress and metrics go to callbacks so
// the CLI, benchmarks and library users each render them their own way.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <strand/core/context.hpp>
#include <strand/core/model.hpp>
#include <strand/core/optimizer.hpp>
#include <strand/io/dataset.hpp>
#include <strand/train/activity.hpp>
#include <strand/train/schedule.hpp>
#include <strand/train/strategy.hpp>
#include <strand/train/timeline.hpp>

namespace strand {

struct EvalResult {
  double accuracy = 0;
  double loss = 0;
  int64_t examples = 0;
  std::vector<std::vector<int64_t>> confusion;  // [true label][predicted label]
};

// Accuracy, mean loss and confusion matrix of `model` on `data` (no dropout).
EvalResult evaluate(Model& model, const io::Dataset& data, int64_t batch_size = 1000);

// One evaluation: after each epoch, and every `eval_every` steps when set.
// One worker's part of an evaluation (Metrics::per_worker).
struct WorkerMetrics {
  double loss = 0, train_accuracy = 0;  // over its own batches of the epoch so far
  // Of its own copy of the model: the workers' copies differ in the parameter server's async
  // and ssp modes.
  double test_accuracy = -1, test_loss = -1;
  double images_per_sec = 0;  // its own
};

struct Metrics {
  int64_t epoch = 0;          // 1-based, the epoch in progress (or just finished)
  int64_t step = 0;           // optimizer steps so far
  double loss = 0;            // mean training loss over the epoch so far
  double train_accuracy = 0;  // over the epoch's training batches so far (with dropout)
  double test_accuracy = -1;  // -1 when there is no test set
  double test_loss = -1;
  double images_per_sec = 0;  // training images per second in the epoch so far, all workers,
                              // evaluation time excluded
  double seconds = 0;         // wall time since training started (this run)
  int64_t workers = 1;        // workers still training (a parameter server drops dead ones)
  // With more than one worker: each one's, in rank order; empty for one that has left.
  std::vector<std::optional<WorkerMetrics>> per_worker{};
};

struct StepProgress {
  int64_t epoch = 0, epochs = 0;  // 1-based
  int64_t step_in_epoch = 0, steps_per_epoch = 0;
  double loss = 0, accuracy = 0;  // running means over the epoch so far
  double images_per_sec = 0;
};

// The defaults are the CLI's (`strand train`): the recipe that passes 99.1% on MNIST in one epoch
// (README "Defaults"), so a library user and a command-line user train the same thing.
struct TrainConfig {
  int64_t epochs = 1;
  int64_t batch_size = 32;  // per worker; a step's global batch is batch_size x world
  uint64_t seed = 42;
  OptimizerConfig optimizer;
  Schedule schedule;  // the learning rate over the whole run (epochs x steps)
  // Of the training batches (never the evaluation's), drawn per sample from (seed, epoch, the
  // sample's index), so a resumed or data-parallel run sees the same images.
  Augmentation augment;
  std::filesystem::path checkpoint_dir;  // empty: no checkpoints
  // Also checkpoint inside epochs: after every this many steps, and/or at the first step this
  // many seconds after the previous checkpoint (0: off). Rank 0 takes a snapshot in memory and
  // a background thread writes it (train/checkpoint_writer.hpp); the newest two files are kept.
  int64_t checkpoint_every = 0;
  double checkpoint_every_seconds = 0;
  bool resume = false;           // continue from the newest checkpoint in checkpoint_dir
  int64_t max_steps = 0;         // stop after this many steps in all (0: no limit)
  int64_t untimed_steps = 0;     // first steps of the call left out of train_seconds/_images (warm-up)
  int64_t eval_every = 0;        // also evaluate every this many steps (0: epoch ends only)
  double stop_at_accuracy = 0;   // stop at the first evaluation reaching it (0: off)
  Timeline* timeline = nullptr;  // when set, each step's phases are recorded
  Activity* activity = nullptr;  // when set, kept up to date with the step and its phase
  std::function<void(const StepProgress&)> on_step;
  std::function<void(const Metrics&)> on_eval;
};

// Usage error naming the field when a setting is out of range.
void validate(const TrainConfig& config);

struct TrainResult {
  std::vector<Metrics> evaluations;  // those made in this call
  bool reached_target = false;       // stop_at_accuracy was reached
  int64_t global_step = 0;
  int64_t resumed_from_epoch = 0;  // epochs already done when training started
  int64_t resumed_from_step = 0;   // optimizer steps already taken then (inside an epoch or not)
  // The steps of this call after the first config.untimed_steps: wall seconds from their start
  // (set-up done, data on the device, the untimed steps finished on it) until the device
  // finished the last step, evaluations and epoch-end checkpoints excluded (the snapshots of
  // checkpoints inside an epoch count, as a cost of training); and the images this worker
  // trained on in them (an epoch's last batch may be smaller).
  double train_seconds = 0;
  int64_t train_images = 0;
  EvalResult last_eval;
};

// Trains `model` (initialised from config.seed unless resuming). `eval` may be null.
// With a strategy of W workers, global batch s of an epoch is entries [s*B*W, (s+1)*B*W) of
// the epoch's permutation (trimmed to a multiple of W), and worker r trains on its r-th
// part: W workers with batch B follow the same trajectory as one with batch B*W. A resume keeps
// the checkpoint's global batch on any number of workers (config.batch_size is then its share
// when it was the checkpoint's batch per worker; any batch that changes the global one is refused).
TrainResult train(Context& ctx, Model& model, const io::Dataset& train_set, const io::Dataset* eval,
                  const TrainConfig& config, Strategy& strategy);

// The default strategy for one process.
TrainResult train(Context& ctx, Model& model, const io::Dataset& train_set, const io::Dataset* eval,
                  const TrainConfig& config);

}  // namespace strand
