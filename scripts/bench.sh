#!/bin/sh
# Benchmark echod against a reference in the same run: a plain Python asyncio echo
# server (Debian's python3). Builds, starts both on 127.0.0.1 port 0, runs echod-bench
# against each with the same parameters and prints both results and the ratio
# echod/reference: on a shared machine absolute numbers are noise, ratios are not.
# Every process it starts is killed on exit (trap).
set -eu
cd "$(dirname "$0")/.."

usage() {
    cat <<EOF
Usage: scripts/bench.sh [-w WORKERS] [-c CONNS] [-s SIZE] [-P PIPELINE] [-d SECONDS] [-u]
  -w WORKERS   echod worker threads (default 0 = one per CPU)
  -c CONNS     connections (default 50)
  -s SIZE      message size in bytes (default 64)
  -P PIPELINE  messages in flight per connection (default 1 = ping-pong)
  -d SECONDS   duration of each run (default 5)
  -u           UDP instead of TCP
EOF
}

workers=0 conns=50 size=64 pipeline=1 duration=5 udp=""
while getopts "w:c:s:P:d:uh" opt; do
    case "$opt" in
        w) workers=$OPTARG ;;
        c) conns=$OPTARG ;;
        s) size=$OPTARG ;;
        P) pipeline=$OPTARG ;;
        d) duration=$OPTARG ;;
        u) udp="-u" ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 64 ;;
    esac
done
shift $((OPTIND - 1))
[ "$#" -eq 0 ] || { usage >&2; exit 64; }
case "$workers" in *[!0-9]* | "") echo "bench: -w needs a number" >&2; exit 64 ;; esac

scripts/build.sh
python=/usr/bin/python3
if [ ! -x "$python" ]; then
    echo "bench: installing python3 for the reference server" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
        $sudo apt-get install -y -q --no-install-recommends python3 >/dev/null
fi

tmp=$(mktemp -d)
pids=""
cleanup() {
    for pid in $pids; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $pids; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Wait up to 5 s for file $1 to have $2 lines.
wait_lines() {
    i=0
    while [ "$(cat "$1" 2>/dev/null | wc -l)" -lt "$2" ]; do
        i=$((i + 1))
        [ "$i" -le 100 ] || { echo "bench: $3 did not start" >&2; exit 1; }
        sleep 0.05
    done
}

cat >"$tmp/echod.conf" <<EOF
workers = $workers;
log_level = "warn";
tcp = { listen = ["127.0.0.1:0"]; };
udp = { listen = ["127.0.0.1:0"]; };
EOF
build/default/echod -c "$tmp/echod.conf" --port-file "$tmp/echod.ports" 2>"$tmp/echod.log" &
pids="$pids $!"
wait_lines "$tmp/echod.ports" 2 echod

cat >"$tmp/reference.py" <<'EOF'
# The reference: a plain asyncio echo server, TCP and UDP on 127.0.0.1, port 0.
import asyncio, sys

class TcpEcho(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)

class UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport
    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(TcpEcho, "127.0.0.1", 0)
    udp, _ = await loop.create_datagram_endpoint(UdpEcho, local_addr=("127.0.0.1", 0))
    print("tcp 127.0.0.1:%d" % server.sockets[0].getsockname()[1])
    print("udp 127.0.0.1:%d" % udp.get_extra_info("sockname")[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
EOF
"$python" "$tmp/reference.py" >"$tmp/reference.ports" 2>"$tmp/reference.log" &
pids="$pids $!"
wait_lines "$tmp/reference.ports" 2 "the reference server"

proto=tcp
[ -z "$udp" ] || proto=udp
# The port of the $proto line in port file $1.
port_of() {
    sed -n "s/^$proto .*:\([0-9]*\)\$/\1/p" "$1"
}

# Run echod-bench against port $2, named $1; its output into $tmp/$1.out.
run_bench() {
    echo "== $1 ($proto, $conns connections, $size-byte messages, pipeline $pipeline, ${duration} s)"
    if ! build/default/echod-bench $udp -p "$2" -c "$conns" -s "$size" -P "$pipeline" -d "$duration" \
        >"$tmp/$1.out"; then
        cat "$tmp/$1.out"
        echo "bench: echod-bench against $1 failed" >&2
        exit 1
    fi
    cat "$tmp/$1.out"
}

run_bench echod "$(port_of "$tmp/echod.ports")"
run_bench reference "$(port_of "$tmp/reference.ports")"

rate() {
    sed -n 's/.* msgs_per_s=\([0-9]*\).*/\1/p' "$tmp/$1.out"
}
echod_rate=$(rate echod)
reference_rate=$(rate reference)
awk -v e="$echod_rate" -v r="$reference_rate" 'BEGIN {
    printf "ratio echod/reference msgs_per_s=%.2f (%d / %d)\n", (r > 0 ? e / r : 0), e, r
}'
