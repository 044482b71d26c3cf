#!/usr/bin/env bash
# strand launch on namespace hosts (scripts/netns-hosts -k 3), tiny data, mnist_mlp, a heartbeat
# every second, a checkpoint every 20 steps:
#  1. rank 1 is killed (SIGKILL) mid-training: named as killed (by mpirun, or by its lifeline where
#     mpirun names nothing), the job restarts on the host left and finishes with the weights of
#     an uninterrupted run at the same global batch (within 1e-4);
#  2. rank 1 is stopped (SIGSTOP): named within two periods, restarted without its host; the
#     host answers again after its cooldown and the job grows back to 2 ranks at a checkpoint;
#     same weights;
#  3. 3 hosts with 1, 1 and 2 slots, host 3 is cut off the network (its link down): restart on
#     hosts 1 and 2; the link comes back and the job grows back to 4 ranks; same weights
#     (global batch 48);
#  4. a parameter-server job (sync): rank 1, which runs host 2's server, is killed; the job
#     restarts on host 1 (one server holding every shard, from the checkpoint); when host 2
#     answers again a worker there joins the running job at its next step (no restart; the
#     global batch is shared by two again), and the job ends with the same weights;
#  5. --max-restarts 0: a killed rank ends the launch non-zero, naming it.
# Usage: test_launch_netns.sh STRAND
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
strand=$(readlink -f "$1")
if [[ "${2:-}" != --inside ]]; then
  exec "$here/../../scripts/netns-hosts" -k 3 -- "$0" "$strand" --inside
fi
source "$here/../test_lib.sh"
tiny_mnist
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
launch_pid=
cleanup() {
  [[ -n "$launch_pid" ]] && kill -9 "$launch_pid" 2>/dev/null
  pkill -9 -f "$strand train" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
ns_of() { echo "${HOSTNAME%-1}-$1"; }  # host i's namespace (and host name)
recipe=(train --data "$work/data/idx" --model mnist_mlp --epochs 200 --threads 1 --lr-schedule constant
  --checkpoint-every 20)
mpirun_args="$NETNS_MPIRUN_ARGS --oversubscribe --bind-to none --mca btl self,vader,tcp"

# The uninterrupted runs: one process at global batch 32 and 48.
for gb in 32 48; do
  "$strand" "${recipe[@]}" --batch-size "$gb" --model-dir "$work/ref$gb" >/dev/null 2>"$work/log" ||
    fail "reference run at batch $gb"
done

# start NAME HOSTS BATCH [LAUNCH_ARG...]: strand launch in the background, logs in $work/NAME.*;
# $strategy is the training command's.
strategy=allreduce
start() {
  local name=$1 hosts=$2 batch=$3
  shift 3
  "$strand" launch --hosts "$hosts" --mpirun-args "$mpirun_args" --heartbeat-period 1 --discovery-interval 1 \
    --events "$work/$name.events" "$@" -- "$strand" "${recipe[@]}" --strategy "$strategy" \
    --batch-size "$batch" --model-dir "$work/$name" >"$work/$name.log" 2>&1 &
  launch_pid=$!
  for _ in $(seq 300); do
    grep -q '"event":"training"' "$work/$name.events" 2>/dev/null && return 0
    kill -0 "$launch_pid" 2>/dev/null ||
      { cp "$work/$name.log" "$work/log"; fail "$name: launch ended early"; }
    sleep 0.1
  done
  cp "$work/$name.log" "$work/log"
  fail "$name: no rank trained within 30 s"
}
# The pid of rank R of launch NAME's running attempt (its environment names the rank and the
# heartbeat); fails the test when there is none.
rank_pid() { # NAME R
  for _ in $(seq 50); do
    for pid in $(pgrep -f "$strand train"); do
      tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -q "^STRAND_HEARTBEAT=" || continue
      if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
        echo "$pid"
        return
      fi
    done
    sleep 0.1
  done
  cp "$work/$1.log" "$work/log"
  fail "$1: no rank $2 found" >&2
}
# finish NAME REF: waits for the launch; it must succeed with the reference's weights.
finish() {
  wait "$launch_pid"
  local rc=$?
  launch_pid=
  cp "$work/$1.log" "$work/log"
  ((rc == 0)) || fail "$1: launch exited $rc"
  "$strand" model diff "$work/$2/1" "$work/$1/1" --tolerance 1e-4 >"$work/$1.diff" ||
    fail "$1: the weights differ from the uninterrupted run's: $(cat "$work/$1.diff")"
  echo "$1: $(grep -c '"event":"restart"' "$work/$1.events") restart(s), $(grep -c '"event":"grow"' \
    "$work/$1.events") growth(s); vs the uninterrupted run: $(cat "$work/$1.diff")"
}
expect() { # NAME PATTERN WHAT
  grep -qE "$2" "$work/$1.log" || { cp "$work/$1.log" "$work/log"; fail "$1: $3"; }
}
h1=10.77.0.1 h2=10.77.0.2 h3=10.77.0.3

# 1. A rank is killed.
start kill "$h1:1,$h2:1" 16 --host-cooldown 600
sleep 1
victim=$(rank_pid kill 1) || exit 1
kill -9 "$victim"
finish kill ref32
expect kill "restart 1 of at most 3: rank 1 \(.*\) .*(killed by signal 9|died: its process ended abruptly)" \
  "no restart naming rank 1 as killed"
expect kill "hosts $h1:1,$h2:1 -> $h1:1; resuming from checkpoint-" "not restarted on host 1 alone"

# 2. A rank is stopped; its host comes back.
start stop "$h1:1,$h2:1" 16 --host-cooldown 1
sleep 1
victim=$(rank_pid stop 1) || exit 1
kill -STOP "$victim"
finish stop ref32
named="rank 1 \($(ns_of 2), pid $victim\) at epoch [0-9]+ step [0-9]+/[0-9]+ .*"
named+=" sent no heartbeat for [0-9.]+ s"
expect stop "$named" "the stopped rank is not named with its host, pid and step"
silent=$(sed -n 's/.*sent no heartbeat for \([0-9.]*\) s.*/\1/p' "$work/stop.log" | head -n 1)
awk -v s="$silent" 'BEGIN { exit !(s <= 2.5) }' ||
  fail "stop: detected after $silent s (want within 2 periods of 1 s)"
expect stop "host $h2 answers again" "host 2 was not taken in again"
expect stop "growing: hosts $h1:1 -> $h1:1,$h2:1" "the job did not grow back to 2 ranks"

# 3. Three hosts, host 3 cut off, then back.
start cut "$h1:1,$h2:1,$h3:2" 12 --host-cooldown 1
sleep 1
ip -n "$(ns_of 3)" link set eth0 down
sleep 4
ip -n "$(ns_of 3)" link set eth0 up
finish cut ref48
expect cut "restart 1 of at most 3: rank [23] \($(ns_of 3), .*sent no heartbeat" \
  "the cut-off rank is not named"
expect cut "hosts $h1:1,$h2:1,$h3:2 -> $h1:1,$h2:1;" "not restarted on hosts 1 and 2"
expect cut "growing: hosts $h1:1,$h2:1 -> $h1:1,$h2:1,$h3:2" "host 3 was not taken in again"

# 4. A parameter server dies.
strategy=ps
start ps "$h1:1,$h2:1" 16 --host-cooldown 1
sleep 1
victim=$(rank_pid ps 1) || exit 1
kill -9 "$victim"
finish ps ref32
expect ps "restart 1 of at most 3: rank 1 \(.*hosts $h1:1,$h2:1 -> $h1:1; resuming from checkpoint-" \
  "the PS job was not restarted on host 1"
expect ps "1 more worker\(s\) can run \($h2:1\): they join the job at its next step" \
  "the PS job did not take host 2 in again"
expect ps "joined the job at step [0-9]* as worker 1 of 2" "no worker joined on host 2"
grep -q '"event":"join"' "$work/ps.events" || fail "no join event"
grep -q '"event":"grow"' "$work/ps.events" && fail "the PS job was restarted to grow"
strategy=allreduce

# 5. No restarts allowed.
start norestart "$h1:1,$h2:1" 16 --max-restarts 0
sleep 1
victim=$(rank_pid norestart 1) || exit 1
kill -9 "$victim"
wait "$launch_pid"
rc=$?
launch_pid=
((rc != 0)) || fail "--max-restarts 0: the launch exited 0 after a rank died"
expect norestart "no restarts are left \(--max-restarts 0\): rank 1 " \
  "--max-restarts 0: the failure is not named"
echo PASS
