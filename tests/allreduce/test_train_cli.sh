#!/usr/bin/env bash
# strand train --strategy allreduce under mpirun -np 2 on a tiny data set: only rank 0 writes
# metrics, checkpoints and the export; --resume continues the whole job to the same
# checkpoint bits as an uninterrupted job, and on one rank keeps the global batch; the
# timeline holds both ranks' phases and each allreduce with its bytes; --global-batch-size
# and --scale-lr set the per-rank batch and the learning rate; bad flag combinations are usage
# errors. strand bench allreduce: --device cpu is the default; host and GPU implementations
# refuse the other device; --device cuda without a GPU is a usage error naming the device
# (with one, it gives nccl and staged-ring rows).
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

# The job's last checkpoint deleted, as if it had died before it (the newest left is inside
# epoch 2 or at its start, depending on which periodic ones the disk kept up with), the same
# command resumes on one rank: the global batch stays 32. (That the weights then follow the
# uninterrupted job is tests/allreduce/test_data_parallel.cpp's.)
train --model-dir "$work/g" --epochs 2 --checkpoint-every 3 >/dev/null 2>"$work/g1.log" ||
  { cat "$work/g1.log"; fail "--checkpoint-every on 2 ranks"; }
rm "$work/g/checkpoints/checkpoint-2.strand"
"$strand" train --data "$work/data/idx" --threads 1 --model mnist_mlp --batch-size 16 \
  --lr-schedule constant --model-dir "$work/g" --epochs 2 --resume >/dev/null 2>"$work/g2.log" ||
  { cat "$work/g2.log"; fail "resumed on 1 rank"; }
grep -q "resuming on 1 workers, 32 images each: the checkpoint's global batch of 32 stays" "$work/g2.log" ||
  { cat "$work/g2.log"; fail "the resume on 1 rank did not keep the global batch"; }
[[ -f $work/g/2/model.strand && -f $work/g/checkpoints/checkpoint-2.strand ]] ||
  fail "the job resumed on 1 rank did not finish its epoch 2 and export"

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
for case in "--device cuda --impl ring:--impl ring reduces host memory; with --device cuda" \
  "--device cuda --impl nccl mpi:--impl mpi reduces host memory; with --device cuda" \
  "--impl nccl:--impl nccl reduces GPU memory: it needs --device cuda" \
  "--device cpu --impl staged-ring:--impl staged-ring reduces GPU memory" \
  "--device cuda --memcpy:for host memory" "--device cuda --buffer shared:for host memory" \
  "--device gpu:unknown device"; do
  rc=0
  # shellcheck disable=SC2086  # the case's options are words
  "$here/run_mpi.sh" 1 "$strand" bench allreduce ${case%%:*} >/dev/null 2>"$work/bench.log" || rc=$?
  ((rc == 2)) && grep -q -- "${case#*:}" "$work/bench.log" ||
    { cat "$work/bench.log"; fail "bench allreduce ${case%%:*}: exit $rc, want '${case#*:}'"; }
done
# --device cpu is the default: the same header and rows (timings aside).
bench() { "$here/run_mpi.sh" "$@" --max-bytes 16384 --seconds 0.01 2>"$work/bench.log"; }
bench 2 "$strand" bench allreduce >"$work/bench-default.txt" ||
  { cat "$work/bench.log"; fail "bench allreduce"; }
bench 2 "$strand" bench allreduce --device cpu >"$work/bench-cpu.txt" ||
  { cat "$work/bench.log"; fail "bench allreduce --device cpu"; }
layout() { awk '/^#/ {print; next} {print $1, $2, $3, $NF}' "$1"; }
diff <(layout "$work/bench-default.txt") <(layout "$work/bench-cpu.txt") ||
  fail "bench allreduce: --device cpu differs from the default"
[[ $(layout "$work/bench-cpu.txt" | grep -v '^#' | awk '{print $2, $3}' | sort -u | tr '\n' ,) == \
  "hierarchical cpu,mpi cpu,ring cpu," ]] ||
  fail "bench allreduce --device cpu rows: $(cat "$work/bench-cpu.txt")"
# A cuda device: GPU rows where the machine has a GPU, else a usage error naming the device.
gpus=$(find /dev -maxdepth 1 -name 'nvidia[0-9]*' | wc -l)
if ((gpus > 0)) && "$strand" --version | grep -q "with the CUDA backend"; then
  np=$((gpus > 1 ? 2 : 1)) # NCCL refuses two ranks on one GPU
  bench "$np" "$strand" bench allreduce --device cuda --json >"$work/bench-gpu.json" ||
    { cat "$work/bench.log"; fail "bench allreduce --device cuda"; }
  python3 - "$work/bench-gpu.json" "$np" <<'EOF_PY' || fail "bench allreduce --device cuda --json rows"
import json, sys
record, np = json.load(open(sys.argv[1])), int(sys.argv[2])
rows = record["rows"]
assert {r["impl"] for r in rows} == {"nccl", "staged-ring"}, rows
assert all(r["device"] == "cuda:0" and r["buffer"] == "device" and r["ranks"] == np for r in rows), rows
assert record["stamp"]["gpu"], record["stamp"]
EOF_PY
else
  # One rank: Open MPI 4.1's mpirun can crash when two ranks call MPI_Abort at once.
  rc=0
  bench 1 "$strand" bench allreduce --device cuda >/dev/null || rc=$?
  want="--device cuda, rank 0/1 .*: usage error: .*\(no CUDA GPU is visible\|without CUDA\)"
  ((rc == 2)) && grep -q -- "$want" "$work/bench.log" ||
    { cat "$work/bench.log"; fail "bench allreduce --device cuda without a GPU: exit $rc"; }
fi
echo PASS
