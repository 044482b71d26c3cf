// strand bench ps: push+pull throughput of the parameter server per chunk size, next to raw
// ZeroMQ moving the same bytes over the same kind of sockets in the same run.
//
// One round moves a buffer of max(chunk, --round-bytes) bytes cut into chunks: every chunk is
// pushed (the gradient) and then pulled (the parameters), all in flight at once, as
// PsStrategy does in a step. `ps`: a Worker against a Server thread (one worker, so the server
// applies SGD to each chunk on arrival; --mode sync adds the round's averaging copy).
// `zmq`: a DEALER sending each chunk as a frame without a copy to a ROUTER thread that
// acknowledges it, then asking for each chunk and receiving it (sent without a copy from the
// server's buffer, copied into place as a pull is). Throughput counts pushed + pulled bytes.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <strand/core/context.hpp>
#include <strand/core/error.hpp>
#include <strand/io/record.hpp>
#include <strand/ps/server.hpp>
#include <strand/ps/worker.hpp>
#include "apps/commands.hpp"

namespace strand::cli {

namespace {

struct PsBenchArgs {
  int64_t min_bytes = 64 << 10, max_bytes = int64_t(64) << 20, factor = 4;
  int64_t round_bytes = int64_t(16) << 20;
  double seconds = 0.6;  // per size and implementation, over 3 alternating rounds
  std::string mode = "async";
  bool json = false;
};

using Clock = std::chrono::steady_clock;

// Rounds of `round` until `seconds` have passed (at least 3, after one untimed): seconds per round.
template <class F>
double time_rounds(F&& round, double seconds) {
  round();
  int n = 0;
  const auto t0 = Clock::now();
  double t = 0;
  while (n < 3 || t < seconds) {
    round();
    ++n;
    t = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  return t / n;
}

// The raw-ZeroMQ peer: acknowledges "push" frames, answers "pull" requests from its buffer.
class RawServer {
 public:
  RawServer(int64_t chunk_bytes, int64_t chunks)
      : chunk_(chunk_bytes),
        data_(size_t(chunk_bytes * chunks), 1),
        router_(ctx_, ZMQ_ROUTER, "raw ZeroMQ peer"),
        waker_(ctx_, "raw ZeroMQ peer") {
    router_.configure_data(size_t(chunk_bytes));
    endpoint_ = router_.bind("tcp://127.0.0.1:0");
    thread_ = std::thread([this] { loop(); });
  }
  ~RawServer() {
    stop_ = true;
    waker_.notify();
    thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }

 private:
  void loop() {
    std::vector<ps::Message> parts;
    while (!stop_) {
      zmq_pollitem_t items[2] = {{waker_.socket().raw(), 0, ZMQ_POLLIN, 0},
                                 {router_.raw(), 0, ZMQ_POLLIN, 0}};
      zmq_poll(items, 2, 100);
      bool truncated = false;
      while (router_.recv(parts, 3, truncated)) {
        // parts: identity, request (1 byte kind + 4 byte chunk index), [payload]
        if (parts.size() < 2 || parts[1].size() != 5) continue;
        uint32_t index = 0;
        std::memcpy(&index, parts[1].data() + 1, 4);
        std::vector<ps::Message> reply;
        reply.push_back(std::move(parts[0]));
        reply.push_back(std::move(parts[1]));
        if (char(reply[1].data()[0]) == 'G')
          reply.push_back(
              ps::Message::borrow(data_.data() + int64_t(index) * chunk_, size_t(chunk_), release_));
        router_.send(reply);
      }
    }
    release_->wait();
  }
  int64_t chunk_;
  std::vector<char> data_;
  std::shared_ptr<ps::Release> release_ = std::make_shared<ps::Release>();
  ps::ZmqContext ctx_;
  ps::Socket router_;
  ps::Waker waker_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

double raw_round_seconds(int64_t chunk_bytes, int64_t chunks, double seconds) {
  RawServer server(chunk_bytes, chunks);
  ps::ZmqContext ctx;
  ps::Socket s(ctx, ZMQ_DEALER, "raw ZeroMQ client");
  s.configure_data(size_t(chunk_bytes));
  s.connect(server.endpoint());
  std::vector<char> grads(size_t(chunk_bytes * chunks), 2), params(grads.size());
  auto release = std::make_shared<ps::Release>();
  auto round = [&] {
    for (char kind : {'P', 'G'})
      for (uint32_t i = 0; i < uint32_t(chunks); ++i) {
        std::vector<ps::Message> parts;
        char req[5] = {kind};
        std::memcpy(req + 1, &i, 4);
        parts.emplace_back(req, 5);
        if (kind == 'P')
          parts.push_back(
              ps::Message::borrow(grads.data() + int64_t(i) * chunk_bytes, size_t(chunk_bytes), release));
        s.send(parts);
      }
    std::vector<ps::Message> parts;
    for (int64_t got = 0; got < 2 * chunks;) {
      zmq_pollitem_t item = {s.raw(), 0, ZMQ_POLLIN, 0};
      zmq_poll(&item, 1, 1000);
      bool truncated = false;
      while (s.recv(parts, 2, truncated)) {
        ++got;
        if (parts.size() == 2) {
          uint32_t i = 0;
          std::memcpy(&i, parts[0].data() + 1, 4);
          std::memcpy(params.data() + int64_t(i) * chunk_bytes, parts[1].data(), parts[1].size());
        }
      }
    }
    release->wait();
  };
  return time_rounds(round, seconds);
}

double ps_round_seconds(int64_t chunk_bytes, int64_t chunks, double seconds, const std::string& mode) {
  const Context ctx(make_cpu_backend(1), {}, [](std::string_view) {});
  const int64_t floats = chunk_bytes / 4 * chunks;
  const uint64_t token = ps::random_token();
  ps::ServerOptions so;
  so.token = token;
  so.map = ps::ShardMap::build(floats, chunk_bytes, 1);
  so.consistency = ps::Consistency::parse(mode);
  ps::Server server(ctx, so);
  ps::WorkerOptions wo;
  wo.servers = {server.endpoint()};
  wo.token = token;
  wo.map = so.map;
  ps::Worker worker(ctx, wo);
  std::vector<float> params(size_t(floats), 0.5f), grads(size_t(floats), 1e-3f);
  const OptimizerConfig sgd{.kind = OptimizerKind::Sgd};
  worker.init(params.data(), sgd, OptimizerState{.kind = OptimizerKind::Sgd, .step = 0, .slots = {}});
  int64_t clock = 0;
  auto round = [&] {
    std::vector<ps::Ticket> tickets;
    for (uint32_t i = 0; i < uint32_t(chunks); ++i)
      tickets.push_back(worker.push(i, grads.data() + int64_t(i) * chunk_bytes / 4, clock, 1e-3f));
    for (uint32_t i = 0; i < uint32_t(chunks); ++i)
      tickets.push_back(worker.pull(i, params.data() + int64_t(i) * chunk_bytes / 4, clock + 1));
    for (auto& t : tickets) t.wait();
    ++clock;
  };
  return time_rounds(round, seconds);
}

void run_bench_ps(const PsBenchArgs& a) {
  const std::string where = "strand bench ps";
  STRAND_CHECK(a.min_bytes >= 4 && a.min_bytes % 4 == 0 && a.min_bytes <= a.max_bytes && a.factor >= 2, Usage,
               "need 4 <= --min-bytes <= --max-bytes (multiples of 4) and --factor >= 2", where);
  ps::Consistency::parse(a.mode);
  struct Row {
    std::string impl;
    int64_t bytes;
    double gbps;
  };
  std::vector<Row> rows;
  for (int64_t bytes = a.min_bytes; bytes <= a.max_bytes; bytes *= a.factor) {
    const int64_t chunks = std::max<int64_t>(1, a.round_bytes / bytes);
    const double moved = 2.0 * double(bytes * chunks);
    // Alternating rounds, the best of each counts: a shared machine's load changes hit both alike.
    constexpr int kRounds = 3;
    double ps = 1e30, raw = 1e30;
    for (int r = 0; r < kRounds; ++r) {
      ps = std::min(ps, ps_round_seconds(bytes, chunks, a.seconds / kRounds, a.mode));
      raw = std::min(raw, raw_round_seconds(bytes, chunks, a.seconds / kRounds));
    }
    rows.push_back({"ps", bytes, moved / ps / 1e9});
    rows.push_back({"zmq", bytes, moved / raw / 1e9});
  }
  if (a.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const Row& r : rows) out.push_back({{"impl", r.impl}, {"bytes", r.bytes}, {"gbps", r.gbps}});
    io::write_record(std::cout, {{"mode", a.mode}, {"rows", out}}, io::make_stamp(), 1);
    return;
  }
  std::printf(
      "# strand bench ps: push+pull over tcp://127.0.0.1, %s server, GB/s = 1e9 bytes/s pushed + pulled\n",
      a.mode.c_str());
  std::printf("# %12s  %8s  %8s  %6s\n", "chunk (B)", "ps GB/s", "zmq GB/s", "ps/zmq");
  for (size_t i = 0; i + 1 < rows.size(); i += 2)
    std::printf("  %12lld  %8.3f  %8.3f  %5.0f%%\n", (long long)rows[i].bytes, rows[i].gbps, rows[i + 1].gbps,
                100 * rows[i].gbps / rows[i + 1].gbps);
}

}  // namespace

void add_bench_ps_command(CLI::App& bench) {
  auto a = std::make_shared<PsBenchArgs>();
  CLI::App* cmd = bench.add_subcommand(
      "ps", "Parameter-server push+pull throughput per chunk size, next to raw ZeroMQ moving the same bytes");
  cmd->add_option("--min-bytes", a->min_bytes, "Smallest chunk")->capture_default_str();
  cmd->add_option("--max-bytes", a->max_bytes, "Largest chunk")->capture_default_str();
  cmd->add_option("--factor", a->factor, "Each chunk size is the previous times this")->capture_default_str();
  cmd->add_option("--round-bytes", a->round_bytes, "Bytes pushed (and pulled) per round, in chunks")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--seconds", a->seconds, "Time spent per size and implementation")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--mode", a->mode, "Server consistency mode: sync, async, ssp:S")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print a JSON record: rows of {impl, bytes, gbps}");
  cmd->callback([a] { run_bench_ps(*a); });
}

}  // namespace strand::cli
