#!/usr/bin/env bash
# A parameter-server job under mpirun -np 2 (rank 0 also runs the host's server) whose rank 1
# (a worker) or rank 0 (worker and server) is killed mid-training must end non-zero within
# the bound, with a message naming the dead rank.
# Usage: test_rank_failure.sh STRAND
set -uo pipefail
strand=$1
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../test_lib.sh"
source "$here/../allreduce/mpi_ranks.sh"
tiny_mnist

run_case() { # RANK BOUND_SECONDS
  local rank=$1 bound=$2
  rm -rf "$work/model" "$work/log"
  "$here/../allreduce/run_mpi.sh" 2 "$strand" train --strategy ps --data "$work/data/idx" \
    --model-dir "$work/model" --model mnist_mlp --epochs 100000 --batch-size 16 --threads 1 --comm-timeout 6 \
    >"$work/log" 2>&1 &
  mpirun_pid=$!
  for _ in $(seq 1 300); do
    grep -q "epoch 1 step" "$work/log" && break
    kill -0 "$mpirun_pid" 2>/dev/null || fail "the job ended before training (rank $rank)"
    sleep 0.1
  done
  grep -q "epoch 1 step" "$work/log" || fail "no epoch finished within 30 s (rank $rank)"
  local victim
  victim=$(rank_pid "$rank")
  [[ -n "$victim" ]] || fail "cannot find rank $rank's process"
  local t0=$SECONDS
  kill -9 "$victim"
  for _ in $(seq 1 $((bound * 10))); do
    kill -0 "$mpirun_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$mpirun_pid" 2>/dev/null && fail "the job still runs $bound s after rank $rank was killed"
  wait "$mpirun_pid"
  local rc=$?
  mpirun_pid=
  ((rc != 0)) || fail "the job exited 0 after rank $rank was killed"
  grep -qE "rank $rank .*(exited on signal 9|Killed)" "$work/log" || fail "no message naming rank $rank"
  echo "rank $rank killed: job ended with exit $rc after $((SECONDS - t0)) s"
}

run_case 1 40
run_case 0 40
echo PASS
