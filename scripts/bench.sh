#!/bin/sh
# Benchmark echod against a reference in the same run: a plain Python asyncio echo
# server (Debian's python3). Builds, starts both on 127.0.0.1 port 0, runs echod-bench
# against each with the same parameters and prints both results and the ratio
# echod/reference: on a shared machine absolute numbers are noise, ratios are not.
# With -m it measures instead what the metrics endpoint costs: the same echod run without
# scrapes and with SCRAPES per second against GET /metrics, alternating, and the ratio.
# Every process it starts is killed on exit (trap).
set -eu
cd "$(dirname "$0")/.."

usage() {
    cat <<EOF
Usage: scripts/bench.sh [-w WORKERS] [-c CONNS] [-s SIZE] [-P PIPELINE] [-d SECONDS] [-u]
                       [-m [-r SCRAPES] [-n ROUNDS]]
  -w WORKERS   echod worker threads (default 0 = one per CPU)
  -c CONNS     connections (default 50)
  -s SIZE      message size in bytes (default 64)
  -P PIPELINE  messages in flight per connection (default 1 = ping-pong)
  -d SECONDS   duration of each run (default 5)
  -u           UDP instead of TCP
  -m           scrape cost: echod alone, runs without and with scrapes of its metrics
               endpoint, alternating, instead of the reference server
  -r SCRAPES   with -m: scrapes per second (default 50)
  -n ROUNDS    with -m: rounds of one run without and one with scrapes (default 5)
EOF
}

workers=0 conns=50 size=64 pipeline=1 duration=5 udp="" scrape_cost="" scrapes=50 rounds=5
while getopts "w:c:s:P:d:umr:n:h" opt; do
    case "$opt" in
        w) workers=$OPTARG ;;
        c) conns=$OPTARG ;;
        s) size=$OPTARG ;;
        P) pipeline=$OPTARG ;;
        d) duration=$OPTARG ;;
        u) udp="-u" ;;
        m) scrape_cost=1 ;;
        r) scrapes=$OPTARG ;;
        n) rounds=$OPTARG ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 64 ;;
    esac
done
shift $((OPTIND - 1))
[ "$#" -eq 0 ] || { usage >&2; exit 64; }
case "$workers" in *[!0-9]* | "") echo "bench: -w needs a number" >&2; exit 64 ;; esac
case "$scrapes$rounds" in *[!0-9]* | "") echo "bench: -r and -n need numbers" >&2; exit 64 ;; esac

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
metrics = { listen = ["127.0.0.1:0"]; };
EOF
build/default/echod -c "$tmp/echod.conf" --port-file "$tmp/echod.ports" 2>"$tmp/echod.log" &
echod_pid=$!
pids="$pids $echod_pid"
wait_lines "$tmp/echod.ports" 3 echod

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

rate() {
    sed -n 's/.* msgs_per_s=\([0-9]*\).*/\1/p' "$tmp/$1.out"
}

if [ -n "$scrape_cost" ]; then
    # A scraper as Prometheus is one: a kept-alive HTTP/1.1 connection, GET /metrics at a
    # steady rate, each reply read whole (Content-Length). It prints its count at the end.
    cat >"$tmp/scraper.py" <<'EOF'
import socket, sys, time
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
conn, done, failed, size = None, 0, 0, 0
start = time.monotonic()
for i in range(int(rate * seconds)):
    time.sleep(max(0.0, start + i / rate - time.monotonic()))
    try:
        if conn is None:
            conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                raise OSError("closed")
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 200"):
            raise OSError(head.split(b"\r\n")[0].decode())
        length = [int(l.split(b":")[1]) for l in head.split(b"\r\n")
                  if l.lower().startswith(b"content-length:")][0]
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                raise OSError("closed")
            body += chunk
        done, size = done + 1, len(body)
    except OSError as e:
        failed += 1
        print("scraper: %s" % e, file=sys.stderr)
        conn = None
print("scrapes=%d failed=%d bytes_each=%d scraper_cpu_ms=%d" % (done, failed, size, time.process_time() * 1000))
EOF
    # CPU ticks (user + system) of echod's threads whose name matches $1 (grep -E): the
    # endpoint's thread is libmicrohttpd's "MHD-single".
    thread_ticks() {
        total=0
        for t in /proc/"$echod_pid"/task/*; do
            grep -qE "$1" "$t/comm" 2>/dev/null || continue
            total=$((total + $(sed 's/.*) //' "$t/stat" | awk '{ print $12 + $13 }')))
        done
        echo "$total"
    }
    metrics_port=$(sed -n 's/^metrics .*:\([0-9]*\)$/\1/p' "$tmp/echod.ports")
    port=$(port_of "$tmp/echod.ports")
    : >"$tmp/ratios"
    scraped_total=0 mhd_ticks=0 all_ticks=0 scraper_ms=0
    i=1
    while [ "$i" -le "$rounds" ]; do
        run_bench "echod-round$i-no-scrapes" "$port"
        mhd_before=$(thread_ticks '^MHD') all_before=$(thread_ticks .)
        "$python" "$tmp/scraper.py" "$metrics_port" "$scrapes" "$duration" >"$tmp/scraper.out" &
        scraper=$!
        pids="$pids $scraper"
        run_bench "echod-round$i-$scrapes-scrapes-per-s" "$port"
        wait "$scraper" || { echo "bench: the scraper failed" >&2; exit 1; }
        mhd_ticks=$((mhd_ticks + $(thread_ticks '^MHD') - mhd_before))
        all_ticks=$((all_ticks + $(thread_ticks .) - all_before))
        cat "$tmp/scraper.out"
        grep -q ' failed=0 ' "$tmp/scraper.out" || { echo "bench: scrapes failed" >&2; exit 1; }
        scraper_ms=$((scraper_ms + $(sed 's/.*scraper_cpu_ms=\([0-9]*\).*/\1/' "$tmp/scraper.out")))
        scraped_total=$((scraped_total + $(sed 's/scrapes=\([0-9]*\).*/\1/' "$tmp/scraper.out")))
        echo "$(rate "echod-round$i-$scrapes-scrapes-per-s") $(rate "echod-round$i-no-scrapes")" >>"$tmp/ratios"
        i=$((i + 1))
    done
    # Each round's two runs are neighbours in time, so the machine's load drifts little
    # between them: the median of the rounds' ratios is the figure; the sums follow.
    awk '{ print ($2 > 0 ? $1 / $2 : 0), $1, $2 }' "$tmp/ratios" | sort -g >"$tmp/sorted"
    awk -v n="$rounds" -v r="$scrapes" '
        { ratio[NR] = $1; s += $2; p += $3; list = list sprintf(" %.3f", $1) }
        END {
            m = (n % 2) ? ratio[(n + 1) / 2] : (ratio[n / 2] + ratio[n / 2 + 1]) / 2
            printf "rounds scraped/unscraped msgs_per_s:%s\n", list
            printf "ratio scraped/unscraped msgs_per_s=%.4f (median of %d rounds; sums %d / %d = %.4f; %d scrapes/s): the scrapes cost %.2f %%\n",
                m, n, s, p, (p > 0 ? s / p : 0), r, (1 - m) * 100
        }' "$tmp/sorted"
    tick_ms=$((1000 / $(getconf CLK_TCK)))
    awk -v m="$mhd_ticks" -v a="$all_ticks" -v k="$scraped_total" -v t="$tick_ms" -v c="$scraper_ms" 'BEGIN {
        printf "metrics thread: %d ms of CPU for %d scrapes (%.0f us each), %.2f %% of echod'"'"'s CPU in the scraped runs; the scraper itself (a client, here on the same cores) used %d ms\n",
            m * t, k, (k > 0 ? m * t * 1000 / k : 0), (a > 0 ? m * 100 / a : 0), c
    }'
    exit 0
fi

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

run_bench echod "$(port_of "$tmp/echod.ports")"
run_bench reference "$(port_of "$tmp/reference.ports")"

echod_rate=$(rate echod)
reference_rate=$(rate reference)
awk -v e="$echod_rate" -v r="$reference_rate" 'BEGIN {
    printf "ratio echod/reference msgs_per_s=%.2f (%d / %d)\n", (r > 0 ? e / r : 0), e, r
}'
