// ps/worker — the top layer on the worker side: the key-value API over chunks. push() sends a
// chunk's gradients, pull() fetches a chunk's parameters once the servers' consistency mode
// lets a worker at that clock read them; both return a Ticket at once (ps/dispatch). init()
// and gather() move whole shards with their optimizer state (start, resume, checkpoints);
// sum() adds a number over the live workers (metrics).
//
// Memory handed to push/pull/init is used in place (no copies on the send side): it must stay
// valid, and unchanged for a push, until the ticket completes.
#pragma once

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
  int rank = 0, workers = 1;
  ShardMap map;  // the same on every worker and server
  DispatchOptions dispatch;
};

class Worker {
 public:
  Worker(const Context& ctx, WorkerOptions options);

  const ShardMap& map() const { return opt_.map; }
  int rank() const { return opt_.rank; }
  int workers() const { return opt_.workers; }

  // Gradients of chunk `id` (map().chunks[id].size() floats at `grads`) for this worker's step
  // `clock` (0-based), to be applied with learning rate `lr`.
  Ticket push(uint32_t id, const float* grads, int64_t clock, float lr);
  // Chunk `id`'s parameters into `params`, once a worker that has pushed `clock` steps may read
  // them (sync: the round of step clock-1 is applied; ssp:S: no live worker is more than S
  // steps behind; async: at once). Always after the servers were initialized.
  Ticket pull(uint32_t id, float* params, int64_t clock);
  // Every chunk into `flat` (the whole buffer) with one request per server.
  void pull_all(float* flat, int64_t clock);
  // Sets every server's chunks from the whole flat buffer and optimizer state (blocking).
  void init(const float* flat, const OptimizerConfig& config, const OptimizerState& state);
  // The whole flat buffer and optimizer state from every server (blocking).
  void gather(float* flat, OptimizerState& state);
  // Sum of `value` over the live workers; every worker calls it the same number of times.
  double sum(double value);
  // Tells the servers this worker is done, so sync rounds stop waiting for it.
  void leave();

 private:
  // Every server's chunk ids, in messages of at most kMaxChunksPerMessage ids.
  struct Batch {
    int server;
    std::vector<uint32_t> chunks;
  };
  std::vector<Batch> batches() const;

  std::string where_;
  WorkerOptions opt_;
  int64_t sum_round_ = 0;
  Dispatcher dispatch_;
};

}  // namespace strand::ps
