#!/usr/bin/env bash
# A worker joins a running `strand train --strategy ps` job (mpirun -np 2, one host) with the
# job's own command plus --ps-join: it takes part from the next step on, the three workers
# share each global batch, and in sync mode the job still ends with one process's weights at
# that global batch (within 1e-4); rank 0's ps-job.json is owner-only and gone at the end; an
# async job given --global-batch-size and --scale-lr takes a joiner too. Broken joins are
# usage errors naming their input: no running job, a malformed job file, --resume, another
# strategy; a stale file's dead server times out within --comm-timeout, naming it.
# Usage: test_join_cli.sh STRAND
set -uo pipefail
strand=$1
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../test_lib.sh"
tiny_mnist
base=(--strategy ps --data "$work/data/idx" --threads 1 --model mnist_mlp --batch-size 12
  --lr-schedule constant --ps-chunk-bytes 262144)
args=("${base[@]}" --comm-timeout 20)

# Starts the job of model dir $1 (more flags after it) in the background, waits for its job file.
start_job() {
  local dir=$1
  shift
  timeout 120 "$here/../allreduce/run_mpi.sh" 2 "$strand" train "${args[@]}" --model-dir "$dir" "$@" \
    >"$dir.out" 2>"$dir.log" &
  job=$!
  for _ in $(seq 300); do
    [[ -f "$dir/checkpoints/ps-job.json" ]] && return 0
    sleep 0.1
  done
  cat "$dir.log"
  fail "no $dir/checkpoints/ps-job.json after 30 s"
}

# Sync: join about a second into training (the job runs about 10 s here).
start_job "$work/s" --epochs 100
[[ $(stat -c %a "$work/s/checkpoints/ps-job.json") == 600 ]] ||
  fail "the job file (it holds the token) is not 0600"
sleep 1
timeout 120 "$strand" train "${args[@]}" --model-dir "$work/s" --epochs 100 --ps-join >"$work/j.out" \
  2>"$work/j.log" || { cat "$work/j.log" "$work/s.log"; fail "the joiner exited non-zero"; }
wait "$job" || { cat "$work/s.log" "$work/j.log"; fail "the job exited non-zero after a join"; }
step=$(sed -n 's/.*joined the job at step \([0-9]*\) as worker 2 of 3.*/\1/p' "$work/j.log")
[[ -n "$step" ]] || { cat "$work/j.log"; fail "the joiner does not say where it joined"; }
((step > 0 && step < 1300)) || fail "joined at step $step, not inside the 1300-step job"
grep -q "worker 2 joined; from step $step on, 3 workers" "$work/s.log" ||
  fail "the server does not log the join"
shared="from step $step on, 3 workers share each global batch of 24 (8 images each)"
[[ $(grep -c "$shared" "$work/s.log") == 2 ]] ||
  fail "both ranks must re-divide the global batch at step $step"
[[ ! -e "$work/s/checkpoints/ps-job.json" ]] || fail "the job file outlived the job"
[[ ! -s "$work/j.out" && ! -e "$work/s/2" ]] || fail "the joiner exported (only rank 0 does)"
"$strand" train --data "$work/data/idx" --threads 1 --model mnist_mlp --batch-size 24 --lr-schedule constant \
  --model-dir "$work/ref" --epochs 100 >/dev/null 2>"$work/ref.log" || fail "one-process reference"
"$strand" model diff "$work/s/1" "$work/ref/1" --tolerance 1e-4 >"$work/diff" ||
  fail "joined at step $step: not one process's weights at the global batch: $(cat "$work/diff")"
# The comparison can fail: the job's own batch per worker alone gives other weights.
"$strand" train --data "$work/data/idx" --threads 1 --model mnist_mlp --batch-size 12 --lr-schedule constant \
  --model-dir "$work/other" --epochs 100 >/dev/null 2>&1 || fail "second reference"
"$strand" model diff "$work/other/1" "$work/ref/1" --tolerance 1e-4 >/dev/null &&
  fail "batch 12 and batch 24 gave the same weights: the comparison means nothing"

# Async, the batch given as the global one with --scale-lr (a joiner sizes them as the job's first
# workers did, not over its own count).
start_job "$work/a" --epochs 60 --ps-mode async --global-batch-size 24 --scale-lr
sleep 1
timeout 120 "$strand" train "${args[@]}" --model-dir "$work/a" --epochs 60 --ps-mode async \
  --global-batch-size 24 --scale-lr --ps-join \
  >/dev/null 2>"$work/ja.log" ||
  { cat "$work/ja.log" "$work/a.log"; fail "the async joiner exited non-zero"; }
wait "$job" || { cat "$work/a.log" "$work/ja.log"; fail "the async job exited non-zero after a join"; }
grep -q "joined the job at step [0-9]* as worker 2 of 3" "$work/ja.log" || fail "async: no join"
grep -q "test accuracy 100.00%; exported version 1" "$work/a.log" || fail "async: $(tail -2 "$work/a.log")"

# Broken joins.
expect_usage() {  # expect_usage WHAT PATTERN ARGS...: exit 2 naming PATTERN
  local what=$1 pattern=$2 rc=0
  shift 2
  "$strand" train "$@" >/dev/null 2>"$work/e.log" || rc=$?
  ((rc == 2)) && grep -q -- "$pattern" "$work/e.log" || { cat "$work/e.log"; fail "$what: exit $rc"; }
}
expect_usage "no running job" "$work/none/checkpoints/ps-job.json.*no running parameter-server job" \
  "${args[@]}" --model-dir "$work/none" --ps-join
mkdir -p "$work/bad/checkpoints"
printf '{"servers": ["tcp://127.0.0.1:1"], "chunk_bytes": 262144}' >"$work/bad/checkpoints/ps-job.json"
expect_usage "a job file without a token" "ps-job.json.*'token'" "${args[@]}" --model-dir "$work/bad" \
  --ps-join
printf '{"servers": ["10.0.0.1"], "token": "00000000000000ab", "chunk_bytes": 262144}' \
  >"$work/bad/checkpoints/ps-job.json"
expect_usage "a server that is no endpoint" "not a tcp:// endpoint" "${args[@]}" --model-dir "$work/bad" \
  --ps-join
printf 'not json' >"$work/bad/checkpoints/ps-job.json"
expect_usage "a job file that is no JSON" "ps-job.json.*not a JSON object" "${args[@]}" \
  --model-dir "$work/bad" --ps-join
expect_usage "--ps-join with --resume" "drop --resume" "${args[@]}" --model-dir "$work/bad" --ps-join --resume
expect_usage "--ps-join with allreduce" "--ps-join needs --strategy ps" --strategy allreduce \
  --data "$work/data/idx" --model-dir "$work/bad" --ps-join
# A stale file (the job is gone): its server is named within --comm-timeout.
printf '{"servers": ["tcp://127.0.0.1:9"], "token": "00000000000000ab", "chunk_bytes": 262144}' \
  >"$work/bad/checkpoints/ps-job.json"
rc=0
start=$SECONDS
"$strand" train "${base[@]}" --model-dir "$work/bad" --ps-join --comm-timeout 2 >/dev/null 2>"$work/e.log" ||
  rc=$?
((rc == 1 && SECONDS - start < 15)) && grep -q "tcp://127.0.0.1:9" "$work/e.log" ||
  { cat "$work/e.log"; fail "a dead server: exit $rc after $((SECONDS - start)) s"; }
grep -q -- "--ps-join" <("$strand" train --help) || fail "train --help lacks --ps-join"
echo PASS
