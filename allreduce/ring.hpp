// Ring: the chunked, pipelined ring allreduce (reduce-scatter, then allgather) over one Group,
// through its ShmChannel when the members share one machine's memory, else over MPI
// point-to-point messages. Runs the whole schedule or a part of it (the hierarchical
// algorithm's reduce-scatter within a host). Internal to the allreduce module.
//
// Step s (0 <= s < 2(p-1)) sends segment (r - s) mod p to the right neighbour and receives
// segment (r - s - 1) mod p from the left; steps below p-1 add what they receive
// (reduce-scatter: afterwards rank r holds the sum of segment r+1), later steps store it
// (allgather). The segment sent at step s+1 is the one received at step s, so each chunk is
// forwarded as soon as it is reduced: large buffers stream through the ring in chunk-sized
// pieces instead of one segment at a time. Over MPI, reduce-scatter chunks land in a few
// reused scratch slots, so they are still in cache when added.
#pragma once

#include <cstdint>
#include <vector>

#include <strand/allreduce/group.hpp>
#include <strand/allreduce/shm_channel.hpp>

namespace strand::allreduce {

class Ring {
 public:
  static constexpr int kSlots = 16;  // MPI receives in flight ahead of the reduction: keeps a TCP link busy

  // The ring over data[0, n) on `g`'s members; through `channel` when not null (a channel over
  // `g`). `chunk_bytes` is the unit of MPI messages (the channel has its own); `scratch`
  // holds the MPI receives and is grown as needed (a caller reuses it across calls).
  Ring(Group& g, ShmChannel* channel, float* data, int64_t n, size_t chunk_bytes,
       std::vector<float>& scratch);

  // Collective: runs steps [first, last) of the schedule.
  void run(int first, int last, const char* what);
  // All of it: data becomes the sum over the members.
  void allreduce(const char* what) { run(0, 2 * (p_ - 1), what); }

  int reduce_steps() const { return p_ - 1; }
  int64_t seg_offset(int seg) const { return seg_begin(n_, p_, seg); }
  int64_t seg_len(int seg) const { return seg_begin(n_, p_, seg + 1) - seg_begin(n_, p_, seg); }
  int send_seg(int s) const { return ((r_ - s) % p_ + p_) % p_; }
  int recv_seg(int s) const { return ((r_ - s - 1) % p_ + p_) % p_; }

 private:
  struct Chunk {
    int step;
    int64_t off, len;
  };
  void run_shm(int first, int last, const std::vector<Chunk>& chunks, const char* what);
  void run_p2p(int first, int last, const std::vector<Chunk>& chunks, const char* what);

  Group& g_;
  ShmChannel* channel_;
  float* data_;
  int64_t n_;
  int p_, r_;
  int64_t chunk_;
  std::vector<float>& scratch_;
};

}  // namespace strand::allreduce
