#!/usr/bin/env bash
# GPU acceptance run: mnist_cnn trained with --device cuda reaches 99% test accuracy within
# 3 epochs, and `strand eval --device cuda` reproduces the accuracy of the export.
# Skips (exit 77) where there is no GPU or no MNIST.
#   test_gpu_mnist.sh PATH/TO/strand
set -uo pipefail
strand=$1
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "SKIP: no GPU present"
  exit 77
fi
cache="${STRAND_DATA:-${STRAND_CACHE:-$HOME/.cache/strand}/mnist}"
if [[ ! -f $cache/train-images-idx3-ubyte ]]; then
  echo "SKIP: no MNIST in $cache"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$strand" train --device cuda --data "$cache" --model-dir "$work/model" --epochs 3 --eval-every 200 \
  --stop-at-accuracy 0.99 --metrics "$work/metrics.jsonl" >/dev/null || { echo "FAIL: GPU training"; exit 1; }
"$strand" eval --device cuda --model-dir "$work/model" --data "$cache" --json >"$work/eval.json" \
  || { echo "FAIL: GPU eval"; exit 1; }
/usr/bin/env python3 - "$work/metrics.jsonl" "$work/eval.json" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
evaluated = json.load(open(sys.argv[2]))
best = lines[-1]
print(f"GPU: {best['test_accuracy']:.4f} at step {best['step']} after {best['seconds']:.1f} s "
      f"({best['images_per_sec']:.0f} images/s); eval {evaluated['accuracy']:.4f}")
assert best["test_accuracy"] >= 0.99, "GPU training did not reach 99% in 3 epochs"
assert abs(evaluated["accuracy"] - best["test_accuracy"]) < 1e-9, (
    "eval does not reproduce the training accuracy")
PY
