# Sourced by the shell tests (after `set -uo pipefail` and setting $here to their folder):
#   work          a fresh temporary folder, removed at exit (a test with its own EXIT trap
#                 must remove it there)
#   fail MSG      prints "FAIL: MSG", and the job's output when the test kept one in
#                 $work/log, then exits 1
#   tiny_mnist    writes a small data set (IDX and .npy layouts) to $work/data
#   real_mnist    sets $data to the MNIST cache of scripts/setup, or skips the test (exit 77)
tests_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() {
  echo "FAIL: $*"
  if [[ -f "$work/log" ]]; then echo "--- job output:"; cat "$work/log"; fi
  exit 1
}
tiny_mnist() {
  /usr/bin/python3 "$tests_dir/apps/make_tiny_mnist.py" "$work/data" || fail "cannot make test data"
}
real_mnist() {
  data="${STRAND_CACHE:-$HOME/.cache/strand}/mnist"
  [[ -f "$data/train-images-idx3-ubyte" ]] ||
    { echo "no MNIST in $data (run scripts/setup): skipping"; exit 77; }
}
