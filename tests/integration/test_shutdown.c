/* test_shutdown: graceful shutdown of the real echod. On SIGTERM or SIGINT it must refuse
 * new connections at once, keep echoing on open ones (including the bytes a client wrote
 * just before the signal and those written after it) until each client closes, then exit
 * 0 promptly; an idle client that never closes is cut at shutdown_timeout_ms. Exactly one
 * signal is sent per test: a second one means "stop now" to echod. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static void start(int shutdown_timeout_ms)
{
    char config[256];
    snprintf(config, sizeof(config),
             "workers = 2;\n"
             "shutdown_timeout_ms = %d;\n"
             "tcp = { listen = [ \"127.0.0.1:0\" ]; };\n"
             "udp = { listen = [ ]; };\n",
             shutdown_timeout_ms);
    h_echod_start(&echod, config, NULL);
}

/* Connect until refused (3 s at most); returns how long refusal took in ms. Connections
 * that still get through in the race right after the signal are closed at once; one that
 * completed into the backlog just before echod closed the listener is reset (the same
 * race, seen from the other side). */
static int64_t wait_refused(const struct sockaddr_storage *sa)
{
    int64_t start = h_now_ms();
    int64_t deadline = start + 3000;
    for (;;) {
        int fd = h_tcp_connect(sa, 500);
        if (fd == -ECONNREFUSED)
            return h_now_ms() - start;
        if (fd >= 0)
            h_close(fd);
        else if (fd != -ECONNRESET)
            fail_msg("connect after the signal: %s (expected refused)", strerror(-fd));
        if (h_now_ms() >= deadline)
            fail_msg("new connections were still accepted 3 s after the signal");
        h_sleep_ms(10);
    }
}

/* Write as much of data as the socket takes right now; returns the count. */
static size_t write_what_fits(int fd, const uint8_t *data, size_t len)
{
    size_t sent = 0;
    for (;;) {
        ssize_t n = send(fd, data + sent, len - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            if (sent == len)
                return sent;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return sent;
        fail_msg("send: %s", strerror(n < 0 ? errno : EPIPE));
    }
}

/* Four clients each write 1 MiB right before SIGTERM; an idle fifth one writes after it.
 * New connects are refused; every byte of all five is echoed; echod stays up while the
 * idle one is open and exits 0 soon after it closes, long before shutdown_timeout_ms. */
static void drain_on_signal(int sig)
{
    enum { CLIENTS = 4 };
    start(10000);
    size_t len = 1 * MIB;
    struct h_stream s[CLIENTS];
    uint8_t *data[CLIENTS];
    for (size_t i = 0; i < CLIENTS; i++) {
        data[i] = h_xmalloc(len);
        h_fill_random(data[i], len);
        s[i] = (struct h_stream){.fd = h_tcp_connect_ok(&echod.tcp[0]),
                                 .tx = data[i],
                                 .tx_len = len,
                                 .is_half_closing = i % 2 == 0,
                                 .rx = h_xmalloc(len),
                                 .rx_expect = len};
        h_echo_roundtrip(s[i].fd, "x", 1, 5000); /* surely accepted */
    }
    int idle = h_tcp_connect_ok(&echod.tcp[0]);
    h_echo_roundtrip(idle, "idle", 4, 5000);

    size_t before_signal = 0;
    for (size_t i = 0; i < CLIENTS; i++) {
        s[i].tx_off = write_what_fits(s[i].fd, data[i], len);
        before_signal += s[i].tx_off;
    }
    kill(echod.pid, sig);
    h_note("%s sent with %zu of %zu bytes written and none read back", strsignal(sig),
           before_signal, CLIENTS * len);

    int64_t refused_ms = wait_refused(&echod.tcp[0]);
    h_note("new connections refused %lld ms after the signal", (long long)refused_ms);

    h_echo_roundtrip(idle, "written after the signal\n", 25, 5000);
    h_streams_run(s, CLIENTS, 30000);
    for (size_t i = 0; i < CLIENTS; i++) {
        char what[80];
        snprintf(what, sizeof(what), "echo of client %zu across the signal", i);
        h_assert_bytes(what, data[i], s[i].rx, len);
        h_close(s[i].fd);
        free(s[i].rx);
        free(data[i]);
    }
    /* Still serving the idle client: echod must not have quit. */
    h_echo_roundtrip(idle, "still open\n", 11, 5000);
    h_echod_assert_alive(&echod);

    int64_t closed_at = h_now_ms();
    h_close(idle);
    int code = h_wait_exit(echod.pid, 3000);
    if (code < 0)
        fail_msg("echod still running 3 s after its last client closed (timeout is 10 s)");
    echod.pid = 0;
    echod.exit_status = code;
    h_note("echod exited %d, %lld ms after the last client closed", code,
           (long long)(h_now_ms() - closed_at));
    if (code != 0) {
        h_echod_dump_log(&echod);
        fail_msg("echod exited with %d after %s, expected 0", code, strsignal(sig));
    }
}

static void sigterm_drains_every_client(void **state)
{
    (void)state;
    drain_on_signal(SIGTERM);
}

static void sigint_drains_every_client(void **state)
{
    (void)state;
    drain_on_signal(SIGINT);
}

/* An idle client that never closes: it is still served during the drain, then echod
 * closes it and exits 0 at about shutdown_timeout_ms = 500. */
static void sigterm_idle_client_cut_at_timeout(void **state)
{
    (void)state;
    start(500);
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    h_echo_roundtrip(fd, "hi", 2, 5000);
    int64_t signalled = h_now_ms();
    kill(echod.pid, SIGTERM);
    h_sleep_ms(150);
    h_echo_roundtrip(fd, "ping", 4, 1000);
    int code = h_wait_exit(echod.pid, 3000);
    int64_t took = h_now_ms() - signalled;
    if (code < 0)
        fail_msg("echod still running %lld ms after SIGTERM with shutdown_timeout_ms = 500",
                 (long long)took);
    echod.pid = 0;
    echod.exit_status = code;
    h_note("echod exited %d, %lld ms after SIGTERM (shutdown_timeout_ms = 500)", code,
           (long long)took);
    assert_int_equal(code, 0);
    if (took < 400)
        fail_msg("echod exited %lld ms after SIGTERM: it did not wait for its client up to "
                 "shutdown_timeout_ms = 500",
                 (long long)took);
    uint8_t b[16];
    ssize_t n = h_recv_some(fd, b, sizeof(b), 1000);
    if (n == -1 || n > 0)
        fail_msg("the idle client's connection was not closed when echod exited (%s)",
                 n > 0 ? "got bytes" : "no EOF");
}

/* With no client, SIGTERM stops echod at once. */
static void sigterm_without_clients(void **state)
{
    (void)state;
    start(5000);
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    h_echo_roundtrip(fd, "bye", 3, 5000);
    h_close(fd);
    int64_t signalled = h_now_ms();
    int code = h_echod_signal_wait(&echod, SIGTERM, 2000);
    if (code < 0)
        fail_msg("echod still running 2 s after SIGTERM with no client connected");
    h_note("exited %d after %lld ms", code, (long long)(h_now_ms() - signalled));
    assert_int_equal(code, 0);
}

int main(void)
{
    h_init("test_shutdown", 120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(sigterm_drains_every_client, h_teardown),
        cmocka_unit_test_teardown(sigint_drains_every_client, h_teardown),
        cmocka_unit_test_teardown(sigterm_idle_client_cut_at_timeout, h_teardown),
        cmocka_unit_test_teardown(sigterm_without_clients, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
