// Collectives over MPI, run under mpirun with 1 to 4 ranks (tests/allreduce/meson.build):
// exact sums of integer-valued floats for every algorithm (the ring through shared memory and
// over MPI messages) and awkward sizes, hierarchical
// with ranks spread over simulated hosts (STRAND_HOST), shared buffers reduced in place,
// broadcast, allgather and gather.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <strand/allreduce/mpi_communicator.hpp>
#include <strand/core/error.hpp>

namespace strand::allreduce {

MpiRuntime* runtime = nullptr;

namespace {

// "ring-p2p": the ring over MPI messages even between ranks that share memory.
CommOptions options(const std::string& algorithm) {
  CommOptions o;
  const bool p2p = algorithm.ends_with("-p2p");
  o.algorithm = parse_algorithm(p2p ? algorithm.substr(0, algorithm.size() - 4) : algorithm);
  o.shared_memory = !p2p;
  o.timeout_s = 30;
  o.chunk_bytes = 64 * 1024;  // several chunks per segment even at moderate sizes
  return o;
}

// Rank r holds (r + 1) * (i % 1021) - 7 at i: integer-valued, so every order of summation
// gives the same exact float (all partial sums stay below 2^24).
float value(int rank, int64_t i) { return float((rank + 1) * (i % 1021) - 7); }

class Sums : public ::testing::TestWithParam<std::string> {};

TEST_P(Sums, ExactForEverySize) {
  MpiCommunicator comm(*runtime, options(GetParam()));
  const int p = comm.size();
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(1000003), int64_t(16) << 20}) {
    std::vector<float> data(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) data[size_t(i)] = value(comm.rank(), i);
    comm.allreduce_sum(data.data(), n);
    int64_t wrong = 0, first_wrong = -1;
    for (int64_t i = 0; i < n; ++i) {
      const float want = float((p * (p + 1) / 2) * (i % 1021) - 7 * p);
      if (data[size_t(i)] != want && wrong++ == 0) first_wrong = i;
    }
    EXPECT_EQ(wrong, 0) << GetParam() << ", " << n << " floats, " << p << " ranks: first wrong at "
                        << first_wrong;
  }
}

TEST_P(Sums, RepeatedCallsReuseTheCommunicator) {
  MpiCommunicator comm(*runtime, options(GetParam()));
  std::vector<float> data(100000);
  for (int round = 0; round < 5; ++round) {
    for (size_t i = 0; i < data.size(); ++i) data[i] = float(round + comm.rank());
    comm.allreduce_sum(data.data(), int64_t(data.size()));
    const int p = comm.size();
    const float want = float(round * p + p * (p - 1) / 2);
    EXPECT_EQ(data.front(), want);
    EXPECT_EQ(data.back(), want);
  }
}

INSTANTIATE_TEST_SUITE_P(Algorithms, Sums,
                         ::testing::Values("ring", "ring-p2p", "hierarchical", "hierarchical-p2p", "mpi"));

// Buffers from allocate(): reduced in place (no ring) when all ranks share the machine (here,
// except across tests/allreduce/test_netns_hosts.sh's namespace hosts); hierarchical with
// ranks on two simulated hosts (3 or 4 ranks) runs its own algorithm on them.
class SharedSums : public ::testing::TestWithParam<std::string> {};

TEST_P(SharedSums, ExactForEverySize) {
  MpiCommunicator comm(*runtime, options(GetParam()));
  const int p = comm.size();
  const bool in_place = comm.shares_buffers() && (GetParam() == "ring" || comm.host_count() == 1);
  SharedBuffer buffer = comm.allocate(int64_t(16) << 20);  // 64 MiB
  ASSERT_EQ(buffer.size(), int64_t(16) << 20);
  int64_t expected_in_place = 0;
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(1000003), int64_t(16) << 20}) {
    float* data = buffer.data();
    for (int64_t i = 0; i < n; ++i) data[i] = value(comm.rank(), i);
    comm.allreduce_sum(data, n);
    if (in_place && n * 4 >= MpiCommunicator::kZeroCopyMinBytes) ++expected_in_place;
    int64_t wrong = 0, first_wrong = -1;
    for (int64_t i = 0; i < n; ++i) {
      const float want = float((p * (p + 1) / 2) * (i % 1021) - 7 * p);
      if (data[i] != want && wrong++ == 0) first_wrong = i;
    }
    EXPECT_EQ(wrong, 0) << GetParam() << ", " << n << " floats, " << p << " ranks: first wrong at "
                        << first_wrong;
  }
  EXPECT_EQ(comm.in_place_allreduces(), expected_in_place);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, SharedSums, ::testing::Values("ring", "hierarchical"));

TEST(SharedBuffers, SharedExactlyWhenEveryRankIsOnThisMachine) {
  MpiCommunicator comm(*runtime, options("ring"));
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");  // ranks mpirun started here
  ASSERT_NE(local, nullptr);
  EXPECT_EQ(comm.shares_buffers(), comm.size() > 1 && std::atoi(local) == comm.size());
  EXPECT_FALSE(MpiCommunicator(*runtime, options("ring-p2p")).shares_buffers());
}

TEST(SharedBuffers, RangesAtOtherOffsetsOnEachRank) {
  MpiCommunicator comm(*runtime, options("ring"));
  const int p = comm.size();
  SharedBuffer buffer = comm.allocate(1 << 20);
  const int64_t n = 500009, offset = 3 * comm.rank() + 1;  // misaligned, and different per rank
  float* data = buffer.data() + offset;
  for (int round = 0; round < 3; ++round) {
    for (int64_t i = 0; i < n; ++i) data[i] = value(comm.rank(), i + round);
    comm.allreduce_sum(data, n);
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; ++i)
      wrong += data[i] != float((p * (p + 1) / 2) * ((i + round) % 1021) - 7 * p);
    EXPECT_EQ(wrong, 0) << "round " << round;
  }
  EXPECT_EQ(comm.in_place_allreduces(), comm.shares_buffers() ? 3 : 0);
}

// Back-to-back calls of changing sizes while ranks run ahead of each other (3 and 4 ranks
// share 2 cores), every fifth call on one rank's ordinary memory (so the ring) in between:
// the handshake never mixes up two calls.
TEST(SharedBuffers, BackToBackCallsOfChangingSizes) {
  MpiCommunicator comm(*runtime, options("ring"));
  const int p = comm.size();
  SharedBuffer buffer = comm.allocate(400000);
  std::vector<float> heap(400000);
  int64_t shared_calls = 0;
  for (int call = 0; call < 60; ++call) {
    const int64_t n = 16384 + (int64_t(call) * 104729) % 380000;
    const bool ordinary = call % 5 == 4 && comm.rank() == 0;
    float* data = ordinary ? heap.data() : buffer.data();
    shared_calls += call % 5 != 4;
    for (int64_t i = 0; i < n; ++i) data[i] = value(comm.rank(), i + call);
    comm.allreduce_sum(data, n);
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; ++i)
      wrong += data[i] != float((p * (p + 1) / 2) * ((i + call) % 1021) - 7 * p);
    ASSERT_EQ(wrong, 0) << "call " << call << ", " << n << " floats";
  }
  EXPECT_EQ(comm.in_place_allreduces(), comm.shares_buffers() ? shared_calls : 0);
}

TEST(SharedBuffers, OneRankWithOrdinaryMemoryTakesTheRing) {
  MpiCommunicator comm(*runtime, options("ring"));
  const int p = comm.size();
  SharedBuffer buffer = comm.allocate(1 << 20);
  std::vector<float> heap(1 << 20);
  float* data = comm.rank() == p - 1 ? heap.data() : buffer.data();
  const int64_t n = 1 << 20;
  for (int64_t i = 0; i < n; ++i) data[i] = value(comm.rank(), i);
  comm.allreduce_sum(data, n);
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) wrong += data[i] != float((p * (p + 1) / 2) * (i % 1021) - 7 * p);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(comm.in_place_allreduces(), 0);
}

TEST(SharedBuffers, SameBitsOnEveryRankForInexactSums) {
  MpiCommunicator comm(*runtime, options("ring"));
  SharedBuffer buffer = comm.allocate(300007);
  float* data = buffer.data();
  for (int64_t i = 0; i < buffer.size(); ++i) data[i] = 1.0f / float(i + 3 + comm.rank());
  comm.allreduce_sum(data, buffer.size());
  // A checksum of the bits, compared through allgather (exact for these small integers).
  uint64_t h = 0;
  for (int64_t i = 0; i < buffer.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, data + i, sizeof bits);
    h = (h * 31 + bits) % 1000000007;
  }
  for (double other : comm.allgather(double(h))) EXPECT_EQ(other, double(h));
}

TEST(SharedBuffers, ABufferMayOutliveItsCommunicator) {
  bool shared = false;
  SharedBuffer kept = [&] {
    MpiCommunicator comm(*runtime, options("ring"));
    shared = comm.shares_buffers();
    SharedBuffer b = comm.allocate(1000);
    std::vector<SharedBuffer> more;  // moved and destroyed in the same order on every rank
    more.push_back(comm.allocate(10));
    more.push_back(std::move(b));
    return std::move(more.back());
  }();
  EXPECT_EQ(kept.size(), 1000);
  if (shared) {
    EXPECT_EQ(kept.data(), nullptr);  // the shared window went with the communicator
  } else {
    EXPECT_NE(kept.data(), nullptr);  // plain memory, the buffer's own
  }
}

TEST(Hosts, GroupsFollowHostNames) {
  MpiCommunicator comm(*runtime, options("hierarchical"));
  // main() put ranks 2k and 2k+1 on host "node-k".
  EXPECT_EQ(comm.host(), "node-" + std::to_string(comm.rank() / 2));
  EXPECT_EQ(comm.host_count(), (comm.size() + 1) / 2);
  EXPECT_EQ(comm.local_rank(), comm.rank() % 2);
  EXPECT_EQ(comm.local_size(), std::min(2, comm.size() - comm.rank() / 2 * 2));
}

TEST(Collectives, BroadcastAllgatherGather) {
  MpiCommunicator comm(*runtime, options("ring"));
  const int p = comm.size(), root = p - 1;
  std::vector<int32_t> v(300001, comm.rank() == root ? 5 : -1);
  v[7] = comm.rank() == root ? 99 : 0;
  comm.broadcast(v.data(), v.size() * sizeof(int32_t), root);
  EXPECT_EQ(v[0], 5);
  EXPECT_EQ(v[7], 99);
  EXPECT_EQ(v.back(), 5);

  const std::vector<double> all = comm.allgather(comm.rank() * 1.5);
  ASSERT_EQ(int(all.size()), p);
  for (int r = 0; r < p; ++r) EXPECT_EQ(all[size_t(r)], r * 1.5);
  EXPECT_EQ(comm.sum(1.0), double(p));

  const std::vector<std::string> texts =
      comm.gather_to_root(std::string(size_t(comm.rank()) * 100000, 'a' + char(comm.rank())));
  if (comm.rank() == 0) {
    ASSERT_EQ(int(texts.size()), p);
    for (int r = 0; r < p; ++r) EXPECT_EQ(texts[size_t(r)], std::string(size_t(r) * 100000, 'a' + char(r)));
  } else {
    EXPECT_TRUE(texts.empty());
  }
}

TEST(Collectives, UnknownAlgorithmIsAUsageError) {
  try {
    MpiCommunicator comm(*runtime, options("tree"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(std::string(e.what()).find("'tree'"), std::string::npos);
  }
}

}  // namespace
}  // namespace strand::allreduce

int main(int argc, char** argv) {
  // Two ranks per simulated host, for the hierarchical algorithm.
  if (const char* r = std::getenv("OMPI_COMM_WORLD_RANK"))
    setenv("STRAND_HOST", ("node-" + std::to_string(std::atoi(r) / 2)).c_str(), 1);
  strand::allreduce::MpiRuntime mpi(&argc, &argv);
  strand::allreduce::runtime = &mpi;
  ::testing::InitGoogleTest(&argc, argv);
  // Only rank 0 prints the report; every rank's failures still fail the job.
  if (mpi.world_rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  return RUN_ALL_TESTS();
}
