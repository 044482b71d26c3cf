// Benchmark records: every benchmark writes its JSON through here, and each record carries a
// stamp saying what produced it and where (strand's version and git commit, host, CPU or GPU
// model, threads, UTC date, command line), so a figure kept in bench/results can be traced to
// a build and a machine.
#pragma once

#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace strand::io {

struct RecordStamp {
  std::string version;  // strand's (the meson project version)
  std::string commit;   // `git describe --always --dirty` when built; "unknown" outside git
  std::string host;     // host name
  std::string cpu;      // /proc/cpuinfo's "model name" (or "unknown")
  std::string gpu;      // GPU model(s), "; "-separated, when the benchmark ran on one; else ""
  int threads = 0;      // threads the benchmark ran with; 0 when its rows give their own
  int cpus = 0;         // CPUs this process may run on (its affinity mask)
  std::string date;     // UTC, ISO 8601: 2026-12-03T06:45:33Z
  std::string command;  // the command line, each argument shell-quoted where needed
};

struct StampOptions {
  int threads = 0;
  // A device the benchmark used: "cuda" fills `gpu` from the NVIDIA driver
  // (/proc/driver/nvidia/gpus/*/information) unless `gpu` is given.
  bool on_gpu = false;
  std::string gpu = {};
  // Empty: this process's own command line (/proc/self/cmdline).
  std::vector<std::string> command = {};
};

RecordStamp make_stamp(const StampOptions& options = {});

nlohmann::json to_json(const RecordStamp& stamp);

// `body` (a JSON object) with the stamp added under "stamp"; Usage error for a non-object
// or one that already has a "stamp".
nlohmann::json stamped(nlohmann::json body, const RecordStamp& stamp);

// stamped(body) as one line (indent < 0) or indented, newline-terminated.
void write_record(std::ostream& out, const nlohmann::json& body, const RecordStamp& stamp, int indent = -1);
// The same into `path`, replaced atomically (atomic_file.hpp).
void write_record(const std::filesystem::path& path, const nlohmann::json& body, const RecordStamp& stamp,
                  int indent = 1);

// Shell quoting of one argument (as in the stamp's command): unchanged when it needs none.
std::string shell_quote(const std::string& arg);

}  // namespace strand::io
