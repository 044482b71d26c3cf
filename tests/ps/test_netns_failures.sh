#!/usr/bin/env bash
# Failures under the SageMaker-style launch on two namespace hosts x two workers (real MNIST,
# sync mode, --comm-timeout 10):
#  1. worker rank 3 is killed (SIGKILL) mid-training: the servers drop it after the timeout
#     and the other three finish; rank 0 exports, its metrics count 3 workers; host 2's
#     process names the dead worker.
#  2. host 2's process (its server) is killed: the workers on host 1 exit non-zero naming the
#     silent server, and host 1's process, none of whose workers is left and whose server
#     hears from no other, ends within 5 s of them.
# Usage: test_netns_failures.sh STRAND
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
strand=$(readlink -f "$1")
source "$here/../test_lib.sh"
real_mnist
launcher=
cleanup() {
  [[ -n "$launcher" ]] && kill "$launcher" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
args=(train --strategy ps --data "$data" --threads 1 --epochs 1 --comm-timeout 10 --workers-per-host 2)

# Starts the launch in the background on $1 (a fresh directory); waits until rank 0 trains.
start() {
  mkdir "$1"
  "$here/../../scripts/netns-hosts" -k 2 -- "$here/sm_launch.sh" "$1" "$strand" "${args[@]}" \
    --model-dir "$1/model" --metrics "$1/metrics.jsonl" >"$1/launcher.log" 2>&1 &
  launcher=$!
  for _ in $(seq 600); do
    grep -q "^\[strand\] epoch 1/1 step" "$1/host-1.log" 2>/dev/null && return 0
    if ! kill -0 "$launcher" 2>/dev/null; then
      wait "$launcher"
      local rc=$?
      ((rc == 77)) && exit 77
      cat "$1/launcher.log" "$1"/host-*.log 2>/dev/null | tail -n 20
      fail "the launch ended (exit $rc) before training began"
    fi
    sleep 0.2
  done
  fail "training did not begin within 120 s"
}
# Host 2's process logs "workers 2..3 of 4 (pids A B)".
host2_pids() { sed -n 's/.*workers 2\.\.3 of 4 (pids \([0-9 ]*\)).*/\1/p' "$1/host-2.log"; }

# 1. A worker dies.
start "$work/w"
sleep 3
read -r _ victim <<<"$(host2_pids "$work/w")"
[[ -n "$victim" ]] || fail "no worker pids in host 2's log"
kill -9 "$victim"
wait "$launcher"
rc=$?
launcher=
((rc == 0)) ||
  { tail -n 20 "$work/w/host-1.log"; fail "killed worker: host 1 exited $rc, the job should complete"; }
grep -q "worker 3 sent nothing for .*dropped, the job goes on with 3 workers" "$work/w/host-1.log" ||
  fail "server 0 did not log dropping worker 3"
grep -q "exported version 1" "$work/w/host-1.log" || fail "killed worker: rank 0 did not export"
grep -q '"workers":3}' "$work/w/metrics.jsonl" ||
  fail "killed worker: the metrics do not count 3 workers left"
grep -q "worker rank 3 (pid $victim) was killed by signal 9" "$work/w/host-2.log" ||
  fail "host 2 did not name the dead worker"
[[ $(cat "$work/w/host-2.rc") != 0 ]] || fail "host 2 exited 0 although its worker died"
accuracy=$(sed -n 's/.*\(test accuracy [0-9.]*%\); exported.*/\1/p' "$work/w/host-1.log")
echo "killed worker: the job completed ($accuracy)"

# 2. A server dies: host 2's process, found as the parent of its workers.
start "$work/s"
sleep 3
read -r worker2 _ <<<"$(host2_pids "$work/s")"
[[ -n "$worker2" ]] || fail "no worker pids in host 2's log"
server=$(ps -o ppid= -p "$worker2" | tr -d ' ')
[[ -n "$server" && "$server" != 1 ]] || fail "cannot find host 2's process"
t0=$(date +%s)
kill -9 "$server"
wait "$launcher"
rc=$?
launcher=
elapsed=$(( $(date +%s) - t0 ))
((rc != 0)) || fail "killed server: host 1 exited 0"
# The workers notice the silent server after the timeout (10 s); then host 1's process, whose
# workers have exited and whose server hears from no worker, ends within 5 s.
((elapsed <= 20)) || fail "killed server: host 1 took $elapsed s to exit (want <= 20 with --comm-timeout 10)"
grep -q "this host's workers have exited and no other worker has sent anything" "$work/s/host-1.log" ||
  fail "killed server: host 1 did not stop its server for want of workers"
grep -q "parameter server has not answered for" "$work/s/host-1.log" ||
  { tail -n 20 "$work/s/host-1.log"; fail "killed server: rank 0 did not name the silent server"; }
echo "killed server: host 1 exited $rc after $elapsed s"
echo PASS
