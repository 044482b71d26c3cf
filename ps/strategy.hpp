// PsStrategy: training against parameter servers (train/strategy.hpp's Strategy). Workers
// compute gradients; the servers (ps/server.hpp) hold the parameters and optimizer state and
// apply the updates.
//
// A step: as backward reports finished gradient ranges (last layer first), every chunk that
// lies wholly inside them is pushed at once and its pull is queued right behind it, so pushes,
// the servers' updates and pulls overlap the backward pass of the earlier layers;
// finish_step() sends the rest and waits. The learning rate of each push is the trainer's
// optimizer's current one (the trainer sets it before the step), so schedules apply on the
// servers too. The local Optimizer is never stepped; collect() loads the servers' state into
// it (and the parameters into the model) for a checkpoint, and broadcast_initial() from rank 0
// sets the servers from them, so a checkpoint restores onto any number of servers.
//
// leave() at the end of training tells the servers this worker is done; a worker that ends
// without it looks like a crashed one and is dropped from sync rounds after the timeout.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <strand/core/context.hpp>
#include <strand/ps/worker.hpp>
#include <strand/train/strategy.hpp>
#include <strand/train/timeline.hpp>

namespace strand::ps {

struct PsConfig {
  std::vector<std::string> servers;  // endpoint of server i
  uint64_t token = 0;
  int rank = 0, workers = 1;
  int64_t chunk_bytes = kDefaultChunkBytes;
  DispatchOptions dispatch;
  // When set: each push and pull (issue to reply, with its bytes) and the step's wait.
  Timeline* timeline = nullptr;
};

class PsStrategy final : public Strategy {
 public:
  // `param_count`: the model's (the shard map is built from it; servers must use the same).
  PsStrategy(const Context& ctx, PsConfig config, int64_t param_count);
  ~PsStrategy() override;

  std::string name() const override { return "parameter server"; }
  void broadcast_initial(Model& model, Optimizer& optimizer) override;
  void grads_ready(Model& model, int64_t begin, int64_t end) override;
  void finish_step(Model& model, Optimizer& optimizer) override;
  double sum(double value) override { return worker_->sum(value); }
  int rank() const override { return worker_->rank(); }
  int world() const override { return worker_->workers(); }
  // Rank 0's checkpoints hold the servers' parameters and optimizer state (collect()).
  void before_checkpoint(Model& model, Optimizer& optimizer) override { collect(model, optimizer); }

  // Checkpoint: every shard's parameters into the model, their optimizer state into `optimizer`.
  void collect(Model& model, Optimizer& optimizer);
  void leave();
  const ShardMap& map() const { return worker_->map(); }

 private:
  void issue(Model& model, size_t chunk);
  void wait_all();  // every ticket, before the first error is rethrown

  const Context& ctx_;
  std::unique_ptr<Worker> worker_;
  const Optimizer* optimizer_ = nullptr;
  int64_t clock_ = 0;        // steps this worker has pushed
  int64_t ready_from_ = -1;  // lowest gradient offset final in this step (-1: none yet)
  int64_t next_ = -1;        // highest chunk not yet pushed in this step
  Timeline* timeline_;
  struct Pending {
    Ticket ticket;
    const char* what;  // "push", "pull"
    Timeline::Clock::time_point issued;
    int64_t bytes;
  };
  std::vector<Pending> pending_;
};

}  // namespace strand::ps
