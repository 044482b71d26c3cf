#!/usr/bin/env bash
# Builds tests/serve/fuzz_request.cpp with clang's libFuzzer (plus AddressSanitizer and
# UBSan) and runs it for a bounded time on a seed corpus of valid and broken bodies.
# Exits 77 (skipped) where clang++ or libFuzzer is missing.
#   fuzz_request.sh SOURCE_ROOT BUILD_ROOT SECONDS
set -uo pipefail
src=$1 build=$2 seconds=${3:-20}
clang=$(command -v clang++ || command -v clang++-14) ||
  { echo "clang++ not found: skipping the fuzz run"; exit 77; }
out=$build/tests/serve/fuzz
mkdir -p "$out/include"
ln -sfn "$src" "$out/include/strand"  # the <strand/...> include root, as meson.build makes it
if ! "$clang" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$out/include" -I"$src" "$src/tests/serve/fuzz_request.cpp" "$src/serve/request.cpp" \
    "$src/core/error.cpp" "$src/core/tensor.cpp" \
    $(pkg-config --cflags --libs simdjson) -o "$out/fuzz_request" 2>"$out/build.log"; then
  if grep -qE "libclang_rt.fuzzer|cannot find -l|unsupported option '-fsanitize=fuzzer" "$out/build.log"; then
    echo "libFuzzer not available: skipping"; cat "$out/build.log"; exit 77
  fi
  cat "$out/build.log"; exit 1
fi
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
# Seeds: the first byte selects the parser (0 TF Serving, 1 simplified JSON, 2 JSON lines, 3 CSV).
printf '\0%s%s' '{"instances": [[1,2,3,4,5,6], [[1,2,3],[4,5,6]]],' ' "signature_name": "serving_default"}' \
  >"$corpus/tfs_row"
printf '\0{"inputs": {"x": [[[1,2,3],[4,5,6]]]}}' >"$corpus/tfs_columnar"
printf '\1[[1,2,3],[4,5,6]]' >"$corpus/simple_nested"
printf '\1[[1,2,3,4,5,6], [0.25,-0,1e5,2E-3,-0.5,0.011764706]]' >"$corpus/simple_flat_list"
printf '\1{"x": [1.5e3,-2,3,4,5,6]}' >"$corpus/simple_named"
printf '\1[[1,2,3,4,5,6],\n[7,8,9,10,11,0.5], [-1,-2,-3,-4,-5,-6]]' \
  >"$corpus/simple_three_rows"  # cut in halves
printf '\2[1,2,3,4,5,6]\n{"instances": [[1,2,3,4,5,6]]}\n' >"$corpus/lines"
printf '\3 1,2,3,4,5,6\r\n-1e-3,0,0,0,0,7\n' >"$corpus/csv"
printf '\3nan,inf,1e39,0x1,,\n' >"$corpus/csv_bad"
# Bit 2 of the first byte: three channels of 2x2, sent channels-last or channels-first.
printf '\4{"instances": [[[[1,2,3],[4,5,6]],[[7,8,9],[10,11,12]]],%s' \
  ' [[[1,2],[3,4]],[[5,6],[7,8]],[[9,0],[1,2]]]]}' >"$corpus/color_tfs"
printf '\5[[[1,2,3],[4,5,6]],[[7,8,9],[10,11,12]]]' >"$corpus/color_hwc"
printf '\6[[[1,2,3],[4,5,6]],[[7,8,9],[10,11]]]\n[1,2,3,4,5,6,7,8,9,10,11,12]\n' >"$corpus/color_lines"
# A crash must fail the test: libFuzzer would exit 77, which meson reads as "skipped".
"$out/fuzz_request" -max_total_time="$seconds" -max_len=4096 -timeout=10 -error_exitcode=1 \
  -timeout_exitcode=1 -print_final_stats=1 -artifact_prefix="$out/" "$corpus" 2>&1 | tail -20
exit "${PIPESTATUS[0]}"
