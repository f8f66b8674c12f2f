/* test_reuseport: several echod processes sharing one port with SO_REUSEPORT
 * (tcp.reuseport, udp.reuseport). Three instances on one 127.0.0.1 port: the first binds
 * port 0, the others the port it reports. TCP: 300 connections spread over all three
 * (each instance's tcp_accepted, from its SIGUSR1 stats line). UDP: 300 sockets, one
 * datagram each, spread likewise. The drain: a steady stream of new connects, each
 * sending 256 bytes and reading them back, while one instance gets SIGTERM: no connect
 * is refused or reset, and every connection gets all its bytes back. The figures are
 * printed as "# drain: ..." (with the kernel's net.ipv4.tcp_migrate_req, which this
 * test reads and never changes). */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define INSTANCES      3
#define SPREAD_CLIENTS 300
#define SPREAD_MIN     30 /* of 300 over 3: about 100 each; 30 is 8 standard deviations off */
#define DRAIN_BYTES    256
#define DRAIN_SLOTS    512  /* connections in flight */
#define DRAIN_PACE_MS  3    /* at most one new connect this often */
#define DRAIN_BEFORE   1000 /* ms of stream before the SIGTERM */
#define DRAIN_AFTER    3000 /* ms of stream after it: past the clients' SYN retry (1 s) */
#define DRAIN_CONN_MS  8000 /* one connection's whole life, at most */

static struct echod inst[INSTANCES];

/* Three instances sharing one TCP and one UDP port; instance 1 gets `busy` too. */
static void start_three(const char *busy)
{
    const char *first = "workers = 1;\n"
                        "tcp = { listen = [ \"127.0.0.1:0\" ]; reuseport = true; };\n"
                        "udp = { listen = [ \"127.0.0.1:0\" ]; reuseport = true; };\n";
    h_echod_start(&inst[0], first, NULL);
    char config[512];
    for (int i = 1; i < INSTANCES; i++) {
        snprintf(config, sizeof(config),
                 "workers = 1;\n%s\n"
                 "tcp = { listen = [ \"%s\" ]; reuseport = true; };\n"
                 "udp = { listen = [ \"%s\" ]; reuseport = true; };\n",
                 i == 1 ? busy : "", inst[0].tcp_text[0], inst[0].udp_text[0]);
        h_echod_start(&inst[i], config, NULL);
        assert_string_equal(inst[i].tcp_text[0], inst[0].tcp_text[0]);
        assert_string_equal(inst[i].udp_text[0], inst[0].udp_text[0]);
    }
}

static int setup(void **state)
{
    (void)state;
    start_three("");
    return 0;
}

/* Instance 1 takes at most 2 connections at once (the test holds them, to keep clients
 * waiting in its backlog when it is told to stop). */
static int setup_busy(void **state)
{
    (void)state;
    start_three("max_connections = 2;");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < INSTANCES; i++)
        h_echod_teardown(&inst[i]);
    return 0;
}

/* Counter `name` of every instance into got[]; fails unless each is at least min and
 * they sum to total. */
static void expect_spread(const char *name, uint64_t min, uint64_t total)
{
    uint64_t got[INSTANCES], sum = 0;
    for (int i = 0; i < INSTANCES; i++) {
        got[i] = h_echod_stat(&inst[i], name);
        sum += got[i];
    }
    h_note("spread %s: %llu %llu %llu", name, (unsigned long long)got[0],
           (unsigned long long)got[1], (unsigned long long)got[2]);
    assert_int_equal(sum, total);
    for (int i = 0; i < INSTANCES; i++)
        if (got[i] < min)
            fail_msg("instance %d has %s=%llu, fewer than %llu of %llu", i, name,
                     (unsigned long long)got[i], (unsigned long long)min,
                     (unsigned long long)total);
}

/* Without the option a second echod cannot bind the port at all. */
static void second_bind_needs_reuseport(void **state)
{
    (void)state;
    h_echod_start(&inst[0], "tcp = { listen = [ \"127.0.0.1:0\" ]; };\nudp = { listen = [ ]; };\n",
                  NULL);
    char config[256];
    snprintf(config, sizeof(config),
             "tcp = { listen = [ \"%s\" ]; reuseport = true; };\nudp = { listen = [ ]; };\n",
             inst[0].tcp_text[0]);
    char path[512], out[512], err[512];
    h_write_temp("echod.conf", config, strlen(config), path, sizeof(path));
    char *argv[] = {(char *)h_env("ECHOD_BIN"), (char *)"-c", path, NULL};
    int code = h_run(argv, NULL, 0, 5000, out, err, sizeof(out));
    assert_int_equal(code, 69);
    assert_true(h_file_contains(err, "Address already in use"));
}

/* 300 connections, each echoing a byte, land on all three instances. */
static void tcp_spread(void **state)
{
    (void)state;
    for (int i = 0; i < SPREAD_CLIENTS; i++) {
        int fd = h_tcp_connect_ok(&inst[0].tcp[0]);
        h_echo_roundtrip(fd, "x", 1, 5000);
        h_close(fd);
    }
    expect_spread("tcp_accepted", SPREAD_MIN, SPREAD_CLIENTS);
}

/* 300 UDP sockets (300 source ports), one datagram each, land on all three. */
static void udp_spread(void **state)
{
    (void)state;
    for (int i = 0; i < SPREAD_CLIENTS; i++) {
        int fd = h_udp_connect(&inst[0].udp[0]);
        h_udp_expect(fd, "u", 1, "u", 1, 5, 1000);
        h_close(fd);
    }
    expect_spread("udp_datagrams_out", SPREAD_MIN, SPREAD_CLIENTS);
}

/* ---- the drain */

enum drain_outcome {
    DRAIN_OK,
    DRAIN_REFUSED,
    DRAIN_RESET,
    DRAIN_EOF,
    DRAIN_TIMEOUT,
    DRAIN_WRONG,
    DRAIN_OUTCOMES
};
static const char *const drain_names[DRAIN_OUTCOMES] = {"ok",        "refused", "reset",
                                                        "eof_early", "timeout", "wrong_bytes"};

struct drain_conn {
    int fd; /* -1: free slot */
    unsigned id;
    bool is_connected;
    size_t sent, got;
    int64_t started_ms, connected_ms;
};

struct drain_figures {
    unsigned connects, after_signal;
    unsigned outcome[DRAIN_OUTCOMES];
    unsigned slow_connects; /* connected after more than 900 ms: a SYN sent again */
    int64_t max_connect_ms;
};

/* The byte at offset i of connection id's message. */
static uint8_t drain_byte(unsigned id, size_t i)
{
    return (uint8_t)(id * 131u + i * 7u + 1u);
}

static void drain_finish(struct drain_conn *c, struct drain_figures *f, enum drain_outcome o)
{
    if (o != DRAIN_OK && f->outcome[DRAIN_REFUSED] + f->outcome[DRAIN_RESET] +
                                 f->outcome[DRAIN_EOF] + f->outcome[DRAIN_TIMEOUT] +
                                 f->outcome[DRAIN_WRONG] <
                             5) /* the first few, for the log */
        h_note("drain: connection %u: %s (connected %s, %zu sent, %zu back)", c->id, drain_names[o],
               c->is_connected ? "yes" : "no", c->sent, c->got);
    f->outcome[o]++;
    h_close(c->fd);
    c->fd = -1;
}

/* The outcome an errno means for a connection. */
static enum drain_outcome drain_error(int err)
{
    if (err == ECONNREFUSED)
        return DRAIN_REFUSED;
    if (err == ECONNRESET || err == EPIPE)
        return DRAIN_RESET;
    fail_msg("drain: unexpected socket error %s", strerror(err));
    return DRAIN_WRONG;
}

/* Move c along after poll said revents. */
static void drain_step(struct drain_conn *c, short revents, struct drain_figures *f, int64_t now)
{
    if (!c->is_connected && (revents & (POLLOUT | POLLERR | POLLHUP))) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            drain_finish(c, f, drain_error(err));
            return;
        }
        c->is_connected = true;
        c->connected_ms = now;
        int64_t took = now - c->started_ms;
        f->slow_connects += took > 900;
        if (took > f->max_connect_ms)
            f->max_connect_ms = took;
    }
    if (!c->is_connected)
        return;
    uint8_t buf[DRAIN_BYTES];
    while (c->sent < DRAIN_BYTES) {
        size_t n = DRAIN_BYTES - c->sent;
        for (size_t i = 0; i < n; i++)
            buf[i] = drain_byte(c->id, c->sent + i);
        ssize_t w = send(c->fd, buf, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (w < 0) {
            drain_finish(c, f, drain_error(errno));
            return;
        }
        c->sent += (size_t)w;
    }
    for (;;) {
        ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (r < 0) {
            drain_finish(c, f, drain_error(errno));
            return;
        }
        if (r == 0 || c->got + (size_t)r > DRAIN_BYTES) {
            drain_finish(c, f, r == 0 ? DRAIN_EOF : DRAIN_WRONG);
            return;
        }
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] != drain_byte(c->id, c->got + (size_t)i)) {
                drain_finish(c, f, DRAIN_WRONG);
                return;
            }
        }
        c->got += (size_t)r;
        if (c->got == DRAIN_BYTES) {
            drain_finish(c, f, DRAIN_OK);
            return;
        }
    }
}

/* Connections the victim holds, closed release_ms after its SIGTERM. */
struct drain_hold {
    int fds[4];
    int count;
    int release_ms;
};

/* Open connections to the shared port until instance `victim` has accepted h->count of
 * them (its tcp_accepted moves), keeping those; the others are closed. */
static void drain_hold_on(int victim, struct drain_hold *h)
{
    int held = 0;
    for (int tries = 0; held < h->count && tries < 100; tries++) {
        uint64_t before = h_echod_stat(&inst[victim], "tcp_accepted");
        int fd = h_tcp_connect_ok(&inst[0].tcp[0]);
        h_echo_roundtrip(fd, "h", 1, 5000);
        if (h_echod_stat(&inst[victim], "tcp_accepted") > before)
            h->fds[held++] = fd;
        else
            h_close(fd);
    }
    assert_int_equal(held, h->count);
}

/* Run the stream: new connects every DRAIN_PACE_MS with up to DRAIN_SLOTS in flight,
 * SIGTERM to instance `victim` after DRAIN_BEFORE ms (and the held connections closed
 * hold->release_ms after that), new connects until DRAIN_AFTER ms later, then every
 * connection to its end. */
static void drain_run(int victim, struct drain_hold *hold, struct drain_figures *f)
{
    static struct drain_conn conns[DRAIN_SLOTS];
    for (int i = 0; i < DRAIN_SLOTS; i++)
        conns[i].fd = -1;
    int64_t start = h_now_ms(), signal_at = start + DRAIN_BEFORE;
    int64_t stop_at = signal_at + DRAIN_AFTER, next_connect = start;
    bool has_signalled = false;
    for (;;) {
        int64_t now = h_now_ms();
        if (!has_signalled && now >= signal_at) {
            assert_int_equal(kill(inst[victim].pid, SIGTERM), 0);
            has_signalled = true;
        }
        if (hold->count > 0 && has_signalled && now >= signal_at + hold->release_ms) {
            for (int i = 0; i < hold->count; i++)
                h_close(hold->fds[i]);
            hold->count = 0;
        }
        static struct pollfd pfd[DRAIN_SLOTS];
        int busy = 0;
        for (int i = 0; i < DRAIN_SLOTS; i++) {
            struct drain_conn *c = &conns[i];
            if (c->fd < 0 && now < stop_at && now >= next_connect) {
                *c = (struct drain_conn){.id = f->connects++, .started_ms = now};
                f->after_signal += has_signalled;
                next_connect = now + DRAIN_PACE_MS;
                c->fd = h_tcp_connect_start(&inst[0].tcp[0]);
                if (c->fd < 0) {
                    f->outcome[drain_error(-c->fd)]++;
                    c->fd = -1;
                }
            }
            if (c->fd >= 0 && now - c->started_ms > DRAIN_CONN_MS)
                drain_finish(c, f, DRAIN_TIMEOUT);
            pfd[i] = (struct pollfd){c->fd, (short)(POLLIN | (c->is_connected ? 0 : POLLOUT)), 0};
            busy += c->fd >= 0;
        }
        if (busy == 0 && now >= stop_at)
            break;
        if (poll(pfd, DRAIN_SLOTS, DRAIN_PACE_MS) < 0 && errno != EINTR)
            fail_msg("poll: %s", strerror(errno));
        now = h_now_ms();
        for (int i = 0; i < DRAIN_SLOTS; i++)
            if (conns[i].fd >= 0 && pfd[i].revents)
                drain_step(&conns[i], pfd[i].revents, f, now);
    }
}

/* The stream with instance 1 told to stop (and hold released) during it; the figures
 * printed; then nothing may have been refused, reset or cut short, and the two left
 * serve on. */
static void drain_check(const char *what, struct drain_hold *hold)
{
    struct drain_figures f = {0};
    drain_run(1, hold, &f);
    int code = h_wait_exit(inst[1].pid, 10000);
    inst[1].pid = 0;
    inst[1].exit_status = code;
    char *migrate = h_read_file("/proc/sys/net/ipv4/tcp_migrate_req", NULL);
    h_note("drain (%s): connects=%u (after the SIGTERM %u) ok=%u refused=%u reset=%u eof_early=%u "
           "timeout=%u wrong_bytes=%u slow_connects=%u max_connect_ms=%lld "
           "tcp_migrate_req=%c",
           what, f.connects, f.after_signal, f.outcome[DRAIN_OK], f.outcome[DRAIN_REFUSED],
           f.outcome[DRAIN_RESET], f.outcome[DRAIN_EOF], f.outcome[DRAIN_TIMEOUT],
           f.outcome[DRAIN_WRONG], f.slow_connects, (long long)f.max_connect_ms,
           migrate ? migrate[0] : '?');
    free(migrate);
    if (code != 0)
        h_echod_dump_log(&inst[1]);
    assert_int_equal(code, 0);
    assert_true(f.after_signal > 100);
    for (int o = DRAIN_REFUSED; o < DRAIN_OUTCOMES; o++)
        if (f.outcome[o] != 0)
            fail_msg("drain: %u connections ended %s", f.outcome[o], drain_names[o]);
    assert_int_equal(f.outcome[DRAIN_OK], f.connects);
    /* The two left serve on: a new client reaches one of them. */
    int fd = h_tcp_connect_ok(&inst[0].tcp[0]);
    h_echo_roundtrip(fd, "after", 5, 5000);
}

/* SIGTERM one instance during a steady stream of new connects: the others take every
 * client; nothing is refused or reset; every connection gets its 256 bytes back. */
static void tcp_drain_one_instance(void **state)
{
    (void)state;
    struct drain_hold none = {.count = 0};
    drain_check("idle instance", &none);
}

/* The same while the stopping instance is busy: at max_connections, with clients
 * waiting in its backlog, for 500 ms after its SIGTERM. Those waiting are served; the
 * clients that come meanwhile must not queue behind them only to be turned away: the
 * kernel drops their SYNs, and their retry a second later reaches the other two. */
static void tcp_drain_busy_instance(void **state)
{
    (void)state;
    struct drain_hold hold = {.count = 2, .release_ms = 500};
    drain_hold_on(1, &hold);
    drain_check("busy instance", &hold);
}

/* A reload keeps the socket of an unchanged entry; a changed reuseport needs a new
 * socket: beside the old one on its fixed port the kernel refuses it (the reload is
 * refused, naming the address), while an entry of port 0 gets a new socket and port. */
static void reload_and_reuseport(void **state)
{
    (void)state;
    h_echod_start(&inst[0],
                  "tcp = { listen = [ \"127.0.0.1:0\" ]; reuseport = true; };\n"
                  "udp = { listen = [ ]; };\n",
                  NULL);
    char port[64], config[256];
    snprintf(port, sizeof(port), "%s", inst[0].tcp_text[0]);
    snprintf(config, sizeof(config),
             "tcp = { listen = [ \"%s\" ]; reuseport = true; };\nudp = { listen = [ ]; };\n", port);
    assert_int_equal(h_echod_reload(&inst[0], config), 0);
    assert_string_equal(inst[0].tcp_text[0], port);
    assert_false(h_echod_log_contains(&inst[0], "reload: refused"));

    snprintf(config, sizeof(config),
             "tcp = { listen = [ \"%s\" ]; reuseport = false; };\nudp = { listen = [ ]; };\n",
             port);
    assert_int_equal(h_echod_reload(&inst[0], config), -1);
    char needle[128];
    snprintf(needle, sizeof(needle), "cannot listen on tcp %s: Address already in use", port);
    assert_true(h_echod_log_contains(&inst[0], needle));
    int fd = h_tcp_connect_ok(&inst[0].tcp[0]);
    h_echo_roundtrip(fd, "kept", 4, 5000);

    assert_int_equal(h_echod_reload(&inst[0], "tcp = { listen = [ \"127.0.0.1:0\" ]; };\n"
                                              "udp = { listen = [ ]; };\n"),
                     0);
    assert_string_not_equal(inst[0].tcp_text[0], port);
    int fresh = h_tcp_connect_ok(&inst[0].tcp[0]);
    h_echo_roundtrip(fresh, "new", 3, 5000);
    h_echo_roundtrip(fd, "old", 3, 5000); /* a connection outlives its listener */
}

int main(void)
{
    h_init("test_reuseport", 240);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(second_bind_needs_reuseport, teardown),
        cmocka_unit_test_teardown(reload_and_reuseport, teardown),
        cmocka_unit_test_setup_teardown(tcp_spread, setup, teardown),
        cmocka_unit_test_setup_teardown(udp_spread, setup, teardown),
        cmocka_unit_test_setup_teardown(tcp_drain_one_instance, setup, teardown),
        cmocka_unit_test_setup_teardown(tcp_drain_busy_instance, setup_busy, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
