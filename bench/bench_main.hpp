// The part of a Google Benchmark program that bench_main.cpp's main() calls before running:
// registers its benchmarks (benchmark::RegisterBenchmark), so they can come from tables.
#pragma once

void register_benchmarks();
