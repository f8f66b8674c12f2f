/* test_bench: echod-bench against the real echod and against test servers forked here.
 * TCP and UDP runs count exactly the messages asked for and verify them, on one thread
 * or several; a server that answers wrongly (greet mode, or one flipped byte) is a
 * mismatch with exit 1 naming the connection and the offset; a UDP server that never
 * answers fails the run; a refused port exits 1 saying so; bad usage exits 64. Open
 * loop: against a server that stalls 200 ms once a second, -R's p99 shows the stall
 * where closed loop hides it, and -R holds its rate within 2 %. Churn counts the
 * connections echod accepted, --connect-rate spreads the connects, UDP counts
 * reordering, --latency-out writes .hgrm, and a terminal gets a progress line a second.
 * With -g, greet mode's replies (the greeting, then the message) verify, pipelined too,
 * a wrong -g is a mismatch naming the greeting's byte, and a flipped byte is named by
 * its offset in the stream of replies. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int setup_greet(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  "tcp = { listen = [ \"127.0.0.1:0\" ]; mode = \"greet\"; };\n"
                  "udp = { listen = [ \"127.0.0.1:0\" ]; mode = \"greet\"; };\n",
                  NULL);
    return 0;
}

/* Run echod-bench with the NULL-terminated args, within 30 s. */
static struct h_output run_bench(const char *const *args)
{
    return h_run_env("ECHOD_BENCH_BIN", args, NULL, 0, 30000);
}

/* The number after " key=" in the summary line, or fail. */
static unsigned long long summary_value(const struct h_output *r, const char *key)
{
    char needle[64];
    snprintf(needle, sizeof(needle), " %s=", key);
    const char *at = strstr(r->out, needle);
    if (at == NULL)
        fail_msg("no '%s' in echod-bench's summary: \"%s\"", needle, r->out);
    return strtoull(at + strlen(needle), NULL, 10);
}

static void port_arg(char *buf, size_t size, const struct sockaddr_storage *sa)
{
    snprintf(buf, size, "%u", h_port_of(sa));
}

static void bench_tcp_counts_every_message(void **state)
{
    (void)state;
    char port[16];
    port_arg(port, sizeof(port), &echod.tcp[0]);
    const char *args[] = {"-p", port, "-c", "10", "-n", "200", "-s", "64", "-q", NULL};
    struct h_output r = run_bench(args);
    h_note("%s", r.out);
    if (r.code != 0)
        fail_msg("echod-bench exited %d, stderr \"%s\"", r.code, r.err);
    assert_int_equal(summary_value(&r, "msgs"), 10 * 200);
    assert_int_equal(summary_value(&r, "lost"), 0);
    if (strstr(r.out, "p99_us=") == NULL || strchr(r.out, '\n') != strrchr(r.out, '\n'))
        fail_msg("-q should print the one summary line only: \"%s\"", r.out);
    h_output_free(&r);
}

/* Large messages, pipelined: the stream splits them across reads and writes. */
static void bench_tcp_pipelined_large(void **state)
{
    (void)state;
    char port[16];
    port_arg(port, sizeof(port), &echod.tcp[0]);
    const char *args[] = {"-p", port, "-c", "4", "-n", "20", "-s", "100000", "-P", "4", NULL};
    struct h_output r = run_bench(args);
    if (r.code != 0)
        fail_msg("echod-bench exited %d, stderr \"%s\"", r.code, r.err);
    assert_int_equal(summary_value(&r, "msgs"), 4 * 20);
    if (strstr(r.out, "latency") == NULL)
        fail_msg("without -q the human-readable block is missing: \"%s\"", r.out);
    h_output_free(&r);
}

/* UDP: every datagram is either answered and verified or counted as lost. */
static void bench_udp_accounts_for_every_datagram(void **state)
{
    (void)state;
    char port[16];
    port_arg(port, sizeof(port), &echod.udp[0]);
    const char *args[] = {"-u", "-p", port, "-c",   "4",  "-n", "100",
                          "-P", "4",  "-T", "1000", "-q", NULL};
    struct h_output r = run_bench(args);
    if (r.code != 0)
        fail_msg("echod-bench -u exited %d, stderr \"%s\"", r.code, r.err);
    unsigned long long msgs = summary_value(&r, "msgs"), lost = summary_value(&r, "lost");
    h_note("udp: %llu answered, %llu lost", msgs, lost);
    assert_int_equal(msgs + lost, 4 * 100);
    /* Exit 0 means at most --max-loss (1 %) went unanswered: echod answered the rest. */
    if (lost > 4)
        fail_msg("udp: %llu of 400 lost, above the 1 %% --max-loss, yet exit 0", lost);
    h_output_free(&r);
}

/* Run echod-bench with args, which must exit 1 with needle in its error. */
static void expect_mismatch(const char *const *args, const char *needle, const char *what)
{
    struct h_output r = run_bench(args);
    h_note("%s: %s", what, r.err);
    if (r.code != 1 || strstr(r.err, needle) == NULL)
        fail_msg("%s: expected exit 1 and \"%s\", got exit %d, stderr \"%s\"", what, needle, r.code,
                 r.err);
    h_output_free(&r);
}

/* Greet mode answers with a greeting first: every protocol must report a mismatch. */
static void bench_wrong_answers_exit_1(void **state)
{
    (void)state;
    char port[16];
    for (int is_udp = 0; is_udp <= 1; is_udp++) {
        port_arg(port, sizeof(port), is_udp ? &echod.udp[0] : &echod.tcp[0]);
        const char *args[] = {"-p", port, "-c", "2", "-n", "10", "-q", is_udp ? "-u" : NULL, NULL};
        expect_mismatch(args, "mismatch",
                        is_udp ? "udp against greet mode" : "tcp against greet mode");
    }
}

/* -g TEXT: every reply is TEXT then the message, over TCP (pipelined, so replies run
 * together) and UDP; the default greet-mode greetings of setup_greet. A wrong -g is a
 * mismatch, and one of the right length names the greeting's byte ("Hello, " against
 * "Hello! ": byte 5 of message 0's reply). */
static void bench_greeting_verifies(void **state)
{
    (void)state;
    char port[16];
    for (int is_udp = 0; is_udp <= 1; is_udp++) {
        port_arg(port, sizeof(port), is_udp ? &echod.udp[0] : &echod.tcp[0]);
        const char *greeting = is_udp ? "Hello, client! You sent: " : "Hello, ";
        const char *args[] = {"-p", port, "-c",  "4",  "-n",     "300", "-P",
                              "8",  "-s", "200", "-g", greeting, "-q",  is_udp ? "-u" : NULL,
                              NULL};
        struct h_output r = run_bench(args);
        if (r.code != 0)
            fail_msg("%s: echod-bench -g exited %d, stderr \"%s\"", is_udp ? "udp" : "tcp", r.code,
                     r.err);
        assert_int_equal(summary_value(&r, "msgs"), 4 * 300);
        h_output_free(&r);
        const char *wrong[] = {
            "-p", port, "-c", "1", "-n", "5", "-g", "Hi! ", "-q", is_udp ? "-u" : NULL, NULL};
        expect_mismatch(wrong, "mismatch", "a wrong -g");
        const char *same_length = is_udp ? "Hello, client! You sent! " : "Hello! ";
        const char *named[] = {
            "-p", port, "-c", "1", "-n", "5", "-g", same_length, "-q", is_udp ? "-u" : NULL, NULL};
        expect_mismatch(named,
                        is_udp ? "message 0, greeting byte 23, stream offset 23: expected 0x21, "
                                 "got 0x3a"
                               : "message 0, greeting byte 5, stream offset 5: expected 0x21, "
                                 "got 0x2c",
                        "a wrong -g of the right length");
    }
}

static void bench_refused_exits_1(void **state)
{
    (void)state;
    char port[16];
    snprintf(port, sizeof(port), "%u", h_unused_tcp_port());
    const char *args[] = {"-p", port, "-c", "3", "-n", "5", NULL};
    struct h_output r = run_bench(args);
    if (r.code != 1 || strcasestr(r.err, "refused") == NULL)
        fail_msg("refused port: expected exit 1 saying so, got exit %d, stderr \"%s\"", r.code,
                 r.err);
    h_output_free(&r);
}

/* -H localhost, where localhost is ::1 first, then 127.0.0.1, and only 127.0.0.1 has
 * echod: echod-bench tries each address in turn, then runs every connection there. */
static void bench_tries_each_address(void **state)
{
    (void)state;
    char port[16];
    port_arg(port, sizeof(port), &echod.tcp[0]);
    const char *args[] = {"-H", "localhost", "-p", port, "-c", "4", "-n", "50", "-q", NULL};
    struct h_output r;
    if (!h_run_localhost_v6_refused(h_port_of(&echod.tcp[0]), h_env("ECHOD_BENCH_BIN"), args, NULL,
                                    0, 30000, &r))
        skip();
    if (r.code != 0)
        fail_msg("-H localhost (::1 refused, then 127.0.0.1): echod-bench exited %d, stderr \"%s\"",
                 r.code, r.err);
    assert_int_equal(summary_value(&r, "msgs"), 4 * 50);
    h_output_free(&r);
}

static void bench_bad_usage_exits_64(void **state)
{
    (void)state;
    /* Each refused with exit 64 and the message that names its own mistake. */
    static const struct {
        const char *args[6]; /* NULL-terminated */
        const char *needle;
    } cases[] = {
        {{"-n", "5", "-d", "1"}, "-n and -d exclude each other"},
        {{"-c", "0"}, "invalid connection count '0'"},
        {{"-s", "64k"}, "invalid size '64k'"},
        {{"-u", "-s", "4"}, "-s 4: UDP messages are 8 to 65507 bytes"},
        {{"-p", "http"}, "invalid port 'http'"},
        {{"-n", "1", "extra"}, "unexpected argument 'extra'"},
        /* -g: over TCP a message must be a line; over UDP the reply must fit a datagram. */
        {{"-g", "Hi ", "-s", "8"}, "-g over TCP needs -s above 8"},
        {{"-u", "-g", "Hi ", "-s", "65505"}, "a UDP reply holds at most 65507 bytes"},
        {{"-t", "0"}, "invalid thread count '0'"},
        {{"-c", "2", "-t", "3"}, "-t 3 needs at least 3 connections (-c 2)"},
        {{"-R", "0"}, "invalid rate '0'"},
        {{"-u", "--churn"}, "--churn is for TCP"},
        {{"-R", "100", "--churn"}, "--churn and -R exclude each other"},
        {{"-u", "--max-loss", "101"}, "invalid loss percentage '101'"},
        {{"-u", "--max-loss", "-1"}, "invalid loss percentage '-1'"},
        {{"--connect-rate", "0"}, "invalid connect rate '0'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        h_expect_usage_error("ECHOD_BENCH_BIN", "echod-bench", cases[i].args, cases[i].needle);
    /* A bad option is named as getopt names it: the letter alone, even in a cluster. */
    char port[16];
    snprintf(port, sizeof(port), "%u", h_unused_tcp_port());
    const struct {
        const char *arg, *needle;
    } bad[] = {
        {"-qx", "invalid option -- 'x'"},
        {"-xq", "invalid option -- 'x'"},
        {"--bogus", "unrecognized option '--bogus'"},
        {"-qc", "option requires an argument -- 'c'"},
        {"--version=1", "option '--version' doesn't allow an argument"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *args[] = {"-p", port, "-T", "1000", "-n", "1", bad[i].arg, NULL};
        h_expect_usage_error("ECHOD_BENCH_BIN", "echod-bench", args, bad[i].needle);
    }
}

/* ---------------------------------------------------------------- test servers */

/* A test server, forked: its pid, its port, and the pipe it reports on. */
struct test_server {
    pid_t pid;
    uint16_t port;
    int report_fd; /* read end: what the server tells the test */
};

static struct test_server server = {.report_fd = -1};

/* What a forked TCP server does: echo every byte, each line preceded by greeting (if
 * not NULL); every stall_every_ms stop answering for stall_ms; flip the bits of the
 * byte at offset flip_at of what its first connection sent (-1: never) and report that
 * connection's peer port. */
struct tcp_server_how {
    int stall_every_ms;
    int stall_ms;
    long flip_at;
    const char *greeting;
};

#define SERVER_MAX_CLIENTS 64

/* Send all len bytes of data to fd, or as many as it takes before an error. */
static void send_all(int fd, const char *data, size_t len)
{
    for (size_t sent = 0; sent < len;) {
        ssize_t k = send(fd, data + sent, len - sent, MSG_NOSIGNAL);
        if (k <= 0)
            break;
        sent += (size_t)k;
    }
}

/* Echo len bytes of data to fd, how->greeting before each line; *is_line_start says
 * whether a line starts at data, and is updated. */
static void server_reply(int fd, const struct tcp_server_how *how, const char *data, size_t len,
                         bool *is_line_start)
{
    if (how->greeting == NULL) {
        send_all(fd, data, len);
        return;
    }
    while (len > 0) {
        if (*is_line_start)
            send_all(fd, how->greeting, strlen(how->greeting));
        const char *nl = memchr(data, '\n', len);
        size_t line = nl != NULL ? (size_t)(nl - data) + 1 : len;
        send_all(fd, data, line);
        *is_line_start = nl != NULL;
        data += line;
        len -= line;
    }
}

/* The child's TCP loop, until it is killed: one poll over the listener and clients. */
static void tcp_server_loop(int listener, const struct tcp_server_how *how, int report_fd)
{
    struct pollfd pfd[1 + SERVER_MAX_CLIENTS];
    long offset[1 + SERVER_MAX_CLIENTS];
    bool is_first[1 + SERVER_MAX_CLIENTS], is_line_start[1 + SERVER_MAX_CLIENTS];
    size_t n = 1, accepted = 0;
    pfd[0] = (struct pollfd){listener, POLLIN, 0};
    static char buf[65536];
    int64_t next_stall_ms = h_now_ms() + how->stall_every_ms;
    for (;;) {
        if (how->stall_every_ms > 0 && h_now_ms() >= next_stall_ms) {
            h_sleep_ms(how->stall_ms);
            next_stall_ms += how->stall_every_ms;
        }
        if (poll(pfd, n, 10) <= 0)
            continue;
        if ((pfd[0].revents & POLLIN) && n < 1 + SERVER_MAX_CLIENTS) {
            int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0) {
                pfd[n] = (struct pollfd){fd, POLLIN, 0};
                offset[n] = 0;
                is_first[n] = accepted++ == 0;
                is_line_start[n] = true;
                n++;
            }
        }
        for (size_t i = 1; i < n; i++) {
            if (pfd[i].revents == 0)
                continue;
            ssize_t got = recv(pfd[i].fd, buf, sizeof(buf), 0);
            if (got <= 0) {
                close(pfd[i].fd);
                pfd[i--] = pfd[--n];
                offset[i + 1] = offset[n];
                is_first[i + 1] = is_first[n];
                is_line_start[i + 1] = is_line_start[n];
                continue;
            }
            long at = how->flip_at - offset[i];
            if (is_first[i] && at >= 0 && at < got) {
                buf[at] ^= 0xff;
                struct sockaddr_storage peer;
                socklen_t len = sizeof(peer);
                getpeername(pfd[i].fd, (struct sockaddr *)&peer, &len);
                char line[32];
                int w = snprintf(line, sizeof(line), "%u\n", h_port_of(&peer));
                ssize_t ignored = write(report_fd, line, (size_t)w);
                (void)ignored;
            }
            offset[i] += got;
            server_reply(pfd[i].fd, how, buf, (size_t)got, &is_line_start[i]);
        }
    }
}

/* What a forked UDP server does: nothing (is_silent), or answer each pair of datagrams
 * from one source in swapped order. */
static void udp_server_loop(int fd, bool is_silent)
{
    static char held[65536], buf[65536];
    ssize_t held_len = -1;
    struct sockaddr_storage from;
    for (;;) {
        if (is_silent) {
            pause();
            continue;
        }
        socklen_t len = sizeof(from);
        ssize_t got = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len);
        if (got < 0)
            continue;
        if (held_len < 0) {
            memcpy(held, buf, (size_t)got);
            held_len = got;
            continue;
        }
        sendto(fd, buf, (size_t)got, 0, (struct sockaddr *)&from, len);
        sendto(fd, held, (size_t)held_len, 0, (struct sockaddr *)&from, len);
        held_len = -1;
    }
}

/* Bind 127.0.0.1:0 of type (and listen, for TCP), then fork a server child on it. */
static void server_start(int type, const struct tcp_server_how *how, bool is_silent)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    struct sockaddr_storage sa;
    h_loopback(&sa, AF_INET, 0);
    socklen_t len = sizeof(struct sockaddr_in);
    int report[2];
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) != 0 ||
        (type == SOCK_STREAM && listen(fd, 128) != 0) ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0 || pipe2(report, O_CLOEXEC) != 0)
        fail_msg("test server: %s", strerror(errno));
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGTERM, SIG_DFL);
        close(report[0]);
        if (type == SOCK_STREAM)
            tcp_server_loop(fd, how, report[1]);
        udp_server_loop(fd, is_silent);
        _exit(0);
    }
    h_track_child(pid);
    close(fd);
    close(report[1]);
    server = (struct test_server){.pid = pid, .port = h_port_of(&sa), .report_fd = report[0]};
}

static int server_teardown(void **state)
{
    (void)state;
    h_kill(server.pid);
    if (server.report_fd >= 0)
        close(server.report_fd);
    server = (struct test_server){.report_fd = -1};
    h_close_all();
    return 0;
}

/* ---------------------------------------------------------------- --json */

/* The number after "key": in echod-bench's JSON object, or fail. */
static double json_value(const struct h_output *r, const char *key)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "\"%s\":", key);
    const char *at = strstr(r->out, needle);
    if (at == NULL)
        fail_msg("no %s in echod-bench's JSON: \"%s\"", needle, r->out);
    return strtod(at + strlen(needle), NULL);
}

/* Run echod-bench with args, which must exit 0 and print one JSON object. */
static struct h_output run_json(const char *const *args, const char *what)
{
    struct h_output r = run_bench(args);
    h_note("%s: %s", what, r.out);
    if (r.code != 0)
        fail_msg("%s: echod-bench exited %d, stderr \"%s\"", what, r.code, r.err);
    if (r.out[0] != '{' || strchr(r.out, '\n') != r.out + r.out_len - 1 ||
        r.out[r.out_len - 2] != '}')
        fail_msg("%s: --json must print one object on one line: \"%s\"", what, r.out);
    return r;
}

/* ---------------------------------------------------------------- open loop */

/* A server that stalls 200 ms once a second. Closed loop waits with it: each connection
 * has one slow message per stall, under 1 % of all, so p99 hides the stall. Open loop
 * keeps its schedule: every message due during the stall counts from its slot, about
 * a fifth of them wait up to 200 ms, and p99 shows it (about 190 ms). */
static void bench_open_loop_shows_stall(void **state)
{
    (void)state;
    server_start(SOCK_STREAM,
                 &(struct tcp_server_how){.stall_every_ms = 1000, .stall_ms = 200, .flip_at = -1},
                 false);
    char port[16];
    snprintf(port, sizeof(port), "%u", server.port);
    const char *closed[] = {"-p", port, "-c", "10", "-d", "3", "--json", NULL};
    struct h_output r = run_json(closed, "closed loop");
    double closed_p99 = json_value(&r, "p99"), closed_msgs = json_value(&r, "msgs");
    h_output_free(&r);
    const char *open[] = {"-p", port, "-c", "10", "-d", "3", "-R", "2000", "--json", NULL};
    r = run_json(open, "open loop");
    double open_p99 = json_value(&r, "p99"), open_max = json_value(&r, "max");
    h_output_free(&r);
    h_note("stall 200 ms/s: closed-loop p99 %.1f ms (%.0f msgs), open-loop -R 2000 p99 %.1f ms "
           "(max %.1f ms)",
           closed_p99 / 1e3, closed_msgs, open_p99 / 1e3, open_max / 1e3);
    if (open_p99 < 100000)
        fail_msg("open loop: p99 %.1f ms hides a 200 ms stall a second", open_p99 / 1e3);
    if (closed_p99 >= 100000)
        fail_msg("closed loop: p99 %.1f ms; expected the stall hidden (under 100 ms)",
                 closed_p99 / 1e3);
}

/* -R holds its rate when the server keeps up: 2000 msg/s over 8 connections on 2
 * threads for 3 s is 6000 messages in 3 s, within 2 %. Each connection's share is 250
 * msg/s with 4 in flight, so a loaded machine's slower echoes (up to 16 ms on average)
 * still keep up. */
static void bench_rate_is_held(void **state)
{
    (void)state;
    char port[16];
    port_arg(port, sizeof(port), &echod.tcp[0]);
    const char *args[] = {"-p", port, "-c",   "8",  "-t", "2",      "-P",
                          "4",  "-R", "2000", "-d", "3",  "--json", NULL};
    struct h_output r = run_json(args, "-R 2000");
    double rate = json_value(&r, "msgs_per_s"), msgs = json_value(&r, "msgs");
    h_note("-R 2000 -d 3: %.0f messages, %.1f msg/s achieved (%+.2f %%)", msgs, rate,
           (rate - 2000) / 20);
    if (rate < 2000 * 0.98 || rate > 2000 * 1.02)
        fail_msg("-R 2000: achieved %.1f msg/s, beyond 2 %%", rate);
    if (msgs < 6000 * 0.98 || msgs > 6000 * 1.02)
        fail_msg("-R 2000 -d 3: %.0f messages, expected 6000 within 2 %%", msgs);
    assert_int_equal(json_value(&r, "threads"), 2);
    h_output_free(&r);
}

/* ---------------------------------------------------------------- wrong servers */

/* Run echod-bench (-c 4 -n 100 -s 100, with -g greeting unless NULL) against a server
 * that flips the byte at offset 1000 of what one connection sent (message 10's byte
 * 0), greeting each line as -g says: exit 1, and the message names the connection
 * (with the port the server saw it from), the message, the byte and stream_off, its
 * offset in the stream of replies. */
static void expect_flip_named(const char *greeting, const char *stream_off)
{
    server_start(SOCK_STREAM, &(struct tcp_server_how){.flip_at = 1000, .greeting = greeting},
                 false);
    char port[16];
    snprintf(port, sizeof(port), "%u", server.port);
    const char *args[] = {"-p",     port, "-c",  "4",  "-n",
                          "100",    "-s", "100", "-q", greeting ? "-g" : NULL,
                          greeting, NULL};
    struct h_output r = run_bench(args);
    char line[32] = "";
    struct pollfd pfd = {server.report_fd, POLLIN, 0};
    ssize_t n = poll(&pfd, 1, 5000) == 1 ? read(server.report_fd, line, sizeof(line) - 1) : -1;
    if (n <= 0)
        fail_msg("the server never flipped a byte (echod-bench exited %d, stderr \"%s\")", r.code,
                 r.err);
    line[strcspn(line, "\n")] = '\0';
    char from[64], where[64];
    snprintf(from, sizeof(from), "(from 127.0.0.1:%s)", line);
    snprintf(where, sizeof(where), "message 10, byte 0, stream offset %s:", stream_off);
    h_note("flipped byte%s: %s", greeting ? " after a greeting" : "", r.err);
    if (r.code != 1 || strstr(r.err, "mismatch on connection ") == NULL ||
        strstr(r.err, from) == NULL || strstr(r.err, where) == NULL)
        fail_msg("expected exit 1 naming the connection %s and \"%s\"; got exit %d, stderr "
                 "\"%s\"",
                 from, where, r.code, r.err);
    h_output_free(&r);
}

/* One flipped byte at stream offset 1000 of one connection. */
static void bench_flipped_byte_named(void **state)
{
    (void)state;
    expect_flip_named(NULL, "1000");
}

/* The same behind a 4-byte greeting (-g): message 10's reply starts at 10 x 104, its
 * byte 0 after the greeting, at 1044 of the stream of replies. */
static void bench_flipped_byte_named_greeting(void **state)
{
    (void)state;
    expect_flip_named("Hi: ", "1044");
}

/* A UDP server that never answers: every datagram is lost, and the run fails (exit 2)
 * saying so. The previous echod-bench exited 0 with msgs=0 lost=400. */
static void bench_silent_udp_fails(void **state)
{
    (void)state;
    server_start(SOCK_DGRAM, NULL, true);
    char port[16];
    snprintf(port, sizeof(port), "%u", server.port);
    const char *args[] = {"-u", "-p", port, "-c",  "4",  "-n", "5",
                          "-P", "5",  "-T", "200", "-q", NULL};
    struct h_output r = run_bench(args);
    h_note("silent udp: exit %d, %s%s", r.code, r.out, r.err);
    if (r.code != 2 || strstr(r.err, "20 of 20 datagrams") == NULL)
        fail_msg("silent UDP server: expected exit 2 and \"20 of 20 datagrams\" unanswered, got "
                 "exit %d, stderr \"%s\"",
                 r.code, r.err);
    assert_int_equal(summary_value(&r, "msgs"), 0);
    assert_int_equal(summary_value(&r, "lost"), 20);
    h_output_free(&r);
}

/* A UDP server that answers each pair in swapped order: every second reply is counted
 * as reordered, none lost. */
static void bench_udp_reordering_counted(void **state)
{
    (void)state;
    server_start(SOCK_DGRAM, NULL, false);
    char port[16];
    snprintf(port, sizeof(port), "%u", server.port);
    const char *args[] = {"-u", "-p", port, "-c",   "1",      "-n", "100",
                          "-P", "2",  "-T", "2000", "--json", NULL};
    struct h_output r = run_json(args, "swapped pairs");
    assert_int_equal(json_value(&r, "msgs"), 100);
    assert_int_equal(json_value(&r, "lost"), 0);
    assert_int_equal(json_value(&r, "reordered"), 50);
    h_output_free(&r);
}

/* ---------------------------------------------------------------- modes */

/* -t: every thread's connections count, and the latencies of all are merged. */
static void bench_threads_count_every_message(void **state)
{
    (void)state;
    char port[16];
    port_arg(port, sizeof(port), &echod.tcp[0]);
    const char *args[] = {"-p", port, "-c", "6", "-t", "3", "-n", "150", "--json", NULL};
    struct h_output r = run_json(args, "-t 3");
    assert_int_equal(json_value(&r, "msgs"), 6 * 150);
    assert_int_equal(json_value(&r, "count"), 6 * 150);
    assert_int_equal(json_value(&r, "connects"), 6);
    h_output_free(&r);
}

/* Churn: 2 connection slots, 50 connect-echo-close cycles each: echod accepted 100. */
static void bench_churn_counts_connections(void **state)
{
    (void)state;
    char port[16];
    port_arg(port, sizeof(port), &echod.tcp[0]);
    const char *args[] = {"-p", port, "-c", "2", "-n", "50", "--churn", "--json", NULL};
    struct h_output r = run_json(args, "--churn");
    assert_int_equal(json_value(&r, "msgs"), 100);
    assert_int_equal(json_value(&r, "connects"), 100);
    if (json_value(&r, "connects_per_s") <= 0)
        fail_msg("--churn: no connects_per_s: \"%s\"", r.out);
    assert_int_equal(h_echod_wait_stat(&echod, "tcp_accepted", 100, 5000), 100);
    h_output_free(&r);
}

/* --connect-rate 5 opens 5 connections over about a second; at once they take far less. */
static void bench_connect_rate_ramps(void **state)
{
    (void)state;
    char port[16];
    port_arg(port, sizeof(port), &echod.tcp[0]);
    const char *args[] = {"-p", port, "-c", "5", "-n", "1", "--connect-rate", "5", "--json", NULL};
    struct h_output r = run_json(args, "--connect-rate 5");
    double seconds = json_value(&r, "seconds");
    assert_int_equal(json_value(&r, "connects"), 5);
    assert_int_equal(json_value(&r, "msgs"), 5);
    if (seconds < 0.8)
        fail_msg("--connect-rate 5: 5 connections in %.3f s, expected at least 0.8 s", seconds);
    h_output_free(&r);
}

/* --latency-out writes HdrHistogram's .hgrm: its header, the spectrum up to 100 % and
 * the footer, with every message counted. */
static void bench_latency_out_writes_hgrm(void **state)
{
    (void)state;
    char port[16], path[600];
    port_arg(port, sizeof(port), &echod.tcp[0]);
    snprintf(path, sizeof(path), "%s/latency.hgrm", h_tmpdir());
    const char *args[] = {"-p", port, "-c", "4", "-n", "250", "--latency-out", path, "-q", NULL};
    struct h_output r = run_bench(args);
    if (r.code != 0)
        fail_msg("echod-bench exited %d, stderr \"%s\"", r.code, r.err);
    h_output_free(&r);
    char *hgrm = h_read_file(path, NULL);
    const char *want[] = {"       Value     Percentile TotalCount 1/(1-Percentile)\n\n",
                          " 0.000000000000 ",
                          " 1.000000000000       1000\n",
                          "#[Mean    = ",
                          "Total count    =         1000]\n",
                          "#[Buckets =           22, SubBuckets     =         2048]\n"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (strstr(hgrm, want[i]) == NULL)
            fail_msg("%s lacks \"%s\":\n%s", path, want[i], hgrm);
    free(hgrm);
}

/* At a terminal, a progress line each second; piped (every other test), none. */
static void bench_progress_at_terminal(void **state)
{
    (void)state;
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    char slave[128];
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0 ||
        ptsname_r(master, slave, sizeof(slave)) != 0)
        fail_msg("cannot open a pty: %s", strerror(errno));
    h_track_fd(master);
    char port[16];
    port_arg(port, sizeof(port), &echod.tcp[0]);
    char *argv[] = {(char *)h_env("ECHOD_BENCH_BIN"),
                    (char *)"-p",
                    port,
                    (char *)"-c",
                    (char *)"2",
                    (char *)"-d",
                    (char *)"3",
                    NULL};
    pid_t pid = h_spawn(argv, -1, slave, NULL);
    static char out[65536];
    size_t len = 0;
    int64_t deadline = h_now_ms() + 20000;
    while (len < sizeof(out) - 1 && h_now_ms() < deadline) {
        struct pollfd pfd = {master, POLLIN, 0};
        if (poll(&pfd, 1, 100) <= 0) {
            if (h_wait_exit(pid, 0) >= 0)
                break;
            continue;
        }
        ssize_t n = read(master, out + len, sizeof(out) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    int code = h_wait_exit(pid, 5000);
    h_note("at a terminal:\n%s", out);
    assert_int_equal(code, 0);
    size_t lines = 0;
    for (const char *p = out; (p = strstr(p, " msg/s ")) != NULL; p++)
        lines += strstr(p, " errors  p99 ") != NULL;
    if (lines < 2 || strstr(out, "echod-bench proto=tcp") == NULL)
        fail_msg("3 s at a terminal: expected 2 or more progress lines and the summary:\n%s", out);
}

int main(void)
{
    h_init("test_bench", 240);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(bench_tcp_counts_every_message, h_setup_echo, h_teardown),
        cmocka_unit_test_setup_teardown(bench_tcp_pipelined_large, h_setup_echo, h_teardown),
        cmocka_unit_test_setup_teardown(bench_udp_accounts_for_every_datagram, h_setup_echo,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(bench_wrong_answers_exit_1, setup_greet, h_teardown),
        cmocka_unit_test_setup_teardown(bench_greeting_verifies, setup_greet, h_teardown),
        cmocka_unit_test_teardown(bench_refused_exits_1, h_teardown),
        cmocka_unit_test_setup_teardown(bench_tries_each_address, h_setup_echo, h_teardown),
        cmocka_unit_test_teardown(bench_bad_usage_exits_64, h_teardown),
        cmocka_unit_test_teardown(bench_open_loop_shows_stall, server_teardown),
        cmocka_unit_test_setup_teardown(bench_rate_is_held, h_setup_echo, h_teardown),
        cmocka_unit_test_teardown(bench_flipped_byte_named, server_teardown),
        cmocka_unit_test_teardown(bench_flipped_byte_named_greeting, server_teardown),
        cmocka_unit_test_teardown(bench_silent_udp_fails, server_teardown),
        cmocka_unit_test_teardown(bench_udp_reordering_counted, server_teardown),
        cmocka_unit_test_setup_teardown(bench_threads_count_every_message, h_setup_echo,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(bench_churn_counts_connections, h_setup_echo, h_teardown),
        cmocka_unit_test_setup_teardown(bench_connect_rate_ramps, h_setup_echo, h_teardown),
        cmocka_unit_test_setup_teardown(bench_latency_out_writes_hgrm, h_setup_echo, h_teardown),
        cmocka_unit_test_setup_teardown(bench_progress_at_terminal, h_setup_echo, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
