#!/usr/bin/env bash
# `meson install` puts the CLI, the libraries, the headers and strand.pc / strand-job.pc in
# place, and the examples build outside the tree against them with pkg-config alone (the
# headers as <strand/...>, from the installed include root only).
#   test_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 source=$2
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >/dev/null
prefix=$(meson introspect "$build" --buildoptions | /usr/bin/python3 -c \
  'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"))')
pc=$(find "$dest$prefix" -name strand.pc | head -n 1)
[[ -n $pc ]] || { echo "FAIL: strand.pc not installed"; exit 1; }
[[ -x $dest$prefix/bin/strand ]] || { echo "FAIL: strand CLI not installed"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$dest
libdir=$(pkg-config --variable=libdir strand)  # already under the sysroot
# example NAME PACKAGE: builds examples/NAME.cpp with pkg-config PACKAGE alone and runs it
# without arguments: it prints its usage and exits 2, proving it loads the installed libraries.
example() {
  local name=$1 package=$2 status
  # shellcheck disable=SC2046
  g++ -std=c++20 -O0 "$source/examples/$name.cpp" -o "$dest/$name" $(pkg-config --cflags --libs "$package")
  set +e
  LD_LIBRARY_PATH=$libdir "$dest/$name" 2>"$dest/err"
  status=$?
  set -e
  [[ $status == 2 ]] && grep -q usage "$dest/err" ||
    { echo "FAIL: installed example $name did not run ($status)"; cat "$dest/err"; exit 1; }
}
example train_mnist strand
example train_distributed strand-job
echo "install ok: $(cd "$dest$prefix" && find bin lib* include -maxdepth 2 | tr '\n' ' ')"
