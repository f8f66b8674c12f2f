/* server: owns the listeners and every thread, and puts them through start-up and
 * shutdown in order. Main thread only.
 *
 * Start: bind every listener (fatal at start-up if one cannot be bound), then start the
 * UDP thread, the workers and last the acceptor, so no socket is accepted before a
 * worker can take it. Shutdown: stop the acceptor (it first takes in the connections
 * already in the kernel's backlog) and close the TCP listeners, so new clients are
 * refused at once; stop UDP after answering what is queued; let the workers drain until
 * shutdown_timeout_ms. Destroy joins and frees in the reverse order. */
#include "config.h"

#include "server.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acceptor.h"
#include "clock.h"
#include "iplimit.h"
#include "log.h"
#include "sd.h"
#include "stats.h"
#include "udp.h"
#include "worker.h"

struct server {
    const struct conf *conf;
    struct listener *ls; /* TCP listeners first, then UDP */
    size_t tcp_count;
    size_t udp_count;
    struct acceptor *acceptor;
    struct iplimit *iplimit; /* NULL without max_connections_per_ip; outlives the workers */
    struct worker **workers;
    unsigned nworkers;
    struct udp *udp;
    int done_fd;         /* eventfd: every worker adds 1 when it ends */
    uint64_t done_count; /* workers (or, with none, the shutdown) reported done */
    bool is_shutting_down;
};

/* Bind the listeners of one service, appending to s->ls. */
static int server_bind_service(struct server *s, const struct conf_service *svc, int type,
                               size_t *bound, char *err, size_t err_size)
{
    for (size_t i = 0; i < svc->listen_count; i++) {
        struct listener *l = &s->ls[s->tcp_count + s->udp_count];
        int rc = listener_open(l, &svc->listen[i], type, (int)s->conf->tcp_backlog);
        if (rc < 0) {
            char where[ADDR_STRLEN];
            addr_format((const struct sockaddr *)&svc->listen[i].ss, where, sizeof(where));
            snprintf(err, err_size, "cannot listen on %s %s: %s",
                     type == SOCK_STREAM ? "tcp" : "udp", where, strerror(-rc));
            return rc;
        }
        (*bound)++;
        char line[ADDR_STRLEN + 8];
        listener_describe(l, line, sizeof(line));
        log_info("listening %s", line);
    }
    return 0;
}

/* Adopt the sockets systemd passed instead of binding the configuration's, TCP first
 * in s->ls as echod orders them everywhere. */
static int server_adopt(struct server *s, const struct sd_listen *passed, char *err,
                        size_t err_size)
{
    log_info("socket activation: %zu socket%s passed; tcp.listen and udp.listen are not used",
             passed->count, passed->count == 1 ? "" : "s");
    struct listener *adopted = calloc(passed->count, sizeof(*adopted));
    if (adopted == NULL) {
        snprintf(err, err_size, "out of memory");
        return -ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < passed->count; i++)
        rc = listener_adopt(&adopted[i], SD_LISTEN_FDS_START + (int)i, sd_listen_name(passed, i),
                            err, err_size);
    static const int tcp_first[] = {SOCK_STREAM, SOCK_DGRAM};
    for (size_t t = 0; rc == 0 && t < sizeof(tcp_first) / sizeof(tcp_first[0]); t++) {
        int type = tcp_first[t];
        for (size_t i = 0; i < passed->count; i++) {
            if (adopted[i].type != type)
                continue;
            s->ls[s->tcp_count + s->udp_count] = adopted[i];
            *(type == SOCK_STREAM ? &s->tcp_count : &s->udp_count) += 1;
            const char *name = sd_listen_name(passed, i);
            char line[ADDR_STRLEN + 8];
            listener_describe(&adopted[i], line, sizeof(line));
            log_info("listening %s (adopted fd %d%s%s%s)", line, adopted[i].fd,
                     name ? ", named \"" : "", name ? name : "", name ? "\"" : "");
        }
    }
    free(adopted); /* on failure the fds stay with the process, which exits */
    return rc;
}

int server_open(const struct conf *c, const struct sd_listen *passed, struct server **out,
                char *err, size_t err_size)
{
    struct server *s = calloc(1, sizeof(*s));
    size_t total = passed->count > 0 ? passed->count : c->tcp.listen_count + c->udp.listen_count;
    if (s == NULL || (s->ls = calloc(total ? total : 1, sizeof(*s->ls))) == NULL) {
        free(s);
        snprintf(err, err_size, "out of memory");
        return -ENOMEM;
    }
    s->conf = c;
    s->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int rc = s->done_fd < 0 ? -errno : 0;
    if (rc < 0)
        snprintf(err, err_size, "eventfd: %s", strerror(-rc));
    if (rc == 0 && passed->count > 0)
        rc = server_adopt(s, passed, err, err_size);
    if (rc == 0 && passed->count == 0)
        rc = server_bind_service(s, &c->tcp, SOCK_STREAM, &s->tcp_count, err, err_size);
    if (rc == 0 && passed->count == 0)
        rc = server_bind_service(s, &c->udp, SOCK_DGRAM, &s->udp_count, err, err_size);
    if (rc < 0) {
        server_destroy(s);
        return rc;
    }
    *out = s;
    return 0;
}

const struct listener *server_listeners(const struct server *s, size_t *count)
{
    *count = s->tcp_count + s->udp_count;
    return s->ls;
}

/* Create and start the workers and the acceptor. */
static int server_start_tcp(struct server *s)
{
    s->nworkers = conf_worker_count(s->conf);
    s->workers = calloc(s->nworkers, sizeof(*s->workers));
    if (s->workers == NULL)
        return -ENOMEM;
    int rc = 0;
    if (s->conf->max_connections_per_ip > 0)
        rc = iplimit_create(s->conf->max_connections_per_ip, s->conf->max_connections, &s->iplimit);
    if (rc == 0)
        rc = acceptor_create(s->ls, s->tcp_count, s->conf->max_connections, s->iplimit,
                             &s->acceptor);
    struct worker_hooks hooks = {acceptor_release, s->acceptor, s->done_fd, s->iplimit};
    for (unsigned i = 0; rc == 0 && i < s->nworkers; i++) {
        rc = worker_create(s->conf, &hooks, &s->workers[i]);
        if (rc == 0 && (rc = worker_start(s->workers[i])) < 0) {
            worker_destroy(s->workers[i]);
            s->workers[i] = NULL;
        }
    }
    if (rc == 0)
        rc = acceptor_start(s->acceptor, s->workers, s->nworkers);
    return rc;
}

int server_start(struct server *s)
{
    int rc = 0;
    if (s->udp_count > 0) {
        rc = udp_create(s->conf, s->ls + s->tcp_count, s->udp_count, &s->udp);
        if (rc == 0 && (rc = udp_start(s->udp)) < 0)
            log_error("cannot start the UDP thread: %s", strerror(-rc));
    }
    if (rc == 0 && s->tcp_count > 0 && (rc = server_start_tcp(s)) < 0)
        log_error("cannot start the TCP threads: %s", strerror(-rc));
    if (rc == 0)
        log_info("serving: %u worker%s, tcp %s, udp %s", s->nworkers, s->nworkers == 1 ? "" : "s",
                 s->tcp_count ? proto_mode_name(s->conf->tcp.mode) : "off",
                 s->udp_count ? proto_mode_name(s->conf->udp.mode) : "off");
    return rc;
}

/* Workers whose thread was started. */
static unsigned server_started_workers(const struct server *s)
{
    unsigned n = 0;
    for (unsigned i = 0; i < s->nworkers; i++)
        n += s->workers[i] != NULL;
    return n;
}

/* Tell every started worker to drain until deadline_ms. */
static void server_drain_workers(struct server *s, uint64_t deadline_ms)
{
    for (unsigned i = 0; i < s->nworkers; i++)
        if (s->workers[i])
            worker_drain(s->workers[i], deadline_ms);
}

void server_shutdown(struct server *s)
{
    if (s->is_shutting_down) {
        log_info("second stop signal: closing every connection now");
        server_drain_workers(s, clock_now_ms());
        return;
    }
    s->is_shutting_down = true;
    if (s->acceptor)
        acceptor_stop(s->acceptor);
    for (size_t i = 0; i < s->tcp_count; i++)
        listener_close(&s->ls[i]);
    if (s->udp)
        udp_stop(s->udp);
    uint64_t deadline = clock_now_ms() + s->conf->shutdown_timeout_ms;
    log_info("shutting down: no longer accepting; serving open connections for up to %u ms",
             s->conf->shutdown_timeout_ms);
    server_drain_workers(s, deadline);
    if (server_started_workers(s) == 0) {
        (void)eventfd_write(s->done_fd, 1); /* no worker will report: say "done" ourselves */
    }
}

int server_done_fd(const struct server *s)
{
    return s->done_fd;
}

bool server_is_done(struct server *s)
{
    eventfd_t count;
    if (eventfd_read(s->done_fd, &count) == 0)
        s->done_count += count;
    unsigned started = server_started_workers(s);
    return s->done_count >= (started ? started : 1);
}

/* Every counter, summed over the threads, into sum. */
static void server_sum_stats(struct server *s, uint64_t sum[STAT_COUNT])
{
    struct stats *all[2 + CONF_MAX_WORKERS];
    size_t n = 0;
    if (s->acceptor)
        all[n++] = acceptor_stats(s->acceptor);
    if (s->udp)
        all[n++] = udp_stats(s->udp);
    for (unsigned i = 0; i < s->nworkers; i++)
        if (s->workers[i])
            all[n++] = worker_stats(s->workers[i]);
    stats_sum(all, n, sum);
}

void server_log_stats(struct server *s)
{
    uint64_t sum[STAT_COUNT];
    server_sum_stats(s, sum);
    char text[2048];
    stats_format(sum, text, sizeof(text));
    log_info("stats %s", text);
}

void server_status(struct server *s, char *buf, size_t size)
{
    uint64_t sum[STAT_COUNT];
    server_sum_stats(s, sum);
    uint64_t open = sum[STAT_tcp_opened] - sum[STAT_tcp_closed];
    snprintf(buf, size,
             "%s: %llu open connection%s, %llu accepted, %llu bytes echoed; %llu datagrams "
             "answered",
             s->is_shutting_down ? "stopping" : "serving", (unsigned long long)open,
             open == 1 ? "" : "s", (unsigned long long)sum[STAT_tcp_accepted],
             (unsigned long long)sum[STAT_tcp_bytes_out],
             (unsigned long long)sum[STAT_udp_datagrams_out]);
}

void server_destroy(struct server *s)
{
    if (s == NULL)
        return;
    if (s->acceptor)
        acceptor_stop(s->acceptor);
    if (s->udp)
        udp_stop(s->udp);
    server_drain_workers(s, clock_now_ms());
    for (unsigned i = 0; i < s->nworkers; i++) {
        if (s->workers[i]) {
            worker_join(s->workers[i]);
            worker_destroy(s->workers[i]); /* reports closes to the acceptor: keep it */
        }
    }
    acceptor_destroy(s->acceptor);
    iplimit_destroy(s->iplimit);
    udp_destroy(s->udp);
    for (size_t i = 0; i < s->tcp_count + s->udp_count; i++)
        listener_close(&s->ls[i]);
    if (s->done_fd >= 0)
        close(s->done_fd);
    free(s->workers);
    free(s->ls);
    free(s);
}
