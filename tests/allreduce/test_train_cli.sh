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
grep -q -- "--impl" <("$strand" bench allreduce --help) || fail "bench allreduce --help"
echo PASS
