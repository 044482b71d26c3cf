#!/usr/bin/env bash
# Real MNIST, the issue's acceptance run: mnist_cnn trained for one epoch with the default
# settings reaches at least 98.5% test accuracy from both data layouts (the IDX files in the
# scripts/setup cache, and the SageMaker .npy layout written by `strand data mnist`), and
# `strand eval` on the export reproduces the accuracy the training run reported.
#   test_mnist_accuracy.sh PATH/TO/strand
set -uo pipefail
strand=$1
cache="${STRAND_CACHE:-$HOME/.cache/strand}/mnist"
if [[ ! -f $cache/train-images-idx3-ubyte ]]; then
  echo "SKIP: no MNIST in $cache (scripts/setup downloads it)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
threads=$(nproc)

"$strand" data mnist --source "$cache" --out "$work/npy" || exit 1
status=0
for layout in npy idx; do
  data=$work/npy
  [[ $layout == idx ]] && data=$cache
  "$strand" train --model mnist_cnn --data "$data" --model-dir "$work/model-$layout" --epochs 1 \
    --threads "$threads" --metrics "$work/$layout.jsonl" >/dev/null ||
    { echo "FAIL: training on $layout"; exit 1; }
  "$strand" eval --model-dir "$work/model-$layout" --data "$data" --json --threads "$threads" \
    >"$work/$layout-eval.json" || { echo "FAIL: eval on $layout"; exit 1; }
  /usr/bin/python3 - "$layout" "$work/$layout.jsonl" "$work/$layout-eval.json" <<'PY' || status=1
import json, sys
layout, metrics, evaluation = sys.argv[1:]
trained = json.loads(open(metrics).read().splitlines()[-1])
evaluated = json.load(open(evaluation))
print(f"{layout}: test accuracy {trained['test_accuracy']:.4f} after training, "
      f"{evaluated['accuracy']:.4f} from eval, "
      f"{trained['images_per_sec']:.0f} images/s")
assert trained["test_accuracy"] >= 0.985, f"{layout}: accuracy {trained['test_accuracy']} < 0.985"
assert evaluated["accuracy"] == trained["test_accuracy"], (
    "eval does not reproduce the training run's accuracy")
PY
done
exit $status
