/* test_limits: echod against clients that try to hold its resources, run as a real
 * daemon on loopback. send_timeout_ms closes a client that writes and never reads
 * while a normal client echoes on, and spares clients that read steadily (410 KB/s) or
 * slowly (10 KB/s, small receive buffer) while writing; greet mode closes a slowloris
 * that dribbles a line it never ends; max_connections_per_ip refuses the connection
 * over the limit with a clean EOF, spares another IP and admits again after a close;
 * with its fd limit cut at run time (prlimit), echod sheds extra clients with EOF
 * through its reserve fd, keeps a connection it already had echoing, does not spin,
 * and resumes by itself; a closed stderr pipe cannot kill it; and started with its std
 * fds closed, it holds them with /dev/null, so its log cannot land in its own signalfd
 * or eventfd. */
#include "config.h"

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TCP_ONLY "udp = { listen = [ ]; };\n"

/* ---------------------------------------------------------------- helpers */

/* Connect to echod's first TCP listener from source address src ("127.0.0.2"): the
 * tracked non-blocking fd, or fail. */
static int connect_from(const char *src)
{
    return h_tcp_connect_from(src, &echod.tcp[0]);
}

/* ---------------------------------------------------------------- send timeout */

/* send_timeout_ms 500: a client that writes and never reads is closed once it stops
 * acknowledging, and counted. echod checks once per timeout, so it closes within two
 * timeouts of its output stalling, and that stall comes before echod stops taking the
 * client's bytes (backpressure); a normal client echoing meanwhile is unaffected. (On
 * loopback echod's kernel starts with a send buffer of megabytes, which the client's
 * writes take seconds to fill.) */
static void send_timeout_closes_non_reader(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  TCP_ONLY "send_timeout_ms = 500;\n"
                           "tcp = { listen = [ \"127.0.0.1:0\" ]; buffer_bytes = 4096; };\n",
                  NULL);
    int hog = h_tcp_connect_sized(&echod.tcp[0], 4096);
    int normal = h_tcp_connect_ok(&echod.tcp[0]);
    static uint8_t junk[65536];
    int64_t start = h_now_ms();
    int64_t deadline = start + 10000;
    int64_t last_taken = start; /* when echod last took a byte from the hog */
    bool is_closed = false;
    while (!is_closed && h_now_ms() < deadline) {
        ssize_t n = send(hog, junk, sizeof(junk), MSG_NOSIGNAL);
        is_closed = n < 0 && errno != EAGAIN; /* EPIPE or ECONNRESET: echod closed it */
        if (n > 0)
            last_taken = h_now_ms();
        h_echo_roundtrip(normal, "still here\n", 11, 2000);
        h_sleep_ms(50);
    }
    assert_true(is_closed);
    int64_t after = h_now_ms() - start;
    int64_t stalled = h_now_ms() - last_taken;
    h_note("the non-reader was closed %lld ms after it connected, %lld ms after echod last "
           "took a byte from it",
           (long long)after, (long long)stalled);
    assert_true(after >= 500);              /* not before send_timeout_ms */
    assert_true(stalled <= 2 * 500 + 1000); /* two checks and slack */
    assert_int_equal(h_echod_stat(&echod, "tcp_send_timeouts"), 1);
    h_echo_roundtrip(normal, "and after\n", 10, 2000);
}

/* What one paced client saw: bytes it sent, bytes it got back, and when (ms after it
 * connected) echod closed it, or -1 if echod never did. */
struct paced_result {
    size_t sent;
    size_t received;
    int64_t closed_after_ms;
};

/* A client on fd that writes as fast as echod takes its bytes (tx, at most tx_len) while
 * reading `chunk` bytes every `period_ms`, for run_ms; then it half-closes and reads the
 * rest as fast as it comes (30 s at most). Each echoed byte must equal the byte sent. */
static struct paced_result paced_reader(int fd, const uint8_t *tx, size_t tx_len, size_t chunk,
                                        int period_ms, int run_ms)
{
    static uint8_t rx[64 * KIB];
    struct paced_result r = {0, 0, -1};
    int64_t start = h_now_ms();
    int64_t next_read = start;
    bool is_draining = false;
    for (int64_t deadline = start + run_ms + 30000; h_now_ms() < deadline;) {
        int64_t now = h_now_ms();
        if (!is_draining && now >= start + run_ms) {
            shutdown(fd, SHUT_WR);
            is_draining = true;
        }
        if (!is_draining && r.sent < tx_len) {
            ssize_t n = send(fd, tx + r.sent, tx_len - r.sent, MSG_NOSIGNAL);
            if (n > 0)
                r.sent += (size_t)n;
        }
        size_t want = is_draining ? sizeof(rx) : 0;
        if (!is_draining && now >= next_read) {
            want = chunk;
            next_read += period_ms;
        }
        while (want > 0) {
            ssize_t n = recv(fd, rx, want < sizeof(rx) ? want : sizeof(rx), 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                r.closed_after_ms = h_now_ms() - start;
                if (n < 0)
                    h_note("recv: %s after %lld ms, %zu of %zu bytes back", strerror(errno),
                           (long long)r.closed_after_ms, r.received, r.sent);
                return r;
            }
            if (n < 0)
                break;
            h_assert_bytes("echo", tx + r.received, rx, (size_t)n);
            r.received += (size_t)n;
            want = is_draining ? want : want - (size_t)n;
        }
        struct pollfd p = {fd, POLLIN, 0};
        poll(&p, 1, is_draining ? 100 : 2);
    }
    return r;
}

/* Run one paced client against echod, which must keep it open for the whole run, give
 * every byte back and close only after the client's FIN (clean EOF). */
static void paced_reader_survives(int fd, size_t chunk, int period_ms, int run_ms)
{
    static uint8_t tx[32 * MIB];
    h_fill_random(tx, sizeof(tx));
    struct paced_result r = paced_reader(fd, tx, sizeof(tx), chunk, period_ms, run_ms);
    h_note("reading %zu bytes every %d ms: %zu bytes sent, %zu back, closed after %lld ms", chunk,
           period_ms, r.sent, r.received, (long long)r.closed_after_ms);
    assert_int_equal(h_echod_stat(&echod, "tcp_send_timeouts"), 0);
    if (r.closed_after_ms < run_ms)
        fail_msg("echod closed the reader after %lld ms", (long long)r.closed_after_ms);
    assert_int_equal(r.received, r.sent);
    assert_true(r.sent > 0);
}

/* send_timeout_ms 1000: a client that writes while reading a steady 410 KB/s is not a
 * non-reader. echod's send buffer autotunes to megabytes and the socket reports
 * writable only once a third of it drained, so echod's own sends pause for seconds; the
 * client's acknowledgements do not. It survives 5 s and gets every byte back. */
static void send_timeout_spares_steady_reader(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  TCP_ONLY "send_timeout_ms = 1000;\n"
                           "tcp = { listen = [ \"127.0.0.1:0\" ]; };\n",
                  NULL);
    paced_reader_survives(h_tcp_connect_ok(&echod.tcp[0]), 4100, 10, 5000);
}

/* send_timeout_ms 1000: a client reading 1 KiB every 100 ms (10 KB/s) with a 4 KiB
 * receive buffer, as a slow client would have, survives 5 s and gets every byte back. */
static void send_timeout_spares_slow_small_reader(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  TCP_ONLY "send_timeout_ms = 1000;\n"
                           "tcp = { listen = [ \"127.0.0.1:0\" ]; };\n",
                  NULL);
    paced_reader_survives(h_tcp_connect_sized(&echod.tcp[0], 4096), 1024, 100, 5000);
}

/* ---------------------------------------------------------------- slowloris */

/* Greet mode, idle_timeout_ms 800: a byte every 200 ms of a line that never ends does
 * not keep the connection; a whole line every 200 ms does. */
static void greet_slowloris_closed(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  TCP_ONLY "idle_timeout_ms = 800;\n"
                           "tcp = { listen = [ \"127.0.0.1:0\" ]; mode = \"greet\"; };\n",
                  NULL);
    int loris = h_tcp_connect_ok(&echod.tcp[0]);
    int polite = h_tcp_connect_ok(&echod.tcp[0]);
    int64_t start = h_now_ms();
    bool is_closed = false;
    for (int i = 0; i < 15 && !is_closed; i++) { /* 3 s: four idle timeouts */
        if (send(loris, "x", 1, MSG_NOSIGNAL) != 1)
            is_closed = true;
        char want[16] = "Hello, hi\n";
        h_send_all(polite, "hi\n", 3, 1000);
        char got[16];
        h_recv_exact(polite, got, 10, 2000);
        assert_memory_equal(got, want, 10);
        is_closed = is_closed || h_is_closed_within(loris, 200, false);
    }
    assert_true(is_closed);
    h_note("the slowloris was closed after %lld ms", (long long)(h_now_ms() - start));
    assert_int_equal(h_echod_stat(&echod, "tcp_idle_timeouts"), 1);
}

/* ---------------------------------------------------------------- per-IP limit */

/* max_connections_per_ip 3: three connections from 127.0.0.1 echo, the fourth gets EOF
 * without a byte and is counted; 127.0.0.2 is another IP and is served; after one of the
 * three closes, 127.0.0.1 is admitted again. */
/* Lines of echod's log holding needle. */
static unsigned log_lines_with(const char *needle)
{
    char *text = h_read_file(echod.log_path, NULL);
    assert_non_null(text);
    unsigned n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(text);
    return n;
}

/* After per_ip_limit's one refusal, with 127.0.0.1 at its limit: that refusal was logged
 * at once; five more within the 10 s log interval add no line, and shutdown writes what
 * is left as one line. */
static void per_ip_refusals_logged(void)
{
    const char *first = "tcp: refused 1 connection in the last 0.0 s: client IP at "
                        "max_connections_per_ip (last from 127.0.0.1:";
    assert_int_equal(log_lines_with(first), 1);
    for (int i = 0; i < 5; i++)
        h_expect_eof(connect_from("127.0.0.1"), 2000);
    assert_int_equal(h_echod_wait_stat(&echod, "tcp_per_ip_refused", 6, 2000), 6);
    assert_int_equal(log_lines_with("tcp: refused"), 1);
    h_close_all(); /* the clients leave, so echod stops at once */
    assert_int_equal(h_echod_stop(&echod), 0);
    assert_int_equal(log_lines_with("tcp: refused 5 connections in the last "), 1);
    assert_int_equal(log_lines_with("tcp: refused"), 2);
}

static void per_ip_limit(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  TCP_ONLY "max_connections_per_ip = 3;\n"
                           "tcp = { listen = [ \"127.0.0.1:0\" ]; };\n",
                  NULL);
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = connect_from("127.0.0.1");
        h_echo_roundtrip(fds[i], "within the limit\n", 17, 2000);
    }
    int over = connect_from("127.0.0.1");
    h_expect_eof(over, 2000);
    assert_int_equal(h_echod_stat(&echod, "tcp_per_ip_refused"), 1);
    int other = connect_from("127.0.0.2");
    h_echo_roundtrip(other, "another IP\n", 11, 2000);
    h_close(fds[0]);
    assert_int_equal(h_echod_wait_stat(&echod, "tcp_closed", 1, 5000), 1);
    int again = connect_from("127.0.0.1");
    h_echo_roundtrip(again, "admitted again\n", 15, 2000);
    for (int i = 1; i < 3; i++)
        h_echo_roundtrip(fds[i], "still served\n", 13, 2000);
    assert_int_equal(h_echod_stat(&echod, "tcp_per_ip_refused"), 1);
    per_ip_refusals_logged();
}

/* ---------------------------------------------------------------- fds run out */

#define ATTACK 80

/* Whether each of fds[0..n) is shed (EOF) or served; counts the shed. */
static int count_shed(const int *fds, int n)
{
    int shed = 0;
    for (int i = 0; i < n; i++)
        shed += h_is_closed_within(fds[i], 0, false);
    return shed;
}

/* echod with max_connections 200 has its RLIMIT_NOFILE cut to 64 at run time: of 80
 * more clients, those that find no fd get EOF (tcp_accept_emfile), the rest and an
 * earlier connection echo exactly, echod's CPU stays flat, the pause is logged once,
 * and once the clients close, new ones are served without any signal. */
static void fds_exhausted_shed_and_resume(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  TCP_ONLY "workers = 1;\nmax_connections = 200;\n"
                           "tcp = { listen = [ \"127.0.0.1:0\" ]; };\n",
                  NULL);
    int control = h_tcp_connect_ok(&echod.tcp[0]);
    h_echo_roundtrip(control, "before\n", 7, 2000);
    struct rlimit rl;
    assert_int_equal(prlimit(echod.pid, RLIMIT_NOFILE, NULL, &rl), 0);
    rl.rlim_cur = 64;
    assert_int_equal(prlimit(echod.pid, RLIMIT_NOFILE, &rl, NULL), 0);
    h_note("echod holds %d fds; its limit is now 64", h_fd_count(echod.pid));

    double cpu0 = h_cpu_seconds(echod.pid);
    int fds[ATTACK];
    for (int i = 0; i < ATTACK; i++)
        fds[i] = h_tcp_connect_ok(&echod.tcp[0]);
    h_sleep_ms(2000);
    double cpu = h_cpu_seconds(echod.pid) - cpu0;
    h_note("echod used %.3f s of CPU over 2 s out of fds", cpu);
    if (cpu >= 0.2)
        fail_msg("echod used %.3f s of CPU in 2 s out of fds: it spins", cpu);

    /* Every attack client is accounted for: served (a worker opened it) or shed. */
    const char *names[] = {"tcp_opened", "tcp_accept_emfile"};
    uint64_t v[2] = {0, 0};
    for (int64_t deadline = h_now_ms() + 20000; h_now_ms() < deadline; h_sleep_ms(100)) {
        h_echod_stats(&echod, names, v, 2);
        if (v[0] + v[1] >= ATTACK + 1)
            break;
    }
    h_note("served %llu, shed %llu", (unsigned long long)v[0] - 1, (unsigned long long)v[1]);
    assert_int_equal(v[0] + v[1], ATTACK + 1);
    assert_true(v[1] > 0);
    assert_int_equal(count_shed(fds, ATTACK), (int)v[1]);

    static uint8_t data[256 * KIB];
    h_fill_random(data, sizeof(data));
    h_echo_roundtrip(control, data, sizeof(data), 5000);
    for (int i = 0; i < ATTACK; i++)
        if (!h_is_closed_within(fds[i], 0, false))
            h_echo_roundtrip(fds[i], "served\n", 7, 2000);
    char *log = h_read_file(echod.log_path, NULL);
    assert_non_null(log);
    int pauses = 0;
    for (const char *p = log; (p = strstr(p, "pausing accepts")) != NULL; p++)
        pauses++;
    free(log);
    assert_int_equal(pauses, 1);

    for (int i = 0; i < ATTACK; i++)
        h_close(fds[i]);
    int late = -1;
    for (int64_t deadline = h_now_ms() + 5000; late < 0 && h_now_ms() < deadline;) {
        int fd = h_tcp_connect_ok(&echod.tcp[0]);
        if (!h_is_closed_within(fd, 200, false))
            late = fd; /* not shed: served */
        else
            h_close(fd);
    }
    if (late < 0)
        fail_msg("no new connection was served within 5 s of the clients closing");
    h_echo_roundtrip(late, "resumed\n", 8, 2000);
}

/* ---------------------------------------------------------------- stderr */

#define DEBUG_CONFIG TCP_ONLY "log_level = \"debug\";\ntcp = { listen = [ \"127.0.0.1:0\" ]; };\n"

/* A pipe for echod's stderr: the read end (tracked) in fds[0], the write end in fds[1]. */
static void stderr_pipe(int fds[2])
{
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    h_track_fd(fds[0]);
}

/* echod's stderr is a pipe whose reader is gone: every log line (debug per connection,
 * the stats line of SIGUSR1) fails with EPIPE, and echod keeps serving and stops with
 * exit 0. Before its threads block signals, a config error written to that stderr
 * still ends in exit 78, not in death by SIGPIPE. */
static void closed_stderr_pipe_does_not_kill(void **state)
{
    (void)state;
    char bad[512];
    h_write_temp("sigpipe-bad.conf", "bogus = 1;\n", 11, bad, sizeof(bad));
    char *check[] = {(char *)h_env("ECHOD_BIN"), (char *)"-t", (char *)"-c", bad, NULL};
    int p[2];
    stderr_pipe(p);
    h_close(p[0]); /* the reader is gone before echod writes a byte */
    assert_int_equal(h_wait_exit(h_spawn_limited(check, p[1], NULL, 0), 5000), 78);
    h_echod_start_stderr(&echod, DEBUG_CONFIG, p[1]);
    close(p[1]);
    for (int i = 0; i < 5; i++) {
        int fd = h_tcp_connect_ok(&echod.tcp[0]);
        h_echo_roundtrip(fd, "log me\n", 7, 2000);
        kill(echod.pid, SIGUSR1);
        h_close(fd);
    }
    h_sleep_ms(200);
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    h_echo_roundtrip(fd, "alive\n", 6, 2000);
    h_close(fd);
    h_echod_assert_alive(&echod);
    assert_int_equal(h_echod_stop(&echod), 0);
}

/* Write the first 8 bytes of a log line into fd `target` of process pid, through
 * pidfd_getfd: what a 6.1 kernel does with a log line written into an eventfd (it adds
 * them to the counter; later kernels refuse the write). False if this kernel or its
 * ptrace policy does not let the test take the fd. */
static bool write_into_fd_of(pid_t pid, int target)
{
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int fd = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, target, 0);
    if (fd < 0)
        h_note("cannot take fd %d of echod: %s", target, strerror(errno));
    else if (write(fd, "2026-11-", 8) < 0 && errno != EINVAL)
        fail_msg("write into echod's fd %d: %s", target, strerror(errno));
    if (fd >= 0)
        close(fd);
    if (pidfd >= 0)
        close(pidfd);
    return fd >= 0;
}

/* echod started with the std fds in closed_std closed (bit N: fd N): each is /dev/null
 * in echod, not the signalfd or the "workers done" eventfd its log would go into; bytes
 * written where its log goes (fds 1 and 2) end nothing; it serves echoes and logs
 * (debug lines per connection, a stats line per SIGUSR1) for a second and exits 0 on
 * SIGTERM. */
static void check_closed_std(unsigned closed_std)
{
    h_echod_start_closed_std(&echod, DEBUG_CONFIG, closed_std);
    for (int fd = 0; fd < 3; fd++) {
        if (!(closed_std & (1u << fd)))
            continue;
        char path[64], target[256] = "";
        snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)echod.pid, fd);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        if (strcmp(target, "/dev/null") != 0)
            fail_msg("started with fd %d closed, echod holds there \"%s\", not /dev/null", fd,
                     target);
    }
    for (int fd = 1; fd < 3; fd++)
        write_into_fd_of(echod.pid, fd);
    for (int64_t end = h_now_ms() + 1000; h_now_ms() < end;) {
        h_echod_assert_alive(&echod);
        int fd = h_tcp_connect_ok(&echod.tcp[0]);
        h_echo_roundtrip(fd, "log me\n", 7, 2000);
        h_close(fd);
        kill(echod.pid, SIGUSR1);
        h_sleep_ms(100);
    }
    h_echod_assert_alive(&echod);
    assert_int_equal(h_echod_stop(&echod), 0);
}

/* Started with stdout and stderr closed (`>&- 2>&-`), and with all three std fds closed,
 * echod takes /dev/null for them and serves on: its log cannot land in its own fds. */
static void closed_std_fds_are_held(void **state)
{
    (void)state;
    check_closed_std(1u << 1 | 1u << 2);
    check_closed_std(1u << 0 | 1u << 1 | 1u << 2);
}

/* Everything left in the pipe's read end rfd until EOF (10 s at most), NUL-terminated,
 * in a static buffer. */
static char *read_to_eof(int rfd)
{
    static char text[4 * MIB + 1]; /* static: a failing test leaks nothing */
    size_t cap = 4 * MIB, len = 0;
    for (int64_t deadline = h_now_ms() + 10000; h_now_ms() < deadline;) {
        struct pollfd p = {rfd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(rfd, text + len, cap - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == cap)
            break;
    }
    text[len] = '\0';
    return text;
}

#define STALL_CLIENTS 3000

/* echod's stderr is a pipe nobody reads while 3,000 clients connect, echo and close at
 * log level debug: two lines each, some 500 KB, far past what the pipe (64 KiB) and
 * echod's log queue (256 KiB) hold. No client waits for the log: a worker that wrote its
 * debug lines to stderr itself would block on the full pipe and the next echo would time
 * out. Once the pipe is read again, echod says how many lines it dropped, logs its
 * shutdown (info lines, which debug lines cannot crowd out) and stops with exit 0. */
static void stalled_stderr_does_not_block(void **state)
{
    (void)state;
    int p[2];
    stderr_pipe(p);
    h_echod_start_stderr(&echod, DEBUG_CONFIG, p[1]);
    close(p[1]);
    int64_t start = h_now_ms();
    for (int i = 0; i < STALL_CLIENTS; i++) {
        int fd = h_tcp_connect_ok(&echod.tcp[0]);
        h_echo_roundtrip(fd, "log me\n", 7, 2000);
        h_close(fd);
    }
    h_note("%d clients served in %lld ms with stderr unread", STALL_CLIENTS,
           (long long)(h_now_ms() - start));
    kill(echod.pid, SIGTERM);
    char *log = read_to_eof(p[0]);
    assert_int_equal(h_echod_stop(&echod), 0);
    const char *notice = strstr(log, " dropped: stderr was not keeping up\n");
    if (notice == NULL)
        fail_msg("no notice of dropped lines in %zu bytes of log", strlen(log));
    const char *line = notice;
    while (line > log && line[-1] != '\n')
        line--;
    h_note("%.*s", (int)(notice - line) + 35, line);
    /* Debug lines fill only part of the queue: the shutdown's info lines still fit. */
    assert_non_null(strstr(log, "info: stopped\n"));
}

int main(void)
{
    h_init("test_limits", 240);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(send_timeout_closes_non_reader, h_teardown),
        cmocka_unit_test_teardown(send_timeout_spares_steady_reader, h_teardown),
        cmocka_unit_test_teardown(send_timeout_spares_slow_small_reader, h_teardown),
        cmocka_unit_test_teardown(greet_slowloris_closed, h_teardown),
        cmocka_unit_test_teardown(per_ip_limit, h_teardown),
        cmocka_unit_test_teardown(fds_exhausted_shed_and_resume, h_teardown),
        cmocka_unit_test_teardown(closed_stderr_pipe_does_not_kill, h_teardown),
        cmocka_unit_test_teardown(closed_std_fds_are_held, h_teardown),
        cmocka_unit_test_teardown(stalled_stderr_does_not_block, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
