/* test_udp: UDP echo through the real echod. Datagrams of 1 to 65,507 seeded random bytes
 * come back as one datagram each, byte for byte, from the listener's own address; several
 * sources interleaved each get exactly their own replies; the [::1] listener works too;
 * the udp_* counters add up. A lost datagram is retried a bounded number of times.
 * Each test gets a fresh echod with UDP on 127.0.0.1:0 (and [::1]:0) and TCP off.
 * The reflection guard, with what loopback can show (test_guard covers the sources no
 * test can send from): a flood from one /24 held to burst + rate while another /24 of
 * loopback is answered in full; a datagram from echod's own port unanswered; the
 * allow_loopback and enabled switches; replies over udp.max_reply_bytes dropped and
 * counted; drop lines at most one per interval, adding up to the counter. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#define TRIES   5
#define WAIT_MS 1000

static bool has_ipv6;

static int setup(void **state)
{
    (void)state;
    char config[256];
    snprintf(config, sizeof(config),
             "tcp = { listen = [ ]; };\n"
             "udp = { listen = [ \"127.0.0.1:0\"%s ]; mode = \"echo\"; };\n",
             has_ipv6 ? ", \"[::1]:0\"" : "");
    h_echod_start(&echod, config, NULL);
    assert_int_equal(echod.tcp_count, 0);
    assert_int_equal(echod.udp_count, has_ipv6 ? 2 : 1);
    return 0;
}

static const size_t datagram_sizes[] = {1, 100, 1472, 1473, 9000, 65507};
#define DATAGRAM_SIZES (sizeof(datagram_sizes) / sizeof(datagram_sizes[0]))

/* Each size, random content with a NUL in the middle, echoed as one equal datagram. */
static void echo_sizes(const struct sockaddr_storage *server)
{
    int fd = h_udp_connect(server);
    for (size_t i = 0; i < DATAGRAM_SIZES; i++) {
        size_t len = datagram_sizes[i];
        uint8_t *data = h_xmalloc(len);
        h_fill_random(data, len);
        data[len / 2] = 0;
        h_udp_expect(fd, data, len, data, len, TRIES, WAIT_MS);
        free(data);
    }
    /* Nothing more than one reply per datagram. */
    uint8_t extra[16];
    ssize_t n = h_udp_recv(fd, extra, sizeof(extra), 200);
    if (n >= 0)
        fail_msg("an extra %zd-byte datagram arrived after the last reply", n);
    h_close(fd);
}

static void udp_echo_sizes(void **state)
{
    (void)state;
    echo_sizes(&echod.udp[0]);
    h_note("IPv4: datagrams of 1, 100, 1472, 1473, 9000 and 65507 bytes echoed exactly");
}

enum { SOURCES = 8, EACH = 25, LEN = 200 };

/* Read replies on every socket until none arrives for 300 ms, marking got[s][k]; a
 * foreign, malformed or (when is_first_round) duplicate reply fails. */
static void collect_replies(const int *fds, size_t count, uint8_t (*sent)[EACH][LEN],
                            bool (*got)[EACH], bool is_first_round)
{
    struct pollfd pfd[SOURCES];
    static uint8_t reply[65536];
    for (size_t s = 0; s < count; s++)
        pfd[s] = (struct pollfd){fds[s], POLLIN, 0};
    int64_t give_up = h_now_ms() + 10000;
    while (poll(pfd, count, 300) > 0 && h_now_ms() < give_up) {
        for (size_t s = 0; s < count; s++) {
            if (!(pfd[s].revents & POLLIN))
                continue;
            ssize_t n = h_udp_recv(fds[s], reply, sizeof(reply), 0);
            if (n < 0)
                continue;
            if (n != LEN || reply[0] != s || reply[1] >= EACH)
                fail_msg("source %zu received a foreign or malformed %zd-byte datagram "
                         "(first bytes %u %u)",
                         s, n, reply[0], n > 1 ? reply[1] : 0);
            size_t k = reply[1];
            h_assert_bytes("interleaved reply", sent[s][k], reply, LEN);
            if (got[s][k] && is_first_round)
                fail_msg("source %zu got datagram %zu twice", s, k);
            got[s][k] = true;
        }
    }
}

/* Eight sockets send 25 datagrams each, round-robin, before reading anything; each socket
 * then gets back exactly its own 25 payloads (each once), never another socket's. */
static void udp_interleaved_sources(void **state)
{
    (void)state;
    int fds[SOURCES];
    static uint8_t sent[SOURCES][EACH][LEN];
    bool got[SOURCES][EACH];
    memset(got, 0, sizeof(got));
    for (size_t s = 0; s < SOURCES; s++)
        fds[s] = h_udp_connect(&echod.udp[0]);
    for (size_t k = 0; k < EACH; k++) {
        for (size_t s = 0; s < SOURCES; s++) {
            h_fill_random(sent[s][k], LEN);
            sent[s][k][0] = (uint8_t)s; /* source and sequence in the payload */
            sent[s][k][1] = (uint8_t)k;
            if (send(fds[s], sent[s][k], LEN, 0) != LEN)
                fail_msg("udp send: %s", strerror(errno));
        }
    }
    size_t missing = 0;
    for (int round = 0; round < TRIES; round++) {
        collect_replies(fds, SOURCES, sent, got, round == 0);
        missing = 0;
        for (size_t s = 0; s < SOURCES; s++) {
            for (size_t k = 0; k < EACH; k++) {
                if (!got[s][k]) {
                    missing++;
                    if (send(fds[s], sent[s][k], LEN, 0) != LEN)
                        fail_msg("udp send: %s", strerror(errno));
                }
            }
        }
        if (missing == 0)
            break;
        const char *names[] = {"udp_datagrams_in", "udp_datagrams_out", "udp_send_errors"};
        uint64_t v[3];
        h_echod_stats(&echod, names, v, 3);
        h_note("round %d: %zu of %d datagrams unanswered, sent again (echod so far: in %llu, "
               "out %llu, send errors %llu)",
               round, missing, SOURCES * EACH, (unsigned long long)v[0], (unsigned long long)v[1],
               (unsigned long long)v[2]);
    }
    assert_int_equal(missing, 0);
}

/* The [::1] listener echoes every size too; without IPv6, say so and test IPv4 only. */
static void udp_echo_ipv6(void **state)
{
    (void)state;
    if (!has_ipv6) {
        h_note("::1 cannot be bound on this machine: the IPv6 UDP echo is NOT tested; "
               "echod was started with the IPv4 listener only, which is asserted instead");
        echo_sizes(&echod.udp[0]);
        return;
    }
    assert_int_equal(echod.udp[1].ss_family, AF_INET6);
    assert_memory_equal(echod.udp_text[1], "[::1]:", 6);
    echo_sizes(&echod.udp[1]);
    h_note("IPv6 [::1]: every size echoed exactly");
}

/* 40 datagrams from one socket: the counters account for every one of them. */
static void udp_counters(void **state)
{
    (void)state;
    enum { COUNT = 40, SMALL = 64 };
    int fd = h_udp_connect(&echod.udp[0]);
    uint8_t data[SMALL];
    for (size_t i = 0; i < COUNT; i++) {
        h_fill_random(data, SMALL);
        h_udp_expect(fd, data, SMALL, data, SMALL, 1, 2000);
    }
    h_echod_wait_stat(&echod, "udp_datagrams_out", COUNT,
                      2000); /* counted once sendmsg returns, after the reply */
    const char *names[] = {"udp_datagrams_in", "udp_datagrams_out", "udp_bytes_in",
                           "udp_bytes_out"};
    uint64_t v[4];
    h_echod_stats(&echod, names, v, 4);
    assert_int_equal(v[0], COUNT);
    assert_int_equal(v[1], COUNT);
    assert_int_equal(v[2], COUNT * SMALL);
    assert_int_equal(v[3], COUNT * SMALL);
}

/* A tracked non-blocking UDP socket bound to ip:port and connected to to, or fail. */
static int udp_connect_from(const char *ip, uint16_t port, const struct sockaddr_storage *to)
{
    int fd = h_udp_bind_connect(ip, port, to);
    if (fd < 0)
        fail_msg("bind %s:%u: %s", ip, port, strerror(-fd));
    return fd;
}

/* Datagrams that arrive on fd until none comes for quiet_ms (bounded at 10 s). */
static unsigned drain_count(int fd, int quiet_ms)
{
    static uint8_t reply[65536];
    unsigned n = 0;
    int64_t give_up = h_now_ms() + 10000;
    while (h_udp_recv(fd, reply, sizeof(reply), quiet_ms) >= 0 && h_now_ms() < give_up)
        n++;
    return n;
}

enum { FLOOD = 2000, OTHER = 20, RATE = 50, BURST = 50, DGRAM_LEN = 32 };

/* FLOOD datagrams from fd, about two per ms; every FLOOD / OTHER of them, one numbered
 * datagram from other too. Returns the ms the sending took. */
static int64_t flood(int fd, int other, uint8_t (*other_sent)[DGRAM_LEN])
{
    int64_t start = h_now_ms();
    uint8_t data[DGRAM_LEN];
    h_fill_random(data, DGRAM_LEN);
    for (unsigned i = 0; i < FLOOD; i++) {
        if (send(fd, data, DGRAM_LEN, 0) != DGRAM_LEN && errno != EAGAIN && errno != ENOBUFS)
            fail_msg("udp send: %s", strerror(errno));
        if (other >= 0 && i % (FLOOD / OTHER) == 0) {
            unsigned k = i / (FLOOD / OTHER);
            h_fill_random(other_sent[k], DGRAM_LEN);
            other_sent[k][0] = (uint8_t)k;
            if (send(other, other_sent[k], DGRAM_LEN, 0) != DGRAM_LEN)
                fail_msg("udp send: %s", strerror(errno));
        }
        if (i % 20 == 19)
            h_sleep_ms(10);
    }
    return h_now_ms() - start;
}

/* The second source's replies: each of its OTHER datagrams back once, byte for byte.
 * A datagram the kernel lost (never counted by echod) is sent again, a bounded number
 * of times. Returns the datagrams sent in all. */
static unsigned expect_other_answered(int fd, uint8_t (*sent)[DGRAM_LEN])
{
    unsigned sends = OTHER;
    bool got[OTHER] = {false};
    uint8_t reply[DGRAM_LEN + 1];
    for (int round = 0; round < TRIES; round++) {
        ssize_t n;
        while ((n = h_udp_recv(fd, reply, sizeof(reply), 300)) >= 0) {
            if (n != DGRAM_LEN || reply[0] >= OTHER)
                fail_msg("the second source got a foreign %zd-byte datagram", n);
            h_assert_bytes("second source's reply", sent[reply[0]], reply, DGRAM_LEN);
            if (got[reply[0]] && round == 0)
                fail_msg("the second source got datagram %u twice", reply[0]);
            got[reply[0]] = true;
        }
        unsigned missing = 0;
        for (unsigned k = 0; k < OTHER; k++) {
            if (!got[k]) {
                missing++;
                sends++;
                if (send(fd, sent[k], DGRAM_LEN, 0) != DGRAM_LEN)
                    fail_msg("udp send: %s", strerror(errno));
            }
        }
        if (missing == 0)
            return sends;
        h_note("round %d: %u of the second source's datagrams unanswered, sent again", round,
               missing);
    }
    fail_msg("the second source (another /24) was not answered in full");
    return sends;
}

/* With limit_loopback on, a flood from 127.0.0.1 gets about burst + rate * seconds
 * replies and the rest are counted as udp_drop_rate, while 127.0.1.1 (another /24)
 * is answered in full at the same time. */
static void udp_guard_rate_limit(void **state)
{
    (void)state;
    char config[512];
    snprintf(config, sizeof(config),
             "tcp = { listen = [ ]; };\n"
             "udp = {\n  listen = [ \"127.0.0.1:0\" ];\n"
             "  guard = { limit_loopback = true; rate = %d; burst = %d; };\n};\n",
             RATE, BURST);
    h_echod_start(&echod, config, NULL);
    int fd = h_udp_connect(&echod.udp[0]);
    int other = udp_connect_from("127.0.1.1", 0, &echod.udp[0]);
    static uint8_t other_sent[OTHER][DGRAM_LEN];
    int64_t start = h_now_ms();
    int64_t send_ms = flood(fd, other, other_sent);
    unsigned other_sends = expect_other_answered(other, other_sent);
    unsigned replies = drain_count(fd, 300);
    int64_t elapsed_ms = h_now_ms() - start;
    const char *names[] = {"udp_datagrams_in", "udp_datagrams_out", "udp_drop_rate",
                           "udp_drop_global_rate", "udp_send_errors"};
    uint64_t v[5];
    h_echod_stats(&echod, names, v, 5);
    h_note("flood of %d datagrams in %lld ms: %u answered, echod in=%llu out=%llu "
           "drop_rate=%llu",
           FLOOD, (long long)send_ms, replies, (unsigned long long)v[0], (unsigned long long)v[1],
           (unsigned long long)v[2]);
    uint64_t ceiling = BURST + (uint64_t)RATE * (uint64_t)elapsed_ms / 1000 + 1;
    if (replies < BURST || replies > ceiling)
        fail_msg("the flooding source got %u replies, not between burst %d and burst + rate "
                 "* %lld ms = %llu",
                 replies, BURST, (long long)elapsed_ms, (unsigned long long)ceiling);
    assert_int_equal(v[1], replies + other_sends); /* every reply sent arrived */
    assert_int_equal(v[0], v[1] + v[2]);           /* every datagram answered or dropped */
    assert_true(v[2] > 0);
    assert_int_equal(v[3], 0);
    assert_int_equal(v[4], 0);
}

/* echod on 127.0.0.1:P1 and 127.0.0.2:P2: a datagram to P1 from 127.0.0.1:P2 (what the
 * other listener's reply would look like) is not answered, nor the reverse, and each is
 * counted as udp_drop_own_port; an ordinary client is answered. */
static void udp_guard_own_port(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  "tcp = { listen = [ ]; };\n"
                  "udp = { listen = [ \"127.0.0.1:0\", \"127.0.0.2:0\" ]; };\n",
                  NULL);
    assert_int_equal(echod.udp_count, 2);
    uint16_t p1 = h_port_of(&echod.udp[0]), p2 = h_port_of(&echod.udp[1]);
    int fd = udp_connect_from("127.0.0.1", p2, &echod.udp[0]);
    if (send(fd, "ping", 4, 0) != 4)
        fail_msg("udp send: %s", strerror(errno));
    h_expect_silence(fd, 300);
    assert_int_equal(h_echod_wait_stat(&echod, "udp_drop_own_port", 1, 2000), 1);
    int back = udp_connect_from("127.0.0.2", p1, &echod.udp[1]);
    if (send(back, "pong", 4, 0) != 4)
        fail_msg("udp send: %s", strerror(errno));
    h_expect_silence(back, 300);
    assert_int_equal(h_echod_wait_stat(&echod, "udp_drop_own_port", 2, 2000), 2);
    int ok = h_udp_connect(&echod.udp[0]);
    h_udp_expect(ok, "hello", 5, "hello", 5, TRIES, WAIT_MS);
    h_echod_wait_stat(&echod, "udp_datagrams_out", 1,
                      2000); /* counted once sendmsg returns, after the reply */
    const char *names[] = {"udp_datagrams_in", "udp_datagrams_out", "udp_drop_own_port"};
    uint64_t v[3];
    h_echod_stats(&echod, names, v, 3);
    assert_int_equal(v[0], v[1] + v[2]);
}

/* The switches reach the UDP thread: with allow_loopback = false a datagram from
 * 127.0.0.1 is unanswered and counted as udp_drop_address; with enabled = false one
 * from echod's own port is answered and nothing is counted. */
static void udp_guard_switches(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  "tcp = { listen = [ ]; };\n"
                  "udp = { listen = [ \"127.0.0.1:0\" ]; guard = { allow_loopback = false; }; };\n",
                  NULL);
    int fd = h_udp_connect(&echod.udp[0]);
    if (send(fd, "ping", 4, 0) != 4)
        fail_msg("udp send: %s", strerror(errno));
    h_expect_silence(fd, 300);
    assert_int_equal(h_echod_wait_stat(&echod, "udp_drop_address", 1, 2000), 1);
    h_echod_teardown(&echod);

    h_echod_start(&echod,
                  "tcp = { listen = [ ]; };\n"
                  "udp = { listen = [ \"127.0.0.1:0\", \"127.0.0.2:0\" ];"
                  " guard = { enabled = false; }; };\n",
                  NULL);
    fd = udp_connect_from("127.0.0.1", h_port_of(&echod.udp[1]), &echod.udp[0]);
    h_udp_expect(fd, "ping", 4, "ping", 4, TRIES, WAIT_MS);
    const char *names[] = {"udp_drop_own_port", "udp_drop_address", "udp_drop_rate"};
    uint64_t v[3];
    h_echod_stats(&echod, names, v, 3);
    assert_int_equal(v[0] + v[1] + v[2], 0);
}

/* Greet mode with max_reply_bytes = 100 and greeting "Hello, ": 93 bytes are answered
 * with a 100-byte reply; 94 bytes get none and count as udp_reply_too_large. */
static void udp_max_reply_bytes(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  "tcp = { listen = [ ]; };\n"
                  "udp = { listen = [ \"127.0.0.1:0\" ]; mode = \"greet\"; greeting = \"Hello, \";"
                  " max_reply_bytes = 100; };\n",
                  NULL);
    int fd = h_udp_connect(&echod.udp[0]);
    uint8_t data[94], want[100];
    h_fill_random(data, sizeof(data));
    memcpy(want, "Hello, ", 7);
    memcpy(want + 7, data, 93);
    h_udp_expect(fd, data, 93, want, 100, TRIES, WAIT_MS);
    if (send(fd, data, 94, 0) != 94)
        fail_msg("udp send: %s", strerror(errno));
    h_expect_silence(fd, 300);
    assert_int_equal(h_echod_wait_stat(&echod, "udp_reply_too_large", 1, 2000), 1);
    h_udp_expect(fd, data, 1, want, 8, TRIES, WAIT_MS); /* and it keeps answering */
}

/* The numbers N of every "udp guard: dropped N datagram" line in text; the line count. */
static unsigned sum_drop_lines(const char *text, uint64_t *sum)
{
    static const char needle[] = "udp guard: dropped ";
    unsigned lines = 0;
    *sum = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += sizeof(needle) - 1) {
        lines++;
        *sum += strtoull(p + sizeof(needle) - 1, NULL, 10);
        const char *end = strchr(p, '\n');
        if (end == NULL || strstr(p, "over udp.guard.rate (last from 127.0.0.1:") > end)
            fail_msg("a drop line does not name the rate limit and 127.0.0.1");
    }
    return lines;
}

/* A flood of about a second with log_interval_ms = 200 logs at most one drop line per
 * 200 ms (plus the first at once), and the lines account for every drop. */
static void udp_guard_log_rate_limited(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  "tcp = { listen = [ ]; };\n"
                  "udp = { listen = [ \"127.0.0.1:0\" ];\n"
                  "  guard = { limit_loopback = true; rate = 10; burst = 10;"
                  " log_interval_ms = 200; };\n};\n",
                  NULL);
    int fd = h_udp_connect(&echod.udp[0]);
    int64_t start = h_now_ms();
    flood(fd, -1, NULL);
    drain_count(fd, 300);
    h_sleep_ms(300); /* past the interval: the last drops are logged too */
    int64_t elapsed_ms = h_now_ms() - start;
    uint64_t drops = h_echod_stat(&echod, "udp_drop_rate");
    size_t len;
    char *text = h_read_file(echod.log_path, &len);
    assert_non_null(text);
    uint64_t logged;
    unsigned lines = sum_drop_lines(text, &logged);
    free(text);
    h_note("%llu drops in %lld ms logged on %u lines", (unsigned long long)drops,
           (long long)elapsed_ms, lines);
    assert_true(drops > 0); /* how many depends on what the kernel queue kept */
    assert_int_equal(logged, drops);
    assert_true(lines >= 1);
    assert_true(lines <= (unsigned)(elapsed_ms / 200) + 1);
}

int main(void)
{
    h_init("test_udp", 120);
    has_ipv6 = h_have_ipv6();
    if (!has_ipv6)
        h_note("::1 is unavailable: IPv6 listeners are not configured in this run");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(udp_echo_sizes, setup, h_teardown),
        cmocka_unit_test_setup_teardown(udp_interleaved_sources, setup, h_teardown),
        cmocka_unit_test_setup_teardown(udp_echo_ipv6, setup, h_teardown),
        cmocka_unit_test_setup_teardown(udp_counters, setup, h_teardown),
        cmocka_unit_test_teardown(udp_guard_rate_limit, h_teardown),
        cmocka_unit_test_teardown(udp_guard_own_port, h_teardown),
        cmocka_unit_test_teardown(udp_guard_switches, h_teardown),
        cmocka_unit_test_teardown(udp_max_reply_bytes, h_teardown),
        cmocka_unit_test_teardown(udp_guard_log_rate_limited, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
