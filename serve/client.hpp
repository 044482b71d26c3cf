// Client side of a serving endpoint:
//   Predictor      sends instances to a running endpoint (POST /invocations, SageMaker's
//                  simplified JSON) and returns one probability vector per instance; reads
//                  what the endpoint's model takes (its metadata).
//   EndpointStore  the endpoints `strand deploy` started: one JSON record per name in a state
//                  directory (pid, its start time, host, port, model), written atomically.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <strand/core/tensor.hpp>

namespace strand::serve {

// A served model's signature as its metadata reports it.
struct ServedSignature {
  Shape input;  // per instance: channels-last {H,W,C}, or flat {F} (exports from before model files)
  int64_t classes = 0;
};

class Predictor {
 public:
  Predictor(std::string host, int port, std::chrono::seconds timeout = std::chrono::seconds(60));

  // GET /ping answered 200.
  bool ping() const;
  // GET /v1/models/{model}/metadata. Errors as predict's.
  ServedSignature signature(const std::string& model) const;
  // x: `rows` instances of shape `instance`, each sent as a list nested in that shape (the
  // endpoint tells channels-last from channels-first by it) -> [rows][classes]. Sent in
  // requests of at most `rows_per_request` rows and about 1 MiB, well under the 6 MiB body
  // limit. Io error for a refused connection or a non-200 answer (with the endpoint's
  // message), Format error for an answer that is not predictions.
  std::vector<std::vector<float>> predict(const float* x, int64_t rows, const Shape& instance,
                                          int64_t rows_per_request = 200) const;

 private:
  std::string host_;
  int port_;
  std::chrono::seconds timeout_;
};

struct EndpointRecord {
  std::string name;
  int64_t pid = 0;
  int64_t start_time =
      0;  // the process's start time (/proc/PID/stat), so a reused pid is not mistaken for it
  std::string host;
  int port = 0;
  std::string model_dir, model_name;
  std::string log;  // the endpoint's stderr
};

class EndpointStore {
 public:
  explicit EndpointStore(std::filesystem::path dir);  // created on first save

  const std::filesystem::path& dir() const { return dir_; }
  void save(const EndpointRecord& record);
  std::optional<EndpointRecord> find(const std::string& name) const;
  std::vector<EndpointRecord> list() const;  // sorted by name
  void remove(const std::string& name);

 private:
  std::filesystem::path path(const std::string& name) const;
  std::filesystem::path dir_;
};

// The start time of process `pid` in clock ticks since boot; nullopt when it does not exist or
// has exited (a zombie).
std::optional<int64_t> process_start_time(int64_t pid);
// Whether the process a record names still runs (same pid and start time).
bool endpoint_alive(const EndpointRecord& record);

}  // namespace strand::serve
