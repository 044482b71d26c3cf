// SharedReduce: buffers that a Group's members, all on one machine, can address in each
// other's processes (each an MPI-3 shared window), and the allreduce that sums them where they
// lie: member r sums its segment of the range over every member's buffer in rank order and
// writes the sum into all of them, with no copy through a channel. Serves
// MpiCommunicator::allocate(). Internal to the allreduce module.
//
// Per member, in a small window of its own, two cache lines: `announced` (allreduce number,
// then which buffer and offset this member reduces) and `done` (allreduce number once its
// share is written). Waits poll through the Group, with its deadline.
#pragma once

#include <mpi.h>
#include <atomic>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include <strand/allreduce/group.hpp>

namespace strand::allreduce {

class SharedReduce {
 public:
  // Collective over `g`'s members (at least two), which must all share this machine's memory;
  // `g` outlives it.
  explicit SharedReduce(const Group& g);
  SharedReduce(const SharedReduce&) = delete;
  SharedReduce& operator=(const SharedReduce&) = delete;
  ~SharedReduce();

  // Collective: a window of n floats on every member, zeroed. Returns its id and this
  // member's memory.
  std::pair<uint64_t, float*> allocate(int64_t n);
  // Collective, like allocate(); errors are ignored (it runs in destructors).
  void release(uint64_t id);

  // data[0, n) becomes the sum over the members, in place, when every member passes a range
  // of one buffer from allocate() (each member's range at an offset of its own). Returns
  // false, having changed nothing, when any member's range is other memory: the caller runs
  // the ring. Every member calls it for the same allreduces (same n), so each takes part in
  // every handshake.
  bool try_allreduce(float* data, int64_t n, const char* what);

 private:
  static constexpr uint64_t kNoBuffer = ~uint64_t(0);
  struct Range {
    uint64_t buffer;  // window id, or kNoBuffer
    int64_t offset;   // floats from the start of the member's part
  };
  // Two ranges, used by odd and even allreduces: a member that found another's range not
  // shared returns at once and may announce its next range while slower members still read
  // this one; it cannot get two calls ahead, as its next call waits for every announcement.
  struct Control {
    alignas(64) uint64_t announced;  // allreduce number; its range below is valid
    Range range[2];
    alignas(64) uint64_t done;  // allreduce number once this member's share is written
  };
  struct Window {
    MPI_Win win = MPI_WIN_NULL;
    std::vector<float*> base;     // every member's part
    std::vector<int64_t> floats;  // and its size
  };

  std::pair<void*, MPI_Aint> query(MPI_Win win, int member) const;
  static uint64_t load(uint64_t& v) { return std::atomic_ref<uint64_t>(v).load(std::memory_order_acquire); }
  static void store(uint64_t& v, uint64_t x) {
    std::atomic_ref<uint64_t>(v).store(x, std::memory_order_release);
  }
  // Polls until every member's counter (announced or done) reaches call_.
  void wait_for_all(uint64_t Control::*counter, const char* what) const;

  const Group& g_;
  int rank_, size_;
  MPI_Win control_win_ = MPI_WIN_NULL;
  std::vector<Control*> control_;  // every member's
  std::map<uint64_t, Window> windows_;
  uint64_t next_id_ = 0, call_ = 0;
};

}  // namespace strand::allreduce
