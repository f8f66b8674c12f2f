# tap.sh: what the shell tests share; they source it. tap_begin NAME PLAN makes the
# scratch directory $tmp (removed at exit) and prints the TAP plan; a check writes what
# went wrong to $tmp/why, and report STATUS DESCRIPTION prints "ok N" or "not ok N" with
# those lines as diagnostics, then empties $tmp/why; tap_end exits 1 if any check failed.

tap_begin() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || exit 1
    trap 'rm -rf "$tmp"' EXIT
    : >"$tmp/why"
    tap_count=0
    tap_failed=0
    echo "1..$2"
}

report() {
    tap_count=$((tap_count + 1))
    if [ "$1" -eq 0 ]; then
        echo "ok $tap_count - $2"
    else
        echo "not ok $tap_count - $2"
        sed 's/^/# /' "$tmp/why"
        tap_failed=1
    fi
    : >"$tmp/why"
}

tap_end() {
    exit "$tap_failed"
}
