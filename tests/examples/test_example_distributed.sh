#!/usr/bin/env bash
# examples/train_distributed runs a 2-rank job through the library alone, with each strategy:
# rank 0 exports a model, the other rank exports nothing, and a bad strategy is refused.
#   test_example_distributed.sh PATH/TO/train_distributed
set -euo pipefail
example=$1
here=$(cd "$(dirname "$0")" && pwd)
run_mpi=$here/../allreduce/run_mpi.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
/usr/bin/python3 "$here/../apps/make_tiny_mnist.py" "$work/data" || fail "cannot make test data"
for strategy in allreduce ps; do
  "$run_mpi" 2 "$example" "$strategy" "$work/data/idx" "$work/m-$strategy" 20 >"$work/$strategy.log" 2>&1 ||
    { cat "$work/$strategy.log"; fail "$strategy job failed"; }
  [[ $(grep -c "^test accuracy .*exported version 1 to" "$work/$strategy.log") == 1 ]] ||
    { cat "$work/$strategy.log"; fail "$strategy: want one export line (rank 0's)"; }
  [[ -f $work/m-$strategy/1/model.strand ]] || fail "$strategy: no exported model"
  grep -q "x 2 ranks" "$work/$strategy.log" || fail "$strategy: not a 2-rank job"
done
set +e
"$example" horovod "$work/data/idx" "$work/m" >"$work/bad.log" 2>&1
rc=$?
set -e
((rc == 2)) && grep -q "unknown strategy 'horovod'" "$work/bad.log" || fail "a bad strategy: exit $rc"
echo "example ok"
