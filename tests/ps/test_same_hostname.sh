#!/usr/bin/env bash
# Hosts told apart by the launcher, addresses that reach (issue 19, part 4), on 2 namespace
# hosts that share one host name, "localhost", which resolves to 127.0.0.1 (as many cloud
# images and containers have it), one rank on each (with several, Open MPI's own shared-memory
# transport takes the two machines for one and hangs or crashes before strand starts), tiny
# data:
#  1. --strategy ps: one server per machine, each on its host's own address (none on
#     loopback), and the job trains to the end;
#  2. --strategy allreduce --hierarchical: the ranks are grouped by machine (2 hosts, not 1,
#     from MPI_COMM_TYPE_SHARED)
#     and the job trains to the end;
#  3. --ps-bind 127.0.0.1 across machines: refused at once, naming the server and loopback;
#  4. servers on addresses the other host cannot route to (a network only on each host's own
#     loopback): a worker fails within seconds naming the server, its host and address.
# Usage: test_same_hostname.sh STRAND
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
strand=$(readlink -f "$1")
if [[ "${2:-}" != --inside ]]; then
  exec "$here/../../scripts/netns-hosts" -k 2 --hostname localhost -- "$0" "$strand" --inside
fi
source "$here/../test_lib.sh"
tiny_mnist
[[ $(hostname) == localhost ]] || fail "the namespace host is named $(hostname), not localhost"
export MPI_HOSTS=10.77.0.1:1,10.77.0.2:1
recipe=(train --data "$work/data/idx" --model mnist_mlp --epochs 2 --threads 1 --batch-size 16)
run() { # NAME ARG...: mpirun -np 2 over both hosts; its exit status, logs in $work/NAME.log
  local name=$1
  shift
  timeout 120 "$here/../allreduce/run_mpi.sh" 2 "$strand" "${recipe[@]}" --model-dir "$work/$name" "$@" \
    >"$work/$name.out" 2>"$work/$name.log"
}

run ps --strategy ps || { cp "$work/ps.log" "$work/log"; fail "ps: the job failed"; }
grep -q "PS server 0 .* at tcp://10.77.0.1:" "$work/ps.log" &&
  grep -q "PS server 1 .* at tcp://10.77.0.2:" "$work/ps.log" ||
  { cp "$work/ps.log" "$work/log"; fail "ps: want server 0 on 10.77.0.1, server 1 on 10.77.0.2"; }
grep -q "tcp://127\." "$work/ps.log" && { cp "$work/ps.log" "$work/log"; fail "ps: a server on loopback"; }
echo "ps: one server on each machine's own address"

run allreduce --strategy allreduce --hierarchical ||
  { cp "$work/allreduce.log" "$work/log"; fail "allreduce: the job failed"; }
grep -q "x 2 ranks on 2 hosts" "$work/allreduce.log" ||
  { cp "$work/allreduce.log" "$work/log"; fail "allreduce: the ranks were not grouped into 2 hosts"; }
echo "allreduce --hierarchical: 2 hosts"

start=$SECONDS
run loopback --strategy ps --ps-bind 127.0.0.1
rc=$?
((rc != 0)) || fail "loopback: a job with its servers on 127.0.0.1 across machines succeeded"
grep -q "PS server 0 (host localhost) at tcp://127.0.0.1:[0-9]* listens on loopback" "$work/loopback.log" ||
  { cp "$work/loopback.log" "$work/log"; fail "loopback: the refusal does not name the server"; }
echo "loopback: refused in $((SECONDS - start)) s"

# Each host's own 10.88.0.i on its loopback: no route between them.
self_ns=$(ip netns identify $$)
ip addr add 10.88.0.1/32 dev lo
ip -n "${self_ns%-1}-2" addr add 10.88.0.2/32 dev lo || fail "cannot add an address on host 2"
start=$SECONDS
run unreachable --strategy ps --ps-bind 10.88.0.0/24
rc=$?
elapsed=$((SECONDS - start))
((rc != 0)) || fail "unreachable: the job succeeded"
grep -qE "cannot reach PS server [01] \(host localhost\) at tcp://10\.88\.0\.[12]:[0-9]+: " \
  "$work/unreachable.log" ||
  { cp "$work/unreachable.log" "$work/log"; fail "unreachable: no error naming the server"; }
((elapsed <= 30)) || fail "unreachable: failed after $elapsed s (want within seconds)"
why=$(grep -oE "cannot reach PS server.*" "$work/unreachable.log" | head -n 1)
echo "unreachable: failed in $elapsed s: $why"
echo PASS
