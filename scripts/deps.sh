#!/bin/sh
# Install the Debian 12 packages echod needs to build and test, if any is missing.
# Quiet when everything is there already; needs root (or sudo) only when installing.
set -eu

# clang and libclang-rt-14-dev (libFuzzer) build the harnesses of make fuzz; mandoc lints
# the man pages in make check; systemd gives configure its unit directory (systemd.pc)
# and the tests systemd-analyze, systemd-socket-activate and systemd itself.
# libmicrohttpd-dev serves the metrics endpoint; prometheus gives the tests promtool;
# haproxy is the balancer of the multi-instance test; gnuplot-nox draws latency plots.
PACKAGES="build-essential autoconf automake autoconf-archive pkg-config libconfig-dev libcmocka-dev
    clang libclang-rt-14-dev mandoc systemd libmicrohttpd-dev prometheus haproxy gnuplot-nox"

missing=""
for p in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "deps: missing packages:$missing; run as root: apt-get install$missing" >&2
    exit 1
fi
echo "deps: installing$missing" >&2
log=$(mktemp)
if ! { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive \
        $sudo apt-get install -y -q --no-install-recommends $missing; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "deps: apt-get failed" >&2
    exit 1
fi
rm -f "$log"
