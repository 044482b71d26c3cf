// What a parameter-server job needs from its hosts: which address a host's server binds to, the
// job token, the SageMaker-style launch (no MPI: SM_HOSTS, SM_CURRENT_HOST, a port, workers per
// host), where the process on each host runs that host's server and starts its workers as child
// processes, and TensorFlow's TF_CONFIG, where each task is a server or a worker of its own.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace strand::job {

// The IPv4 address a host's server binds to, from --ps-bind `spec`:
//   an address ("10.77.0.2"): itself; "*" or "0.0.0.0": every interface (explicitly asked);
//   a network ("10.77.0.0/24"): this machine's address in it (as Open MPI's *_if_include);
//   an interface name ("eth0"): its address;
//   empty: `host`'s address when it resolves to one of this machine's interfaces other than
//   loopback, else the first non-loopback interface that is up, else 127.0.0.1 (all ranks on
//   one machine).
// Usage error when the spec names no address of this machine.
std::string ps_bind_address(const std::string& spec, const std::string& host);
// `name`'s IPv4 address (an address is returned as is); Io error naming it when it does not resolve.
std::string resolve_ipv4(const std::string& name);
// Where a worker without MPI (Slurm, SageMaker, TF_CONFIG) connects to the server of `host`:
// on this machine, the address that server binds (ps_bind_address with the same `bind`), so a
// host name that resolves to loopback still meets it; on another machine, the name's address.
// Usage error naming the host when another machine's name resolves to loopback here.
std::string server_address(const std::string& host, const std::string& bind, bool this_machine);
// Whether `host` resolves to loopback or to one of this machine's addresses.
bool is_this_machine(const std::string& host);
// STRAND_PS_TOKEN (1 to 16 hex digits, not 0) when set; 0 when unset; Usage error when malformed.
uint64_t token_from_env();
// A TCP connection to IPv4 `address`:`port` within `timeout_s` (then a blocking socket), or -1
// with `why` set (refused, timed out, no route).
int tcp_connect(const std::string& address, int port, double timeout_s, std::string& why);
// Whether a TCP connection to `endpoint` ("tcp://ADDRESS:PORT") opens within `timeout_s`:
// empty when it does, else why not.
std::string tcp_probe(const std::string& endpoint, double timeout_s);
// Whether `endpoint` is on 127.0.0.0/8.
bool is_loopback_endpoint(const std::string& endpoint);

// A token every process of a job draws alike from the same text (a cluster description, a
// scheduler's job id): not a secret, it tells jobs apart. Never 0.
uint64_t token_from_text(const std::string& text);

// The SageMaker launch, from SM_HOSTS (a JSON list of host names) and SM_CURRENT_HOST.
struct SageMakerHosts {
  std::vector<std::string> hosts;
  int current = 0;  // index of SM_CURRENT_HOST in hosts
};
// Usage error naming the variable when one is missing or malformed, or the current host is not listed.
SageMakerHosts sagemaker_hosts(const char* sm_hosts_json, const char* sm_current_host);

// TensorFlow's cluster description, as SageMaker's parameter-server distribution and
// Kubeflow's TFJob set it in TF_CONFIG: {"cluster": {"chief": [...], "worker": [...], "ps":
// [...]}, "task": {"type": "worker", "index": 1}}, each entry "HOST:PORT". A ps task runs server
// `index`, listening on its entry's port; chief (or master) and worker tasks are the workers,
// chief first. The job's token is drawn from the cluster's text, the same in every task (unless
// STRAND_PS_TOKEN sets one).
struct TfConfig {
  struct Task {
    std::string host;
    int port = 0;
  };
  std::vector<Task> servers, workers;
  bool server = false;  // this task runs a server, else a worker
  int index = 0;        // its server index or worker rank
  uint64_t token = 0;
};
inline constexpr const char* kTfConfigEnv = "TF_CONFIG";
// Usage error naming TF_CONFIG and the key that is missing, malformed or inconsistent.
TfConfig parse_tf_config(const std::string& json);

// What a worker needs to join a running ps job (`strand train --ps-join`): rank 0 writes it
// as kPsJobFile into the checkpoint directory once the servers run, and removes it at the end.
struct PsJobFile {
  std::vector<std::string> servers;  // endpoint of server i
  uint64_t token = 0;
  int64_t chunk_bytes = 0;
};
inline constexpr const char* kPsJobFile = "ps-job.json";
// Atomically, readable by its owner only (it holds the job's token).
void write_ps_job_file(const std::filesystem::path& path, const PsJobFile& job);
// Usage error naming the file when it is missing (the job has not started, or has ended) or
// malformed.
PsJobFile read_ps_job_file(const std::filesystem::path& path);

// Set in the environment of the worker processes a host starts: the worker's index on the host.
inline constexpr const char* kWorkerEnv = "STRAND_PS_WORKER";

// Starts `count` copies of this process (same executable and arguments) with kWorkerEnv =
// 0..count-1; each gets SIGTERM if this process dies. Returns their pids.
std::vector<int> spawn_workers(int count);

}  // namespace strand::job
