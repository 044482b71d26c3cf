#!/usr/bin/env bash
# The TF_CONFIG launch (Kubeflow's TFJob, SageMaker's parameter-server distribution) on two
# namespace hosts: one ps task and the chief on host 1, a worker on host 2, each a process of
# its own started with its own TF_CONFIG (no --strategy: TF_CONFIG implies ps). mnist_cnn for
# one epoch on real MNIST to at least 98.5%; the server listens on its cluster.ps address and
# ends once both workers are done. Also: a malformed TF_CONFIG and a contradicting --strategy
# are usage errors naming it.
# Usage: test_tf_config.sh STRAND
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
strand=$(readlink -f "$1")
if [[ "${2:-}" != --inside ]]; then
  exec "$here/../../scripts/netns-hosts" -k 2 -- "$0" "$strand" --inside
fi
source "$here/../test_lib.sh"
real_mnist

# Broken input first: exit 2, the variable and the key named.
TF_CONFIG='{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}' \
  "$strand" train --data "$data" --model-dir "$work/x" >/dev/null 2>"$work/log"
rc=$?
((rc == 2)) || fail "a TF_CONFIG without ps: exit $rc, want 2"
grep -q "TF_CONFIG: usage error: cluster.ps: missing or empty" "$work/log" ||
  fail "the missing cluster.ps is not named"
TF_CONFIG='{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}' \
  "$strand" train --strategy allreduce --data "$data" --model-dir "$work/x" >/dev/null 2>"$work/log"
rc=$?
((rc == 2)) && grep -q "TF_CONFIG describes a parameter-server job; --strategy allreduce contradicts it" \
  "$work/log" || fail "--strategy allreduce beside TF_CONFIG: exit $rc, not named"
rm -f "$work/log"

# netns-hosts' rsh agent runs a command line on a host: "agent HOST COMMAND".
agent=$(sed -n 's/.*plm_rsh_agent \([^ ]*\).*/\1/p' <<<"$NETNS_MPIRUN_ARGS")
h1=10.77.0.1 h2=10.77.0.2
cluster="\"cluster\": {\"chief\": [\"$h1:2222\"], \"worker\": [\"$h2:2222\"], \"ps\": [\"$h1:2223\"]}"
# Global batch 128, as the other PS MNIST tests.
args=(train --data "$data" --threads 1 --epochs 1 --batch-size 64 --comm-timeout 30 --model-dir "$work/model")
run_task() { # NAME HOST TYPE INDEX
  local config="{$cluster, \"task\": {\"type\": \"$3\", \"index\": $4}}"
  "$agent" "$2" "TF_CONFIG=$(printf '%q' "$config") $(printf '%q ' "$strand" "${args[@]}")" \
    >"$work/$1.out" 2>"$work/$1.log"
  echo $? >"$work/$1.rc"
}
run_task ps "$h1" ps 0 &
ps_pid=$!
run_task chief "$h1" chief 0 &
chief_pid=$!
run_task worker "$h2" worker 0 &
worker_pid=$!
wait "$chief_pid" "$worker_pid"
# The server ends by itself once both workers have left.
for _ in $(seq 100); do kill -0 "$ps_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$ps_pid" 2>/dev/null &&
  { kill "$ps_pid"; fail "the ps task still runs 10 s after its workers ended"; }
wait "$ps_pid"
for t in chief worker ps; do
  [[ $(cat "$work/$t.rc") == 0 ]] ||
    { cp "$work/$t.log" "$work/log"; fail "the $t task exited $(cat "$work/$t.rc")"; }
done
grep -v "^\[strand\] epoch" "$work/chief.log" | tail -n 4
grep -q "PS server 0 .* at tcp://$h1:2223" "$work/ps.log" ||
  { cp "$work/ps.log" "$work/log"; fail "the server is not at cluster.ps[0] ($h1:2223)"; }
grep -q "rank 1/2 $h2\]" "$work/worker.log" ||
  { cp "$work/worker.log" "$work/log"; fail "the worker task is not rank 1 of 2 on $h2"; }
acc=$(sed -n 's/.*test accuracy \([0-9.]*\)%; exported.*/\1/p' "$work/chief.log")
[[ -n "$acc" ]] || { cp "$work/chief.log" "$work/log"; fail "no final accuracy in the chief's log"; }
/usr/bin/python3 -c "import sys; sys.exit(0 if float('$acc') >= 98.5 else 1)" || fail "accuracy $acc% < 98.5%"
[[ -s "$work/chief.out" && -d "$(cat "$work/chief.out")" ]] || fail "the chief exported no model"
echo "TF_CONFIG, 1 ps + chief + worker on 2 hosts: $acc%"
echo PASS
