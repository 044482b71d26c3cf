#include <strand/allreduce/group.hpp>

#include <sched.h>
#include <algorithm>
#include <iostream>
#include <thread>

#include <strand/allreduce/mpi_runtime.hpp>

namespace strand::allreduce {

Group::Group(MPI_Comm comm, std::vector<int> world_ranks, std::vector<std::string> hosts, int world_size,
             CommOptions options)
    : comm_(comm),
      world_ranks_(std::move(world_ranks)),
      hosts_(std::move(hosts)),
      world_size_(world_size),
      opt_(std::move(options)) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

Group::~Group() { MPI_Comm_free(&comm_); }

bool Group::shares_memory() const {
  MPI_Comm node;
  STRAND_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node), where());
  int node_size = 0;
  MPI_Comm_size(node, &node_size);
  MPI_Comm_free(&node);
  return node_size == size_;
}

std::string Group::describe(int member, bool as_location) const {
  const int w = world_ranks_[size_t(member)];
  if (as_location)
    return "rank " + std::to_string(w) + "/" + std::to_string(world_size_) + " " + hosts_[size_t(member)];
  return "rank " + std::to_string(w) + " (" + hosts_[size_t(member)] + ")";
}

Pending Group::isend(const void* data, size_t bytes, int peer) {
  Pending p{MPI_REQUEST_NULL, peer};
  STRAND_MPI_CHECK(MPI_Isend(data, int(bytes), MPI_BYTE, peer, 0, comm_, &p.req), where());
  return p;
}

Pending Group::irecv(void* data, size_t bytes, int peer) {
  Pending p{MPI_REQUEST_NULL, peer};
  STRAND_MPI_CHECK(MPI_Irecv(data, int(bytes), MPI_BYTE, peer, 0, comm_, &p.req), where());
  return p;
}

void Group::wait_all(std::vector<Pending>& pending, const char* what) {
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
    pause(
        t0, warned, [&] { return missing(pending); }, false, what);
  }
}

void Group::wait(Pending p, const char* what) {
  std::vector<Pending> v{p};
  wait_all(v, what);
}

void Group::timeout(const std::string& peers, bool sending, const char* what) const {
  throw Error(ErrorKind::Timeout,
              (sending ? "messages not taken by " : "no message from ") + peers + " for " +
                  std::to_string(int(opt_.timeout_s)) + " s in " + what +
                  ": that rank has died or hangs (the limit is --comm-timeout)",
              where());
}

void Group::idle(double waited) {
  if (waited > 20e-3) {
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  } else if (waited > 50e-6) {
    sched_yield();
  }
}

std::string Group::missing(const std::vector<Pending>& pending) const {
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

void Group::log(const std::string& message) const {
  const std::string line = "[strand " + where() + "] " + message;
  if (opt_.log) {
    opt_.log(line);
  } else {
    std::cerr << line << '\n';
  }
}

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

}  // namespace strand::allreduce
