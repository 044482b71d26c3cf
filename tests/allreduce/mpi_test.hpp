// What the unit tests of the allreduce module's parts share: the process's MpiRuntime (made
// by mpi_test_main.cpp's main(), which also lets only rank 0 print the report) and Groups
// built from MPI_COMM_WORLD.
#pragma once

#include <memory>
#include <string>

#include <strand/allreduce/group.hpp>
#include <strand/allreduce/mpi_runtime.hpp>

namespace strand::allreduce::test {

extern MpiRuntime* runtime;

// Options with a short deadline: a test that hangs fails within seconds.
CommOptions test_options();
// Collective: every world rank in one group, on a duplicate of MPI_COMM_WORLD.
std::unique_ptr<Group> world_group(const CommOptions& options = test_options());
// Collective: the world split by `colour` (ranks of one colour form a group, in world-rank
// order); null where colour is MPI_UNDEFINED. Members are named host "node-<colour>".
std::unique_ptr<Group> split_group(int colour, const CommOptions& options = test_options());

}  // namespace strand::allreduce::test
