#!/usr/bin/env bash
# Two namespace hosts x two workers train mnist_cnn with --strategy ps for one epoch on real
# MNIST (the scripts/setup cache) to at least 98.5% test accuracy: once under mpirun (the first
# rank on each host runs its server), once with the SageMaker-style launch (SM_HOSTS, the same
# command on each host, --workers-per-host 2). Both servers must bind to their host's address
# in the namespace subnet.
# Usage: test_netns_mnist.sh STRAND
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
strand=$(readlink -f "$1")
source "$here/../test_lib.sh"
real_mnist
# Global batch 128 (the default 64 per worker x 4 ends just above 98.5%).
args=(train --strategy ps --data "$data" --threads 1 --epochs 1 --batch-size 32 --comm-timeout 30)
accuracy() { sed -n 's/.*test accuracy \([0-9.]*\)%; exported.*/\1/p' "$1"; }
check_accuracy() {
  local acc
  acc=$(accuracy "$1")
  [[ -n "$acc" ]] || fail "$2: no final accuracy in the log"
  /usr/bin/python3 -c "import sys; sys.exit(0 if float('$acc') >= 98.5 else 1)" ||
    fail "$2: accuracy $acc% < 98.5%"
  echo "$2: $acc%"
}

rc=0
MPI_HOSTS=10.77.0.1:2,10.77.0.2:2 "$here/../../scripts/netns-hosts" -k 2 -- \
  "$here/../allreduce/run_mpi.sh" 4 "$strand" "${args[@]}" --model-dir "$work/mpi" \
  >"$work/mpi.out" 2>"$work/mpi.log" || rc=$?
((rc == 77)) && exit 77
grep -v "^\[strand\] epoch" "$work/mpi.log" | tail -n 6
((rc == 0)) || fail "mpirun: training exited $rc"
grep -q "PS server 0 .* at tcp://10.77.0.1:" "$work/mpi.log" &&
  grep -q "PS server 1 .* at tcp://10.77.0.2:" "$work/mpi.log" ||
  fail "mpirun: want server 0 on 10.77.0.1 and server 1 on 10.77.0.2"
grep -q "rank 3/4 strand-.*-2\]" "$work/mpi.log" ||
  fail "mpirun: rank 3 did not run on the second host"
check_accuracy "$work/mpi.log" "mpirun, 2 hosts x 2 workers"

mkdir "$work/sm"
rc=0
"$here/../../scripts/netns-hosts" -k 2 -- "$here/sm_launch.sh" "$work/sm" "$strand" "${args[@]}" \
  --workers-per-host 2 --model-dir "$work/sm/model" || rc=$?
((rc == 77)) && exit 77
grep -v "^\[strand\] epoch" "$work/sm/host-1.log" | tail -n 6
((rc == 0)) || fail "SageMaker launch: host 1 exited $rc"
[[ $(cat "$work/sm/host-2.rc") == 0 ]] ||
  { tail -n 20 "$work/sm/host-2.log"; fail "SageMaker launch: host 2 exited $(cat "$work/sm/host-2.rc")"; }
grep -q "PS server 1 .* at tcp://10.77.0.2:" "$work/sm/host-2.log" ||
  fail "SageMaker launch: server 1 not on 10.77.0.2"
grep -q "rank 3/4 10.77.0.2\]" "$work/sm/host-2.log" || fail "SageMaker launch: rank 3 not on host 2"
check_accuracy "$work/sm/host-1.log" "SageMaker launch, 2 hosts x 2 workers"
echo PASS
