/* main: echod's entry point. The main thread parses the command line and the
 * configuration, binds every listener (or adopts the sockets systemd passed), blocks
 * all signals, starts the threads, tells systemd it is ready, and then only reads
 * signals from a signalfd (and, under systemd, sends STATUS= once a second) until the
 * workers have drained. Start-up is the only place the process exits on an error, with
 * a sysexits(3) code:
 *   64 EX_USAGE     bad command line
 *   69 EX_UNAVAILABLE a listener cannot be bound
 *   71 EX_OSERR     threads or fds cannot be had at start-up
 *   73 EX_CANTCREAT the --port-file cannot be written
 *   76 EX_PROTOCOL  the sockets systemd passed (LISTEN_FDS) are malformed or unusable:
 *                   a connected socket (Accept=yes), not a socket, a name that does
 *                   not fit, or LISTEN_* variables that are wrong
 *   78 EX_CONFIG    the configuration is invalid or unreadable, or max_connections
 *                   does not fit the open file limit */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "clock.h"
#include "conf.h"
#include "fdlimit.h"
#include "listener.h"
#include "log.h"
#include "sd.h"
#include "server.h"
#include "signals.h"

struct options {
    const char *config_path; /* NULL: built-in defaults */
    const char *port_file;
    bool is_check_only;
    bool has_log_level;
    enum log_level log_level;
};

static void main_usage(FILE *out)
{
    fprintf(out,
            "Usage: echod [OPTION]...\n"
            "TCP and UDP echo daemon (RFC 862), with an optional greeting mode.\n"
            "\n"
            "  -c, --config FILE       read the configuration from FILE (libconfig syntax);\n"
            "                          without it, echo on tcp and udp 127.0.0.1:%d\n"
            "  -t, --check-config      check the configuration, print \"configuration OK\"\n"
            "                          and exit\n"
            "  -l, --log-level LEVEL   error, warn, info or debug (overrides the file)\n"
            "      --port-file FILE    once bound, write \"tcp ADDR:PORT\" / \"udp ADDR:PORT\"\n"
            "                          lines, one per listener, to FILE (atomically)\n"
            "  -h, --help              show this help and exit\n"
            "  -V, --version           show the version and exit\n"
            "\n"
            "Signals: TERM or INT stop gracefully (a second one stops at once); USR1 logs\n"
            "the counters. Under systemd, echod sends READY=1, STATUS= and STOPPING=1 to\n"
            "NOTIFY_SOCKET and serves the sockets passed in LISTEN_FDS (named tcp or udp)\n"
            "instead of its listen lists.\n"
            "Exit codes: 0 ok, 64 usage, 69 cannot listen, 71 system error, 73 cannot\n"
            "write the port file, 76 unusable sockets from systemd, 78 configuration error.\n",
            CONF_DEFAULT_PORT);
}

/* Parse argv into o; exits with 0 for --help/--version and 64 on bad usage. */
static void main_parse_args(int argc, char **argv, struct options *o)
{
    enum { OPT_PORT_FILE = 256 };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 't'},
        {"log-level", required_argument, NULL, 'l'},
        {"port-file", required_argument, NULL, OPT_PORT_FILE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":c:tl:hV", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o->config_path = optarg;
            break;
        case 't':
            o->is_check_only = true;
            break;
        case 'l':
            if (log_level_parse(optarg, &o->log_level) < 0) {
                fprintf(stderr, "echod: invalid log level '%s' (error, warn, info, debug)\n",
                        optarg);
                exit(EX_USAGE);
            }
            o->has_log_level = true;
            break;
        case OPT_PORT_FILE:
            o->port_file = optarg;
            break;
        case 'h':
            main_usage(stdout);
            exit(0);
        case 'V':
            printf("echod %s\n", PACKAGE_VERSION);
            exit(0);
        case ':':
            fprintf(stderr, "echod: option '%s' needs an argument\n", argv[optind - 1]);
            fprintf(stderr, "Try 'echod --help'.\n");
            exit(EX_USAGE);
        default:
            fprintf(stderr, "echod: unknown option '%s'\n", argv[optind - 1]);
            fprintf(stderr, "Try 'echod --help'.\n");
            exit(EX_USAGE);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "echod: unexpected argument '%s'\nTry 'echod --help'.\n", argv[optind]);
        exit(EX_USAGE);
    }
}

/* Raise the soft fd limit to the hard one: each connection is an fd. False, having said
 * what to change, when max_connections and echod's own fds with these listeners do not
 * fit. */
static bool main_fd_limit_fits(const struct conf *c, size_t tcp_listeners, size_t udp_listeners)
{
    uint64_t limit = 0;
    int rc = fdlimit_raise(&limit);
    if (rc < 0)
        log_warn("cannot raise the open file limit: %s", strerror(-rc));
    bool is_tcp = tcp_listeners > 0;
    uint64_t own = fdlimit_own_fds(tcp_listeners + udp_listeners, conf_worker_count(c), is_tcp,
                                   udp_listeners > 0);
    uint64_t conns = is_tcp ? c->max_connections : 0;
    if (limit == 0 || limit >= conns + own)
        return true; /* it fits, or the limit is unknown */
    unsigned long long need = conns + own, fit = limit > own ? limit - own : 0;
    log_bare(LOG_LEVEL_ERROR,
             "echod: max_connections = %u needs %llu open files (%llu connections + %llu that "
             "echod itself uses), but the open file limit is %llu.",
             c->max_connections, need, (unsigned long long)conns, (unsigned long long)own,
             (unsigned long long)limit);
    log_bare(LOG_LEVEL_ERROR,
             "echod: lower max_connections to %llu or less, or raise the limit to at least %llu "
             "(ulimit -n %llu in the shell, or LimitNOFILE=%llu in the systemd unit).",
             fit, need, need, need);
    return false;
}

/* Load the configuration (defaults without -c); exits 78 when it is invalid. */
static void main_load_conf(const struct options *o, struct conf *c)
{
    char err[CONF_ERR_SIZE];
    if (conf_init_defaults(c) < 0) {
        fprintf(stderr, "echod: out of memory\n");
        exit(EX_OSERR);
    }
    if (o->config_path && conf_load_file(c, o->config_path, err, sizeof(err)) < 0) {
        log_bare(LOG_LEVEL_ERROR, "%s", err);
        exit(EX_CONFIG);
    }
    if (o->has_log_level)
        c->log_level = o->log_level;
}

/* Send text to systemd, when it listens; say so once when it stops taking them. */
static void main_notify(const struct sd_notify *n, const char *text)
{
    static bool has_warned; /* main thread only */
    int rc = sd_notify_send(n, "%s", text);
    if (rc < 0 && !has_warned)
        log_warn("cannot notify systemd: %s (further failures are not logged)", strerror(-rc));
    has_warned |= rc < 0;
}

/* Send "STATUS=..." (after the lines in head, if any), unless it says what the last one
 * said; last holds STATUS_MAX bytes. */
#define STATUS_MAX 256
static void main_notify_status(struct server *s, const struct sd_notify *n, const char *head,
                               char *last)
{
    char status[STATUS_MAX], text[STATUS_MAX + 64];
    server_status(s, status, sizeof(status));
    if (head == NULL && strcmp(status, last) == 0)
        return;
    snprintf(text, sizeof(text), "%s%sSTATUS=%s", head ? head : "", head ? "\n" : "", status);
    main_notify(n, text);
    memcpy(last, status, STATUS_MAX);
}

/* Read signals until the workers are done; 0 once they are. Under systemd, wake once a
 * second to update STATUS=; otherwise never wake without a reason. */
static int main_serve(struct server *s, int sigfd, const struct sd_notify *n, char *last_status)
{
    enum { STATUS_INTERVAL_MS = 1000 };
    struct pollfd fds[2] = {{sigfd, POLLIN, 0}, {server_done_fd(s), POLLIN, 0}};
    uint64_t next_status_ms = clock_now_ms() + STATUS_INTERVAL_MS;
    bool is_stopping = false;
    for (;;) {
        int timeout_ms = -1;
        if (sd_notify_is_on(n)) {
            uint64_t now = clock_now_ms();
            timeout_ms = next_status_ms > now ? (int)(next_status_ms - now) : 0;
        }
        if (poll(fds, 2, timeout_ms) < 0 && errno != EINTR)
            return -errno;
        if (sd_notify_is_on(n) && clock_now_ms() >= next_status_ms) {
            main_notify_status(s, n, NULL, last_status);
            next_status_ms = clock_now_ms() + STATUS_INTERVAL_MS;
        }
        if ((fds[1].revents & POLLIN) && server_is_done(s))
            return 0;
        int sig;
        while ((sig = signals_read(sigfd)) > 0) {
            if (sig == SIGTERM || sig == SIGINT) {
                log_info("received %s", strsignal(sig));
                server_shutdown(s);
                if (!is_stopping)
                    main_notify_status(s, n, "STOPPING=1", last_status);
                is_stopping = true;
            } else if (sig == SIGUSR1) {
                server_log_stats(s);
            } else {
                log_info("received %s: ignored (echod has no reload yet)", strsignal(sig));
            }
        }
    }
}

/* Take the sockets systemd passed, if any; exits 76 when they are malformed. */
static void main_take_sockets(struct sd_listen *passed)
{
    char err[512];
    if (sd_listen_take(passed, err, sizeof(err)) < 0) {
        log_error("socket activation: %s", err);
        exit(EX_PROTOCOL);
    }
}

int main(int argc, char **argv)
{
    struct options o = {0};
    struct conf c;
    /* A write to a closed stderr pipe must not kill echod: every thread blocks SIGPIPE
     * and sends use MSG_NOSIGNAL, and this covers what happens before and besides. */
    signal(SIGPIPE, SIG_IGN);
    log_init();
    main_parse_args(argc, argv, &o);
    main_load_conf(&o, &c);
    log_set_level(c.log_level);
    if (o.is_check_only) {
        if (!main_fd_limit_fits(&c, c.tcp.listen_count, c.udp.listen_count))
            exit(EX_CONFIG);
        printf("configuration OK\n");
        conf_free(&c);
        return 0;
    }
    struct sd_listen passed;
    main_take_sockets(&passed);
    struct sd_notify notify;
    int notify_rc = sd_notify_open(&notify);
    if (notify_rc < 0)
        log_error("NOTIFY_SOCKET: %s: echod cannot tell systemd it is ready", strerror(-notify_rc));

    int exit_code = EX_OSERR;
    int sigfd = -1;
    struct server *s = NULL;
    char err[CONF_ERR_SIZE];
    int rc = signals_block_all();
    if (rc < 0 || (sigfd = rc = signals_open_fd()) < 0) {
        log_error("cannot set up signals: %s", strerror(-rc));
        goto done;
    }
    /* Started with every signal blocked, as all of echod's threads are. */
    if ((rc = log_start()) < 0) {
        log_error("cannot start the log thread: %s", strerror(-rc));
        goto done;
    }
    if ((rc = server_open(&c, &passed, &s, err, sizeof(err))) < 0) {
        log_error("%s", err);
        exit_code = passed.count > 0 ? EX_PROTOCOL : EX_UNAVAILABLE;
        goto done;
    }
    size_t count, tcp_count = 0;
    const struct listener *ls = server_listeners(s, &count);
    for (size_t i = 0; i < count; i++)
        tcp_count += ls[i].type == SOCK_STREAM;
    if (!main_fd_limit_fits(&c, tcp_count, count - tcp_count)) {
        exit_code = EX_CONFIG;
        goto done;
    }
    if ((rc = server_start(s)) < 0)
        goto done;
    /* Written, and READY=1 sent, once every thread runs, so a script that sees the file
     * (or systemd, the notification) can count on a fully started echod. */
    if (o.port_file && (rc = listener_write_port_file(o.port_file, ls, count)) < 0) {
        log_error("cannot write the port file %s: %s", o.port_file, strerror(-rc));
        exit_code = EX_CANTCREAT;
        goto done;
    }
    char last_status[STATUS_MAX] = "";
    main_notify_status(s, &notify, "READY=1", last_status);
    if ((rc = main_serve(s, sigfd, &notify, last_status)) < 0)
        log_error("poll: %s", strerror(-rc));
    server_log_stats(s);
    exit_code = 0;
done:
    if (s)
        server_destroy(s);
    if (sigfd >= 0)
        close(sigfd);
    sd_notify_close(&notify);
    sd_listen_free(&passed);
    conf_free(&c);
    if (exit_code == 0)
        log_info("stopped");
    log_stop();
    return exit_code;
}
