/* main: echod's entry point. The main thread parses the command line and the
 * configuration, binds every listener, blocks all signals, starts the threads, and then
 * only reads signals from a signalfd until the workers have drained: TERM and INT stop
 * gracefully (a second one at once), USR1 logs the counters, HUP and USR2 are logged and
 * ignored. Every other thread blocks every signal; the main thread alone leaves QUIT
 * (quit with a core dump), TSTP, TTIN, TTOU (stop) and CONT (resume) to their default
 * actions, as a foreground program's user expects of Ctrl-\ and Ctrl-Z. Start-up is the
 * only place the process exits on an error, with a sysexits(3) code:
 *   64 EX_USAGE     bad command line
 *   69 EX_UNAVAILABLE a listener cannot be bound
 *   71 EX_OSERR     threads or fds cannot be had at start-up
 *   73 EX_CANTCREAT the --port-file cannot be written
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

#include "conf.h"
#include "fdlimit.h"
#include "listener.h"
#include "log.h"
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
            "the counters; HUP and USR2 are logged and ignored; QUIT (Ctrl-\\) quits with a\n"
            "core dump; TSTP (Ctrl-Z), TTIN and TTOU stop echod until CONT.\n"
            "Exit codes: 0 ok, 64 usage, 69 cannot listen, 71 system error,\n"
            "73 cannot write the port file, 78 configuration error.\n",
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

/* Whether c's max_connections and echod's own fds fit the open file limit: 0, or
 * -EMFILE with err saying what to change. A limit of 0 (unknown) always fits. */
static int main_fit_fd_limit(const struct conf *c, uint64_t limit, char *err, size_t err_size)
{
    bool is_tcp = c->tcp.listen_count > 0;
    uint64_t own = fdlimit_own_fds(c->tcp.listen_count + c->udp.listen_count, conf_worker_count(c),
                                   is_tcp, c->udp.listen_count > 0);
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

/* Raise the soft fd limit to the hard one (each connection is an fd) and return it.
 * Exits 78 saying what to change when max_connections and echod's own fds do not fit. */
static uint64_t main_check_fd_limit(const struct conf *c)
{
    uint64_t limit = 0;
    int rc = fdlimit_raise(&limit);
    if (rc < 0)
        log_warn("cannot raise the open file limit: %s", strerror(-rc));
    char err[1024];
    if (main_fit_fd_limit(c, limit, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        exit(EX_CONFIG);
    }
    return limit;
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
        fprintf(stderr, "%s\n", err);
        exit(EX_CONFIG);
    }
    if (o->has_log_level)
        c->log_level = o->log_level;
}

/* What a reload needs to know besides the server. */
struct main_state {
    const struct options *o;
    struct conf *conf; /* the configuration in force; the server reads it too */
    uint64_t fd_limit; /* the open file limit echod runs under */
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
        rc = main_fit_fd_limit(&next, m->fd_limit, err, sizeof(err));
        if (rc == 0)
            rc = server_reload(s, &next, err, sizeof(err));
        if (rc < 0)
            conf_free(&next);
    }
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

/* Read signals until the workers are done; 0 once they are. */
static int main_serve(struct main_state *m, struct server *s, int sigfd)
{
    struct pollfd fds[2] = {{sigfd, POLLIN, 0}, {server_done_fd(s), POLLIN, 0}};
    for (;;) {
        if (poll(fds, 2, -1) < 0 && errno != EINTR)
            return -errno;
        if ((fds[1].revents & POLLIN) && server_is_done(s))
            return 0;
        int sig;
        while ((sig = signals_read(sigfd)) > 0) {
            if (sig == SIGTERM || sig == SIGINT) {
                log_info("received %s", strsignal(sig));
                server_shutdown(s);
            } else if (sig == SIGUSR1) {
                server_log_stats(s);
            } else if (sig == SIGHUP) {
                log_info("received %s: reloading", strsignal(sig));
                if (!server_is_shutting_down(s))
                    main_reload(m, s);
                else
                    log_info("reload: ignored, echod is stopping");
            } else {
                log_info("received %s: ignored (it has no meaning for echod)", strsignal(sig));
            }
        }
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
    main_parse_args(argc, argv, &o);
    main_load_conf(&o, &c);
    log_set_level(c.log_level);
    struct main_state m = {&o, &c, main_check_fd_limit(&c)};
    if (o.is_check_only) {
        printf("configuration OK\n");
        conf_free(&c);
        return 0;
    }

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
    if ((rc = server_open(&c, &s, err, sizeof(err))) < 0) {
        log_error("%s", err);
        exit_code = EX_UNAVAILABLE;
        goto done;
    }
    if ((rc = server_start(s)) < 0)
        goto done;
    /* Every thread runs with all signals blocked: Ctrl-\ and Ctrl-Z now reach this one. */
    if ((rc = signals_unblock_job_control()) < 0) {
        log_error("cannot unblock the job-control signals: %s", strerror(-rc));
        goto done;
    }
    /* Written once every thread runs, so a script that sees the file can count on a
     * fully started echod. */
    if (o.port_file && (rc = server_write_port_file(s, o.port_file)) < 0) {
        log_error("cannot write the port file %s: %s", o.port_file, strerror(-rc));
        exit_code = EX_CANTCREAT;
        goto done;
    }
    if ((rc = main_serve(&m, s, sigfd)) < 0)
        log_error("poll: %s", strerror(-rc));
    server_log_stats(s);
    exit_code = 0;
done:
    if (s)
        server_destroy(s);
    if (sigfd >= 0)
        close(sigfd);
    conf_free(&c);
    if (exit_code == 0)
        log_info("stopped");
    log_stop();
    return exit_code;
}
