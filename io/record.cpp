#include <strand/io/record.hpp>

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include <strand/core/error.hpp>
#include <strand/io/atomic_file.hpp>
#include <strand/io/build_info.hpp>

namespace strand::io {

namespace {

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

std::string trim(std::string s) {
  const auto first = s.find_first_not_of(" \t");
  const auto last = s.find_last_not_of(" \t\r\n");
  return first == std::string::npos ? std::string() : s.substr(first, last - first + 1);
}

// The value of the first "key: value" line of `path` whose key is `key`, else "".
std::string field_of(const std::filesystem::path& path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon != std::string::npos && trim(line.substr(0, colon)) == key) return trim(line.substr(colon + 1));
  }
  return "";
}

// The NVIDIA driver lists each GPU it drives under /proc/driver/nvidia/gpus/<bus id>/.
std::string nvidia_gpus() {
  std::string out;
  std::error_code ec;
  const std::filesystem::path root = "/proc/driver/nvidia/gpus";
  std::vector<std::filesystem::path> dirs;
  for (const auto& e : std::filesystem::directory_iterator(root, ec)) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  for (const auto& d : dirs) {
    const std::string model = field_of(d / "information", "Model");
    if (model.empty()) continue;
    if (!out.empty()) out += "; ";
    out += model;
  }
  return out;
}

int affinity_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
  return int(std::thread::hardware_concurrency());
}

std::vector<std::string> own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  std::string cur;
  for (char c : raw) {
    if (c == '\0') {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) args.push_back(cur);
  return args;
}

std::string utc_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

std::string shell_quote(const std::string& arg) {
  const bool plain = !arg.empty() && arg.find_first_not_of(
                                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789@%+=:,./_-") == std::string::npos;
  if (plain) return arg;
  std::string q = "'";
  for (char c : arg) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  return q + "'";
}

RecordStamp make_stamp(const StampOptions& options) {
  RecordStamp s;
  s.version = kStrandVersion;
  s.commit = kStrandCommit;
  s.host = host_name();
  s.cpu = field_of("/proc/cpuinfo", "model name");
  if (s.cpu.empty()) s.cpu = "unknown";
  s.gpu = !options.gpu.empty() ? options.gpu : options.on_gpu ? nvidia_gpus() : "";
  if (options.on_gpu && s.gpu.empty()) s.gpu = "unknown";
  s.threads = options.threads;
  s.cpus = affinity_cpus();
  s.date = utc_now();
  const std::vector<std::string> args = options.command.empty() ? own_command_line() : options.command;
  for (const std::string& a : args) {
    if (!s.command.empty()) s.command += ' ';
    s.command += shell_quote(a);
  }
  return s;
}

nlohmann::json to_json(const RecordStamp& s) {
  nlohmann::json j{{"strand_version", s.version},
                   {"commit", s.commit},
                   {"host", s.host},
                   {"cpu", s.cpu},
                   {"cpus", s.cpus},
                   {"date", s.date},
                   {"command", s.command}};
  if (!s.gpu.empty()) j["gpu"] = s.gpu;
  if (s.threads > 0) j["threads"] = s.threads;
  return j;
}

nlohmann::json stamped(nlohmann::json body, const RecordStamp& stamp) {
  STRAND_CHECK(body.is_object(), Usage,
               "a benchmark record must be a JSON object, got " + std::string(body.type_name()), "record");
  STRAND_CHECK(!body.contains("stamp"), Usage, "a benchmark record already has a \"stamp\"", "record");
  body["stamp"] = to_json(stamp);
  return body;
}

void write_record(std::ostream& out, const nlohmann::json& body, const RecordStamp& stamp, int indent) {
  out << stamped(body, stamp).dump(indent) << '\n';
}

void write_record(const std::filesystem::path& path, const nlohmann::json& body, const RecordStamp& stamp,
                  int indent) {
  write_file_atomic(path, stamped(body, stamp).dump(indent) + "\n");
}

}  // namespace strand::io
