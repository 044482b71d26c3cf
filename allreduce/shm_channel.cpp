#include <strand/allreduce/shm_channel.hpp>

#include <cstring>
#include <fstream>
#include <string>

#include <strand/allreduce/mpi_runtime.hpp>

namespace strand::allreduce {

namespace {

// The largest cache of CPU 0 that Linux lists (sysfs; the size as "32768K"). Not
// sysconf(_SC_LEVEL3_CACHE_SIZE): on some virtual machines glibc reports the whole package's
// cache there rather than what these CPUs share.
int64_t last_level_cache_bytes() {
  int64_t best = 0;
  int best_level = 0;
  for (int i = 0;; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream level_file(dir + "level"), size_file(dir + "size");
    int level = 0;
    int64_t size = 0;
    std::string unit;
    if (!(level_file >> level) || !(size_file >> size)) return best;
    size_file >> unit;
    if (unit == "K") size <<= 10;
    if (unit == "M") size <<= 20;
    if (level >= best_level) {
      best_level = level;
      best = size;
    }
  }
}

}  // namespace

ShmChannel::ShmChannel(const Group& g) : cache_bytes_(last_level_cache_bytes()) {
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
