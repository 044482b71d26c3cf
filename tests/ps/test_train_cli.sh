#!/usr/bin/env bash
# strand train --strategy ps under mpirun -np 2 on a tiny data set (one host: rank 0 also runs
# the server): only rank 0 writes metrics, checkpoints and the export; the checkpoint holds
# the servers' weights (the export of an uninterrupted job equals its last checkpoint's); the
# metrics carry each worker's values; --resume continues the whole job, restored onto the
# servers, to the same checkpoint bits as an uninterrupted job, also onto two servers and from
# a checkpoint inside an epoch; the
# timeline holds both ranks' pushes and pulls; async and ssp modes run; bad --ps-mode, a
# malformed STRAND_PS_TOKEN and a --ps-* flag without --strategy ps are usage errors naming the
# input; a missing GPU names the rank and device.
# Usage: test_train_cli.sh STRAND
set -uo pipefail
strand=$1
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../test_lib.sh"
tiny_mnist
train() { "$here/../allreduce/run_mpi.sh" 2 "$strand" train --strategy ps --data "$work/data/idx" \
  --threads 1 --model mnist_mlp --batch-size 16 --lr-schedule constant --ps-chunk-bytes 262144 \
  --comm-timeout 20 "$@"; }

train --model-dir "$work/a" --epochs 2 --metrics "$work/a.jsonl" --timeline "$work/trace.json" \
  >"$work/a.out" 2>"$work/a.log" || { cat "$work/a.log"; fail "training exited non-zero"; }
grep -q "batch 16 per rank x 2 ranks on 1 host (parameter server sync)" "$work/a.log" ||
  { cat "$work/a.log"; fail "no ps training line"; }
grep -q "PS shard map: .* over 1 server:" "$work/a.log" || fail "want one server (one host) in the shard map"
grep -q "PS server 0 .* at tcp://[0-9.]*:[0-9]*" "$work/a.log" || fail "server address not logged"
grep -q "at tcp://0.0.0.0" "$work/a.log" && fail "the server listens on every interface"
[[ $(wc -l <"$work/a.jsonl") == 2 ]] ||
  fail "metrics: want 2 lines (rank 0 only, one per epoch), got $(wc -l <"$work/a.jsonl")"
/usr/bin/python3 - "$work/a.jsonl" <<'EOF_PY' || fail "metrics: per-worker values"
import json, math, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    each = m["per_worker"]
    assert len(each) == 2 and None not in each, m
    # Equal shards: the job's loss is the mean of the workers'; sync workers share the model.
    assert math.isclose(m["loss"], (each[0]["loss"] + each[1]["loss"]) / 2, rel_tol=1e-9), m
    assert each[0]["test_accuracy"] == each[1]["test_accuracy"] == m["test_accuracy"], m
    assert all(w["images_per_sec"] > 0 for w in each), m
EOF_PY
[[ $(wc -l <"$work/a.out") == 1 && -f "$work/a/1/model.strand" && ! -e "$work/a/2" ]] ||
  fail "want exactly one export, by rank 0"
[[ $(ls "$work/a/checkpoints") == $'checkpoint-1.strand\ncheckpoint-2.strand' ]] ||
  fail "want checkpoints 1 and 2 by rank 0"
/usr/bin/python3 - "$work/trace.json" <<'EOF_PY' || fail "timeline"
import json, sys
events = json.load(open(sys.argv[1]))["traceEvents"]
for rank in (0, 1):
    names = {e["name"] for e in events if e.get("pid") == rank and e["ph"] == "X"}
    assert {"forward", "backward", "push", "pull", "wait for ps"} <= names, (rank, names)
    assert all(e["args"]["bytes"] > 0
               for e in events if e.get("pid") == rank and e["name"] in ("push", "pull"))
steps = sum(1 for e in events if e.get("pid") == 0 and e["name"] == "backward")
assert steps == 20, steps
EOF_PY

train --model-dir "$work/b" --epochs 1 >/dev/null 2>"$work/b1.log" ||
  { cat "$work/b1.log"; fail "first half exited non-zero"; }
train --model-dir "$work/b" --epochs 2 --resume >/dev/null 2>"$work/b2.log" ||
  { cat "$work/b2.log"; fail "resumed half exited non-zero"; }
grep -q "resuming from" "$work/b2.log" || fail "the second run did not resume"
cmp -s "$work/a/checkpoints/checkpoint-2.strand" "$work/b/checkpoints/checkpoint-2.strand" ||
  fail "the resumed job's checkpoint differs from the uninterrupted job's"
cmp -s "$work/a/checkpoints/checkpoint-1.strand" "$work/b/checkpoints/checkpoint-1.strand" ||
  fail "epoch 1's checkpoint differs between two runs with the same seed"

# Checkpoints inside epochs (sync mode: rank 0 collects every server's shard at the same step).
# The job's last checkpoint deleted, as if it had died before it, the same command resumes from
# the newest left (inside epoch 2 or at its start, depending on which the disk kept up with)
# and ends with the uninterrupted job's bits. (tests/ps/test_ps.cpp resumes from inside an
# epoch for certain.)
train --model-dir "$work/p" --epochs 2 --checkpoint-every 3 >/dev/null 2>"$work/p1.log" ||
  { cat "$work/p1.log"; fail "--checkpoint-every with ps"; }
grep -qE "checkpoint .*/checkpoint-[01]-[0-9]+\.strand \(written in" "$work/p1.log" ||
  fail "no checkpoint inside an epoch: $(cat "$work/p1.log")"
rm "$work/p/checkpoints/checkpoint-2.strand"
train --model-dir "$work/p" --epochs 2 --checkpoint-every 3 --resume >/dev/null 2>"$work/p2.log" ||
  { cat "$work/p2.log"; fail "resumed ps job exited non-zero"; }
grep -q "resuming from" "$work/p2.log" || fail "the ps job did not resume"
cmp -s "$work/a/checkpoints/checkpoint-2.strand" "$work/p/checkpoints/checkpoint-2.strand" ||
  fail "resumed from a checkpoint inside an epoch: the end differs from the uninterrupted job's"

# Re-sharding: the first epoch on one server, the resumed second on two (each rank on a host
# of its own, simulated by STRAND_HOST, runs one); the bits are the uninterrupted job's.
train --model-dir "$work/f" --epochs 1 >/dev/null 2>"$work/f1.log" ||
  { cat "$work/f1.log"; fail "first half (1 server)"; }
"$here/../allreduce/run_mpi.sh" 2 sh -c 'STRAND_HOST=sim-$OMPI_COMM_WORLD_RANK exec "$0" "$@"' "$strand" \
  train --strategy ps --data "$work/data/idx" --threads 1 --model mnist_mlp --batch-size 16 \
  --lr-schedule constant --ps-chunk-bytes 262144 --comm-timeout 20 --model-dir "$work/f" --epochs 2 --resume \
  >/dev/null 2>"$work/f2.log" ||
  { cat "$work/f2.log"; fail "resumed half (2 servers)"; }
grep -q "PS shard map: .* over 2 servers" "$work/f2.log" || fail "the resumed half did not run 2 servers"
cmp -s "$work/a/checkpoints/checkpoint-2.strand" "$work/f/checkpoints/checkpoint-2.strand" ||
  fail "resumed onto 2 servers: the checkpoint differs from the uninterrupted job's"

for mode in async ssp:1; do
  train --model-dir "$work/m" --ps-mode "$mode" >/dev/null 2>"$work/m.log" ||
    { cat "$work/m.log"; fail "--ps-mode $mode"; }
  grep -q "(parameter server $mode)" "$work/m.log" || fail "--ps-mode $mode not in the log"
done

rc=0
"$strand" train --strategy ps --ps-mode ssp:x --data "$work/data/idx" --model-dir "$work/d" \
  2>"$work/d.log" || rc=$?
((rc == 2)) && grep -q "ssp:x" "$work/d.log" || fail "--ps-mode ssp:x: exit $rc"
rc=0
STRAND_PS_TOKEN=xyz train --model-dir "$work/d" >/dev/null 2>"$work/d.log" || rc=$?
((rc != 0)) && grep -q "STRAND_PS_TOKEN" "$work/d.log" || fail "a malformed STRAND_PS_TOKEN: exit $rc"
rc=0
SM_HOSTS='["a","b"]' "$strand" train --strategy ps --data "$work/data/idx" --model-dir "$work/d" \
  2>"$work/d.log" || rc=$?
((rc == 2)) && grep -q "SM_CURRENT_HOST" "$work/d.log" || fail "SM_HOSTS without SM_CURRENT_HOST: exit $rc"
rc=0
train --model-dir "$work/d" --workers-per-host 2 >/dev/null 2>"$work/d.log" || rc=$?
((rc != 0)) && grep -q "workers-per-host is for the SageMaker launch" "$work/d.log" ||
  fail "--workers-per-host under mpirun: exit $rc"
# GPU workers: one whose GPU is missing (no GPU here; no machine has a cuda:99) fails naming
# its rank, host and device.
rc=0
train --model-dir "$work/d" --device cuda:99 >/dev/null 2>"$work/d.log" || rc=$?
((rc != 0)) && grep -q "rank [01]/2 [^ ]*, cuda:99" "$work/d.log" ||
  { cat "$work/d.log"; fail "a missing GPU: exit $rc"; }
rc=0
"$strand" train --strategy allreduce --ps-mode async --data "$work/data/idx" --model-dir "$work/d" \
  2>"$work/d.log" || rc=$?
((rc == 2)) && grep -q -- "--ps-mode needs --strategy ps" "$work/d.log" ||
  fail "--ps-mode without --strategy ps: exit $rc"
grep -q -- "--workers-per-host" <("$strand" train --help) || fail "train --help lacks the ps flags"
echo PASS
