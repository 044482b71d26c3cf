// Who this process is in a job, from the launcher that started it. One function knows every
// launcher strand supports; a new launcher is a new case here and nowhere else.
//   Single     a process on its own: rank 0 of 1
//   Mpi        mpirun (Open MPI, or any MPI through its runtime): rank, size and host from MPI,
//              the node-local rank from the launcher's variables (OMPI_COMM_WORLD_LOCAL_RANK,
//              MPI_LOCALRANKID), so nodes are told apart by the launcher, not by host name
//   SageMaker  SM_HOSTS and SM_CURRENT_HOST; a host's worker processes carry their index in
//              STRAND_PS_WORKER (job/launch.hpp)
#pragma once

#include <map>
#include <string>

#include <strand/core/context.hpp>

namespace strand::allreduce {
class MpiRuntime;
}

namespace strand::job {

enum class Launcher { Single, Mpi, SageMaker };

// The environment variables a launcher sets, read once (Environment::current()); tests build
// their own.
struct Environment {
  std::map<std::string, std::string> vars;
  static Environment current();
  const std::string* get(const std::string& name) const;
};

// This process's place. `mpi` must be given for Launcher::Mpi; `workers_per_host` is the
// SageMaker launch's (worker i on host h is rank h x workers_per_host + i). Usage error naming
// the variable when the launcher's variables are missing or malformed.
Identity discover_identity(Launcher launcher, const Environment& env,
                           const allreduce::MpiRuntime* mpi = nullptr, int workers_per_host = 1);

}  // namespace strand::job
