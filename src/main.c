/* main: echod's entry point. The main thread parses the command line and the
 * configuration, binds every listener (or adopts the sockets systemd passed), blocks
 * all signals, starts the threads, tells systemd it is ready, and then only reads
 * signals from a signalfd (and, under systemd, sends STATUS= once a second and pings
 * the watchdog) until the workers have drained: TERM and INT stop gracefully (a second
 * one at once), USR1 logs the counters, HUP reloads the configuration, USR2 is logged
 * and ignored. Every other thread blocks every signal; the main thread alone leaves
 * QUIT (quit with a core dump), TSTP, TTIN, TTOU (stop) and CONT (resume) to their
 * default actions, as a foreground program's user expects of Ctrl-\ and Ctrl-Z.
 * Start-up is the only place the process exits on an error, with a sysexits(3) code:
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
#include <fcntl.h>
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
#include "metrics.h"
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
            "                          / \"metrics ADDR:PORT\" lines, one per listener, to\n"
            "                          FILE (atomically)\n"
            "  -h, --help              show this help and exit\n"
            "  -V, --version           show the version and exit\n"
            "\n"
            "Signals: TERM or INT stop gracefully (a second one stops at once); USR1 logs\n"
            "the counters; HUP reloads the configuration file; USR2 is logged and ignored;\n"
            "QUIT (Ctrl-\\) quits with a core dump; TSTP (Ctrl-Z), TTIN and TTOU stop echod\n"
            "until CONT.\n"
            "Under systemd, echod sends READY=1, STATUS=, RELOADING=1, STOPPING=1 and\n"
            "WATCHDOG=1 to NOTIFY_SOCKET and serves the sockets passed in LISTEN_FDS (named\n"
            "tcp, udp or metrics) instead of its listen lists.\n"
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
    /* getopt names a bad option itself, under argv[0], as GNU tools do: "echod: invalid
     * option -- 'x'" (the letter, even inside -tx), "echod: unrecognized option '--bogus'". */
    argv[0] = (char *)"echod";
    opterr = 1;
    while ((ch = getopt_long(argc, argv, "c:tl:hV", longopts, NULL)) != -1) {
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
        default: /* '?': getopt has said what is wrong */
            fprintf(stderr, "Try 'echod --help'.\n");
            exit(EX_USAGE);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "echod: unexpected argument '%s'\nTry 'echod --help'.\n", argv[optind]);
        exit(EX_USAGE);
    }
}

/* The listeners echod serves, by kind. */
struct main_listeners {
    size_t tcp, udp, metrics;
};

/* Whether c's max_connections and echod's own fds, with these listeners, fit the open
 * file limit: 0, or -EMFILE with err saying what to change (two lines). A limit of 0
 * (unknown) always fits. Each metrics endpoint counts with every fd it may hold. */
static int main_fit_fd_limit(const struct conf *c, struct main_listeners n, uint64_t limit,
                             char *err, size_t err_size)
{
    bool is_tcp = n.tcp > 0;
    uint64_t own = fdlimit_own_fds(n.tcp + n.udp, conf_worker_count(c), is_tcp, n.udp > 0) +
                   n.metrics * METRICS_FDS;
    uint64_t conns = is_tcp ? c->max_connections : 0;
    if (limit == 0 || limit >= conns + own)
        return 0;
    unsigned long long need = conns + own, fit = limit > own ? limit - own : 0;
    snprintf(err, err_size,
             "echod: max_connections = %u needs %llu open files (%llu connections + %llu that "
             "echod itself uses), but the open file limit is %llu.\n"
             "echod: lower max_connections to %llu or less, or raise the limit to at least %llu "
             "(ulimit -n %llu in the shell, or LimitNOFILE=%llu in the systemd unit).",
             c->max_connections, need, (unsigned long long)conns, (unsigned long long)own,
             (unsigned long long)limit, fit, need, need, need);
    return -EMFILE;
}

/* Log a start-up error of one or more lines at error level, each line a log line of
 * its own (under journald each gets its priority). */
static void main_log_lines(char *text)
{
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        log_bare(LOG_LEVEL_ERROR, "%s", line);
}

/* Raise the soft fd limit to the hard one (each connection is an fd) and return it. */
static uint64_t main_raise_fd_limit(void)
{
    uint64_t limit = 0;
    int rc = fdlimit_raise(&limit);
    if (rc < 0)
        log_warn("cannot raise the open file limit: %s", strerror(-rc));
    return limit;
}

/* Whether c fits the limit with these listeners; if not, say what to change. */
static bool main_fd_limit_fits(const struct conf *c, struct main_listeners n, uint64_t limit)
{
    char err[1024];
    if (main_fit_fd_limit(c, n, limit, err, sizeof(err)) == 0)
        return true;
    main_log_lines(err);
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

/* Room for a STATUS= line. */
#define STATUS_MAX 256

/* What the signal loop keeps besides the server. Main thread only. */
struct main_state {
    const struct options *o;
    struct conf *conf;            /* the configuration in force; the server reads it too */
    uint64_t fd_limit;            /* the open file limit echod runs under */
    struct sd_notify notify;      /* systemd's notification socket, when it listens */
    struct sd_watchdog watchdog;  /* systemd's watchdog, when it asks for pings */
    char last_status[STATUS_MAX]; /* the last STATUS= sent */
    bool has_failed_reload;       /* the last reload was refused: STATUS= says so */
    bool has_warned_notify;       /* a failing notification was logged */
};

/* Read the file again, with the same checks as -t, into next (the -l level still
 * overrides it). 0, or -errno with err saying why. */
static int main_reread(const struct main_state *m, struct conf *next, char *err, size_t size)
{
    if (conf_init_defaults(next) < 0) {
        snprintf(err, size, "out of memory");
        return -ENOMEM;
    }
    int rc = conf_load_file(next, m->o->config_path, err, size);
    if (rc < 0) {
        conf_free(next);
        return rc;
    }
    if (m->o->has_log_level)
        next->log_level = m->o->log_level;
    return 0;
}

/* SIGHUP: read the configuration again and apply it to the running server. An invalid
 * file or one that cannot be applied leaves everything as it was. */
static void main_reload(struct main_state *m, struct server *s)
{
    if (m->o->config_path == NULL) {
        log_info("reload: echod runs on its built-in defaults (no -c): nothing to read");
        server_count_reload(s, true);
        return;
    }
    struct conf next;
    char err[1024];
    int rc = main_reread(m, &next, err, sizeof(err));
    if (rc == 0) {
        server_reload_keep_fixed(s, &next);
        struct main_listeners n;
        server_count_listeners(s, &next, &n.tcp, &n.udp, &n.metrics);
        rc = main_fit_fd_limit(&next, n, m->fd_limit, err, sizeof(err));
        if (rc == 0)
            rc = server_reload(s, &next, err, sizeof(err));
        if (rc < 0)
            conf_free(&next);
    }
    m->has_failed_reload = rc < 0;
    if (rc < 0) {
        log_error("reload failed, keeping the configuration in force: %s", err);
        server_count_reload(s, false);
        return;
    }
    conf_free(m->conf);
    *m->conf = next;
    log_set_level(next.log_level);
    if (m->o->port_file && (rc = server_write_port_file(s, m->o->port_file)) < 0)
        log_error("reload: cannot write the port file %s: %s", m->o->port_file, strerror(-rc));
    log_info("reloaded %s", m->o->config_path);
    server_count_reload(s, true);
}

/* Send text to systemd, when it listens; say so once when it stops taking them. */
static void main_notify(struct main_state *m, const char *text)
{
    int rc = sd_notify_send(&m->notify, "%s", text);
    if (rc < 0 && !m->has_warned_notify)
        log_warn("cannot notify systemd: %s (further failures are not logged)", strerror(-rc));
    m->has_warned_notify |= rc < 0;
}

/* Send "STATUS=..." (after the lines in head, if any), unless it says what the last one
 * said. */
static void main_notify_status(struct main_state *m, struct server *s, const char *head)
{
    char status[STATUS_MAX], text[2 * STATUS_MAX];
    server_status(s, status, sizeof(status));
    if (head == NULL && strcmp(status, m->last_status) == 0)
        return;
    snprintf(text, sizeof(text), "%s%sSTATUS=%s%s", head ? head : "", head ? "\n" : "",
             m->has_failed_reload ? "reload failed, see the log; " : "", status);
    main_notify(m, text);
    memcpy(m->last_status, status, STATUS_MAX);
}

/* SIGHUP under systemd's Type=notify-reload protocol: RELOADING=1 with the monotonic
 * time first, READY=1 (and the STATUS=) once the reload is done, applied or not. */
static void main_reload_notifying(struct main_state *m, struct server *s)
{
    if (sd_notify_is_on(&m->notify)) {
        char text[64];
        snprintf(text, sizeof(text), "RELOADING=1\nMONOTONIC_USEC=%llu",
                 (unsigned long long)clock_now_us());
        main_notify(m, text);
    }
    main_reload(m, s);
    main_notify_status(m, s, "READY=1");
}

/* Handle the signals waiting on sigfd. */
static void main_handle_signals(struct main_state *m, struct server *s, int sigfd)
{
    int sig;
    while ((sig = signals_read(sigfd)) > 0) {
        if (sig == SIGTERM || sig == SIGINT) {
            log_info("received %s", strsignal(sig));
            bool was_stopping = server_is_shutting_down(s);
            server_shutdown(s);
            if (!was_stopping)
                main_notify_status(m, s, "STOPPING=1");
        } else if (sig == SIGUSR1) {
            server_log_stats(s);
        } else if (sig == SIGHUP && !server_is_shutting_down(s)) {
            log_info("received %s: reloading", strsignal(sig));
            main_reload_notifying(m, s);
        } else if (sig == SIGHUP) {
            log_info("received %s: ignored, echod is stopping", strsignal(sig));
        } else {
            log_info("received %s: ignored (it has no meaning for echod)", strsignal(sig));
        }
    }
}

/* The periodic work under systemd, due at *next_ms: STATUS= at most once a second, and
 * WATCHDOG=1 every half interval while every thread is alive. */
static void main_tick(struct main_state *m, struct server *s, uint64_t now_ms, uint64_t *next_ms)
{
    enum { STATUS_INTERVAL_MS = 1000 };
    main_notify_status(m, s, NULL);
    uint64_t step = STATUS_INTERVAL_MS;
    if (sd_watchdog_is_on(&m->watchdog)) {
        uint64_t interval_ms = sd_watchdog_interval_ms(&m->watchdog);
        if (server_is_alive(s, now_ms, interval_ms))
            main_notify(m, "WATCHDOG=1");
        else
            log_error("watchdog: a thread has not come back to its loop for %llu ms; not "
                      "pinging, so systemd restarts echod",
                      (unsigned long long)interval_ms);
        if (interval_ms / 2 < step)
            step = interval_ms / 2 ? interval_ms / 2 : 1;
    }
    *next_ms = now_ms + step;
}

/* Read signals until the workers are done; 0 once they are. Under systemd, wake for
 * STATUS= and the watchdog; otherwise never wake without a reason. */
static int main_serve(struct main_state *m, struct server *s, int sigfd)
{
    struct pollfd fds[2] = {{sigfd, POLLIN, 0}, {server_done_fd(s), POLLIN, 0}};
    bool is_ticking = sd_notify_is_on(&m->notify);
    uint64_t next_tick_ms = clock_now_ms();
    for (;;) {
        int timeout_ms = -1;
        if (is_ticking) {
            uint64_t now = clock_now_ms();
            timeout_ms = next_tick_ms > now ? (int)(next_tick_ms - now) : 0;
        }
        if (poll(fds, 2, timeout_ms) < 0 && errno != EINTR)
            return -errno;
        uint64_t now = clock_now_ms();
        if (is_ticking && now >= next_tick_ms)
            main_tick(m, s, now, &next_tick_ms);
        if ((fds[1].revents & POLLIN) && server_is_done(s))
            return 0;
        main_handle_signals(m, s, sigfd);
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

/* Hold each of fds 0-2 that is closed with /dev/null. Otherwise the first fds echod
 * opens (the signalfd, the "workers done" eventfd) take those numbers and its log is
 * written into them: a 6.1 kernel adds a line's first 8 bytes to the eventfd's counter,
 * so echod believes its workers are done and exits right after starting; later kernels
 * refuse the write, and the log is lost. Exits 71 if /dev/null cannot be opened. */
static void main_hold_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
            continue;
        int null_fd = open("/dev/null", O_RDWR); /* the lowest free fd: this one */
        if (null_fd != fd && (null_fd < 0 || dup2(null_fd, fd) < 0 || close(null_fd) < 0))
            exit(EX_OSERR); /* nowhere to say so: stderr may be the closed one */
    }
}

int main(int argc, char **argv)
{
    struct options o = {0};
    struct conf c;
    main_hold_std_fds();
    /* A write to a closed stderr pipe must not kill echod: every thread blocks SIGPIPE
     * and sends use MSG_NOSIGNAL, and this covers what happens before and besides. */
    signal(SIGPIPE, SIG_IGN);
    log_init();
    main_parse_args(argc, argv, &o);
    main_load_conf(&o, &c);
    log_set_level(c.log_level);
    struct main_state m = {.o = &o, .conf = &c, .fd_limit = main_raise_fd_limit()};
    if (o.is_check_only) {
        struct main_listeners n = {c.tcp.listen_count, c.udp.listen_count, c.metrics_listen_count};
        bool fits = main_fd_limit_fits(&c, n, m.fd_limit);
        if (fits)
            printf("configuration OK\n");
        conf_free(&c);
        return fits ? 0 : EX_CONFIG;
    }
    struct sd_listen passed;
    main_take_sockets(&passed);
    int notify_rc = sd_notify_open(&m.notify);
    if (notify_rc < 0)
        log_error("NOTIFY_SOCKET: %s: echod cannot tell systemd it is ready", strerror(-notify_rc));
    int watchdog_rc = sd_watchdog_take(&m.watchdog);
    if (watchdog_rc < 0)
        log_error("WATCHDOG_USEC: %s: echod does not ping the watchdog", strerror(-watchdog_rc));

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
    struct main_listeners listeners;
    server_count_listeners(s, NULL, &listeners.tcp, &listeners.udp, &listeners.metrics);
    if (!main_fd_limit_fits(&c, listeners, m.fd_limit)) {
        exit_code = EX_CONFIG;
        goto done;
    }
    if ((rc = server_start(s)) < 0)
        goto done;
    /* Every thread runs with all signals blocked: Ctrl-\ and Ctrl-Z now reach this one. */
    if ((rc = signals_unblock_job_control()) < 0) {
        log_error("cannot unblock the job-control signals: %s", strerror(-rc));
        goto done;
    }
    /* Written, and READY=1 sent, once every thread runs, so a script that sees the file
     * (or systemd, the notification) can count on a fully started echod. */
    if (o.port_file && (rc = server_write_port_file(s, o.port_file)) < 0) {
        log_error("cannot write the port file %s: %s", o.port_file, strerror(-rc));
        exit_code = EX_CANTCREAT;
        goto done;
    }
    main_notify_status(&m, s, "READY=1");
    if ((rc = main_serve(&m, s, sigfd)) < 0)
        log_error("poll: %s", strerror(-rc));
    server_log_stats(s);
    exit_code = 0;
done:
    if (s)
        server_destroy(s);
    if (sigfd >= 0)
        close(sigfd);
    sd_notify_close(&m.notify);
    sd_listen_free(&passed);
    conf_free(&c);
    if (exit_code == 0)
        log_info("stopped");
    log_stop();
    return exit_code;
}
