// strand bench serve: the serving endpoint under load, next to the in-process rate of the same
// model. The endpoint runs in this process on a free port; client threads send pre-encoded
// SageMaker simplified-JSON bodies over keep-alive connections (POST /invocations) for a fixed
// time per cell, with and without batching. Also times the request parsers on the same images:
// the simplified-JSON fast path, the general path (simdjson DOM, the body as {"instances": ...})
// and nlohmann::json, which is why the general parser is simdjson.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <strand/core/error.hpp>
#include <strand/io/model_file.hpp>
#include <strand/io/record.hpp>
#include <strand/models/models.hpp>
#include <strand/serve/endpoint.hpp>
#include <strand/serve/server.hpp>
#include "apps/commands.hpp"
#include "apps/common.hpp"

namespace strand::cli {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct BenchServeArgs {
  std::string model_dir, data;
  int threads = default_threads(), workers = 64;
  double seconds = 3;
  std::vector<int> connections = {1, 8, 64};
  std::vector<int64_t> images = {1, 50};
  int64_t max_batch = 64, batch_timeout_us = 2000;
  bool json = false;
};

struct Cell {
  std::string batching;
  int64_t images = 0;
  int connections = 0;
  int64_t requests = 0, failures = 0;
  double seconds = 0, p50_ms = 0, p99_ms = 0;
  double in_process = 0;  // Model::predict images/s at `images` rows per pass, measured just before
  // CPU time per image: the server's (this process's, less the client threads') while serving,
  // and this process's in-process; their ratio is what HTTP and parsing cost the server in CPU.
  double cpu_us_served = 0, cpu_us_in_process = 0;
  // The load generator's CPU per image (the client threads': sending, reading the answers). It
  // shares the two cores, so it lowers the served rate, but it is not the server's cost.
  double cpu_us_client = 0;
  double cpu_overhead() const { return cpu_us_served / cpu_us_in_process - 1; }
  double rps() const { return double(requests) / seconds; }
  double ips() const { return rps() * double(images); }
};

// `count` simplified-JSON bodies of `rows` images each, walking through the data.
std::vector<std::string> make_bodies(const io::Dataset& d, int64_t rows, int count) {
  const int64_t size = d.sample_shape.numel();
  std::vector<std::string> bodies;
  char buf[32];
  for (int b = 0; b < count; ++b) {
    std::string s = "[";
    for (int64_t r = 0; r < rows; ++r) {
      const float* x = d.images.data() + ((b * rows + r) % d.size()) * size;
      s += r ? ",[" : "[";
      for (int64_t i = 0; i < size; ++i) {
        if (i) s += ',';
        s.append(buf, std::to_chars(buf, buf + sizeof(buf), x[i]).ptr);
      }
      s += ']';
    }
    bodies.push_back(s + "]");
  }
  return bodies;
}

// The load generator's side of one keep-alive connection, kept cheap because it shares the
// cores with the server: each request is sent as one pre-encoded buffer (request line, headers
// and body) in one send(), and the answer is read with a minimal HTTP/1.1 response reader
// (status line, Content-Length, Connection: close). httplib's client would copy the body into a
// Request object and build its headers for every request.
class RawClient {
 public:
  explicit RawClient(int port) : port_(port) {}
  ~RawClient() { close_socket(); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  // The wire bytes of POST /invocations with `body`.
  static std::string encode(int port, const std::string& body) {
    return "POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
           "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + body;
  }

  // Sends `request` and reads the whole answer; the HTTP status, or -1 when the connection
  // failed (it is reopened for the next request).
  int post(const std::string& request) {
    if (fd_ < 0 && !connect_socket()) return -1;
    for (size_t sent = 0; sent < request.size();) {
      const ssize_t n = ::send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return fail();
      sent += size_t(n);
    }
    // Headers: read until the blank line.
    size_t end;
    while ((end = in_.find("\r\n\r\n")) == std::string::npos)
      if (!receive()) return fail();
    const std::string_view head(in_.data(), end);
    int status = -1;
    if (head.size() < 12 || head.substr(0, 5) != "HTTP/" ||
        std::from_chars(head.data() + 9, head.data() + 12, status).ec != std::errc())
      return fail();
    size_t length = 0;
    bool close = false;
    for (size_t line = head.find("\r\n"); line != std::string_view::npos;) {
      const size_t next = head.find("\r\n", line + 2);
      const std::string_view h =
          head.substr(line + 2, next == std::string_view::npos ? std::string_view::npos : next - line - 2);
      const std::string name = lower(h.substr(0, h.find(':')));
      const std::string_view value =
          h.find(':') == std::string_view::npos ? std::string_view() : h.substr(h.find(':') + 1);
      const size_t digits = value.find_first_not_of(' ');
      if (name == "content-length" && digits != std::string_view::npos)
        std::from_chars(value.data() + digits, value.data() + value.size(), length);
      if (name == "connection" && lower(value).find("close") != std::string::npos) close = true;
      line = next;
    }
    while (in_.size() < end + 4 + length)
      if (!receive()) return fail();
    in_.erase(0, end + 4 + length);
    if (close) close_socket();
    return status;
  }

  // Closes the connection (the next post() opens one).
  void disconnect() { close_socket(); }

 private:
  static std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
    return out;
  }
  bool connect_socket() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return false;
    const int yes = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
      close_socket();
      return false;
    }
    return true;
  }
  bool receive() {
    char buf[16384];
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    in_.append(buf, size_t(n));
    return true;
  }
  int fail() {
    close_socket();
    return -1;
  }
  void close_socket() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    in_.clear();
  }

  int port_;
  int fd_ = -1;
  std::string in_;  // bytes received and not yet consumed
};

// CPU seconds used by this process (all threads), or by the calling thread.
double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Drives the endpoint from `conns` keep-alive connections and measures Model::predict at the
// same rows per pass, in alternating slices: served for `slice`, then in-process for half as
// long while the clients wait, until `seconds` of serving. The background load of a shared
// machine drifts within seconds; alternating lets both rates see the same load. A request
// counts only if it starts and ends within one serving slice (in-flight requests are dropped
// at a slice's end, and each slice starts with idle connections), which can only lower the
// served rate. Connections are closed between serving slices. The CPU time of a serving slice
// runs until its last request is answered, and counts the images of every request started in it.
Cell measure(int port, const std::vector<std::string>& bodies, Model& model, const io::Dataset& d,
             int64_t images, int conns, double seconds) {
  using Seconds = std::chrono::duration<double>;
  constexpr double kSlice = 0.5;
  std::atomic<uint64_t> phase{0};  // odd: serving slice number (phase + 1) / 2; even: paused
  std::atomic<int> busy{0};        // clients with a request in flight
  std::atomic<bool> quit{false};
  std::vector<std::vector<double>> lat{size_t(conns)};
  std::vector<int64_t> fails(size_t(conns), 0);
  std::atomic<int64_t> answered{0};       // 200s of requests started in serving slices
  std::atomic<int64_t> client_cpu_ns{0};  // the client threads' CPU time in those requests
  std::vector<std::string> requests;
  for (const std::string& b : bodies) requests.push_back(RawClient::encode(port, b));
  std::vector<std::thread> threads;
  for (int c = 0; c < conns; ++c) {
    threads.emplace_back([&, c] {
      RawClient cl(port);
      for (size_t i = size_t(c); !quit; ++i) {
        const uint64_t p = phase.load();
        if (p % 2 == 0) {  // paused: sleep until the phase changes, off the cores
          // Idle keep-alive connections cost the server CPU (httplib polls each one every
          // 10 ms): closed, they cannot slow the in-process slice.
          cl.disconnect();
          phase.wait(p);
          continue;
        }
        ++busy;
        if (phase.load() != p) {  // the slice ended in between: do not start
          --busy;
          continue;
        }
        const auto t0 = Clock::now();
        const double c0 = thread_cpu_seconds();
        const int status = cl.post(requests[i % requests.size()]);
        client_cpu_ns.fetch_add(int64_t(1e9 * (thread_cpu_seconds() - c0)), std::memory_order_relaxed);
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        const bool counted = phase.load() == p;
        --busy;
        if (status != 200)
          ++fails[size_t(c)];
        else
          answered.fetch_add(1, std::memory_order_relaxed);
        if (status == 200 && counted) lat[size_t(c)].push_back(ms);
      }
    });
  }
  std::vector<float> probs(size_t(images * model.classes()));
  const int64_t size = d.sample_shape.numel(), starts = d.size() - images + 1;
  int64_t passes = 0;
  double served = 0, in_process = 0, cpu_served = 0, cpu_in_process = 0;
  model.predict(d.images.data(), images, probs.data());  // warm-up: buffers sized
  while (served < seconds - 1e-9) {
    const double slice = std::min(kSlice, seconds - served);
    const auto t0 = Clock::now();
    const double c0 = process_cpu_seconds();
    phase.fetch_add(1);  // serve
    phase.notify_all();
    std::this_thread::sleep_for(Seconds(slice));
    phase.fetch_add(1);  // pause: requests still in flight do not count
    served += Seconds(Clock::now() - t0).count();
    while (busy.load() != 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
    // The server is idle now (no request in flight), so the model is free for this thread.
    const double c1 = process_cpu_seconds();
    cpu_served += c1 - c0;
    const auto t1 = Clock::now();
    while (Seconds(Clock::now() - t1).count() < slice / 2) {
      model.predict(d.images.data() + ((passes * images) % starts) * size, images, probs.data());
      ++passes;
    }
    in_process += Seconds(Clock::now() - t1).count();
    cpu_in_process += process_cpu_seconds() - c1;
  }
  quit = true;
  phase.fetch_add(1);
  phase.notify_all();
  for (auto& t : threads) t.join();
  Cell cell;
  cell.images = images;
  cell.connections = conns;
  cell.seconds = served;
  cell.in_process = double(passes * images) / in_process;
  cell.cpu_us_served =
      1e6 * (cpu_served - 1e-9 * double(client_cpu_ns.load())) / double(answered.load() * images);
  cell.cpu_us_in_process = 1e6 * cpu_in_process / double(passes * images);
  cell.cpu_us_client = 1e-3 * double(client_cpu_ns.load()) / double(answered.load() * images);
  std::vector<double> all;
  for (int c = 0; c < conns; ++c) {
    all.insert(all.end(), lat[size_t(c)].begin(), lat[size_t(c)].end());
    cell.failures += fails[size_t(c)];
  }
  std::sort(all.begin(), all.end());
  cell.requests = int64_t(all.size());
  if (!all.empty()) {
    cell.p50_ms = all[all.size() / 2];
    cell.p99_ms = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  }
  return cell;
}

// Microseconds to parse `body` with f, best of a few timed loops.
template <class F>
double parse_us(const std::string& body, F f) {
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = Clock::now();
    for (int i = 0; i < 20; ++i) f(body);
    best = std::min(best, std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / 20);
  }
  return best;
}

void run_bench_serve(const BenchServeArgs& a) {
  Context ctx = make_context(DeviceArgs{}, a.threads);
  // The model: an export, or mnist_cnn with seeded weights exported to a temporary directory
  // (throughput does not depend on the weights).
  fs::path dir = a.model_dir, tmp;
  if (dir.empty()) {
    tmp = fs::temp_directory_path() / ("strand-bench-serve-" + std::to_string(::getpid()));
    fs::remove_all(tmp);
    Model m(ctx.backend(), models::mnist_cnn());
    m.init(42);
    io::export_model(tmp, {m.arch(), io::default_signature(m), m.get_params(), {}});
    dir = tmp;
  }
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      if (!p.empty()) fs::remove_all(p, ec);
    }
  } cleanup{tmp};
  serve::Registry registry(ctx.backend(), dir, "model");
  const fs::path data_dir = a.data.empty() ? default_mnist_cache() : fs::path(a.data);
  STRAND_CHECK(fs::exists(data_dir), Usage,
               "no MNIST at " + data_dir.string() + " (scripts/setup, or --data)", "strand bench serve");
  const io::Dataset test = io::to_f32(load_split(ctx, data_dir, io::Split::eval));  // requests carry floats

  // Parser cost on the largest request.
  const std::string big = make_bodies(test, a.images.back(), 1)[0];
  const serve::InstanceSpec& spec = registry.newest().spec;
  serve::JsonParser parser;  // reused, as the endpoint's pool does
  const std::string wrapped = "{\"instances\":" + big + "}";
  const double fast_us =
      parse_us(big, [&](const std::string& b) { return serve::parse_sagemaker_json(b, spec, parser).rows; });
  const double simd_us = parse_us(
      wrapped, [&](const std::string& b) { return serve::parse_sagemaker_json(b, spec, parser).rows; });
  const double nl_us = parse_us(big, [](const std::string& b) { return nlohmann::json::parse(b).size(); });

  std::vector<Cell> cells;
  for (bool batching : {false, true}) {
    serve::Executor executor(
        batching ? serve::BatchOptions{a.max_batch, std::chrono::microseconds(a.batch_timeout_us)}
                 : serve::BatchOptions{});
    serve::Endpoint endpoint(registry, executor);
    serve::ServerOptions opts;
    opts.port = 0;
    opts.workers = a.workers;
    serve::Server server(endpoint, opts);
    server.start();
    for (int64_t n : a.images) {
      const auto bodies = make_bodies(test, n, 16);
      for (int c : a.connections) {
        Cell cell = measure(server.port(), bodies, *registry.newest().model, test, n, c, a.seconds);
        cell.batching = batching ? "max " + std::to_string(a.max_batch) + ", " +
                                       std::to_string(a.batch_timeout_us) + " us"
                                 : "off";
        if (!a.json)
          std::fprintf(stderr, "batching %s, %lld image(s), %d connection(s): %.0f req/s\n",
                       cell.batching.c_str(), (long long)n, c, cell.rps());
        cells.push_back(cell);
      }
    }
    server.stop();
  }

  if (a.json) {
    nlohmann::json j;
    j["threads"] = a.threads;
    j["body_bytes"] = big.size();
    j["parse_us"] = {{"fast_path", fast_us}, {"simdjson", simd_us}, {"nlohmann", nl_us}};
    for (const Cell& c : cells)
      j["cells"].push_back({{"batching", c.batching},
                            {"images", c.images},
                            {"connections", c.connections},
                            {"requests_per_sec", c.rps()},
                            {"images_per_sec", c.ips()},
                            {"p50_ms", c.p50_ms},
                            {"p99_ms", c.p99_ms},
                            {"failures", c.failures},
                            {"in_process_images_per_sec", c.in_process},
                            {"cpu_us_per_image_served", c.cpu_us_served},
                            {"cpu_us_per_image_in_process", c.cpu_us_in_process},
                            {"cpu_us_per_image_client", c.cpu_us_client}});
    io::write_record(std::cout, j, io::make_stamp({.threads = a.threads}));
    return;
  }
  std::printf(
      "%d inference thread(s); parsing a %lld-image body (%zu bytes): fast path %.0f us (%.0f MB/s), "
      "simdjson DOM %.0f us (%.0f MB/s), nlohmann::json %.0f us (%.0f MB/s)\n\n",
      a.threads, (long long)a.images.back(), big.size(), fast_us, double(big.size()) / fast_us, simd_us,
      double(big.size()) / simd_us, nl_us, double(big.size()) / nl_us);
  std::printf(
      "| batching | images/request | connections | requests/s | images/s | in-process images/s | "
      "served/in-process "
      "| CPU us/image served | in-process | HTTP+parsing CPU | client CPU | p50 ms | p99 ms | failed |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Cell& c : cells)
    std::printf(
        "| %s | %lld | %d | %.0f | %.0f | %.0f | %.0f%% | %.1f | %.1f | %+.1f%% | %.1f%% | %.2f | %.2f | "
        "%lld |\n",
        c.batching.c_str(), (long long)c.images, c.connections, c.rps(), c.ips(), c.in_process,
        100 * c.ips() / c.in_process, c.cpu_us_served, c.cpu_us_in_process, 100 * c.cpu_overhead(),
        100 * c.cpu_us_client / c.cpu_us_in_process, c.p50_ms, c.p99_ms, (long long)c.failures);
}

}  // namespace

void add_bench_serve_command(CLI::App& bench) {
  auto a = std::make_shared<BenchServeArgs>();
  CLI::App* cmd =
      bench.add_subcommand("serve", "Serving endpoint requests/s and p50/p99 latency vs the in-process rate");
  cmd->add_option("--model-dir", a->model_dir, "Model to serve (default: mnist_cnn with seeded weights)");
  cmd->add_option("--data", a->data, "MNIST directory for request images (default: the scripts/setup cache)");
  cmd->add_option("--threads", a->threads, "CPU threads for inference")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--workers", a->workers, "Server worker threads")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--seconds", a->seconds, "Seconds per measurement")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--connections", a->connections, "Concurrent connections to try")
      ->check(CLI::Range(1, 512))
      ->capture_default_str();
  cmd->add_option("--images", a->images, "Images per request to try")
      ->check(CLI::Range(int64_t(1), int64_t(1000)))
      ->capture_default_str();
  cmd->add_option("--max-batch", a->max_batch, "Batching: rows per merged pass")
      ->check(CLI::Range(int64_t(2), serve::Executor::kMaxPassRows))
      ->capture_default_str();
  cmd->add_option("--batch-timeout-us", a->batch_timeout_us,
                  "Batching: longest wait for a batch, microseconds")
      ->check(CLI::Range(int64_t(0), int64_t(1000000)))
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "Print one JSON object");
  cmd->callback([a] { run_bench_serve(*a); });
}

}  // namespace strand::cli
