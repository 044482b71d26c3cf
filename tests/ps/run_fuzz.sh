#!/bin/bash
# Builds tests/ps/fuzz_header.cpp with clang's libFuzzer (+ ASan, UBSan) and runs it for a
# bounded time. Usage: run_fuzz.sh SOURCE_ROOT WORK_DIR SECONDS. Exit 77 (skipped) without clang.
set -euo pipefail
root=$1 work=$2 seconds=$3
clang=$(command -v clang++ || true)
if [[ -z $clang ]]; then
  echo "clang++ not found: skipping the header fuzzer (apt-get install clang)"
  exit 77
fi
mkdir -p "$work/corpus" "$work/include"
ln -sfn "$root" "$work/include/strand"  # the <strand/...> include root, as meson.build makes it
"$clang" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$work/include" -I"$root" "$root/tests/ps/fuzz_header.cpp" "$root/ps/header.cpp" "$root/core/error.cpp" \
  -o "$work/fuzz_header"
# -max_len above kMaxHeaderBytes would only test the size check; 8 KiB covers many chunk ids.
# A crash must fail the test: libFuzzer would exit 77, which meson reads as "skipped".
"$work/fuzz_header" -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=1024 -error_exitcode=1 \
  -timeout_exitcode=1 -print_final_stats=1 \
  "$work/corpus" 2>&1 | tail -15
