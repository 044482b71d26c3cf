#!/usr/bin/env bash
# The endpoint lifecycle as a user meets it: train a small model, deploy it, predict rows of
# a .npy file with labels, list, delete; afterwards no process and no state are left. Also:
# --help on every new command, `strand serve` answering within a second of start,
# SAGEMAKER_BIND_TO_PORT, and SIGTERM finishing a request in flight.
#   test_lifecycle.sh PATH/TO/strand
set -uo pipefail
strand=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
export STRAND_STATE=$work/state
serve_pid=
cleanup() {
  [[ -n $serve_pid ]] && kill "$serve_pid" 2>/dev/null
  for f in "$work"/state/endpoints/*.json; do
    [[ -f $f ]] && kill "$(/usr/bin/python3 -c \
      'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$f")" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

for cmd in serve deploy predict endpoint "endpoint list" "endpoint delete" "bench serve"; do
  # shellcheck disable=SC2086
  grep -q Usage <("$strand" $cmd --help) || fail "strand $cmd --help"
done

/usr/bin/python3 "$here/../apps/make_tiny_mnist.py" "$work/data" ||
  { echo "cannot make test data"; exit 1; }
"$strand" train --model mnist_mlp --data "$work/data/npy" --model-dir "$work/model" --epochs 3 \
  --batch-size 50 --threads 1 >/dev/null 2>"$work/train.log" || { cat "$work/train.log"; exit 1; }

port=$(/usr/bin/python3 -c \
  'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# serve: SAGEMAKER_BIND_TO_PORT picks the port; /ping answers within a second of start.
SAGEMAKER_BIND_TO_PORT=$port "$strand" serve --model-dir "$work/model" --threads 1 2>"$work/serve.log" &
serve_pid=$!
start=$(date +%s%N)
until curl -sf "http://127.0.0.1:$port/ping" >/dev/null; do
  (($(date +%s%N) - start > 1000000000)) && break
  sleep 0.01
done
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
((elapsed_ms <= 1000)) || fail "strand serve answered /ping only after ${elapsed_ms} ms"
# SIGTERM while a request is in flight (its body half sent): it is still read and answered.
/usr/bin/python3 - "$port" >"$work/inflight.txt" 2>&1 <<'PY' &
import socket, sys, time
body = ("[" + ",".join(["0"] * 784) + "]").encode()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          b"Content-Length: %d\r\n\r\n" % len(body) + body[:100])
time.sleep(0.5)  # SIGTERM arrives meanwhile
s.sendall(body[100:])
reply = b""
while b"predictions" not in reply:
    chunk = s.recv(65536)
    if not chunk:
        break
    reply += chunk
print(reply.decode(errors="replace").split("\r\n")[0])
PY
client_pid=$!
sleep 0.2
kill -TERM "$serve_pid"
wait "$client_pid"
wait "$serve_pid" || fail "strand serve exited $? after SIGTERM"
serve_pid=
[[ $(head -1 "$work/inflight.txt") == "HTTP/1.1 200 OK" ]] ||
  fail "in-flight request: $(cat "$work/inflight.txt")"
grep -q "received SIGTERM" "$work/serve.log" || fail "serve log: $(cat "$work/serve.log")"

# deploy -> predict -> list -> delete.
out=$("$strand" deploy --model-dir "$work/model" --name tiny --threads 1 2>&1) || fail "deploy: $out"
[[ $out =~ ^endpoint\ tiny\ at\ http://127.0.0.1:([0-9]+)\ \(pid\ ([0-9]+)\)$ ]] ||
  fail "deploy printed '$out'"
dport=${BASH_REMATCH[1]}
dpid=${BASH_REMATCH[2]}
[[ -f $STRAND_STATE/endpoints/tiny.json ]] || fail "no state record"
grep -q "is running" <<<"$("$strand" deploy --model-dir "$work/model" --name tiny 2>&1)" ||
  fail "a second deploy under the same name was not refused"

pred=$("$strand" predict --endpoint tiny "$work/data/npy/eval_data.npy" --rows 0:50 \
  --labels "$work/data/npy/eval_labels.npy" 2>"$work/predict.err")
lines=$(grep -cE '^prediction: [0-9], label: [0-9], matched: (True|False)$' <<<"$pred")
[[ $lines == 50 ]] ||
  fail "predict printed $lines well-formed lines of 50: $pred $(cat "$work/predict.err")"
matched=$(grep -c 'matched: True' <<<"$pred")
((matched >= 40)) || fail "only $matched of 50 matched"
# The same request twice gives the same lines.
pred2=$("$strand" predict --endpoint tiny "$work/data/npy/eval_data.npy" --rows 0:50 \
  --labels "$work/data/npy/eval_labels.npy" 2>/dev/null)
[[ $pred == "$pred2" ]] || fail "two predicts differ"
"$strand" predict --endpoint tiny "$work/data/npy/eval_data.npy" --rows 3:5 | grep -qxE 'prediction: [0-9]' ||
  fail "predict without labels"
grep -q "no endpoint named 'nope'" \
  <<<"$("$strand" predict --endpoint nope "$work/data/npy/eval_data.npy" 2>&1)" ||
  fail "unknown endpoint"
grep -q "selects no rows" \
  <<<"$("$strand" predict --endpoint tiny "$work/data/npy/eval_data.npy" --rows 500:600 2>&1)" ||
  fail "bad --rows"

# Any instance shape the model takes: one image [28,28], channels-last rows [N,28,28,1] (the
# same predictions as the flat rows); a file of another size is refused before sending.
/usr/bin/python3 - "$work" <<'PY' || fail "cannot write the shaped .npy files"
import sys, numpy as np
w = sys.argv[1]
d = np.load(f"{w}/data/npy/eval_data.npy")
np.save(f"{w}/one.npy", d[7].reshape(28, 28))
np.save(f"{w}/nhwc.npy", d[:50].reshape(50, 28, 28, 1))
np.save(f"{w}/wrong.npy", d[:5, :100])
PY
[[ $("$strand" predict --endpoint tiny "$work/one.npy") == "$(sed -n 8p <<<"$pred" | cut -d, -f1)" ]] ||
  fail "one [28,28] image: $("$strand" predict --endpoint tiny "$work/one.npy" 2>&1)"
pred_nhwc=$("$strand" predict --endpoint tiny "$work/nhwc.npy" --labels "$work/data/npy/eval_labels.npy" \
  --rows 0:50 2>&1)
grep -q "expected 50 labels" <<<"$pred_nhwc" || fail "labels of another count: $pred_nhwc"
/usr/bin/python3 -c 'import numpy as np, sys; np.save(sys.argv[1], np.load(sys.argv[2])[:50])' \
  "$work/labels50.npy" "$work/data/npy/eval_labels.npy"
pred_nhwc=$("$strand" predict --endpoint tiny "$work/nhwc.npy" --labels "$work/labels50.npy" 2>/dev/null)
[[ $pred_nhwc == "$pred" ]] || fail "[N,28,28,1] rows predict otherwise than flat rows"
wrong="expected one instance or rows of instances of 784 values"
wrong+=" (the model takes \[28,28,1\] per instance), got \[5,100\]"
grep -q "$wrong" <<<"$("$strand" predict --endpoint tiny "$work/wrong.npy" 2>&1)" ||
  fail "a file of the wrong shape"

# A deploy that fails shows the endpoint's log and leaves nothing behind.
grep -q "no exported model" <<<"$("$strand" deploy --model-dir "$work/nowhere" --name broken 2>&1)" ||
  fail "deploy of a missing model"

"$strand" endpoint list | grep -qE "^tiny	http://127.0.0.1:$dport	pid $dpid	running	$work/model$" ||
  fail "list: $("$strand" endpoint list)"
"$strand" endpoint delete tiny | grep -q "deleted endpoint tiny" || fail "delete"
kill -0 "$dpid" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$dpid/stat" 2>/dev/null) != Z ]] &&
  fail "endpoint process $dpid still runs"
[[ -z $(ls -A "$STRAND_STATE/endpoints") ]] || fail "state left behind: $(ls -A "$STRAND_STATE/endpoints")"
[[ -z $("$strand" endpoint list) ]] || fail "list after delete"
grep -q "no endpoint named 'tiny'" <<<"$("$strand" endpoint delete tiny 2>&1)" || fail "deleting twice"

# A model with 3 classes (from the labels): K probabilities, and the metadata says so.
mkdir -p "$work/three"
/usr/bin/python3 - "$work" <<'PY' || fail "cannot write the 3-class data"
import shutil, sys, numpy as np
w = sys.argv[1]
for split in ("train", "eval"):
    shutil.copy(f"{w}/data/npy/{split}_data.npy", f"{w}/three/{split}_data.npy")
    np.save(f"{w}/three/{split}_labels.npy", np.load(f"{w}/data/npy/{split}_labels.npy") % 3)
PY
cat >"$work/three.json" <<'JSON'
{"name": "three", "input": [1, 28, 28],
 "layers": [{"type": "flatten"}, {"type": "dense", "units": "classes"}]}
JSON
"$strand" train --model "$work/three.json" --data "$work/three" --model-dir "$work/model3" --epochs 2 \
  --batch-size 50 --threads 1 >/dev/null 2>"$work/train3.log" || fail "train: $(cat "$work/train3.log")"
"$strand" deploy --model-dir "$work/model3" --name three --threads 1 >/dev/null 2>&1 ||
  fail "deploy 3 classes"
pred3=$("$strand" predict --endpoint three "$work/three/eval_data.npy" --rows 0:20 \
  --labels "$work/three/eval_labels.npy" 2>&1)
[[ $(grep -cE '^prediction: [0-2], label: [0-2], matched: (True|False)$' <<<"$pred3") == 20 ]] ||
  fail "3-class predict: $pred3"
three_port=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' \
  "$STRAND_STATE/endpoints/three.json")
metadata=$(curl -s "http://127.0.0.1:$three_port/v1/models/model/metadata")
outputs='"outputs":{"probabilities":{"dtype":"DT_FLOAT","tensor_shape":{"dim":'
outputs+='[{"size":"-1","name":""},{"size":"3","name":""}]'
grep -qF "$outputs" <<<"$metadata" || fail "3-class metadata: $metadata"
refusal='{"error":"instance 0: expected a list of 784 numbers or a nested list of shape [28,28] or '
refusal+='[28,28,1] or [1,28,28], got a list of 1"}'
[[ $(curl -s -H 'Content-Type: application/json' -d '[[0.5]]' "http://127.0.0.1:$three_port/invocations") == \
  "$refusal" ]] || fail "3-class wrong shape"
"$strand" endpoint delete three >/dev/null || fail "delete three"

# strand bench serve, briefly: every cell answered with no failure, and its rates and CPU costs
# are numbers (the served CPU per image at least the in-process one's order of magnitude).
"$strand" bench serve --model-dir "$work/model" --data "$work/data/npy" --seconds 0.3 --connections 1 2 \
  --images 1 --threads 1 --json >"$work/bench.json" 2>"$work/bench.err" ||
  fail "bench serve: $(cat "$work/bench.err")"
/usr/bin/python3 - "$work/bench.json" <<'PY' || fail "bench serve output: $(cat "$work/bench.json")"
import json, sys
cells = json.load(open(sys.argv[1]))["cells"]
assert len(cells) == 4, cells
for c in cells:
    assert c["failures"] == 0 and c["requests_per_sec"] > 0 and c["in_process_images_per_sec"] > 0, c
    assert 0 < c["cpu_us_per_image_in_process"] < c["cpu_us_per_image_served"] * 10, c
    # The client sends and reads every request, so it used some CPU, less than the server did.
    assert 0 < c["cpu_us_per_image_client"] < c["cpu_us_per_image_served"], c
PY

echo "$failures failure(s)"
((failures == 0))
