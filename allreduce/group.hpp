// Group: one MPI communicator of the allreduce module with its members' world ranks and host
// names, and point-to-point messages whose waits poll with a deadline: after
// CommOptions::stall_warning_s a wait logs the ranks it still waits for, after timeout_s it
// throws Error(Timeout) naming them. Every wait of the module goes through it (pause()).
// Also: the segment split the ring and the in-place reduction share, and a chunked send from
// a root. Internal to the allreduce module (the ring, the channels and MpiCommunicator).
#pragma once

#include <mpi.h>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <strand/allreduce/communicator.hpp>
#include <strand/core/error.hpp>

namespace strand::allreduce {

using Clock = std::chrono::steady_clock;

// One outstanding message and the member it is exchanged with (-1: a collective, peer unknown).
struct Pending {
  MPI_Request req = MPI_REQUEST_NULL;
  int peer = -1;
};

// Segment i of n floats split over p members: [n*i/p, n*(i+1)/p).
inline int64_t seg_begin(int64_t n, int p, int i) { return n * int64_t(i) / p; }

class Group {
 public:
  // Takes `comm` (freed on destruction); `world_ranks` and `hosts` per member, for messages.
  Group(MPI_Comm comm, std::vector<int> world_ranks, std::vector<std::string> hosts, int world_size,
        CommOptions options);
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;
  ~Group();

  MPI_Comm comm() const { return comm_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  // Collective: whether every member shares this machine's memory (MPI_COMM_TYPE_SHARED).
  bool shares_memory() const;
  // This member as a location: "rank 3/4 host-b".
  std::string where() const { return describe(rank_, true); }
  // "rank 3 (host-b)" for a member; with `as_location`, "rank 3/4 host-b".
  std::string describe(int member, bool as_location = false) const;

  // Messages are at most chunk-sized (well under INT_MAX bytes); tags are unused, MPI's
  // per-pair ordering matches sends and receives.
  Pending isend(const void* data, size_t bytes, int peer);
  Pending irecv(void* data, size_t bytes, int peer);
  // Waits for every request, polling (so the wait has a deadline); empties `pending`.
  void wait_all(std::vector<Pending>& pending, const char* what);
  void wait(Pending p, const char* what);

  // One idle poll of a wait that began at t0: throws Error(Timeout) after timeout_s, logs a
  // stall warning once after stall_warning_s, and otherwise lets time pass. `peers()` names
  // the ranks waited for (built only when needed: this runs in the polling loop); `sending`:
  // they have not taken this rank's messages, rather than not sent theirs. Messages usually
  // arrive within microseconds: poll hot, then yield the core to any runnable thread
  // (training's workers), and only after a long wait sleep between polls.
  template <class Peers>
  void pause(Clock::time_point t0, bool& warned, const Peers& peers, bool sending, const char* what) const {
    const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    if (waited > opt_.timeout_s) timeout(peers(), sending, what);
    if (!warned && waited > opt_.stall_warning_s) {
      warned = true;
      log("stalled " + std::to_string(int(waited)) + " s in " + std::string(what) + ", waiting for " +
          peers());
    }
    idle(waited);
  }

 private:
  [[noreturn]] void timeout(const std::string& peers, bool sending, const char* what) const;
  void log(const std::string& message) const;
  static void idle(double waited);
  std::string missing(const std::vector<Pending>& pending) const;

  MPI_Comm comm_;
  std::vector<int> world_ranks_;
  std::vector<std::string> hosts_;
  int world_size_;
  CommOptions opt_;
  int rank_ = 0, size_ = 1;
};

// `root` sends bytes to every other member in chunks; a broadcast tree is not worth it for
// the handful of ranks on one host or the one-off weight broadcast.
void send_from_root(Group& g, void* data, size_t bytes, int root, size_t chunk, const char* what);

}  // namespace strand::allreduce
