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

// The first of `names` that is set, or nullptr.
const char* first_set(const Environment& env, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (env.get(n)) return n;
  return nullptr;
}

Error conflict(const Environment& env, const std::string& a, const std::string& b, const std::string& why) {
  const auto shown = [&](const std::string& n) {
    const std::string* v = env.get(n);
    return v && v->size() < 40 ? n + "=" + *v : n;
  };
  return Error(ErrorKind::Usage, shown(a) + " and " + shown(b) + " " + why, "the launcher's environment");
}

// Every pair of the set variables among `names` must agree.
void check_agree(const Environment& env, std::initializer_list<const char*> names, const std::string& what) {
  const char* first = nullptr;
  for (const char* n : names) {
    if (!env.get(n)) continue;
    if (!first) {
      first = n;
      continue;
    }
    if (int_var(env, n, 0) != int_var(env, first, 0))
      throw conflict(env, first, n, "give this process different " + what + "s: two launchers disagree");
  }
}

// Slurm's "2(x3),1": tasks on each node of the step.
std::vector<int> tasks_per_node(const std::string& text, const std::string& where) {
  std::vector<int> out;
  for (size_t i = 0; i < text.size();) {
    const size_t comma = std::min(text.find(',', i), text.size());
    const std::string item = text.substr(i, comma - i);
    int count = 0, times = 1;
    const size_t paren = item.find("(x");
    const std::string n = item.substr(0, paren);
    auto [e1, c1] = std::from_chars(n.data(), n.data() + n.size(), count);
    bool ok = c1 == std::errc() && e1 == n.data() + n.size() && count > 0;
    if (ok && paren != std::string::npos) {
      const std::string r = item.substr(paren + 2);
      auto [e2, c2] = std::from_chars(r.data(), r.data() + r.size(), times);
      ok = c2 == std::errc() && e2 == r.data() + r.size() - 1 && r.back() == ')' && times > 0 &&
           times < 1 << 20;
    }
    STRAND_CHECK(ok, Usage, "'" + text + "' is not Slurm's tasks-per-node form (2(x3),1)", where);
    out.insert(out.end(), size_t(times), count);
    i = comma + 1;
  }
  return out;
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

Launcher detect_launcher(const Environment& env) {
  const bool torchrun = env.get("RANK") && env.get("WORLD_SIZE");
  if (const char* mpi = first_set(env, {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})) {
    check_agree(env, {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "RANK"}, "rank");
    check_agree(env, {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "WORLD_SIZE"}, "world size");
    if (env.get(kTfConfigEnv))
      throw conflict(env, mpi, kTfConfigEnv,
                     "both start this job: TF_CONFIG's tasks are processes started one by one, not by "
                     "an MPI launcher (unset TF_CONFIG under mpirun or srun --mpi=pmix)");
    return Launcher::Mpi;
  }
  if (torchrun) {
    if (env.get(kTfConfigEnv))
      throw conflict(env, "RANK", kTfConfigEnv, "both place this process: unset one of them");
    return Launcher::Torchrun;
  }
  if (env.get(kTfConfigEnv)) {
    if (env.get("SM_HOSTS"))
      throw conflict(env, kTfConfigEnv, "SM_HOSTS", "both describe the job's hosts: unset one of them");
    return Launcher::TfConfig;
  }
  // A job step's task: the batch script itself (no step id) is not one of the step's tasks.
  if (env.get("SLURM_PROCID") && first_set(env, {"SLURM_STEP_ID", "SLURM_STEPID"})) return Launcher::Slurm;
  if (env.get("SM_HOSTS")) return Launcher::SageMaker;
  return Launcher::Single;
}

std::vector<std::string> expand_slurm_nodelist(std::string_view list, const std::string& where) {
  const auto bad = [&](const std::string& what) {
    return Error(ErrorKind::Usage, "'" + std::string(list) + "': " + what, where);
  };
  std::vector<std::string> hosts;
  size_t i = 0;
  while (i < list.size()) {
    // One item: a prefix, then optional [ranges] and suffix, up to a comma outside brackets.
    std::string prefix;
    while (i < list.size() && list[i] != ',' && list[i] != '[') prefix += list[i++];
    if (i < list.size() && list[i] == '[') {
      const size_t close = list.find(']', i);
      if (close == std::string_view::npos) throw bad("an unclosed '['");
      const std::string_view ranges = list.substr(i + 1, close - i - 1);
      i = close + 1;
      std::string suffix;
      while (i < list.size() && list[i] != ',') {
        if (list[i] == '[') throw bad("more than one [...] in one name");
        suffix += list[i++];
      }
      if (ranges.empty()) throw bad("an empty '[]'");
      for (size_t r = 0; r <= ranges.size();) {
        const size_t comma = std::min(ranges.find(',', r), ranges.size());
        const std::string_view range = ranges.substr(r, comma - r);
        const size_t dash = range.find('-');
        const std::string_view lo = range.substr(0, dash);
        const std::string_view hi = dash == std::string_view::npos ? lo : range.substr(dash + 1);
        long a = -1, b = -1;
        const auto number = [&](std::string_view s, long& out) {
          const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
          if (s.empty() || ec != std::errc() || end != s.data() + s.size() || out < 0)
            throw bad("'" + std::string(range) + "' is not N or N-M");
        };
        number(lo, a);
        number(hi, b);
        if (b < a || b - a > 100000) throw bad("'" + std::string(range) + "' is not an increasing range");
        for (long n = a; n <= b; ++n) {
          std::string digits = std::to_string(n);
          if (digits.size() < lo.size()) digits.insert(0, lo.size() - digits.size(), '0');  // node[01-10]
          hosts.push_back(prefix + digits + suffix);
        }
        r = comma + 1;
      }
    } else {
      if (prefix.empty()) throw bad("an empty host name");
      hosts.push_back(prefix);
    }
    if (i < list.size()) {
      ++i;  // the comma
      if (i == list.size()) throw bad("an empty host name at the end");
    }
  }
  if (hosts.empty()) throw bad("no hosts");
  return hosts;
}

SlurmNodes slurm_nodes(const Environment& env) {
  const char* var = first_set(env, {"SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"});
  STRAND_CHECK(var, Usage, "not set (srun sets it for every task of a job step)", "SLURM_JOB_NODELIST");
  SlurmNodes n{expand_slurm_nodelist(*env.get(var), var), int_var(env, "SLURM_NODEID", 0)};
  STRAND_CHECK(n.current < int(n.hosts.size()), Usage,
               "node " + std::to_string(n.current) + " is outside " + var + " (" +
                   std::to_string(n.hosts.size()) + " nodes)",
               "SLURM_NODEID");
  return n;
}

Identity discover_identity(Launcher launcher, const Environment& env, const allreduce::MpiRuntime* mpi,
                           int workers_per_host) {
  const auto host_name = [&]() -> std::string {
    const std::string* h = env.get("HOSTNAME");
    return h ? *h : "";
  };
  switch (launcher) {
    case Launcher::Single:
    case Launcher::TfConfig:
      return {};
    case Launcher::Mpi: {
      STRAND_CHECK(mpi, Internal, "an MPI launch needs the MPI runtime", "discover_identity");
      Identity id{.rank = mpi->world_rank(), .world = mpi->world_size(), .host = mpi->host()};
      id.local_rank =
          first_int_var(env, {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}, 0);
      id.local_size = std::max(1, first_int_var(env, {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"}, 1));
      return id;
    }
    case Launcher::Slurm: {
      Identity id;
      id.rank = int_var(env, "SLURM_PROCID", 0);
      const char* ntasks = first_set(env, {"SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS"});
      STRAND_CHECK(ntasks, Usage, "not set (srun sets it for every task of a job step)", "SLURM_NTASKS");
      id.world = int_var(env, ntasks, 1);
      STRAND_CHECK(id.world >= 1 && id.rank < id.world, Usage,
                   "task " + std::to_string(id.rank) + " is outside the step's " + std::to_string(id.world) +
                       " task(s) (" + ntasks + ")",
                   "SLURM_PROCID");
      id.local_rank = int_var(env, "SLURM_LOCALID", 0);
      const SlurmNodes nodes = slurm_nodes(env);
      id.host = nodes.hosts[size_t(nodes.current)];
      if (const char* per_node = first_set(env, {"SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"})) {
        const std::vector<int> counts = tasks_per_node(*env.get(per_node), per_node);
        STRAND_CHECK(nodes.current < int(counts.size()), Usage,
                     "names fewer nodes than the node list (" + std::to_string(nodes.hosts.size()) + ")",
                     per_node);
        id.local_size = counts[size_t(nodes.current)];
      }
      STRAND_CHECK(id.local_rank < id.local_size, Usage,
                   "local task " + std::to_string(id.local_rank) + " is outside this node's " +
                       std::to_string(id.local_size),
                   "SLURM_LOCALID");
      return id;
    }
    case Launcher::Torchrun: {
      Identity id{
          .rank = int_var(env, "RANK", 0), .world = int_var(env, "WORLD_SIZE", 1), .host = host_name()};
      STRAND_CHECK(id.world >= 1 && id.rank < id.world, Usage,
                   "rank " + std::to_string(id.rank) + " is outside WORLD_SIZE " + std::to_string(id.world),
                   "RANK");
      id.local_rank = int_var(env, "LOCAL_RANK", 0);
      id.local_size = std::max(1, int_var(env, "LOCAL_WORLD_SIZE", 1));
      STRAND_CHECK(id.local_rank < id.local_size, Usage,
                   "local rank " + std::to_string(id.local_rank) + " is outside LOCAL_WORLD_SIZE " +
                       std::to_string(id.local_size),
                   "LOCAL_RANK");
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
