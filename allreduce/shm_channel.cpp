#include "allreduce/shm_channel.hpp"

#include <cstring>

#include "allreduce/mpi_runtime.hpp"

namespace strand::allreduce {

ShmChannel::ShmChannel(const Group& g) {
  const MPI_Aint bytes = MPI_Aint(2 * kSlots * sizeof(Counter) + size_t(kSlots * kChunk) * sizeof(float));
  void* base = nullptr;
  STRAND_MPI_CHECK(MPI_Win_allocate_shared(bytes, 1, MPI_INFO_NULL, g.comm(), &base, &win_), g.where());
  mine_ = layout(base);
  for (int i = 0; i < 2 * kSlots; ++i) mine_.ready[i].v = 0;  // ready[] and done[] are contiguous
  MPI_Aint size_left = 0;
  int unit = 0;
  void* left = nullptr;
  STRAND_MPI_CHECK(MPI_Win_shared_query(win_, (g.rank() - 1 + g.size()) % g.size(), &size_left, &unit, &left),
                   g.where());
  left_ = layout(left);
  STRAND_MPI_CHECK(MPI_Barrier(g.comm()), g.where());  // every window is zeroed before anyone sends
}

ShmChannel::~ShmChannel() { MPI_Win_free(&win_); }

bool ShmChannel::try_send(const float* src, int64_t n) {
  const int slot = int(sent_ % kSlots);
  if (sent_ >= kSlots && load(mine_.done[slot]) < sent_ - kSlots + 1) return false;
  std::memcpy(mine_.data + slot * kChunk, src, size_t(n) * sizeof(float));
  store(mine_.ready[slot], ++sent_);
  return true;
}

ShmChannel::Layout ShmChannel::layout(void* base) {
  auto* c = static_cast<Counter*>(base);
  return {c, c + kSlots, reinterpret_cast<float*>(c + 2 * kSlots)};
}

}  // namespace strand::allreduce
