// Who this process is in a job, from the launcher that started it. One place knows every
// launcher strand supports; a new launcher is a new case here and nowhere else.
//   Single     a process on its own: rank 0 of 1
//   Mpi        mpirun (Open MPI: OMPI_COMM_WORLD_*), srun --mpi=pmix or prterun (PMIX_RANK), MPICH
//              or Intel MPI (PMI_RANK): rank, size and host from MPI, the node-local rank from
//              the launcher's variables, so nodes are told apart by the launcher, not by host name
//   Slurm      srun without MPI: SLURM_PROCID, SLURM_STEP_NUM_TASKS (or SLURM_NTASKS),
//              SLURM_LOCALID, SLURM_NODEID and the step's node list (SLURM_STEP_NODELIST or
//              SLURM_JOB_NODELIST, Slurm's compressed form: node[01-04],gpu7)
//   Torchrun   RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE (torchrun, and launchers that copy it)
//   TfConfig   TF_CONFIG (job/launch.hpp: each task a process of its own)
//   SageMaker  SM_HOSTS and SM_CURRENT_HOST; a host's worker processes carry their index in
//              STRAND_PS_WORKER (job/launch.hpp)
// The innermost launcher counts: mpirun inside an sbatch allocation is Mpi (its ranks inherit
// the allocation's SLURM_ variables), torchrun under srun is Torchrun, mpirun under SageMaker is
// Mpi. Two sources that give this process different places, or that cannot both hold, are an
// error naming both.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <strand/core/context.hpp>

namespace strand::allreduce {
class MpiRuntime;
}

namespace strand::job {

enum class Launcher { Single, Mpi, Slurm, Torchrun, TfConfig, SageMaker };

// The environment variables a launcher sets, read once (Environment::current()); tests build
// their own.
struct Environment {
  std::map<std::string, std::string> vars;
  static Environment current();
  const std::string* get(const std::string& name) const;
};

// The launcher that started this process. Usage error naming both variables when two sources
// conflict (OMPI_COMM_WORLD_RANK=0 beside RANK=3; TF_CONFIG beside an MPI launch).
Launcher detect_launcher(const Environment& env);

// This process's place. `mpi` must be given for Launcher::Mpi; `workers_per_host` is the
// SageMaker launch's (worker i on host h is rank h x workers_per_host + i). Usage error naming
// the variable when the launcher's variables are missing or malformed. (TfConfig: see
// parse_tf_config.)
Identity discover_identity(Launcher launcher, const Environment& env,
                           const allreduce::MpiRuntime* mpi = nullptr, int workers_per_host = 1);

// The hosts of a Slurm node list ("node[01-03,7],gpu-a" -> node01 node02 node03 node7 gpu-a), in
// order; Usage error naming `where` when it is malformed.
std::vector<std::string> expand_slurm_nodelist(std::string_view list, const std::string& where);
// The step's nodes (SLURM_STEP_NODELIST, else SLURM_JOB_NODELIST) and this process's index
// among them (SLURM_NODEID).
struct SlurmNodes {
  std::vector<std::string> hosts;
  int current = 0;
};
SlurmNodes slurm_nodes(const Environment& env);

}  // namespace strand::job
