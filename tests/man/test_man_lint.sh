#!/bin/sh
# test_man_lint: `mandoc -Tlint -Wwarning` prints nothing for any man page make builds
# (ECHOD_MAN_PAGES, from Makefile.am's MAN_PAGES); a page it complains about fails with
# mandoc's output. First, mandoc must find a known defect, so a missing or broken linter
# can never pass for a clean page. Needs MANDOC (configure finds it; Debian: mandoc).
# TAP.
set -u
builddir=${ECHOD_BUILDDIR:?}
srcdir=${ECHOD_SRCDIR:?}
pages=${ECHOD_MAN_PAGES:?}
if [ -z "${MANDOC:-}" ]; then
    echo "Bail out! mandoc not found: apt-get install mandoc (scripts/deps.sh does), then re-run configure"
    exit 1
fi
. "$srcdir/tests/tap.sh"
tap_begin test_man_lint "$(($(echo $pages | wc -w) + 1))"

# A page with an unknown macro: mandoc must say so.
printf '.Dd November 29, 2026\n.Dt BAD 1\n.Os\n.Sh NAME\n.Nm bad\n.Nd bad\n.Sh DESCRIPTION\n.Zz bad\n' \
    >"$tmp/bad.1"
"$MANDOC" -Tlint -Wwarning "$tmp/bad.1" >"$tmp/out" 2>&1
grep -q 'Zz' "$tmp/out" || { echo "mandoc said:"; cat "$tmp/out"; } >"$tmp/why"
report $? "$MANDOC -Tlint -Wwarning reports a known defect"

for page in $pages; do
    "$MANDOC" -Tlint -Wwarning "$builddir/$page" >"$tmp/why" 2>&1
    status=$?
    [ "$status" -eq 0 ] && [ ! -s "$tmp/why" ]
    report $? "mandoc -Tlint -Wwarning $page is silent (exit $status)"
done
tap_end
