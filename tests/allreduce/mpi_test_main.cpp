#include <gtest/gtest.h>

#include <mpi.h>
#include <vector>

#include "tests/allreduce/mpi_test.hpp"

namespace strand::allreduce::test {

MpiRuntime* runtime = nullptr;

CommOptions test_options() {
  CommOptions o;
  o.timeout_s = 20;
  return o;
}

std::unique_ptr<Group> world_group(const CommOptions& options) {
  const std::string where = "rank " + std::to_string(runtime->world_rank());
  MPI_Comm c;
  STRAND_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &c), where);
  std::vector<int> ranks;
  std::vector<std::string> hosts;
  for (int r = 0; r < runtime->world_size(); ++r) {
    ranks.push_back(r);
    hosts.push_back(runtime->host());
  }
  return std::make_unique<Group>(c, ranks, hosts, runtime->world_size(), options);
}

std::unique_ptr<Group> split_group(int colour, const CommOptions& options) {
  const int me = runtime->world_rank(), world = runtime->world_size();
  const std::string where = "rank " + std::to_string(me);
  std::vector<int> colours(size_t(world), 0);
  STRAND_MPI_CHECK(MPI_Allgather(&colour, 1, MPI_INT, colours.data(), 1, MPI_INT, MPI_COMM_WORLD), where);
  MPI_Comm c;
  STRAND_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, colour, me, &c), where);
  if (colour == MPI_UNDEFINED) return nullptr;
  std::vector<int> ranks;
  std::vector<std::string> hosts;
  for (int r = 0; r < world; ++r)
    if (colours[size_t(r)] == colour) {
      ranks.push_back(r);
      hosts.push_back("node-" + std::to_string(colour));
    }
  return std::make_unique<Group>(c, ranks, hosts, world, options);
}

}  // namespace strand::allreduce::test

int main(int argc, char** argv) {
  strand::allreduce::MpiRuntime mpi(&argc, &argv);
  strand::allreduce::test::runtime = &mpi;
  ::testing::InitGoogleTest(&argc, argv);
  // Only rank 0 prints the report; every rank's failures still fail the job.
  if (mpi.world_rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  return RUN_ALL_TESTS();
}
