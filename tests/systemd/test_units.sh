#!/bin/sh
# test_units: the systemd units configure generated in $ECHOD_UNIT_DIR.
#  - `systemd-analyze verify` prints nothing for them, with the daemon's path pointing at
#    the echod just built (verify checks that ExecStart= is executable) and the rest as
#    generated;
#  - `systemd-analyze security --offline=yes` rates each service at most its threshold:
#    0.5 for the socket-activated echod-activated.service, 1.6 for echod.service and
#    echod@.service (they bind their own sockets, port 7 included).
# TAP output; without systemd-analyze the whole test is a SKIP that says so.
set -u
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "1..0 # SKIP systemd-analyze not found (Debian: apt-get install systemd): the units are NOT checked"
    exit 0
fi
for v in ECHOD_BIN ECHOD_UNIT_DIR ECHOD_SBINDIR ECHOD_SYSCONFDIR; do
    eval "[ -n \"\${$v:-}\" ]" || { echo "Bail out! $v is not set (run it from make check)"; exit 1; }
done
units="echod.service echod@.service echod-activated.service echod-tcp.socket echod-udp.socket"
echo "1..6"
tmp=$(mktemp -d) || { echo "Bail out! mktemp"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
n=0

# ok NAME | not ok NAME, with the output of the failing command as TAP comments.
report() {
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then
        echo "ok $n - $2"
    else
        echo "not ok $n - $2"
        sed 's/^/# /' "$tmp/out"
    fi
}

missing=""
for u in $units; do [ -f "$ECHOD_UNIT_DIR/$u" ] || missing="$missing $u"; done
echo "not generated:$missing" >"$tmp/out"
report "$([ -z "$missing" ]; echo $?)" "every unit is generated"

mkdir "$tmp/verify"
"$here/sandbox" units "$tmp/verify" "$(dirname "$ECHOD_BIN")" "$ECHOD_SYSCONFDIR/echod" >"$tmp/out" 2>&1 &&
    # shellcheck disable=SC2086 # $units is a list
    (cd "$tmp/verify" && systemd-analyze verify --man=no $units) >>"$tmp/out" 2>&1
status=$?
[ "$status" -ne 0 ] || [ ! -s "$tmp/out" ] || status=1
report "$status" "systemd-analyze verify prints nothing"

# check UNIT THRESHOLD: the overall exposure, from the last line of the report.
check() {
    systemd-analyze security --offline=yes "$ECHOD_UNIT_DIR/$1" >"$tmp/out" 2>&1
    exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$tmp/out")
    echo "# $1: exposure $exposure (at most $2)"
    [ -n "$exposure" ] && awk -v e="$exposure" -v t="$2" 'BEGIN { exit !(e <= t) }'
    status=$?
    grep -v '✓' "$tmp/out" >"$tmp/exposed" # what costs exposure, and any warning
    mv "$tmp/exposed" "$tmp/out"
    report "$status" "$1: exposure $exposure <= $2"
}
check echod-activated.service 0.5
check echod.service 1.6
check echod@.service 1.6

# The socket units name their fds as echod expects them.
grep -q '^FileDescriptorName=tcp$' "$ECHOD_UNIT_DIR/echod-tcp.socket" &&
    grep -q '^FileDescriptorName=udp$' "$ECHOD_UNIT_DIR/echod-udp.socket"
status=$?
grep -H '^FileDescriptorName=' "$ECHOD_UNIT_DIR"/*.socket >"$tmp/out" 2>&1
report "$status" "the sockets are named tcp and udp"
