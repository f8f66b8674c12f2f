/* test_cli: echod-cli piped, against the real echod. TCP: lines and 1 MiB of binary
 * round-trip exactly, greet mode; UDP: each line is a datagram and each reply is printed
 * with "\n". A refused port and a server that never answers (-T) exit 1 with a message;
 * bad usage exits 64. stdin is a real pipe, as in `printf 'a\nb\n' | echod-cli -p PORT`.
 * At a terminal (a pty the test drives) it prompts, answers each line, and quits on
 * "exit" or ^D. --stat runs against a fake metrics endpoint the test serves with scripted
 * counters: the header, one line per scrape whose rates are the counters' steps over the
 * interval it measured, the header again every screenful, restarts noted, SIGINT exit 0,
 * and exit 1 with a message when the endpoint goes away, resets, or is not echod's. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define TCP_GREETING "\xe4\xbd\xa0\xe5\xa5\xbd\x2c\x20" /* "你好, " */
#define UDP_GREETING                                                                               \
    "\xe4\xbd\xa0\xe5\xa5\xbd\x2c\xe5\xae\xa2\xe6\x88\xb7\xe7\xab\xaf\x21\xe4\xbd\xa0\xe5\x8f\x91" \
    "\xe9\x80\x81\xe4\xba\x86\x3a" /* "你好,客户端!你发送了:" */

static int setup_greet(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  "tcp = { listen = [ \"127.0.0.1:0\" ]; mode = \"greet\";"
                  " greeting = \"" TCP_GREETING "\"; };\n"
                  "udp = { listen = [ \"127.0.0.1:0\" ]; mode = \"greet\";"
                  " greeting = \"" UDP_GREETING "\"; };\n",
                  NULL);
    return 0;
}

/* Run echod-cli with args and `in` piped to its stdin. */
static struct h_output run_cli(const char *const *args, const void *in, size_t in_len,
                               int timeout_ms)
{
    return h_run_env("ECHOD_CLI_BIN", args, in ? in : "", in_len, timeout_ms);
}

/* Run and expect exit 0 with exactly want on stdout. */
static void expect_output(const char *const *args, const void *in, size_t in_len, const void *want,
                          size_t want_len, const char *what)
{
    struct h_output r = run_cli(args, in, in_len, 30000);
    if (r.code != 0)
        fail_msg("%s: echod-cli exited %d, stderr \"%s\"", what, r.code, r.err);
    if (r.out_len != want_len) {
        char head[200];
        snprintf(head, sizeof(head), "%.*s", (int)(r.out_len < 150 ? r.out_len : 150), r.out);
        fail_msg("%s: %zu bytes on stdout, expected %zu; stdout starts \"%s\", stderr \"%s\"", what,
                 r.out_len, want_len, head, r.err);
    }
    h_assert_bytes(what, want, r.out, want_len);
    h_output_free(&r);
}

static void port_arg(char *buf, size_t size, const struct sockaddr_storage *sa)
{
    snprintf(buf, size, "%u", h_port_of(sa));
}

static void cli_tcp_piped_lines(void **state)
{
    (void)state;
    char port[16];
    port_arg(port, sizeof(port), &echod.tcp[0]);
    const char *args[] = {"-p", port, NULL};
    expect_output(args, "a\nb\n", 4, "a\nb\n", 4, "printf 'a\\nb\\n' | echod-cli -p PORT");
    const char *with_host[] = {"-H", "127.0.0.1", "-p", port, "-T", "5000", NULL};
    expect_output(with_host, "x\n\ny\n", 5, "x\n\ny\n", 5, "echod-cli -H 127.0.0.1 -p PORT");
}

/* 1 MiB of random bytes (NULs and newlines included) through the pipe and back. */
static void cli_tcp_piped_binary_1mib(void **state)
{
    (void)state;
    size_t len = 1 * MIB;
    uint8_t *data = h_xmalloc(len);
    h_fill_random(data, len);
    data[0] = 0;
    data[len - 1] = 0;
    char port[16];
    port_arg(port, sizeof(port), &echod.tcp[0]);
    const char *args[] = {"-p", port, NULL};
    expect_output(args, data, len, data, len, "1 MiB of binary through echod-cli");
    free(data);
}

static void cli_tcp_greet(void **state)
{
    (void)state;
    char port[16];
    port_arg(port, sizeof(port), &echod.tcp[0]);
    const char *args[] = {"-p", port, NULL};
    const char want[] = TCP_GREETING "a\n" TCP_GREETING "b\n" TCP_GREETING "tail\n";
    expect_output(args, "a\nb\ntail", 8, want, sizeof(want) - 1, "greet mode via echod-cli");
}

static void cli_udp_piped_lines(void **state)
{
    (void)state;
    char port[16];
    port_arg(port, sizeof(port), &echod.udp[0]);
    const char *args[] = {"-u", "-p", port, NULL};
    const char lines[] = "one\ntwo\nthree 3\n";
    expect_output(args, lines, sizeof(lines) - 1, lines, sizeof(lines) - 1,
                  "echod-cli -u, one datagram per line");
}

static void cli_udp_greet(void **state)
{
    (void)state;
    char port[16];
    port_arg(port, sizeof(port), &echod.udp[0]);
    const char *args[] = {"-u", "-p", port, NULL};
    const char want[] = UDP_GREETING "hi\n" UDP_GREETING "again\n";
    expect_output(args, "hi\nagain\n", 9, want, sizeof(want) - 1, "echod-cli -u, greet mode");
}

/* Nothing listens on the port: exit 1, a message, no output. */
static void cli_refused_exits_1(void **state)
{
    (void)state;
    char port[16];
    snprintf(port, sizeof(port), "%u", h_unused_tcp_port());
    const char *args[] = {"-p", port, "-T", "2000", NULL};
    struct h_output r = run_cli(args, "a\n", 2, 10000);
    if (r.code != 1 || r.err[0] == '\0' || r.out_len != 0)
        fail_msg("refused port %s: expected exit 1, a message and no output; got exit %d, "
                 "stdout \"%s\", stderr \"%s\"",
                 port, r.code, r.out, r.err);
    if (!strcasestr(r.err, "refused"))
        fail_msg("the message for a refused connection does not say so: \"%s\"", r.err);
    h_output_free(&r);
}

/* Run echod-cli with args and input while the test accepts (and then ignores) every
 * connection on listener, if it is a TCP listener. Returns the exit code and how long it
 * took in *took_ms; stderr into err. */
static int run_against_silent_server(const char *const *args, const char *in, int listener,
                                     bool is_tcp, int64_t *took_ms, char *err, size_t err_size)
{
    char *argv[16];
    size_t argc = 0;
    argv[argc++] = (char *)h_env("ECHOD_CLI_BIN");
    for (size_t i = 0; args[i] && argc < 15; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    char err_path[512];
    snprintf(err_path, sizeof(err_path), "%s/silent-%d.err", h_tmpdir(), listener);
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        fail_msg("pipe2: %s", strerror(errno));
    int64_t start = h_now_ms();
    pid_t pid = h_spawn(argv, pipefd[0], NULL, err_path);
    close(pipefd[0]);
    ssize_t w = write(pipefd[1], in, strlen(in)); /* small: fits in the pipe */
    close(pipefd[1]);
    if (w != (ssize_t)strlen(in))
        fail_msg("writing echod-cli's stdin: %s", strerror(errno));
    int code;
    while ((code = h_wait_exit(pid, 10)) < 0) {
        if (h_now_ms() - start > 10000) {
            h_kill(pid);
            fail_msg("echod-cli %s did not give up within 10 s against a silent server", args[0]);
        }
        if (is_tcp) {
            int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0)
                h_track_fd(fd); /* held open, never answered */
        }
    }
    *took_ms = h_now_ms() - start;
    char *text = h_read_file(err_path, NULL);
    snprintf(err, err_size, "%s", text ? text : "");
    free(text);
    return code;
}

/* A TCP server that accepts and never answers nor closes, and a UDP socket that never
 * answers: with -T 500 / -T 300, echod-cli gives up with exit 1 and a message, after about
 * the timeout (not at once, not much later). */
static void cli_timeout_exits_1(void **state)
{
    (void)state;
    struct sockaddr_storage sa;
    h_loopback(&sa, AF_INET, 0);
    socklen_t len = sizeof(sa);
    int tcp = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    h_track_fd(tcp);
    if (bind(tcp, (struct sockaddr *)&sa, sizeof(struct sockaddr_in)) != 0 ||
        listen(tcp, 16) != 0 || getsockname(tcp, (struct sockaddr *)&sa, &len) != 0)
        fail_msg("test listener: %s", strerror(errno));
    char port[16], err[2048];
    snprintf(port, sizeof(port), "%u", h_port_of(&sa));
    const char *args[] = {"-p", port, "-T", "500", NULL};
    int64_t took;
    int code = run_against_silent_server(args, "hello\n", tcp, true, &took, err, sizeof(err));
    h_note("tcp -T 500 against a silent server: exit %d after %lld ms: %s", code, (long long)took,
           err);
    if (code != 1 || err[0] == '\0')
        fail_msg("expected exit 1 and a message, got exit %d, stderr \"%s\"", code, err);
    if (took < 400 || took > 3500)
        fail_msg("-T 500 gave up after %lld ms", (long long)took);

    h_loopback(&sa, AF_INET, 0);
    len = sizeof(sa);
    int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    h_track_fd(udp);
    if (bind(udp, (struct sockaddr *)&sa, sizeof(struct sockaddr_in)) != 0 ||
        getsockname(udp, (struct sockaddr *)&sa, &len) != 0)
        fail_msg("test udp socket: %s", strerror(errno));
    snprintf(port, sizeof(port), "%u", h_port_of(&sa));
    const char *uargs[] = {"-u", "-p", port, "-T", "300", NULL};
    code = run_against_silent_server(uargs, "x\n", udp, false, &took, err, sizeof(err));
    h_note("udp -T 300 against a silent socket: exit %d after %lld ms: %s", code, (long long)took,
           err);
    if (code != 1 || err[0] == '\0')
        fail_msg("expected exit 1 and a message, got exit %d, stderr \"%s\"", code, err);
    if (took < 250 || took > 3300)
        fail_msg("-T 300 gave up after %lld ms", (long long)took);
    char buf[64];
    ssize_t n = recv(udp, buf, sizeof(buf), MSG_DONTWAIT);
    if (n != 1 || buf[0] != 'x')
        fail_msg("the silent UDP socket did not receive the datagram \"x\" (got %zd bytes)", n);
}

/* -H localhost, where localhost is ::1 first, then 127.0.0.1, and only 127.0.0.1 has
 * echod: echod-cli tries each address in turn. (Not UDP: with no handshake, nothing says
 * that an address is the wrong one before a datagram is sent; README says so.) */
static void cli_tries_each_address(void **state)
{
    (void)state;
    char port[16];
    snprintf(port, sizeof(port), "%u", h_port_of(&echod.tcp[0]));
    const char *args[] = {"-H", "localhost", "-p", port, "-T", "2000", NULL};
    struct h_output r;
    if (!h_run_localhost_v6_refused(h_port_of(&echod.tcp[0]), h_env("ECHOD_CLI_BIN"), args,
                                    "via localhost\n", 14, 30000, &r))
        skip();
    if (r.code != 0 || strcmp(r.out, "via localhost\n") != 0)
        fail_msg("-H localhost (::1 refused, then 127.0.0.1): expected exit 0 and the echo, got "
                 "exit %d, stdout \"%s\", stderr \"%s\"",
                 r.code, r.out, r.err);
    h_output_free(&r);
}

static void cli_bad_usage_exits_64(void **state)
{
    (void)state;
    char port[16];
    snprintf(port, sizeof(port), "%u", h_unused_tcp_port());
    /* Each refused with exit 64 and the message that names its own mistake. */
    const struct {
        const char *args[5]; /* NULL-terminated */
        const char *needle;
    } cases[] = {
        {{"-p", port, "--bogus"}, "unrecognized option '--bogus'"},
        {{"-p"}, "option requires an argument -- 'p'"},
        {{"-p", "http"}, "invalid port 'http'"},
        {{"-p", "99999"}, "invalid port '99999'"},
        {{"-p", port, "-T", "soon"}, "invalid timeout 'soon'"},
        {{"-p", port, "extra-argument"}, "unexpected argument 'extra-argument'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        h_expect_usage_error("ECHOD_CLI_BIN", "echod-cli", cases[i].args, cases[i].needle);
    /* A bad option is named as getopt names it: the letter alone, even in a cluster. */
    const struct {
        const char *arg, *needle;
    } bad[] = {
        {"-ux", "invalid option -- 'x'"},
        {"-xu", "invalid option -- 'x'"},
        {"--bogus", "unrecognized option '--bogus'"},
        {"-uT", "option requires an argument -- 'T'"},
        {"--port", "option '--port' requires an argument"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *args[] = {"-p", port, "-T", "1000", bad[i].arg, NULL};
        h_expect_usage_error("ECHOD_CLI_BIN", "echod-cli", args, bad[i].needle);
    }
    /* --stat's -i: 0.1 to 3600 seconds, at most 3 decimals, and only with --stat. */
    const struct {
        const char *args[5], *needle;
    } stat_bad[] = {
        {{"--stat", "-i", "0.05", NULL}, "invalid interval '0.05' (0.1-3600 seconds)"},
        {{"--stat", "-i", "0", NULL}, "invalid interval '0'"},
        {{"--stat", "-i", "3601", NULL}, "invalid interval '3601'"},
        {{"--stat", "-i", "1.2345", NULL}, "invalid interval '1.2345'"},
        {{"--stat", "-i", "1.", NULL}, "invalid interval '1.'"},
        {{"--stat", "-i", ".5", NULL}, "invalid interval '.5'"},
        {{"--stat", "--interval", "1s", NULL}, "invalid interval '1s'"},
        {{"-i", "1", NULL}, "-i is for --stat only"},
        {{"--stat", "-u", NULL}, "--stat reads the metrics endpoint over TCP: no -u"},
        {{"--stat", "--stat=1", NULL}, "option '--stat' doesn't allow an argument"},
    };
    for (size_t i = 0; i < sizeof(stat_bad) / sizeof(stat_bad[0]); i++)
        h_expect_usage_error("ECHOD_CLI_BIN", "echod-cli", stat_bad[i].args, stat_bad[i].needle);
}

/* A pty whose slave has no echo and no output processing, so the master reads exactly
 * what echod-cli writes. */
struct pty {
    int master;
    char slave_path[128];
};

static void pty_open(struct pty *p)
{
    p->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (p->master < 0 || grantpt(p->master) != 0 || unlockpt(p->master) != 0 ||
        ptsname_r(p->master, p->slave_path, sizeof(p->slave_path)) != 0)
        fail_msg("cannot open a pty: %s", strerror(errno));
    h_track_fd(p->master);
    int slave = open(p->slave_path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    struct termios t;
    if (slave < 0 || tcgetattr(slave, &t) != 0)
        fail_msg("pty slave %s: %s", p->slave_path, strerror(errno));
    t.c_lflag &= ~(tcflag_t)ECHO;
    t.c_oflag &= ~(tcflag_t)OPOST;
    if (tcsetattr(slave, TCSANOW, &t) != 0)
        fail_msg("tcsetattr: %s", strerror(errno));
    close(slave);
}

/* Read from the master until it has delivered exactly want (5 s at most). */
static void pty_expect(struct pty *p, const char *want, const char *what)
{
    size_t want_len = strlen(want), got_len = 0;
    char got[512];
    int64_t deadline = h_now_ms() + 5000;
    while (got_len < want_len && h_now_ms() < deadline) {
        struct pollfd pfd = {p->master, POLLIN, 0};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        ssize_t n = read(p->master, got + got_len, want_len - got_len);
        if (n <= 0)
            break; /* EIO: the slave side is gone */
        got_len += (size_t)n;
    }
    got[got_len] = '\0';
    if (got_len != want_len || memcmp(got, want, want_len) != 0)
        fail_msg("%s: the terminal shows \"%s\", expected \"%s\"", what, got, want);
}

/* Type text at the terminal. */
static void pty_type(struct pty *p, const char *text)
{
    size_t len = strlen(text);
    if (write(p->master, text, len) != (ssize_t)len)
        fail_msg("writing to the pty: %s", strerror(errno));
}

/* echod-cli at a terminal: the prompt, each reply, and "exit" (TCP) or ^D (UDP) quits
 * with exit 0. */
static void cli_interactive(void **state)
{
    (void)state;
    for (int is_udp = 0; is_udp < 2; is_udp++) {
        struct sockaddr_storage *sa = is_udp ? &echod.udp[0] : &echod.tcp[0];
        char port[16], prompt[64], reply[128];
        snprintf(port, sizeof(port), "%u", h_port_of(sa));
        snprintf(prompt, sizeof(prompt), "127.0.0.1:%s> ", port);
        struct pty p;
        pty_open(&p);
        int slave = open(p.slave_path, O_RDWR | O_NOCTTY | O_CLOEXEC);
        char timeout[] = "-T", timeout_ms[] = "5000", port_opt[] = "-p", udp[] = "-u";
        char *argv[] = {(char *)h_env("ECHOD_CLI_BIN"),
                        timeout,
                        timeout_ms,
                        port_opt,
                        port,
                        is_udp ? udp : NULL,
                        NULL};
        pid_t pid = h_spawn(argv, slave, p.slave_path, NULL);
        close(slave);
        pty_expect(&p, prompt, "the first prompt");
        pty_type(&p, "hello 1\n");
        snprintf(reply, sizeof(reply), "%s%s%s", is_udp ? UDP_GREETING : TCP_GREETING, "hello 1\n",
                 prompt);
        pty_expect(&p, reply, "a greeted reply, then the prompt again");
        pty_type(&p, is_udp ? "\x04" : "exit\n");
        pty_expect(&p, "\n", "the newline after the last prompt");
        int code = h_wait_exit(pid, 5000);
        if (code != 0)
            fail_msg("interactive echod-cli%s exited %d, expected 0", is_udp ? " -u" : "", code);
        h_close(p.master);
    }
}

/* ---------------------------------------------------------------- --stat */

/* echod-cli --stat runs against a fake metrics endpoint that the test itself serves: a
 * loopback listener on port 0 that answers each scrape as the test scripts it. For every
 * answer it notes when it began to send (answer_us) and when echod-cli, having read it
 * to the end, closed the connection (done_us). echod-cli stamps a scrape when its first
 * byte arrives, between the two, so the test knows the bounds of every interval echod-cli
 * measured and so of every rate it may print: [delta / (done_j - answer_{j-1}),
 * delta / (answer_j - done_{j-1})], widened only by the rounding of the printed figure. */
#define FAKE_MAX_SCRAPES 64
#define FAKE_LINE_SIZE   512
#define STAT_HEADER                                                                                \
    "conns accept/s closed/s msg-in/s msg-out/s bytes-in/s bytes-out/s dgram-in/s dgram-out/s "    \
    "drops/s reasons"

struct fake_metrics {
    int listener;
    char port[16];
    size_t served;                       /* scrapes answered */
    int64_t answer_us[FAKE_MAX_SCRAPES]; /* just before answer k was sent */
    int64_t done_us[FAKE_MAX_SCRAPES];   /* once echod-cli had closed after answer k */
    char first_request[1024];            /* the first request, as received */
    pid_t cli;                           /* echod-cli --stat */
    char out_path[512], err_path[512];   /* its stdout and stderr */
};

static struct fake_metrics fake; /* stat_teardown kills fake.cli */

static int stat_teardown(void **state)
{
    h_kill(fake.cli);
    fake.cli = 0;
    return h_teardown(state);
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The listener, on 127.0.0.1 port 0. */
static void fake_listen(struct fake_metrics *f)
{
    memset(f, 0, sizeof(*f));
    struct sockaddr_storage sa;
    h_loopback(&sa, AF_INET, 0);
    socklen_t len = sizeof(sa);
    f->listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    h_track_fd(f->listener);
    if (bind(f->listener, (struct sockaddr *)&sa, sizeof(struct sockaddr_in)) != 0 ||
        listen(f->listener, 16) != 0 || getsockname(f->listener, (struct sockaddr *)&sa, &len))
        fail_msg("fake metrics listener: %s", strerror(errno));
    snprintf(f->port, sizeof(f->port), "%u", h_port_of(&sa));
}

/* Start `echod-cli --stat -p PORT` and the NULL-terminated extra args against f, its
 * stdout on the terminal tty (a path), or else on a file. */
static void fake_spawn_cli_on(struct fake_metrics *f, const char *const *extra, const char *tty)
{
    char *argv[16];
    size_t argc = 0;
    argv[argc++] = (char *)h_env("ECHOD_CLI_BIN");
    argv[argc++] = (char *)"--stat";
    argv[argc++] = (char *)"-p";
    argv[argc++] = f->port;
    for (size_t i = 0; extra && extra[i] && argc < 15; i++)
        argv[argc++] = (char *)extra[i];
    argv[argc] = NULL;
    snprintf(f->out_path, sizeof(f->out_path), "%s/stat-%s.out", h_tmpdir(), f->port);
    snprintf(f->err_path, sizeof(f->err_path), "%s/stat-%s.err", h_tmpdir(), f->port);
    f->cli = h_spawn(argv, -1, tty ? tty : f->out_path, f->err_path);
}

static void fake_spawn_cli(struct fake_metrics *f, const char *const *extra)
{
    fake_spawn_cli_on(f, extra, NULL);
}

/* echod-cli's stderr so far, into buf. */
static const char *fake_cli_stderr(struct fake_metrics *f, char *buf, size_t size)
{
    char *text = h_read_file(f->err_path, NULL);
    snprintf(buf, size, "%s", text ? text : "");
    free(text);
    return buf;
}

/* Accept echod-cli's next scrape (10 s at most; fails with its stderr should it exit
 * first) and read its request up to the blank line: the connection, tracked. */
static int fake_accept(struct fake_metrics *f)
{
    int64_t deadline = h_now_ms() + 10000;
    int fd = -1;
    char err[1024];
    while (fd < 0) {
        struct pollfd p = {f->listener, POLLIN, 0};
        if (poll(&p, 1, 20) > 0)
            fd = accept4(f->listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            break;
        int code = h_wait_exit(f->cli, 0);
        if (code >= 0) {
            f->cli = 0;
            fail_msg("echod-cli --stat exited %d before scrape %zu: %s", code, f->served,
                     fake_cli_stderr(f, err, sizeof(err)));
        }
        if (h_now_ms() > deadline)
            fail_msg("echod-cli --stat made no scrape %zu within 10 s", f->served);
    }
    h_track_fd(fd);
    char request[1024];
    size_t len = 0;
    while (len < sizeof(request) - 1) {
        ssize_t n = h_recv_some(fd, request + len, sizeof(request) - 1 - len, 5000);
        if (n <= 0)
            fail_msg("scrape %zu: no whole request (%zd)", f->served, n);
        len += (size_t)n;
        request[len] = '\0';
        if (strstr(request, "\r\n\r\n"))
            break;
    }
    if (f->served == 0)
        snprintf(f->first_request, sizeof(f->first_request), "%s", request);
    return fd;
}

/* Answer scrape fd with response after delay_ms, then wait for echod-cli to close. */
static void fake_respond(struct fake_metrics *f, int fd, const char *response, int delay_ms)
{
    if (delay_ms > 0)
        h_sleep_ms(delay_ms);
    if (f->served >= FAKE_MAX_SCRAPES)
        fail_msg("more than %d scrapes", FAKE_MAX_SCRAPES);
    f->answer_us[f->served] = now_us();
    h_send_all(fd, response, strlen(response), 5000);
    shutdown(fd, SHUT_WR);
    char sink[256];
    ssize_t n;
    while ((n = h_recv_some(fd, sink, sizeof(sink), 5000)) > 0)
        ;
    if (n != 0)
        fail_msg("scrape %zu: echod-cli did not close after the response (%zd)", f->served, n);
    f->done_us[f->served++] = now_us();
    h_close(fd);
}

/* The counters and gauges of one scripted scrape. */
struct fake_figures {
    double conns, accepted, closed, reads, writes, bytes_in, bytes_out, dgrams_in, dgrams_out;
    double drop_rate, per_ip_refused, drop_port, idle_timeouts, start_time;
};

/* Scrape k of a steady load: each counter grows by its own step, the gauge by one. */
static struct fake_figures steady(size_t k)
{
    double n = (double)k;
    return (struct fake_figures){
        .conns = 10 + n,
        .accepted = 50 * n,
        .closed = 40 * n,
        .reads = 600 * n,
        .writes = 500 * n,
        .bytes_in = 32000 * n,
        .bytes_out = 64000 * n,
        .dgrams_in = 100000 * n,
        .dgrams_out = 2500000 * n,
        .drop_rate = 60 * n,
        .per_ip_refused = 6 * n,
        .drop_port = 1 * n,
        .idle_timeouts = 1000 * n, /* not a drop */
        .start_time = 1764400000,
    };
}

/* A 200 response with a page as echod's endpoint writes it: HELP and TYPE, metrics --stat
 * does not use (labels with escapes, a histogram, build_info), a counter in exponent
 * form, a drop counter that does not move, and a line the format does not have. */
static void fake_page(const struct fake_figures *x, char *buf, size_t size)
{
    char body[4096];
    snprintf(body, sizeof(body),
             "# HELP echod_tcp_connections Open TCP connections.\n"
             "# TYPE echod_tcp_connections gauge\n"
             "echod_tcp_connections %.0f\n"
             "# HELP echod_tcp_accepted_total Sockets accepted.\n"
             "# TYPE echod_tcp_accepted_total counter\n"
             "echod_tcp_accepted_total %.0f\n"
             "echod_tcp_closed_total %.0f\n"
             "echod_tcp_reads_total %.0f\n"
             "echod_tcp_writes_total %.0f\n"
             "echod_tcp_bytes_in_total %.0f\n"
             "echod_tcp_bytes_out_total %.0f\n"
             "echod_tcp_idle_timeouts_total %.0f\n"
             "echod_tcp_per_ip_refused_total %.0f\n"
             "echod_udp_datagrams_in_total %.6e\n"
             "echod_udp_datagrams_out_total %.0f\n"
             "echod_udp_drop_port_total %.0f\n"
             "echod_udp_drop_reflector_total 5\n"
             "echod_udp_drop_rate_total %.0f\n"
             "echod_worker_connections{worker=\"0\"} 3\n"
             "echod_worker_queue_length{worker=\"0\"} 0\n"
             "echod_build_info{version=\"0.1.0\"} 1\n"
             "echod_config_reloads_total{result=\"failure\"} 7\n"
             "some_other_metric{path=\"a \\\"quoted\\\" \\\\ value\"} +Inf 1764400000000\n"
             "echod_tcp_connection_duration_seconds_bucket{le=\"0.1\"} 4\n"
             "echod_tcp_connection_duration_seconds_bucket{le=\"+Inf\"} 9\n"
             "echod_tcp_connection_duration_seconds_sum NaN\n"
             "this line is not in the format\n"
             "process_start_time_seconds %.0f\n",
             x->conns, x->accepted, x->closed, x->reads, x->writes, x->bytes_in, x->bytes_out,
             x->idle_timeouts, x->per_ip_refused, x->dgrams_in, x->dgrams_out, x->drop_port,
             x->drop_rate, x->start_time);
    snprintf(buf, size,
             "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(body), body);
}

/* Answer the next scrape with the page of x after delay_ms. */
static void fake_serve(struct fake_metrics *f, const struct fake_figures *x, int delay_ms)
{
    char response[5000];
    fake_page(x, response, sizeof(response));
    fake_respond(f, fake_accept(f), response, delay_ms);
}

/* echod-cli's stdout lines, once it has printed at least want of them (10 s at most). */
static size_t fake_wait_lines(struct fake_metrics *f, char lines[][FAKE_LINE_SIZE], size_t max,
                              size_t want)
{
    int64_t deadline = h_now_ms() + 10000;
    for (;;) {
        char *text = h_read_file(f->out_path, NULL);
        size_t count = 0;
        for (char *p = text, *nl; p && count < max && (nl = strchr(p, '\n')); p = nl + 1)
            snprintf(lines[count++], FAKE_LINE_SIZE, "%.*s", (int)(nl - p), p);
        free(text);
        if (count >= want)
            return count;
        if (h_now_ms() > deadline) {
            char err[1024];
            fail_msg("echod-cli --stat printed %zu lines, expected %zu; stderr \"%s\"", count, want,
                     fake_cli_stderr(f, err, sizeof(err)));
        }
        h_sleep_ms(10);
    }
}

/* Split line into its blank-separated words; how many. */
static size_t split_words(char *line, char **words, size_t max)
{
    size_t n = 0;
    for (char *save = NULL, *w = strtok_r(line, " ", &save); w && n < max;
         w = strtok_r(NULL, " ", &save))
        words[n++] = w;
    return n;
}

/* A figure as --stat prints it ("0", "2.0", "64000", "128k", "5.00M"): its value, and
 * half the step of its last digit (the rounding it may carry). */
static void parse_figure(const char *text, double *value, double *half_step)
{
    char *end;
    *value = strtod(text, &end);
    if (end == text)
        fail_msg("\"%s\" is not a figure", text);
    const char *dot = strchr(text, '.');
    int decimals = dot ? (int)(end - dot - 1) : 0;
    double unit = 1;
    if (*end != '\0') {
        const char *units = "kMGTPE";
        const char *u = strchr(units, *end);
        if (!u || end[1] != '\0')
            fail_msg("\"%s\" is not a figure", text);
        for (const char *p = units; p <= u; p++)
            unit *= 1000;
    }
    *value *= unit;
    *half_step = 0.5 * unit;
    for (int i = 0; i < decimals; i++)
        *half_step /= 10;
}

/* Fail unless `printed` is delta over the interval line j of f measured, as rounded. */
static void expect_rate(const struct fake_metrics *f, size_t j, const char *what,
                        const char *printed, double delta)
{
    double min_s = (double)(f->answer_us[j] - f->done_us[j - 1]) / 1e6;
    double max_s = (double)(f->done_us[j] - f->answer_us[j - 1]) / 1e6;
    double value, half;
    parse_figure(printed, &value, &half);
    double lo = delta / max_s - half, hi = delta / min_s + half;
    if (value < lo * (1 - 1e-9) || value > hi * (1 + 1e-9))
        fail_msg("line %zu, %s: printed %s, but %.0f over %.6f to %.6f s is %.3f to %.3f", j, what,
                 printed, delta, min_s, max_s, delta / max_s, delta / min_s);
}

/* Check data line `line` (for the interval from scrape j-1 to j, whose figures are a and
 * b): the gauge exactly, every rate within the interval's bounds, the drops' total and
 * their reasons, largest first. */
static void expect_stat_line(const struct fake_metrics *f, size_t j, const char *line,
                             const struct fake_figures *a, const struct fake_figures *b)
{
    char copy[FAKE_LINE_SIZE];
    snprintf(copy, sizeof(copy), "%s", line);
    char *w[20];
    size_t n = split_words(copy, w, 20);
    if (n != 13)
        fail_msg("line %zu has %zu words, expected 13: \"%s\"", j, n, line);
    char conns[16];
    snprintf(conns, sizeof(conns), "%.0f", b->conns);
    if (strcmp(w[0], conns) != 0)
        fail_msg("line %zu: conns %s, expected %s: \"%s\"", j, w[0], conns, line);
    expect_rate(f, j, "accept/s", w[1], b->accepted - a->accepted);
    expect_rate(f, j, "closed/s", w[2], b->closed - a->closed);
    expect_rate(f, j, "msg-in/s", w[3], b->reads - a->reads);
    expect_rate(f, j, "msg-out/s", w[4], b->writes - a->writes);
    expect_rate(f, j, "bytes-in/s", w[5], b->bytes_in - a->bytes_in);
    expect_rate(f, j, "bytes-out/s", w[6], b->bytes_out - a->bytes_out);
    expect_rate(f, j, "dgram-in/s", w[7], b->dgrams_in - a->dgrams_in);
    expect_rate(f, j, "dgram-out/s", w[8], b->dgrams_out - a->dgrams_out);
    double drop_rate = b->drop_rate - a->drop_rate, per_ip = b->per_ip_refused - a->per_ip_refused;
    double drop_port = b->drop_port - a->drop_port;
    expect_rate(f, j, "drops/s", w[9], drop_rate + per_ip + drop_port);
    const char *names[] = {"udp_drop_rate=", "tcp_per_ip_refused=", "udp_drop_port="};
    double deltas[] = {drop_rate, per_ip, drop_port};
    for (size_t i = 0; i < 3; i++) {
        if (strncmp(w[10 + i], names[i], strlen(names[i])) != 0)
            fail_msg("line %zu: reason %zu is \"%s\", expected %s...: \"%s\"", j, i, w[10 + i],
                     names[i], line);
        expect_rate(f, j, names[i], w[10 + i] + strlen(names[i]), deltas[i]);
    }
}

/* Send sig (SIGINT or SIGTERM) to echod-cli: it must exit 0 at once (well within its
 * -T), saying nothing. */
static void expect_stopped_by(struct fake_metrics *f, int sig)
{
    int64_t start = h_now_ms();
    kill(f->cli, sig);
    int code = h_wait_exit(f->cli, 5000);
    int64_t took = h_now_ms() - start;
    char err[1024];
    fake_cli_stderr(f, err, sizeof(err));
    h_note("%s: exit %d after %lld ms", strsignal(sig), code, (long long)took);
    if (code != 0 || err[0] != '\0')
        fail_msg("after %s echod-cli exited %d (expected 0), stderr \"%s\"", strsignal(sig), code,
                 err);
    f->cli = 0;
    if (took > 2000)
        fail_msg("echod-cli took %lld ms to stop after %s", (long long)took, strsignal(sig));
}

static void expect_sigint_exit_0(struct fake_metrics *f)
{
    expect_stopped_by(f, SIGINT);
}

/* Wait for echod-cli to exit by itself: its code must be want and its stderr exactly
 * want_err (PORT in it stands for the fake's port). */
static void expect_cli_exit(struct fake_metrics *f, int want, const char *want_err)
{
    int code = h_wait_exit(f->cli, 10000);
    if (code < 0)
        fail_msg("echod-cli --stat did not exit within 10 s");
    f->cli = 0;
    char err[1024], expected[1024];
    fake_cli_stderr(f, err, sizeof(err));
    const char *at = strstr(want_err, "PORT");
    snprintf(expected, sizeof(expected), "%.*s%s%s", (int)(at ? at - want_err : 0), want_err,
             at ? f->port : "", at ? at + 4 : want_err);
    h_note("exit %d, stderr: %s", code, err);
    if (code != want || strcmp(err, expected) != 0)
        fail_msg("echod-cli --stat exited %d with stderr \"%s\"; expected %d and \"%s\"", code, err,
                 want, expected);
}

/* A steady load, scraped every 0.5 s, with one answer 400 ms late: the header, then one
 * line per scrape whose every rate is the counter's step over the interval echod-cli
 * measured (0.9 s and 0.1 s around the late answer, not the 0.5 s asked for); then
 * SIGINT while a scrape is unanswered stops it with exit 0 at once. */
static void cli_stat_rates(void **state)
{
    (void)state;
    struct fake_metrics *f = &fake;
    fake_listen(f);
    const char *args[] = {"-i", "0.5", NULL};
    fake_spawn_cli(f, args);
    const size_t scrapes = 7;
    for (size_t k = 0; k < scrapes; k++) {
        struct fake_figures x = steady(k);
        fake_serve(f, &x, k == 3 ? 400 : 0);
    }
    int pending = fake_accept(f); /* scrape 7, never answered */
    char lines[16][FAKE_LINE_SIZE];
    size_t count = fake_wait_lines(f, lines, 16, scrapes);
    const char *request_line = "GET /metrics HTTP/1.0\r\n";
    if (strncmp(f->first_request, request_line, strlen(request_line)) != 0 ||
        !strstr(f->first_request, "\r\nConnection: close\r\n"))
        fail_msg("the request was \"%s\"", f->first_request);
    for (size_t i = 0; i < count; i++)
        h_note("%s", lines[i]);
    if (count != scrapes)
        fail_msg("%zu lines, expected the header and %zu lines", count, scrapes - 1);
    if (strcmp(lines[0], STAT_HEADER) != 0)
        fail_msg("the header is \"%s\", expected \"%s\"", lines[0], STAT_HEADER);
    for (size_t j = 1; j < scrapes; j++) {
        struct fake_figures a = steady(j - 1), b = steady(j);
        expect_stat_line(f, j, lines[j], &a, &b);
    }
    expect_sigint_exit_0(f);
    h_close(pending);
}

/* Counters that go down are a restart: a note instead of a line, and the next line's
 * rates count from the new values; a new process_start_time_seconds is one too. Then the
 * endpoint goes away (closed while echod-cli waits on an answer, so its next connect is
 * refused for sure): exit 1, saying so. */
static void cli_stat_restart_then_gone(void **state)
{
    (void)state;
    struct fake_metrics *f = &fake;
    fake_listen(f);
    const char *args[] = {"-i", "0.2", NULL};
    fake_spawn_cli(f, args);
    struct fake_figures script[7] = {steady(0), steady(1), steady(2), steady(0),
                                     steady(1), steady(5), steady(6)};
    script[3].start_time = script[4].start_time = 1764400100;
    script[5].start_time = script[6].start_time = 1764400200;
    for (size_t k = 0; k < 6; k++)
        fake_serve(f, &script[k], 0);
    int last = fake_accept(f);
    h_close(f->listener);
    char response[5000];
    fake_page(&script[6], response, sizeof(response));
    fake_respond(f, last, response, 0);
    char lines[16][FAKE_LINE_SIZE];
    size_t count = fake_wait_lines(f, lines, 16, 7);
    for (size_t i = 0; i < count; i++)
        h_note("%s", lines[i]);
    if (count != 7 || strcmp(lines[0], STAT_HEADER) != 0)
        fail_msg("%zu lines, expected 7 beginning with the header", count);
    expect_stat_line(f, 1, lines[1], &script[0], &script[1]);
    expect_stat_line(f, 2, lines[2], &script[1], &script[2]);
    const char *note = "-- echod restarted (echod_tcp_accepted_total went from 100 to 0): "
                       "rates start again from here --";
    if (strcmp(lines[3], note) != 0)
        fail_msg("after the counters went down: \"%s\", expected \"%s\"", lines[3], note);
    expect_stat_line(f, 4, lines[4], &script[3], &script[4]);
    note = "-- echod restarted (process_start_time_seconds went from 1764400100 to "
           "1764400200): rates start again from here --";
    if (strcmp(lines[5], note) != 0)
        fail_msg("after a new start time: \"%s\", expected \"%s\"", lines[5], note);
    expect_stat_line(f, 6, lines[6], &script[5], &script[6]);
    expect_cli_exit(f, 1,
                    "echod-cli: echod went away: cannot connect to 127.0.0.1:PORT: Connection "
                    "refused\n");
}

/* The endpoint resets the connection (echod killed mid-scrape): exit 1, saying so. */
static void cli_stat_reset(void **state)
{
    (void)state;
    struct fake_metrics *f = &fake;
    fake_listen(f);
    fake_spawn_cli(f, (const char *const[]){"-i", "0.2", NULL});
    struct fake_figures x = steady(0);
    fake_serve(f, &x, 0);
    int fd = fake_accept(f);
    struct linger hard = {.l_onoff = 1, .l_linger = 0};
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard)) != 0)
        fail_msg("SO_LINGER: %s", strerror(errno));
    h_close(fd); /* an RST */
    expect_cli_exit(f, 1, "echod-cli: echod went away: 127.0.0.1:PORT reset the connection\n");
    char lines[4][FAKE_LINE_SIZE];
    if (fake_wait_lines(f, lines, 4, 1) != 1 || strcmp(lines[0], STAT_HEADER) != 0)
        fail_msg("expected the header alone on stdout");
}

/* What is not echod's metrics endpoint: a 404, a page without echod's metrics, an echo
 * server, nothing listening, a server that never answers (-T). Each exits 1 with a
 * message that says what was found, and prints nothing on stdout. */
static void cli_stat_bad_endpoints(void **state)
{
    (void)state;
    struct fake_metrics *f = &fake;
    const struct {
        const char *response; /* NULL: echo the request */
        const char *err;
    } bad[] = {
        {"HTTP/1.0 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n",
         "echod-cli: bad response from http://127.0.0.1:PORT/metrics: HTTP status 404 Not "
         "Found\n"},
        {"HTTP/1.0 200 OK\r\n\r\n# TYPE up gauge\nup 1\nnode_load1 0.5\n",
         "echod-cli: bad response from http://127.0.0.1:PORT/metrics: none of echod's metrics "
         "(is that echod's metrics endpoint?)\n"},
        {"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\necho_tcp_connections 1\n",
         "echod-cli: bad response from http://127.0.0.1:PORT/metrics: a body of 23 bytes where "
         "Content-Length says 100\n"},
        {NULL, NULL}, /* an echo server: the message quotes 40 bytes of the request */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fake_listen(f);
        fake_spawn_cli(f, NULL);
        int fd = fake_accept(f);
        fake_respond(f, fd, bad[i].response ? bad[i].response : f->first_request, 0);
        char echoed[256];
        snprintf(echoed, sizeof(echoed),
                 "echod-cli: bad response from http://127.0.0.1:PORT/metrics: not an HTTP "
                 "response (it begins \"GET /metrics HTTP/1.0..Host: 127.0.0.1:%c\")\n",
                 f->port[0]);
        expect_cli_exit(f, 1, bad[i].err ? bad[i].err : echoed);
        char lines[2][FAKE_LINE_SIZE];
        if (fake_wait_lines(f, lines, 2, 0) != 0)
            fail_msg("a bad endpoint, and yet stdout has \"%s\"", lines[0]);
        h_close(f->listener);
    }

    struct fake_metrics *none = &fake;
    memset(none, 0, sizeof(*none));
    snprintf(none->port, sizeof(none->port), "%u", h_unused_tcp_port());
    fake_spawn_cli(none, NULL);
    expect_cli_exit(none, 1,
                    "echod-cli: cannot connect to 127.0.0.1:PORT (is echod's metrics endpoint "
                    "there? see metrics.listen): Connection refused\n");

    fake_listen(f);
    int64_t start = h_now_ms();
    fake_spawn_cli(f, (const char *const[]){"-T", "300", NULL});
    int silent = fake_accept(f);
    expect_cli_exit(f, 1,
                    "echod-cli: no complete response from 127.0.0.1:PORT within 300 ms (-T)\n");
    int64_t took = h_now_ms() - start;
    if (took < 250 || took > 3300)
        fail_msg("-T 300 gave up after %lld ms", (long long)took);
    h_close(silent);
}

/* Not a terminal: the header again after every 20 lines. */
static void cli_stat_header_repeats(void **state)
{
    (void)state;
    struct fake_metrics *f = &fake;
    fake_listen(f);
    fake_spawn_cli(f, (const char *const[]){"-i", "0.1", NULL});
    for (size_t k = 0; k < 23; k++) {
        struct fake_figures x = steady(k);
        fake_serve(f, &x, 0);
    }
    char lines[32][FAKE_LINE_SIZE];
    size_t count = fake_wait_lines(f, lines, 32, 24);
    expect_sigint_exit_0(f);
    if (count != 24)
        fail_msg("%zu lines, expected 24: 22 lines and 2 headers", count);
    for (size_t i = 0; i < count; i++) {
        bool is_header = strcmp(lines[i], STAT_HEADER) == 0;
        if (is_header != (i == 0 || i == 21))
            fail_msg("line %zu is \"%s\": expected the header at lines 0 and 21 only", i, lines[i]);
    }
}

/* At a terminal 6 rows high: the header again after every 5 lines, so that each
 * screenful shows one. */
static void cli_stat_header_every_screenful(void **state)
{
    (void)state;
    struct fake_metrics *f = &fake;
    fake_listen(f);
    struct pty p;
    pty_open(&p);
    struct winsize ws = {.ws_row = 6, .ws_col = 200};
    if (ioctl(p.master, TIOCSWINSZ, &ws) != 0)
        fail_msg("TIOCSWINSZ: %s", strerror(errno));
    fake_spawn_cli_on(f, (const char *const[]){"-i", "0.1", NULL}, p.slave_path);
    for (size_t k = 0; k < 12; k++) {
        struct fake_figures x = steady(k);
        fake_serve(f, &x, 0);
    }
    /* 11 lines and 3 headers: read the terminal until it has shown 14 lines. */
    char screen[8192];
    size_t len = 0, newlines = 0;
    int64_t deadline = h_now_ms() + 10000;
    while (newlines < 14 && len < sizeof(screen) - 1 && h_now_ms() < deadline) {
        struct pollfd pfd = {p.master, POLLIN, 0};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        ssize_t n = read(p.master, screen + len, sizeof(screen) - 1 - len);
        if (n <= 0)
            break; /* EIO: the slave side is gone */
        for (ssize_t i = 0; i < n; i++)
            newlines += screen[len + (size_t)i] == '\n';
        len += (size_t)n;
    }
    screen[len] = '\0';
    size_t line = 0;
    for (char *save = NULL, *l = strtok_r(screen, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        bool is_header = strcmp(l, STAT_HEADER) == 0;
        if (is_header != (line % 6 == 0))
            fail_msg("terminal line %zu is \"%s\": expected the header at lines 0, 6 and 12", line,
                     l);
        line++;
    }
    if (line != 14)
        fail_msg("the terminal shows %zu lines, expected 14", line);
    expect_sigint_exit_0(f);
    h_close(p.master);
}

/* Piped into a reader that stops (`echod-cli --stat | head -2`): exit 0, and quietly, at
 * the first line it cannot write, rather than scraping on for nobody. */
static void cli_stat_reader_gone(void **state)
{
    (void)state;
    struct fake_metrics *f = &fake;
    fake_listen(f);
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        fail_msg("pipe2: %s", strerror(errno));
    h_track_fd(pipefd[0]);
    char out[64];
    snprintf(out, sizeof(out), "/proc/self/fd/%d", pipefd[1]);
    fake_spawn_cli_on(f, (const char *const[]){"-i", "0.1", NULL}, out);
    close(pipefd[1]);
    struct fake_figures x = steady(0);
    fake_serve(f, &x, 0);
    char header[256];
    struct pollfd pfd = {pipefd[0], POLLIN, 0};
    ssize_t n = poll(&pfd, 1, 5000) == 1 ? read(pipefd[0], header, sizeof(header) - 1) : -1;
    header[n > 0 ? n : 0] = '\0';
    if (strcmp(header, STAT_HEADER "\n") != 0)
        fail_msg("the pipe shows \"%s\", expected the header", header);
    h_close(pipefd[0]);
    x = steady(1);
    fake_serve(f, &x, 0); /* its line finds no reader */
    expect_cli_exit(f, 0, "");
}

/* An endpoint with fewer metrics than echod's (say, an older echod) and labels where
 * echod has none: what is missing prints "-", a labelled metric is summed over its
 * labels, no drop counter at all gives "-" for drops/s and for the reasons. SIGTERM stops
 * it like SIGINT. */
static void cli_stat_missing_metrics(void **state)
{
    (void)state;
    struct fake_metrics *f = &fake;
    fake_listen(f);
    fake_spawn_cli(f, (const char *const[]){"-i", "0.2", NULL});
    for (int k = 0; k < 2; k++) {
        char response[512];
        snprintf(response, sizeof(response),
                 "HTTP/1.0 200 OK\r\n\r\n"
                 "echod_tcp_connections{listener=\"127.0.0.1:7\"} 2\n"
                 "echod_tcp_connections{listener=\"[::1]:7\"} 1\n"
                 "echod_tcp_accepted_total %d\n",
                 k * 40);
        fake_respond(f, fake_accept(f), response, 0);
    }
    char lines[4][FAKE_LINE_SIZE];
    size_t count = fake_wait_lines(f, lines, 4, 2);
    expect_stopped_by(f, SIGTERM);
    h_note("%s", lines[1]);
    char *w[20];
    size_t n = split_words(lines[1], w, 20);
    if (count != 2 || n != 11 || strcmp(w[0], "3") != 0)
        fail_msg("expected the header and \"3 RATE - - - - - - - - -\", got %zu lines, the "
                 "second with %zu words, conns %s",
                 count, n, n > 0 ? w[0] : "none");
    expect_rate(f, 1, "accept/s", w[1], 40);
    for (size_t i = 2; i < 11; i++) {
        if (strcmp(w[i], "-") != 0)
            fail_msg("word %zu is \"%s\", expected \"-\"", i, w[i]);
    }
}

/* Column `col` (0-based, whitespace-separated) of line as a number; -1 for "-". */
static double stat_column(const char *line, int col)
{
    char copy[FAKE_LINE_SIZE];
    snprintf(copy, sizeof(copy), "%s", line);
    char *save = NULL, *tok = strtok_r(copy, " ", &save);
    for (int i = 0; tok && i < col; i++)
        tok = strtok_r(NULL, " ", &save);
    if (tok == NULL || strcmp(tok, "-") == 0)
        return -1;
    char *end;
    double v = strtod(tok, &end);
    double scale = *end == 'k' ? 1e3 : *end == 'M' ? 1e6 : *end == 'G' ? 1e9 : 1;
    return v * scale;
}

/* Against the real echod's endpoint: while clients connect and echo, a line shows them
 * (accept/s and bytes-in/s above 0, one open connection held); when echod stops,
 * echod-cli says it went away and exits 1. */
static void cli_stat_against_echod(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  "tcp = { listen = [ \"127.0.0.1:0\" ]; };\n"
                  "udp = { listen = [ \"127.0.0.1:0\" ]; };\n"
                  "metrics = { listen = [ \"127.0.0.1:0\" ]; };\n",
                  NULL);
    assert_int_equal(echod.metrics_count, 1);
    struct fake_metrics *f = &fake;
    snprintf(f->port, sizeof(f->port), "%u", h_port_of(&echod.metrics[0]));
    const char *args[] = {"-i", "0.2", NULL};
    fake_spawn_cli(f, args);
    char lines[64][FAKE_LINE_SIZE];
    fake_wait_lines(f, lines, 64, 2); /* the header and a first line */
    int held = h_tcp_connect_ok(&echod.tcp[0]);
    bool is_seen = false;
    int64_t deadline = h_now_ms() + 5000;
    for (int round = 0; !is_seen && h_now_ms() < deadline && round < 1000; round++) {
        int fd = h_tcp_connect_ok(&echod.tcp[0]);
        h_echo_roundtrip(fd, "0123456789abcdef", 16, 2000);
        h_close(fd);
        h_sleep_ms(20);
        size_t count = fake_wait_lines(f, lines, 64, 2);
        for (size_t i = 1; i < count && !is_seen; i++)
            if ((is_seen = strcmp(lines[i], STAT_HEADER) != 0 && stat_column(lines[i], 0) >= 1 &&
                           stat_column(lines[i], 1) > 0 && stat_column(lines[i], 5) > 0))
                h_note("--stat against echod: %s", lines[i]);
    }
    if (!is_seen)
        fail_msg("no --stat line showed an open connection, accepts and bytes in within 5 s");
    h_close(held);
    assert_int_equal(h_echod_stop(&echod), 0);
    int code = h_wait_exit(f->cli, 5000);
    f->cli = 0;
    char err[1024];
    fake_cli_stderr(f, err, sizeof(err));
    h_note("after echod stopped: exit %d, stderr: %s", code, err);
    assert_int_equal(code, 1);
    assert_non_null(strstr(err, "echod went away"));
}

int main(void)
{
    h_init("test_cli", 120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(cli_tcp_piped_lines, h_setup_echo, h_teardown),
        cmocka_unit_test_setup_teardown(cli_tcp_piped_binary_1mib, h_setup_echo, h_teardown),
        cmocka_unit_test_setup_teardown(cli_tcp_greet, setup_greet, h_teardown),
        cmocka_unit_test_setup_teardown(cli_udp_piped_lines, h_setup_echo, h_teardown),
        cmocka_unit_test_setup_teardown(cli_udp_greet, setup_greet, h_teardown),
        cmocka_unit_test_setup_teardown(cli_interactive, setup_greet, h_teardown),
        cmocka_unit_test_teardown(cli_refused_exits_1, h_teardown),
        cmocka_unit_test_teardown(cli_timeout_exits_1, h_teardown),
        cmocka_unit_test_setup_teardown(cli_tries_each_address, h_setup_echo, h_teardown),
        cmocka_unit_test_teardown(cli_bad_usage_exits_64, h_teardown),
        cmocka_unit_test_teardown(cli_stat_rates, stat_teardown),
        cmocka_unit_test_teardown(cli_stat_restart_then_gone, stat_teardown),
        cmocka_unit_test_teardown(cli_stat_reset, stat_teardown),
        cmocka_unit_test_teardown(cli_stat_bad_endpoints, stat_teardown),
        cmocka_unit_test_teardown(cli_stat_header_repeats, stat_teardown),
        cmocka_unit_test_teardown(cli_stat_header_every_screenful, stat_teardown),
        cmocka_unit_test_teardown(cli_stat_reader_gone, stat_teardown),
        cmocka_unit_test_teardown(cli_stat_missing_metrics, stat_teardown),
        cmocka_unit_test_teardown(cli_stat_against_echod, stat_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
