// ps/server — a parameter server: holds the parameters and optimizer state of its shard of
// chunks and applies the workers' gradients to them. It runs on a thread of its own, so the
// first rank on a host can run the host's server beside its own training.
//
// The update is the single-process one: the optimizer's update rule (core/optimizer's
// update_step, on a CPU backend) runs on each chunk, and it is elementwise, so cutting the
// buffer into chunks changes no bit. When a gradient is applied and when a pull may read is
// the consistency mode's (ps/consistency: sync, async, ssp:S), one policy object per server
// that the server hands each checked push and pull to.
//
// Failures and security: workers heartbeat; a worker silent for `worker_timeout_s` (once it
// has been heard from) is dropped from the rounds (logged, counted) and told so if it comes
// back. Messages with a wrong token or a malformed or oversized header are dropped without an
// answer; requests with the token that name unknown chunks, carry payloads of the wrong size
// or come out of order are refused with a Fail reply saying why. Either way they are counted
// and never applied. Frames larger than the largest chunk are cut off by ZeroMQ before they
// are buffered. The server binds to the address given, and refuses a wildcard address unless
// `allow_any_interface` is set.
//
// Joins: a worker may join the running job (Worker::join). Server 0 gives it the next rank;
// then each server holds for it (its rounds and pulls from its frontier, the first step no
// worker can have read yet, wait) and the joiner starts at the latest server's hold, on every
// server alike. From that step on rounds wait for it and pull replies count it among the
// job's workers, so every worker re-divides the global batch at the same step. One join at
// a time; a joiner silent for `worker_timeout_s` is called off and the hold ends.
//
// Snapshots (async, ssp): a worker freezes every server (pushes are held), then gathers at cuts
// (per worker, the most pushes any server applied); each server applies the held pushes up to
// them before it answers, so every shard holds the same pushes (ps/header.hpp Freeze).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include <strand/core/context.hpp>
#include <strand/ps/consistency.hpp>
#include <strand/ps/shard.hpp>
#include <strand/ps/transport.hpp>

namespace strand::ps {

struct ServerOptions {
  std::string bind = "tcp://127.0.0.1:0";  // port 0 or *: any free port (see Server::endpoint)
  bool allow_any_interface = false;        // permit "tcp://*:port" / 0.0.0.0
  uint64_t token = 0;
  int index = 0;  // this server's number in the map
  ShardMap map;
  int workers = 1;  // ranks 0..workers-1 at the start (more may join)
  Consistency consistency;
  double worker_timeout_s = 10;
  double check_interval_s = 0.1;  // how often silent workers are looked for
  int threads = 1;                // the optimizer's CPU threads
};

// Counters, readable while the server runs.
struct ServerStats {
  int64_t bad_token = 0;      // messages dropped: wrong job token
  int64_t malformed = 0;      // dropped: no well-formed header, unknown sender, too many frames
  int64_t unknown_chunk = 0;  // requests naming a chunk this server does not hold
  // Requests with the token refused with a Fail reply (unknown chunks included): wrong frame
  // count or size, a step out of order, before the init, from a dropped worker ...
  int64_t rejected = 0;
  int64_t workers_dropped = 0;
  int64_t workers_left = 0;   // workers that said leave(): with the dropped ones, who is done
  int64_t joined = 0;         // workers that joined the running job
  int64_t updates = 0;        // optimizer steps applied to chunks
  int64_t heard = 0;          // messages from workers still in the job (their heartbeats too)
  int64_t max_staleness = 0;  // ssp/async: most steps a gradient's sender was ahead of the slowest
};

class Server {
 public:
  // Binds (Io error if it cannot) and starts the server thread. Logs through ctx.
  Server(const Context& ctx, ServerOptions options);
  ~Server();  // stops at once: workers see it as dead
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  const std::string& endpoint() const { return endpoint_; }  // the bound address, port filled in
  ServerStats stats() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  std::string endpoint_;
  std::thread thread_;
};

}  // namespace strand::ps
