#!/bin/sh
# test_install: `make install DESTDIR=...` puts every file where README's "Installing"
# says, with the directories this build was configured with: echod in sbindir,
# echod-cli and echod-bench in bindir, the sample configuration as
# sysconfdir/echod/echod.conf, each man page in mandir/manN, and every unit of
# systemdsystemunit_DATA in systemdsystemunitdir; nothing else. The installed echod
# accepts the installed sample, the installed pages name the configured paths, and
# `make uninstall` removes every file. Needs ECHOD_BUILDDIR, ECHOD_SRCDIR and the
# ECHOD_INSTALL_* variables (make check sets them). TAP.
set -u
builddir=${ECHOD_BUILDDIR:?}
srcdir=${ECHOD_SRCDIR:?}
sbindir=${ECHOD_INSTALL_SBINDIR:?}
bindir=${ECHOD_INSTALL_BINDIR:?}
sysconfdir=${ECHOD_INSTALL_SYSCONFDIR:?}
mandir=${ECHOD_INSTALL_MANDIR:?}
unitdir=${ECHOD_INSTALL_UNITDIR:-}
units=${ECHOD_INSTALL_UNITS:-}
. "$srcdir/tests/tap.sh"
tap_begin test_install 6
dest=$tmp/dest

# This make's own job server and flags are not ours: run a plain make.
sub_make() {
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL "${MAKE:-make}" -s -C "$builddir" "$@" \
        >"$tmp/why" 2>&1
}

sub_make install DESTDIR="$dest"
report $? "make install DESTDIR=... succeeds"

# What must be installed, one path per line, as the files appear under $dest.
{
    echo "$sbindir/echod"
    echo "$bindir/echod-cli"
    echo "$bindir/echod-bench"
    echo "$sysconfdir/echod/echod.conf"
    for page in echod.8 echod.conf.5 echod-cli.1 echod-bench.1; do
        echo "$mandir/man${page##*.}/$page"
    done
    for unit in $units; do
        echo "$unitdir/$(basename "$unit")"
    done
} | sed 's|//*|/|g' | sort >"$tmp/want" # a configured "DIR//lib" is DIR/lib
(cd "$dest" && find . ! -type d | sed 's|^\.||' | sort) >"$tmp/have"
comm -23 "$tmp/want" "$tmp/have" | sed 's/^/not installed: /' >>"$tmp/why"
comm -13 "$tmp/want" "$tmp/have" | sed 's/^/installed but not expected: /' >>"$tmp/why"
for prog in "$sbindir/echod" "$bindir/echod-cli" "$bindir/echod-bench"; do
    [ -x "$dest$prog" ] || echo "not executable: $prog" >>"$tmp/why"
done
cmp "$srcdir/etc/echod.conf" "$dest$sysconfdir/echod/echod.conf" >>"$tmp/why" 2>&1
[ ! -s "$tmp/why" ]
report $? "every file is where it belongs, and nothing else is installed"

out=$("$dest$sbindir/echod" -t -c "$dest$sysconfdir/echod/echod.conf" 2>&1)
[ "$out" = "configuration OK" ] || echo "echod -t said: $out" >>"$tmp/why"
[ ! -s "$tmp/why" ]
report $? "the installed echod accepts the installed sample configuration"

for page in man8/echod.8 man5/echod.conf.5; do
    grep -qF -- "$sysconfdir/echod/echod.conf" "$dest$mandir/$page" ||
        echo "$page does not name $sysconfdir/echod/echod.conf" >>"$tmp/why"
done
grep -n '@[a-zA-Z_]*@' "$dest$mandir"/man*/* >>"$tmp/why"
[ ! -s "$tmp/why" ]
report $? "the installed man pages name the configured paths, with no @VARIABLE@ left"

[ -z "$units" ] || [ -n "$unitdir" ] || echo "units to install but no unit directory" >>"$tmp/why"
[ ! -s "$tmp/why" ]
report $? "units have a directory (configure --with-systemdsystemunitdir) when there are any"

sub_make uninstall DESTDIR="$dest" && : >"$tmp/why"
(cd "$dest" && find . ! -type d) >>"$tmp/why"
[ ! -s "$tmp/why" ]
report $? "make uninstall DESTDIR=... removes every file"
tap_end
