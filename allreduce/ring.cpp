#include <strand/allreduce/ring.hpp>

#include <immintrin.h>
#include <algorithm>
#include <cstring>
#include <deque>

namespace strand::allreduce {

namespace {

// dst[0, n) = src[0, n) with streaming stores: a chunk that is not read again soon (the last
// step of the ring, on buffers larger than the cache) then costs no read of its old contents
// and evicts nothing; callers end with _mm_sfence().
void copy_streaming(float* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i < n && reinterpret_cast<uintptr_t>(dst + i) % 16 != 0; ++i) dst[i] = src[i];
  for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

}  // namespace

Ring::Ring(Group& g, ShmChannel* channel, float* data, int64_t n, size_t chunk_bytes,
           std::vector<float>& scratch)
    : g_(g),
      channel_(channel),
      data_(data),
      n_(n),
      p_(g.size()),
      r_(g.rank()),
      chunk_(channel ? channel->chunk() : std::max<int64_t>(1, int64_t(chunk_bytes / sizeof(float)))),
      scratch_(scratch) {
  if (!channel_ && scratch_.size() < size_t(kSlots * chunk_)) scratch_.resize(size_t(kSlots * chunk_));
}

void Ring::run(int first, int last, const char* what) {
  if (p_ == 1 || n_ == 0 || first >= last) return;
  // Every receive of the run in order: (step, offset in the segment). Both neighbours
  // enumerate the same chunks in the same order, and MPI (or the channel) delivers the
  // messages between two ranks in the order they were sent.
  std::vector<Chunk> chunks;
  for (int s = first; s < last; ++s) {
    const int64_t len = seg_len(recv_seg(s));
    for (int64_t off = 0; off < len; off += chunk_) chunks.push_back({s, off, std::min(chunk_, len - off)});
  }
  if (channel_) {
    run_shm(first, last, chunks, what);
  } else {
    run_p2p(first, last, chunks, what);
  }
}

// Receives (step s) reduce into or are stored at segment recv_seg(s); each forwards the chunk
// as step s+1's send. Sends the channel cannot take yet (slot busy) wait in a queue, so a
// rank never blocks on its right neighbour while its left one waits for it.
void Ring::run_shm(int first, int last, const std::vector<Chunk>& chunks, const char* what) {
  ShmChannel& ch = *channel_;
  const int left = (r_ - 1 + p_) % p_, right = (r_ + 1) % p_;
  std::deque<Chunk> sends;
  const int64_t first_len = seg_len(send_seg(first));
  for (int64_t off = 0; off < first_len; off += chunk_)
    sends.push_back({first, off, std::min(chunk_, first_len - off)});
  // The last step's stores stream past the cache only when the members' buffers would not
  // stay in it anyway: a result that fits is read again from the cache.
  const bool stream = ch.cache_bytes() < int64_t(p_) * n_ * int64_t(sizeof(float));
  size_t j = 0;
  auto idle_since = Clock::now();
  bool warned = false;
  while (j < chunks.size() || !sends.empty()) {
    bool progress = false;
    while (!sends.empty() &&
           ch.try_send(data_ + seg_begin(n_, p_, send_seg(sends.front().step)) + sends.front().off,
                       sends.front().len)) {
      sends.pop_front();
      progress = true;
    }
    if (j < chunks.size()) {
      if (const float* src = ch.peek()) {
        const Chunk& c = chunks[j];
        float* dst = data_ + seg_begin(n_, p_, recv_seg(c.step)) + c.off;
        const bool forward = c.step + 1 < last;
        if (c.step < p_ - 1) {
#pragma omp simd
          for (int64_t i = 0; i < c.len; ++i) dst[i] += src[i];
        } else if (forward || !stream) {
          std::memcpy(dst, src, size_t(c.len) * sizeof(float));  // read again soon: keep it cached
        } else {
          copy_streaming(dst, src, c.len);
        }
        ch.release();
        if (forward) sends.push_back({c.step + 1, c.off, c.len});  // send_seg(s+1) == recv_seg(s)
        ++j;
        progress = true;
      }
    }
    if (progress) {
      idle_since = Clock::now();
      warned = false;
      continue;
    }
    // Nothing moved: either the left neighbour has not sent, or the right one has not
    // consumed (then this rank's sends are stuck).
    const bool receiving = j < chunks.size();
    g_.pause(
        idle_since, warned, [&] { return g_.describe(receiving ? left : right); }, !receiving, what);
  }
  _mm_sfence();  // the streaming stores are visible before the caller reads the result
}

void Ring::run_p2p(int first, int last, const std::vector<Chunk>& chunks, const char* what) {
  const int right = (r_ + 1) % p_, left = (r_ - 1 + p_) % p_;
  const int reduce_steps = p_ - 1;
  std::vector<std::vector<Pending>> sends(static_cast<size_t>(last));
  std::vector<Pending> recvs(chunks.size());
  auto target = [&](size_t j) -> float* {  // where receive j lands
    const Chunk& c = chunks[j];
    if (c.step < reduce_steps) return scratch_.data() + (j % kSlots) * size_t(chunk_);
    return data_ + seg_begin(n_, p_, recv_seg(c.step)) + c.off;
  };
  auto send_chunk = [&](int s, int64_t off, int64_t len) {
    sends[size_t(s)].push_back(
        g_.isend(data_ + seg_begin(n_, p_, send_seg(s)) + off, size_t(len) * sizeof(float), right));
  };
  // Posts receives while a scratch slot is free, and allgather receives at most one step
  // ahead of the chunk being processed (`step`): by then every send of the step whose
  // segment they overwrite (s+1-p) has been issued, and it must have left the buffer first.
  size_t posted = 0;
  auto post_ahead = [&](size_t processed, int step) {
    for (; posted < chunks.size() && posted < processed + kSlots; ++posted) {
      const int s = chunks[posted].step;
      if (s >= reduce_steps) {
        if (s > step + 1) break;
        if (s + 1 - p_ >= first) g_.wait_all(sends[size_t(s + 1 - p_)], what);
      }
      recvs[posted] = g_.irecv(target(posted), size_t(chunks[posted].len) * sizeof(float), left);
    }
  };
  const int64_t first_len = seg_len(send_seg(first));
  for (int64_t off = 0; off < first_len; off += chunk_)
    send_chunk(first, off, std::min(chunk_, first_len - off));
  post_ahead(0, first);
  for (size_t j = 0; j < chunks.size(); ++j) {
    const Chunk& c = chunks[j];
    post_ahead(j, c.step);  // after a run of empty segments, chunk j itself may be unposted
    g_.wait(recvs[j], what);
    if (c.step < reduce_steps) {
      float* dst = data_ + seg_begin(n_, p_, recv_seg(c.step)) + c.off;
      const float* src = target(j);
#pragma omp simd
      for (int64_t i = 0; i < c.len; ++i) dst[i] += src[i];
    }
    if (c.step + 1 < last) send_chunk(c.step + 1, c.off, c.len);  // send_seg(s+1) == recv_seg(s)
    post_ahead(j + 1, c.step);                                    // slot j % kSlots is free again
  }
  for (int s = first; s < last; ++s) g_.wait_all(sends[size_t(s)], what);
}

}  // namespace strand::allreduce
