#!/usr/bin/env bash
# A data-parallel job whose rank 1 hangs (SIGSTOP) or dies (SIGKILL) mid-training must end
# with a non-zero exit within the bound, saying which rank (and host) failed; a hang is also
# reported by a stall warning first. TRAIN_ARGS go to strand train (bench/gpu/check: --device
# cuda --allreduce nccl); RUN_MPI is the launcher (default run_mpi.sh; the GPU machine's carried
# one there).
# Usage: test_rank_failure.sh STRAND [TRAIN_ARG...]
set -uo pipefail
strand=$1
shift
train_args=("$@")
here=$(cd "$(dirname "$0")" && pwd)
run_mpi=${RUN_MPI:-$here/run_mpi.sh}
source "$here/../test_lib.sh"
source "$here/mpi_ranks.sh"
tiny_mnist

run_case() { # SIGNAL BOUND_SECONDS
  local signal=$1 bound=$2
  rm -rf "$work/model" "$work/log"
  "$run_mpi" 2 "$strand" train --strategy allreduce --data "$work/data/idx" --model-dir "$work/model" \
    --epochs 100000 --batch-size 16 --threads 1 --comm-timeout 6 "${train_args[@]}" >"$work/log" 2>&1 &
  mpirun_pid=$!
  # Wait until both ranks train (rank 0 logs its first epoch).
  for _ in $(seq 1 300); do
    grep -q "epoch 1 step" "$work/log" && break
    kill -0 "$mpirun_pid" 2>/dev/null || fail "the job ended before training ($signal)"
    sleep 0.1
  done
  grep -q "epoch 1 step" "$work/log" || fail "no epoch finished within 30 s ($signal)"
  local victim
  victim=$(rank_pid 1)
  [[ -n "$victim" ]] || fail "cannot find rank 1's process"
  local t0=$SECONDS
  kill "-$signal" "$victim"
  local rc=0
  for _ in $(seq 1 $((bound * 10))); do
    kill -0 "$mpirun_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$mpirun_pid" 2>/dev/null; then
    fail "the job still runs $bound s after rank 1 got SIG$signal"
  fi
  wait "$mpirun_pid"
  rc=$?
  mpirun_pid=
  ((rc != 0)) || fail "the job exited 0 after rank 1 got SIG$signal"
  echo "SIG$signal: job ended with exit $rc after $((SECONDS - t0)) s; its last lines:"
  grep -v "^\[strand\] epoch" "$work/log" | tail -n 12
}

run_case STOP 40
grep -q "stalled .* waiting for rank 1 (" "$work/log" || fail "no stall warning naming rank 1"
grep -q "no message from rank 1 (.*) for 6 s.*has died or hangs" "$work/log" ||
  fail "no timeout error naming rank 1"

run_case KILL 40
grep -qE "rank 1 .*(exited on signal 9|Killed)|rank 1 \(.*\).*(died|hangs)" "$work/log" ||
  fail "no message naming rank 1 after SIGKILL"
echo "PASS"
