#!/usr/bin/env bash
# The page of curves beside --metrics FILE (FILE.html) as a browser shows it: a 2-rank
# allreduce job evaluating every 3 steps, resumed for a second epoch, and headless Chromium
# loading the page into a frame of a checking page of our own (the curves page runs no script).
# The check reads the browser's DOM: every chart parsed as SVG, each line's points as many as
# the page says and laid out with a width, a line per worker for the training values (they
# differ) and one for the test values (allreduce ranks share the parameters), both runs'
# evaluations, and no console errors. Skipped (77) without chromium (scripts/setup installs it).
#   test_curves_browser.sh PATH/TO/strand
set -uo pipefail
strand=$1
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../test_lib.sh"
command -v chromium >/dev/null || { echo "no chromium (scripts/setup installs it): skipping"; exit 77; }
tiny_mnist
train() { "$here/../allreduce/run_mpi.sh" 2 "$strand" train --strategy allreduce --data "$work/data/idx" \
  --threads 1 --model mnist_mlp --batch-size 16 --eval-every 3 --model-dir "$work/m" \
  --metrics "$work/metrics.jsonl" "$@" >/dev/null 2>"$work/log"; }

# 300 images, 32 a step: 10 steps an epoch, evaluations at steps 3, 6, 9 and 10, then 13 to 20.
train --epochs 1 || fail "training exited non-zero"
page=$work/metrics.jsonl.html
[[ -f $page ]] || fail "no page beside the metrics file"
grep -q 'data-evaluations="4"' "$page" || fail "want 4 evaluations on the page after epoch 1"
train --epochs 2 --resume || fail "resumed training exited non-zero"
grep -q 'data-evaluations="8"' "$page" || fail "want both runs' 8 evaluations on the resumed job's page"

cat >"$work/check.html" <<'EOF_HTML'
<!DOCTYPE html>
<html><body><pre id="result">not loaded</pre>
<iframe id="page" src="metrics.jsonl.html" width="1200" height="1800"></iframe>
<script>
document.getElementById("page").addEventListener("load", () => {
  const doc = document.getElementById("page").contentDocument;
  const svgLine = doc.defaultView.SVGPolylineElement;
  const out = ["scripts " + doc.scripts.length,
               "evaluations " + doc.querySelector(".summary").dataset.evaluations];
  for (const fig of doc.querySelectorAll("figure.chart"))
    out.push(fig.dataset.chart + " " + [...fig.querySelectorAll("polyline")].map(p =>
      p.dataset.series + ":" + (p instanceof svgLine ? p.points.numberOfItems : "not-svg") + "/" +
      p.dataset.points + (p.getBBox().width > 0 ? ":laid-out" : ":no-width")).join(","));
  document.getElementById("result").textContent = out.join("\n");
});
</script></body></html>
EOF_HTML
timeout 60 chromium --headless --no-sandbox --disable-gpu --allow-file-access-from-files \
  --enable-logging=stderr --v=0 --dump-dom "file://$work/check.html" \
  >"$work/dom.html" 2>"$work/browser.log" || { cat "$work/browser.log"; fail "chromium exited non-zero"; }
result=$(sed -n '/<pre id="result">/,/<\/pre>/p' "$work/dom.html" |
  sed 's/.*<pre id="result">//; s/<\/pre>.*//')
want="scripts 0
evaluations 8
loss all workers:8/8:laid-out,worker 0:8/8:laid-out,worker 1:8/8:laid-out
train_accuracy all workers:8/8:laid-out,worker 0:8/8:laid-out,worker 1:8/8:laid-out
test_accuracy test accuracy:8/8:laid-out
test_loss test loss:8/8:laid-out
images_per_sec all workers:8/8:laid-out,worker 0:8/8:laid-out,worker 1:8/8:laid-out"
[[ $result == "$want" ]] || fail "the browser's DOM of the page:"$'\n'"$result"$'\n'"want:"$'\n'"$want"
if grep ':CONSOLE' "$work/browser.log"; then fail "console messages while loading the page"; fi
echo "ok: the page renders 5 charts of 8 evaluations, per-worker lines where the workers differ"
