/* test_conn: one worker's connection set, driven directly over a real loopback TCP
 * connection, with the syscalls and allocator of the echo path counted through
 * -Wl,--wrap (see Makefile.am). It proves what the issue asks of the hot path rather
 * than assuming it: a steady-state echo or greet message costs exactly one recv and one
 * send, no malloc and no epoll_ctl; accepted sockets get TCP_NODELAY and SO_OOBINLINE;
 * a client that does not read is held to buffer_bytes of pending output and then gets
 * every byte back; the buffer goes back to the pool once drained, so an idle connection
 * holds none. Timeouts run on a fake clock: in greet mode a slowloris dribbling an
 * unfinished line is closed by idle_timeout_ms while whole lines (and echo-mode bytes)
 * keep a connection alive; send_timeout_ms closes a client that never reads, not one
 * that reads slowly, and counts the peer's acknowledgements as progress, not echod's
 * own sends. The cost tests run with send_timeout_ms on, as it is by default.
 * The test's own client I/O uses read/write, which are not wrapped. Built without
 * _FORTIFY_SOURCE so recv/send are not renamed to their _chk forms. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "clock.h"
#include "conn.h"
#include "stats.h"
#include "tcpinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---------------------------------------------------------------- counted calls */

enum counted { C_MALLOC, C_RECV, C_SEND, C_RECVMSG, C_SENDMSG, C_EPOLL_CTL, C_COUNT };
static unsigned long calls[C_COUNT];
/* The recv/recvmsg and send/sendmsg calls that moved at least one byte: what the
 * tcp_reads and tcp_writes counters must equal. Never reset by the tests. */
static unsigned long reads_with_data, writes_with_data;

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
ssize_t __real_recv(int fd, void *buf, size_t len, int flags);
ssize_t __real_send(int fd, const void *buf, size_t len, int flags);
ssize_t __real_recvmsg(int fd, struct msghdr *msg, int flags);
ssize_t __real_sendmsg(int fd, const struct msghdr *msg, int flags);
int __real_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags);
ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags);
ssize_t __wrap_recvmsg(int fd, struct msghdr *msg, int flags);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags);
int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);

void *__wrap_malloc(size_t size)
{
    calls[C_MALLOC]++;
    return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    calls[C_MALLOC]++;
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    calls[C_MALLOC]++;
    return __real_realloc(p, size);
}

ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags)
{
    calls[C_RECV]++;
    ssize_t n = __real_recv(fd, buf, len, flags);
    reads_with_data += n > 0;
    return n;
}

ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags)
{
    calls[C_SEND]++;
    ssize_t n = __real_send(fd, buf, len, flags);
    writes_with_data += n > 0;
    return n;
}

ssize_t __wrap_recvmsg(int fd, struct msghdr *msg, int flags)
{
    calls[C_RECVMSG]++;
    ssize_t n = __real_recvmsg(fd, msg, flags);
    reads_with_data += n > 0;
    return n;
}

ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    calls[C_SENDMSG]++;
    ssize_t n = __real_sendmsg(fd, msg, flags);
    writes_with_data += n > 0;
    return n;
}

int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    calls[C_EPOLL_CTL]++;
    return __real_epoll_ctl(epfd, op, fd, ev);
}

/* ---------------------------------------------------------------- fixture */

#define BUFFER_BYTES 4096
#define MESSAGES     1000
#define MSG_BYTES    64

static int epfd = -1;
static int client = -1;    /* the test's end: blocking, read/write only */
static int server_fd = -1; /* the accepted end, owned by the set once adopted */
static struct stats stats;
static struct conn_set *set;
static unsigned closes;
static unsigned idle_timeout_ms; /* for the next start(); teardown resets it */
static unsigned send_timeout_ms = 30000;
static uint64_t adopted_ms; /* when start() adopted the connection: the fake clock's zero */
static size_t buffer_bytes = BUFFER_BYTES; /* for the next start(); teardown resets it */

static void on_close(void *arg)
{
    (void)arg;
    closes++;
}

/* A connected loopback TCP pair: client (blocking) and server_fd (non-blocking). */
static void tcp_pair(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 1), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(client, (struct sockaddr *)&sa, sizeof(sa)), 0);
    server_fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    assert_true(server_fd >= 0);
    close(lfd);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)); /* bounds every read */
}

static struct conn_settings settings; /* the set reads it for as long as it lives */
static unsigned long adopt_mallocs;   /* what conn_set_adopt allocated in start() */

/* Serve one connection with settings of mode and greeting; a greeting with placeholders
 * is compiled into the settings' template as server.c would leave it ({worker} is
 * bound by the set: "0"). */
static void start(enum proto_mode mode, const char *greeting)
{
    settings = (struct conn_settings){
        .mode = mode,
        .greet = {greeting, strlen(greeting), 256},
        .buffer_bytes = buffer_bytes,
        .idle_timeout_ms = idle_timeout_ms,
        .send_timeout_ms = send_timeout_ms,
    };
    if (strchr(greeting, '{')) {
        char why[256];
        if (template_compile(greeting, strlen(greeting), &settings.greeting_template, why,
                             sizeof(why)) < 0)
            fail_msg("%s: %s", greeting, why);
    }
    struct conn_hooks hooks = {.on_close = on_close, .worker_name = "0"};
    memset(&stats, 0, sizeof(stats));
    closes = 0;
    reads_with_data = writes_with_data = 0;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    assert_true(epfd >= 0);
    assert_int_equal(conn_set_create(&hooks, epfd, &stats, &set), 0);
    assert_int_equal(conn_set_use(set, &settings, NULL, NULL), 0);
    tcp_pair();
    adopted_ms = clock_now_ms();
    memset(calls, 0, sizeof(calls));
    assert_int_equal(conn_set_adopt(set, server_fd, PROXY_OFF, adopted_ms), 0);
    adopt_mallocs = calls[C_MALLOC];
}

static int teardown(void **state)
{
    (void)state;
    if (set)
        conn_set_destroy(set);
    set = NULL;
    if (client >= 0)
        close(client);
    if (epfd >= 0)
        close(epfd);
    client = epfd = server_fd = -1;
    template_free(&settings.greeting_template);
    idle_timeout_ms = 0;
    send_timeout_ms = 30000;
    buffer_bytes = BUFFER_BYTES;
    return 0;
}

/* Handle what epoll reports within wait_ms as if the time were now_ms; how many events
 * there were. */
static int serve_at(int wait_ms, uint64_t now_ms)
{
    struct epoll_event ev[4];
    int n = epoll_wait(epfd, ev, 4, wait_ms);
    assert_true(n >= 0);
    for (int i = 0; i < n; i++)
        conn_set_handle(set, ev[i].data.ptr, ev[i].events, now_ms);
    return n;
}

/* Handle what epoll reports within wait_ms; how many events there were. */
static int serve(int wait_ms)
{
    return serve_at(wait_ms, clock_now_ms());
}

static void write_all(const void *data, size_t len)
{
    assert_int_equal(write(client, data, len), (ssize_t)len);
}

/* Read exactly len bytes into buf, serving the set while waiting. */
static void read_exact_serving(void *buf, size_t len)
{
    size_t got = 0;
    int64_t deadline = (int64_t)clock_now_ms() + 5000;
    while (got < len) {
        if ((int64_t)clock_now_ms() > deadline)
            fail_msg("%zu of %zu bytes back after 5 s", got, len);
        ssize_t n = read(client, (char *)buf + got, len - got);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            serve(10);
            continue;
        }
        assert_true(n > 0);
        got += (size_t)n;
    }
}

/* Send one message and handle its single readiness event; the reply must be want. */
static void roundtrip(const char *msg, size_t len, const char *want, size_t want_len)
{
    char got[512];
    write_all(msg, len);
    assert_int_equal(serve(5000), 1);
    assert_int_equal(read(client, got, want_len), (ssize_t)want_len);
    assert_memory_equal(got, want, want_len);
}

static void expect_calls(unsigned long malloc_n, unsigned long recv_n, unsigned long send_n)
{
    assert_int_equal(calls[C_MALLOC], malloc_n);
    assert_int_equal(calls[C_RECV], recv_n);
    assert_int_equal(calls[C_SEND], send_n);
    assert_int_equal(calls[C_RECVMSG] + calls[C_SENDMSG], 0);
    assert_int_equal(calls[C_EPOLL_CTL], 0);
}

/* ---------------------------------------------------------------- tests */

/* The accepted socket gets TCP_NODELAY, and SO_OOBINLINE so urgent data is echoed. */
static void test_adopt_sets_socket_options(void **state)
{
    (void)state;
    start(PROTO_ECHO, "");
    int on = 0;
    socklen_t len = sizeof(on);
    assert_int_equal(getsockopt(server_fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    assert_int_equal(on, 1);
    on = 0;
    assert_int_equal(getsockopt(server_fd, SOL_SOCKET, SO_OOBINLINE, &on, &len), 0);
    assert_int_equal(on, 1);
    assert_int_equal(conn_set_count(set), 1);
}

/* 1,000 echo messages: exactly one recv and one send each, no malloc, no epoll_ctl. */
static void test_echo_one_recv_one_send(void **state)
{
    (void)state;
    start(PROTO_ECHO, "");
    char msg[MSG_BYTES];
    roundtrip("warm", 4, "warm", 4);
    memset(calls, 0, sizeof(calls));
    for (unsigned i = 0; i < MESSAGES; i++) {
        memset(msg, (int)(i & 0xff), sizeof(msg));
        msg[0] = '\0';
        roundtrip(msg, sizeof(msg), msg, sizeof(msg));
    }
    expect_calls(0, MESSAGES, MESSAGES);
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_bytes_in]), 4 + MESSAGES * MSG_BYTES);
    /* One message in, one out, each: the warm-up and the 1,000. */
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_reads]), 1 + MESSAGES);
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_writes]), 1 + MESSAGES);
}

/* Greet mode answers each whole line with the same single recv and send. */
static void test_greet_one_recv_one_send(void **state)
{
    (void)state;
    start(PROTO_GREET, "Hi, ");
    memset(calls, 0, sizeof(calls));
    for (unsigned i = 0; i < MESSAGES; i++) {
        char line[32], want[40];
        int n = snprintf(line, sizeof(line), "line %u\n", i);
        int w = snprintf(want, sizeof(want), "Hi, line %u\n", i);
        roundtrip(line, (size_t)n, want, (size_t)w);
    }
    expect_calls(0, MESSAGES, MESSAGES);
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_reads]), MESSAGES);
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_writes]), MESSAGES);
}

/* What a greeting template costs. A plain greeting, and one whose placeholders a worker
 * knows ({worker}), cost a connection one allocation (itself), as echo does; one with
 * {client} or {server} costs one more, at the start, for its own rendered greeting.
 * After that every line is the same one recv, one send, no malloc. */
static void test_greet_template_costs(void **state)
{
    (void)state;
    start(PROTO_ECHO, "");
    unsigned long echo_mallocs = adopt_mallocs;
    teardown(NULL);
    start(PROTO_GREET, "Hi, ");
    assert_int_equal(adopt_mallocs, echo_mallocs);
    teardown(NULL);
    start(PROTO_GREET, "w{worker}: ");
    assert_int_equal(adopt_mallocs, echo_mallocs);
    roundtrip("x\n", 2, "w0: x\n", 6);
    teardown(NULL);

    start(PROTO_GREET, "w{worker} {client} {{}}: ");
    assert_int_equal(adopt_mallocs, echo_mallocs + 1);
    struct sockaddr_in me;
    socklen_t len = sizeof(me);
    assert_int_equal(getsockname(client, (struct sockaddr *)&me, &len), 0);
    char prefix[64];
    int p = snprintf(prefix, sizeof(prefix), "w0 127.0.0.1:%u {}: ", ntohs(me.sin_port));
    memset(calls, 0, sizeof(calls));
    for (unsigned i = 0; i < MESSAGES; i++) {
        char line[32], want[128];
        int n = snprintf(line, sizeof(line), "line %u\n", i);
        int w = snprintf(want, sizeof(want), "%.*sline %u\n", p, prefix, i);
        roundtrip(line, (size_t)n, want, (size_t)w);
    }
    expect_calls(0, MESSAGES, MESSAGES);
}

/* Small kernel buffers at both ends, so a client that does not read stalls soon. */
static void shrink_buffers(void)
{
    int small = 8192;
    int ends[] = {client, server_fd};
    for (int i = 0; i < 2; i++) {
        setsockopt(ends[i], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        setsockopt(ends[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    }
    fcntl(client, F_SETFL, O_NONBLOCK);
}

/* A client that writes 256 KiB without reading: echod stops reading once buffer_bytes
 * are pending, then returns every byte in order as the client reads; the output
 * buffer goes back to the pool, so the next stall needs no malloc. */
static void test_backpressure_bounded_and_lossless(void **state)
{
    (void)state;
    start(PROTO_ECHO, "");
    shrink_buffers(); /* so the kernel cannot absorb the stall */
    size_t len = 256u << 10, sent = 0;
    uint8_t *data = malloc(len), *back = malloc(len);
    assert_non_null(data);
    assert_non_null(back);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 2654435761u >> 13);
    for (int idle_rounds = 0; idle_rounds < 3 && sent < len;) {
        ssize_t n = write(client, data + sent, len - sent);
        sent += n > 0 ? (size_t)n : 0;
        idle_rounds = serve(50) == 0 && n <= 0 ? idle_rounds + 1 : 0;
        uint64_t pending =
            atomic_load(&stats.v[STAT_tcp_bytes_in]) - atomic_load(&stats.v[STAT_tcp_bytes_out]);
        assert_true(pending <= BUFFER_BYTES);
    }
    assert_true(sent < len); /* the client's writes stalled: echod stopped reading */
    /* Now read: whatever was sent comes back, and the rest can be sent. */
    size_t got = 0;
    for (int rounds = 0; got < len; rounds++) {
        assert_true(rounds < 100000);
        ssize_t n = write(client, data + sent, len - sent);
        sent += n > 0 ? (size_t)n : 0;
        size_t chunk = sent - got < 65536 ? sent - got : 65536;
        read_exact_serving(back + got, chunk);
        got += chunk;
    }
    assert_memory_equal(back, data, len);
    serve(0);
    fcntl(client, F_SETFL, 0);
    memset(calls, 0, sizeof(calls));
    char msg[MSG_BYTES] = "after the stall";
    roundtrip(msg, sizeof(msg), msg, sizeof(msg));
    assert_int_equal(calls[C_MALLOC], 0);
    /* Reads into the ring (recvmsg) and flushes of it (sendmsg) count as messages too:
     * every call that moved a byte, and no other. */
    assert_true(reads_with_data > 1 && writes_with_data > 1);
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_reads]), reads_with_data);
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_writes]), writes_with_data);
    free(data);
    free(back);
}

/* The client's EOF after its last echo closes the connection once, with no error. */
static void test_eof_closes_once(void **state)
{
    (void)state;
    start(PROTO_ECHO, "");
    roundtrip("bye", 3, "bye", 3);
    shutdown(client, SHUT_WR);
    serve(5000);
    assert_int_equal(conn_set_count(set), 0);
    assert_int_equal(closes, 1);
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_io_errors]), 0);
    char b;
    assert_int_equal(read(client, &b, 1), 0);
}

/* ---------------------------------------------------------------- timeouts */

/* Greet mode, idle_timeout_ms 250 on a fake clock: a client sending one byte of a line
 * every 100 ms, never ending it, is closed once 250 ms pass without an answer, although
 * a byte arrived 50 ms before. */
static void test_greet_slowloris_closed(void **state)
{
    (void)state;
    idle_timeout_ms = 250;
    start(PROTO_GREET, "Hi, ");
    uint64_t now = adopted_ms;
    for (int i = 1; i <= 2; i++) {
        write_all("x", 1);
        assert_int_equal(serve_at(5000, now + 100 * (uint64_t)i), 1);
        conn_set_expire(set, now + 100 * (uint64_t)i);
        assert_int_equal(conn_set_count(set), 1);
    }
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_bytes_in]), 2);
    conn_set_expire(set, now + 249);
    assert_int_equal(conn_set_count(set), 1);
    conn_set_expire(set, now + 250);
    assert_int_equal(conn_set_count(set), 0);
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_idle_timeouts]), 1);
    char b;
    assert_int_equal(read(client, &b, 1), 0); /* closed, and no reply was owed */
}

/* The same timing with whole lines: each answer is progress, so the connection outlives
 * many idle timeouts; and in echo mode every byte is progress. */
static void check_dribble_survives(enum proto_mode mode)
{
    idle_timeout_ms = 250;
    start(mode, "Hi, ");
    uint64_t now = adopted_ms;
    const char *msg = mode == PROTO_GREET ? "a\n" : "x";
    size_t want_len = mode == PROTO_GREET ? 6 : 1;
    for (int i = 1; i <= 20; i++) {
        char got[8];
        now += 100;
        write_all(msg, strlen(msg));
        assert_int_equal(serve_at(5000, now), 1);
        assert_int_equal(read(client, got, want_len), (ssize_t)want_len);
        conn_set_expire(set, now + 249);
        assert_int_equal(conn_set_count(set), 1);
    }
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_idle_timeouts]), 0);
    conn_set_expire(set, now + 250);
    assert_int_equal(conn_set_count(set), 0); /* silence still times out */
}

static void test_greet_whole_lines_are_progress(void **state)
{
    (void)state;
    check_dribble_survives(PROTO_GREET);
}

static void test_echo_bytes_are_progress(void **state)
{
    (void)state;
    check_dribble_survives(PROTO_ECHO);
}

/* Write without reading, serving at fake time now, until echod holds output it cannot
 * send (bytes in > bytes out), then until nothing moves any more. With buffers this
 * small the kernel may hold the window shut until a zero-window probe, so this waits
 * on the counters rather than on a quiet spell alone. */
static void write_until_stalled(uint64_t now)
{
    static uint8_t junk[65536];
    int idle_rounds = 0;
    for (int rounds = 0; idle_rounds < 3; rounds++) {
        assert_true(rounds < 1000);
        ssize_t n = write(client, junk, sizeof(junk));
        bool is_pending =
            atomic_load(&stats.v[STAT_tcp_bytes_in]) > atomic_load(&stats.v[STAT_tcp_bytes_out]);
        idle_rounds = serve_at(20, now) == 0 && n <= 0 && is_pending ? idle_rounds + 1 : 0;
    }
}

/* Serve at fake time now until echod has sent something (5 s at most, real time), if it
 * has anything to send. */
static void serve_until_sent(uint64_t now)
{
    uint64_t before = atomic_load(&stats.v[STAT_tcp_bytes_out]);
    if (before == atomic_load(&stats.v[STAT_tcp_bytes_in])) {
        serve_at(50, now);
        return;
    }
    int64_t deadline = (int64_t)clock_now_ms() + 5000;
    while (atomic_load(&stats.v[STAT_tcp_bytes_out]) == before) {
        assert_true((int64_t)clock_now_ms() < deadline);
        serve_at(50, now);
    }
}

/* Echo mode, send_timeout_ms 300, small buffers: a client that writes without reading
 * until echod is stalled on it, all at the fake time of the adoption, which is returned. */
static uint64_t start_stalled_non_reader(void)
{
    send_timeout_ms = 300;
    start(PROTO_ECHO, "");
    shrink_buffers();
    write_until_stalled(adopted_ms);
    return adopted_ms;
}

/* send_timeout_ms 300: a client that writes and never reads is closed 300 ms after its
 * output started waiting, having acknowledged nothing since (its receive buffer was
 * already full), and counted; idle_timeout_ms (off here) plays no part. */
static void test_send_timeout_closes_non_reader(void **state)
{
    (void)state;
    uint64_t now = start_stalled_non_reader();
    assert_int_equal(conn_set_next_expiry_ms(set, now), 300);
    conn_set_expire(set, now + 299);
    assert_int_equal(conn_set_count(set), 1);
    conn_set_expire(set, now + 300);
    assert_int_equal(conn_set_count(set), 0);
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_send_timeouts]), 1);
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_idle_timeouts]), 0);
}

/* Progress is what the peer acknowledges, not what echod sends: with echod stalled on a
 * client that does not read, the client reads what its kernel holds while echod is not
 * served (it sends nothing), and its kernel's acknowledgements of the data echod's
 * kernel then delivers spare the connection at the deadline. Once the client reads no
 * more, a check finds nothing acknowledged since the one before and closes it. */
static void test_send_timeout_counts_acknowledgements(void **state)
{
    (void)state;
    uint64_t now = start_stalled_non_reader();
    uint64_t sent = atomic_load(&stats.v[STAT_tcp_bytes_out]);
    uint64_t acked0, acked;
    assert_int_equal(tcpinfo_bytes_acked(server_fd, &acked0), 0);
    static uint8_t sink[65536];
    /* Read until echod's kernel has delivered more (a drop on these tiny buffers may
     * wait for a retransmission). */
    int64_t deadline = (int64_t)clock_now_ms() + 5000;
    do {
        assert_true((int64_t)clock_now_ms() < deadline);
        while (read(client, sink, sizeof(sink)) > 0)
            ;
        poll(NULL, 0, 10);
        assert_int_equal(tcpinfo_bytes_acked(server_fd, &acked), 0);
    } while (acked == acked0);
    conn_set_expire(set, now + 300);
    assert_int_equal(conn_set_count(set), 1);
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_bytes_out]), sent); /* echod sent nothing */
    int checks = 1;
    while (conn_set_count(set) == 1 && checks < 20) {
        poll(NULL, 0, 100); /* real time for the last acknowledgements to come */
        conn_set_expire(set, now + 300 * (uint64_t)++checks);
    }
    assert_int_equal(conn_set_count(set), 0);
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_send_timeouts]), 1);
}

/* A slow reader is not a non-reader: the client keeps writing and reads what has come,
 * and each 100 fake ms brings a send that moves bytes (however long the kernel takes in
 * real time). Each such send restarts the clock, so with the output never drained in
 * between, the connection outlives ten send timeouts. Once drained, nothing is pending and
 * nothing can expire, however long it stays quiet. */
static void test_send_timeout_spares_slow_reader(void **state)
{
    (void)state;
    send_timeout_ms = 300;
    buffer_bytes = 65536; /* more than a round reads: the output never drains meanwhile */
    start(PROTO_ECHO, "");
    /* echod's send buffer small, so one round sends less than its 64 KiB ring holds; the
     * client's receive side as the kernel sizes it, so reading reopens its window. */
    int small = 8192;
    setsockopt(server_fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    fcntl(client, F_SETFL, O_NONBLOCK);
    uint64_t now = adopted_ms;
    write_until_stalled(now);
    static uint8_t sink[65536];
    uint64_t got = 0;
    /* 30 rounds (3 s, ten timeouts) of writing on while reading slowly, so output stays
     * pending throughout; then stop writing and drain. */
    for (int rounds = 0; rounds < 30 || got < atomic_load(&stats.v[STAT_tcp_bytes_in]); rounds++) {
        assert_true(rounds < 2000);
        if (rounds < 30)
            (void)!write(client, sink, sizeof(sink));
        ssize_t n;
        while ((n = read(client, sink, sizeof(sink))) > 0)
            got += (uint64_t)n;
        now += 100;
        serve_until_sent(now);
        conn_set_expire(set, now);
        assert_int_equal(conn_set_count(set), 1);
    }
    conn_set_expire(set, now + 100000); /* far past any send timeout */
    assert_int_equal(conn_set_count(set), 1);
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_send_timeouts]), 0);
    /* Drained: off the send list, and the output buffer it gave back, unused since, was
     * freed by that expiry, so nothing is left that can expire. */
    assert_int_equal(conn_set_next_expiry_ms(set, now + 100000), -1);
}

static unsigned releases;

static void count_release(void *handle)
{
    (void)handle;
    releases++;
}

/* New settings (a reload): an open connection keeps the greeting it started with, a
 * timeout the reload sets applies to it at once (its clock runs from its last
 * progress), a new connection takes the new greeting, and each settings generation is
 * released once the last connection using it has closed. */
static void test_new_settings(void **state)
{
    (void)state;
    start(PROTO_GREET, "A: "); /* no idle timeout */
    roundtrip("x\n", 2, "A: x\n", 5);
    static struct conn_settings next;
    next = settings;
    next.greet.greeting = "Bee: ";
    next.greet.greeting_len = 5;
    next.idle_timeout_ms = 1000;
    releases = 0;
    assert_int_equal(conn_set_use(set, &next, count_release, NULL), 0);
    roundtrip("y\n", 2, "A: y\n", 5);
    uint64_t t = clock_now_ms();
    assert_true(conn_set_next_expiry_ms(set, t) > 0);
    conn_set_expire(set, t + 500);
    assert_int_equal(conn_set_count(set), 1);
    conn_set_expire(set, t + 1100);
    assert_int_equal(conn_set_count(set), 0);
    assert_int_equal(atomic_load(&stats.v[STAT_tcp_idle_timeouts]), 1);
    close(client);

    tcp_pair();
    assert_int_equal(conn_set_adopt(set, server_fd, PROXY_OFF, clock_now_ms()), 0);
    roundtrip("z\n", 2, "Bee: z\n", 7);
    assert_int_equal(conn_set_use(set, &settings, NULL, NULL), 0);
    assert_int_equal(releases, 0); /* the open connection still uses next */
    shutdown(client, SHUT_WR);
    for (int i = 0; i < 100 && conn_set_count(set) > 0; i++)
        serve(50);
    assert_int_equal(conn_set_count(set), 0);
    assert_int_equal(releases, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_adopt_sets_socket_options, teardown),
        cmocka_unit_test_teardown(test_echo_one_recv_one_send, teardown),
        cmocka_unit_test_teardown(test_greet_one_recv_one_send, teardown),
        cmocka_unit_test_teardown(test_greet_template_costs, teardown),
        cmocka_unit_test_teardown(test_backpressure_bounded_and_lossless, teardown),
        cmocka_unit_test_teardown(test_eof_closes_once, teardown),
        cmocka_unit_test_teardown(test_greet_slowloris_closed, teardown),
        cmocka_unit_test_teardown(test_greet_whole_lines_are_progress, teardown),
        cmocka_unit_test_teardown(test_echo_bytes_are_progress, teardown),
        cmocka_unit_test_teardown(test_send_timeout_closes_non_reader, teardown),
        cmocka_unit_test_teardown(test_send_timeout_spares_slow_reader, teardown),
        cmocka_unit_test_teardown(test_send_timeout_counts_acknowledgements, teardown),
        cmocka_unit_test_teardown(test_new_settings, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
