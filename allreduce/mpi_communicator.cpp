#include "allreduce/mpi_communicator.hpp"

#include <algorithm>
#include <chrono>
#include <atomic>
#include <climits>
#include <cstring>
#include <deque>
#include <map>
#include <immintrin.h>
#include <iostream>
#include <mpi.h>
#include <sched.h>
#include <thread>
#include <tuple>

#include "core/error.hpp"

namespace strand::allreduce {

Algorithm parse_algorithm(std::string_view text) {
  if (text == "ring") return Algorithm::Ring;
  if (text == "hierarchical") return Algorithm::Hierarchical;
  if (text == "mpi") return Algorithm::Mpi;
  throw Error(ErrorKind::Usage,
              "unknown allreduce algorithm '" + std::string(text) + "' (choose ring, hierarchical or mpi)", "allreduce");
}

std::string_view to_string(Algorithm algorithm) {
  switch (algorithm) {
    case Algorithm::Ring: return "ring";
    case Algorithm::Hierarchical: return "hierarchical";
    case Algorithm::Mpi: return "mpi";
  }
  return "?";
}

std::string Communicator::where() const {
  return "rank " + std::to_string(rank()) + "/" + std::to_string(size()) + (host().empty() ? "" : " " + host());
}

void Communicator::allreduce_mean(float* data, int64_t n) {
  allreduce_sum(data, n);
  const float scale = 1.0f / float(size());
  for (int64_t i = 0; i < n; ++i) data[i] *= scale;
}

double Communicator::sum(double value) {
  double s = 0;
  for (double v : allgather(value)) s += v;
  return s;
}

namespace {

using Clock = std::chrono::steady_clock;

// One outstanding message and the member it is exchanged with (-1: a collective, peer unknown).
struct Pending {
  MPI_Request req = MPI_REQUEST_NULL;
  int peer = -1;
};

// dst[0, n) = src[0, n) with streaming stores: a chunk that is not read again soon (the last
// step of the ring) then costs no read of its old contents; callers end with _mm_sfence().
void copy_streaming(float* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i < n && reinterpret_cast<uintptr_t>(dst + i) % 16 != 0; ++i) dst[i] = src[i];
  for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

// Segment i of n floats split over p ranks: [n*i/p, n*(i+1)/p).
int64_t seg_begin(int64_t n, int p, int i) { return n * int64_t(i) / p; }

// A ring channel through shared memory, for a group whose members all share one machine's
// memory (an MPI-3 shared window): each rank owns kSlots chunk-sized slots that its right
// neighbour reads directly, and per slot two counters on their own cache lines: `ready` =
// message number + 1 once the data is in, `done` = message number + 1 once the neighbour has
// consumed it. A chunk then costs two user-space copies and no system call; MPI's own
// shared-memory path pays a kernel copy (CMA) or a fragment pipeline per message.
class ShmChannel {
 public:
  // Four 256 KiB slots: a chunk is still in the sender's cache when the receiver reads it.
  static constexpr int kSlots = 4;
  static constexpr int64_t kChunk = 64 * 1024;  // floats

  ShmChannel(MPI_Comm comm, int rank, int size, const std::string& where) : chunk_(kChunk) {
    const MPI_Aint bytes = MPI_Aint(2 * kSlots * sizeof(Counter) + size_t(kSlots * kChunk) * sizeof(float));
    void* base = nullptr;
    STRAND_MPI_CHECK(MPI_Win_allocate_shared(bytes, 1, MPI_INFO_NULL, comm, &base, &win_), where);
    mine_ = layout(base);
    for (int i = 0; i < 2 * kSlots; ++i) mine_.ready[i].v = 0;  // ready[] and done[] are contiguous
    MPI_Aint size_left = 0;
    int unit = 0;
    void* left = nullptr;
    STRAND_MPI_CHECK(MPI_Win_shared_query(win_, (rank - 1 + size) % size, &size_left, &unit, &left), where);
    left_ = layout(left);
    STRAND_MPI_CHECK(MPI_Barrier(comm), where);  // every window is zeroed before anyone sends
  }
  ShmChannel(const ShmChannel&) = delete;
  ShmChannel& operator=(const ShmChannel&) = delete;
  ~ShmChannel() { MPI_Win_free(&win_); }

  int64_t chunk() const { return chunk_; }
  // Copies n <= chunk() floats into the next slot for the right neighbour; false while that
  // slot still holds a message it has not consumed.
  bool try_send(const float* src, int64_t n) {
    const int slot = int(sent_ % kSlots);
    if (sent_ >= kSlots && load(mine_.done[slot]) < sent_ - kSlots + 1) return false;
    std::memcpy(mine_.data + slot * chunk_, src, size_t(n) * sizeof(float));
    store(mine_.ready[slot], ++sent_);
    return true;
  }
  // The left neighbour's next message, or null while it has not arrived.
  const float* peek() const {
    const int slot = int(received_ % kSlots);
    return load(left_.ready[slot]) >= received_ + 1 ? left_.data + slot * chunk_ : nullptr;
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
  static Layout layout(void* base) {
    auto* c = static_cast<Counter*>(base);
    return {c, c + kSlots, reinterpret_cast<float*>(c + 2 * kSlots)};
  }
  static uint64_t load(Counter& c) { return std::atomic_ref<uint64_t>(c.v).load(std::memory_order_acquire); }
  static void store(Counter& c, uint64_t v) { std::atomic_ref<uint64_t>(c.v).store(v, std::memory_order_release); }

  int64_t chunk_;
  MPI_Win win_ = MPI_WIN_NULL;
  Layout mine_{}, left_{};
  uint64_t sent_ = 0, received_ = 0;  // messages through this channel since it was made
};

class Group;

// Buffers from MpiCommunicator::allocate() on a group whose members share one machine, and
// the handshake that lets allreduce_sum() reduce them where they lie. Each buffer is an MPI-3
// shared window, so every member addresses every member's buffer. Per member, in a small
// window of its own, two cache lines: `announced` (allreduce number, then which buffer and
// offset this member reduces) and `done` (allreduce number once its share is written).
class SharedReduce {
 public:
  SharedReduce(MPI_Comm comm, int rank, int size, std::string where)
      : comm_(comm), rank_(rank), size_(size), where_(std::move(where)) {
    void* base = nullptr;
    STRAND_MPI_CHECK(MPI_Win_allocate_shared(MPI_Aint(sizeof(Control)), 1, MPI_INFO_NULL, comm_, &base, &control_win_),
                     where_);
    new (base) Control{};
    for (int q = 0; q < size_; ++q) control_.push_back(static_cast<Control*>(query(control_win_, q).first));
    STRAND_MPI_CHECK(MPI_Barrier(comm_), where_);  // every control block is zeroed before use
  }
  SharedReduce(const SharedReduce&) = delete;
  SharedReduce& operator=(const SharedReduce&) = delete;
  ~SharedReduce() {
    for (auto& [id, w] : windows_) MPI_Win_free(&w.win);  // allocation order: the same on every member
    MPI_Win_free(&control_win_);
  }

  // Collective: a window of n floats on every member, zeroed. Returns its id and this
  // member's memory.
  std::pair<uint64_t, float*> allocate(int64_t n) {
    // Each member's part on pages of its own rather than packed behind the previous member's.
    MPI_Info info;
    STRAND_MPI_CHECK(MPI_Info_create(&info), where_);
    MPI_Info_set(info, "alloc_shared_noncontig", "true");
    Window w;
    void* base = nullptr;
    const int rc = MPI_Win_allocate_shared(MPI_Aint(n) * MPI_Aint(sizeof(float)), int(sizeof(float)), info, comm_,
                                           &base, &w.win);
    MPI_Info_free(&info);
    STRAND_MPI_CHECK(rc, where_);
    for (int q = 0; q < size_; ++q) {
      const auto [b, bytes] = query(w.win, q);
      w.base.push_back(static_cast<float*>(b));
      w.floats.push_back(int64_t(bytes / MPI_Aint(sizeof(float))));
    }
    std::memset(w.base[size_t(rank_)], 0, size_t(n) * sizeof(float));
    const uint64_t id = next_id_++;
    windows_.emplace(id, std::move(w));
    return {id, windows_.at(id).base[size_t(rank_)]};
  }
  // Collective, like allocate(); errors are ignored (it runs in destructors).
  void release(uint64_t id) {
    auto it = windows_.find(id);
    if (it == windows_.end()) return;
    MPI_Win_free(&it->second.win);
    windows_.erase(it);
  }

  // data[0, n) becomes the sum over the members, in place, when every member passes a range
  // of one buffer from allocate(): member r sums segment r of the range over all members'
  // buffers in rank order and writes it into every buffer. Returns false, having changed
  // nothing, when any member's range is other memory: the caller runs the ring. Every member
  // calls it for the same allreduces (same n), so each takes part in every handshake.
  bool try_allreduce(const Group& g, float* data, int64_t n, const char* what);

 private:
  static constexpr uint64_t kNoBuffer = ~uint64_t(0);
  struct Control {
    alignas(64) uint64_t announced;  // allreduce number; buffer and offset below are valid
    uint64_t buffer;                 // window id, or kNoBuffer
    int64_t offset;                  // floats from the start of the member's part
    alignas(64) uint64_t done;       // allreduce number once this member's share is written
  };
  struct Window {
    MPI_Win win = MPI_WIN_NULL;
    std::vector<float*> base;     // every member's part
    std::vector<int64_t> floats;  // and its size
  };

  std::pair<void*, MPI_Aint> query(MPI_Win win, int member) const {
    MPI_Aint bytes = 0;
    int unit = 0;
    void* base = nullptr;
    STRAND_MPI_CHECK(MPI_Win_shared_query(win, member, &bytes, &unit, &base), where_);
    return {base, bytes};
  }
  static uint64_t load(uint64_t& v) { return std::atomic_ref<uint64_t>(v).load(std::memory_order_acquire); }
  static void store(uint64_t& v, uint64_t x) { std::atomic_ref<uint64_t>(v).store(x, std::memory_order_release); }
  // Polls until every member's counter (announced or done) reaches call_.
  void wait_for_all(const Group& g, uint64_t Control::*counter, const char* what) const;

  MPI_Comm comm_;
  int rank_, size_;
  std::string where_;
  MPI_Win control_win_ = MPI_WIN_NULL;
  std::vector<Control*> control_;  // every member's
  std::map<uint64_t, Window> windows_;
  uint64_t next_id_ = 0, call_ = 0;
};

// An MPI communicator with its members' world ranks and hosts, and deadline-polled
// point-to-point messages.
class Group {
 public:
  // `buffers`: the group serves MpiCommunicator::allocate() (the world group).
  Group(MPI_Comm comm, std::vector<int> world_ranks, std::vector<std::string> hosts, int world_size,
        const CommOptions& opt, bool buffers = false)
      : comm_(comm), world_ranks_(std::move(world_ranks)), hosts_(std::move(hosts)), world_size_(world_size),
        opt_(opt) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    if (opt.shared_memory && size_ > 1) {
      MPI_Comm node;
      STRAND_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node), where());
      int node_size = 0;
      MPI_Comm_size(node, &node_size);
      MPI_Comm_free(&node);
      if (node_size == size_) {
        shm_ = std::make_unique<ShmChannel>(comm_, rank_, size_, where());
        if (buffers) shared_ = std::make_shared<SharedReduce>(comm_, rank_, size_, where());
      }
    }
  }
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;
  ~Group() {
    shm_.reset();  // their windows live on comm_
    shared_.reset();
    MPI_Comm_free(&comm_);
  }

  MPI_Comm comm() const { return comm_; }
  // The shared-memory ring channel, when every member shares this machine's memory.
  ShmChannel* shm() const { return shm_.get(); }
  // Shared buffers and their in-place allreduce, when every member shares this machine's
  // memory and the group was made with `buffers`.
  const std::shared_ptr<SharedReduce>& shared() const { return shared_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  std::string where() const { return describe(rank_, true); }
  // "rank 3 (host-b)" for a member; with `world`, "rank 3/4 host-b" as a location.
  std::string describe(int member, bool as_location = false) const {
    const int w = world_ranks_[size_t(member)];
    if (as_location) return "rank " + std::to_string(w) + "/" + std::to_string(world_size_) + " " + hosts_[size_t(member)];
    return "rank " + std::to_string(w) + " (" + hosts_[size_t(member)] + ")";
  }

  // Messages are at most chunk-sized (well under INT_MAX bytes); tags are unused, MPI's
  // per-pair ordering matches sends and receives.
  Pending isend(const void* data, size_t bytes, int peer) {
    Pending p{MPI_REQUEST_NULL, peer};
    STRAND_MPI_CHECK(MPI_Isend(data, int(bytes), MPI_BYTE, peer, 0, comm_, &p.req), where());
    return p;
  }
  Pending irecv(void* data, size_t bytes, int peer) {
    Pending p{MPI_REQUEST_NULL, peer};
    STRAND_MPI_CHECK(MPI_Irecv(data, int(bytes), MPI_BYTE, peer, 0, comm_, &p.req), where());
    return p;
  }

  // Waits for every request, polling (so the wait has a deadline). Logs the peers still
  // missing after stall_warning_s; throws Error(Timeout) after timeout_s.
  void wait_all(std::vector<Pending>& pending, const char* what) {
    const auto t0 = Clock::now();
    bool warned = false;
    size_t first_open = 0;
    for (;;) {
      while (first_open < pending.size() && pending[first_open].req == MPI_REQUEST_NULL) ++first_open;
      bool all = true;
      for (size_t i = first_open; i < pending.size(); ++i) {
        if (pending[i].req == MPI_REQUEST_NULL) continue;
        int done = 0;
        STRAND_MPI_CHECK(MPI_Test(&pending[i].req, &done, MPI_STATUS_IGNORE), where());
        if (!done) {
          all = false;
          break;  // requests complete roughly in order: no need to test the rest yet
        }
      }
      if (all) {
        pending.clear();
        return;
      }
      pause(t0, warned, [&] { return missing(pending); }, false, what);
    }
  }
  // One idle poll of a wait that began at t0: throws Error(Timeout) after timeout_s, logs a
  // stall warning once after stall_warning_s, and otherwise lets time pass. `peers()` names
  // the ranks waited for (built only when needed: this runs in the polling loop); `sending`:
  // they have not taken this rank's messages, rather than not sent theirs. Messages usually
  // arrive within microseconds: poll hot, then yield the core to any runnable thread
  // (training's workers), and only after a long wait sleep between polls.
  template <class Peers>
  void pause(Clock::time_point t0, bool& warned, const Peers& peers, bool sending, const char* what) const {
    const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    if (waited > opt_.timeout_s) {
      throw Error(ErrorKind::Timeout,
                  (sending ? "messages not taken by " : "no message from ") + peers() + " for " +
                      std::to_string(int(opt_.timeout_s)) + " s in " + what +
                      ": that rank has died or hangs (the limit is --comm-timeout)",
                  where());
    }
    if (!warned && waited > opt_.stall_warning_s) {
      warned = true;
      log("stalled " + std::to_string(int(waited)) + " s in " + std::string(what) + ", waiting for " + peers());
    }
    if (waited > 20e-3) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    } else if (waited > 50e-6) {
      sched_yield();
    }
  }
  void wait(Pending p, const char* what) {
    std::vector<Pending> v{p};
    wait_all(v, what);
  }

 private:
  std::string missing(const std::vector<Pending>& pending) const {
    std::vector<int> peers;
    for (const Pending& p : pending)
      if (p.req != MPI_REQUEST_NULL) peers.push_back(p.peer);
    std::sort(peers.begin(), peers.end());
    peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
    if (peers.empty()) return "(none)";
    if (peers.front() < 0) return "some rank (MPI does not say which)";
    std::string s;
    for (int p : peers) s += (s.empty() ? "" : ", ") + describe(p);
    return s;
  }
  void log(const std::string& message) const {
    const std::string line = "[strand " + where() + "] " + message;
    if (opt_.log) {
      opt_.log(line);
    } else {
      std::cerr << line << '\n';
    }
  }

  MPI_Comm comm_;
  std::vector<int> world_ranks_;
  std::vector<std::string> hosts_;
  int world_size_;
  const CommOptions& opt_;
  int rank_ = 0, size_ = 1;
  std::unique_ptr<ShmChannel> shm_;
  std::shared_ptr<SharedReduce> shared_;
};

void SharedReduce::wait_for_all(const Group& g, uint64_t Control::*counter, const char* what) const {
  const auto t0 = Clock::now();
  bool warned = false;
  for (int q = 0; q < size_; ++q) {
    while (load(control_[size_t(q)]->*counter) < call_) {
      g.pause(t0, warned, [&] {
        std::string peers;
        for (int m = 0; m < size_; ++m)
          if (load(control_[size_t(m)]->*counter) < call_) peers += (peers.empty() ? "" : ", ") + g.describe(m);
        return peers;
      }, false, what);
    }
  }
}

bool SharedReduce::try_allreduce(const Group& g, float* data, int64_t n, const char* what) {
  ++call_;
  Control& mine = *control_[size_t(rank_)];
  mine.buffer = kNoBuffer;
  for (auto& [id, w] : windows_) {
    const float* base = w.base[size_t(rank_)];
    if (data >= base && data + n <= base + w.floats[size_t(rank_)]) {
      mine.buffer = id;
      mine.offset = data - base;
    }
  }
  store(mine.announced, call_);
  wait_for_all(g, &Control::announced, what);
  // Every member reads the same announcements, so all decide alike. A member moves on to its
  // next announcement only after this allreduce completed, which needs every member's data,
  // so the fields read here are this call's.
  for (const Control* c : control_)
    if (c->buffer == kNoBuffer || c->buffer != mine.buffer) return false;
  const Window& w = windows_.at(mine.buffer);
  std::vector<float*> bufs;  // every member's range
  for (int q = 0; q < size_; ++q) bufs.push_back(w.base[size_t(q)] + control_[size_t(q)]->offset);
  const int64_t begin = seg_begin(n, size_, rank_), end = seg_begin(n, size_, rank_ + 1);
  constexpr int64_t kBlock = 2048;  // floats: the sum of a block stays in L1
  alignas(64) float sum[kBlock];
  for (int64_t b = begin; b < end; b += kBlock) {
    const int64_t m = std::min(kBlock, end - b);
    const float* s0 = bufs[0] + b;
    const float* s1 = bufs[1] + b;
#pragma omp simd
    for (int64_t i = 0; i < m; ++i) sum[i] = s0[i] + s1[i];
    for (int q = 2; q < size_; ++q) {
      const float* sq = bufs[size_t(q)] + b;
#pragma omp simd
      for (int64_t i = 0; i < m; ++i) sum[i] += sq[i];
    }
    // Plain stores: every destination block was just read, so its lines are in cache
    // (streaming stores would have to evict them first; measured slower).
    for (float* dst : bufs) std::memcpy(dst + b, sum, size_t(m) * sizeof(float));
  }
  store(mine.done, call_);
  wait_for_all(g, &Control::done, what);
  return true;
}

// The ring schedule over one group. Step s (0 <= s < 2(p-1)) sends segment (r - s) mod p to
// the right neighbour and receives segment (r - s - 1) mod p from the left; steps below p-1
// add what they receive (reduce-scatter: afterwards rank r holds the sum of segment r+1),
// later steps store it (allgather). The segment sent at step s+1 is the one received at step
// s, so each chunk is forwarded as soon as it is reduced: large buffers stream through the
// ring in chunk-sized pieces instead of one segment at a time. Reduce-scatter chunks land in
// a few reused scratch slots, so they are still in cache when added.
class Ring {
 public:
  static constexpr int kSlots = 16;  // MPI receives in flight ahead of the reduction: keeps a TCP link busy

  // `chunk_bytes` is the unit of MPI messages; the shared-memory channel has its own.
  Ring(Group& g, float* data, int64_t n, size_t chunk_bytes, std::vector<float>& scratch)
      : g_(g), data_(data), n_(n), p_(g.size()), r_(g.rank()),
        chunk_(g.shm() ? g.shm()->chunk() : std::max<int64_t>(1, int64_t(chunk_bytes / sizeof(float)))),
        scratch_(scratch) {
    if (scratch_.size() < size_t(kSlots * chunk_)) scratch_.resize(size_t(kSlots * chunk_));
  }

  // Runs steps [first, last) of the schedule: through shared memory when the group has a
  // channel, else over MPI point-to-point.
  void run(int first, int last, const char* what) {
    if (p_ == 1 || n_ == 0 || first >= last) return;
    // Every receive of the run in order: (step, offset in the segment). Both neighbours
    // enumerate the same chunks in the same order, and MPI (or the channel) delivers the
    // messages between two ranks in the order they were sent.
    std::vector<Chunk> chunks;
    for (int s = first; s < last; ++s) {
      const int64_t len = seg_len(recv_seg(s));
      for (int64_t off = 0; off < len; off += chunk_) chunks.push_back({s, off, std::min(chunk_, len - off)});
    }
    if (g_.shm()) {
      run_shm(first, last, chunks, what);
    } else {
      run_p2p(first, last, chunks, what);
    }
  }

  int64_t seg_len(int seg) const { return seg_begin(n_, p_, seg + 1) - seg_begin(n_, p_, seg); }
  int send_seg(int s) const { return ((r_ - s) % p_ + p_) % p_; }
  int recv_seg(int s) const { return ((r_ - s - 1) % p_ + p_) % p_; }
  int reduce_steps() const { return p_ - 1; }
  int64_t seg_offset(int seg) const { return seg_begin(n_, p_, seg); }

 private:
  struct Chunk {
    int step;
    int64_t off, len;
  };

  // Receives (step s) reduce into or are stored at segment recv_seg(s); each forwards the chunk
  // as step s+1's send. Sends the channel cannot take yet (slot busy) wait in a queue, so a
  // rank never blocks on its right neighbour while its left one waits for it.
  void run_shm(int first, int last, const std::vector<Chunk>& chunks, const char* what) {
    ShmChannel& ch = *g_.shm();
    const int left = (r_ - 1 + p_) % p_, right = (r_ + 1) % p_;
    std::deque<Chunk> sends;
    const int64_t first_len = seg_len(send_seg(first));
    for (int64_t off = 0; off < first_len; off += chunk_) sends.push_back({first, off, std::min(chunk_, first_len - off)});
    size_t j = 0;
    auto idle_since = Clock::now();
    bool warned = false;
    while (j < chunks.size() || !sends.empty()) {
      bool progress = false;
      while (!sends.empty() &&
             ch.try_send(data_ + seg_begin(n_, p_, send_seg(sends.front().step)) + sends.front().off, sends.front().len)) {
        sends.pop_front();
        progress = true;
      }
      if (j < chunks.size()) {
        if (const float* src = ch.peek()) {
          const Chunk& c = chunks[j];
          float* dst = data_ + seg_begin(n_, p_, recv_seg(c.step)) + c.off;
          if (c.step < p_ - 1) {
#pragma omp simd
            for (int64_t i = 0; i < c.len; ++i) dst[i] += src[i];
          } else if (c.step + 1 < last) {
            std::memcpy(dst, src, size_t(c.len) * sizeof(float));  // forwarded next: keep it cached
          } else {
            copy_streaming(dst, src, c.len);
          }
          ch.release();
          if (c.step + 1 < last) sends.push_back({c.step + 1, c.off, c.len});  // send_seg(s+1) == recv_seg(s)
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
      g_.pause(idle_since, warned, [&] { return g_.describe(receiving ? left : right); }, !receiving, what);
    }
    _mm_sfence();  // the streaming stores are visible before the caller reads the result
  }

  void run_p2p(int first, int last, const std::vector<Chunk>& chunks, const char* what) {
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
      sends[size_t(s)].push_back(g_.isend(data_ + seg_begin(n_, p_, send_seg(s)) + off, size_t(len) * sizeof(float), right));
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
    for (int64_t off = 0; off < first_len; off += chunk_) send_chunk(first, off, std::min(chunk_, first_len - off));
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
      post_ahead(j + 1, c.step);  // slot j % kSlots is free again
    }
    for (int s = first; s < last; ++s) g_.wait_all(sends[size_t(s)], what);
  }

  Group& g_;
  float* data_;
  int64_t n_;
  int p_, r_;
  int64_t chunk_;
  std::vector<float>& scratch_;
};

// `root` sends bytes to every other member in chunks; a broadcast tree is not worth it for
// the handful of ranks on one host or the one-off weight broadcast.
void send_from_root(Group& g, void* data, size_t bytes, int root, size_t chunk, const char* what) {
  if (g.size() == 1 || bytes == 0) return;
  std::vector<Pending> pending;
  auto* p = static_cast<char*>(data);
  for (size_t off = 0; off < bytes; off += chunk) {
    const size_t m = std::min(chunk, bytes - off);
    if (g.rank() == root) {
      for (int q = 0; q < g.size(); ++q)
        if (q != root) pending.push_back(g.isend(p + off, m, q));
    } else {
      pending.push_back(g.irecv(p + off, m, root));
    }
  }
  g.wait_all(pending, what);
}

}  // namespace

struct MpiCommunicator::Groups {
  std::unique_ptr<Group> world, local, leaders;  // leaders: only on local rank 0
  std::string host;
  int host_count = 1;
};

namespace {

MPI_Comm dup_world(const std::string& where) {
  MPI_Comm c;
  STRAND_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &c), where);
  MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN);
  return c;
}

}  // namespace

MpiCommunicator::MpiCommunicator(const MpiRuntime& rt, CommOptions options)
    : options_(std::move(options)), groups_(std::make_unique<Groups>()) {
  STRAND_CHECK(options_.timeout_s > 0 && options_.stall_warning_s > 0, Usage,
               "the communication timeout and stall warning must be positive", "allreduce");
  const int world = rt.world_size(), me = rt.world_rank();
  const std::string where = "rank " + std::to_string(me) + "/" + std::to_string(world) + " " + rt.host();
  groups_->host = rt.host();

  // Every rank's host name (fixed-width records keep this one collective call).
  constexpr int kName = 256;
  std::vector<char> names(size_t(world) * kName, 0);
  std::vector<char> mine(kName, 0);
  std::memcpy(mine.data(), rt.host().data(), std::min<size_t>(rt.host().size(), kName - 1));
  STRAND_MPI_CHECK(MPI_Allgather(mine.data(), kName, MPI_CHAR, names.data(), kName, MPI_CHAR, MPI_COMM_WORLD), where);
  std::vector<std::string> hosts(static_cast<size_t>(world));
  for (int i = 0; i < world; ++i) hosts[size_t(i)] = names.data() + size_t(i) * kName;

  std::vector<int> all(static_cast<size_t>(world));
  for (int i = 0; i < world; ++i) all[size_t(i)] = i;
  groups_->world = std::make_unique<Group>(dup_world(where), all, hosts, world, options_, true);

  // Ranks of one host share a colour: the first world rank on that host.
  const int colour = int(std::find(hosts.begin(), hosts.end(), rt.host()) - hosts.begin());
  MPI_Comm local;
  STRAND_MPI_CHECK(MPI_Comm_split(groups_->world->comm(), colour, me, &local), where);
  std::vector<int> local_ranks;
  std::vector<std::string> local_hosts;
  for (int i = 0; i < world; ++i)
    if (hosts[size_t(i)] == rt.host()) {
      local_ranks.push_back(i);
      local_hosts.push_back(hosts[size_t(i)]);
    }
  const bool leader = local_ranks.front() == me;
  groups_->local = std::make_unique<Group>(local, local_ranks, local_hosts, world, options_);

  MPI_Comm leaders;
  STRAND_MPI_CHECK(MPI_Comm_split(groups_->world->comm(), leader ? 0 : MPI_UNDEFINED, me, &leaders), where);
  std::vector<int> leader_ranks;
  std::vector<std::string> leader_hosts;
  for (int i = 0; i < world; ++i)
    if (std::find(hosts.begin(), hosts.end(), hosts[size_t(i)]) - hosts.begin() == i) {
      leader_ranks.push_back(i);
      leader_hosts.push_back(hosts[size_t(i)]);
    }
  groups_->host_count = int(leader_ranks.size());
  if (leader) groups_->leaders = std::make_unique<Group>(leaders, leader_ranks, leader_hosts, world, options_);
}

MpiCommunicator::~MpiCommunicator() = default;

int MpiCommunicator::rank() const { return groups_->world->rank(); }
int MpiCommunicator::size() const { return groups_->world->size(); }
const std::string& MpiCommunicator::host() const { return groups_->host; }
int MpiCommunicator::local_rank() const { return groups_->local->rank(); }
int MpiCommunicator::local_size() const { return groups_->local->size(); }
int MpiCommunicator::host_count() const { return groups_->host_count; }

void MpiCommunicator::allreduce_sum(float* data, int64_t n) {
  STRAND_CHECK(n >= 0 && (n == 0 || data), Usage, "allreduce of " + std::to_string(n) + " floats at null", where());
  Group& w = *groups_->world;
  if (options_.algorithm == Algorithm::Mpi) {
    // Nonblocking, so the wait has a deadline like every other; MPI counts are ints.
    for (int64_t off = 0; off < n; off += INT_MAX / 2) {
      Pending p;
      STRAND_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, data + off, int(std::min<int64_t>(INT_MAX / 2, n - off)),
                                      MPI_FLOAT, MPI_SUM, w.comm(), &p.req),
                       w.where());
      w.wait(p, "MPI_Iallreduce");
    }
    return;
  }
  // With one rank per host hierarchical is the ring; on one host, its reduction plus broadcast
  // would move more than the ring does.
  if (options_.algorithm == Algorithm::Ring || groups_->host_count == size() || groups_->host_count == 1) {
    if (w.shared() && n * int64_t(sizeof(float)) >= kZeroCopyMinBytes &&
        w.shared()->try_allreduce(w, data, n, "allreduce of shared buffers")) {
      ++in_place_;
      return;
    }
    Ring ring(w, data, n, options_.chunk_bytes, scratch_);
    ring.run(0, 2 * (w.size() - 1), "ring allreduce");
    return;
  }
  // Hierarchical. 1) reduce within the host: a ring reduce-scatter, then each rank's reduced
  // segment goes to the host's leader (local rank 0).
  Group& local = *groups_->local;
  if (local.size() > 1) {
    Ring ring(local, data, n, options_.chunk_bytes, scratch_);
    ring.run(0, ring.reduce_steps(), "hierarchical allreduce (reduce within host)");
    const size_t chunk = options_.chunk_bytes;
    std::vector<Pending> pending;
    auto transfer = [&](int member, bool send) {  // member's reduced segment, in chunks
      const int seg = (member + 1) % local.size();
      char* base = reinterpret_cast<char*>(data + ring.seg_offset(seg));
      const size_t bytes = size_t(ring.seg_len(seg)) * sizeof(float);
      for (size_t off = 0; off < bytes; off += chunk)
        pending.push_back(send ? local.isend(base + off, std::min(chunk, bytes - off), 0)
                               : local.irecv(base + off, std::min(chunk, bytes - off), member));
    };
    if (local.rank() == 0) {
      for (int q = 1; q < local.size(); ++q) transfer(q, false);
    } else {
      transfer(local.rank(), true);
    }
    local.wait_all(pending, "hierarchical allreduce (gather to the host leader)");
  }
  // 2) ring among the host leaders.
  if (groups_->leaders) {
    Ring ring(*groups_->leaders, data, n, options_.chunk_bytes, scratch_);
    ring.run(0, 2 * (groups_->leaders->size() - 1), "hierarchical allreduce (ring among hosts)");
  }
  // 3) broadcast within the host.
  send_from_root(local, data, size_t(n) * sizeof(float), 0, options_.chunk_bytes,
                 "hierarchical allreduce (broadcast within host)");
}

struct SharedBuffer::Impl {
  std::weak_ptr<SharedReduce> owner;  // expired: the communicator is gone, and the window with it
  uint64_t id = 0;
  std::unique_ptr<float[]> heap;  // when the ranks span hosts
  float* data = nullptr;
  int64_t n = 0;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    if (auto o = owner.lock()) o->release(id);
  }
};

SharedBuffer::SharedBuffer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SharedBuffer::SharedBuffer(SharedBuffer&&) noexcept = default;
SharedBuffer& SharedBuffer::operator=(SharedBuffer&&) noexcept = default;
SharedBuffer::~SharedBuffer() = default;
float* SharedBuffer::data() const {
  return impl_ && (impl_->heap || !impl_->owner.expired()) ? impl_->data : nullptr;
}
int64_t SharedBuffer::size() const { return impl_ ? impl_->n : 0; }

bool MpiCommunicator::shares_buffers() const { return groups_->world->shared() != nullptr; }

SharedBuffer MpiCommunicator::allocate(int64_t n) {
  STRAND_CHECK(n >= 0, Usage, "allocate of " + std::to_string(n) + " floats", where());
  auto impl = std::make_unique<SharedBuffer::Impl>();
  impl->n = n;
  if (const std::shared_ptr<SharedReduce>& shared = groups_->world->shared()) {
    std::tie(impl->id, impl->data) = shared->allocate(n);
    impl->owner = shared;
  } else {
    impl->heap = std::make_unique<float[]>(size_t(n));
    impl->data = impl->heap.get();
  }
  return SharedBuffer(std::move(impl));
}

void MpiCommunicator::broadcast(void* data, size_t bytes, int root) {
  STRAND_CHECK(root >= 0 && root < size(), Usage, "broadcast root " + std::to_string(root) + " is not a rank", where());
  send_from_root(*groups_->world, data, bytes, root, options_.chunk_bytes, "broadcast");
}

std::vector<double> MpiCommunicator::allgather(double value) {
  Group& w = *groups_->world;
  std::vector<double> out(size_t(w.size()));
  out[size_t(w.rank())] = value;
  std::vector<Pending> pending;
  for (int q = 0; q < w.size(); ++q) {
    if (q == w.rank()) continue;
    pending.push_back(w.irecv(&out[size_t(q)], sizeof(double), q));
    pending.push_back(w.isend(&out[size_t(w.rank())], sizeof(double), q));
  }
  w.wait_all(pending, "allgather");
  return out;
}

std::vector<std::string> MpiCommunicator::gather_to_root(const std::string& text) {
  Group& w = *groups_->world;
  std::vector<std::string> out;
  uint64_t len = text.size();
  if (w.rank() != 0) {
    w.wait(w.isend(&len, sizeof len, 0), "gather");
    std::vector<Pending> pending;
    for (size_t off = 0; off < text.size(); off += options_.chunk_bytes)
      pending.push_back(w.isend(text.data() + off, std::min(options_.chunk_bytes, text.size() - off), 0));
    w.wait_all(pending, "gather");
    return out;
  }
  out.resize(size_t(w.size()));
  out[0] = text;
  for (int q = 1; q < w.size(); ++q) {
    uint64_t n = 0;
    w.wait(w.irecv(&n, sizeof n, q), "gather");
    out[size_t(q)].resize(n);
    std::vector<Pending> pending;
    for (size_t off = 0; off < n; off += options_.chunk_bytes)
      pending.push_back(w.irecv(out[size_t(q)].data() + off, std::min<size_t>(options_.chunk_bytes, n - off), q));
    w.wait_all(pending, "gather");
  }
  return out;
}

}  // namespace strand::allreduce
