/* test_burst: no connection the kernel completed is lost. A burst of thousands of
 * simultaneous connects against one worker with a tiny hand-off queue, and SIGTERM while
 * clients wait in the listen backlog (at max_connections, or behind full queues): every
 * client that sent a line and half-closed gets exactly its line back and a clean EOF,
 * never a reset. Each test prints the outcome counts as "# burst ..." lines. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MSG_LEN 32

/* One client of a burst: sends its line, half-closes, reads the echo until EOF. */
struct client {
    int fd;
    char msg[MSG_LEN + 1];
    size_t sent;
    char got[MSG_LEN];
    size_t got_len;
    int result; /* 0 running; 1 echoed exactly then EOF; -errno on error; -EBADMSG wrong */
};

/* How a burst ended, counted. */
struct burst_tally {
    size_t echoed, reset, early_eof, wrong, other, unfinished;
};

static void client_start(struct client *c, const struct sockaddr_storage *sa, size_t i)
{
    memset(c, 0, sizeof(*c));
    char line[64];
    if (snprintf(line, sizeof(line), "cl %07zu hello echod %08zu\n", i % 10000000,
                 i * 7919 % 99999989) != MSG_LEN)
        fail_msg("client %zu: message is not %d bytes", i, MSG_LEN);
    memcpy(c->msg, line, MSG_LEN + 1);
    c->fd = h_tcp_connect_start(sa);
    if (c->fd < 0)
        fail_msg("connect start %zu: %s", i, strerror(-c->fd));
}

/* Advance c on revents; its result once it is over. */
static void client_step(struct client *c, short revents)
{
    if ((revents & POLLOUT) && c->sent < MSG_LEN) {
        ssize_t n = send(c->fd, c->msg + c->sent, MSG_LEN - c->sent, MSG_NOSIGNAL);
        if (n > 0 && (c->sent += (size_t)n) == MSG_LEN)
            shutdown(c->fd, SHUT_WR);
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            c->result = -errno;
    }
    if (c->result == 0 && (revents & (POLLIN | POLLHUP | POLLERR))) {
        char buf[MSG_LEN + 64];
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            c->result = -errno;
        else if (n == 0)
            c->result = c->got_len == MSG_LEN && memcmp(c->got, c->msg, MSG_LEN) == 0 ? 1
                        : c->got_len == 0                                             ? -ENODATA
                                                                                      : -EBADMSG;
        else if (n > 0 && c->got_len + (size_t)n > MSG_LEN)
            c->result = -EBADMSG;
        else if (n > 0) {
            memcpy(c->got + c->got_len, buf, (size_t)n);
            c->got_len += (size_t)n;
        }
    }
    if (c->result != 0) {
        h_close(c->fd);
        c->fd = -1;
    }
}

/* Drive every client until each is over or timeout_ms passes; bounded by the deadline. */
static void clients_run(struct client *cs, size_t n, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    struct pollfd *pfd = h_xmalloc(n * sizeof(*pfd));
    size_t *index = h_xmalloc(n * sizeof(*index));
    for (;;) {
        size_t live = 0;
        for (size_t i = 0; i < n; i++) {
            if (cs[i].result != 0)
                continue;
            pfd[live] = (struct pollfd){cs[i].fd,
                                        (short)(POLLIN | (cs[i].sent < MSG_LEN ? POLLOUT : 0)), 0};
            index[live++] = i;
        }
        int64_t left = deadline - h_now_ms();
        if (live == 0 || left <= 0)
            break;
        if (poll(pfd, live, left < 100 ? (int)left : 100) < 0 && errno != EINTR)
            fail_msg("poll: %s", strerror(errno));
        for (size_t k = 0; k < live; k++)
            if (pfd[k].revents)
                client_step(&cs[index[k]], pfd[k].revents);
    }
    free(pfd);
    free(index);
}

/* Count the outcomes and print them as "# burst NAME: ...". */
static struct burst_tally clients_tally(const struct client *cs, size_t n, const char *name)
{
    struct burst_tally t = {0};
    for (size_t i = 0; i < n; i++) {
        int r = cs[i].result;
        if (r == 1)
            t.echoed++;
        else if (r == -ECONNRESET || r == -EPIPE)
            t.reset++;
        else if (r == -ENODATA)
            t.early_eof++;
        else if (r == -EBADMSG)
            t.wrong++;
        else if (r == 0)
            t.unfinished++;
        else
            t.other++;
    }
    h_note("burst %s: %zu clients: %zu echoed exactly, %zu reset, %zu EOF without echo, %zu "
           "wrong bytes, %zu other errors, %zu unfinished",
           name, n, t.echoed, t.reset, t.early_eof, t.wrong, t.other, t.unfinished);
    return t;
}

static void clients_close(struct client *cs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cs[i].fd >= 0)
            h_close(cs[i].fd);
    free(cs);
}

/* Every client connected (the kernel completed its handshake) within timeout_ms. */
static void clients_wait_connected(struct client *cs, size_t n, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (size_t i = 0; i < n; i++) {
        for (;;) {
            struct pollfd p = {cs[i].fd, POLLOUT, 0};
            int64_t left = deadline - h_now_ms();
            if (left <= 0)
                fail_msg("client %zu of %zu not connected after %d ms", i, n, timeout_ms);
            if (poll(&p, 1, (int)left) > 0)
                break;
        }
        client_step(&cs[i], POLLOUT); /* send its line and half-close now */
        if (cs[i].result < 0)
            fail_msg("client %zu: %s before the signal", i, strerror(-cs[i].result));
    }
}

static void start(const char *extra)
{
    char config[512];
    snprintf(config, sizeof(config),
             "workers = 1;\n%s"
             "tcp = { listen = [ \"127.0.0.1:0\" ]; backlog = 4096; };\n"
             "udp = { listen = [ ]; };\n",
             extra);
    h_echod_start(&echod, config, NULL);
}

static void require_fds(size_t n)
{
    long nofile = h_raise_nofile();
    if (nofile < (long)n + 64)
        fail_msg("RLIMIT_NOFILE is %ld here: %zu clients need %zu", nofile, n, n + 64);
}

/* 5,000 clients connect at once to one worker whose queue holds 16: every one is echoed
 * (the acceptor waits for the queue instead of closing sockets it accepted). */
static void burst_5000_into_queue_of_16(void **state)
{
    (void)state;
    enum { N = 5000 };
    require_fds(N);
    start("queue_capacity = 16;\n");
    struct client *cs = h_xmalloc(N * sizeof(*cs));
    int64_t t0 = h_now_ms();
    for (size_t i = 0; i < N; i++)
        client_start(&cs[i], &echod.tcp[0], i);
    clients_run(cs, N, 60000);
    h_note("burst took %lld ms", (long long)(h_now_ms() - t0));
    struct burst_tally t = clients_tally(cs, N, "5000 into queue_capacity 16");
    clients_close(cs, N);
    assert_int_equal(t.echoed, N);
    const char *names[] = {"tcp_accepted", "tcp_handoff_refused", "tcp_accept_queue_full"};
    uint64_t v[3];
    h_echod_stats(&echod, names, v, 3);
    h_note("tcp_accepted=%llu tcp_handoff_refused=%llu tcp_accept_queue_full=%llu",
           (unsigned long long)v[0], (unsigned long long)v[1], (unsigned long long)v[2]);
    assert_int_equal(v[1], 0);
}

/* After the stop signal: every client must be echoed, and echod must exit 0 by itself. */
static void serve_after_signal(struct client *cs, size_t n, int timeout_ms, const char *name)
{
    clients_run(cs, n, timeout_ms);
    struct burst_tally t = clients_tally(cs, n, name);
    clients_close(cs, n);
    int code = h_wait_exit(echod.pid, 5000);
    if (code >= 0) {
        echod.pid = 0;
        echod.exit_status = code;
    }
    h_note("echod exited %d", code);
    assert_int_equal(t.echoed, n);
    assert_int_equal(code, 0);
}

/* SIGTERM while 10 clients hold every slot and 50 more wait in the backlog, each having
 * sent a line and half-closed: when the 10 close, all 50 are served before echod exits. */
static void sigterm_serves_backlog_at_max_connections(void **state)
{
    (void)state;
    enum { HOLD = 10, WAIT = 50 };
    start("max_connections = 10;\nshutdown_timeout_ms = 10000;\n");
    int hold[HOLD];
    for (size_t i = 0; i < HOLD; i++) {
        hold[i] = h_tcp_connect_ok(&echod.tcp[0]);
        h_echo_roundtrip(hold[i], "hold", 4, 5000);
    }
    struct client *cs = h_xmalloc(WAIT * sizeof(*cs));
    for (size_t i = 0; i < WAIT; i++)
        client_start(&cs[i], &echod.tcp[0], i);
    clients_wait_connected(cs, WAIT, 5000);
    h_sleep_ms(100);
    kill(echod.pid, SIGTERM);
    h_sleep_ms(200);
    for (size_t i = 0; i < HOLD; i++)
        h_close(hold[i]);
    serve_after_signal(cs, WAIT, 10000, "SIGTERM at max_connections");
}

/* SIGTERM while 4,000 clients wait behind a queue of 16: every one is served. */
static void sigterm_serves_backlog_behind_full_queue(void **state)
{
    (void)state;
    enum { N = 4000 };
    require_fds(N);
    start("queue_capacity = 16;\nshutdown_timeout_ms = 20000;\nmax_connections = 5000;\n");
    struct client *cs = h_xmalloc(N * sizeof(*cs));
    for (size_t i = 0; i < N; i++)
        client_start(&cs[i], &echod.tcp[0], i);
    clients_wait_connected(cs, N, 10000);
    kill(echod.pid, SIGTERM);
    serve_after_signal(cs, N, 30000, "SIGTERM behind full queues");
}

int main(void)
{
    h_init("test_burst", 300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(burst_5000_into_queue_of_16, h_teardown),
        cmocka_unit_test_teardown(sigterm_serves_backlog_at_max_connections, h_teardown),
        cmocka_unit_test_teardown(sigterm_serves_backlog_behind_full_queue, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
