/* test_cli: echod-cli piped, against the real echod. TCP: lines and 1 MiB of binary
 * round-trip exactly, greet mode; UDP: each line is a datagram and each reply is printed
 * with "\n". A refused port and a server that never answers (-T) exit 1 with a message;
 * bad usage exits 64. stdin is a real pipe, as in `printf 'a\nb\n' | echod-cli -p PORT`.
 * At a terminal (a pty the test drives) it prompts, answers each line, and quits on
 * "exit" or ^D. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <termios.h>
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

static void expect_usage(const char *const *args, const char *what)
{
    struct h_output r = run_cli(args, "", 0, 10000);
    if (r.code != 64 || r.err[0] == '\0')
        fail_msg("%s: expected exit 64 and a message, got exit %d, stderr \"%s\"", what, r.code,
                 r.err);
    h_output_free(&r);
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
    const char *unknown[] = {"-p", port, "--bogus", NULL};
    expect_usage(unknown, "unknown option");
    const char *missing[] = {"-p", NULL};
    expect_usage(missing, "-p without its argument");
    const char *not_a_port[] = {"-p", "http", NULL};
    expect_usage(not_a_port, "-p http");
    const char *port_too_big[] = {"-p", "99999", NULL};
    expect_usage(port_too_big, "-p 99999");
    const char *bad_timeout[] = {"-p", port, "-T", "soon", NULL};
    expect_usage(bad_timeout, "-T soon");
    const char *extra[] = {"-p", port, "extra-argument", NULL};
    expect_usage(extra, "an extra argument");
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
