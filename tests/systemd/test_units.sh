#!/bin/sh
# test_units: the systemd units that make generated in $ECHOD_BUILDDIR/etc.
#  - `systemd-analyze verify` prints nothing for them: with the daemon's path pointing at
#    the echod just built (verify checks that ExecStart= is executable), and the pages
#    of Documentation= looked up among the man pages just built;
#  - `systemd-analyze security --offline=yes` rates each service at most its threshold:
#    0.5 for the socket-activated echod-activated.service, 1.6 for echod.service and
#    echod@.service (they bind their own sockets, port 7 included).
# TAP; without systemd-analyze the whole test is a SKIP that says so.
set -u
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "1..0 # SKIP systemd-analyze not found (Debian: apt-get install systemd): the units are NOT checked"
    exit 0
fi
builddir=${ECHOD_BUILDDIR:?}
srcdir=${ECHOD_SRCDIR:?}
echod=${ECHOD_BIN:?}
units="echod.service echod@.service echod-activated.service echod-tcp.socket echod-udp.socket echod-metrics.socket"
. "$srcdir/tests/tap.sh"
tap_begin test_units 6

missing=""
for u in $units; do [ -f "$builddir/etc/$u" ] || missing="$missing $u"; done
echo "not generated:$missing" >"$tmp/why"
[ -z "$missing" ]
report $? "every unit is generated"

# The built man pages, where man(1) looks: MANPATH/manN/PAGE.N.
for page in "$builddir"/man/*.[1-8]; do
    [ -f "$page" ] || continue
    section=${page##*.}
    mkdir -p "$tmp/man/man$section" && cp "$page" "$tmp/man/man$section/"
done
mkdir "$tmp/verify"
# shellcheck disable=SC2086 # $units is a list
"$srcdir/tests/systemd/sandbox" units "$tmp/verify" "$(dirname "$echod")" \
    "${ECHOD_INSTALL_SYSCONFDIR:?}/echod" >"$tmp/why" 2>&1 &&
    (cd "$tmp/verify" && MANPATH="$tmp/man" systemd-analyze verify --man=yes $units) \
        >>"$tmp/why" 2>&1
status=$?
[ "$status" -ne 0 ] || [ ! -s "$tmp/why" ] || status=1
report "$status" "systemd-analyze verify prints nothing"

# check UNIT THRESHOLD: the overall exposure, from the last line of the report.
check() {
    systemd-analyze security --offline=yes "$builddir/etc/$1" >"$tmp/out" 2>&1
    exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$tmp/out")
    echo "# $1: exposure $exposure (at most $2)"
    [ -n "$exposure" ] && awk -v e="$exposure" -v t="$2" 'BEGIN { exit !(e <= t) }'
    status=$?
    grep -v '✓' "$tmp/out" >"$tmp/why" # what costs exposure, and any warning
    report "$status" "$1: exposure $exposure <= $2"
}
check echod-activated.service 0.5
check echod.service 1.6
check echod@.service 1.6

# The socket units name their fds as echod expects them.
grep -H '^FileDescriptorName=' "$builddir/etc"/*.socket >"$tmp/why" 2>&1
grep -q '^FileDescriptorName=tcp$' "$builddir/etc/echod-tcp.socket" &&
    grep -q '^FileDescriptorName=udp$' "$builddir/etc/echod-udp.socket" &&
    grep -q '^FileDescriptorName=metrics$' "$builddir/etc/echod-metrics.socket" &&
    grep -q '^Sockets=.*echod-metrics.socket' "$builddir/etc/echod-activated.service"
report $? "the sockets are named tcp, udp and metrics, and the activated service takes all three"
tap_end
