#!/bin/sh
# test_plot_latency: scripts/plot-latency draws .hgrm files into a PNG. Two spectra
# (tests/unit/hgrm/, written by HdrHistogram's reference implementation) give one PNG
# image; a file without a spectrum, and no file at all, are refused with their exit
# codes. A SKIP without gnuplot. Needs ECHOD_SRCDIR (make check sets it). TAP.
set -u
srcdir=${ECHOD_SRCDIR:?}
. "$srcdir/tests/tap.sh"
if ! command -v gnuplot >/dev/null 2>&1; then
    echo "1..0 # SKIP gnuplot is not installed (Debian: gnuplot-nox)"
    exit 0
fi
tap_begin test_plot_latency 3
plot=$srcdir/scripts/plot-latency
hgrm=$srcdir/tests/unit/hgrm

"$plot" -o "$tmp/two.png" -t "two spectra" "$hgrm/uniform.hgrm=uniform" "$hgrm/skewed.hgrm" \
    >"$tmp/out" 2>>"$tmp/why" || echo "plot-latency exited $?" >>"$tmp/why"
magic=$(od -An -c -N4 "$tmp/two.png" 2>/dev/null | tr -d ' ')
[ "$magic" = '211PNG' ] || echo "not a PNG: '$magic'" >>"$tmp/why"
grep -q "wrote $tmp/two.png" "$tmp/out" || echo "no 'wrote' line: $(cat "$tmp/out")" >>"$tmp/why"
report "$([ -s "$tmp/why" ] && echo 1 || echo 0)" "two .hgrm files make one PNG"

printf 'no spectrum here\n' >"$tmp/empty.hgrm"
"$plot" -o "$tmp/empty.png" "$tmp/empty.hgrm" 2>"$tmp/err"
code=$?
[ "$code" -eq 1 ] && grep -q 'holds no .hgrm percentile lines' "$tmp/err" ||
    echo "a file without a spectrum: exit $code, stderr: $(cat "$tmp/err")" >>"$tmp/why"
report "$([ -s "$tmp/why" ] && echo 1 || echo 0)" "a file without a spectrum exits 1 saying so"

"$plot" -o "$tmp/none.png" 2>"$tmp/err"
code=$?
[ "$code" -eq 64 ] && grep -q '^Usage: scripts/plot-latency' "$tmp/err" ||
    echo "no file: exit $code, stderr: $(cat "$tmp/err")" >>"$tmp/why"
report "$([ -s "$tmp/why" ] && echo 1 || echo 0)" "no file is bad usage: exit 64 with the usage"
tap_end
