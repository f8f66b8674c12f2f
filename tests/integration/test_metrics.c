/* test_metrics: the Prometheus endpoint (metrics.listen) of the real echod. A scrape
 * answers GET /metrics in the text format 0.0.4 with the documented Content-Type; every
 * counter SIGUSR1 prints is there as echod_NAME_total with HELP and TYPE, beside the
 * gauges, build_info, reload results, the connection-duration histogram and process_*;
 * `promtool check metrics` finds nothing to say about a real scrape; after a known load
 * (exact bytes and messages over several connections, exact datagrams) the counters
 * equal what the client sent; HEAD, other paths (404), other methods (405 with Allow)
 * and huge headers (431) get clear answers; 50 slowloris connections, huge headers,
 * POSTs and stray paths on the metrics port leave a control echo client served at full
 * speed, and a scrape from another address still answers; SIGHUP turns the endpoint on,
 * keeps its socket, moves it and turns it off; the port file lists it as
 * "metrics ADDR:PORT". Figures are printed as "# metrics ..." lines. */
#include "config.h"

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "stats.h"

#define METRICS_CONF                                                                               \
    "workers = 2;\n"                                                                               \
    "tcp = { listen = [ \"127.0.0.1:0\" ]; };\n"                                                   \
    "udp = { listen = [ \"127.0.0.1:0\" ]; };\n"                                                   \
    "metrics = { listen = [ \"127.0.0.1:0\" ]; };\n"

static int setup_metrics(void **state)
{
    (void)state;
    h_echod_start(&echod, METRICS_CONF, NULL);
    return 0;
}

/* A scrape that must succeed: 200 and the format's Content-Type. */
static struct h_http_reply scrape(void)
{
    assert_int_equal(echod.metrics_count, 1);
    struct h_http_reply r = h_http_get(&echod.metrics[0], "/metrics");
    if (r.status != 200)
        fail_msg("GET /metrics answered %d:\n%s", r.status, r.headers);
    char type[128];
    assert_true(h_http_header(&r, "Content-Type", type, sizeof(type)));
    assert_string_equal(type, "text/plain; version=0.0.4; charset=utf-8");
    return r;
}

/* The family `name` has HELP and TYPE lines, the TYPE being `type`. */
static void expect_family(const char *body, const char *name, const char *type)
{
    char help[128], type_line[128];
    snprintf(help, sizeof(help), "# HELP %s ", name);
    snprintf(type_line, sizeof(type_line), "# TYPE %s %s\n", name, type);
    const char *at = strstr(body, help);
    if (at == NULL || (at != body && at[-1] != '\n') || strstr(at, type_line) == NULL)
        fail_msg("no HELP or no TYPE %s line for %s in:\n%s", type, name, body);
}

/* The port file lists the endpoint as "metrics 127.0.0.1:PORT", after TCP and UDP. */
static void port_file_lists_metrics(void **state)
{
    (void)state;
    assert_int_equal(echod.metrics_count, 1);
    assert_int_not_equal(h_port_of(&echod.metrics[0]), 0);
    char *text = h_read_file(echod.port_path, NULL);
    assert_non_null(text);
    char want[128];
    snprintf(want, sizeof(want), "\nmetrics %s\n", echod.metrics_text[0]);
    if (strstr(text, want) == NULL || strncmp(echod.metrics_text[0], "127.0.0.1:", 10) != 0)
        fail_msg("port file:\n%s", text);
    free(text);
    assert_true(h_echod_log_contains(&echod, "listening metrics 127.0.0.1:"));
}

/* Every counter of stats.h, every gauge, build_info, the reload figures, the histogram
 * and process_* are there, each with HELP and TYPE. */
static void scrape_has_every_metric(void **state)
{
    (void)state;
    struct h_http_reply r = scrape();
    for (int c = 0; c < STAT_COUNT; c++) {
        char name[128];
        snprintf(name, sizeof(name), "echod_%s_total", stats_name((enum stats_counter)c));
        expect_family(r.body, name, "counter");
        assert_true(h_has_metric(r.body, name));
    }
    static const char *const gauges[] = {
        "echod_tcp_connections",
        "echod_worker_connections",
        "echod_worker_queue_length",
        "echod_udp_guard_entries",
        "echod_udp_guard_capacity",
        "echod_build_info",
        "echod_config_last_reload_success_timestamp_seconds",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    };
    for (size_t i = 0; i < sizeof(gauges) / sizeof(gauges[0]); i++)
        expect_family(r.body, gauges[i], "gauge");
    expect_family(r.body, "echod_config_reloads_total", "counter");
    expect_family(r.body, "process_cpu_seconds_total", "counter");
    expect_family(r.body, "echod_tcp_connection_duration_seconds", "histogram");
    char build[128];
    snprintf(build, sizeof(build), "echod_build_info{version=\"%s\"}", PACKAGE_VERSION);
    assert_true(h_metric(r.body, build) == 1);
    assert_true(h_metric(r.body, "echod_worker_connections{worker=\"0\"}") == 0);
    assert_true(h_metric(r.body, "echod_worker_connections{worker=\"1\"}") == 0);
    assert_false(h_has_metric(r.body, "echod_worker_connections{worker=\"2\"}"));
    assert_true(h_metric(r.body, "echod_worker_queue_length{worker=\"1\"}") == 0);
    assert_true(h_metric(r.body, "echod_udp_guard_capacity") == 4096);
    assert_true(h_metric(r.body, "echod_config_reloads_total{result=\"success\"}") == 0);
    assert_true(h_metric(r.body, "echod_config_reloads_total{result=\"failure\"}") == 0);
    assert_true(h_metric(r.body, "echod_tcp_connection_duration_seconds_bucket{le=\"+Inf\"}") == 0);
    assert_true(h_metric(r.body, "echod_tcp_connection_duration_seconds_count") == 0);
    /* process_*: this very echod, as /proc and the clock see it. */
    double now = (double)time(NULL);
    double start = h_metric(r.body, "process_start_time_seconds");
    assert_true(start > now - 60 && start <= now + 1);
    assert_true(h_metric(r.body, "process_resident_memory_bytes") >= 512 * KIB);
    assert_true(h_metric(r.body, "process_virtual_memory_bytes") >=
                h_metric(r.body, "process_resident_memory_bytes"));
    double fds = h_metric(r.body, "process_open_fds");
    int seen = h_fd_count(echod.pid);
    if (fabs(fds - seen) > 2) /* the scrape's own connection comes and goes */
        fail_msg("process_open_fds %.0f, /proc/%d/fd has %d", fds, (int)echod.pid, seen);
    assert_true(h_metric(r.body, "process_max_fds") >= 1024);
    assert_true(h_metric(r.body, "process_cpu_seconds_total") >= 0);
    h_note("metrics scrape of an idle echod: %zu bytes", r.body_len);
    h_http_free(&r);
}

/* promtool, Prometheus's own checker, has nothing to say about a scrape under way. */
static void promtool_finds_nothing(void **state)
{
    (void)state;
    const char *promtool = "/usr/bin/promtool";
    if (access(promtool, X_OK) != 0)
        fail_msg("%s is missing: scripts/deps.sh installs it (Debian: prometheus)", promtool);
    int fd = h_tcp_connect_ok(&echod.tcp[0]); /* so the gauges and histogram are not empty */
    h_echo_roundtrip(fd, "ping\n", 5, 5000);
    h_close(fd);
    h_echod_wait_stat(&echod, "tcp_closed", 1, 5000);
    struct h_http_reply r = scrape();
    char path[512];
    h_write_temp("scrape", r.body, r.body_len, path, sizeof(path));
    char *const argv[] = {
        (char *)"/bin/sh", (char *)"-c", (char *)"exec \"$0\" check metrics <\"$1\"",
        (char *)promtool,  path,         NULL};
    char out[512], err[512];
    int code = h_run(argv, NULL, 0, 20000, out, err, sizeof(out));
    char *said = h_read_file(out, NULL), *complained = h_read_file(err, NULL);
    h_note("metrics promtool check metrics: exit %d, stdout '%s', stderr '%s'", code,
           said ? said : "?", complained ? complained : "?");
    if (code != 0 || (said && *said) || (complained && *complained))
        fail_msg("promtool check metrics complained (exit %d)", code);
    free(said);
    free(complained);
    h_http_free(&r);
}

/* N exact bytes in ping-pong messages over M connections and K datagrams: every
 * counter says exactly that, as SIGUSR1 does. */
static void counters_equal_known_load(void **state)
{
    (void)state;
    enum { CONNS = 5, MESSAGES = 40, DATAGRAMS = 37 };
    uint64_t bytes = 0;
    for (int c = 0; c < CONNS; c++) {
        int fd = h_tcp_connect_ok(&echod.tcp[0]);
        for (int m = 0; m < MESSAGES; m++) {
            char msg[200];
            size_t len = 1 + (size_t)(c * 37 + m * 11) % sizeof(msg);
            h_fill_random(msg, len);
            h_echo_roundtrip(fd, msg, len, 5000); /* one message at a time: one read each */
            bytes += len;
        }
        h_close(fd);
    }
    uint64_t udp_bytes = 0;
    int ufd = h_udp_connect(&echod.udp[0]);
    for (int d = 0; d < DATAGRAMS; d++) {
        char dgram[100];
        size_t len = 1 + (size_t)d;
        memset(dgram, 'a' + d % 26, len);
        h_udp_expect(ufd, dgram, len, dgram, len, 1, 5000);
        udp_bytes += len;
    }
    h_echod_wait_stat(&echod, "tcp_closed", CONNS, 5000);
    struct h_http_reply r = scrape();
    const struct {
        const char *series;
        double want;
    } expect[] = {
        {"echod_tcp_accepted_total", CONNS},
        {"echod_tcp_opened_total", CONNS},
        {"echod_tcp_closed_total", CONNS},
        {"echod_tcp_bytes_in_total", (double)bytes},
        {"echod_tcp_bytes_out_total", (double)bytes},
        {"echod_tcp_reads_total", CONNS * MESSAGES},
        {"echod_tcp_writes_total", CONNS * MESSAGES},
        {"echod_tcp_io_errors_total", 0},
        {"echod_udp_datagrams_in_total", DATAGRAMS},
        {"echod_udp_datagrams_out_total", DATAGRAMS},
        {"echod_udp_bytes_in_total", (double)udp_bytes},
        {"echod_udp_bytes_out_total", (double)udp_bytes},
        {"echod_tcp_connections", 0},
        {"echod_worker_connections{worker=\"0\"}", 0},
        {"echod_tcp_connection_duration_seconds_count", CONNS},
        {"echod_tcp_connection_duration_seconds_bucket{le=\"+Inf\"}", CONNS},
        {"echod_udp_guard_entries", 0}, /* loopback is exempt from the rate limits */
    };
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        double got = h_metric(r.body, expect[i].series);
        if (got != expect[i].want)
            fail_msg("%s is %.0f, the client sent %.0f", expect[i].series, got, expect[i].want);
    }
    /* The same figures as SIGUSR1's line, counter by counter. */
    for (int c = 0; c < STAT_COUNT; c++) {
        char series[128];
        const char *name = stats_name((enum stats_counter)c);
        snprintf(series, sizeof(series), "echod_%s_total", name);
        assert_true(h_metric(r.body, series) == (double)h_echod_stat(&echod, name));
    }
    h_note("metrics known load: %d connections, %llu bytes, %d messages, %d datagrams: exact",
           CONNS, (unsigned long long)bytes, CONNS * MESSAGES, DATAGRAMS);
    h_http_free(&r);
}

/* Open connections show in the gauges, per worker, and leave the histogram alone until
 * they close. */
static void gauges_follow_open_connections(void **state)
{
    (void)state;
    int fds[6];
    for (int i = 0; i < 6; i++) {
        fds[i] = h_tcp_connect_ok(&echod.tcp[0]);
        h_echo_roundtrip(fds[i], "x", 1, 5000); /* a worker has taken it */
    }
    struct h_http_reply r = scrape();
    assert_true(h_metric(r.body, "echod_tcp_connections") == 6);
    assert_true(h_metric(r.body, "echod_worker_connections{worker=\"0\"}") +
                    h_metric(r.body, "echod_worker_connections{worker=\"1\"}") ==
                6);
    assert_true(h_metric(r.body, "echod_tcp_connection_duration_seconds_count") == 0);
    h_http_free(&r);
    for (int i = 0; i < 6; i++)
        h_close(fds[i]);
    h_echod_wait_stat(&echod, "tcp_closed", 6, 5000);
    r = scrape();
    assert_true(h_metric(r.body, "echod_tcp_connections") == 0);
    assert_true(h_metric(r.body, "echod_tcp_connection_duration_seconds_count") == 6);
    h_http_free(&r);
}

/* HEAD answers as GET without a body; other paths 404; other methods 405 with Allow. */
static void http_methods_and_paths(void **state)
{
    (void)state;
    const struct sockaddr_storage *sa = &echod.metrics[0];
    const char head[] = "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    struct h_http_reply r = h_http_request(sa, NULL, head, sizeof(head) - 1, 5000);
    char value[128];
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    assert_true(h_http_header(&r, "Content-Type", value, sizeof(value)));
    assert_string_equal(value, "text/plain; version=0.0.4; charset=utf-8");
    h_http_free(&r);
    static const char *const paths[] = {"/", "/metrics/", "/other", "/metricsx", "/favicon.ico"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        r = h_http_get(sa, paths[i]);
        if (r.status != 404)
            fail_msg("GET %s answered %d, not 404", paths[i], r.status);
        h_http_free(&r);
    }
    static const char *const methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        char request[256];
        int n = snprintf(request, sizeof(request),
                         "%s /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                         "Connection: close\r\n\r\nhello",
                         methods[i]);
        r = h_http_request(sa, NULL, request, (size_t)n, 5000);
        if (r.status != 405)
            fail_msg("%s /metrics answered %d, not 405", methods[i], r.status);
        assert_true(h_http_header(&r, "Allow", value, sizeof(value)));
        assert_string_equal(value, "GET, HEAD");
        h_http_free(&r);
    }
}

/* Read one HTTP reply with a Content-Length from fd: its status (0: none within 5 s). */
static int read_one_reply(int fd)
{
    char buf[64 * 1024];
    size_t got = 0;
    int64_t deadline = h_now_ms() + 5000;
    for (;;) {
        buf[got] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        const char *length = strcasestr(buf, "\r\nContent-Length:");
        if (end && length && got >= (size_t)(end + 4 - buf) + strtoul(length + 17, NULL, 10)) {
            int status = 0;
            sscanf(buf, "HTTP/1.1 %d", &status);
            return status;
        }
        int left = (int)(deadline - h_now_ms());
        ssize_t n = left > 0 ? h_recv_some(fd, buf + got, sizeof(buf) - 1 - got, left) : -1;
        if (n <= 0)
            return 0;
        got += (size_t)n;
    }
}

/* As Prometheus does, scrapes reuse one kept-alive connection. */
static void scrapes_keep_the_connection(void **state)
{
    (void)state;
    int fd = h_tcp_connect_ok(&echod.metrics[0]);
    const char get[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < 3; i++) {
        h_send_all(fd, get, sizeof(get) - 1, 5000);
        int status = read_one_reply(fd);
        if (status != 200)
            fail_msg("scrape %d on one connection answered %d", i + 1, status);
    }
    h_close(fd);
}

/* A request whose headers exceed what a connection may hold gets 431, not a hang. */
static void huge_headers_refused(void **state)
{
    (void)state;
    size_t len = 256 * KIB;
    char *request = h_xmalloc(len + 256);
    int n = snprintf(request, 256, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(request + n, 'a', len);
    memcpy(request + n + len, "\r\n\r\n", 4);
    struct h_http_reply r =
        h_http_request(&echod.metrics[0], NULL, request, (size_t)n + len + 4, 5000);
    if (r.status != 431)
        fail_msg("a 256 KiB header answered %d, not 431:\n%s", r.status, r.headers);
    h_http_free(&r);
    free(request);
    r = scrape(); /* and the endpoint goes on */
    h_http_free(&r);
}

/* The time a 64-byte ping-pong on fd takes, in ms; fails on a wrong echo. */
static int64_t echo_ms(int fd, unsigned round)
{
    char msg[64];
    memset(msg, (int)('A' + round % 26), sizeof(msg));
    int64_t start = h_now_ms();
    h_echo_roundtrip(fd, msg, sizeof(msg), 5000);
    return h_now_ms() - start;
}

/* 50 slowloris connections dribbling headers, a silent one, huge headers, POSTs and
 * stray paths on the metrics port: the control echo client keeps its speed and every
 * byte; a scrape from another address still answers; connections over the per-IP
 * limit are closed at once, and the silent one within the connection timeout. */
static void hostile_http_cannot_stall_echo(void **state)
{
    (void)state;
    enum { SLOW = 50, ROUNDS_MS = 12000 };
    const struct sockaddr_storage *sa = &echod.metrics[0];
    int control = h_tcp_connect_ok(&echod.tcp[0]);
    int64_t base_worst = 0;
    for (unsigned i = 0; i < 200; i++) {
        int64_t ms = echo_ms(control, i);
        base_worst = ms > base_worst ? ms : base_worst;
    }
    int slow[SLOW];
    for (int i = 0; i < SLOW; i++) {
        slow[i] = h_tcp_connect_ok(sa);
        h_send_all(slow[i], "GET /metrics HTTP/1.1\r\n", 23, 5000);
    }
    struct sockaddr_storage from3;
    h_loopback(&from3, AF_INET, 0);
    ((struct sockaddr_in *)&from3)->sin_addr.s_addr = htonl(0x7f000003);
    int silent = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    h_track_fd(silent);
    assert_int_equal(bind(silent, (struct sockaddr *)&from3, sizeof(struct sockaddr_in)), 0);
    assert_int_equal(connect(silent, (const struct sockaddr *)sa, sizeof(struct sockaddr_in)), 0);
    assert_int_equal(fcntl(silent, F_SETFL, O_NONBLOCK), 0); /* polled below, never waited on */
    int64_t silent_since = h_now_ms();
    int64_t silent_closed_ms = -1;
    int64_t start = h_now_ms(), worst = 0;
    unsigned rounds = 0, stray = 0, slow_closed = 0, slow_bytes = 0, slow_rounds = 0;
    bool is_open[SLOW];
    unsigned dribbled[SLOW] = {0};
    for (int i = 0; i < SLOW; i++)
        is_open[i] = true;
    while (h_now_ms() - start < ROUNDS_MS) {
        int64_t ms = echo_ms(control, rounds++);
        worst = ms > worst ? ms : worst;
        slow_rounds += ms >= 50;
        if (rounds % 200 == 0) { /* a dribbled header byte on each slowloris */
            for (int i = 0; i < SLOW; i++) {
                char header[] = "X-a: b\r\n"; /* one byte of it at a time */
                if (!is_open[i])
                    continue;
                if (h_is_closed_within(slow[i], 0, true) ||
                    send(slow[i], &header[dribbled[i]++ % 8], 1, MSG_NOSIGNAL) != 1) {
                    is_open[i] = false;
                    slow_closed++;
                } else {
                    slow_bytes++;
                }
            }
        }
        if (rounds % 500 == 0) { /* stray requests: a POST and a path, from 127.0.0.2 */
            const char post[] = "POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                "Content-Length: 0\r\n\r\n";
            struct h_http_reply r = h_http_request(sa, "127.0.0.2", post, sizeof(post) - 1, 5000);
            assert_int_equal(r.status, 405);
            h_http_free(&r);
            const char other[] = "GET /admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            r = h_http_request(sa, "127.0.0.2", other, sizeof(other) - 1, 5000);
            assert_int_equal(r.status, 404);
            h_http_free(&r);
            stray += 2;
        }
        if (silent_closed_ms < 0 && h_is_closed_within(silent, 0, false))
            silent_closed_ms = h_now_ms() - silent_since;
    }
    /* A scrape from 127.0.0.2 answers while the slowloris hold 127.0.0.1's slots. */
    const char get[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    struct h_http_reply r = h_http_request(sa, "127.0.0.2", get, sizeof(get) - 1, 5000);
    assert_int_equal(r.status, 200);
    assert_true(h_metric(r.body, "echod_tcp_connections") == 1);
    h_http_free(&r);
    h_note("metrics hostile: %u control round trips in %d ms, %u of them 50 ms or more, worst "
           "%lld ms (%lld ms before the attack); %d slowloris, %u closed by echod, %u header "
           "bytes dribbled; %u stray requests answered; a silent connection closed after %lld ms",
           rounds, ROUNDS_MS, slow_rounds, (long long)worst, (long long)base_worst, SLOW,
           slow_closed, slow_bytes, stray, (long long)silent_closed_ms);
    assert_true(slow_closed >= SLOW - 8);
    /* Every byte came back (echo_ms checks) and the speed held: at most a rare scheduling
     * hiccup on a shared 2-core machine, never a stall. */
    if (worst > 1000 || slow_rounds > rounds / 1000)
        fail_msg("echo slowed while the metrics port was under attack: %u of %u round trips "
                 "took 50 ms or more, the worst %lld ms",
                 slow_rounds, rounds, (long long)worst);
    assert_true(silent_closed_ms > 0 && silent_closed_ms < ROUNDS_MS);
    for (int i = 0; i < SLOW; i++)
        h_close(slow[i]);
    h_close(silent);
    h_close(control);
    /* Once the endpoint has seen them close, 127.0.0.1 may scrape again. */
    const char again[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int status = 0;
    for (int64_t until = h_now_ms() + 2000; status != 200 && h_now_ms() < until;) {
        r = h_http_request(sa, "127.0.0.1", again, sizeof(again) - 1, 5000);
        status = r.status;
        h_http_free(&r);
        if (status != 200)
            h_sleep_ms(10);
    }
    assert_int_equal(status, 200);
}

/* A config with the metrics listen list given (a quoted address, or nothing). */
static const char *conf_with_metrics(const char *listen)
{
    static char text[512];
    snprintf(text, sizeof(text),
             "workers = 2;\ntcp = { listen = [ \"127.0.0.1:0\" ]; };\n"
             "udp = { listen = [ \"127.0.0.1:0\" ]; };\nmetrics = { listen = [ %s ]; };\n",
             listen);
    return text;
}

/* Whether a connect to sa is refused now. */
static bool is_refused(const struct sockaddr_storage *sa)
{
    int fd = h_tcp_connect(sa, 2000);
    if (fd >= 0)
        h_close(fd);
    return fd == -ECONNREFUSED;
}

/* SIGHUP turns the endpoint on, keeps its socket when the address stays, moves it, and
 * turns it off; the echo service and the port file follow; reload results are counted. */
static void reload_turns_metrics_on_and_off(void **state)
{
    (void)state;
    h_echod_start(&echod, conf_with_metrics(""), NULL);
    assert_int_equal(echod.metrics_count, 0);
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    assert_int_equal(h_echod_reload(&echod, conf_with_metrics("\"127.0.0.1:0\"")), 0);
    assert_int_equal(echod.metrics_count, 1);
    struct sockaddr_storage first = echod.metrics[0];
    struct h_http_reply r = scrape();
    assert_true(h_metric(r.body, "echod_config_reloads_total{result=\"success\"}") == 1);
    double first_reload = h_metric(r.body, "echod_config_last_reload_success_timestamp_seconds");
    h_http_free(&r);
    h_sleep_ms(20);
    /* The same list again: the same socket, so the same port. */
    assert_int_equal(h_echod_reload(&echod, conf_with_metrics("\"127.0.0.1:0\"")), 0);
    assert_int_equal(echod.metrics_count, 1);
    assert_int_equal(h_port_of(&echod.metrics[0]), h_port_of(&first));
    r = scrape();
    assert_true(h_metric(r.body, "echod_config_reloads_total{result=\"success\"}") == 2);
    assert_true(h_metric(r.body, "echod_config_last_reload_success_timestamp_seconds") >
                first_reload);
    h_http_free(&r);
    /* A refused reload counts as a failure and changes nothing. */
    assert_int_equal(h_echod_reload(&echod, "metrics = { listen = [ \"nonsense\" ]; };\n"), -1);
    r = scrape();
    assert_true(h_metric(r.body, "echod_config_reloads_total{result=\"failure\"}") == 1);
    assert_true(h_metric(r.body, "echod_reload_failures_total") == 1);
    h_http_free(&r);
    /* Another address: the old port closes, the new one answers. */
    assert_int_equal(h_echod_reload(&echod, conf_with_metrics("\"127.0.0.2:0\"")), 0);
    assert_int_equal(echod.metrics_count, 1);
    assert_string_equal(strtok(echod.metrics_text[0], ":"), "127.0.0.2");
    assert_true(is_refused(&first));
    r = scrape();
    h_http_free(&r);
    /* Off: the port file loses its line, the port refuses. */
    struct sockaddr_storage second = echod.metrics[0];
    assert_int_equal(h_echod_reload(&echod, conf_with_metrics("")), 0);
    assert_int_equal(echod.metrics_count, 0);
    assert_true(is_refused(&second));
    h_echo_roundtrip(fd, "still here\n", 11, 5000); /* echo went on throughout */
    h_close(fd);
}

/* echod -t under RLIMIT_NOFILE nofile with config: its exit code; stderr into err. */
static int check_limited(const char *config, long nofile, char *err, size_t size)
{
    char path[512], err_path[600];
    h_write_temp("fdlimit.conf", config, strlen(config), path, sizeof(path));
    snprintf(err_path, sizeof(err_path), "%s.err", path);
    char *argv[] = {(char *)h_env("ECHOD_BIN"), (char *)"-t", (char *)"-c", path, NULL};
    int code = h_wait_exit(h_spawn_limited(argv, -1, err_path, nofile), 10000);
    char *text = h_read_file(err_path, NULL);
    snprintf(err, size, "%s", text ? text : "");
    free(text);
    return code;
}

/* The open file limit check counts what the endpoint may hold (its connections): a
 * limit that fits max_connections = 20 without metrics does not with it. */
static void fd_limit_counts_the_endpoint(void **state)
{
    (void)state;
    const char *base = "workers = 1;\nmax_connections = 20;\n"
                       "tcp = { listen = [ \"127.0.0.1:0\" ]; };\n"
                       "udp = { listen = [ \"127.0.0.1:0\" ]; };\n";
    char with[512], err[2048];
    snprintf(with, sizeof(with), "%smetrics = { listen = [ \"127.0.0.1:0\" ]; };\n", base);
    int code = check_limited(base, 64, err, sizeof(err));
    if (code != 0)
        fail_msg("without metrics, 64 fds should do: exit %d: %s", code, err);
    code = check_limited(with, 64, err, sizeof(err));
    if (code != 78 || !strstr(err, "open file limit is 64"))
        fail_msg("with metrics, 64 fds should not do: exit %d: %s", code, err);
    h_note("metrics fd limit: %s", err);
}

/* The guard's occupancy gauges move: with loopback under the guard, one datagram from
 * each of two /24s (127.0.1.1 and 127.0.2.1) makes two tracked prefixes, in a table of
 * the configured size; the gauges follow what the UDP thread publishes. */
static void guard_gauges_count_sources(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  "tcp = { listen = [ ]; };\n"
                  "udp = { listen = [ \"127.0.0.1:0\" ];\n"
                  "  guard = { limit_loopback = true; table_size = 64; }; };\n"
                  "metrics = { listen = [ \"127.0.0.1:0\" ]; };\n",
                  NULL);
    const char *sources[] = {"127.0.1.1", "127.0.2.1"};
    for (size_t i = 0; i < 2; i++) {
        int fd = h_udp_bind_connect(sources[i], 0, &echod.udp[0]);
        h_udp_expect(fd, "ping", 4, "ping", 4, 3, 1000);
        h_close(fd);
    }
    struct h_http_reply r = scrape();
    double entries = h_metric(r.body, "echod_udp_guard_entries");
    double capacity = h_metric(r.body, "echod_udp_guard_capacity");
    h_http_free(&r);
    if (entries != 2 || capacity != 64)
        fail_msg("guard gauges: %.0f entries in %.0f; expected 2 in 64", entries, capacity);
}

int main(void)
{
    h_init("test_metrics", 240);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(port_file_lists_metrics, setup_metrics, h_teardown),
        cmocka_unit_test_setup_teardown(scrape_has_every_metric, setup_metrics, h_teardown),
        cmocka_unit_test_setup_teardown(promtool_finds_nothing, setup_metrics, h_teardown),
        cmocka_unit_test_setup_teardown(counters_equal_known_load, setup_metrics, h_teardown),
        cmocka_unit_test_setup_teardown(gauges_follow_open_connections, setup_metrics, h_teardown),
        cmocka_unit_test_setup_teardown(http_methods_and_paths, setup_metrics, h_teardown),
        cmocka_unit_test_setup_teardown(huge_headers_refused, setup_metrics, h_teardown),
        cmocka_unit_test_setup_teardown(scrapes_keep_the_connection, setup_metrics, h_teardown),
        cmocka_unit_test_setup_teardown(hostile_http_cannot_stall_echo, setup_metrics, h_teardown),
        cmocka_unit_test_teardown(reload_turns_metrics_on_and_off, h_teardown),
        cmocka_unit_test(fd_limit_counts_the_endpoint),
        cmocka_unit_test_teardown(guard_gauges_count_sources, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
