// ps/worker — the top layer on the worker side: the key-value API over chunks. push() sends a
// chunk's gradients, pull() fetches a chunk's parameters once the servers' consistency mode
// lets a worker at that clock read them; both return a Ticket at once (ps/dispatch). init()
// and gather() move whole shards with their optimizer state (start, resume, checkpoints);
// sum() adds a number over the live workers (metrics). A worker may join a running job:
// request_rank(), then a Worker of that rank, then join() (ps/server.hpp, joins).
//
// Memory handed to push/pull/init is used in place (no copies on the send side): it must stay
// valid, and unchanged for a push, until the ticket completes.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include <strand/core/context.hpp>
#include <strand/core/optimizer.hpp>
#include <strand/ps/dispatch.hpp>
#include <strand/ps/shard.hpp>

namespace strand::ps {

struct WorkerOptions {
  std::vector<std::string> servers;  // endpoint of server i
  uint64_t token = 0;
  int rank = 0, workers = 1;  // a joiner's workers: its rank + 1
  ShardMap map;               // the same on every worker and server
  DispatchOptions dispatch;
};

// A rank given to a worker that joins, and the job it joins.
struct Joining {
  int rank = 0;
  JobShape job;
};

class Worker {
 public:
  Worker(const Context& ctx, WorkerOptions options);

  // Asks server 0 of `options.servers` for a rank in the running job (its rank and workers
  // are ignored). Blocking; one join at a time, so it may wait for another's.
  static Joining request_rank(const Context& ctx, const WorkerOptions& options);
  // Joins with the rank request_rank() gave: every server holds for it, and it starts at the
  // latest hold. Returns that step, this worker's first (its clock); blocking.
  int64_t join();

  const ShardMap& map() const { return opt_.map; }
  int rank() const { return opt_.rank; }
  // The job's workers at the latest step pulled (or joined): workers that join count from
  // their start on, those dropped or gone still do (ranks keep their place in the batch).
  int workers() const { return workers_.load(); }

  // Gradients of chunk `id` (map().chunks[id].size() floats at `grads`) for this worker's step
  // `clock` (0-based), to be applied with learning rate `lr`.
  Ticket push(uint32_t id, const float* grads, int64_t clock, float lr);
  // Chunk `id`'s parameters into `params`, once a worker that has pushed `clock` steps may read
  // them (sync: the round of step clock-1 is applied; ssp:S: no live worker is more than S
  // steps behind; async: at once). Always after the servers were initialized.
  Ticket pull(uint32_t id, float* params, int64_t clock);
  // Every chunk into `flat` (the whole buffer) with one request per server.
  void pull_all(float* flat, int64_t clock);
  // Sets every server's chunks from the whole flat buffer and optimizer state (blocking); their
  // rounds start at job.step, and joiners are told `job`.
  void init(const float* flat, const OptimizerConfig& config, const OptimizerState& state,
            const JobShape& job = {});
  // The whole flat buffer and optimizer state from every server (blocking).
  void gather(float* flat, OptimizerState& state);
  // The same, with the same pushes of each worker applied on every server (async, ssp: the
  // servers hold further pushes meanwhile, ps/header.hpp Freeze; sync is consistent as is).
  void snapshot(float* flat, OptimizerState& state);
  // Sum of `value` over the live workers; every worker calls it the same number of times at
  // each clock (the steps it has pushed), and a joiner from its first step on.
  double sum(double value, int64_t clock);
  // Tells the servers this worker is done, so sync rounds stop waiting for it.
  void leave();

 private:
  // Every server's chunk ids, in messages of at most kMaxChunksPerMessage ids.
  struct Batch {
    int server;
    std::vector<uint32_t> chunks;
  };
  std::vector<Batch> batches() const;
  // gather(), at `cut` (per worker, the pushes the snapshot holds) when given.
  void gather_at(float* flat, OptimizerState& state, const std::vector<int64_t>* cut);
  void thaw();
  // A pull reply's count of the job's workers (the I/O thread's; 0: none given).
  void seen_workers(int n) {
    int w = workers_.load();
    while (n > w && !workers_.compare_exchange_weak(w, n)) {
    }
  }

  std::string where_;
  WorkerOptions opt_;
  std::atomic<int> workers_;
  int64_t sum_clock_ = -1, sum_number_ = 0;
  Dispatcher dispatch_;
};

}  // namespace strand::ps
