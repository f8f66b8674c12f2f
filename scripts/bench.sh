#!/bin/sh
# Benchmark echod against a reference measured in the same run and print the ratios: on
# a shared machine absolute numbers are noise, ratios are not. It builds first, binds
# every server to 127.0.0.1 port 0 and kills every process it started on exit (trap).
# - default: echod and a plain Python asyncio echo server (Debian's python3), loaded in
#   turn by echod-bench with the same parameters (TCP, or UDP with -u): echod/reference.
# - -G: what a greeting template costs: two echods in greet mode, one greeting with a
#   plain "bench@HOST: ", the other with the template "{instance}@{host}: " that renders
#   to the same bytes, 3 rounds (each going first in turn): template/plain throughput
#   and CPU time per message (the goal: 1.0).
# - -m: what the metrics endpoint costs: the same echod without and with SCRAPES
#   GET /metrics a second, alternating ROUNDS times: the median ratio scraped/unscraped
#   and the endpoint thread's CPU per scrape.
# - udp64: what echod's UDP thread costs against tests/bench/udp_reference (see udp64).
set -eu
# ECHOD=PATH (udp64) is relative to where the script was started.
case "${ECHOD:-/}" in /*) ;; */*) ECHOD=$PWD/$ECHOD ;; esac
cd "$(dirname "$0")/.."

usage() {
    cat <<EOF
Usage: scripts/bench.sh [-w WORKERS] [-c CONNS] [-s SIZE] [-P PIPELINE] [-d SECONDS] [-u] [-G]
       scripts/bench.sh -m [-r SCRAPES] [-n ROUNDS] [-w WORKERS] [-c CONNS] [-s SIZE]
                        [-P PIPELINE] [-d SECONDS] [-u]
       scripts/bench.sh udp64 [-d SECONDS] [-r ROUNDS]
Default: echod and a Python asyncio echo server loaded in turn; the ratio echod/reference.
  -w WORKERS   echod worker threads (default 0 = one per CPU)
  -c CONNS     connections (default 50)
  -s SIZE      message size in bytes (default 64)
  -P PIPELINE  messages in flight per connection (default 1 = ping-pong)
  -d SECONDS   duration of each run (default 5)
  -u           UDP instead of TCP
  -G           greet mode: a plain greeting against a template that renders the same
               bytes, 3 alternating rounds of each, and the ratios template/plain
-m: the metrics endpoint's cost: one echod, runs without and with scrapes, alternating.
  -r SCRAPES   GET /metrics a second in the scraped runs (default 50; 0 = a control)
  -n ROUNDS    rounds of one run without and one with scrapes (default 5)
udp64: 8 UDP sockets, 64-byte ping-pong, against echod, a one-recvfrom, one-sendto C
reference and a plain recvmmsg/sendmmsg loop in turn, all pinned to CPU 0 and
echod-bench to CPU 1; prints the datagrams each served per server CPU-second, the
ratios to the reference, and the throughputs.
  -d SECONDS   duration of each load (default 5)
  -r ROUNDS    loads of each server, alternating (default 3; not SCRAPES as with -m)
  ECHOD=PATH   measure another echod build (an earlier release, say) in echod's place
Exit codes: 0 done, 1 a server or echod-bench failed, 64 bad usage.
EOF
}

# ---------------------------------------------------------------- options
mode=default
if [ "${1:-}" = udp64 ]; then
    mode=udp64
    shift
fi
workers=0 conns=50 size=64 pipeline=1 duration=5 udp="" r="" rounds=5 given=""
while getopts "w:c:s:P:d:r:n:umGh" opt; do
    case "$opt" in
        w) workers=$OPTARG ;;
        c) conns=$OPTARG ;;
        s) size=$OPTARG ;;
        P) pipeline=$OPTARG ;;
        d) duration=$OPTARG ;;
        r) r=$OPTARG ;;
        n) rounds=$OPTARG ;;
        u) udp="-u" ;;
        m | G) ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 64 ;;
    esac
    given="$given$opt"
done
shift $((OPTIND - 1))
[ "$#" -eq 0 ] || { usage >&2; exit 64; }

# Exit 64 unless every option given is one of $1, the options of $mode.
only_options() {
    rest=$given
    while [ -n "$rest" ]; do
        o=${rest%"${rest#?}"}
        rest=${rest#?}
        case "$1" in *"$o"*) ;; *)
            echo "bench: -$o does not go with the $mode mode" >&2
            usage >&2
            exit 64
            ;;
        esac
    done
}

# Exit 64 unless $2, the value of option -$1, is a whole number of at least $3.
number() {
    case "$2" in *[!0-9]* | "") ;; *) [ "$2" -lt "$3" ] || return 0 ;; esac
    echo "bench: -$1 needs a whole number of at least $3, not '$2'" >&2
    exit 64
}

# -r is ROUNDS in udp64 and SCRAPES with -m.
case "$mode:$given" in
    udp64:*)
        only_options dr
        rounds=${r:-3}
        number r "$rounds" 1
        ;;
    default:*m*)
        mode=metrics
        only_options wcsPdurnm
        scrapes=${r:-50}
        number r "$scrapes" 0
        number n "$rounds" 1
        ;;
    default:*G*)
        mode=greet
        only_options wcsPduG
        rounds=3
        ;;
    *) only_options wcsPdu ;;
esac
number w "$workers" 0
number c "$conns" 1
number s "$size" 1
number P "$pipeline" 1
number d "$duration" 1

# ---------------------------------------------------------------- shared
scripts/build.sh
python=/usr/bin/python3
echod=build/default/echod
log_level=warn
proto=tcp
[ -z "$udp" ] || proto=udp
server_pin="" client_pin=""
hz=$(getconf CLK_TCK)

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

# Install python3 if it is missing: the reference server and the scraper are Python.
need_python() {
    [ ! -x "$python" ] || return 0
    echo "bench: installing python3" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
        $sudo apt-get install -y -q --no-install-recommends python3 >/dev/null
}

# Wait up to 5 s for server $1's port file to have $2 lines; if it does not, show the
# server's stderr and exit.
wait_lines() {
    i=0
    while [ ! -f "$tmp/$1.ports" ] || [ "$(wc -l <"$tmp/$1.ports")" -lt "$2" ]; do
        i=$((i + 1))
        if [ "$i" -gt 100 ]; then
            cat "$tmp/$1.log" >&2
            echo "bench: $1 did not start" >&2
            exit 1
        fi
        sleep 0.05
    done
}

# Start "$@" in the background as server $1 ($server_pin in front) and wait for $2
# lines in its port file $tmp/$1.ports: the references print their ports on stdout,
# which goes there; echod prints nothing there and replaces the file (by rename) with
# its --port-file. Its pid goes into $tmp/$1.pid, its stderr into $tmp/$1.log.
serve() {
    name=$1 lines=$2
    shift 2
    $server_pin "$@" >"$tmp/$name.ports" 2>"$tmp/$name.log" &
    pids="$pids $!"
    echo "$!" >"$tmp/$name.pid"
    wait_lines "$name" "$lines"
}

# Start echod as server $1 with the configuration $3 after the common lines, and wait
# for the $2 lines of its port file.
start_echod() {
    printf 'workers = %s;\nlog_level = "%s";\n%s\n' "$workers" "$log_level" "$3" >"$tmp/$1.conf"
    serve "$1" "$2" "$echod" -c "$tmp/$1.conf" --port-file "$tmp/$1.ports"
}

# The tcp and udp sections of echod's configuration, both listening on 127.0.0.1 port 0
# with the settings $1.
services() {
    printf 'tcp = { listen = ["127.0.0.1:0"]; %s };\nudp = { listen = ["127.0.0.1:0"]; %s };' \
        "$1" "$1"
}

# The port of server $1's line for $2 (default $proto) in its port file.
port_of() {
    sed -n "s/^${2:-$proto} .*:\([0-9]*\)\$/\1/p" "$tmp/$1.ports"
}

# The pid of server $1.
pid_of() {
    cat "$tmp/$1.pid"
}

# The CPU time (utime + stime) of the /proc stat file $1, in clock ticks.
stat_ticks() {
    sed 's/.*) //' "$1" | awk '{ print $12 + $13 }'
}

# The CPU time server $1 has used, all its threads, in clock ticks.
cpu_ticks() {
    stat_ticks "/proc/$(pid_of "$1")/stat"
}

# The field $2 (a number) of the name=value summary line in $tmp/$1.out.
field() {
    sed -n "s/.* $2=\([0-9.]*\).*/\1/p" "$tmp/$1.out"
}

# The arithmetic expression $1 (numbers and awk operators) with $2 decimals.
calc() {
    awk "BEGIN { printf \"%.$2f\\n\", $1 }"
}

# $1 / $2 with $3 decimals; 0 when $2 is 0.
div() {
    calc "($2 > 0 ? $1 / $2 : 0)" "$3"
}

# Load server $2 (its $proto port) as run $1 with echod-bench ($client_pin in front):
# the options of the run, then "$@". Its output goes into $tmp/$1.out, and a record
# "$1 msgs=N seconds=S ticks=T" into $tmp/runs, T (also left in $ticks) the CPU time the
# server used meanwhile.
measure() {
    run=$1 server=$2
    shift 2
    before=$(cpu_ticks "$server")
    $client_pin build/default/echod-bench $udp -p "$(port_of "$server")" -c "$conns" \
        -s "$size" -P "$pipeline" -d "$duration" "$@" >"$tmp/$run.out" || {
        rc=$?
        cat "$tmp/$run.out"
        echo "bench: echod-bench against $run failed (exit $rc)" >&2
        exit 1
    }
    ticks=$(($(cpu_ticks "$server") - before))
    echo "$run msgs=$(field "$run" msgs) seconds=$(field "$run" seconds) ticks=$ticks" \
        >>"$tmp/runs"
}

# measure "$@", with a header before and echod-bench's full output after.
run_bench() {
    echo "== $1 ($proto, $conns connections, $size-byte messages, pipeline $pipeline, ${duration} s)"
    measure "$@"
    cat "$tmp/$1.out"
}

# The sum of the field $2 over the records of run $1 in $tmp/runs.
total() {
    awk -v run="$1" -v key="$2" '$1 == run {
        for (i = 2; i <= NF; i++)
            if (index($i, key "=") == 1)
                sum += substr($i, length(key) + 2)
    } END { print sum + 0 }' "$tmp/runs"
}

# Run $1's messages per second over all its records.
rate_of() {
    div "$(total "$1" msgs)" "$(total "$1" seconds)" 0
}

# ---------------------------------------------------------------- default
# The reference: a plain asyncio echo server, TCP and UDP on 127.0.0.1 port 0.
reference_py() {
    cat <<'EOF'
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
}

bench_default() {
    need_python
    start_echod echod 2 "$(services "")"
    reference_py >"$tmp/reference.py"
    serve reference 2 "$python" "$tmp/reference.py"
    run_bench echod echod
    run_bench reference reference
    e=$(field echod msgs_per_s) r=$(field reference msgs_per_s)
    echo "ratio echod/reference msgs_per_s=$(div "$e" "$r" 2) ($e / $r)"
}

# ---------------------------------------------------------------- -G
# The words of $1 with the first moved to the end: each server goes first in turn over
# the rounds, so that a machine getting busier or quieter favours none.
rotate() {
    # shellcheck disable=SC2086 # the words of one string, split on purpose
    set -- $1
    first=$1
    shift
    echo "$* $first"
}

bench_greet() {
    # The same bytes on the wire: what differs is only how echod came by them.
    prefix="bench@$(hostname): "
    start_echod plain 2 "instance = \"bench\";
$(services "mode = \"greet\"; greeting = \"$prefix\";")"
    start_echod template 2 "instance = \"bench\";
$(services 'mode = "greet"; greeting = "{instance}@{host}: ";')"
    order="plain template"
    for round in $(seq "$rounds"); do
        for name in $order; do
            measure "$name" "$name" -q -g "$prefix"
            echo "round $round $name: $(cat "$tmp/$name.out")"
        done
        order=$(rotate "$order")
    done
    # Throughput swings with whatever else the machine runs; echod's CPU time per
    # message much less so: both are printed.
    tt=$(total template ticks) tm=$(total template msgs)
    pt=$(total plain ticks) pm=$(total plain msgs)
    echo "cpu_us_per_msg template=$(div $((tt * 1000000)) $((tm * hz)) 3)" \
        "plain=$(div $((pt * 1000000)) $((pm * hz)) 3)"
    t=$(rate_of template) p=$(rate_of plain)
    echo "ratio template/plain msgs_per_s=$(div "$t" "$p" 3) ($t / $p over $rounds rounds each)" \
        "cpu_per_msg=$(div $((tt * pm)) $((tm * pt)) 3)"
}

# ---------------------------------------------------------------- -m
# A scraper as Prometheus is one: a kept-alive HTTP/1.1 connection, GET /metrics at a
# steady rate, each reply read whole (Content-Length). It prints its count at the end.
scraper_py() {
    cat <<'EOF'
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
print("scraper scrapes=%d failed=%d bytes_each=%d cpu_ms=%d" % (done, failed, size, time.process_time() * 1000))
EOF
}

# CPU ticks of server $1's threads whose name matches $2 (grep -E): the endpoint's
# thread is libmicrohttpd's "MHD-single".
thread_ticks() {
    sum=0
    for t in /proc/"$(pid_of "$1")"/task/*; do
        grep -qE "$2" "$t/comm" 2>/dev/null || continue
        sum=$((sum + $(stat_ticks "$t/stat")))
    done
    echo "$sum"
}

# One scraped run: echod-bench and the scraper at once. Records "scraper scrapes=N
# cpu_ms=M mhd_ticks=T all_ticks=A": the endpoint thread's and all echod's CPU meanwhile.
scraped_run() {
    mhd=$(thread_ticks echod '^MHD') all=$(cpu_ticks echod)
    "$python" "$tmp/scraper.py" "$(port_of echod metrics)" "$scrapes" "$duration" \
        >"$tmp/scraper.out" &
    scraper=$!
    pids="$pids $scraper"
    run_bench scraped echod
    wait "$scraper" || { echo "bench: the scraper failed" >&2; exit 1; }
    cat "$tmp/scraper.out"
    [ "$(field scraper failed)" = 0 ] || { echo "bench: scrapes failed" >&2; exit 1; }
    echo "scraper scrapes=$(field scraper scrapes) cpu_ms=$(field scraper cpu_ms)" \
        "mhd_ticks=$(($(thread_ticks echod '^MHD') - mhd))" \
        "all_ticks=$(($(cpu_ticks echod) - all))" >>"$tmp/runs"
}

# The median of the numbers in file $1, one a line.
median() {
    sort -g "$1" | awk '{ v[NR] = $1 }
        END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

bench_metrics() {
    need_python
    start_echod echod 3 "$(services "")
metrics = { listen = [\"127.0.0.1:0\"]; };"
    scraper_py >"$tmp/scraper.py"
    : >"$tmp/ratios"
    order="unscraped scraped"
    for round in $(seq "$rounds"); do
        echo "round $round"
        for name in $order; do
            if [ "$name" = unscraped ]; then run_bench unscraped echod; else scraped_run; fi
        done
        div "$(field scraped msgs_per_s)" "$(field unscraped msgs_per_s)" 4 >>"$tmp/ratios"
        order=$(rotate "$order")
    done
    # Each round's two runs are neighbours in time, so the machine's load drifts little
    # between them: the median of the rounds' ratios is the figure; the totals follow.
    m=$(median "$tmp/ratios")
    s=$(rate_of scraped) p=$(rate_of unscraped)
    echo "rounds scraped/unscraped msgs_per_s: $(paste -sd ' ' "$tmp/ratios")"
    echo "ratio scraped/unscraped msgs_per_s=$(calc "$m" 4) (median of $rounds rounds;" \
        "all rounds $s / $p = $(div "$s" "$p" 4); $scrapes scrapes/s):" \
        "the scrapes cost $(calc "(1 - $m) * 100" 2) %"
    mhd=$(total scraper mhd_ticks) k=$(total scraper scrapes)
    echo "metrics thread: $((mhd * 1000 / hz)) ms of CPU for $k scrapes" \
        "($(div $((mhd * 1000000)) $((k * hz)) 0) us each)," \
        "$(div $((mhd * 100)) "$(total scraper all_ticks)" 2) % of echod's CPU in the scraped" \
        "runs; the scraper itself (a client, here on the same cores) used" \
        "$(total scraper cpu_ms) ms"
}

# ---------------------------------------------------------------- udp64
# The UDP thread's efficiency: datagrams served per server CPU-second. echod's UDP
# service against tests/bench/udp_reference, the cheapest loop in syscalls (a blocking
# recvfrom and a sendto per datagram), in the same run; and, to show what batching alone
# can reach here, against `udp_reference -b` (a blocking recvmmsg and a sendmmsg, no
# epoll, no guard). All three are started pinned to CPU 0, then loaded in turn, ROUNDS
# times, by echod-bench -u -c 8 -s 64 (ping-pong) pinned to CPU 1. A server's CPU time
# is its utime + stime (all threads) from /proc/PID/stat, read before and after each
# load; the ratios are over the sums of all rounds. No datagram is expected to be lost
# (8 in flight on loopback, 5 s before one counts as lost), so echod-bench's default
# --max-loss (1 %) stands: more loss than that is a failure, not a figure.

# Server $1's datagrams per second of its own CPU time, over all rounds.
per_cpu_s() {
    div $(($(total "$1" msgs) * hz)) "$(total "$1" ticks)" 0
}

bench_udp64() {
    [ "$(nproc)" -ge 2 ] || { echo "bench: udp64 needs two CPUs" >&2; exit 1; }
    server_pin="taskset -c 0" client_pin="taskset -c 1"
    echod=${ECHOD:-$echod} workers=1 log_level=info
    udp=-u proto=udp conns=8 size=64 pipeline=1
    echo "== udp64: 8 sockets, 64-byte ping-pong, $rounds rounds of ${duration} s each;" \
        "servers on CPU 0, echod-bench on CPU 1"
    start_echod echod 1 'tcp = { listen = [ ]; };
udp = { listen = ["127.0.0.1:0"]; };'
    serve reference 1 build/default/tests/bench/udp_reference
    serve batched 1 build/default/tests/bench/udp_reference -b
    order="echod reference batched"
    for round in $(seq "$rounds"); do
        echo "round $round"
        for name in $order; do
            udp64_load "$name"
        done
        order=$(rotate "$order")
    done
    udp64_report
}

# Load server $1 once and print what it served.
udp64_load() {
    measure "$1" "$1" -q
    msgs=$(field "$1" msgs)
    printf "  %-9s %8d datagrams, %6.0f/s, server CPU %.2f s: %6.0f per CPU-second\n" \
        "$1" "$msgs" "$(field "$1" msgs_per_s)" "$(div "$ticks" "$hz" 2)" \
        "$(div $((msgs * hz)) "$ticks" 0)"
}

# echod's mean batch (it logs its counters at exit), each server's totals, the ratios.
udp64_report() {
    kill -TERM "$(pid_of echod)"
    wait "$(pid_of echod)" || true
    sed -n 's/.*stats .*udp_datagrams_in=\([0-9]*\).*udp_batches=\([0-9]*\).*/\1 \2/p' \
        "$tmp/echod.log" | while read -r datagrams batches; do
        echo "echod read $datagrams datagrams in $batches recvmmsg batches:" \
            "$(div "$datagrams" "$batches" 2) per batch"
    done
    for name in echod reference batched; do
        echo "udp64 $name: served=$(total "$name" msgs)" \
            "cpu_s=$(div "$(total "$name" ticks)" "$hz" 2) per_cpu_s=$(per_cpu_s "$name")" \
            "msgs_per_s=$(rate_of "$name")"
    done
    pe=$(per_cpu_s echod) pr=$(per_cpu_s reference) pb=$(per_cpu_s batched)
    re=$(rate_of echod) rr=$(rate_of reference)
    echo "udp64 ratio echod/reference per server CPU-second=$(div "$pe" "$pr" 2) ($pe / $pr);" \
        "throughput=$(div "$re" "$rr" 2) ($re / $rr msg/s)"
    echo "udp64 ratio batched/reference per server CPU-second=$(div "$pb" "$pr" 2) ($pb / $pr)"
}

"bench_$mode"
