/* cli: echod-cli, a client for echod. At a terminal it prompts, sends each line and
 * prints the reply. Piped over TCP it streams stdin to the socket while it copies the
 * replies to stdout (one poll loop, so a large input never deadlocks), half-closes at
 * EOF and prints until the server's EOF. Piped over UDP each line is one datagram.
 * Single-threaded; it owns its one socket. Exit codes: 0 done, 1 connection or I/O
 * error or -T timeout (a message on stderr), 64 bad usage. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "clock.h"

#define CLI_NAME               "echod-cli"
#define CLI_BUF_BYTES          65536
#define CLI_MAX_DATAGRAM_BYTES 65536

struct cli_options {
    struct client_target target;
};

/* The piped TCP stream: stdin → tx → socket, socket → rx → stdout. */
struct cli_stream {
    int sock;
    char tx[CLI_BUF_BYTES];
    size_t tx_off, tx_len; /* bytes read from stdin, not yet sent */
    char rx[CLI_BUF_BYTES];
    bool is_stdin_eof;
    bool is_shut_wr;           /* our FIN is sent */
    bool is_server_eof;        /* the server's FIN arrived */
    uint64_t last_progress_ms; /* last byte moved in any direction */
};

/* Print "echod-cli: message[: reason]"; evaluates to rc (-EIO for 0), as client_report. */
#define cli_error(rc, ...) client_report(CLI_NAME, rc, __VA_ARGS__)

/* The message for a socket error, naming the server: "DOING HOST:PORT: reason". */
static int cli_socket_error(const struct cli_options *o, int rc, const char *doing)
{
    if (rc == -ECONNREFUSED)
        return cli_error(rc, "%s %s (is echod listening there?)", doing, o->target.name);
    if (rc == -EPIPE || rc == -ECONNRESET)
        return cli_error(rc, "%s %s: the server closed the connection abruptly", doing,
                         o->target.name);
    return cli_error(rc, "%s %s", doing, o->target.name);
}

static int cli_timeout_error(const struct cli_options *o)
{
    return cli_error(-ETIMEDOUT, "no reply from %s within %d ms (-T), giving up", o->target.name,
                     o->target.timeout_ms);
}

static void cli_usage(FILE *out)
{
    fprintf(out,
            "Usage: " CLI_NAME " [-u] [-H HOST] [-p PORT] [-T MS]\n"
            "Talk to echod. At a terminal: a prompt, each line sent and its reply printed;\n"
            "'exit' or EOF quits. Piped: the replies only, in order, then exit 0.\n"
            "\n"
            "  -u, --udp           UDP: each line is one datagram (default TCP)\n"
            "  -H, --host HOST     server address or name (default %s)\n"
            "  -p, --port PORT     server port, 1-65535 (default %d)\n"
            "  -T, --timeout MS    give up after MS ms without an answer (default %d)\n"
            "  -h, --help          show this help and exit\n"
            "  -V, --version       show the version and exit\n"
            "\n"
            "Exit codes: 0 ok, 1 connection error or timeout, 64 bad usage.\n",
            CLIENT_DEFAULT_HOST, CLIENT_DEFAULT_PORT, CLIENT_DEFAULT_TIMEOUT_MS);
}

/* Parse argv into o; exits 0 for --help/--version and 64 on bad usage. */
static void cli_parse_args(int argc, char **argv, struct cli_options *o)
{
    static const struct client_tool tool = {CLI_NAME, cli_usage};
    static const struct option longopts[] = {CLIENT_LONG_OPTS, {NULL, 0, NULL, 0}};
    client_target_init(&o->target);
    client_begin_options(&tool, argv);
    int ch;
    while ((ch = getopt_long(argc, argv, CLIENT_SHORT_OPTS, longopts, NULL)) != -1) {
        if (!client_take_option(&tool, ch, &o->target))
            client_usage_error(CLI_NAME, "unexpected option '%s'", argv[optind - 1]);
    }
    client_end_options(&tool, argc, argv);
}

/* ---------------------------------------------------------------- piped TCP */

/* Read what the server sent and copy it to stdout; 0 or -errno. */
static int cli_stream_receive(const struct cli_options *o, struct cli_stream *s)
{
    ssize_t n = recv(s->sock, s->rx, sizeof(s->rx), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n < 0)
        return cli_socket_error(o, -errno, "receiving from");
    s->last_progress_ms = clock_now_ms();
    if (n == 0) {
        s->is_server_eof = true;
        if (!s->is_shut_wr)
            return cli_error(0, "%s closed the connection before the end of the input",
                             o->target.name);
        return 0;
    }
    int rc = client_write_all(STDOUT_FILENO, s->rx, (size_t)n);
    return rc < 0 ? cli_error(rc, "writing to stdout") : 0;
}

/* Take the next chunk of stdin into tx (tx is empty); 0 or -errno. */
static int cli_stream_read_stdin(struct cli_stream *s)
{
    ssize_t n = read(STDIN_FILENO, s->tx, sizeof(s->tx));
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n < 0)
        return cli_error(-errno, "reading stdin");
    s->last_progress_ms = clock_now_ms();
    s->is_stdin_eof = n == 0;
    s->tx_off = 0;
    s->tx_len = (size_t)n;
    return 0;
}

/* Send as much of tx as the socket takes, then FIN once stdin is done; 0 or -errno. */
static int cli_stream_send(const struct cli_options *o, struct cli_stream *s)
{
    if (s->tx_len > 0) {
        ssize_t n = send(s->sock, s->tx + s->tx_off, s->tx_len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return cli_socket_error(o, -errno, "sending to");
        if (n > 0) {
            s->tx_off += (size_t)n;
            s->tx_len -= (size_t)n;
            s->last_progress_ms = clock_now_ms();
        }
    }
    if (s->is_stdin_eof && s->tx_len == 0 && !s->is_shut_wr) {
        if (shutdown(s->sock, SHUT_WR) != 0)
            return cli_socket_error(o, -errno, "half-closing the connection to");
        s->is_shut_wr = true;
    }
    return 0;
}

/* One poll over stdin (while tx is empty) and the socket. The -T clock runs only while
 * we wait on the server: for its EOF, or for room to send. 0 or -errno. */
static int cli_stream_step(const struct cli_options *o, struct cli_stream *s)
{
    struct pollfd fds[2] = {
        {.fd = STDIN_FILENO, .events = POLLIN},
        {.fd = s->sock, .events = POLLIN},
    };
    if (s->is_stdin_eof || s->tx_len > 0)
        fds[0].fd = -1;
    if (s->tx_len > 0)
        fds[1].events |= POLLOUT;
    bool is_waiting_on_server = s->is_stdin_eof || s->tx_len > 0;
    int wait_ms = -1;
    if (is_waiting_on_server) {
        wait_ms = client_ms_left(s->last_progress_ms + (uint64_t)o->target.timeout_ms);
        if (wait_ms == 0)
            return cli_timeout_error(o);
    }
    int n = poll(fds, 2, wait_ms);
    if (n < 0)
        return errno == EINTR ? 0 : cli_error(-errno, "poll");
    int rc = 0;
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR))
        rc = cli_stream_receive(o, s);
    if (rc == 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)))
        rc = cli_stream_read_stdin(s);
    if (rc == 0 && !s->is_server_eof)
        rc = cli_stream_send(o, s);
    return rc;
}

/* Stream stdin through the connection to stdout until the server's EOF; 0 or -errno. */
static int cli_run_tcp_piped(const struct cli_options *o, int sock)
{
    static struct cli_stream s; /* 128 KiB of buffers: not on the stack */
    s.sock = sock;
    s.last_progress_ms = clock_now_ms();
    int rc = 0;
    while (rc == 0 && !s.is_server_eof)
        rc = cli_stream_step(o, &s);
    return rc;
}

/* ---------------------------------------------------------------- request/reply */

/* Wait up to -T for sock to become readable; 0 or -errno (-ETIMEDOUT, with a message). */
static int cli_wait_reply(const struct cli_options *o, int sock)
{
    int rc = client_wait(sock, POLLIN, o->target.timeout_ms);
    if (rc == 0)
        return cli_timeout_error(o);
    return rc < 0 ? cli_error(rc, "poll") : 0;
}

/* Send one datagram and print its reply followed by "\n"; 0 or -errno. */
static int cli_udp_exchange(const struct cli_options *o, int sock, const char *data, size_t len)
{
    static char reply[CLI_MAX_DATAGRAM_BYTES];
    if (send(sock, data, len, 0) < 0) {
        if (errno == EMSGSIZE)
            return cli_error(-errno, "a line of %zu bytes does not fit in one datagram", len);
        return cli_socket_error(o, -errno, "sending to");
    }
    for (;;) {
        int rc = cli_wait_reply(o, sock);
        if (rc < 0)
            return rc;
        ssize_t n = recv(sock, reply, sizeof(reply) - 1, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            continue;
        if (n < 0)
            return cli_socket_error(o, -errno, "receiving from");
        reply[n] = '\n';
        rc = client_write_all(STDOUT_FILENO, reply, (size_t)n + 1);
        return rc < 0 ? cli_error(rc, "writing to stdout") : 0;
    }
}

/* Send one line (line[len] must be writable) and print the reply up to its '\n'. */
static int cli_tcp_exchange(const struct cli_options *o, int sock, char *line, size_t len)
{
    char reply[CLI_BUF_BYTES];
    line[len] = '\n';
    int rc = client_write_all(sock, line, len + 1);
    if (rc < 0)
        return cli_socket_error(o, rc, "sending to");
    for (;;) {
        rc = cli_wait_reply(o, sock);
        if (rc < 0)
            return rc;
        ssize_t n = recv(sock, reply, sizeof(reply), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            continue;
        if (n < 0)
            return cli_socket_error(o, -errno, "receiving from");
        if (n == 0)
            return cli_error(0, "%s closed the connection", o->target.name);
        rc = client_write_all(STDOUT_FILENO, reply, (size_t)n);
        if (rc < 0)
            return cli_error(rc, "writing to stdout");
        if (reply[n - 1] == '\n')
            return 0;
    }
}

/* The line's request and reply: one datagram (UDP) or one line (TCP). */
static int cli_exchange(const struct cli_options *o, int sock, char *line, size_t len)
{
    if (o->target.is_udp)
        return cli_udp_exchange(o, sock, line, len);
    return cli_tcp_exchange(o, sock, line, len);
}

/* Each line of stdin through cli_exchange; at a terminal with a prompt, and "exit"
 * quits. 0 at EOF or exit, or -errno. */
static int cli_run_lines(const struct cli_options *o, int sock, bool is_interactive)
{
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        if (is_interactive) {
            printf("%s> ", o->target.name);
            fflush(stdout);
        }
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0)
            break;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        if (is_interactive && strcmp(line, "exit") == 0)
            break;
        rc = cli_exchange(o, sock, line, (size_t)len);
        if (rc < 0)
            goto out;
    }
    if (ferror(stdin))
        rc = cli_error(-EIO, "reading stdin");
    else if (is_interactive)
        putchar('\n');
out:
    free(line);
    return rc;
}

int main(int argc, char **argv)
{
    struct cli_options o;
    cli_parse_args(argc, argv, &o);
    signal(SIGPIPE, SIG_IGN);

    int rc = client_target_resolve(&o.target, CLI_NAME);
    if (rc < 0)
        return 1;
    int sock = client_connect(&o.target, o.target.timeout_ms);
    if (sock == -ETIMEDOUT) {
        cli_error(0, "cannot connect to %s within %d ms (-T)", o.target.name, o.target.timeout_ms);
        return 1;
    }
    if (sock < 0) {
        cli_socket_error(&o, sock, "cannot connect to");
        return 1;
    }
    bool is_interactive = isatty(STDIN_FILENO);
    if (!is_interactive && !o.target.is_udp)
        rc = cli_run_tcp_piped(&o, sock);
    else
        rc = cli_run_lines(&o, sock, is_interactive);
    close(sock);
    return rc < 0 ? 1 : 0;
}
