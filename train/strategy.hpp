// Strategy: how a training step's gradients become a parameter update. The trainer calls
// these hooks; LocalStrategy (one process) just applies the optimizer. Distributed strategies
// (ring allreduce, parameter server) implement the same hooks, so the training loop never
// changes with the strategy.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <strand/core/model.hpp>
#include <strand/core/optimizer.hpp>

namespace strand {

// Where training starts: its global step (a resume's) and its images per step over all workers.
struct StartPoint {
  int64_t step = 0;
  int64_t global_batch = 0;
};

// A worker that joined a running job (a parameter server's): its first step, and the workers
// whose batches made the job's global batch (its epochs' length).
struct JoinPoint {
  int64_t step = 0;
  int initial_world = 1;
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string name() const = 0;
  // Every worker starts from the same parameters and optimizer state (e.g. rank 0's) at `at`.
  virtual void broadcast_initial(Model& /*model*/, Optimizer& /*optimizer*/, const StartPoint& /*at*/) {}
  // Set when this worker joined a running job: it takes the job's state instead of its own.
  virtual std::optional<JoinPoint> joined() const { return std::nullopt; }
  // Gradients [begin, end) of the flat buffer are final for this step (last layer first).
  virtual void grads_ready(Model& /*model*/, int64_t /*begin*/, int64_t /*end*/) {}
  // Completes the step: after it, model.params() hold the updated parameters.
  virtual void finish_step(Model& model, Optimizer& optimizer) = 0;
  // The step's work is queued (a recorded step launched, core/backend.hpp end_step()): a
  // strategy whose device work could wait forever on a peer waits for it here, bounded.
  virtual void after_step(Model& /*model*/) {}
  // Rank 0, right before it writes a checkpoint: bring the model's parameters and the
  // optimizer's state up to date where they live elsewhere (a parameter server's shards).
  virtual void before_checkpoint(Model& /*model*/, Optimizer& /*optimizer*/) {}
  // Sum of a per-worker count over all workers (1 worker: the value itself).
  virtual double sum(double value) { return value; }
  // Every worker's `values` in rank order, empty for a worker that has left (a parameter server
  // drops dead ones); every worker calls it with as many values. This default builds it from
  // sum(), one round per worker and value: cheap at an evaluation, too slow inside a step.
  virtual std::vector<std::vector<double>> gather(std::span<const double> values) {
    std::vector<std::vector<double>> all(static_cast<size_t>(world()));
    for (int k = 0; k < world(); ++k) {
      const bool mine = k == rank();
      if (sum(mine ? 1.0 : 0.0) == 0) continue;  // worker k has left: every worker skips it
      for (double v : values) all[size_t(k)].push_back(sum(mine ? v : 0.0));
    }
    return all;
  }
  virtual int rank() const { return 0; }
  // The workers at the step about to run (workers that join a parameter-server job add to it).
  virtual int world() const { return 1; }
};

class LocalStrategy final : public Strategy {
 public:
  std::string name() const override { return "local"; }
  void finish_step(Model& model, Optimizer& optimizer) override {
    optimizer.step(model.params(), model.grads());
  }
};

}  // namespace strand
