#!/usr/bin/env bash
# The strand CLI as a user meets it: help, errors that say what is wrong, the SageMaker
# environment contract, metrics, exports, resume, eval and bench output.
#   test_cli.sh PATH/TO/strand
set -uo pipefail
strand=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# expect CODE PATTERN -- CMD...: exit status CODE and PATTERN (grep -E) in stdout+stderr (kept in
# $last_out for more checks).
expect() {
  local code=$1 pattern=$2
  shift 3
  local out status
  out=$("$@" 2>&1)
  status=$?
  last_out=$out
  if [[ $status != "$code" ]]; then
    fail "'$*' exited $status, expected $code. Output:"$'\n'"$out"
    return
  fi
  if ! grep -qE -- "$pattern" <<<"$out"; then fail "'$*' output lacks /$pattern/:"$'\n'"$out"; fi
}

/usr/bin/python3 "$here/make_tiny_mnist.py" "$work/data" || { echo "cannot make test data"; exit 1; }
tiny=(--batch-size 50 --threads 1)

# Help on every command.
expect 0 "Subcommands" -- "$strand" --help
for cmd in train launch eval data "data mnist" model "model summary" "model file" "model diff" "model list" \
  bench "bench train" "bench infer"; do
  # shellcheck disable=SC2086
  expect 0 "Usage" -- "$strand" $cmd --help
done
expect 0 "strand 0" -- "$strand" --version

# Errors name the problem.
expect 2 "subcommand" -- "$strand"
expect 2 "--bogus" -- "$strand" train --bogus
expect 2 "SM_MODEL_DIR" -- "$strand" train --data "$work/data/npy"
expect 2 "SM_CHANNEL_TRAINING" -- "$strand" train --model-dir "$work/m"
expect 2 "resnet" -- "$strand" train --model resnet --data "$work/data/npy" --model-dir "$work/m"
expect 2 "epochs" -- "$strand" train --epochs 0 --data "$work/data/npy" --model-dir "$work/m"
expect 1 "$work/nowhere" -- "$strand" train --data "$work/nowhere" --model-dir "$work/m"
expect 1 "no exported model" -- "$strand" eval --model-dir "$work/data" --data "$work/data/npy"
expect 1 "no MNIST files" -- "$strand" data mnist --out "$work/x" --source "$work/none"

# Train from the .npy layout: stdout is the export, metrics have the promised keys.
out=$("$strand" train --data "$work/data/npy" --model-dir "$work/m" --epochs 1 \
  --metrics "$work/metrics.jsonl" "${tiny[@]}" 2>"$work/log")
[[ $out == "$work/m/1" && -f $work/m/1/model.strand ]] || fail "train printed '$out'; log: $(cat "$work/log")"
/usr/bin/python3 - "$work/metrics.jsonl" <<'PY' || fail "metrics file lacks keys"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 1, lines
need = {"epoch", "step", "loss", "train_accuracy", "test_accuracy", "images_per_sec", "seconds"}
assert need <= lines[0].keys(), lines[0]
assert lines[0]["epoch"] == 1 and lines[0]["step"] == 6, lines[0]
PY
# A second run exports version 2.
out=$("$strand" train --data "$work/data/npy" --model-dir "$work/m" "${tiny[@]}" 2>/dev/null)
[[ $out == "$work/m/2" ]] || fail "second export went to '$out'"

# Resume continues from the checkpoint and appends metrics.
expect 0 "resuming from .*checkpoint-1" -- "$strand" train --data "$work/data/npy" --model-dir "$work/m" \
  --epochs 2 --resume --metrics "$work/metrics.jsonl" "${tiny[@]}"
[[ $(wc -l <"$work/metrics.jsonl") == 2 ]] || fail "resume did not append one metrics line"

# Checkpoints inside an epoch (which of them reach the disk depends on its speed: one still
# queued when the next is taken is replaced). With the epoch's end deleted, as if the job had
# died before it, --resume starts from the newest one left and ends with the same bits.
"$strand" train --data "$work/data/npy" --model-dir "$work/c" --checkpoint-every 2 "${tiny[@]}" \
  >/dev/null 2>"$work/c1.log" || fail "training with --checkpoint-every failed: $(cat "$work/c1.log")"
grep -qE "checkpoint .*/checkpoint-0-[24]\.strand \(written in" "$work/c1.log" ||
  fail "no checkpoint inside the epoch: $(cat "$work/c1.log")"
mv "$work/c/checkpoints/checkpoint-1.strand" "$work/uninterrupted.strand"
expect 0 "resuming from .*checkpoint-0-[24]\.strand \(step [24] of epoch 1" -- "$strand" train \
  --data "$work/data/npy" --model-dir "$work/c" --checkpoint-every 2 --resume "${tiny[@]}"
cmp -s "$work/c/checkpoints/checkpoint-1.strand" "$work/uninterrupted.strand" ||
  fail "resumed inside the epoch: its end's checkpoint differs from the uninterrupted run's"
expect 2 "checkpoint-every-seconds" -- "$strand" train --data "$work/data/npy" --model-dir "$work/c" \
  --checkpoint-every-seconds 0 "${tiny[@]}"

# The SageMaker contract: environment in place of flags, SM_HPS for hyperparameters.
SM_MODEL_DIR="$work/sm" SM_CHANNEL_TRAINING="$work/data/idx" \
  SM_HPS='{"epochs": 2, "batch_size": 50, "learning-rate": 0.002, "threads": 1}' \
  "$strand" train --metrics "$work/sm.jsonl" >/dev/null 2>&1 || fail "SageMaker-style run failed"
[[ -f $work/sm/1/model.strand && $(wc -l <"$work/sm.jsonl") == 2 ]] || fail "SM_HPS epochs=2 not applied"
SM_HPS='{"epochs": 2}' "$strand" train --epochs 1 --data "$work/data/npy" --model-dir "$work/sm2" \
  --metrics "$work/sm2.jsonl" "${tiny[@]}" >/dev/null 2>&1 || fail "flag + SM_HPS run failed"
[[ $(wc -l <"$work/sm2.jsonl") == 1 ]] || fail "a command-line flag must win over SM_HPS"
expect 2 "unknown hyperparameter 'bogus'" -- env SM_HPS='{"bogus": 1}' "$strand" train \
  --data "$work/data/npy" --model-dir "$work/m"
expect 2 "SM_HPS.*not valid JSON" -- env SM_HPS='{epochs' "$strand" train \
  --data "$work/data/npy" --model-dir "$work/m"
expect 2 "hyperparameter 'epochs'" -- env SM_HPS='{"epochs": "many"}' "$strand" train \
  --data "$work/data/npy" --model-dir "$work/m"

# Evaluations every N steps, stopping at a target accuracy (the tiny set is easy to learn).
"$strand" train --data "$work/data/npy" --model-dir "$work/stop" --epochs 5 --eval-every 2 \
  --stop-at-accuracy 0.9 --metrics "$work/stop.jsonl" "${tiny[@]}" >/dev/null 2>&1 ||
  fail "--stop-at-accuracy run failed"
/usr/bin/python3 - "$work/stop.jsonl" <<'PY' \
  || fail "--eval-every/--stop-at-accuracy metrics wrong: $(cat "$work/stop.jsonl")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert [l["step"] for l in lines] == [2 * (i + 1) for i in range(len(lines))], lines
assert lines[-1]["test_accuracy"] >= 0.9 and all(l["test_accuracy"] < 0.9 for l in lines[:-1]), lines
PY
[[ -f $work/stop/1/model.strand ]] || fail "a run stopped at its target accuracy must still export"

# Devices: unknown names and CUDA where it cannot run are usage errors.
expect 2 "TF32 is a GPU math mode" -- "$strand" train --tf32 --data "$work/data/npy" --model-dir "$work/m"
expect 2 "unknown device 'tpu'" -- "$strand" train --device tpu --data "$work/data/npy" --model-dir "$work/m"
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  expect 2 "CUDA|GPU" -- "$strand" eval --device cuda --model-dir "$work/m" --data "$work/data/npy"
fi

# Eval reads the newest export; --json has accuracy and a 10x10 confusion matrix.
expect 0 "confusion matrix" -- "$strand" eval --model-dir "$work/m" --data "$work/data/npy" --threads 1
"$strand" eval --model-dir "$work/m" --data "$work/data/idx" --json --threads 1 2>/dev/null \
  >"$work/eval.json" || fail "eval --json failed"
/usr/bin/python3 - "$work/eval.json" <<'PY' || fail "eval --json output malformed: $(cat "$work/eval.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert 0 <= r["accuracy"] <= 1 and r["version"] == 3, r
assert len(r["confusion"]) == 10 and all(len(row) == 10 for row in r["confusion"])
assert sum(map(sum, r["confusion"])) == 100
PY

# eval needs only the test split.
mkdir -p "$work/testonly" &&
  cp "$work/data/npy/eval_data.npy" "$work/data/npy/eval_labels.npy" "$work/testonly/"
expect 0 "test accuracy" -- "$strand" eval --model-dir "$work/m" --data "$work/testonly" --threads 1
expect 1 "missing train_data.npy, train_labels.npy" -- \
  "$strand" train --data "$work/testonly" --model-dir "$work/m2" "${tiny[@]}"

# data mnist converts IDX to the .npy layout, readable by numpy.
expect 0 "wrote train_data.npy" -- "$strand" data mnist --source "$work/data/idx" --out "$work/conv"
/usr/bin/python3 - "$work/conv" "$work/data/npy" <<'PY' || fail "data mnist output differs from numpy's"
import sys, numpy as np
got, ref = sys.argv[1], sys.argv[2]
for name in ["train_data", "train_labels", "eval_data", "eval_labels"]:
    a, b = np.load(f"{got}/{name}.npy"), np.load(f"{ref}/{name}.npy")
    assert a.dtype == b.dtype and a.shape == b.shape, (name, a.dtype, a.shape)
    assert np.allclose(a, b, atol=1e-7), name
PY

# bench train prints one JSON object.
"$strand" bench train --data "$work/data/npy" --steps 2 --warmup 1 --batch-size 50 --threads 1 --json \
  >"$work/bench.json" 2>/dev/null || fail "bench train failed"
/usr/bin/python3 - "$work/bench.json" <<'PY' || fail "bench JSON malformed: $(cat "$work/bench.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert {"model", "batch_size", "threads", "images_per_sec"} <= r.keys() and r["images_per_sec"] > 0
PY

# bench infer prints one JSON object with throughput and latency.
"$strand" bench infer --data "$work/data/npy" --iterations 3 --warmup 1 --batch-size 20 --threads 1 --json \
  >"$work/infer.json" 2>/dev/null || fail "bench infer failed"
/usr/bin/python3 - "$work/infer.json" <<'PY' || fail "bench infer JSON malformed: $(cat "$work/infer.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["batch_size"] == 20 and r["iterations"] == 3 and r["images_per_sec"] > 0 and r["latency_ms"] > 0, r
PY
expect 2 "larger than the 100 images" -- "$strand" bench infer --data "$work/data/npy" \
  --batch-size 101 --threads 1

# model summary: per layer output shapes, parameters and FLOPs that add up to the model's.
expect 0 "dense 1024 .*\[1024\] .*3212288" -- "$strand" model summary mnist_cnn
expect 2 "'resnet' is neither a built-in model \(mnist_cnn, mnist_mlp, mnist_bn, cifar_cnn\) nor a model \
file" \
  -- "$strand" model summary resnet
"$strand" model summary mnist_cnn --json >"$work/summary.json" || fail "model summary --json failed"
/usr/bin/python3 - "$work/summary.json" <<'PY' || fail "model summary JSON: $(cat "$work/summary.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["input"] == [1, 28, 28] and r["classes"] == 10 and len(r["layers"]) == 11, r
assert sum(l["params"] for l in r["layers"]) == r["params"] == r["trainable"] == 3274634, r
assert abs(sum(l["flops"] for l in r["layers"]) - r["flops"]) < 1, r
assert r["layers"][5]["output"] == [64, 7, 7], r["layers"][5]
first = r["layers"][0]
assert first["layer"] == {"type": "conv2d", "filters": 32, "kernel": 5, "padding": "same"}, first
PY
for m in mnist_cnn mnist_mlp mnist_bn cifar_cnn; do expect 0 "^$m +[A-Z]" -- "$strand" model list; done

# Model files: `model file` prints one that reads back to the same summary; a user's file
# trains, with its class count from the labels; broken files name the layer and the problem.
"$strand" model file mnist_bn >"$work/bn.json" || fail "model file mnist_bn"
grep -q '"momentum":0.9,' "$work/bn.json" || fail "model file writes floats long: $(cat "$work/bn.json")"
written=$("$strand" model summary "$work/bn.json" | tail -n +2)
[[ $written == "$("$strand" model summary mnist_bn | tail -n +2)" ]] ||
  fail "summary of the written mnist_bn file differs from the built-in's"
cat >"$work/mine.json" <<'EOF_JSON'
{"name": "mine", "input": [1, 28, 28],
 "layers": [{"type": "conv2d", "filters": 4, "kernel": 3, "stride": 2, "padding": "same", "bias": false},
            {"type": "batchnorm", "momentum": 0.9}, {"type": "relu"},
            {"type": "avgpool", "kernel": 2}, {"type": "flatten"}, {"type": "dense", "units": "classes"}]}
EOF_JSON
expect 0 "mine \($work/mine.json\): input \[1,28,28\], 2 classes \(from the labels" -- \
  "$strand" model summary "$work/mine.json"
expect 0 "training mine \(" -- "$strand" train --model "$work/mine.json" --data "$work/data/npy" \
  --model-dir "$work/mine" --epochs 1 "${tiny[@]}"
[[ -f $work/mine/1/model.strand ]] || fail "the model file's run did not export"
expect 0 "test accuracy" -- "$strand" eval --model-dir "$work/mine" --data "$work/data/npy" --threads 1
sed 's/"avgpool", "kernel": 2/"avgpool", "kernel": 5/' "$work/mine.json" >"$work/bad.json"
expect 1 "layer 3 \(avgpool 5x5, input \[4,14,14\]\): shape error: input 14x14 is not divisible" -- \
  "$strand" train --model "$work/bad.json" \
  --data "$work/data/npy" --model-dir "$work/m"
sed 's/"momentum": 0.9/"momentun": 0.9/' "$work/mine.json" >"$work/bad.json"
unknown_key="layer 1 \(batchnorm\): format error: unknown key 'momentun' \(known: epsilon, momentum, type\)"
expect 1 "$unknown_key" -- "$strand" model summary "$work/bad.json"
# The README's example model file is a valid one.
readme=$here/../../README.md
/usr/bin/python3 - "$readme" "$work/readme.json" <<'PY' || fail "no model file example in the README"
import sys
text = open(sys.argv[1]).read()
start = text.index("```json", text.index("## Models: the built-in ones and your own")) + len("```json")
open(sys.argv[2], "w").write(text[start:text.index("```", start)])
PY
expect 0 "my_cnn .*input \[3,32,32\], 10 classes" -- "$strand" model summary "$work/readme.json"
echo '{"input": [1, 28, 28], "layers": [' >"$work/bad.json"
expect 1 "bad.json: format error: not valid JSON at line 2" -- "$strand" model summary "$work/bad.json"

# Data without evaluation files: --val-split holds part of the training files out, and
# `strand eval --val-split` evaluates on the same part. Augmentation and layout flags.
mkdir -p "$work/trainonly"
cp "$work/data/npy/train_data.npy" "$work/data/npy/train_labels.npy" "$work/trainonly/"
expect 0 "held out" -- "$strand" train --data "$work/trainonly" \
  --model-dir "$work/vs" --val-split 0.2 --augment shift:2,flip --epochs 1 "${tiny[@]}"
expect 0 "test accuracy" -- "$strand" eval --model-dir "$work/vs" --data "$work/trainonly" --val-split 0.2 \
  --threads 1
expect 2 "use one or the other" -- "$strand" train --data "$work/data/npy" --model-dir "$work/vs" \
  --val-split 0.2
expect 2 "val-split" -- "$strand" train --data "$work/trainonly" --model-dir "$work/vs" --val-split 1.5
expect 2 "'rotate'" -- "$strand" train --data "$work/trainonly" --model-dir "$work/vs" --augment rotate
expect 2 "'diagonal'" -- "$strand" train --data "$work/trainonly" --model-dir "$work/vs" --layout diagonal
expect 1 "no evaluation" -- "$strand" eval --model-dir "$work/vs" --data "$work/trainonly" --threads 1

# model diff: the largest parameter difference, over a tolerance an error.
"$strand" train --data "$work/data/npy" --model mnist_mlp --epochs 1 "${tiny[@]}" --model-dir "$work/d" \
  >/dev/null 2>&1 || fail "training for model diff"
"$strand" train --data "$work/data/npy" --model mnist_mlp --epochs 1 "${tiny[@]}" --seed 7 \
  --model-dir "$work/d" >/dev/null 2>&1 || fail "training for model diff"
expect 0 "814090 parameters; largest difference 0 " -- "$strand" model diff "$work/d/1" \
  "$work/d/1/model.strand"
expect 0 "largest difference 0 " -- "$strand" model diff "$work/d/2" \
  "$work/d/checkpoints/checkpoint-1.strand"
expect 1 "largest difference .* is over the tolerance 1e-06" -- "$strand" model diff "$work/d/1" "$work/d/2" \
  --tolerance 1e-6
expect 1 "cannot open it" -- "$strand" model diff "$work/d/1" "$work/d/9"

# strand launch: its usage errors, and a job that fails every time ends it after its restarts.
expect 2 "command is required" -- "$strand" launch --hosts localhost
expect 2 "'a:0': the slots" -- "$strand" launch --hosts a:0 -- "$strand" train --model-dir "$work/l"
expect 2 "host 'a' is listed twice" -- "$strand" launch --hosts a,a -- "$strand" train --model-dir "$work/l"
expect 2 "either as --hosts or as --host-discovery-script" -- "$strand" launch -- "$strand" train \
  --model-dir m
expect 2 "no --model-dir or --checkpoint-dir" -- env -u SM_MODEL_DIR "$strand" launch --hosts localhost -- \
  "$strand" train
expect 2 "STRAND_HEARTBEAT='10.0.0.1:x/2/ab': the port" -- env STRAND_HEARTBEAT=10.0.0.1:x/2/ab \
  "$strand" train --data "$work/data/npy" --model-dir "$work/l"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
expect 1 "no restarts are left \(--max-restarts 1\): $work/none: I/O error: data directory does not exist" \
  -- "$strand" launch --hosts localhost:1 --max-restarts 1 --mpirun-args "--mca btl self,vader,tcp \
  --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo" -- "$strand" train --data "$work/none" \
  --model-dir "$work/l"
grep -q "restart 1 of at most 1: $work/none: I/O error: data directory does not exist; hosts localhost:1 -> \
localhost:1; starting afresh" <<<"$last_out" || fail "launch: no restart line naming the failure"

if ((failures)); then echo "$failures check(s) failed"; exit 1; fi
echo "all CLI checks passed"
