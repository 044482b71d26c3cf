// Context: what a piece of strand needs from its surroundings — the backend that runs the
// kernels, a seed, where log lines go, and who this process is (rank/world/host). There are no
// globals: a test can hold several contexts (several "ranks") in one process.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <strand/core/backend.hpp>

namespace strand {

// Who this process is in its job (job/identity.hpp discovers it from the launcher).
struct Identity {
  int rank = 0;
  int world = 1;
  std::string host;    // empty: not shown in log lines
  int local_rank = 0;  // among the job's processes on this node, as the launcher numbers them
  int local_size = 1;
  // "rank 1/4 host-a" — for error locations; empty for a single process without a host.
  std::string where() const;
};

class Context {
 public:
  using LogSink = std::function<void(std::string_view line)>;

  // Log lines go to stderr unless a sink is given.
  explicit Context(std::unique_ptr<Backend> backend, Identity id = {}, LogSink sink = {});

  Backend& backend() const { return *backend_; }
  const Identity& identity() const { return id_; }

  // Writes "[strand rank 1/4 host-a] message" (rank part only when world > 1).
  void log(std::string_view message) const;
  // "rank 1/4 host-a" — for error locations; empty for a single process.
  std::string where() const;

 private:
  std::unique_ptr<Backend> backend_;
  Identity id_;
  LogSink sink_;
};

}  // namespace strand
