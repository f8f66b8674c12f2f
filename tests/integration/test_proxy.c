/* test_proxy: tcp.proxy_protocol against the real daemon on loopback. v1 and v2 headers
 * sent whole, byte by byte, and in one send with the data: exactly the data comes back,
 * never the header. LOCAL (v2) and UNKNOWN (v1) are served as ordinary connections. A
 * peer outside tcp.proxy_from is closed at once, counted and logged. Each failure
 * (malformed, unsupported, too long, truncated, late) closes the connection without a
 * byte and moves its own counter. max_connections_per_ip counts the client the header
 * names, not the balancer, and the log names it too. Greet mode greets the lines after
 * the header. A reload turns the protocol on and
 * off for new connections while open ones keep theirs. */
#include "config.h"

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TCP_ONLY "udp = { listen = [ ]; };\n"

static const char v1_header[] = "PROXY TCP4 192.0.2.1 198.51.100.1 5555 7007\r\n";
/* v2 PROXY TCP4 192.0.2.9:4242 -> 198.51.100.1:7007, with a NOOP TLV of 3 bytes. */
static const uint8_t v2_header[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55,
                                    0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x12, 192,  0,
                                    2,    9,    198,  51,   100,  1,    0x10, 0x92, 0x1b,
                                    0x5f, 0x04, 0x00, 0x03, 'x',  'y',  'z'};
/* v2 LOCAL, as HAProxy's health checks send it. */
static const uint8_t v2_local[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                   0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00};

/* echod serving TCP echo with tcp.proxy_protocol `mode` for proxy_from, the top-level
 * keys `extra` and the tcp keys `tcp_extra`. */
static void start(const char *mode, const char *proxy_from, const char *extra,
                  const char *tcp_extra)
{
    char conf[1024];
    snprintf(conf, sizeof(conf),
             TCP_ONLY "%s"
                      "tcp = { listen = [ \"127.0.0.1:0\" ]; proxy_protocol = \"%s\";\n"
                      "        proxy_from = [ %s ]; %s };\n",
             extra, mode, proxy_from, tcp_extra);
    h_echod_start(&echod, conf, NULL);
}

/* A connection to echod from loopback address src ("127.0.0.1", "127.0.0.2"). */
static int connect_from(const char *src)
{
    int fd = h_tcp_connect_from(src, &echod.tcp[0]);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* byte by byte stays so */
    return fd;
}

/* Send len bytes one at a time, 3 ms apart, so echod reads them in pieces. */
static void send_byte_by_byte(int fd, const void *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h_send_all(fd, (const uint8_t *)data + i, 1, 1000);
        h_sleep_ms(3);
    }
}

/* After a header went out on fd: data goes out (in one send), exactly data comes back,
 * and after a half-close EOF follows: the header was never echoed. */
static void expect_data_echoed(int fd, const char *data)
{
    size_t len = strlen(data);
    h_send_all(fd, data, len, 2000);
    char got[256];
    h_recv_exact(fd, got, len, 2000);
    h_assert_bytes("echo", data, got, len);
    shutdown(fd, SHUT_WR);
    h_expect_eof(fd, 2000);
}

/* Header and data in one send, as HAProxy sends them: only the data comes back. */
static void expect_together(int fd, const void *header, size_t header_len, const char *data)
{
    uint8_t out[512];
    size_t len = strlen(data);
    memcpy(out, header, header_len);
    memcpy(out + header_len, data, len);
    h_send_all(fd, out, header_len + len, 2000);
    char got[256];
    h_recv_exact(fd, got, len, 2000);
    h_assert_bytes("echo", data, got, len);
    shutdown(fd, SHUT_WR);
    h_expect_eof(fd, 2000);
}

/* echod closes fd without sending a byte, and counter `name` reaches want. */
static void expect_closed(int fd, const char *name, uint64_t want)
{
    if (!h_is_closed_within(fd, 3000, false))
        fail_msg("the connection is still open 3 s later (expected %s)", name);
    assert_int_equal(h_echod_wait_stat(&echod, name, want, 3000), want);
}

static void v1_whole_split_and_with_data(void **state)
{
    (void)state;
    start("v1", "\"127.0.0.1\"", "", "");
    int fd = connect_from("127.0.0.1");
    h_send_all(fd, v1_header, sizeof(v1_header) - 1, 2000);
    expect_data_echoed(fd, "whole header, then data\n");
    fd = connect_from("127.0.0.1");
    send_byte_by_byte(fd, v1_header, sizeof(v1_header) - 1);
    expect_data_echoed(fd, "byte by byte\n");
    fd = connect_from("127.0.0.1");
    expect_together(fd, v1_header, sizeof(v1_header) - 1, "PROXY TCP4 looks like a header\r\n");
    assert_int_equal(h_echod_wait_stat(&echod, "tcp_proxy_headers", 3, 2000), 3);
    assert_int_equal(h_echod_stat(&echod, "tcp_proxy_local"), 0);
    /* What was written back is the data alone. */
    uint64_t data_bytes = strlen("whole header, then data\n") + strlen("byte by byte\n") +
                          strlen("PROXY TCP4 looks like a header\r\n");
    assert_int_equal(h_echod_wait_stat(&echod, "tcp_bytes_out", data_bytes, 2000), data_bytes);
}

static void v2_whole_split_and_with_data(void **state)
{
    (void)state;
    start("v2", "\"127.0.0.0/8\", \"::1\"", "", "");
    int fd = connect_from("127.0.0.1");
    h_send_all(fd, v2_header, sizeof(v2_header), 2000);
    expect_data_echoed(fd, "v2 whole\n");
    fd = connect_from("127.0.0.1");
    send_byte_by_byte(fd, v2_header, sizeof(v2_header));
    expect_data_echoed(fd, "v2 byte by byte\n");
    fd = connect_from("127.0.0.2");
    expect_together(fd, v2_header, sizeof(v2_header), "\r\n\r\n data that starts like v2\n");
    assert_int_equal(h_echod_wait_stat(&echod, "tcp_proxy_headers", 3, 2000), 3);
}

/* LOCAL (health checks) and UNKNOWN: served as ordinary connections. */
static void local_and_unknown_served(void **state)
{
    (void)state;
    start("any", "\"127.0.0.1\"", "", "");
    int fd = connect_from("127.0.0.1");
    expect_together(fd, v2_local, sizeof(v2_local), "health check\n");
    fd = connect_from("127.0.0.1");
    h_send_all(fd, v2_local, sizeof(v2_local), 2000);
    shutdown(fd, SHUT_WR); /* HAProxy's check: the header, then close */
    h_expect_eof(fd, 2000);
    fd = connect_from("127.0.0.1");
    expect_together(fd, "PROXY UNKNOWN\r\n", 15, "unknown protocol\n");
    fd = connect_from("127.0.0.1");
    expect_together(fd, v1_header, sizeof(v1_header) - 1, "v1 on any\n");
    fd = connect_from("127.0.0.1");
    expect_together(fd, v2_header, sizeof(v2_header), "v2 on any\n");
    assert_int_equal(h_echod_wait_stat(&echod, "tcp_proxy_headers", 5, 2000), 5);
    assert_int_equal(h_echod_stat(&echod, "tcp_proxy_local"), 3);
    const char *names[] = {"tcp_proxy_malformed", "tcp_proxy_truncated", "tcp_io_errors"};
    uint64_t v[3];
    h_echod_stats(&echod, names, v, 3);
    assert_int_equal(v[0] + v[1] + v[2], 0);
}

/* A peer outside proxy_from is closed at once, counted, and logged once. */
static void peer_outside_proxy_from_refused(void **state)
{
    (void)state;
    start("v1", "\"127.0.0.2/32\"", "", "");
    int fd = connect_from("127.0.0.1");
    h_send_all(fd, v1_header, sizeof(v1_header) - 1, 2000); /* a header it may not send */
    expect_closed(fd, "tcp_proxy_refused", 1);
    assert_true(h_echod_log_contains(&echod, "tcp: refused 1 connection in the last 0.0 s: peer "
                                             "not in tcp.proxy_from (last from 127.0.0.1:"));
    fd = connect_from("127.0.0.2");
    expect_together(fd, v1_header, sizeof(v1_header) - 1, "allowed\n");
    assert_int_equal(h_echod_stat(&echod, "tcp_proxy_refused"), 1);
    assert_int_equal(h_echod_stat(&echod, "tcp_opened"), 1); /* the refused one never opened */
}

/* Each failure closes the connection without a byte, with its counter. */
static void failures_counted(void **state)
{
    (void)state;
    start("v1", "\"127.0.0.1\"", "", "");
    int fd = connect_from("127.0.0.1");
    h_send_all(fd, "GET / HTTP/1.0\r\n\r\n", 18, 2000);
    expect_closed(fd, "tcp_proxy_malformed", 1);
    fd = connect_from("127.0.0.1");
    h_send_all(fd, "PROXY TCP4 192.0.2.1 198.51.100.1 5555 70070\r\nhi\n", 49, 2000);
    expect_closed(fd, "tcp_proxy_malformed", 2);
    fd = connect_from("127.0.0.1");
    h_send_all(fd, v2_header, sizeof(v2_header), 2000); /* v2 on a v1 listener */
    expect_closed(fd, "tcp_proxy_unsupported", 1);
    fd = connect_from("127.0.0.1");
    char line[200] = "PROXY UNKNOWN ";
    memset(line + 14, 'x', sizeof(line) - 14);
    h_send_all(fd, line, sizeof(line), 2000);
    expect_closed(fd, "tcp_proxy_too_long", 1);
    fd = connect_from("127.0.0.1");
    h_send_all(fd, "PROXY TCP4 192.0.2.1 ", 21, 2000);
    shutdown(fd, SHUT_WR); /* EOF in the middle of the header */
    expect_closed(fd, "tcp_proxy_truncated", 1);
    const char *names[] = {"tcp_proxy_malformed", "tcp_proxy_unsupported", "tcp_proxy_too_long",
                           "tcp_proxy_truncated", "tcp_proxy_headers",     "tcp_bytes_out"};
    uint64_t v[6];
    h_echod_stats(&echod, names, v, 6);
    assert_int_equal(v[0], 2);
    assert_int_equal(v[1], 1);
    assert_int_equal(v[2], 1);
    assert_int_equal(v[3], 1);
    assert_int_equal(v[4], 0);
    assert_int_equal(v[5], 0);
    /* A client that sent more than echod reads before it gives up gets a FIN, not the
     * reset its unread bytes would cause. */
    fd = connect_from("127.0.0.1");
    char *junk = h_xmalloc(100 * KIB);
    memset(junk, 'G', 100 * KIB);
    h_send_all(fd, junk, 100 * KIB, 2000);
    free(junk);
    h_expect_eof(fd, 3000);
    assert_int_equal(h_echod_wait_stat(&echod, "tcp_proxy_malformed", 3, 2000), 3);
    /* Logged by the worker, naming the peer (no header named a client). */
    assert_true(h_echod_log_contains(&echod, "malformed PROXY header (last from 127.0.0.1:"));
}

/* Greet mode: the line after the header is greeted, in the same read or later, and the
 * header is not. */
static void greet_mode_after_header(void **state)
{
    (void)state;
    start("v2", "\"127.0.0.1\"", "", "mode = \"greet\";");
    int fd = connect_from("127.0.0.1");
    uint8_t out[64];
    memcpy(out, v2_header, sizeof(v2_header));
    memcpy(out + sizeof(v2_header), "one\ntw", 6);
    h_send_all(fd, out, sizeof(v2_header) + 6, 2000);
    h_send_all(fd, "o\n", 2, 2000);
    char got[32];
    h_recv_exact(fd, got, 22, 2000);
    h_assert_bytes("greeting", "Hello, one\nHello, two\n", got, 22);
    fd = connect_from("127.0.0.1");
    send_byte_by_byte(fd, v2_header, sizeof(v2_header));
    h_send_all(fd, "three\n", 6, 2000);
    h_recv_exact(fd, got, 13, 2000);
    h_assert_bytes("greeting", "Hello, three\n", got, 13);
    shutdown(fd, SHUT_WR);
    h_expect_eof(fd, 2000);
}

/* A greeting template's {client} and {server} are the addresses the header names (v1
 * and v2); after a LOCAL header they are the socket's own. */
static void template_names_the_proxied_client(void **state)
{
    (void)state;
    start("any", "\"127.0.0.1\"", "", "mode = \"greet\"; greeting = \"{client} {server} \";");
    int fd = connect_from("127.0.0.1");
    h_send_all(fd, v1_header, strlen(v1_header), 2000);
    static const char want_v1[] = "192.0.2.1:5555 198.51.100.1:7007 a\n";
    h_send_all(fd, "a\n", 2, 2000);
    char got[128];
    h_recv_exact(fd, got, strlen(want_v1), 2000);
    h_assert_bytes("v1 greeting", want_v1, got, strlen(want_v1));
    fd = connect_from("127.0.0.1");
    h_send_all(fd, v2_header, sizeof(v2_header), 2000);
    static const char want_v2[] = "192.0.2.9:4242 198.51.100.1:7007 b\n";
    h_send_all(fd, "b\n", 2, 2000);
    h_recv_exact(fd, got, strlen(want_v2), 2000);
    h_assert_bytes("v2 greeting", want_v2, got, strlen(want_v2));
    fd = connect_from("127.0.0.1");
    struct sockaddr_storage me;
    socklen_t len = sizeof(me);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &len), 0);
    h_send_all(fd, v2_local, sizeof(v2_local), 2000);
    h_send_all(fd, "c\n", 2, 2000);
    char want_local[128];
    int n = snprintf(want_local, sizeof(want_local), "127.0.0.1:%u %s c\n", h_port_of(&me),
                     echod.tcp_text[0]);
    h_recv_exact(fd, got, (size_t)n, 2000);
    h_assert_bytes("LOCAL greeting", want_local, got, (size_t)n);
}

/* A balancer's bare TCP health check: connect, then reset before any byte (HAProxy's
 * "check" does this). Nothing was owed: tcp_peer_resets, not an error or a header
 * failure. */
static void reset_before_header_is_a_peer_reset(void **state)
{
    (void)state;
    start("v2", "\"127.0.0.1\"", "", "");
    for (int i = 0; i < 3; i++) {
        int fd = connect_from("127.0.0.1");
        h_sleep_ms(20); /* adopted by a worker, waiting for its header */
        struct linger hard = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
        h_close(fd);
    }
    assert_int_equal(h_echod_wait_stat(&echod, "tcp_closed", 3, 5000), 3);
    const char *names[] = {"tcp_peer_resets", "tcp_io_errors", "tcp_proxy_truncated",
                           "tcp_proxy_malformed"};
    uint64_t v[4];
    h_echod_stats(&echod, names, v, 4);
    assert_int_equal(v[0], 3);
    assert_int_equal(v[1] + v[2] + v[3], 0);
}

/* A header not complete within proxy_timeout_ms closes the connection, even one that
 * keeps dribbling header bytes. */
static void late_header_times_out(void **state)
{
    (void)state;
    start("v1", "\"127.0.0.1\"", "", "proxy_timeout_ms = 400;");
    int silent = connect_from("127.0.0.1");
    int dribbler = connect_from("127.0.0.1");
    int64_t start_ms = h_now_ms();
    bool is_closed = false;
    for (size_t i = 0; i < 30 && !is_closed; i++) { /* 1.5 s */
        if (send(dribbler, &v1_header[i], 1, MSG_NOSIGNAL) != 1)
            is_closed = true;
        is_closed = is_closed || h_is_closed_within(dribbler, 50, false);
    }
    assert_true(is_closed);
    int64_t took = h_now_ms() - start_ms;
    h_note("the dribbler was closed after %lld ms", (long long)took);
    assert_true(took >= 350 && took < 1400);
    assert_true(h_is_closed_within(silent, 2000, false));
    assert_int_equal(h_echod_wait_stat(&echod, "tcp_proxy_timeouts", 2, 2000), 2);
    int fd = connect_from("127.0.0.1"); /* in time: served */
    expect_together(fd, v1_header, sizeof(v1_header) - 1, "in time\n");
}

/* max_connections_per_ip 2 behind one balancer (127.0.0.1): the clients the headers
 * name are counted, not the balancer. */
static void per_ip_limit_keyed_on_client(void **state)
{
    (void)state;
    start("v1", "\"127.0.0.1\"", "max_connections_per_ip = 2;\nlog_level = \"debug\";\n", "");
    const char *alice = "PROXY TCP4 192.0.2.1 198.51.100.1 5555 7007\r\n";
    const char *bob = "PROXY TCP4 192.0.2.2 198.51.100.1 6666 7007\r\n";
    int a1 = connect_from("127.0.0.1"), a2 = connect_from("127.0.0.1");
    h_send_all(a1, alice, strlen(alice), 2000);
    h_send_all(a2, alice, strlen(alice), 2000);
    h_echo_roundtrip(a1, "alice 1\n", 8, 2000);
    h_echo_roundtrip(a2, "alice 2\n", 8, 2000);
    int a3 = connect_from("127.0.0.1");
    h_send_all(a3, alice, strlen(alice), 2000);
    expect_closed(a3, "tcp_per_ip_refused", 1);
    int b1 = connect_from("127.0.0.1"), b2 = connect_from("127.0.0.1");
    h_send_all(b1, bob, strlen(bob), 2000);
    h_send_all(b2, bob, strlen(bob), 2000);
    h_echo_roundtrip(b1, "bob 1\n", 6, 2000); /* 4 connections from the balancer, served */
    h_echo_roundtrip(b2, "bob 2\n", 6, 2000);
    h_close(a1); /* the second close, after the refused one */
    assert_int_equal(h_echod_wait_stat(&echod, "tcp_closed", 2, 3000), 2);
    a3 = connect_from("127.0.0.1");
    h_send_all(a3, alice, strlen(alice), 2000);
    h_echo_roundtrip(a3, "alice again\n", 12, 2000);
    assert_int_equal(h_echod_stat(&echod, "tcp_per_ip_refused"), 1);
    /* The log names the client the header named. */
    assert_true(h_echod_log_contains(&echod, "tcp 192.0.2.2:6666 fd "));
    assert_true(h_echod_log_contains(&echod, "client IP at max_connections_per_ip (last from "
                                             "192.0.2.1:5555)"));
}

/* A reload turns the protocol on, then off: new connections follow, open ones keep the
 * setting they were accepted with. */
static void reload_switches_for_new_connections(void **state)
{
    (void)state;
    start("off", "", "", "");
    int plain = connect_from("127.0.0.1");
    h_echo_roundtrip(plain, "plain\n", 6, 2000);
    assert_int_equal(h_echod_reload(&echod, TCP_ONLY "tcp = { listen = [ \"127.0.0.1:0\" ]; "
                                                     "proxy_protocol = \"v1\"; proxy_from = [ "
                                                     "\"127.0.0.1\" ]; };\n"),
                     0);
    h_echo_roundtrip(plain, "still plain\n", 12, 2000);
    int bare = connect_from("127.0.0.1");
    h_send_all(bare, "hello\n", 6, 2000);
    expect_closed(bare, "tcp_proxy_malformed", 1);
    int proxied = connect_from("127.0.0.1");
    h_send_all(proxied, v1_header, sizeof(v1_header) - 1, 2000);
    h_echo_roundtrip(proxied, "proxied\n", 8, 2000);
    assert_int_equal(h_echod_reload(&echod, TCP_ONLY "tcp = { listen = [ \"127.0.0.1:0\" ]; };\n"),
                     0);
    h_echo_roundtrip(proxied, "proxied still\n", 14, 2000);
    int after = connect_from("127.0.0.1");
    h_echo_roundtrip(after, v1_header, sizeof(v1_header) - 1, 2000); /* data now */
}

int main(void)
{
    h_init("test_proxy", 180);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(v1_whole_split_and_with_data, h_teardown),
        cmocka_unit_test_teardown(v2_whole_split_and_with_data, h_teardown),
        cmocka_unit_test_teardown(local_and_unknown_served, h_teardown),
        cmocka_unit_test_teardown(peer_outside_proxy_from_refused, h_teardown),
        cmocka_unit_test_teardown(failures_counted, h_teardown),
        cmocka_unit_test_teardown(greet_mode_after_header, h_teardown),
        cmocka_unit_test_teardown(template_names_the_proxied_client, h_teardown),
        cmocka_unit_test_teardown(reset_before_header_is_a_peer_reset, h_teardown),
        cmocka_unit_test_teardown(late_header_times_out, h_teardown),
        cmocka_unit_test_teardown(per_ip_limit_keyed_on_client, h_teardown),
        cmocka_unit_test_teardown(reload_switches_for_new_connections, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
