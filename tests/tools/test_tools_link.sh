#!/bin/sh
# test_tools_link: the tools in tools/ do not link the daemon. No function that
# libechod.a defines is in echod-cli or echod-bench, while the ones they do need from
# libechocommon.a (addresses, the fd limit) are. Reads the symbols with nm(1) from the
# built libraries and binaries in ECHOD_BUILDDIR (make check sets it). TAP.
set -u
builddir=${ECHOD_BUILDDIR:?}
srcdir=${ECHOD_SRCDIR:?}
. "$srcdir/tests/tap.sh"
tap_begin test_tools_link 3

# The global functions a binary or library defines, one a line, sorted.
defined() {
    nm --defined-only -g "$1" 2>/dev/null | awk '$2 == "T" { print $3 }' | sort -u
}

defined "$builddir/libechod.a" >"$tmp/daemon"
[ -s "$tmp/daemon" ] || echo "nm found no function in $builddir/libechod.a" >>"$tmp/why"
for tool in echod-cli echod-bench; do
    defined "$builddir/$tool" >"$tmp/$tool.syms"
    [ -s "$tmp/$tool.syms" ] || echo "nm found no function in $builddir/$tool" >>"$tmp/why"
    comm -12 "$tmp/$tool.syms" "$tmp/daemon" >"$tmp/shared"
    if [ -s "$tmp/shared" ]; then
        echo "$tool links the daemon's:" >>"$tmp/why"
        cat "$tmp/shared" >>"$tmp/why"
    fi
done
report "$([ -s "$tmp/why" ] && echo 1 || echo 0)" "echod-cli and echod-bench link nothing of libechod.a"

defined "$builddir/echod-bench" >"$tmp/bench"
for fn in addr_parse fdlimit_raise client_connect_start; do
    grep -qx "$fn" "$tmp/bench" || echo "echod-bench lacks $fn" >>"$tmp/why"
done
report "$([ -s "$tmp/why" ] && echo 1 || echo 0)" "echod-bench links the common and client libraries"

defined "$builddir/echod" | grep -E '^client_' >>"$tmp/why"
report "$([ -s "$tmp/why" ] && echo 1 || echo 0)" "echod links nothing of the client library"
tap_end
