#include <strand/allreduce/mpi_communicator.hpp>

#include <mpi.h>
#include <algorithm>
#include <climits>
#include <cstring>
#include <map>
#include <tuple>

#include <strand/allreduce/group.hpp>
#include <strand/allreduce/hierarchical.hpp>
#include <strand/allreduce/ring.hpp>
#include <strand/allreduce/shared_reduce.hpp>
#include <strand/allreduce/shm_channel.hpp>
#include <strand/core/error.hpp>

namespace strand::allreduce {

struct MpiCommunicator::Groups {
  std::unique_ptr<Group> world, local, leaders;  // leaders: only on local rank 0
  // Declared after the groups, so destroyed before them: their windows live on the groups.
  std::unique_ptr<ShmChannel> world_channel, local_channel, leaders_channel;
  std::shared_ptr<SharedReduce> shared;  // the world's buffers, when the world shares memory
  std::string host;
  int host_count = 1;
  int node_count = 0;
  int leader = 0;  // world rank of this host's first rank
};

namespace {

MPI_Comm dup_world(const std::string& where) {
  MPI_Comm c;
  STRAND_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &c), where);
  MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN);
  return c;
}

// Collective over `g`: the ring's channel when its members share this machine's memory (and
// shared memory is on).
std::unique_ptr<ShmChannel> channel_for(const Group& g, const CommOptions& o) {
  if (!o.shared_memory || g.size() == 1 || !g.shares_memory()) return nullptr;
  return std::make_unique<ShmChannel>(g);
}

}  // namespace

MpiCommunicator::MpiCommunicator(const MpiRuntime& rt, CommOptions options)
    : options_(std::move(options)), groups_(std::make_unique<Groups>()) {
  STRAND_CHECK(options_.timeout_s > 0 && options_.stall_warning_s > 0, Usage,
               "the communication timeout and stall warning must be positive", "allreduce");
  STRAND_CHECK(
      !on_device(options_.algorithm), Usage,
      std::string(to_string(options_.algorithm)) + " reduces device memory: it is NcclCommunicator's",
      "allreduce");
  const int world = rt.world_size(), me = rt.world_rank();
  const std::string where = "rank " + std::to_string(me) + "/" + std::to_string(world) + " " + rt.host();
  groups_->host = rt.host();

  // Every rank's host name (fixed-width records keep this one collective call).
  constexpr int kName = 256;
  std::vector<char> names(size_t(world) * kName, 0);
  std::vector<char> mine(kName, 0);
  std::memcpy(mine.data(), rt.host().data(), std::min<size_t>(rt.host().size(), kName - 1));
  STRAND_MPI_CHECK(MPI_Allgather(mine.data(), kName, MPI_CHAR, names.data(), kName, MPI_CHAR, MPI_COMM_WORLD),
                   where);
  std::vector<std::string> hosts(static_cast<size_t>(world));
  for (int i = 0; i < world; ++i) hosts[size_t(i)] = names.data() + size_t(i) * kName;
  // The node each rank runs on, as the launcher placed it (the lowest world rank sharing its
  // memory): two machines with one name stay apart. The name then splits a node further
  // (STRAND_HOST: tests simulate hosts on one machine).
  int node = me;
  {
    MPI_Comm shared;
    STRAND_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, me, MPI_INFO_NULL, &shared),
                     where);
    const int rc = MPI_Allreduce(&me, &node, 1, MPI_INT, MPI_MIN, shared);
    MPI_Comm_free(&shared);
    STRAND_MPI_CHECK(rc, where);
  }
  std::vector<int> nodes(static_cast<size_t>(world));
  STRAND_MPI_CHECK(MPI_Allgather(&node, 1, MPI_INT, nodes.data(), 1, MPI_INT, MPI_COMM_WORLD), where);
  for (int i = 0; i < world; ++i) groups_->node_count += nodes[size_t(i)] == i;
  // Rank i's host: the first rank on it (the same node and name).
  std::map<std::pair<int, std::string>, int> first_of;
  std::vector<int> first_on(static_cast<size_t>(world));
  for (int i = 0; i < world; ++i)
    first_on[size_t(i)] = first_of.try_emplace({nodes[size_t(i)], hosts[size_t(i)]}, i).first->second;

  std::vector<int> all(static_cast<size_t>(world));
  for (int i = 0; i < world; ++i) all[size_t(i)] = i;
  groups_->world = std::make_unique<Group>(dup_world(where), all, hosts, world, options_);
  groups_->world_channel = channel_for(*groups_->world, options_);
  if (groups_->world_channel) groups_->shared = std::make_shared<SharedReduce>(*groups_->world);

  // Ranks of one host share a colour: the first world rank on that host.
  const int colour = first_on[size_t(me)];
  MPI_Comm local;
  STRAND_MPI_CHECK(MPI_Comm_split(groups_->world->comm(), colour, me, &local), where);
  std::vector<int> local_ranks;
  std::vector<std::string> local_hosts;
  for (int i = 0; i < world; ++i)
    if (first_on[size_t(i)] == colour) {
      local_ranks.push_back(i);
      local_hosts.push_back(hosts[size_t(i)]);
    }
  const bool leader = local_ranks.front() == me;
  groups_->leader = local_ranks.front();
  groups_->local = std::make_unique<Group>(local, local_ranks, local_hosts, world, options_);
  groups_->local_channel = channel_for(*groups_->local, options_);

  MPI_Comm leaders;
  STRAND_MPI_CHECK(MPI_Comm_split(groups_->world->comm(), leader ? 0 : MPI_UNDEFINED, me, &leaders), where);
  std::vector<int> leader_ranks;
  std::vector<std::string> leader_hosts;
  for (int i = 0; i < world; ++i)
    if (first_on[size_t(i)] == i) {
      leader_ranks.push_back(i);
      leader_hosts.push_back(hosts[size_t(i)]);
    }
  groups_->host_count = int(leader_ranks.size());
  if (leader) {
    groups_->leaders = std::make_unique<Group>(leaders, leader_ranks, leader_hosts, world, options_);
    groups_->leaders_channel = channel_for(*groups_->leaders, options_);
  }
}

MpiCommunicator::~MpiCommunicator() = default;

int MpiCommunicator::rank() const { return groups_->world->rank(); }
int MpiCommunicator::size() const { return groups_->world->size(); }
const std::string& MpiCommunicator::host() const { return groups_->host; }
int MpiCommunicator::local_rank() const { return groups_->local->rank(); }
int MpiCommunicator::local_size() const { return groups_->local->size(); }
int MpiCommunicator::host_count() const { return groups_->host_count; }
int MpiCommunicator::node_count() const { return groups_->node_count; }
int MpiCommunicator::leader_rank() const { return groups_->leader; }

void MpiCommunicator::allreduce_sum(float* data, int64_t n) {
  STRAND_CHECK(n >= 0 && (n == 0 || data), Usage, "allreduce of " + std::to_string(n) + " floats at null",
               where());
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
    if (groups_->shared && n * int64_t(sizeof(float)) >= kZeroCopyMinBytes &&
        groups_->shared->try_allreduce(data, n, "allreduce of shared buffers")) {
      ++in_place_;
      return;
    }
    Ring(w, groups_->world_channel.get(), data, n, options_.chunk_bytes, scratch_)
        .allreduce("ring allreduce");
    return;
  }
  hierarchical_allreduce({.local = *groups_->local,
                          .local_channel = groups_->local_channel.get(),
                          .leaders = groups_->leaders.get(),
                          .leaders_channel = groups_->leaders_channel.get()},
                         data, n, options_.chunk_bytes, scratch_);
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

bool MpiCommunicator::shares_buffers() const { return groups_->shared != nullptr; }

SharedBuffer MpiCommunicator::allocate(int64_t n) {
  STRAND_CHECK(n >= 0, Usage, "allocate of " + std::to_string(n) + " floats", where());
  auto impl = std::make_unique<SharedBuffer::Impl>();
  impl->n = n;
  if (const std::shared_ptr<SharedReduce>& shared = groups_->shared) {
    std::tie(impl->id, impl->data) = shared->allocate(n);
    impl->owner = shared;
  } else {
    impl->heap = std::make_unique<float[]>(size_t(n));
    impl->data = impl->heap.get();
  }
  return SharedBuffer(std::move(impl));
}

void MpiCommunicator::broadcast(void* data, size_t bytes, int root) {
  STRAND_CHECK(root >= 0 && root < size(), Usage, "broadcast root " + std::to_string(root) + " is not a rank",
               where());
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
      pending.push_back(
          w.irecv(out[size_t(q)].data() + off, std::min<size_t>(options_.chunk_bytes, n - off), q));
    w.wait_all(pending, "gather");
  }
  return out;
}

}  // namespace strand::allreduce
