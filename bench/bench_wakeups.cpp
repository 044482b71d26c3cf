// What a request/response exchange pays on this machine besides HTTP and parsing, measured
// in-process so no network or parser is involved:
//   1. waking a sleeping thread: a futex round trip between two threads, back to back and
//      after the pair has been idle (on a VM whose idle cores halt, the wake is the cost);
//   2. a 50-image mnist_cnn pass started after an idle gap and a simulated parse, against the
//      same pass back to back, with and without Backend::expect_work() before the parse;
//   3. a pass shared with another thread's short bursts of work (what HTTP threads do to the
//      passes of a loaded server): how much pass rate the bursts take against the CPU they use;
//   4. parsing a 50-image simplified-JSON body after an idle gap, on one thread and in two
//      halves on the backend's threads (what the endpoint does when no pass is running).
//   build/bench/bench_wakeups [seconds per measurement, default 3]
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/model.hpp>
#include <strand/models/models.hpp>
#include <strand/serve/request.hpp>

using namespace strand;
using Clock = std::chrono::steady_clock;
using us = std::chrono::microseconds;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void spin_for(us d) {
  for (const auto until = Clock::now() + d; Clock::now() < until;) {
  }
}

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

// Mean microseconds for thread A to wake B and B to wake A, after `idle` of both sleeping;
// the two on different cores, as a server's threads usually are.
double futex_round_trip_us(us idle, int rounds) {
  std::atomic<uint32_t> ping{0}, pong{0};
  std::thread b([&] {
    pin_to_cpu(1);
    for (uint32_t seen = 0;;) {
      ping.wait(seen);
      seen = ping.load();
      if (seen == UINT32_MAX) return;
      pong.fetch_add(1);
      pong.notify_one();
    }
  });
  pin_to_cpu(0);
  double total = 0;
  for (int i = 0; i < rounds; ++i) {
    if (idle.count() > 0) std::this_thread::sleep_for(idle);
    const uint32_t before = pong.load();
    const auto t0 = Clock::now();
    ping.fetch_add(1);
    ping.notify_one();
    while (pong.load() == before) pong.wait(before);
    total += std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  }
  ping.store(UINT32_MAX);
  ping.notify_one();
  b.join();
  cpu_set_t all;
  CPU_ZERO(&all);
  for (int c = 0; c < CPU_SETSIZE; ++c) CPU_SET(c, &all);
  pthread_setaffinity_np(pthread_self(), sizeof(all), &all);
  return total / rounds;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 3;
  std::printf("1. futex round trip: back to back %.1f us, after 300 us idle %.1f us\n",
              futex_round_trip_us(us(0), 20000), futex_round_trip_us(us(300), 2000));

  auto backend = make_cpu_backend(2);
  Model m(*backend, models::mnist_cnn());
  m.init(1);
  std::vector<float> x(50 * 784), probs(500);
  std::mt19937 rng(1);
  for (float& v : x) v = rng() % 4 == 0 ? float(rng() % 256) / 255.0f : 0.0f;  // MNIST-like: mostly zeros
  for (int i = 0; i < 20; ++i) m.predict(x.data(), 50, probs.data());

  // 2. Modes interleaved in short slices so all see the same background load.
  double sum[3] = {}, count[3] = {};
  for (const auto start = Clock::now(); seconds_since(start) < seconds;) {
    for (int mode = 0; mode < 3; ++mode) {
      for (const auto t0 = Clock::now(); seconds_since(t0) < 0.1;) {
        if (mode > 0) {
          std::this_thread::sleep_for(us(300));  // waiting for the next request
          if (mode == 2) backend->expect_work();
          spin_for(us(150));  // reading and parsing it
        }
        const auto t1 = Clock::now();
        m.predict(x.data(), 50, probs.data());
        sum[mode] += std::chrono::duration<double, std::micro>(Clock::now() - t1).count();
        count[mode] += 1;
      }
    }
  }
  std::printf(
      "2. 50-image pass: back to back %.0f us; after 300 us idle + 150 us parse %.0f us (%+.0f); "
      "with expect_work() before the parse %.0f us (%+.0f)\n",
      sum[0] / count[0], sum[1] / count[1], sum[1] / count[1] - sum[0] / count[0], sum[2] / count[2],
      sum[2] / count[2] - sum[0] / count[0]);

  // 3. Another thread works 150 us every 1.5 ms (a parse per pass or two) while passes run.
  std::atomic<bool> bursts{false}, quit{false};
  std::atomic<double> burst_cpu{0};
  std::thread other([&] {
    while (!quit) {
      if (!bursts) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      const auto next = Clock::now() + us(1500);
      const double c0 = thread_cpu_seconds();
      spin_for(us(150));
      burst_cpu = burst_cpu + (thread_cpu_seconds() - c0);
      std::this_thread::sleep_until(next);
    }
  });
  double passes[2] = {}, wall[2] = {}, cpu = 0;
  for (const auto start = Clock::now(); seconds_since(start) < seconds;) {
    for (int mode = 0; mode < 2; ++mode) {
      bursts = mode == 1;
      const double c0 = burst_cpu;
      const auto t0 = Clock::now();
      int n = 0;
      for (; seconds_since(t0) < 0.2; ++n) m.predict(x.data(), 50, probs.data());
      passes[mode] += n;
      wall[mode] += seconds_since(t0);
      if (mode == 1) cpu += burst_cpu - c0;
    }
  }
  quit = true;
  other.join();
  const double lost = 1 - (passes[1] / wall[1]) / (passes[0] / wall[0]);
  std::printf("3. bursts using %.1f%% of the 2 cores take %.1f%% of the pass rate (%.1fx their CPU)\n",
              100 * cpu / wall[1] / 2, 100 * lost, lost / (cpu / wall[1] / 2));

  // 4. The body as strand predict sends it: shortest floats, a zero as "0".
  std::string body = "[";
  char buf[32];
  for (int64_t i = 0; i < 50 * 784; ++i) {
    body += i % 784 == 0 ? (i ? "],[" : "[") : ",";
    body += x[size_t(i)] == 0.0f
                ? std::string("0")
                : std::string(buf, size_t(std::snprintf(buf, sizeof(buf), "%.9g", double(x[size_t(i)]))));
  }
  body += "]]";
  serve::InstanceSpec spec;
  spec.size = 784;
  serve::JsonParser parser;
  const serve::ParseThreads lend{
      [&](int parts, const std::function<void(int)>& f) { backend->run_host_parts(parts, f); }};
  double parse_us[2] = {}, parses = 0;
  for (const auto start = Clock::now(); seconds_since(start) < seconds / 3; parses += 1) {
    for (int mode = 0; mode < 2; ++mode) {
      std::this_thread::sleep_for(us(300));
      if (mode == 1) backend->expect_work();  // as the endpoint does before it parses
      const auto t0 = Clock::now();
      const serve::Instances in =
          serve::parse_sagemaker_json(body, spec, parser, mode == 1 ? &lend : nullptr);
      parse_us[mode] += std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      if (in.rows != 50) return 1;
    }
  }
  std::printf(
      "4. parsing a %zu-byte 50-image body after 300 us idle: one thread %.0f us, two halves %.0f us\n",
      body.size(), parse_us[0] / parses, parse_us[1] / parses);
}
