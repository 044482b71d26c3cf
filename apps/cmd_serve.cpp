// strand serve / deploy / predict / endpoint: the serving endpoint and its lifecycle.
//   serve      runs an endpoint in the foreground until SIGTERM or SIGINT (graceful)
//   deploy     starts `strand serve` in the background, records it, returns once /ping answers
//   predict    sends the instances of a .npy file to a deployed endpoint, one line per instance
//   endpoint   list / delete the recorded endpoints
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include <strand/core/error.hpp>
#include <strand/io/atomic_file.hpp>
#include <strand/io/npy.hpp>
#include <strand/serve/client.hpp>
#include <strand/serve/endpoint.hpp>
#include <strand/serve/server.hpp>
#include "apps/commands.hpp"
#include "apps/common.hpp"

extern char** environ;

namespace strand::cli {

namespace fs = std::filesystem;

namespace {

struct ServeArgs {
  std::string model_dir, model_name = "model", host = "127.0.0.1", ready_file;
  int port = 8080, workers = 64, threads = default_threads();
  int64_t max_batch = 0, batch_timeout_us = 1000;
};

// ${STRAND_STATE:-~/.local/state/strand}/endpoints
fs::path default_state_dir() {
  if (const char* s = std::getenv("STRAND_STATE"); s && *s) return fs::path(s);
  const char* home = std::getenv("HOME");
  return fs::path(home && *home ? home : "/tmp") / ".local" / "state" / "strand";
}

serve::EndpointStore store_at(const std::string& state_dir) {
  return serve::EndpointStore(fs::path(state_dir.empty() ? default_state_dir() : fs::path(state_dir)) /
                              "endpoints");
}

// SIGTERM and SIGINT are blocked in every thread and taken by sigwait in the main one, so the
// server's workers never run a handler and shutdown is an ordinary function call.
sigset_t termination_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

void run_serve(const ServeArgs& a, bool port_given) {
  STRAND_CHECK(!a.model_dir.empty(), Usage, "--model-dir is required", "strand serve");
  int port = a.port;
  if (!port_given) {
    if (const char* p = std::getenv("SAGEMAKER_BIND_TO_PORT"); p && *p) {
      char* end = nullptr;
      const long v = std::strtol(p, &end, 10);
      STRAND_CHECK(*end == 0 && v >= 0 && v <= 65535, Usage,
                   std::string("SAGEMAKER_BIND_TO_PORT='") + p + "' is not a port", "strand serve");
      port = int(v);
    }
  }
  const sigset_t signals = termination_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Context ctx = make_context(DeviceArgs{}, a.threads);
  serve::Registry registry(ctx.backend(), a.model_dir, a.model_name);
  serve::Executor executor(serve::BatchOptions{a.max_batch, std::chrono::microseconds(a.batch_timeout_us)});
  serve::Endpoint endpoint(registry, executor);
  serve::ServerOptions opts;
  opts.host = a.host;
  opts.port = port;
  opts.workers = a.workers;
  opts.log = [&ctx](const std::string& line) { ctx.log(line); };
  serve::Server server(endpoint, opts);
  server.start();
  if (!a.ready_file.empty()) io::write_file_atomic(a.ready_file, std::to_string(server.port()) + "\n");
  std::string versions;
  for (const auto& v : registry.versions())
    versions += (versions.empty() ? "" : ",") + std::to_string(v.version);
  ctx.log("serving model '" + registry.name() + "' (versions " + versions + ", default " +
          std::to_string(registry.newest().version) + ") from " + a.model_dir + " on http://" + a.host + ":" +
          std::to_string(server.port()) + " (" + std::to_string(a.workers) + " workers, batching " +
          (executor.options().enabled() ? "up to " + std::to_string(a.max_batch) + " rows / " +
                                              std::to_string(a.batch_timeout_us) + " us"
                                        : std::string("off")) +
          ")");
  int sig = 0;
  sigwait(&signals, &sig);
  ctx.log(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
          ": finishing requests in flight");
  server.stop();
  ctx.log("stopped");
}

void add_serve_options(CLI::App& cmd, ServeArgs& a) {
  cmd.add_option("--model-dir", a.model_dir, "Model directory holding numbered versions (all are served)")
      ->envname("SM_MODEL_DIR");
  cmd.add_option("--model-name", a.model_name, "Name in /v1/models/{name} and tfs-model-name")
      ->capture_default_str();
  cmd.add_option("--host", a.host, "Address to listen on")->capture_default_str();
  cmd.add_option("--workers", a.workers, "Worker threads (each serves one connection at a time)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd.add_option("--threads", a.threads, "CPU threads for inference")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--max-batch", a.max_batch, "Merge concurrent requests into passes of up to N rows (0: off)")
      ->check(CLI::Range(int64_t(0), serve::Executor::kMaxPassRows))
      ->capture_default_str();
  cmd.add_option("--batch-timeout-us", a.batch_timeout_us, "Longest wait for a batch to fill, microseconds")
      ->check(CLI::Range(int64_t(0), int64_t(1000000)))
      ->capture_default_str();
}

struct DeployArgs {
  ServeArgs serve;
  std::string name, state_dir;
  int port = 0;
  int timeout_s = 60;
};

// The end of a failed endpoint's log, which is then removed: a failed deploy leaves no state.
std::string take_log_tail(const fs::path& log) {
  std::string s;
  {
    std::ifstream in(log);
    std::stringstream ss;
    ss << in.rdbuf();
    s = ss.str();
  }
  std::error_code ec;
  fs::remove(log, ec);
  return s.size() > 2000 ? s.substr(s.size() - 2000) : s;
}

void run_deploy(const DeployArgs& a) {
  STRAND_CHECK(!a.serve.model_dir.empty(), Usage, "--model-dir is required", "strand deploy");
  STRAND_CHECK(!a.name.empty(), Usage, "--name is required", "strand deploy");
  serve::EndpointStore store = store_at(a.state_dir);
  if (auto old = store.find(a.name)) {
    STRAND_CHECK(!serve::endpoint_alive(*old), Usage,
                 "endpoint '" + a.name + "' is running (pid " + std::to_string(old->pid) + ", port " +
                     std::to_string(old->port) + "); delete it first",
                 "strand deploy");
  }
  fs::create_directories(store.dir());
  const fs::path log = store.dir() / (a.name + ".log"), ready = store.dir() / (a.name + ".ready");
  fs::remove(ready);
  const std::string model_dir = fs::absolute(a.serve.model_dir).string();
  std::vector<std::string> args = {"strand",
                                   "serve",
                                   "--model-dir",
                                   model_dir,
                                   "--model-name",
                                   a.serve.model_name,
                                   "--host",
                                   a.serve.host,
                                   "--port",
                                   std::to_string(a.port),
                                   "--workers",
                                   std::to_string(a.serve.workers),
                                   "--threads",
                                   std::to_string(a.serve.threads),
                                   "--max-batch",
                                   std::to_string(a.serve.max_batch),
                                   "--batch-timeout-us",
                                   std::to_string(a.serve.batch_timeout_us),
                                   "--ready-file",
                                   ready.string()};
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&files, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&files, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);  // its own session: a terminal's ^C does not reach it
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, "/proc/self/exe", &files, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&files);
  posix_spawnattr_destroy(&attr);
  STRAND_CHECK(rc == 0, Io, std::string("cannot start strand serve: ") + std::strerror(rc), "strand deploy");

  // Ready once the port is written and /ping answers; a child that exits has failed.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(a.timeout_s);
  int port = 0;
  while (true) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      fs::remove(ready);
      throw Error(ErrorKind::Io, "the endpoint exited during start-up; its log:\n" + take_log_tail(log),
                  "strand deploy");
    }
    if (port == 0) {
      std::ifstream in(ready);
      in >> port;
    }
    if (port > 0 && serve::Predictor(a.serve.host, port).ping()) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      fs::remove(ready);
      throw Error(ErrorKind::Io,
                  "the endpoint did not answer /ping within " + std::to_string(a.timeout_s) +
                      " s; its log:\n" + take_log_tail(log),
                  "strand deploy");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  fs::remove(ready);
  serve::EndpointRecord r;
  r.name = a.name;
  r.pid = pid;
  r.start_time = serve::process_start_time(pid).value_or(0);
  r.host = a.serve.host;
  r.port = port;
  r.model_dir = model_dir;
  r.model_name = a.serve.model_name;
  r.log = log.string();
  store.save(r);
  std::cout << "endpoint " << a.name << " at http://" << r.host << ":" << port << " (pid " << pid << ")\n";
}

struct PredictArgs {
  std::string endpoint, file, rows, labels, state_dir;
};

// "A:B" -> [A, B) within [0, n); either end may be left out.
std::pair<int64_t, int64_t> row_range(const std::string& spec, int64_t n) {
  if (spec.empty()) return {0, n};
  const size_t colon = spec.find(':');
  STRAND_CHECK(colon != std::string::npos, Usage, "--rows '" + spec + "' is not A:B", "strand predict");
  auto num = [&](const std::string& s, int64_t dflt) -> int64_t {
    if (s.empty()) return dflt;
    STRAND_CHECK(s.find_first_not_of("0123456789") == std::string::npos && s.size() < 18, Usage,
                 "--rows '" + spec + "' is not A:B with non-negative integers", "strand predict");
    return std::stoll(s);
  };
  const int64_t a = num(spec.substr(0, colon), 0), b = std::min(num(spec.substr(colon + 1), n), n);
  STRAND_CHECK(a < b, Usage,
               "--rows " + spec + " selects no rows of the " + std::to_string(n) + " in the file",
               "strand predict");
  return {a, b};
}

void run_predict(const PredictArgs& a) {
  STRAND_CHECK(!a.endpoint.empty(), Usage, "--endpoint is required", "strand predict");
  const serve::EndpointStore store = store_at(a.state_dir);
  const auto rec = store.find(a.endpoint);
  STRAND_CHECK(rec.has_value(), Usage, "no endpoint named '" + a.endpoint + "' (strand endpoint list)",
               store.dir().string());
  STRAND_CHECK(serve::endpoint_alive(*rec), Io,
               "endpoint '" + a.endpoint + "' (pid " + std::to_string(rec->pid) +
                   ") is not running; its log: " + rec->log,
               "strand predict");
  const serve::Predictor predictor(rec->host, rec->port);
  const serve::ServedSignature sig = predictor.signature(rec->model_name);
  const io::Array<float> x = io::read_npy_f32(a.file);
  // Rows of instances, or the whole file one instance (a single image); each is sent in the
  // file's own shape, so the endpoint's rule tells [H,W,C] from [C,H,W].
  const int64_t size = sig.input.numel();
  const bool rows_of_instances = x.shape.rank() >= 2 && x.shape.drop_batch().numel() == size;
  STRAND_CHECK(rows_of_instances || x.shape.numel() == size, Shape,
               "expected one instance or rows of instances of " + std::to_string(size) +
                   " values (the model takes " + sig.input.str() + " per instance), got " + x.shape.str(),
               a.file);
  const Shape instance = rows_of_instances ? x.shape.drop_batch() : x.shape;
  const int64_t n = rows_of_instances ? x.shape[0] : 1;
  const auto [first, last] = row_range(a.rows, n);
  std::optional<io::Array<int32_t>> labels;
  if (!a.labels.empty()) {
    labels = io::read_npy_i32(a.labels);
    STRAND_CHECK(labels->shape.rank() >= 1 && labels->shape[0] == n && labels->shape.numel() == n, Shape,
                 "expected " + std::to_string(n) + " labels (one per instance of " + a.file + "), got " +
                     labels->shape.str(),
                 a.labels);
  }
  const auto probs = predictor.predict(x.data.data() + first * size, last - first, instance);
  int64_t matched = 0;
  for (int64_t r = first; r < last; ++r) {
    const auto& p = probs[size_t(r - first)];
    const int64_t pred = std::max_element(p.begin(), p.end()) - p.begin();
    if (labels) {
      const int32_t label = labels->data[size_t(r)];
      matched += pred == label;
      std::printf("prediction: %lld, label: %d, matched: %s\n", (long long)pred, label,
                  pred == label ? "True" : "False");
    } else {
      std::printf("prediction: %lld\n", (long long)pred);
    }
  }
  if (labels) std::fprintf(stderr, "%lld of %lld matched\n", (long long)matched, (long long)(last - first));
}

// Sends SIGTERM (the endpoint finishes its requests in flight) and waits for the process to go.
void run_delete(const std::string& name, const std::string& state_dir, int timeout_s) {
  serve::EndpointStore store = store_at(state_dir);
  const auto rec = store.find(name);
  STRAND_CHECK(rec.has_value(), Usage, "no endpoint named '" + name + "' (strand endpoint list)",
               store.dir().string());
  if (serve::endpoint_alive(*rec)) {
    kill(pid_t(rec->pid), SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    while (serve::endpoint_alive(*rec) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (serve::endpoint_alive(*rec)) {
      std::cerr << "strand: endpoint " << name << " did not stop within " << timeout_s << " s; killing it\n";
      kill(pid_t(rec->pid), SIGKILL);
      while (serve::endpoint_alive(*rec)) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::error_code ec;
  if (!rec->log.empty()) fs::remove(rec->log, ec);
  store.remove(name);
  std::cout << "deleted endpoint " << name << "\n";
}

void run_list(const std::string& state_dir) {
  const serve::EndpointStore store = store_at(state_dir);
  for (const auto& r : store.list()) {
    std::printf("%s\thttp://%s:%d\tpid %lld\t%s\t%s\n", r.name.c_str(), r.host.c_str(), r.port,
                (long long)r.pid, serve::endpoint_alive(r) ? "running" : "stopped", r.model_dir.c_str());
  }
}

}  // namespace

void add_serve_commands(CLI::App& app) {
  auto s = std::make_shared<ServeArgs>();
  CLI::App* serve = app.add_subcommand(
      "serve", "Serve exported models over HTTP (TF Serving REST API and SageMaker /invocations)");
  add_serve_options(*serve, *s);
  CLI::Option* port = serve
                          ->add_option("--port", s->port,
                                       "Port (default: $SAGEMAKER_BIND_TO_PORT, else 8080; 0: any free port)")
                          ->check(CLI::Range(0, 65535));
  serve->add_option("--ready-file", s->ready_file, "Write the port to this file once listening");
  serve->callback([s, port] { run_serve(*s, port->count() > 0); });

  auto d = std::make_shared<DeployArgs>();
  CLI::App* deploy =
      app.add_subcommand("deploy", "Start an endpoint in the background; returns once it answers /ping");
  add_serve_options(*deploy, d->serve);
  deploy->add_option("--name", d->name, "Endpoint name");
  deploy->add_option("--port", d->port, "Port (default: any free port)")->check(CLI::Range(0, 65535));
  deploy->add_option("--state-dir", d->state_dir,
                     "Where endpoints are recorded (default: ${STRAND_STATE:-~/.local/state/strand})");
  deploy->add_option("--timeout", d->timeout_s, "Seconds to wait for /ping")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  deploy->callback([d] { run_deploy(*d); });

  auto p = std::make_shared<PredictArgs>();
  CLI::App* predict = app.add_subcommand(
      "predict", "Send the instances of a .npy file to a deployed endpoint; one line per instance");
  predict->add_option("--endpoint", p->endpoint, "Endpoint name (strand deploy --name)");
  predict
      ->add_option("file", p->file,
                   "Images, .npy: [rows, instance...] or one instance, in the model's shape: flat, "
                   "[H,W] (one channel), [H,W,C] or [C,H,W]")
      ->required();
  predict->add_option("--rows", p->rows, "Rows A:B to send (default: all)");
  predict->add_option("--labels", p->labels, "Labels .npy: print label and matched per row");
  predict->add_option("--state-dir", p->state_dir,
                      "Where endpoints are recorded (default: ${STRAND_STATE:-~/.local/state/strand})");
  predict->callback([p] { run_predict(*p); });

  CLI::App* endpoint = app.add_subcommand("endpoint", "List or delete deployed endpoints");
  endpoint->require_subcommand(1);
  auto state = std::make_shared<std::string>();
  CLI::App* list =
      endpoint->add_subcommand("list", "One line per endpoint: name, URL, pid, running or stopped, model");
  list->add_option("--state-dir", *state,
                   "Where endpoints are recorded (default: ${STRAND_STATE:-~/.local/state/strand})");
  list->callback([state] { run_list(*state); });
  auto del_name = std::make_shared<std::string>();
  auto del_timeout = std::make_shared<int>(60);
  CLI::App* del = endpoint->add_subcommand(
      "delete", "Stop an endpoint gracefully (requests in flight finish) and forget it");
  del->add_option("name", *del_name, "Endpoint name")->required();
  del->add_option("--state-dir", *state,
                  "Where endpoints are recorded (default: ${STRAND_STATE:-~/.local/state/strand})");
  del->add_option("--timeout", *del_timeout, "Seconds to wait before killing it")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  del->callback([state, del_name, del_timeout] { run_delete(*del_name, *state, *del_timeout); });
}

}  // namespace strand::cli
