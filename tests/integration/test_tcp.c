/* test_tcp: TCP echo through the real echod. Exact echo of seeded random payloads from
 * 1 byte to 4 MiB (with NULs), a 4 MiB half-close, a client that writes 16 MiB without
 * reading (echod's RSS and pending output must stay bounded, then every byte arrives),
 * interleaved clients, IPv6, the counters and fd table after many connections close, and
 * an urgent (MSG_OOB) byte echoed in its place.
 * Each test gets a fresh echod (workers = 2, buffer_bytes = 65536) on ephemeral ports. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFFER_BYTES 65536

static bool has_ipv6;

static int setup(void **state)
{
    (void)state;
    char config[512];
    snprintf(config, sizeof(config),
             "workers = 2;\n"
             "tcp = {\n"
             "  listen = [ \"127.0.0.1:0\"%s ];\n"
             "  buffer_bytes = %d;\n"
             "};\n"
             "udp = { listen = [ ]; };\n",
             has_ipv6 ? ", \"[::1]:0\"" : "", BUFFER_BYTES);
    h_echod_start(&echod, config, NULL);
    assert_int_equal(echod.tcp_count, has_ipv6 ? 2 : 1);
    assert_int_equal(echod.udp_count, 0);
    return 0;
}

/* A seeded random payload with NULs at its start, middle and end. */
static uint8_t *random_payload(size_t len)
{
    uint8_t *p = h_xmalloc(len);
    h_fill_random(p, len);
    p[len / 2] = 0;
    if (len > 2) {
        p[0] = 0;
        p[len - 1] = 0;
    }
    return p;
}

static const size_t payload_sizes[] = {1, 2, 1000, 65535, 65536, 1 * MIB, 4 * MIB};
#define PAYLOAD_SIZES (sizeof(payload_sizes) / sizeof(payload_sizes[0]))

/* Each size on its own connection: exact echo, then half-close gives EOF and no byte
 * more than was sent. */
static void tcp_echo_random_payloads(void **state)
{
    (void)state;
    for (size_t i = 0; i < PAYLOAD_SIZES; i++) {
        size_t len = payload_sizes[i];
        uint8_t *data = random_payload(len);
        int fd = h_tcp_connect_ok(&echod.tcp[0]);
        h_echo_roundtrip(fd, data, len, 30000);
        shutdown(fd, SHUT_WR);
        h_expect_eof(fd, 5000);
        h_close(fd);
        free(data);
        h_note("echoed %zu bytes exactly", len);
    }
}

/* Every size one after another on the same connection. */
static void tcp_echo_sequence_one_connection(void **state)
{
    (void)state;
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    for (size_t i = 0; i < PAYLOAD_SIZES; i++) {
        uint8_t *data = random_payload(payload_sizes[i]);
        h_echo_roundtrip(fd, data, payload_sizes[i], 30000);
        free(data);
    }
    shutdown(fd, SHUT_WR);
    h_expect_eof(fd, 5000);
    h_close(fd);
}

/* Write 4 MiB, shutdown(SHUT_WR), get exactly 4 MiB back and then EOF. */
static void tcp_half_close_4mib(void **state)
{
    (void)state;
    size_t len = 4 * MIB;
    uint8_t *data = random_payload(len);
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    struct h_stream s = {.fd = fd,
                         .tx = data,
                         .tx_len = len,
                         .is_half_closing = true,
                         .rx = h_xmalloc(len),
                         .rx_expect = len};
    h_streams_run(&s, 1, 30000);
    assert_true(s.has_eof);
    h_assert_bytes("echo of 4 MiB before EOF", data, s.rx, len);
    h_close(fd);
    free(s.rx);
    free(data);
}

/* A client writes 16 MiB without reading. While its writes are stalled (or all sent),
 * echod's RSS must not grow by more than 4 MiB and what it read but has not written back
 * (tcp_bytes_in - tcp_bytes_out) must stay within 2 * buffer_bytes. Then the client reads:
 * every byte comes back, in order, then EOF after its half-close. */
static void tcp_unread_16mib_stays_bounded(void **state)
{
    (void)state;
    size_t len = 16 * MIB;
    uint8_t *data = random_payload(len);
    /* Small client buffers, so the kernel cannot hide echod's behaviour. */
    int fd = h_tcp_connect_sized(&echod.tcp[0], 65536);
    uint8_t probe = 'p', back = 0;
    h_send_all(fd, &probe, 1, 5000);
    h_recv_exact(fd, &back, 1, 5000);
    assert_int_equal(back, 'p');
    long rss_before = h_rss_kib(echod.pid);

    size_t sent = 0;
    int64_t last_progress = h_now_ms();
    int64_t give_up = h_now_ms() + 30000;
    while (sent < len && h_now_ms() - last_progress < 1000 && h_now_ms() < give_up) {
        size_t chunk = len - sent < 65536 ? len - sent : 65536;
        ssize_t n = send(fd, data + sent, chunk, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            last_progress = h_now_ms();
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            fail_msg("send after %zu bytes: %s", sent, strerror(errno));
        } else {
            h_sleep_ms(10);
        }
    }
    if (sent == len)
        h_sleep_ms(500); /* everything sent: let echod do what it would do */
    long rss_stalled = h_rss_kib(echod.pid);
    const char *names[] = {"tcp_bytes_in", "tcp_bytes_out"};
    uint64_t v[2];
    h_echod_stats(&echod, names, v, 2);
    uint64_t held = v[0] - v[1];
    h_note("unread client: sent %zu of %zu bytes before writes stalled; echod RSS %ld -> %ld "
           "KiB (+%ld KiB); echod read %llu, wrote %llu, holds %llu bytes",
           sent, len, rss_before, rss_stalled, rss_stalled - rss_before, (unsigned long long)v[0],
           (unsigned long long)v[1], (unsigned long long)held);
    h_echod_assert_alive(&echod);
    if (rss_stalled - rss_before >= 4096)
        fail_msg("echod's RSS grew by %ld KiB (>= 4 MiB) for one client that does not read",
                 rss_stalled - rss_before);
    if (held > 2 * BUFFER_BYTES)
        fail_msg("echod holds %llu bytes of unsent echo for one connection, more than "
                 "2 * buffer_bytes = %d: it does not stop reading",
                 (unsigned long long)held, 2 * BUFFER_BYTES);

    struct h_stream s = {.fd = fd,
                         .tx = data,
                         .tx_len = len,
                         .tx_off = sent,
                         .is_half_closing = true,
                         .rx = h_xmalloc(len),
                         .rx_expect = len};
    h_streams_run(&s, 1, 60000);
    h_assert_bytes("echo of 16 MiB after the client started reading", data, s.rx, len);
    h_close(fd);
    free(s.rx);
    free(data);
}

/* Eight clients stream different payloads at once in random-sized writes, each reading
 * concurrently and half-closing at the end: every stream comes back exact. */
static void tcp_interleaved_clients(void **state)
{
    (void)state;
    enum { CLIENTS = 8 };
    struct h_stream s[CLIENTS];
    uint8_t *data[CLIENTS];
    for (size_t i = 0; i < CLIENTS; i++) {
        size_t len = 64 * KIB + (size_t)(h_rand() % (448 * KIB));
        data[i] = random_payload(len);
        s[i] = (struct h_stream){.fd = h_tcp_connect_ok(&echod.tcp[0]),
                                 .tx = data[i],
                                 .tx_len = len,
                                 .max_chunk = 1 + (size_t)(h_rand() % 8192),
                                 .is_half_closing = true,
                                 .rx = h_xmalloc(len),
                                 .rx_expect = len};
    }
    h_streams_run(s, CLIENTS, 30000);
    for (size_t i = 0; i < CLIENTS; i++) {
        char what[64];
        snprintf(what, sizeof(what), "interleaved client %zu", i);
        h_assert_bytes(what, data[i], s[i].rx, s[i].tx_len);
        h_close(s[i].fd);
        free(s[i].rx);
        free(data[i]);
    }
}

/* The [::1] listener echoes like the IPv4 one. */
static void tcp_echo_ipv6(void **state)
{
    (void)state;
    if (!has_ipv6) {
        h_note("::1 cannot be bound on this machine: the IPv6 TCP echo is NOT tested; "
               "asserting IPv4 only");
        int fd = h_tcp_connect_ok(&echod.tcp[0]);
        uint8_t *data = random_payload(100000);
        h_echo_roundtrip(fd, data, 100000, 10000);
        free(data);
        return;
    }
    assert_int_equal(echod.tcp[1].ss_family, AF_INET6);
    int fd = h_tcp_connect_ok(&echod.tcp[1]);
    uint8_t *data = random_payload(1 * MIB);
    h_echo_roundtrip(fd, data, 1 * MIB, 30000);
    shutdown(fd, SHUT_WR);
    h_expect_eof(fd, 5000);
    free(data);
}

/* Wait until echod's fd count is back to `want`; fail with the count after 5 s. */
static void wait_fd_count(int want, const char *when)
{
    int64_t deadline = h_now_ms() + 5000;
    int count;
    while ((count = h_fd_count(echod.pid)) != want && h_now_ms() < deadline)
        h_sleep_ms(10);
    if (count != want)
        fail_msg("%s: echod has %d fds open, %d before the clients came: fd leak", when, count,
                 want);
}

/* Send as much of data as the connection takes until no progress for 200 ms. */
static void send_until_stall(int fd, const uint8_t *data, size_t len)
{
    size_t sent = 0;
    int64_t last_progress = h_now_ms();
    while (sent < len && h_now_ms() - last_progress < 200) {
        ssize_t n = send(fd, data + sent, len - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            last_progress = h_now_ms();
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            fail_msg("send after %zu bytes: %s", sent, strerror(errno));
        } else {
            h_sleep_ms(5);
        }
    }
}

/* 50 clients echo 100 bytes each and close: 25 with FIN, 25 with RST. The counters add up
 * exactly (the resets in tcp_peer_resets: they were owed nothing) and echod's fd table
 * returns to its size before. Then 10 clients write 256 KiB and close without reading
 * their echo: echod closes them too, counts each in tcp_io_errors, and keeps serving. */
static void tcp_counters_and_no_fd_leak(void **state)
{
    (void)state;
    enum { CLIENTS = 50, RUDE = 10, MSG = 100 };
    int fds_before = h_fd_count(echod.pid);
    int fds[CLIENTS];
    uint8_t msg[MSG];
    for (size_t i = 0; i < CLIENTS; i++)
        fds[i] = h_tcp_connect_ok(&echod.tcp[0]);
    for (size_t i = 0; i < CLIENTS; i++) {
        h_fill_random(msg, MSG);
        h_echo_roundtrip(fds[i], msg, MSG, 5000);
    }
    for (size_t i = 0; i < CLIENTS; i++) {
        if (i % 2) {
            struct linger lg = {1, 0}; /* close with RST */
            setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        h_close(fds[i]);
    }
    wait_fd_count(fds_before, "after 50 clients closed");

    const char *names[] = {"tcp_accepted",  "tcp_opened",      "tcp_closed",   "tcp_bytes_in",
                           "tcp_bytes_out", "tcp_peer_resets", "tcp_io_errors"};
    uint64_t v[7];
    int64_t deadline = h_now_ms() + 5000;
    for (;;) {
        h_echod_stats(&echod, names, v, 7);
        if (v[2] == CLIENTS || h_now_ms() >= deadline)
            break;
        h_sleep_ms(50);
    }
    assert_int_equal(v[0], CLIENTS);
    assert_int_equal(v[1], CLIENTS);
    assert_int_equal(v[2], CLIENTS);
    assert_int_equal(v[3], CLIENTS * MSG);
    assert_int_equal(v[4], CLIENTS * MSG);
    /* A reset from a client that has all its echo is its way of closing, not an error. */
    assert_int_equal(v[5], CLIENTS / 2);
    assert_int_equal(v[6], 0);

    uint8_t *big = random_payload(256 * KIB);
    for (size_t i = 0; i < RUDE; i++) {
        int fd = h_tcp_connect_ok(&echod.tcp[0]);
        send_until_stall(fd, big, 256 * KIB);
        h_close(fd);
    }
    free(big);
    wait_fd_count(fds_before, "after 10 clients closed without reading");
    /* Those reset with their echo still owed: errors, each one. */
    assert_int_equal(h_echod_wait_stat(&echod, "tcp_io_errors", RUDE, 5000), RUDE);
    assert_int_equal(h_echod_stat(&echod, "tcp_peer_resets"), CLIENTS / 2);
    h_echod_assert_alive(&echod);
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    h_echo_roundtrip(fd, "still here\n", 11, 5000);
}

/* Urgent data is data: "abc", "X" sent with MSG_OOB, "def\n" come back as "abcXdef\n",
 * and the counters agree. */
static void tcp_echo_urgent_byte_in_order(void **state)
{
    (void)state;
    h_expect_urgent_echoed(&echod, h_tcp_connect_ok(&echod.tcp[0]), "");
}

int main(void)
{
    h_init("test_tcp", 240);
    has_ipv6 = h_have_ipv6();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(tcp_echo_random_payloads, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_echo_sequence_one_connection, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_half_close_4mib, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_unread_16mib_stays_bounded, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_interleaved_clients, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_echo_ipv6, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_counters_and_no_fd_leak, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_echo_urgent_byte_in_order, setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
