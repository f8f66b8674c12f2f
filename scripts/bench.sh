#!/bin/sh
# Benchmark echod against a reference in the same run: a plain Python asyncio echo
# server (Debian's python3). Builds, starts both on 127.0.0.1 port 0, runs echod-bench
# against each with the same parameters and prints both results and the ratio
# echod/reference: on a shared machine absolute numbers are noise, ratios are not.
# `scripts/bench.sh udp64` measures the UDP thread's cost instead (see udp64 below).
# Every process it starts is killed on exit (trap).
set -eu
cd "$(dirname "$0")/.."

usage() {
    cat <<EOF
Usage: scripts/bench.sh [-w WORKERS] [-c CONNS] [-s SIZE] [-P PIPELINE] [-d SECONDS] [-u]
       scripts/bench.sh udp64 [-d SECONDS] [-r ROUNDS]
  -w WORKERS   echod worker threads (default 0 = one per CPU)
  -c CONNS     connections (default 50)
  -s SIZE      message size in bytes (default 64)
  -P PIPELINE  messages in flight per connection (default 1 = ping-pong)
  -d SECONDS   duration of each run (default 5)
  -u           UDP instead of TCP
  -r ROUNDS    udp64: loads of each server, alternating (default 3)
udp64: 8 UDP sockets, 64-byte ping-pong, against echod, a one-recvfrom, one-sendto C
reference and a plain recvmmsg/sendmmsg loop in turn, all pinned to CPU 0 and
echod-bench to CPU 1; prints the datagrams each served per server CPU-second, the
ratios to the reference, and the throughputs. ECHOD=PATH measures another echod build
(an earlier release, say) in echod's place.
EOF
}

scenario=tcp
if [ "${1:-}" = udp64 ]; then
    scenario=udp64
    shift
fi

workers=0 conns=50 size=64 pipeline=1 duration=5 udp="" rounds=3
while getopts "w:c:s:P:d:r:uh" opt; do
    case "$opt" in
        w) workers=$OPTARG ;;
        c) conns=$OPTARG ;;
        s) size=$OPTARG ;;
        P) pipeline=$OPTARG ;;
        d) duration=$OPTARG ;;
        r) rounds=$OPTARG ;;
        u) udp="-u" ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 64 ;;
    esac
done
shift $((OPTIND - 1))
[ "$#" -eq 0 ] || { usage >&2; exit 64; }
case "$workers" in *[!0-9]* | "") echo "bench: -w needs a number" >&2; exit 64 ;; esac
case "$rounds" in *[!0-9]* | "" | 0) echo "bench: -r needs a positive number" >&2; exit 64 ;; esac

scripts/build.sh
python=/usr/bin/python3
if [ "$scenario" = tcp ] && [ ! -x "$python" ]; then
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

# ---------------------------------------------------------------- udp64
# The UDP thread's efficiency: datagrams served per server CPU-second. echod's UDP
# service against tests/bench/udp_reference, the cheapest loop in syscalls (a blocking
# recvfrom and a sendto per datagram), in the same run; and, to show what batching alone
# can reach here, against `udp_reference -b` (a blocking recvmmsg and a sendmmsg, no
# epoll, no guard). All three are started pinned to CPU 0, then loaded in turn, ROUNDS
# times, by echod-bench -u -c 8 -s 64 (ping-pong) pinned to CPU 1. A server's CPU time
# is its utime + stime (all threads) from /proc/PID/stat, read before and after each
# load; the ratios are over the sums of all rounds.
SERVER_CPU=0
CLIENT_CPU=1

# The CPU time process $1 has used, in clock ticks.
cpu_ticks() {
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# Start "$@" pinned to SERVER_CPU, named $1 (output in $tmp/$1.stdout and .log); its
# pid in server_pid.
udp64_start() {
    name=$1
    shift
    taskset -c "$SERVER_CPU" "$@" >"$tmp/$name.stdout" 2>"$tmp/$name.log" &
    server_pid=$!
    pids="$pids $server_pid"
}

# The port of the udp line of port file $1.
udp_port() {
    sed -n 's/^udp .*:\([0-9]*\)$/\1/p' "$1"
}

# One udp64 load against port $2 of process $3, named $1: appends "NAME served=N
# ticks=T seconds=S" to $tmp/udp64 and prints the round's line.
udp64_run() {
    before=$(cpu_ticks "$3")
    if ! taskset -c "$CLIENT_CPU" build/default/echod-bench -u -p "$2" -c 8 -s 64 \
        -d "$duration" -q >"$tmp/$1.out"; then
        cat "$tmp/$1.out"
        echo "bench: echod-bench against $1 failed" >&2
        exit 1
    fi
    after=$(cpu_ticks "$3")
    sed -n 's/.* msgs=\([0-9]*\) .* seconds=\([0-9.]*\) .*/\1 \2/p' "$tmp/$1.out" |
        awk -v name="$1" -v ticks=$((after - before)) -v hz="$hz" '{
            printf "%s served=%d ticks=%d seconds=%s\n", name, $1, ticks, $2 >> "'"$tmp/udp64"'"
            printf "  %-9s %8d datagrams, %6.0f/s, server CPU %.2f s: %6.0f per CPU-second\n",
                name, $1, $1 / $2, ticks / hz, (ticks > 0 ? $1 * hz / ticks : 0)
        }'
}

# The totals of $tmp/udp64 and the ratios.
udp64_report() {
    awk -v hz="$hz" '
        { split($2, a, "="); split($3, b, "="); split($4, c, "=")
          served[$1] += a[2]; ticks[$1] += b[2]; secs[$1] += c[2] }
        END {
            split("echod reference batched", names, " ")
            for (i = 1; i <= 3; i++) {
                n = names[i]
                per[n] = ticks[n] > 0 ? served[n] * hz / ticks[n] : 0
                rate[n] = secs[n] > 0 ? served[n] / secs[n] : 0
                printf "udp64 %s: served=%d cpu_s=%.2f per_cpu_s=%.0f msgs_per_s=%.0f\n",
                    n, served[n], ticks[n] / hz, per[n], rate[n]
            }
            printf "udp64 ratio echod/reference per server CPU-second=%.2f (%.0f / %.0f);" \
                " throughput=%.2f (%.0f / %.0f msg/s)\n",
                (per["reference"] > 0 ? per["echod"] / per["reference"] : 0),
                per["echod"], per["reference"],
                (rate["reference"] > 0 ? rate["echod"] / rate["reference"] : 0),
                rate["echod"], rate["reference"]
            printf "udp64 ratio batched/reference per server CPU-second=%.2f (%.0f / %.0f)\n",
                (per["reference"] > 0 ? per["batched"] / per["reference"] : 0),
                per["batched"], per["reference"]
        }' "$tmp/udp64"
}

udp64() {
    [ "$(nproc)" -ge 2 ] || { echo "bench: udp64 needs two CPUs" >&2; exit 1; }
    hz=$(getconf CLK_TCK)
    echo "== udp64: 8 sockets, 64-byte ping-pong, $rounds rounds of ${duration} s each;" \
        "servers on CPU $SERVER_CPU, echod-bench on CPU $CLIENT_CPU"
    cat >"$tmp/echod.conf" <<EOF
workers = 1;
log_level = "info";
tcp = { listen = [ ]; };
udp = { listen = ["127.0.0.1:0"]; };
EOF
    udp64_start echod "${ECHOD:-build/default/echod}" -c "$tmp/echod.conf" \
        --port-file "$tmp/echod.ports"
    echod_pid=$server_pid
    udp64_start reference build/default/tests/bench/udp_reference
    reference_pid=$server_pid
    udp64_start batched build/default/tests/bench/udp_reference -b
    batched_pid=$server_pid
    wait_lines "$tmp/echod.ports" 1 echod
    wait_lines "$tmp/reference.stdout" 1 "the reference server"
    wait_lines "$tmp/batched.stdout" 1 "the batched reference server"
    round=1
    while [ "$round" -le "$rounds" ]; do
        echo "round $round"
        udp64_run echod "$(udp_port "$tmp/echod.ports")" "$echod_pid"
        udp64_run reference "$(udp_port "$tmp/reference.stdout")" "$reference_pid"
        udp64_run batched "$(udp_port "$tmp/batched.stdout")" "$batched_pid"
        round=$((round + 1))
    done
    kill -TERM "$echod_pid"
    wait "$echod_pid" || true
    sed -n 's/.*stats .*udp_datagrams_in=\([0-9]*\).*udp_batches=\([0-9]*\).*/\1 \2/p' \
        "$tmp/echod.log" | awk '{ printf "echod read %d datagrams in %d recvmmsg batches:" \
            " %.2f per batch\n", $1, $2, ($2 > 0 ? $1 / $2 : 0) }'
    udp64_report
}
if [ "$scenario" = udp64 ]; then
    udp64
    exit 0
fi

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
