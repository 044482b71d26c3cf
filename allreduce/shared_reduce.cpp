#include <strand/allreduce/shared_reduce.hpp>

#include <algorithm>
#include <cstring>
#include <new>

#include <strand/allreduce/mpi_runtime.hpp>

namespace strand::allreduce {

SharedReduce::SharedReduce(const Group& g) : g_(g), rank_(g.rank()), size_(g.size()) {
  void* base = nullptr;
  STRAND_MPI_CHECK(
      MPI_Win_allocate_shared(MPI_Aint(sizeof(Control)), 1, MPI_INFO_NULL, g_.comm(), &base, &control_win_),
      g_.where());
  new (base) Control{};
  for (int q = 0; q < size_; ++q) control_.push_back(static_cast<Control*>(query(control_win_, q).first));
  STRAND_MPI_CHECK(MPI_Barrier(g_.comm()), g_.where());  // every control block is zeroed before use
}

SharedReduce::~SharedReduce() {
  for (auto& [id, w] : windows_) MPI_Win_free(&w.win);  // allocation order: the same on every member
  MPI_Win_free(&control_win_);
}

std::pair<uint64_t, float*> SharedReduce::allocate(int64_t n) {
  // Each member's part on pages of its own rather than packed behind the previous member's.
  MPI_Info info;
  STRAND_MPI_CHECK(MPI_Info_create(&info), g_.where());
  MPI_Info_set(info, "alloc_shared_noncontig", "true");
  Window w;
  void* base = nullptr;
  const int rc = MPI_Win_allocate_shared(MPI_Aint(n) * MPI_Aint(sizeof(float)), int(sizeof(float)), info,
                                         g_.comm(), &base, &w.win);
  MPI_Info_free(&info);
  STRAND_MPI_CHECK(rc, g_.where());
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

void SharedReduce::release(uint64_t id) {
  auto it = windows_.find(id);
  if (it == windows_.end()) return;
  MPI_Win_free(&it->second.win);
  windows_.erase(it);
}

std::pair<void*, MPI_Aint> SharedReduce::query(MPI_Win win, int member) const {
  MPI_Aint bytes = 0;
  int unit = 0;
  void* base = nullptr;
  STRAND_MPI_CHECK(MPI_Win_shared_query(win, member, &bytes, &unit, &base), g_.where());
  return {base, bytes};
}

void SharedReduce::wait_for_all(uint64_t Control::*counter, const char* what) const {
  const auto t0 = Clock::now();
  bool warned = false;
  for (int q = 0; q < size_; ++q) {
    while (load(control_[size_t(q)]->*counter) < call_) {
      g_.pause(
          t0, warned,
          [&] {
            std::string peers;
            for (int m = 0; m < size_; ++m)
              if (load(control_[size_t(m)]->*counter) < call_)
                peers += (peers.empty() ? "" : ", ") + g_.describe(m);
            return peers;
          },
          false, what);
    }
  }
}

bool SharedReduce::try_allreduce(float* data, int64_t n, const char* what) {
  ++call_;
  const size_t parity = call_ % 2;
  Control& mine = *control_[size_t(rank_)];
  Range& my = mine.range[parity];
  my.buffer = kNoBuffer;
  for (auto& [id, w] : windows_) {
    const float* base = w.base[size_t(rank_)];
    if (data >= base && data + n <= base + w.floats[size_t(rank_)]) {
      my.buffer = id;
      my.offset = data - base;
    }
  }
  store(mine.announced, call_);
  wait_for_all(&Control::announced, what);
  // Every member reads the same announcements, so all decide alike.
  for (const Control* c : control_)
    if (c->range[parity].buffer == kNoBuffer || c->range[parity].buffer != my.buffer) return false;
  const Window& w = windows_.at(my.buffer);
  std::vector<float*> bufs;  // every member's range
  for (int q = 0; q < size_; ++q)
    bufs.push_back(w.base[size_t(q)] + control_[size_t(q)]->range[parity].offset);
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
  wait_for_all(&Control::done, what);
  return true;
}

}  // namespace strand::allreduce
