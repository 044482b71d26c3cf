#!/usr/bin/env bash
# strand under a real Slurm (tests/slurm/slurm_lib.sh: munged, slurmctld and slurmd on this
# machine, one node): the shipped batch scripts examples/slurm/allreduce.sbatch (srun --mpi=pmix,
# ring allreduce) and examples/slurm/ps.sbatch (srun without MPI, the node's server in its first
# task) submitted with sbatch --wait, 2 tasks each, mnist_cnn for one epoch on real MNIST to at
# least 98.5%, each task placed by Slurm (rank 1 of 2). Also: an allreduce job under srun
# without --mpi=pmix is refused, naming the fix.
# Usage: test_slurm.sh STRAND
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
strand=$(readlink -f "$1")
source "$here/../test_lib.sh"
source "$here/slurm_lib.sh"
real_mnist
trap 'stop_slurm; rm -rf "$work"' EXIT
start_slurm
export PATH="$(dirname "$strand"):$PATH" DATA=$data BATCH_SIZE=64

# srun alone cannot run an allreduce job: each task would train by itself.
srun -n 2 --overcommit strand train --strategy allreduce --data "$data" --model-dir "$work/x" \
  >/dev/null 2>"$work/log"
rc=$?
((rc != 0)) && grep -q "start it with srun --mpi=pmix" "$work/log" ||
  fail "srun without MPI, --strategy allreduce: exit $rc, no advice naming srun --mpi=pmix"
rm -f "$work/log"

submit() { # STRATEGY
  local out=$work/$1.log
  MODEL_DIR=$work/$1 sbatch --wait --nodes 1 --ntasks 2 --overcommit --output "$out" \
    "$here/../../examples/slurm/$1.sbatch" >"$work/$1.sbatch.out" 2>&1 ||
    { cat "$work/$1.sbatch.out" "$out" >"$work/log" 2>/dev/null; fail "$1: sbatch --wait failed"; }
  grep -v "^\[strand\] epoch" "$out" | tail -n 3
  grep -q "rank 1/2 " "$out" || { cp "$out" "$work/log"; fail "$1: no task ran as rank 1 of 2"; }
  local acc
  acc=$(sed -n 's/.*test accuracy \([0-9.]*\)%; exported.*/\1/p' "$out")
  [[ -n "$acc" ]] || { cp "$out" "$work/log"; fail "$1: no final accuracy"; }
  /usr/bin/python3 -c "import sys; sys.exit(0 if float('$acc') >= 98.5 else 1)" ||
    fail "$1: accuracy $acc% < 98.5%"
  [[ -f "$work/$1/1/model.strand" ]] || fail "$1: no exported model"
  echo "sbatch $1.sbatch, 2 tasks: $acc%"
}
submit allreduce
submit ps
grep -q "PS server 0 .* at tcp://" "$work/ps.log" || fail "ps: the node's first task ran no server"
echo PASS
