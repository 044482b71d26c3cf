#include <strand/job/identity.hpp>

#include <charconv>

#include <strand/allreduce/mpi_runtime.hpp>
#include <strand/core/error.hpp>
#include <strand/job/launch.hpp>

extern char** environ;

namespace strand::job {

namespace {

// A non-negative integer variable, or `fallback` when unset; Usage error when malformed.
int int_var(const Environment& env, const std::string& name, int fallback) {
  const std::string* v = env.get(name);
  if (!v) return fallback;
  int out = -1;
  const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  STRAND_CHECK(ec == std::errc() && end == v->data() + v->size() && out >= 0, Usage,
               "'" + *v + "' is not a non-negative integer", name);
  return out;
}

// The first of `names` that is set.
int first_int_var(const Environment& env, std::initializer_list<const char*> names, int fallback) {
  for (const char* n : names)
    if (env.get(n)) return int_var(env, n, fallback);
  return fallback;
}

}  // namespace

Environment Environment::current() {
  Environment env;
  for (char** e = environ; *e; ++e) {
    const std::string_view kv(*e);
    const size_t eq = kv.find('=');
    if (eq != std::string_view::npos)
      env.vars.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return env;
}

const std::string* Environment::get(const std::string& name) const {
  const auto it = vars.find(name);
  return it == vars.end() ? nullptr : &it->second;
}

Identity discover_identity(Launcher launcher, const Environment& env, const allreduce::MpiRuntime* mpi,
                           int workers_per_host) {
  switch (launcher) {
    case Launcher::Single:
      return {};
    case Launcher::Mpi: {
      STRAND_CHECK(mpi, Internal, "an mpirun launch needs the MPI runtime", "discover_identity");
      Identity id{.rank = mpi->world_rank(), .world = mpi->world_size(), .host = mpi->host()};
      id.local_rank = first_int_var(env, {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"}, 0);
      id.local_size = std::max(1, first_int_var(env, {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"}, 1));
      return id;
    }
    case Launcher::SageMaker: {
      STRAND_CHECK(workers_per_host >= 1, Usage, "workers per host must be at least 1", "discover_identity");
      const std::string* hosts_json = env.get("SM_HOSTS");
      const std::string* current = env.get("SM_CURRENT_HOST");
      const SageMakerHosts sm =
          sagemaker_hosts(hosts_json ? hosts_json->c_str() : nullptr, current ? current->c_str() : nullptr);
      const int local = int_var(env, kWorkerEnv, 0);
      STRAND_CHECK(local < workers_per_host, Usage,
                   "worker index " + std::to_string(local) + " outside the " +
                       std::to_string(workers_per_host) + " workers per host",
                   kWorkerEnv);
      return {.rank = sm.current * workers_per_host + local,
              .world = int(sm.hosts.size()) * workers_per_host,
              .host = sm.hosts[size_t(sm.current)],
              .local_rank = local,
              .local_size = workers_per_host};
    }
  }
  throw Error(ErrorKind::Internal, "unknown launcher", "discover_identity");
}

}  // namespace strand::job
