/* cli: echod-cli, a client for echod. At a terminal it prompts, sends each line and
 * prints the reply. Piped over TCP it streams stdin to the socket while it copies the
 * replies to stdout (one poll loop, so a large input never deadlocks), half-closes at
 * EOF and prints until the server's EOF. Piped over UDP each line is one datagram.
 * With --stat it reads echod's metrics endpoint every -i seconds and prints one line of
 * rates per interval, as redis-cli --stat does.
 * Single-threaded; it owns its one socket (--stat: one per scrape, and a signalfd).
 * Exit codes: 0 done (--stat: stopped by SIGINT or SIGTERM), 1 connection or I/O error,
 * -T timeout, or (--stat) echod gone or a bad response (a message on stderr), 64 bad
 * usage. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "clock.h"
#include "promparse.h"
#include "scrape.h"

#define CLI_NAME               "echod-cli"
#define CLI_BUF_BYTES          65536
#define CLI_MAX_DATAGRAM_BYTES 65536

/* --stat: where echod's metrics endpoint listens by default, and the -i range. */
#define CLI_STAT_DEFAULT_PORT        9107
#define CLI_STAT_DEFAULT_INTERVAL_MS 1000
#define CLI_STAT_MIN_INTERVAL_MS     100
#define CLI_STAT_MAX_INTERVAL_MS     3600000
/* getopt's code for --stat, which has no short form. */
#define CLI_OPT_STAT 256

struct cli_options {
    struct client_target target;
    bool is_stat;    /* --stat */
    int interval_ms; /* -i, in --stat mode */
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
            "       " CLI_NAME " --stat [-H HOST] [-p PORT] [-i SECONDS] [-T MS]\n"
            "Talk to echod. At a terminal: a prompt, each line sent and its reply printed;\n"
            "'exit' or EOF quits. Piped: the replies only, in order, then exit 0.\n"
            "--stat: read echod's metrics endpoint (GET /metrics) every -i seconds and\n"
            "print one line of rates per interval; Ctrl-C stops it.\n"
            "\n"
            "  -u, --udp           UDP: each line is one datagram (default TCP)\n"
            "  -H, --host HOST     server address or name (default %s)\n"
            "  -p, --port PORT     server port, 1-65535 (default %d; --stat: %d)\n"
            "  -T, --timeout MS    give up after MS ms without an answer (default %d;\n"
            "                      --stat: the longest one scrape may take)\n"
            "      --stat          live statistics from echod's metrics endpoint\n"
            "  -i, --interval SECONDS\n"
            "                      --stat: seconds between lines, 0.1-3600 (default 1)\n"
            "  -h, --help          show this help and exit\n"
            "  -V, --version       show the version and exit\n"
            "\n"
            "Exit codes: 0 ok (--stat: stopped by Ctrl-C), 1 connection error or timeout\n"
            "(--stat: echod went away or answered badly), 64 bad usage.\n",
            CLIENT_DEFAULT_HOST, CLIENT_DEFAULT_PORT, CLI_STAT_DEFAULT_PORT,
            CLIENT_DEFAULT_TIMEOUT_MS);
}

/* Parse -i's SECONDS: digits, then optionally '.' and 1 to 3 more, within the range;
 * 0 and *interval_ms, or -EINVAL. */
static int cli_parse_interval(const char *text, int *interval_ms)
{
    const char *dot = strchr(text, '.');
    unsigned long whole = 0, fraction_ms = 0;
    size_t whole_len = dot ? (size_t)(dot - text) : strlen(text);
    char whole_text[16];
    if (whole_len == 0 || whole_len >= sizeof(whole_text))
        return -EINVAL;
    memcpy(whole_text, text, whole_len);
    whole_text[whole_len] = '\0';
    if (strcmp(whole_text, "0") != 0 &&
        client_parse_count(whole_text, CLI_STAT_MAX_INTERVAL_MS / 1000, &whole) < 0)
        return -EINVAL;
    if (dot) {
        size_t digits = strlen(dot + 1);
        if (digits == 0 || digits > 3 || strspn(dot + 1, "0123456789") != digits)
            return -EINVAL;
        for (size_t i = 0; i < 3; i++)
            fraction_ms = fraction_ms * 10 + (i < digits ? (unsigned long)(dot[1 + i] - '0') : 0);
    }
    unsigned long ms = whole * 1000 + fraction_ms;
    if (ms < CLI_STAT_MIN_INTERVAL_MS || ms > CLI_STAT_MAX_INTERVAL_MS)
        return -EINVAL;
    *interval_ms = (int)ms;
    return 0;
}

/* Parse argv into o; exits 0 for --help/--version and 64 on bad usage. */
static void cli_parse_args(int argc, char **argv, struct cli_options *o)
{
    static const struct client_tool tool = {CLI_NAME, cli_usage};
    static const struct option longopts[] = {
        CLIENT_LONG_OPTS,
        {"stat", no_argument, NULL, CLI_OPT_STAT},
        {"interval", required_argument, NULL, 'i'},
        {NULL, 0, NULL, 0},
    };
    client_target_init(&o->target);
    o->is_stat = false;
    o->interval_ms = 0;
    bool has_port = false;
    client_begin_options(&tool, argv);
    int ch;
    while ((ch = getopt_long(argc, argv, CLIENT_SHORT_OPTS "i:", longopts, NULL)) != -1) {
        if (ch == CLI_OPT_STAT) {
            o->is_stat = true;
        } else if (ch == 'i') {
            if (cli_parse_interval(optarg, &o->interval_ms) < 0)
                client_usage_error(CLI_NAME, "invalid interval '%s' (0.1-3600 seconds)", optarg);
        } else if (!client_take_option(&tool, ch, &o->target)) {
            client_usage_error(CLI_NAME, "unexpected option '%s'", argv[optind - 1]);
        }
        has_port = has_port || ch == 'p';
    }
    client_end_options(&tool, argc, argv);
    if (o->interval_ms != 0 && !o->is_stat)
        client_usage_error(CLI_NAME, "-i is for --stat only");
    if (o->is_stat && o->target.is_udp)
        client_usage_error(CLI_NAME, "--stat reads the metrics endpoint over TCP: no -u");
    if (o->is_stat && !has_port)
        o->target.port = CLI_STAT_DEFAULT_PORT;
    if (o->is_stat && o->interval_ms == 0)
        o->interval_ms = CLI_STAT_DEFAULT_INTERVAL_MS;
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

/* ---------------------------------------------------------------- --stat */

/* The columns of a --stat line, in order: the open connections (a gauge), then the rate
 * of each counter. */
enum cli_column {
    CLI_COL_CONNS,
    CLI_COL_ACCEPTED,
    CLI_COL_CLOSED,
    CLI_COL_MSGS_IN,
    CLI_COL_MSGS_OUT,
    CLI_COL_BYTES_IN,
    CLI_COL_BYTES_OUT,
    CLI_COL_DGRAMS_IN,
    CLI_COL_DGRAMS_OUT,
    CLI_COL_COUNT
};

static const struct cli_column_def {
    const char *metric; /* summed over its label sets */
    const char *title;  /* also the column's width */
} cli_columns[CLI_COL_COUNT] = {
    [CLI_COL_CONNS] = {"echod_tcp_connections", "conns"},
    [CLI_COL_ACCEPTED] = {"echod_tcp_accepted_total", "accept/s"},
    [CLI_COL_CLOSED] = {"echod_tcp_closed_total", "closed/s"},
    [CLI_COL_MSGS_IN] = {"echod_tcp_reads_total", "msg-in/s"},
    [CLI_COL_MSGS_OUT] = {"echod_tcp_writes_total", "msg-out/s"},
    [CLI_COL_BYTES_IN] = {"echod_tcp_bytes_in_total", "bytes-in/s"},
    [CLI_COL_BYTES_OUT] = {"echod_tcp_bytes_out_total", "bytes-out/s"},
    [CLI_COL_DGRAMS_IN] = {"echod_udp_datagrams_in_total", "dgram-in/s"},
    [CLI_COL_DGRAMS_OUT] = {"echod_udp_datagrams_out_total", "dgram-out/s"},
};

/* The counters that are drops, besides every echod_udp_drop_*_total: a connection or a
 * datagram echod refused, cut or could not answer (not idle timeouts nor client resets). */
static const char *const cli_drop_counters[] = {
    "tcp_per_ip_refused",  "tcp_accept_emfile", "tcp_handoff_refused", "tcp_shutdown_refused",
    "tcp_shutdown_forced", "tcp_out_of_memory", "tcp_lines_too_long",  "tcp_send_timeouts",
    "udp_reply_too_large", "udp_send_errors",
};

#define CLI_STAT_PATH          "/metrics"
#define CLI_STAT_HEADER_EVERY  20 /* lines per header when stdout is not a terminal */
#define CLI_STAT_MAX_REASONS   32 /* drop counters kept per scrape; more are not shown */
#define CLI_STAT_SHOWN_REASONS 3  /* the largest drop rates named on a line */
#define CLI_STAT_REASON_SIZE   64
#define CLI_STAT_FIGURE_SIZE   16

/* One drop counter of a scrape: "udp_drop_rate" for echod_udp_drop_rate_total. */
struct cli_reason {
    char name[CLI_STAT_REASON_SIZE];
    double value;
};

/* What one scrape read. */
struct cli_sample {
    double value[CLI_COL_COUNT];
    bool has[CLI_COL_COUNT];
    struct cli_reason reasons[CLI_STAT_MAX_REASONS];
    size_t reason_count;
    double start_time_s; /* process_start_time_seconds: it changes when echod restarts */
    bool has_start_time;
    uint64_t at_us; /* when the response began to arrive */
};

/* The drop reason the sample counts ("udp_drop_rate"), into reason; false if none. */
static bool cli_drop_reason(const struct promparse_sample *s, char *reason, size_t size)
{
    static const char prefix[] = "echod_", suffix[] = "_total";
    size_t fixed = sizeof(prefix) - 1 + sizeof(suffix) - 1;
    if (s->name_len <= fixed || s->name_len - fixed >= size ||
        memcmp(s->name, prefix, sizeof(prefix) - 1) != 0 ||
        memcmp(s->name + s->name_len - (sizeof(suffix) - 1), suffix, sizeof(suffix) - 1) != 0)
        return false;
    size_t len = s->name_len - fixed;
    memcpy(reason, s->name + sizeof(prefix) - 1, len);
    reason[len] = '\0';
    if (strncmp(reason, "udp_drop_", 9) == 0)
        return true;
    for (size_t i = 0; i < sizeof(cli_drop_counters) / sizeof(cli_drop_counters[0]); i++) {
        if (strcmp(reason, cli_drop_counters[i]) == 0)
            return true;
    }
    return false;
}

/* promparse_each's callback: add one sample line to the struct cli_sample at arg. */
static void cli_sample_take(const struct promparse_sample *s, void *arg)
{
    struct cli_sample *x = arg;
    for (int c = 0; c < CLI_COL_COUNT; c++) {
        if (promparse_is_named(s, cli_columns[c].metric)) {
            x->value[c] += s->value;
            x->has[c] = true;
            return;
        }
    }
    if (promparse_is_named(s, "process_start_time_seconds")) {
        x->start_time_s = s->value;
        x->has_start_time = true;
        return;
    }
    char reason[CLI_STAT_REASON_SIZE];
    if (!cli_drop_reason(s, reason, sizeof(reason)))
        return;
    size_t i = 0;
    while (i < x->reason_count && strcmp(x->reasons[i].name, reason) != 0)
        i++;
    if (i == x->reason_count) {
        if (i == CLI_STAT_MAX_REASONS)
            return;
        snprintf(x->reasons[i].name, sizeof(x->reasons[i].name), "%s", reason);
        x->reasons[i].value = 0;
        x->reason_count++;
    }
    x->reasons[i].value += s->value;
}

/* Read a scrape's body into x; 0, or -EIO (said) when it holds none of echod's metrics. */
static int cli_sample_read(const struct cli_options *o, const struct scrape_response *r,
                           struct cli_sample *x)
{
    memset(x, 0, sizeof(*x));
    x->at_us = r->first_byte_us;
    promparse_each(r->body, r->body_len, cli_sample_take, x);
    for (int c = 0; c < CLI_COL_COUNT; c++) {
        if (x->has[c])
            return 0;
    }
    return cli_error(0,
                     "bad response from http://%s" CLI_STAT_PATH
                     ": none of echod's metrics (is that echod's metrics endpoint?)",
                     o->target.name);
}

/* The same drop reason in another sample, or NULL. */
static const struct cli_reason *cli_sample_reason(const struct cli_sample *x, const char *name)
{
    for (size_t i = 0; i < x->reason_count; i++) {
        if (strcmp(x->reasons[i].name, name) == 0)
            return &x->reasons[i];
    }
    return NULL;
}

/* Whether echod restarted between prev and cur: a counter went down, or its start time
 * changed. If so, what showed it, into why. */
static bool cli_sample_restarted(const struct cli_sample *prev, const struct cli_sample *cur,
                                 char *why, size_t size)
{
    for (int c = CLI_COL_CONNS + 1; c < CLI_COL_COUNT; c++) {
        if (prev->has[c] && cur->has[c] && cur->value[c] < prev->value[c]) {
            snprintf(why, size, "%s went from %.15g to %.15g", cli_columns[c].metric,
                     prev->value[c], cur->value[c]);
            return true;
        }
    }
    for (size_t i = 0; i < cur->reason_count; i++) {
        const struct cli_reason *was = cli_sample_reason(prev, cur->reasons[i].name);
        if (was && cur->reasons[i].value < was->value) {
            snprintf(why, size, "echod_%s_total went from %.15g to %.15g", was->name, was->value,
                     cur->reasons[i].value);
            return true;
        }
    }
    if (prev->has_start_time && cur->has_start_time && prev->start_time_s != cur->start_time_s) {
        snprintf(why, size, "process_start_time_seconds went from %.15g to %.15g",
                 prev->start_time_s, cur->start_time_s);
        return true;
    }
    return false;
}

/* A figure in at most 5 characters: whole numbers up to 99999 as they are ("0", "3",
 * "64021"), others below 10 with one decimal ("0.5", "9.9"), then 3 significant digits
 * with a decimal suffix: "100k", "1.23M", "45.6G"; "-" for NaN, Inf or negative. */
static void cli_format_figure(double v, char *buf, size_t size)
{
    static const char suffixes[] = "kMGTPE";
    if (!isfinite(v) || v < 0) {
        snprintf(buf, size, "-");
    } else if (v == 0) {
        snprintf(buf, size, "0");
    } else if (v < 9.95 && v != floor(v)) {
        snprintf(buf, size, "%.1f", v);
    } else if (v < 99999.5) {
        snprintf(buf, size, "%.0f", v);
    } else {
        size_t unit = 0;
        v /= 1000;
        while (v >= 999.5 && unit + 1 < sizeof(suffixes) - 1) {
            v /= 1000;
            unit++;
        }
        int decimals = v < 9.995 ? 2 : v < 99.95 ? 1 : 0;
        snprintf(buf, size, "%.*f%c", decimals, v, suffixes[unit]);
    }
}

/* The header line: every column's title, then the drop columns. */
static void cli_stat_print_header(void)
{
    for (int c = 0; c < CLI_COL_COUNT; c++)
        printf("%s ", cli_columns[c].title);
    printf("drops/s reasons\n");
}

/* Print one figure right-aligned in the width of title, and a space. */
static void cli_stat_print_figure(double v, bool has, const char *title)
{
    char figure[CLI_STAT_FIGURE_SIZE];
    if (has)
        cli_format_figure(v, figure, sizeof(figure));
    else
        snprintf(figure, sizeof(figure), "-");
    printf("%*s ", (int)strlen(title), figure);
}

/* The line for the interval from prev to cur: the gauge, the rates, the drops' total and
 * the largest of them by name. */
static void cli_stat_print_line(const struct cli_sample *prev, const struct cli_sample *cur)
{
    double seconds = (double)(cur->at_us - prev->at_us) / 1e6;
    cli_stat_print_figure(cur->value[CLI_COL_CONNS], cur->has[CLI_COL_CONNS],
                          cli_columns[CLI_COL_CONNS].title);
    for (int c = CLI_COL_CONNS + 1; c < CLI_COL_COUNT; c++)
        cli_stat_print_figure((cur->value[c] - prev->value[c]) / seconds,
                              cur->has[c] && prev->has[c], cli_columns[c].title);
    struct cli_reason rates[CLI_STAT_MAX_REASONS];
    size_t count = 0;
    double total = 0;
    for (size_t i = 0; i < cur->reason_count; i++) {
        const struct cli_reason *was = cli_sample_reason(prev, cur->reasons[i].name);
        if (!was)
            continue; /* new since the last scrape: no rate yet */
        double rate = (cur->reasons[i].value - was->value) / seconds;
        if (!(rate > 0))
            continue;
        total += rate;
        /* Insert by rate, largest first; equal rates in the order echod lists them. */
        size_t at = count++;
        while (at > 0 && rates[at - 1].value < rate) {
            rates[at] = rates[at - 1];
            at--;
        }
        rates[at] = cur->reasons[i];
        rates[at].value = rate;
    }
    cli_stat_print_figure(total, cur->reason_count > 0, "drops/s");
    for (size_t i = 0; i < count && i < CLI_STAT_SHOWN_REASONS; i++) {
        char figure[CLI_STAT_FIGURE_SIZE];
        cli_format_figure(rates[i].value, figure, sizeof(figure));
        printf("%s%s=%s", i ? " " : "", rates[i].name, figure);
    }
    if (count == 0)
        printf("-");
    printf("\n");
}

/* Lines per header: the terminal's height less the header's line, or a fixed count when
 * stdout is not a terminal. */
static int cli_stat_lines_per_header(void)
{
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row >= 2)
        return ws.ws_row - 1;
    return CLI_STAT_HEADER_EVERY;
}

/* The message for a failed scrape; ever_scraped says echod answered before. -errno. */
static int cli_stat_error(int rc, const struct scrape_response *r, bool ever_scraped)
{
    if (rc == -EPROTO || rc == -EMSGSIZE)
        return cli_error(0, "%s", r->error);
    bool is_errno_said = rc == -ETIMEDOUT || rc == -ECONNRESET || rc == -ECONNABORTED;
    if (ever_scraped)
        return cli_error(is_errno_said ? 0 : rc, "echod went away: %s", r->error);
    if (rc == -ECONNREFUSED)
        return cli_error(rc, "%s (is echod's metrics endpoint there? see metrics.listen)",
                         r->error);
    return cli_error(is_errno_said ? 0 : rc, "%s", r->error);
}

/* Scrape every interval until SIGINT or SIGTERM, or stdout's reader is gone (0), or a
 * failed scrape (-errno, said): a header after the first scrape, then a line per
 * interval, the header again every screenful, and a note instead of a line where echod
 * restarted. */
static int cli_run_stat(struct cli_options *o)
{
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    int sigfd = -1;
    if (sigprocmask(SIG_BLOCK, &stop, NULL) != 0 ||
        (sigfd = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
        return cli_error(-errno, "signalfd");
    struct scrape_response r = {0};
    static struct cli_sample samples[2]; /* the last scrape and this one, in turn */
    struct cli_sample *prev = NULL, *cur = &samples[0];
    int lines_left = 0, rc;
    uint64_t next_ms = clock_now_ms();
    for (;;) {
        rc = scrape_fetch(&o->target, CLI_STAT_PATH, sigfd, &r);
        if (rc == -ECANCELED) {
            rc = 0;
            break;
        }
        if (rc < 0) {
            rc = cli_stat_error(rc, &r, prev != NULL);
            break;
        }
        if ((rc = cli_sample_read(o, &r, cur)) < 0)
            break;
        char why[160];
        if (lines_left == 0 || !prev) {
            cli_stat_print_header();
            lines_left = cli_stat_lines_per_header();
        }
        if (prev && cli_sample_restarted(prev, cur, why, sizeof(why))) {
            printf("-- echod restarted (%s): rates start again from here --\n", why);
            lines_left--;
        } else if (prev) {
            cli_stat_print_line(prev, cur);
            lines_left--;
        }
        if (fflush(stdout) != 0) { /* EPIPE: the reader is gone, as `| head` does */
            rc = errno == EPIPE ? 0 : cli_error(-errno, "writing to stdout");
            break;
        }
        prev = cur;
        cur = cur == &samples[0] ? &samples[1] : &samples[0];
        uint64_t now_ms = clock_now_ms();
        while (next_ms <= now_ms) /* a slow scrape skips the ticks it missed */
            next_ms += (uint64_t)o->interval_ms;
        rc = client_wait(sigfd, POLLIN, client_ms_left(next_ms));
        if (rc != 0) {
            rc = rc < 0 ? cli_error(rc, "poll") : 0;
            break;
        }
    }
    scrape_response_free(&r);
    close(sigfd);
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
    if (o.is_stat)
        return cli_run_stat(&o) < 0 ? 1 : 0;
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
