#!/bin/sh
# Install what is missing, then configure (once, or again when configure.ac, Makefile.am
# or the arguments changed) and build echod, echod-cli and echod-bench out of tree, in
# $BUILD_DIR (default build/default). The source tree itself is never configured, so
# several configurations (build/plain, build/asan, ...) live side by side.
# Extra arguments go to configure.
set -eu
cd "$(dirname "$0")/.."
src=$(pwd)
dir=${BUILD_DIR:-build/default}
scripts/deps.sh
if [ -f config.status ]; then
    echo "build: the source tree was configured in place, so out-of-tree builds in" \
        "$dir cannot work; run 'make distclean' here first" >&2
    exit 1
fi
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
    autoreconf -fi >/dev/null 2>&1 || { autoreconf -fi; exit 1; }
fi
mkdir -p "$dir"
args="$*"
if [ ! -f "$dir/Makefile" ] || [ configure -nt "$dir/config.status" ] ||
    [ "$args" != "$(cat "$dir/configure.args" 2>/dev/null)" ]; then
    (cd "$dir" && "$src/configure" -q "$@" >/dev/null)
    printf '%s\n' "$args" >"$dir/configure.args"
fi
log=$(mktemp)
if ! make -C "$dir" -j"$(nproc)" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "build: make in $dir failed" >&2
    exit 1
fi
rm -f "$log"
