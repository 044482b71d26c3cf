#!/usr/bin/env bash
# strand train --strategy allreduce under mpirun -np 2 on a tiny data set: only rank 0 writes
# metrics, checkpoints and the export; --resume continues the whole job to the same
# checkpoint bits as an uninterrupted job; the timeline holds both ranks' phases and each
# allreduce with its bytes; --global-batch-size and --scale-lr set the per-rank batch and the
# learning rate; bad flag combinations are usage errors.
# Usage: test_train_cli.sh STRAND
set -uo pipefail
strand=$1
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../test_lib.sh"
tiny_mnist
train() { "$here/run_mpi.sh" 2 "$strand" train --strategy allreduce --data "$work/data/idx" --threads 1 \
  --model mnist_mlp --batch-size 16 --lr-schedule constant "$@"; }

train --model-dir "$work/a" --epochs 2 --metrics "$work/a.jsonl" --timeline "$work/trace.json" \
  >"$work/a.out" 2>"$work/a.log" || { cat "$work/a.log"; fail "training exited non-zero"; }
[[ $(wc -l <"$work/a.jsonl") == 2 ]] ||
  fail "metrics: want 2 lines (rank 0 only, one per epoch), got $(wc -l <"$work/a.jsonl")"
[[ $(wc -l <"$work/a.out") == 1 && -f "$work/a/1/model.strand" && ! -e "$work/a/2" ]] ||
  fail "want exactly one export, by rank 0"
/usr/bin/python3 - "$work/trace.json" <<'EOF_PY' || fail "timeline"
import json, sys
events = json.load(open(sys.argv[1]))["traceEvents"]
for rank in (0, 1):
    names = {e["name"] for e in events if e.get("pid") == rank and e["ph"] == "X"}
    assert {"forward", "backward", "update", "allreduce", "wait for allreduce"} <= names, (rank, names)
    reduced = [e for e in events if e.get("pid") == rank and e["name"] == "allreduce"]
    assert all(e["args"]["bytes"] > 0 for e in reduced), "an allreduce without bytes"
# 300 images / 32 per global step = 10 steps an epoch, 2 epochs; mnist_mlp's gradients fit one 1 MiB bucket
# or more: every step's buckets add up to the whole gradient.
steps = sum(1 for e in events if e.get("pid") == 0 and e["name"] == "backward")
assert steps == 20, steps
total = sum(e["args"]["bytes"] for e in events if e.get("pid") == 0 and e["name"] == "allreduce")
assert total % steps == 0 and total // steps > 400_000, total
EOF_PY

train --model-dir "$work/b" --epochs 1 >/dev/null 2>"$work/b1.log" ||
  { cat "$work/b1.log"; fail "first half exited non-zero"; }
train --model-dir "$work/b" --epochs 2 --resume >/dev/null 2>"$work/b2.log" ||
  { cat "$work/b2.log"; fail "resumed half exited non-zero"; }
grep -q "resuming from" "$work/b2.log" || fail "the second run did not resume"
cmp -s "$work/a/checkpoints/checkpoint-2.strand" "$work/b/checkpoints/checkpoint-2.strand" ||
  fail "the resumed job's checkpoint differs from the uninterrupted job's"

train --model-dir "$work/e" --scale-lr --global-batch-size 64 >/dev/null 2>"$work/e.log" ||
  { cat "$work/e.log"; fail "--scale-lr run"; }
grep -q "batch 32 per rank x 2 ranks .* lr 0.004," "$work/e.log" ||
  { cat "$work/e.log"; fail "--scale-lr --global-batch-size 64: want batch 32 per rank and lr 0.004"; }

rc=0
train --model-dir "$work/c" --global-batch-size 33 >/dev/null 2>"$work/c.log" || rc=$?
((rc != 0)) && grep -q "does not divide over 2 ranks" "$work/c.log" ||
  fail "--global-batch-size 33 on 2 ranks: exit $rc"
rc=0
"$strand" train --data "$work/data/idx" --model-dir "$work/d" --timeline "$work/t.json" \
  2>"$work/d.log" || rc=$?
((rc == 2)) && grep -q "need --strategy allreduce" "$work/d.log" ||
  fail "--timeline without allreduce: exit $rc"
# The GPU choices: nccl needs a GPU; a rank whose GPU is missing (no machine has a cuda:99)
# fails naming rank, host and device, through NCCL and through the staged ring alike.
rc=0
train --model-dir "$work/f" --allreduce nccl >/dev/null 2>"$work/f.log" || rc=$?
((rc == 2)) && grep -q "allreduce nccl reduces GPU memory: it needs --device cuda" "$work/f.log" ||
  { cat "$work/f.log"; fail "--allreduce nccl on the CPU: exit $rc"; }
rc=0
"$strand" train --data "$work/data/idx" --model-dir "$work/f" --allreduce nccll 2>"$work/f.log" || rc=$?
((rc == 2)) && grep -q "choose ring, hierarchical, mpi, nccl or nccl-hierarchical" "$work/f.log" ||
  { cat "$work/f.log"; fail "--allreduce nccll: exit $rc"; }
for alg in nccl ring; do
  rc=0
  train --model-dir "$work/g" --device cuda:99 --allreduce "$alg" >/dev/null 2>"$work/g.log" || rc=$?
  ((rc != 0)) && grep -q "rank [01]/2 [^ ]*, cuda:99" "$work/g.log" ||
    { cat "$work/g.log"; fail "--device cuda:99 --allreduce $alg: exit $rc, no rank/host/device named"; }
done
grep -q -- "--no-cuda-graphs" <("$strand" train --help) || fail "train --help lacks --no-cuda-graphs"
grep -q -- "--impl" <("$strand" bench allreduce --help) || fail "bench allreduce --help"
# bench allreduce: host rows name their device; GPU impls need a GPU and host impls refuse one.
"$here/run_mpi.sh" 2 "$strand" bench allreduce --max-bytes 16384 --seconds 0.02 --json >"$work/bench.json" ||
  fail "bench allreduce exited non-zero"
python3 - "$work/bench.json" <<'EOF_PY' || fail "bench allreduce --json rows"
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
assert {r["impl"] for r in rows} == {"ring", "hierarchical", "mpi"}, rows
assert all(r["device"] == "cpu" and r["ranks"] == 2 for r in rows), rows
EOF_PY
for case in "--device cuda --impl ring:reduces host memory" "--impl nccl:needs --device cuda" \
  "--device cuda --impl staged-ring:no CUDA GPU is visible" "--device cuda --memcpy:for host memory"; do
  rc=0
  # shellcheck disable=SC2086  # the case's options are words
  "$here/run_mpi.sh" 1 "$strand" bench allreduce ${case%%:*} >/dev/null 2>"$work/bench.log" || rc=$?
  ((rc != 0)) && grep -q "${case#*:}" "$work/bench.log" ||
    { cat "$work/bench.log"; fail "bench allreduce ${case%%:*}: exit $rc, want '${case#*:}'"; }
done
echo PASS
