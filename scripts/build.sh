#!/bin/sh
# Install what is missing, then configure (once, or again when configure.ac or
# Makefile.am changed) and build echod, echod-cli and echod-bench in the source tree.
# Extra arguments go to ./configure.
set -eu
cd "$(dirname "$0")/.."
scripts/deps.sh
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
    autoreconf -fi >/dev/null 2>&1 || { autoreconf -fi; exit 1; }
fi
if [ ! -f Makefile ] || [ configure -nt config.status ] || [ "$#" -gt 0 ]; then
    ./configure -q "$@" >/dev/null
fi
log=$(mktemp)
if ! make -j"$(nproc)" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "build: make failed" >&2
    exit 1
fi
rm -f "$log"
