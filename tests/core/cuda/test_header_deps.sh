#!/usr/bin/env bash
# The .cu objects must be rebuilt when a header they include changes. Meson 1.0 gives nvcc no
# dependency-file flags, so core/cuda/meson.build compiles them with -MD -MF itself; this checks
# that ninja has recorded the headers (it once kept a cuda_backend object built against an older
# Backend class, and every GPU run crashed). Usage: test_header_deps.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: test_header_deps.sh BUILD_DIR}
fail=0
for object in core/cuda/cuda_backend.cu.o core/cuda/conv2d.cu.o; do
  deps=$(ninja -C "$build" -t deps "$object")
  for header in core/backend.hpp core/cuda/cuda_backend.hpp; do
    if ! grep -q "/$header\$" <<<"$deps"; then
      echo "FAIL: ninja does not know that $object depends on $header:"
      echo "$deps" | head -n 3
      fail=1
    fi
  done
done
((fail == 0)) && echo "ok: the CUDA objects are rebuilt when the headers they include change"
exit "$fail"
