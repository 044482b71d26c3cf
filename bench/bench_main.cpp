// main() of the Google Benchmark programs (bench_layers, bench_gemm): Google Benchmark's own
// for the benchmarks the program registers (bench_main.hpp), plus --json FILE, which writes
// the JSON reporter's {"context", "benchmarks"} as a stamped record (io/record.hpp). Without
// --json the usual flags (--benchmark_out, --benchmark_format) work as always, unstamped.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include <strand/io/record.hpp>
#include "bench/bench_main.hpp"

namespace {

// Shows the runs on the console and collects them as JSON at the same time (Google
// Benchmark's own file reporter only writes where --benchmark_out says).
class TeeReporter final : public benchmark::BenchmarkReporter {
 public:
  TeeReporter() : console_(benchmark::ConsoleReporter::OO_None) { json_.SetOutputStream(&text_); }
  bool ReportContext(const Context& context) override {
    json_.ReportContext(context);
    return console_.ReportContext(context);
  }
  void ReportRuns(const std::vector<Run>& runs) override {
    console_.ReportRuns(runs);
    json_.ReportRuns(runs);
  }
  void Finalize() override {
    console_.Finalize();
    json_.Finalize();
  }
  std::string json() const { return text_.str(); }

 private:
  benchmark::ConsoleReporter console_;
  benchmark::JSONReporter json_;
  std::ostringstream text_;
};

}  // namespace

int main(int argc, char** argv) {
  // The command line as given, before Initialize() takes its flags out of argv.
  const strand::io::RecordStamp stamp = strand::io::make_stamp();
  std::string json_path;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
      json_path = argv[++i];
    } else if (std::strncmp(argv[i], "--json=", 7) == 0) {
      json_path = argv[i] + 7;
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = int(rest.size());
  rest.push_back(nullptr);
  register_benchmarks();
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 1;
  if (json_path.empty()) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    TeeReporter tee;
    benchmark::RunSpecifiedBenchmarks(&tee);
    try {
      strand::io::write_record(json_path, nlohmann::json::parse(tee.json()), stamp);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: --json %s: %s\n", argv[0], json_path.c_str(), e.what());
      return 1;
    }
  }
  benchmark::Shutdown();
  return 0;
}
