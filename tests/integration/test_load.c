/* test_load: many connections against the real echod. 5,000 concurrent clients with
 * workers = 2, all open at once, each echoed its own message; the RSS of echod holding
 * them idle is printed as "# rss_kib_5000_idle=N" (and bounded); every fd is released
 * when they close. max_connections = 3 keeps extra clients waiting in the backlog, unserved,
 * until others close. Connects are paced in batches so the listen backlog never overflows. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define CONNECTIONS 5000
#define BATCH       250
#define MSG_LEN     24

/* Wait until echod has at least (or, exact, exactly) want fds open; fail after 10 s. */
static int wait_fds(int want, bool exact, const char *what)
{
    int64_t deadline = h_now_ms() + 10000;
    int count;
    for (;;) {
        count = h_fd_count(echod.pid);
        if (exact ? count == want : count >= want)
            return count;
        if (h_now_ms() >= deadline)
            fail_msg("%s: echod has %d fds open, expected %s%d", what, count,
                     exact ? "" : ">= ", want);
        h_sleep_ms(20);
    }
}

/* 5,000 clients connected at once to an echod with 2 workers; each sends a distinct
 * message and gets exactly it back; RSS with all of them idle is printed; all fds are
 * released once they close. */
static void load_5000_concurrent_connections(void **state)
{
    (void)state;
    long nofile = h_raise_nofile();
    if (nofile < CONNECTIONS + 64)
        fail_msg("RLIMIT_NOFILE is %ld here: %d client sockets need %d; raise the hard limit",
                 nofile, CONNECTIONS, CONNECTIONS + 64);
    h_echod_start(&echod,
                  "workers = 2;\n"
                  "tcp = { listen = [ \"127.0.0.1:0\" ]; };\n"
                  "udp = { listen = [ ]; };\n",
                  NULL);
    int fds_before = h_fd_count(echod.pid);
    long rss_before = h_rss_kib(echod.pid);
    static int fds[CONNECTIONS];
    static char msgs[CONNECTIONS][MSG_LEN + 1];

    int64_t t0 = h_now_ms();
    h_tcp_connect_paced(fds, CONNECTIONS, &echod.tcp[0], BATCH);
    int64_t t_connected = h_now_ms();
    wait_fds(fds_before + CONNECTIONS, false, "all 5000 clients connected");

    for (size_t i = 0; i < CONNECTIONS; i++) {
        snprintf(msgs[i], sizeof(msgs[i]), "c%05zu:%016llx\n", i, (unsigned long long)h_rand());
        assert_int_equal(strlen(msgs[i]), MSG_LEN);
        h_send_all(fds[i], msgs[i], MSG_LEN, 5000);
    }
    int64_t deadline = h_now_ms() + 30000;
    for (size_t i = 0; i < CONNECTIONS; i++) {
        char got[MSG_LEN];
        int left = (int)(deadline - h_now_ms());
        h_recv_exact(fds[i], got, MSG_LEN, left > 0 ? left : 0);
        h_assert_bytes("echo on one of 5000 connections", msgs[i], got, MSG_LEN);
    }
    int64_t t_echoed = h_now_ms();
    /* Every connection is still open: no EOF, no stray byte. */
    for (size_t i = 0; i < CONNECTIONS; i++) {
        char b;
        ssize_t n = recv(fds[i], &b, 1, MSG_DONTWAIT);
        if (n >= 0 || errno != EAGAIN)
            fail_msg("connection %zu: %s after its echo", i, n > 0 ? "a stray byte" : "closed");
    }
    h_sleep_ms(200);
    int fds_open = h_fd_count(echod.pid);
    long rss = h_rss_kib(echod.pid);
    h_note("rss_kib_5000_idle=%ld, rss_kib_baseline=%ld, growth %ld KiB = %.2f KiB per idle "
           "connection; echod fds "
           "%d -> %d; connect %lld ms, echo %lld ms",
           rss, rss_before, rss - rss_before, (double)(rss - rss_before) / CONNECTIONS, fds_before,
           fds_open, (long long)(t_connected - t0), (long long)(t_echoed - t_connected));
    assert_true(fds_open >= fds_before + CONNECTIONS);
    /* Idle connections hold no buffer: 64 KiB each would be 312 MiB; allow 8 KiB each. */
    if (rss - rss_before > CONNECTIONS * 8L)
        fail_msg("echod's RSS grew by %ld KiB for %d idle connections (> 8 KiB each)",
                 rss - rss_before, CONNECTIONS);

    const char *names[] = {"tcp_accepted", "tcp_opened", "tcp_bytes_in", "tcp_bytes_out"};
    uint64_t v[4];
    h_echod_stats(&echod, names, v, 4);
    assert_int_equal(v[0], CONNECTIONS);
    assert_int_equal(v[1], CONNECTIONS);
    assert_int_equal(v[2], (uint64_t)CONNECTIONS * MSG_LEN);
    assert_int_equal(v[3], (uint64_t)CONNECTIONS * MSG_LEN);

    for (size_t i = 0; i < CONNECTIONS; i++)
        h_close(fds[i]);
    wait_fds(fds_before, true, "after all 5000 clients closed");
    assert_int_equal(h_echod_stat(&echod, "tcp_closed"), CONNECTIONS);
}

/* max_connections = 3: the 4th and 5th clients connect (kernel backlog) but get no echo
 * while 3 are open; closing two lets them in; a 6th then waits for the next close. */
static void load_max_connections_enforced(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  "workers = 2;\n"
                  "max_connections = 3;\n"
                  "tcp = { listen = [ \"127.0.0.1:0\" ]; };\n"
                  "udp = { listen = [ ]; };\n",
                  NULL);
    int c[7];
    for (int i = 1; i <= 3; i++) {
        c[i] = h_tcp_connect_ok(&echod.tcp[0]);
        char msg[16];
        snprintf(msg, sizeof(msg), "client %d\n", i);
        h_echo_roundtrip(c[i], msg, strlen(msg), 5000);
    }
    c[4] = h_tcp_connect_ok(&echod.tcp[0]);
    c[5] = h_tcp_connect_ok(&echod.tcp[0]);
    h_send_all(c[4], "four\n", 5, 1000);
    h_send_all(c[5], "five\n", 5, 1000);
    h_expect_silence(c[4], 300);
    h_expect_silence(c[5], 20);
    h_echo_roundtrip(c[3], "three still served\n", 19, 5000);

    h_close(c[1]);
    h_close(c[2]);
    char got[5];
    h_recv_exact(c[4], got, 5, 3000);
    assert_memory_equal(got, "four\n", 5);
    h_recv_exact(c[5], got, 5, 3000);
    assert_memory_equal(got, "five\n", 5);

    c[6] = h_tcp_connect_ok(&echod.tcp[0]);
    h_send_all(c[6], "six\n", 4, 1000);
    h_expect_silence(c[6], 300);
    h_close(c[3]);
    h_recv_exact(c[6], got, 4, 3000);
    assert_memory_equal(got, "six\n", 4);
    h_echo_roundtrip(c[4], "4 again\n", 8, 5000);
    h_echo_roundtrip(c[5], "5 again\n", 8, 5000);
}

int main(void)
{
    h_init("test_load", 180);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(load_5000_concurrent_connections, h_teardown),
        cmocka_unit_test_teardown(load_max_connections_enforced, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
