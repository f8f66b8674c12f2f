#!/bin/sh
# Quick start 1: install what is missing, build, and run echod in the foreground on its
# built-in defaults (TCP and UDP echo on 127.0.0.1:7007). Ctrl-C stops it gracefully.
# Arguments go to echod, e.g. scripts/run.sh -c etc/echod.conf
set -eu
cd "$(dirname "$0")/.."
scripts/build.sh
exec build/default/echod "$@"
