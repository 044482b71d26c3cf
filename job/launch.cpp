#include <strand/job/launch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <charconv>
#include <csignal>
#include <cstring>
#include <fstream>

#include <iterator>
#include <memory>

#include <nlohmann/json.hpp>

#include <strand/core/error.hpp>
#include <strand/io/atomic_file.hpp>
#include <strand/ps/header.hpp>

extern char** environ;

namespace strand::job {

namespace {

struct Interface {
  std::string name;
  in_addr addr;
  bool loopback;
};

std::vector<Interface> interfaces() {
  ifaddrs* list = nullptr;
  STRAND_CHECK(getifaddrs(&list) == 0, Io, "getifaddrs failed", "--ps-bind");
  std::unique_ptr<ifaddrs, void (*)(ifaddrs*)> guard(list, freeifaddrs);
  std::vector<Interface> out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP)) continue;
    out.push_back({i->ifa_name, reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr,
                   (i->ifa_flags & IFF_LOOPBACK) != 0});
  }
  return out;
}

bool is_loopback(const std::string& address) { return address.rfind("127.", 0) == 0; }

std::string text(in_addr a) {
  char buf[INET_ADDRSTRLEN];
  return inet_ntop(AF_INET, &a, buf, sizeof buf);
}

}  // namespace

std::string resolve_ipv4(const std::string& name) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(name.c_str(), nullptr, &hints, &res);
  STRAND_CHECK(rc == 0 && res, Io, std::string("cannot resolve the host name: ") + gai_strerror(rc), name);
  const std::string out = text(reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr);
  freeaddrinfo(res);
  return out;
}

bool is_this_machine(const std::string& host) {
  std::string address;
  try {
    address = resolve_ipv4(host);
  } catch (const Error&) {
    return false;
  }
  if (is_loopback(address)) return true;
  for (const Interface& i : interfaces())
    if (text(i.addr) == address) return true;
  return false;
}

std::string server_address(const std::string& host, const std::string& bind, bool this_machine) {
  if (this_machine) return ps_bind_address(bind, host);
  const std::string address = resolve_ipv4(host);
  STRAND_CHECK(!is_loopback(address), Usage,
               "resolves to " + address +
                   " here, but its server runs on another machine: map the job's host names to addresses "
                   "the machines share (/etc/hosts, DNS)",
               host);
  return address;
}

std::string ps_bind_address(const std::string& spec, const std::string& host) {
  const std::vector<Interface> ifs = interfaces();
  if (spec.empty()) {
    // A name that resolves to loopback (containers and cloud images map theirs to 127.0.0.1)
    // says nothing another host can reach: look at the interfaces then too.
    try {
      const std::string mine = resolve_ipv4(host);
      for (const Interface& i : ifs)
        if (text(i.addr) == mine && !i.loopback) return mine;
    } catch (const Error&) {  // a host name without an address (namespace hosts)
    }
    for (const Interface& i : ifs)
      if (!i.loopback) return text(i.addr);
    return "127.0.0.1";
  }
  if (spec == "*" || spec == "0.0.0.0") return "0.0.0.0";
  in_addr a{};
  if (const size_t slash = spec.find('/'); slash != std::string::npos) {
    const std::string bits_text = spec.substr(slash + 1);
    STRAND_CHECK(inet_pton(AF_INET, spec.substr(0, slash).c_str(), &a) == 1 && !bits_text.empty() &&
                     bits_text.size() <= 2 &&
                     bits_text.find_first_not_of("0123456789") == std::string::npos &&
                     std::stoi(bits_text) <= 32,
                 Usage, "not an IPv4 network such as 10.77.0.0/24", "--ps-bind " + spec);
    const int bits = std::stoi(bits_text);
    const uint32_t mask = bits == 0 ? 0 : ~uint32_t(0) << (32 - bits);
    for (const Interface& i : ifs)
      if ((ntohl(i.addr.s_addr) & mask) == (ntohl(a.s_addr) & mask)) return text(i.addr);
    throw Error(ErrorKind::Usage, "no interface of this host has an address in that network",
                "--ps-bind " + spec);
  }
  if (inet_pton(AF_INET, spec.c_str(), &a) == 1) return spec;
  for (const Interface& i : ifs)
    if (i.name == spec) return text(i.addr);
  throw Error(ErrorKind::Usage,
              "neither an IPv4 address, a network nor an interface of this host with an IPv4 address",
              "--ps-bind " + spec);
}

uint64_t token_from_env() {
  const char* t = std::getenv("STRAND_PS_TOKEN");
  if (!t) return 0;
  const std::string s = t;
  STRAND_CHECK(
      !s.empty() && s.size() <= 16 && s.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos,
      Usage, "must be 1 to 16 hexadecimal digits", "STRAND_PS_TOKEN");
  const uint64_t v = std::stoull(s, nullptr, 16);
  STRAND_CHECK(v != 0, Usage, "must not be 0", "STRAND_PS_TOKEN");
  return v;
}

SageMakerHosts sagemaker_hosts(const char* sm_hosts_json, const char* sm_current_host) {
  STRAND_CHECK(sm_hosts_json && *sm_hosts_json, Usage, "not set", "SM_HOSTS");
  STRAND_CHECK(sm_current_host && *sm_current_host, Usage,
               "not set (the SageMaker launch needs it beside SM_HOSTS)", "SM_CURRENT_HOST");
  SageMakerHosts out;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(sm_hosts_json);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::Usage, std::string("not valid JSON: ") + e.what(), "SM_HOSTS");
  }
  STRAND_CHECK(j.is_array() && !j.empty(), Usage, "must be a non-empty JSON list of host names", "SM_HOSTS");
  for (const auto& h : j) {
    STRAND_CHECK(h.is_string() && !h.get<std::string>().empty(), Usage, "every entry must be a host name",
                 "SM_HOSTS");
    out.hosts.push_back(h.get<std::string>());
  }
  out.current = -1;
  for (size_t i = 0; i < out.hosts.size(); ++i)
    if (out.hosts[i] == sm_current_host) out.current = int(i);
  STRAND_CHECK(out.current >= 0, Usage,
               std::string("'") + sm_current_host + "' is not in SM_HOSTS " + sm_hosts_json,
               "SM_CURRENT_HOST");
  return out;
}

namespace {
// "tcp://A:P" -> A, P; false when it is not of that form.
bool split_endpoint(const std::string& endpoint, std::string& address, int& port) {
  const std::string scheme = "tcp://";
  const size_t colon = endpoint.rfind(':');
  if (endpoint.rfind(scheme, 0) != 0 || colon == std::string::npos || colon < scheme.size()) return false;
  address = endpoint.substr(scheme.size(), colon - scheme.size());
  const std::string p = endpoint.substr(colon + 1);
  const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
  return ec == std::errc() && end == p.data() + p.size() && port > 0 && port < 65536;
}
}  // namespace

bool is_loopback_endpoint(const std::string& endpoint) {
  std::string address;
  int port = 0;
  return split_endpoint(endpoint, address, port) && is_loopback(address);
}

int tcp_connect(const std::string& address, int port, double timeout_s, std::string& why) {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(uint16_t(port));
  if (inet_pton(AF_INET, address.c_str(), &to.sin_addr) != 1) {
    why = "'" + address + "' is not an IPv4 address";
    return -1;
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    why = std::string("cannot open a socket: ") + std::strerror(errno);
    return -1;
  }
  why.clear();
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
    if (errno != EINPROGRESS) {
      why = std::strerror(errno);
    } else {
      pollfd p{.fd = fd, .events = POLLOUT, .revents = 0};
      int err = 0;
      socklen_t len = sizeof err;
      if (::poll(&p, 1, int(timeout_s * 1000)) != 1) {
        char t[64];
        std::snprintf(t, sizeof t, "no answer within %g s", timeout_s);
        why = t;
      } else if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        why = std::strerror(err);
      }
    }
  }
  if (!why.empty()) {
    ::close(fd);
    return -1;
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

std::string tcp_probe(const std::string& endpoint, double timeout_s) {
  std::string address, why;
  int port = 0;
  if (!split_endpoint(endpoint, address, port)) return "not a tcp://IPV4:PORT endpoint";
  const int fd = tcp_connect(address, port, timeout_s, why);
  if (fd >= 0) ::close(fd);
  return why;
}

uint64_t token_from_text(const std::string& text) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (const unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return h ? h : 1;
}

TfConfig parse_tf_config(const std::string& json) {
  const auto bad = [](const std::string& key, const std::string& what) {
    return Error(ErrorKind::Usage, key + ": " + what, kTfConfigEnv);
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::Usage, std::string("not valid JSON: ") + e.what(), kTfConfigEnv);
  }
  if (!j.is_object()) throw bad("the value", "must be a JSON object with \"cluster\" and \"task\"");
  if (!j.contains("cluster") || !j["cluster"].is_object())
    throw bad("cluster", "missing or not an object of task lists");
  const nlohmann::json& cluster = j["cluster"];
  const auto tasks = [&](const std::string& type) {
    std::vector<TfConfig::Task> out;
    if (!cluster.contains(type)) return out;
    const nlohmann::json& list = cluster[type];
    if (!list.is_array()) throw bad("cluster." + type, "must be a list of \"HOST:PORT\"");
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string key = "cluster." + type + "[" + std::to_string(i) + "]";
      if (!list[i].is_string()) throw bad(key, "must be a \"HOST:PORT\" string");
      const std::string entry = list[i].get<std::string>();
      const size_t colon = entry.rfind(':');
      TfConfig::Task t;
      if (colon == std::string::npos || colon == 0) throw bad(key, "'" + entry + "' is not HOST:PORT");
      t.host = entry.substr(0, colon);
      const std::string port = entry.substr(colon + 1);
      const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), t.port);
      if (ec != std::errc() || end != port.data() + port.size() || t.port < 1 || t.port > 65535)
        throw bad(key, "'" + entry + "': the port is not 1..65535");
      out.push_back(std::move(t));
    }
    return out;
  };
  for (const auto& [type, list] : cluster.items())
    if (type != "chief" && type != "master" && type != "worker" && type != "ps")
      throw bad("cluster." + type, "strand runs chief (or master), worker and ps tasks; an " + type +
                                       " has no part in its job (the chief evaluates every epoch)");
  TfConfig c;
  c.servers = tasks("ps");
  if (c.servers.empty())
    throw bad("cluster.ps", "missing or empty: strand runs TF_CONFIG as a parameter-server job");
  const std::vector<TfConfig::Task> chief = tasks("chief"), master = tasks("master"),
                                    workers = tasks("worker");
  if (!chief.empty() && !master.empty())
    throw bad("cluster.master", "a cluster has a chief or a master, not both");
  if (chief.size() + master.size() > 1)
    throw bad(chief.empty() ? "cluster.master" : "cluster.chief", "more than one task");
  c.workers = chief.empty() ? master : chief;
  c.workers.insert(c.workers.end(), workers.begin(), workers.end());
  if (c.workers.empty()) throw bad("cluster.worker", "no chief, master or worker task: nothing would train");

  if (!j.contains("task") || !j["task"].is_object())
    throw bad("task", "missing or not an object with \"type\" and \"index\"");
  const nlohmann::json& task = j["task"];
  if (!task.contains("type") || !task["type"].is_string()) throw bad("task.type", "missing or not a string");
  const std::string type = task["type"].get<std::string>();
  int index = 0;
  if (task.contains("index")) {
    if (!task["index"].is_number_integer() || task["index"].get<int64_t>() < 0)
      throw bad("task.index", "must be a non-negative integer");
    index = int(std::min<int64_t>(task["index"].get<int64_t>(), 1 << 30));
  }
  const auto count = [&](const std::string& of) {
    return of == "ps"       ? c.servers.size()
           : of == "worker" ? workers.size()
           : of == "chief"  ? chief.size()
                            : master.size();
  };
  if (type != "chief" && type != "master" && type != "worker" && type != "ps")
    throw bad("task.type", "'" + type + "' is not chief, master, worker or ps");
  if (size_t(index) >= count(type))
    throw bad("task.index", std::to_string(index) + " is outside cluster." + type + " (" +
                                std::to_string(count(type)) + " task(s))");
  c.server = type == "ps";
  c.index = type == "worker" ? int(c.workers.size() - workers.size()) + index : index;
  c.token = token_from_text(cluster.dump());
  return c;
}

void write_ps_job_file(const std::filesystem::path& path, const PsJobFile& job) {
  const nlohmann::json j = {
      {"servers", job.servers}, {"token", ps::token_to_string(job.token)}, {"chunk_bytes", job.chunk_bytes}};
  std::filesystem::create_directories(path.parent_path());
  io::write_file_atomic(path, j.dump(2) + "\n");
  std::filesystem::permissions(path,
                               std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

PsJobFile read_ps_job_file(const std::filesystem::path& path) {
  const std::string where = path.string();
  std::ifstream in(path);
  STRAND_CHECK(
      in, Usage,
      "no running parameter-server job here (rank 0 of a --strategy ps job writes this file into its "
      "checkpoint directory when training starts; is the job running, with the same --model-dir or "
      "--checkpoint-dir?)",
      where);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  STRAND_CHECK(j.is_object(), Usage, "not a JSON object", where);
  PsJobFile f;
  const auto servers = j.find("servers");
  STRAND_CHECK(servers != j.end() && servers->is_array() && !servers->empty(), Usage,
               "'servers' must be a non-empty list of endpoints", where);
  for (const auto& s : *servers) {
    STRAND_CHECK(s.is_string() && s.get<std::string>().rfind("tcp://", 0) == 0, Usage,
                 "'servers' holds " + s.dump() + ", not a tcp:// endpoint", where);
    f.servers.push_back(s.get<std::string>());
  }
  const auto token = j.find("token");
  STRAND_CHECK(token != j.end() && token->is_string(), Usage, "'token' must be a string of 16 hex digits",
               where);
  try {
    f.token = ps::parse_token(token->get<std::string>());
  } catch (const Error& e) {
    throw Error(ErrorKind::Usage, e.message(), where);
  }
  const auto chunk = j.find("chunk_bytes");
  STRAND_CHECK(chunk != j.end() && chunk->is_number_integer() && chunk->get<int64_t>() > 0, Usage,
               "'chunk_bytes' must be a positive integer", where);
  f.chunk_bytes = chunk->get<int64_t>();
  return f;
}

std::vector<int> spawn_workers(int count) {
  // The same command line: /proc/self/cmdline holds it NUL-separated.
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  STRAND_CHECK(!all.empty(), Io, "cannot read this process's command line", "/proc/self/cmdline");
  std::vector<std::string> args;
  for (size_t b = 0; b < all.size();) {
    const size_t e = all.find('\0', b);
    args.push_back(all.substr(b, e - b));
    b = e == std::string::npos ? all.size() : e + 1;
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<int> pids;
  const pid_t parent = getpid();
  for (int w = 0; w < count; ++w) {
    // Everything the child needs is built before fork(): after it only exec-safe calls.
    std::vector<std::string> env_store{std::string(kWorkerEnv) + "=" + std::to_string(w)};
    for (char** e = environ; *e; ++e)
      if (std::string_view(*e).rfind(std::string(kWorkerEnv) + "=", 0) != 0) env_store.emplace_back(*e);
    std::vector<char*> envp;
    for (std::string& e : env_store) envp.push_back(e.data());
    envp.push_back(nullptr);
    const pid_t pid = fork();
    STRAND_CHECK(pid >= 0, Io, "fork failed for worker " + std::to_string(w), "strand train");
    if (pid == 0) {
      // A worker whose host process is gone has no server on its host: end it too.
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(1);
      execve("/proc/self/exe", argv.data(), envp.data());
      _exit(127);
    }
    pids.push_back(pid);
  }
  return pids;
}

}  // namespace strand::job
