// ShmChannel: a one-way ring link through shared memory, for a Group whose members all share
// one machine's memory (Group::shares_memory()): each member sends chunks of floats to its
// right neighbour and receives from its left one, in order, with user-space copies and no
// system call (MPI's own shared-memory path pays a kernel copy (CMA) or a fragment pipeline
// per message). The ring (ring.hpp) runs over it. Internal to the allreduce module.
//
// Each member owns kSlots chunk-sized slots (an MPI-3 shared window) that its right neighbour
// reads directly, and per slot two counters on their own cache lines: `ready` = message
// number + 1 once the data is in, `done` = message number + 1 once the neighbour consumed it.
// Nothing here waits: callers poll (try_send(), peek()) and pause through their Group.
#pragma once

#include <mpi.h>
#include <atomic>
#include <cstdint>

#include <strand/allreduce/group.hpp>

namespace strand::allreduce {

class ShmChannel {
 public:
  // Four 256 KiB slots: a chunk is still in the sender's cache when the receiver reads it.
  static constexpr int kSlots = 4;
  static constexpr int64_t kChunk = 64 * 1024;  // floats

  // Collective over `g`'s members, which must all share this machine's memory.
  explicit ShmChannel(const Group& g);
  ShmChannel(const ShmChannel&) = delete;
  ShmChannel& operator=(const ShmChannel&) = delete;
  ~ShmChannel();

  int64_t chunk() const { return kChunk; }
  // The last-level cache of this machine's CPUs, bytes (0 when the system does not say): the
  // ring streams what it writes last only when the members' buffers would not stay cached.
  int64_t cache_bytes() const { return cache_bytes_; }

  // Copies n <= chunk() floats into the next slot for the right neighbour; false while that
  // slot still holds a message it has not consumed.
  bool try_send(const float* src, int64_t n);
  // The left neighbour's next message, or null while it has not arrived.
  const float* peek() const {
    const int slot = int(received_ % kSlots);
    return load(left_.ready[slot]) >= received_ + 1 ? left_.data + slot * kChunk : nullptr;
  }
  // The message peek() returned is consumed: its slot may be refilled.
  void release() {
    const int slot = int(received_ % kSlots);
    store(left_.done[slot], ++received_);
  }

 private:
  struct Counter {
    alignas(64) uint64_t v;
  };
  struct Layout {
    Counter* ready;
    Counter* done;
    float* data;
  };
  static Layout layout(void* base);
  static uint64_t load(Counter& c) { return std::atomic_ref<uint64_t>(c.v).load(std::memory_order_acquire); }
  static void store(Counter& c, uint64_t v) {
    std::atomic_ref<uint64_t>(c.v).store(v, std::memory_order_release);
  }

  MPI_Win win_ = MPI_WIN_NULL;
  int64_t cache_bytes_ = 0;
  Layout mine_{}, left_{};
  uint64_t sent_ = 0, received_ = 0;  // messages through this channel since it was made
};

}  // namespace strand::allreduce
