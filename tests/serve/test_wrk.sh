#!/usr/bin/env bash
# Load test: wrk (Debian) against a deployed endpoint for a bounded time, 1-image and
# 10-image simplified-JSON requests plus GET /ping; every request must succeed (no socket
# errors, no non-2xx answers), and the endpoint must still answer afterwards.
#   test_wrk.sh PATH/TO/strand
set -uo pipefail
strand=$1
command -v wrk >/dev/null ||
  { echo "wrk not installed (scripts/setup installs it): skipping"; exit 77; }
work=$(mktemp -d)
export STRAND_STATE=$work/state
cleanup() {
  "$strand" endpoint delete load >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# A model with seeded weights: training is not what this test is about.
/usr/bin/python3 "$(dirname "$0")/../apps/make_tiny_mnist.py" "$work/data" >/dev/null || exit 1
"$strand" train --model mnist_mlp --data "$work/data/npy" --model-dir "$work/model" --epochs 1 \
  --batch-size 100 --threads 1 >/dev/null 2>&1 || { echo "train failed"; exit 1; }
out=$("$strand" deploy --model-dir "$work/model" --name load --max-batch 32 --batch-timeout-us 1000 2>&1) ||
  { echo "deploy: $out"; exit 1; }
port=$(sed -E 's/.*:([0-9]+) .*/\1/' <<<"$out")

for rows in 1 10; do
  /usr/bin/python3 - "$rows" >"$work/post$rows.lua" <<'PY'
import sys
rows = int(sys.argv[1])
body = "[" + ",".join("[" + ",".join(str((i * 7 + r) % 256 / 255) for i in range(784)) + "]"
                      for r in range(rows)) + "]"
print('wrk.method = "POST"')
print('wrk.headers["Content-Type"] = "application/json"')
print("wrk.body = [==[" + body + "]==]")
PY
  report=$(wrk -t2 -c16 -d4s --timeout 10s -s "$work/post$rows.lua" "http://127.0.0.1:$port/invocations" 2>&1)
  echo "$rows image(s) per request:"$'\n'"$report"
  grep -q "requests in" <<<"$report" || fail "wrk did not run: $report"
  grep -qE "Socket errors|Non-2xx" <<<"$report" && fail "failed requests with $rows image(s)"
done
report=$(wrk -t1 -c8 -d2s "http://127.0.0.1:$port/ping" 2>&1)
grep -qE "Socket errors|Non-2xx" <<<"$report" && fail "failed pings: $report"
curl -sf "http://127.0.0.1:$port/ping" >/dev/null || fail "endpoint not answering after the load"

echo "$failures failure(s)"
((failures == 0))
