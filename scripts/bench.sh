#!/bin/sh
# Benchmark echod against a reference in the same run: a plain Python asyncio echo
# server (Debian's python3). Builds, starts both on 127.0.0.1 port 0, runs echod-bench
# against each with the same parameters and prints both results and the ratio
# echod/reference: on a shared machine absolute numbers are noise, ratios are not.
# With -G it measures what a greeting template costs instead: two echods in greet mode,
# one greeting with a plain "bench@HOST: ", the other with the template
# "{instance}@{host}: " that renders to the same bytes, in three rounds (each going first
# in turn), and prints the ratio template/plain (the goal: 1.0).
# Every process it starts is killed on exit (trap).
set -eu
cd "$(dirname "$0")/.."

usage() {
    cat <<EOF
Usage: scripts/bench.sh [-w WORKERS] [-c CONNS] [-s SIZE] [-P PIPELINE] [-d SECONDS] [-u] [-G]
  -w WORKERS   echod worker threads (default 0 = one per CPU)
  -c CONNS     connections (default 50)
  -s SIZE      message size in bytes (default 64)
  -P PIPELINE  messages in flight per connection (default 1 = ping-pong)
  -d SECONDS   duration of each run (default 5)
  -u           UDP instead of TCP
  -G           greet mode: a plain greeting against a template that renders the same
               bytes, 3 alternating rounds of each, and the ratio template/plain
EOF
}

workers=0 conns=50 size=64 pipeline=1 duration=5 udp="" greet=""
while getopts "w:c:s:P:d:uGh" opt; do
    case "$opt" in
        w) workers=$OPTARG ;;
        c) conns=$OPTARG ;;
        s) size=$OPTARG ;;
        P) pipeline=$OPTARG ;;
        d) duration=$OPTARG ;;
        u) udp="-u" ;;
        G) greet=1 ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 64 ;;
    esac
done
shift $((OPTIND - 1))
[ "$#" -eq 0 ] || { usage >&2; exit 64; }
case "$workers" in *[!0-9]* | "") echo "bench: -w needs a number" >&2; exit 64 ;; esac

scripts/build.sh
python=/usr/bin/python3
[ -z "$greet" ] || python=/bin/true # no reference server: echod against itself
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

proto=tcp
[ -z "$udp" ] || proto=udp
# The port of the $proto line in port file $1.
port_of() {
    sed -n "s/^$proto .*:\([0-9]*\)\$/\1/p" "$1"
}

# Start echod as $1 with the service settings $2 for both protocols.
start_echod() {
    cat >"$tmp/$1.conf" <<EOF
workers = $workers;
log_level = "warn";
instance = "bench";
tcp = { listen = ["127.0.0.1:0"]; $2 };
udp = { listen = ["127.0.0.1:0"]; $2 };
EOF
    build/default/echod -c "$tmp/$1.conf" --port-file "$tmp/$1.ports" 2>"$tmp/$1.log" &
    pids="$pids $!"
    echo "$!" >"$tmp/$1.pid"
    wait_lines "$tmp/$1.ports" 2 "$1"
}

# The CPU time echod $1 has used, in clock ticks (utime + stime of /proc/PID/stat).
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$(cat "$tmp/$1.pid")/stat"
}

# The msgs_per_s of the summary line in $tmp/$1.out.
rate() {
    sed -n 's/.* msgs_per_s=\([0-9]*\).*/\1/p' "$tmp/$1.out"
}

if [ -n "$greet" ]; then
    # The same bytes on the wire: what differs is only how echod came by them.
    prefix="bench@$(hostname): "
    start_echod plain "mode = \"greet\"; greeting = \"$prefix\";"
    start_echod template "mode = \"greet\"; greeting = \"{instance}@{host}: \";"
    plain_sum=0 template_sum=0 order="plain template"
    plain_ticks=0 template_ticks=0 plain_msgs=0 template_msgs=0
    for round in 1 2 3; do
        for name in $order; do
            before=$(cpu_ticks "$name")
            build/default/echod-bench $udp -q -p "$(port_of "$tmp/$name.ports")" -c "$conns" \
                -s "$size" -P "$pipeline" -d "$duration" -g "$prefix" >"$tmp/$name.out" || {
                cat "$tmp/$name.out"
                echo "bench: echod-bench against the $name greeting failed" >&2
                exit 1
            }
            echo "round $round $name: $(cat "$tmp/$name.out")"
            ticks=$(($(cpu_ticks "$name") - before))
            msgs=$(sed -n 's/.* msgs=\([0-9]*\).*/\1/p' "$tmp/$name.out")
            eval "${name}_ticks=\$((${name}_ticks + ticks)) ${name}_msgs=\$((${name}_msgs + msgs))"
        done
        plain_sum=$((plain_sum + $(rate plain)))
        template_sum=$((template_sum + $(rate template)))
        # Each goes first in turn, so that a machine getting busier or quieter favours
        # neither.
        [ "$order" = "plain template" ] && order="template plain" || order="plain template"
    done
    # Throughput swings with whatever else the machine runs; echod's CPU time per
    # message much less so: both are printed.
    awk -v t="$template_sum" -v p="$plain_sum" -v tt="$template_ticks" -v pt="$plain_ticks" \
        -v tm="$template_msgs" -v pm="$plain_msgs" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        tc = tm > 0 ? tt * 1e6 / hz / tm : 0
        pc = pm > 0 ? pt * 1e6 / hz / pm : 0
        printf "cpu_us_per_msg template=%.3f plain=%.3f\n", tc, pc
        printf "ratio template/plain msgs_per_s=%.3f (%d / %d on average over 3 rounds each) " \
            "cpu_per_msg=%.3f\n", (p > 0 ? t / p : 0), t / 3, p / 3, (pc > 0 ? tc / pc : 0)
    }'
    exit 0
fi

start_echod echod ""

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

echod_rate=$(rate echod)
reference_rate=$(rate reference)
awk -v e="$echod_rate" -v r="$reference_rate" 'BEGIN {
    printf "ratio echod/reference msgs_per_s=%.2f (%d / %d)\n", (r > 0 ? e / r : 0), e, r
}'
