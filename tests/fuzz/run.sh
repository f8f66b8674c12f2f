#!/bin/sh
# Run libFuzzer harnesses for a bounded time: run.sh CORPUS_ROOT BIN_DIR NAME...
# Each BIN_DIR/NAME runs for $FUZZ_SECONDS (default 30) on a scratch copy of
# CORPUS_ROOT/NAME, so the committed seeds are never rewritten. Prints one line per
# fuzzer with its executions; on a crash, the report and the reproducer's path.
# Crash inputs go to BIN_DIR/artifacts/NAME-crash-...; exits 1 if any fuzzer failed.
# Leak reports are filtered through lsan.supp beside CORPUS_ROOT (third-party leaks).
set -eu
corpus_root=$1 bin_dir=$2
shift 2
seconds=${FUZZ_SECONDS:-30}
case "$seconds" in *[!0-9]* | "") echo "fuzz: FUZZ_SECONDS must be a number" >&2; exit 64 ;; esac
bin_dir=$(cd "$bin_dir" && pwd)
artifacts=$bin_dir/artifacts
LSAN_OPTIONS="suppressions=$(cd "$corpus_root/.." && pwd)/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS
mkdir -p "$artifacts"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for name in "$@"; do
    mkdir -p "$scratch/$name"
    cp "$corpus_root/$name"/* "$scratch/$name"/ 2>/dev/null || true
    log="$bin_dir/$name.log"
    if "$bin_dir/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/$name-" -print_final_stats=1 "$scratch/$name" \
        >"$log" 2>&1; then
        runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$log")
        echo "$name: ${runs:-? runs}, corpus $(ls "$scratch/$name" | wc -l) inputs"
    else
        status=1
        echo "---- $name failed: $log"
        grep -v '^#[0-9]' "$log" | tail -60
        crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        echo "$name: FAILED; reproduce with: $bin_dir/$name ${crash:-(no artifact written)}"
    fi
done
exit "$status"
