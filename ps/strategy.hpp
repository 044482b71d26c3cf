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
// A model on a GPU (a backend whose make_stage() gives a Stage): each final chunk's gradients
// are downloaded to a pinned mirror on the stage's copy queue while backward computes earlier
// layers, and pushed once the download has landed; pulls land in a second mirror and are
// uploaded as they arrive, and the next step's kernels wait for the uploads (Stage::join).
// The backend must run without CUDA graphs: these copies cannot be recorded into a step.
//
// The servers hold the trainable parameters only (Model::trainable_count()): each worker keeps
// and updates its own copy of the model's state, and the chief's goes into checkpoints.
//
// leave() at the end of training tells the servers this worker is done; a worker that ends
// without it looks like a crashed one and is dropped from sync rounds after the timeout.
//
// A worker may join a running job (PsConfig::joining: the rank Worker::request_rank gave): it
// starts at the step the servers agree on, from their parameters, and the workers' world()
// grows at that step on every worker, so the trainer re-divides the global batch there.
#pragma once

#include <deque>
#include <memory>
#include <optional>
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
  // Set: this worker joins the running job with this rank (rank and workers are ignored).
  std::optional<Joining> joining;
};

class PsStrategy final : public Strategy {
 public:
  // `param_count`: the model's (the shard map is built from it; servers must use the same).
  PsStrategy(const Context& ctx, PsConfig config, int64_t param_count);
  ~PsStrategy() override;

  std::string name() const override { return "parameter server"; }
  void broadcast_initial(Model& model, Optimizer& optimizer, const StartPoint& at) override;
  std::optional<JoinPoint> joined() const override { return joined_; }
  void grads_ready(Model& model, int64_t begin, int64_t end) override;
  void finish_step(Model& model, Optimizer& optimizer) override;
  double sum(double value) override { return worker_->sum(value, clock_); }
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
  // Chunk `c` is final: pushed now (host model) or once its download has landed.
  void ready(Model& model, size_t chunk);
  void push_landed(Model& model, bool wait);  // downloads in order: all (wait) or those landed
  // Every ticket, before the first error is rethrown; staged pulls are uploaded as they land.
  void wait_all(Model* model);

  const Context& ctx_;
  std::unique_ptr<Worker> worker_;
  const Optimizer* optimizer_ = nullptr;
  std::optional<JoinPoint> joined_;
  int64_t clock_ = 0;        // the step this worker pushes next (the job's global step)
  int64_t ready_from_ = -1;  // lowest gradient offset final in this step (-1: none yet)
  int64_t next_ = -1;        // highest chunk not yet pushed in this step
  Timeline* timeline_;
  struct Pending {
    Ticket ticket;
    const char* what;  // "push", "pull"
    Timeline::Clock::time_point issued;
    int64_t bytes;
    int64_t chunk;  // a pull's, to upload it; -1 for a push
  };
  std::vector<Pending> pending_;
  // Device models only: the mirrors of the gradients (pushed from) and of the parameters
  // (pulled into), and the chunks whose downloads are in flight, in order.
  std::unique_ptr<Stage> grads_stage_, params_stage_;
  struct Download {
    size_t chunk;
    Stage::Fence fence;
  };
  std::deque<Download> downloads_;
};

}  // namespace strand::ps
