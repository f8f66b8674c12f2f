#!/bin/sh
# Quick start 2: install what is missing, build with warnings as errors, and run the
# whole test suite (make check: cmocka unit tests and integration tests that drive the
# real binaries on loopback). Ends with "N passed, N failed"; exits non-zero on failure.
set -eu
cd "$(dirname "$0")/.."
scripts/build.sh --enable-werror
status=0
make -s -j"$(nproc)" check >check.out 2>&1 || status=$?
grep -E '^(PASS|FAIL|XPASS|ERROR|SKIP):' check.out || true
if [ "$status" -ne 0 ]; then
    for log in $(grep -lE '^(not ok|Bail out)' tests/*/*.log 2>/dev/null); do
        echo "---- $log"
        cat "$log"
    done
    grep -vE '^(PASS|SKIP):' check.out | tail -40
fi
pass=$(grep -c '^PASS:' check.out || true)
fail=$(grep -cE '^(FAIL|XPASS|ERROR):' check.out || true)
skip=$(grep -c '^SKIP:' check.out || true)
rm -f check.out
[ "$pass" -gt 0 ] || { echo "no test ran" >&2; status=1; }
[ "$fail" -eq 0 ] || status=1
echo "$pass passed, $fail failed, $skip skipped"
exit "$status"
