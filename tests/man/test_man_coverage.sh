#!/bin/sh
# test_man_coverage: every man page documents what its program offers, and nothing it
# no longer does. The options are those each built binary prints in --help (every long
# and short one); each must be an ".It Fl" entry of its page, and each entry an option;
# so must the exit codes --help lists, as ".It N" entries of the page's EXIT STATUS.
# The configuration keys come from conf.c's one list of keys (tests/man/list_names,
# conf_each_key: a load refuses any other name); each must be an ".It Ic" entry of
# echod.conf(5) and a row of README's table. The counters come from stats.h; each must
# be an ".It Va" entry of echod(8) and in README's table. Each miss is named. TAP.
# Needs ECHOD_BUILDDIR, ECHOD_SRCDIR and the ECHOD_*_BIN paths (make check sets them).
set -u
builddir=${ECHOD_BUILDDIR:?}
srcdir=${ECHOD_SRCDIR:?}
man=$builddir/man
. "$srcdir/tests/tap.sh"
tap_begin test_man_coverage 15

# The options in program $1's --help, one per line: "-c", "--config", ...
help_options() {
    "$1" --help >"$tmp/help" 2>&1 || { echo "$1 --help failed" >&2; return 1; }
    grep -oE '(^|[][ ,|])--?[A-Za-z0-9][A-Za-z0-9-]*' "$tmp/help" |
        sed 's/^[][ ,|]//' |
        awk '/^--/ { print; next } { for (i = 2; i <= length($0); i++) print "-" substr($0, i, 1) }' |
        sort -u
}

# The options page $1 documents as ".It Fl x ... , Fl \-long ..." entries.
page_options() {
    awk '/^\.It / {
        on = 0
        for (i = 2; i <= NF; i++) {
            if ($i == "Fl") { on = 1; continue }
            if ($i ~ /^[A-Z][a-z][a-z]?$/) { on = 0; continue }
            if (on && $i !~ /^[][,|;:.()]$/) { o = $i; gsub(/\\-/, "-", o); print "-" o }
        }
    }' "$1" | sort -u
}

# The exit codes program $1's --help lists after "Exit codes:", one per line.
help_exit_codes() {
    "$1" --help 2>&1 | sed -n '/Exit codes:/,$p' | sed 's/.*Exit codes://' |
        grep -oE '(^|[ ,])[0-9]+ [a-z]' | grep -oE '[0-9]+' | sort -u
}

# The exit codes page $1 lists as ".It N" entries of its EXIT STATUS section.
page_exit_codes() {
    awk '/^\.Sh / { in_exit = ($0 == ".Sh EXIT STATUS") }
         in_exit && /^\.It [0-9]+/ { print $2 }' "$1" | sort -u
}

# The names of page $2's ".It MACRO NAME" entries, MACRO = $1.
page_items() {
    awk -v macro="$1" '/^\.It / && $2 == macro { print $3 }' "$2" | sort -u
}

# Compare the sorted lists $1 (what the code has) and $2 (what the page documents),
# naming the page $3; 0 if they are the same, else write the differences to $tmp/why.
compare() {
    comm -23 "$1" "$2" | sed "s|^|missing from $3: |" >>"$tmp/why"
    comm -13 "$1" "$2" | sed "s|^|documented in $3 but not in the code: |" >>"$tmp/why"
    [ ! -s "$tmp/why" ]
}

# Whether the list $1 holds every one of the names $2...: the extraction must not come
# back empty or half, or the comparisons above could never fail.
holds() {
    list=$1
    shift
    for name in "$@"; do
        grep -qxF -- "$name" "$list" || echo "'$name' was not extracted from $list" >>"$tmp/why"
    done
    [ ! -s "$tmp/why" ]
}

# Options: one program, its page.
check_options() {
    prog=$1 page=$2
    help_options "$prog" >"$tmp/opts.have" 2>"$tmp/why"
    holds "$tmp/opts.have" -h --help -V --version
    report $? "$(basename "$prog") --help names -h, --help, -V, --version"
    page_options "$man/$page" >"$tmp/opts.doc"
    compare "$tmp/opts.have" "$tmp/opts.doc" "$page"
    report $? "every option of $(basename "$prog") --help is in $page, and only those"
    help_exit_codes "$prog" >"$tmp/codes.have"
    page_exit_codes "$man/$page" >"$tmp/codes.doc"
    holds "$tmp/codes.have" 0 64 && compare "$tmp/codes.have" "$tmp/codes.doc" "$page's EXIT STATUS"
    report $? "every exit code of $(basename "$prog") --help is in $page's EXIT STATUS, and only those"
}
check_options "${ECHOD_BIN:?}" echod.8
check_options "${ECHOD_CLI_BIN:?}" echod-cli.1
check_options "${ECHOD_BENCH_BIN:?}" echod-bench.1

# Configuration keys.
"$builddir/tests/man/list_names" keys | sort -u >"$tmp/keys.have"
holds "$tmp/keys.have" workers log_level tcp.listen udp.greeting udp.guard.rate
report $? "conf_each_key lists keys of every level"
page_items Ic "$man/echod.conf.5" >"$tmp/keys.doc"
compare "$tmp/keys.have" "$tmp/keys.doc" echod.conf.5
report $? "every configuration key is in echod.conf.5, and only those"
while read -r key; do
    grep -qF -- "| \`$key\` |" "$srcdir/README.md" ||
        echo "missing from README.md's configuration table: $key" >>"$tmp/why"
done <"$tmp/keys.have"
[ ! -s "$tmp/why" ]
report $? "every configuration key is in README.md's configuration table"

# Counters.
"$builddir/tests/man/list_names" counters | sort -u >"$tmp/counters.have"
holds "$tmp/counters.have" tcp_accepted udp_drop_global_rate
report $? "stats.h lists the counters"
page_items Va "$man/echod.8" >"$tmp/counters.doc"
compare "$tmp/counters.have" "$tmp/counters.doc" echod.8
report $? "every counter is in echod.8's COUNTERS, and only those"
while read -r counter; do
    grep -E '^\| ' "$srcdir/README.md" | grep -qF -- "\`$counter\`" ||
        echo "missing from README.md's counters table: $counter" >>"$tmp/why"
done <"$tmp/counters.have"
[ ! -s "$tmp/why" ]
report $? "every counter is in README.md's counters table"
tap_end
