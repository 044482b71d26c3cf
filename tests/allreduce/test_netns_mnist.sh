#!/usr/bin/env bash
# mpirun -np 2 across two namespace hosts trains mnist_cnn for one epoch on real MNIST (the
# scripts/setup cache) to at least 98.5% test accuracy, one rank per host.
# Usage: test_netns_mnist.sh STRAND
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
strand=$(readlink -f "$1")
source "$here/../test_lib.sh"
real_mnist
rc=0
MPI_HOSTS=10.77.0.1,10.77.0.2 "$here/../../scripts/netns-hosts" -k 2 -- "$here/run_mpi.sh" 2 "$strand" train \
  --strategy allreduce --data "$data" --model-dir "$work/model" --threads 1 --epochs 1 \
  >"$work/out" 2>"$work/log" || rc=$?
((rc == 77)) && exit 77
cat "$work/log" | grep -v "^\[strand\] epoch" | tail -n 8
((rc == 0)) || { echo "FAIL: training exited $rc"; exit 1; }
grep -q "rank 1/2 strand-.*-2\]" "$work/log" ||
  { echo "FAIL: rank 1 did not run on the second host"; exit 1; }
acc=$(sed -n 's/.*test accuracy \([0-9.]*\)%; exported.*/\1/p' "$work/log")
[[ -n "$acc" ]] || { echo "FAIL: no final accuracy in the log"; exit 1; }
/usr/bin/python3 -c "import sys; sys.exit(0 if float('$acc') >= 98.5 else 1)" ||
  { echo "FAIL: accuracy $acc% < 98.5%"; exit 1; }
echo "PASS: $acc% across two namespace hosts"
