// ps/consistency — when a parameter server applies a gradient and when a pull may read. One
// policy object per mode behind one interface: the server decodes and checks a request, then
// hands it to its policy (as ps-lite's server hands requests to its handle); the policy keeps
// the per-chunk bookkeeping of its mode and calls back into the server to apply an update.
//
// sync: a chunk's round waits for the gradient of every live worker and applies their mean
// (summed in rank order, so the result does not depend on arrival order): W workers with batch
// B follow one process with batch W*B. A pull at clock t reads once round t-1 is applied.
// async: each gradient is applied as it arrives; pulls read at once.
// ssp:S: applied on arrival too, but a pull by a worker whose clock is t waits until every
// live worker has pushed at least t-S steps of that chunk (stale synchronous parallel), so no
// worker runs more than S steps ahead of the slowest.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <strand/core/error.hpp>
#include <strand/ps/shard.hpp>
#include <strand/ps/transport.hpp>

namespace strand::ps {

struct Consistency {
  enum Mode { Sync, Async, Ssp } mode = Sync;
  int staleness = 0;  // ssp only
  // "sync", "async" or "ssp:S" (S >= 0); Usage error otherwise.
  static Consistency parse(const std::string& text);
  std::string str() const;
};

// A request the server refuses: it answers with a Fail reply of this kind, saying why.
class Refusal : public Error {
 public:
  Refusal(ErrorKind kind, std::string why) : Error(kind, std::move(why)) {}
};

// What a policy needs of its server.
class PolicyHost {
 public:
  // Whether step `step`'s gradient from `worker` is waited for: the worker is in the job (not
  // dropped, not gone) and had joined by that step, or is about to join (ps/server's joins).
  virtual bool counts(int worker, int64_t step) const = 0;
  // Whether `worker` is training now: in the job and joined (for the slowest worker's clock).
  virtual bool active(int worker) const = 0;
  // One optimizer step on chunk `id` with its floats at `grads` (any byte alignment).
  virtual void apply(uint32_t id, const float* grads, float lr) = 0;

 protected:
  ~PolicyHost() = default;
};

class ConsistencyPolicy {
 public:
  virtual ~ConsistencyPolicy() = default;
  // Refusal unless `worker` may push its step `step` of chunk `id` now (a push of several
  // chunks is checked whole before any of it is taken).
  virtual void check_push(uint32_t id, int worker, int64_t step) const = 0;
  // Takes the gradient (the frame as received, the chunk's size checked). Returns how many
  // steps `worker` was ahead of the slowest live worker where the mode lets it be (else 0).
  virtual int64_t push(uint32_t id, int worker, Message grads, float lr) = 0;
  // Async and ssp: the step of `worker`'s next push of chunk `id` (its start plus its pushes
  // applied); nothing in sync mode, whose rounds are one step on every chunk.
  virtual std::optional<int64_t> clock(uint32_t id, int worker) const = 0;
  // Whether a worker that has pushed `clock` steps may read chunk `id` now.
  virtual bool readable(uint32_t id, int64_t clock) const = 0;
  // Chunk `id` was (re)initialized: its rounds start over at step `step` (every worker's next
  // push is of that step), gradients held are dropped.
  virtual void reset(uint32_t id, int64_t step) = 0;
  // Room for workers 0..count-1 (more join: ps/server).
  virtual void grow(int count) = 0;
  // Worker `worker` joined: its first push is of step `start`.
  virtual void joined(int worker, int64_t start) = 0;
  // The first clock no worker can have pulled at yet (a pull's reply counts the workers of its
  // clock, so a joiner must start past every reply given): where a joiner can start.
  virtual int64_t frontier() const = 0;
  // A worker left, was dropped or joined (the host's counts() say so now): rounds that waited
  // for it go on.
  virtual void members_changed() = 0;
};

// The policy of `mode` for server `server`'s chunks of `map`, with workers 0..workers-1.
std::unique_ptr<ConsistencyPolicy> make_policy(const Consistency& mode, const ShardMap& map, int server,
                                               int workers, PolicyHost& host);

}  // namespace strand::ps
