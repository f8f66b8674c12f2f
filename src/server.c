/* server: owns the listeners and every thread, and puts them through start-up and
 * shutdown in order; renders the metrics a scrape reads. Main thread only, but for
 * server_render_metrics, which the metrics endpoint's thread runs.
 *
 * Start: bind every listener (fatal at start-up if one cannot be bound), then start the
 * UDP thread, the workers and last the acceptor, so no socket is accepted before a
 * worker can take it. Shutdown: tell the acceptor to stop (it takes in the connections
 * already in the kernel's backlog, refuses new clients, closes the TCP listeners and
 * then lets the workers drain until shutdown_timeout_ms); stop UDP after answering what
 * is queued. Destroy joins and frees in the reverse order. The metrics endpoints start
 * after every serving thread and stop before any is joined, since a scrape reads them. */
#include "config.h"

#include "server.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acceptor.h"
#include "conn.h"
#include "clock.h"
#include "evloop.h"
#include "iplimit.h"
#include "log.h"
#include "metrics.h"
#include "procself.h"
#include "promtext.h"
#include "snap.h"
#include "sd.h"
#include "stats.h"
#include "udp.h"
#include "worker.h"

struct server {
    const struct conf *conf;    /* the configuration in force (the caller's) */
    struct listener_set tcp_ls; /* the listeners in force: references of the server's */
    struct listener_set udp_ls;
    struct listener_set metrics_ls; /* the metrics endpoints' listeners */
    struct metrics **endpoints;     /* endpoints[i] serves metrics_ls.items[i], once started */
    struct snap_box *tcp_box;       /* the acceptor's settings (acceptor_settings) */
    struct snap_box *udp_box;       /* the UDP thread's settings (udp_settings) */
    struct snap_box *conn_box;      /* the workers' settings (conn_settings) */
    struct acceptor *acceptor;
    struct iplimit *iplimit; /* NULL without max_connections_per_ip; outlives the workers */
    struct worker **workers;
    unsigned nworkers;
    struct udp *udp;
    struct stats stats;  /* the main thread's: reloads */
    int done_fd;         /* eventfd: every worker adds 1 when it ends */
    uint64_t done_count; /* workers (or, with none, the shutdown) reported done */
    bool is_shutting_down;
    bool has_passed_sockets;         /* systemd passed the listeners: reloads keep them */
    double start_time_s;             /* when the process started (Unix time), for scrapes */
    _Atomic uint64_t last_reload_ms; /* Unix time in ms of the last applied load: main
                                        writes, scrapes read */
};

/* The listeners of one listen list (TCP, UDP, or the metrics endpoint's TCP) into *out:
 * those of `keep` opened for the same listen entry are kept (so a reload does not rebind
 * them), the others are bound. 0; or -errno with err naming the address, and *out
 * empty. */
static int server_bind_list(const struct addr *listen, size_t count, int type, bool is_metrics,
                            bool is_reuseport, unsigned backlog, const struct listener_set *keep,
                            struct listener_set *out, char *err, size_t err_size)
{
    *out = (struct listener_set){0};
    for (size_t i = 0; i < count; i++) {
        struct listener *l = NULL;
        for (size_t k = 0; k < keep->count && l == NULL; k++) /* each kept at most once */
            if (listener_matches(keep->items[k], &listen[i], type, is_reuseport) &&
                !listener_set_holds(out, keep->items[k]))
                l = listener_ref(keep->items[k]);
        bool is_new = l == NULL;
        int rc = is_new ? listener_open(&listen[i], type, (int)backlog, is_reuseport, &l) : 0;
        if (rc == 0 && is_new)
            l->is_metrics = is_metrics;
        if (rc == 0)
            rc = listener_set_add(out, l);
        if (rc < 0) {
            char where[ADDR_STRLEN];
            addr_format((const struct sockaddr *)&listen[i].ss, where, sizeof(where));
            snprintf(err, err_size, "cannot listen on %s %s: %s",
                     is_metrics            ? "metrics"
                     : type == SOCK_STREAM ? "tcp"
                                           : "udp",
                     where, strerror(-rc));
            listener_set_clear(out);
            return rc;
        }
        if (is_new) {
            char line[ADDR_STRLEN + 8];
            listener_describe(l, line, sizeof(line));
            log_info("listening %s%s", line, l->is_reuseport ? " (SO_REUSEPORT)" : "");
        }
    }
    return 0;
}

/* The listener sets of the three services: TCP, UDP and the metrics endpoint. */
enum { SERVER_TCP, SERVER_UDP, SERVER_METRICS, SERVER_KINDS };

/* Bind the services of c into sets[SERVER_KINDS], keeping what s has; 0 or -errno. */
static int server_bind(const struct server *s, const struct conf *c, struct listener_set *sets,
                       char *err, size_t err_size)
{
    int rc = server_bind_list(c->tcp.listen, c->tcp.listen_count, SOCK_STREAM, false,
                              c->tcp.is_reuseport, c->tcp_backlog, &s->tcp_ls, &sets[SERVER_TCP], err, err_size);
    if (rc == 0 && (rc = server_bind_list(c->udp.listen, c->udp.listen_count, SOCK_DGRAM, false,
                                          c->udp.is_reuseport, 0,
                                          &s->udp_ls, &sets[SERVER_UDP], err, err_size)) < 0)
        listener_set_clear(&sets[SERVER_TCP]);
    if (rc == 0 && (rc = server_bind_list(c->metrics_listen, c->metrics_listen_count, SOCK_STREAM,
                                          true, false, c->tcp_backlog, &s->metrics_ls,
                                          &sets[SERVER_METRICS], err, err_size)) < 0) {
        listener_set_clear(&sets[SERVER_TCP]);
        listener_set_clear(&sets[SERVER_UDP]);
    }
    return rc;
}

/* Note now (Unix time) as the time of the last applied configuration, for scrapes. */
static void server_note_load(struct server *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    atomic_store_explicit(&s->last_reload_ms,
                          (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u,
                          memory_order_relaxed);
}

/* Adopt the sockets systemd passed instead of binding the configuration's. */
static int server_adopt(struct server *s, const struct sd_listen *passed, char *err,
                        size_t err_size)
{
    log_info("socket activation: %zu socket%s passed; tcp.listen, udp.listen and metrics.listen are not used",
             passed->count, passed->count == 1 ? "" : "s");
    s->has_passed_sockets = true;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < passed->count; i++) {
        const char *name = sd_listen_name(passed, i);
        struct listener *l;
        rc = listener_adopt(SD_LISTEN_FDS_START + (int)i, name, &l, err, err_size);
        if (rc < 0)
            break; /* the fds stay with the process, which exits */
        char line[ADDR_STRLEN + 8];
        listener_describe(l, line, sizeof(line));
        log_info("listening %s (adopted fd %d%s%s%s)", line, l->fd, name ? ", named \"" : "",
                 name ? name : "", name ? "\"" : "");
        struct listener_set *set = l->is_metrics            ? &s->metrics_ls
                                   : l->type == SOCK_STREAM ? &s->tcp_ls
                                                            : &s->udp_ls;
        if ((rc = listener_set_add(set, l)) < 0)
            snprintf(err, err_size, "out of memory");
    }
    return rc;
}

int server_open(const struct conf *c, const struct sd_listen *passed, struct server **out,
                char *err, size_t err_size)
{
    struct server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, err_size, "out of memory");
        return -ENOMEM;
    }
    s->conf = c;
    server_note_load(s);
    if (procself_start_time(&s->start_time_s) < 0)
        s->start_time_s = 0;
    s->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int rc = s->done_fd < 0 ? -errno : 0;
    if (rc < 0)
        snprintf(err, err_size, "eventfd: %s", strerror(-rc));
    struct listener_set sets[SERVER_KINDS];
    if (rc == 0 && passed->count > 0)
        rc = server_adopt(s, passed, err, err_size);
    else if (rc == 0 && (rc = server_bind(s, c, sets, err, err_size)) == 0) {
        s->tcp_ls = sets[SERVER_TCP];
        s->udp_ls = sets[SERVER_UDP];
        s->metrics_ls = sets[SERVER_METRICS];
    }
    if (rc < 0) {
        server_destroy(s);
        return rc;
    }
    *out = s;
    return 0;
}

int server_write_port_file(const struct server *s, const char *path)
{
    const struct listener_set *sets[] = {&s->tcp_ls, &s->udp_ls, &s->metrics_ls};
    return listener_write_port_file(path, sets, 3);
}

/* The acceptor's settings: the TCP listeners of tcp and who may send a PROXY header
 * (from the configuration c); NULL when out of memory. */
static struct acceptor_settings *server_tcp_settings(const struct conf *c,
                                                     const struct listener_set *tcp)
{
    struct acceptor_settings *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    size_t from_bytes = c->tcp_proxy_from_count * sizeof(*t->proxy_from);
    t->proxy = c->tcp_proxy_protocol;
    t->proxy_from_count = c->tcp_proxy_from_count;
    if ((t->proxy_from = malloc(from_bytes ? from_bytes : 1)) == NULL) {
        free(t);
        return NULL;
    }
    if (from_bytes > 0)
        memcpy(t->proxy_from, c->tcp_proxy_from, from_bytes);
    if (listener_set_copy(&t->listeners, tcp) < 0) {
        acceptor_settings_free(t);
        return NULL;
    }
    return t;
}

/* What a greeting's placeholders stand for when settings are built (at start-up and at
 * each reload): {host} (gethostname now), {instance} and {pid}, into the caller's
 * buffers. */
struct server_names {
    char host[TEMPLATE_HOST_MAX + 1];
    char pid[16];
    struct template_values values;
};

static void server_names(const struct conf *c, struct server_names *n)
{
    if (gethostname(n->host, sizeof(n->host)) < 0)
        snprintf(n->host, sizeof(n->host), "localhost");
    n->host[sizeof(n->host) - 1] = '\0';
    snprintf(n->pid, sizeof(n->pid), "%ld", (long)getpid());
    n->values = (struct template_values){
        {[TEMPLATE_HOST] = n->host, [TEMPLATE_INSTANCE] = c->instance, [TEMPLATE_PID] = n->pid}};
}

/* The UDP thread's settings from the configuration c and the listeners udp: in greet
 * mode a greeting per listener, bound to all but {client} ({worker} is "udp", {server}
 * the listener's address); NULL when out of memory. */
static struct udp_settings *server_udp_settings(const struct conf *c,
                                                const struct listener_set *udp)
{
    struct udp_settings *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return NULL;
    u->mode = c->udp.mode;
    u->max_reply_bytes = c->udp_max_reply_bytes;
    u->guard = c->udp_guard;
    int rc = listener_set_copy(&u->listeners, udp);
    if (rc == 0 && c->udp.mode == PROTO_GREET &&
        (u->greetings = calloc(udp->count ? udp->count : 1, sizeof(*u->greetings))) == NULL)
        rc = -ENOMEM;
    struct server_names names;
    server_names(c, &names);
    for (size_t i = 0; rc == 0 && u->greetings && i < udp->count; i++) {
        char server_text[ADDR_STRLEN];
        template_values_site(&names.values, "udp",
                             (const struct sockaddr *)&udp->items[i]->bound.ss, server_text, NULL,
                             NULL);
        rc = template_bind(&c->udp.greeting_template, &names.values, &u->greetings[i]);
    }
    if (rc < 0) {
        udp_settings_free(u);
        return NULL;
    }
    return u;
}

/* Free a conn_settings built by server_conn_settings (the snap box's free). */
static void server_conn_settings_free(void *settings)
{
    struct conn_settings *t = settings;
    if (t)
        template_free(&t->greeting_template);
    free(t);
}

/* The workers' settings from the configuration c, with the greeting's {host},
 * {instance} and {pid} bound; NULL when out of memory. */
static struct conn_settings *server_conn_settings(const struct conf *c)
{
    struct conn_settings *t = calloc(1, sizeof(*t));
    struct server_names names;
    server_names(c, &names);
    if (t == NULL ||
        template_bind(&c->tcp.greeting_template, &names.values, &t->greeting_template) < 0) {
        free(t);
        return NULL;
    }
    /* Literal: every connection's greeting. Else its literal parts, until rendered. */
    t->greet = (struct proto_greet){t->greeting_template.text, t->greeting_template.text_len,
                                    c->tcp_max_line_bytes};
    t->mode = c->tcp.mode;
    t->buffer_bytes = c->tcp_buffer_bytes;
    t->idle_timeout_ms = c->idle_timeout_ms;
    t->send_timeout_ms = c->send_timeout_ms;
    t->proxy_timeout_ms = c->tcp_proxy_timeout_ms;
    return t;
}

/* A box publishing settings (NULL: out of memory) freed with free_settings. */
static int server_box(void *settings, void (*free_settings)(void *), struct snap_box **out)
{
    return settings == NULL ? -ENOMEM : snap_box_create(settings, free_settings, out);
}

/* Create and start the workers and the acceptor. */
static int server_start_tcp(struct server *s)
{
    s->nworkers = conf_worker_count(s->conf);
    s->workers = calloc(s->nworkers, sizeof(*s->workers));
    if (s->workers == NULL)
        return -ENOMEM;
    int rc =
        server_box(server_tcp_settings(s->conf, &s->tcp_ls), acceptor_settings_free, &s->tcp_box);
    if (rc == 0)
        rc = server_box(server_conn_settings(s->conf), server_conn_settings_free, &s->conn_box);
    if (rc == 0 && s->conf->max_connections_per_ip > 0)
        rc = iplimit_create(s->conf->max_connections_per_ip, s->conf->max_connections, &s->iplimit);
    if (rc == 0)
        rc = acceptor_create(s->tcp_box, s->conf->max_connections, s->iplimit, &s->acceptor);
    struct worker_hooks hooks = {acceptor_release, acceptor_room, s->acceptor, s->done_fd,
                                 s->iplimit};
    for (unsigned i = 0; rc == 0 && i < s->nworkers; i++) {
        rc = worker_create(s->conn_box, i, s->conf->queue_capacity, &hooks, &s->workers[i]);
        if (rc == 0 && (rc = worker_start(s->workers[i])) < 0) {
            worker_destroy(s->workers[i]);
            s->workers[i] = NULL;
        }
    }
    if (rc == 0)
        rc = acceptor_start(s->acceptor, s->workers, s->nworkers);
    return rc;
}

/* Say at start-up and on reload whether TCP clients come through a PROXY balancer. */
static void server_log_proxy(const struct conf *c)
{
    if (c->tcp_proxy_protocol == PROXY_OFF)
        return;
    log_info("tcp: PROXY protocol %s: a header is required, from the %zu network%s of "
             "tcp.proxy_from only; other peers are refused",
             proxy_accept_name(c->tcp_proxy_protocol), c->tcp_proxy_from_count,
             c->tcp_proxy_from_count == 1 ? "" : "s");
}

static void server_render_metrics(void *arg, struct promtext *t);

/* Whether m is one of the endpoints of the array `endpoints` (count of them, or NULL). */
static bool server_has_endpoint(struct metrics *const *endpoints, size_t count,
                                const struct metrics *m)
{
    for (size_t i = 0; endpoints && i < count; i++)
        if (endpoints[i] == m)
            return true;
    return false;
}

/* Stop each endpoint of `endpoints` (count of them, or NULL) that `keep` (keep_count, or
 * NULL) does not hold, and free the array. */
static void server_stop_metrics(struct metrics **endpoints, size_t count,
                                struct metrics *const *keep, size_t keep_count)
{
    for (size_t i = 0; endpoints && i < count; i++)
        if (endpoints[i] && !server_has_endpoint(keep, keep_count, endpoints[i]))
            metrics_stop(endpoints[i]);
    free(endpoints);
}

/* The endpoints serving each listener of set into *out (a new array): those of s that
 * already serve one are taken over, the others started. 0; or -errno with nothing new
 * left running (and *out NULL). */
static int server_start_metrics(struct server *s, const struct listener_set *set,
                                struct metrics ***out)
{
    struct metrics **endpoints = calloc(set->count ? set->count : 1, sizeof(*endpoints));
    if (endpoints == NULL)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < set->count; i++) {
        for (size_t k = 0; k < s->metrics_ls.count && s->endpoints && !endpoints[i]; k++)
            if (s->endpoints[k] && metrics_listener(s->endpoints[k]) == set->items[i])
                endpoints[i] = s->endpoints[k];
        if (endpoints[i] == NULL)
            rc = metrics_start(set->items[i], server_render_metrics, s, &endpoints[i]);
    }
    if (rc < 0) { /* stop only what was started here */
        server_stop_metrics(endpoints, set->count, s->endpoints, s->metrics_ls.count);
        endpoints = NULL;
    }
    *out = endpoints;
    return rc;
}

int server_start(struct server *s)
{
    int rc = 0;
    if (s->udp_ls.count > 0) {
        rc = server_box(server_udp_settings(s->conf, &s->udp_ls), udp_settings_free, &s->udp_box);
        if (rc == 0)
            rc = udp_create(s->udp_box, &s->udp);
        if (rc == 0 && (rc = udp_start(s->udp)) < 0)
            log_error("cannot start the UDP thread: %s", strerror(-rc));
    }
    if (rc == 0 && s->tcp_ls.count > 0 && (rc = server_start_tcp(s)) < 0)
        log_error("cannot start the TCP threads: %s", strerror(-rc));
    if (rc == 0 && s->tcp_ls.count > 0)
        server_log_proxy(s->conf);
    if (rc == 0 && (rc = server_start_metrics(s, &s->metrics_ls, &s->endpoints)) < 0)
        log_error("cannot start the metrics endpoint: %s", strerror(-rc));
    if (rc == 0)
        log_info("serving: %u worker%s, tcp %s, udp %s", s->nworkers, s->nworkers == 1 ? "" : "s",
                 s->tcp_ls.count ? proto_mode_name(s->conf->tcp.mode) : "off",
                 s->udp_ls.count ? proto_mode_name(s->conf->udp.mode) : "off");
    return rc;
}

/* A key that cannot change while echod runs: warn, naming the value kept, and keep it. */
static void server_keep(const char *key, unsigned *next, unsigned now, const char *why)
{
    if (*next == now)
        return;
    log_warn("reload: %s cannot change while echod runs (%s); keeping %u, not %u", key, why, now,
             *next);
    *next = now;
}

void server_reload_keep_fixed(const struct server *s, struct conf *next)
{
    const struct conf *c = s->conf;
    server_keep("workers", &next->workers, c->workers, "threads are started once");
    server_keep("queue_capacity", &next->queue_capacity, c->queue_capacity,
                "the queues are allocated once");
    if ((c->max_connections_per_ip == 0) != (next->max_connections_per_ip == 0))
        server_keep("max_connections_per_ip", &next->max_connections_per_ip,
                    c->max_connections_per_ip,
                    "turning the per-IP limit on or off needs a restart");
    if ((s->tcp_ls.count == 0) != (next->tcp.listen_count == 0))
        log_warn("reload: tcp cannot be turned %s while echod runs; its listen list is ignored",
                 s->tcp_ls.count == 0 ? "on" : "off");
    if ((s->udp_ls.count == 0) != (next->udp.listen_count == 0))
        log_warn("reload: udp cannot be turned %s while echod runs; its listen list is ignored",
                 s->udp_ls.count == 0 ? "on" : "off");
}

/* Publish a new value in box (NULL: out of memory). */
static int server_publish(struct snap_box *box, void *settings)
{
    return settings == NULL ? -ENOMEM : snap_box_publish(box, settings);
}

/* The listen lists of next, for the services that run: one that did not start stays
 * off (server_reload_keep_fixed warned). */
static int server_rebind(struct server *s, const struct conf *next, struct listener_set *sets,
                         char *err, size_t err_size)
{
    if (s->has_passed_sockets) {
        log_info("reload: the sockets came from systemd; tcp.listen, udp.listen and metrics.listen are ignored");
        const struct listener_set *now[SERVER_KINDS] = {&s->tcp_ls, &s->udp_ls, &s->metrics_ls};
        for (size_t k = 0; k < SERVER_KINDS; k++) {
            if (listener_set_copy(&sets[k], now[k]) < 0) {
                while (k-- > 0)
                    listener_set_clear(&sets[k]);
                return -ENOMEM;
            }
        }
        return 0;
    }
    struct conf lists = *next; /* a shallow copy: only its listen lists are changed */
    if (s->tcp_ls.count == 0)
        lists.tcp.listen_count = 0;
    if (s->udp_ls.count == 0)
        lists.udp.listen_count = 0;
    return server_bind(s, &lists, sets, err, err_size);
}

int server_reload(struct server *s, const struct conf *next, char *err, size_t err_size)
{
    struct listener_set sets[SERVER_KINDS];
    int rc = server_rebind(s, next, sets, err, err_size);
    if (rc < 0)
        return rc;
    struct listener_set tcp = sets[SERVER_TCP], udp = sets[SERVER_UDP];
    struct listener_set metrics_ls = sets[SERVER_METRICS];
    struct metrics **endpoints = NULL;
    if ((rc = server_start_metrics(s, &metrics_ls, &endpoints)) < 0) {
        snprintf(err, err_size, "cannot start the metrics endpoint: %s", strerror(-rc));
        for (size_t k = 0; k < SERVER_KINDS; k++)
            listener_set_clear(&sets[k]);
        return rc;
    }
    if (s->udp)
        rc = server_publish(s->udp_box, server_udp_settings(next, &udp));
    if (rc == 0 && s->acceptor)
        rc = server_publish(s->tcp_box, server_tcp_settings(next, &tcp));
    if (rc == 0 && s->conn_box)
        rc = server_publish(s->conn_box, server_conn_settings(next));
    if (rc < 0) { /* out of memory: what was published stays consistent on its own */
        snprintf(err, err_size, "out of memory");
        server_stop_metrics(endpoints, metrics_ls.count, s->endpoints, s->metrics_ls.count);
        for (size_t k = 0; k < SERVER_KINDS; k++)
            listener_set_clear(&sets[k]);
        return rc;
    }
    for (size_t i = 0; next->tcp_backlog != s->conf->tcp_backlog && i < tcp.count; i++)
        if (!tcp.items[i]->is_adopted) /* systemd's sockets keep the socket unit's backlog */
            listen(tcp.items[i]->fd, (int)next->tcp_backlog); /* on a listening socket: resize */
    server_stop_metrics(s->endpoints, s->metrics_ls.count, endpoints, metrics_ls.count);
    listener_set_clear(&s->tcp_ls);
    listener_set_clear(&s->udp_ls);
    listener_set_clear(&s->metrics_ls);
    s->tcp_ls = tcp;
    s->udp_ls = udp;
    if (s->acceptor && next->tcp_proxy_protocol != s->conf->tcp_proxy_protocol)
        server_log_proxy(next);
    s->metrics_ls = metrics_ls;
    s->endpoints = endpoints;
    if (s->acceptor) {
        acceptor_set_max_connections(s->acceptor, next->max_connections);
        acceptor_wake(s->acceptor);
    }
    if (s->iplimit)
        iplimit_set_limits(s->iplimit, next->max_connections_per_ip, next->max_connections);
    if (s->udp)
        udp_wake(s->udp);
    for (unsigned i = 0; i < s->nworkers; i++)
        if (s->workers[i])
            worker_wake(s->workers[i]);
    return 0;
}

void server_count_listeners(const struct server *s, const struct conf *next, size_t *tcp,
                            size_t *udp, size_t *metrics)
{
    bool is_current = next == NULL || s->has_passed_sockets;
    *tcp = is_current ? s->tcp_ls.count : (s->tcp_ls.count ? next->tcp.listen_count : 0);
    *udp = is_current ? s->udp_ls.count : (s->udp_ls.count ? next->udp.listen_count : 0);
    *metrics = is_current ? s->metrics_ls.count : next->metrics_listen_count;
}

bool server_is_alive(const struct server *s, uint64_t now_ms, uint64_t interval_ms)
{
    if (s->acceptor && !evloop_is_alive(acceptor_beat(s->acceptor), now_ms, interval_ms))
        return false;
    if (s->udp && !evloop_is_alive(udp_beat(s->udp), now_ms, interval_ms))
        return false;
    for (unsigned i = 0; i < s->nworkers; i++)
        if (s->workers[i] && !evloop_is_alive(worker_beat(s->workers[i]), now_ms, interval_ms))
            return false;
    return true;
}

void server_count_reload(struct server *s, bool is_applied)
{
    if (is_applied)
        server_note_load(s);
    stats_add(&s->stats, is_applied ? STAT_reloads : STAT_reload_failures, 1);
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
        if (s->acceptor)
            acceptor_stop(s->acceptor, clock_now_ms());
        server_drain_workers(s, clock_now_ms());
        return;
    }
    s->is_shutting_down = true;
    uint64_t deadline = clock_now_ms() + s->conf->shutdown_timeout_ms;
    log_info("shutting down: no longer accepting new clients; serving open connections and "
             "those already waiting for up to %u ms",
             s->conf->shutdown_timeout_ms);
    if (s->acceptor)
        acceptor_stop(s->acceptor, deadline); /* it drains the workers when it is done */
    else
        server_drain_workers(s, deadline);
    if (s->udp)
        udp_stop(s->udp);
    if (server_started_workers(s) == 0) {
        (void)eventfd_write(s->done_fd, 1); /* no worker will report: say "done" ourselves */
    }
}

bool server_is_shutting_down(const struct server *s)
{
    return s->is_shutting_down;
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
    struct stats *all[3 + CONF_MAX_WORKERS];
    size_t n = 0;
    all[n++] = &s->stats;
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

/* The gauges of the connections and queues, per worker and in all. */
static void server_render_workers(const struct server *s, struct promtext *t)
{
    unsigned open = 0;
    for (unsigned i = 0; i < s->nworkers; i++)
        open += s->workers[i] ? worker_connections(s->workers[i]) : 0;
    promtext_family(t, "echod_tcp_connections", "gauge", "open TCP connections");
    promtext_uint(t, "echod_tcp_connections", NULL, open);
    promtext_family(t, "echod_worker_connections", "gauge", "TCP connections a worker serves");
    for (unsigned i = 0; i < s->nworkers; i++) {
        char label[32];
        snprintf(label, sizeof(label), "worker=\"%u\"", i);
        promtext_uint(t, "echod_worker_connections", label,
                      s->workers[i] ? worker_connections(s->workers[i]) : 0);
    }
    promtext_family(t, "echod_worker_queue_length", "gauge",
                    "accepted sockets waiting in a worker's hand-off queue");
    for (unsigned i = 0; i < s->nworkers; i++) {
        char label[32];
        snprintf(label, sizeof(label), "worker=\"%u\"", i);
        promtext_uint(t, "echod_worker_queue_length", label,
                      s->workers[i] ? worker_queue_length(s->workers[i]) : 0);
    }
    struct histogram *all[CONF_MAX_WORKERS];
    size_t n = 0;
    for (unsigned i = 0; i < s->nworkers; i++)
        if (s->workers[i])
            all[n++] = worker_durations(s->workers[i]);
    struct histogram_totals h;
    histogram_sum(all, n, &h);
    double bounds[HISTOGRAM_BOUNDS];
    histogram_bounds_s(bounds);
    promtext_family(t, "echod_tcp_connection_duration_seconds", "histogram",
                    "how long closed TCP connections were open");
    promtext_histogram(t, "echod_tcp_connection_duration_seconds", bounds, h.counts,
                       HISTOGRAM_BOUNDS, (double)h.sum_ms / 1000.0);
}

/* The standard process_* metrics. */
static void server_render_process(const struct server *s, struct promtext *t)
{
    struct procself p;
    (void)procself_sample(&p); /* what could not be read is 0 */
    promtext_family(t, "process_cpu_seconds_total", "counter",
                    "Total user and system CPU time spent in seconds.");
    promtext_double(t, "process_cpu_seconds_total", NULL, p.cpu_seconds);
    promtext_family(t, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    promtext_uint(t, "process_resident_memory_bytes", NULL, p.resident_bytes);
    promtext_family(t, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    promtext_uint(t, "process_virtual_memory_bytes", NULL, p.virtual_bytes);
    promtext_family(t, "process_open_fds", "gauge", "Number of open file descriptors.");
    promtext_uint(t, "process_open_fds", NULL, p.open_fds);
    promtext_family(t, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    promtext_uint(t, "process_max_fds", NULL, p.max_fds);
    promtext_family(t, "process_start_time_seconds", "gauge",
                    "Start time of the process since unix epoch in seconds.");
    promtext_double(t, "process_start_time_seconds", NULL, s->start_time_s);
}

/* One scrape, on the metrics endpoint's thread. It reads only what the serving threads
 * publish lock-free (relaxed atomics: counters, gauges, histogram buckets) and what
 * never changes after server_start (the threads themselves), and takes no lock. */
static void server_render_metrics(void *arg, struct promtext *t)
{
    struct server *s = arg;
    uint64_t sum[STAT_COUNT];
    server_sum_stats(s, sum);
    for (int c = 0; c < STAT_COUNT; c++) {
        char name[96];
        snprintf(name, sizeof(name), "echod_%s_total", stats_name((enum stats_counter)c));
        promtext_family(t, name, "counter", stats_help((enum stats_counter)c));
        promtext_uint(t, name, NULL, sum[c]);
    }
    server_render_workers(s, t);
    size_t entries = 0, capacity = 0;
    if (s->udp)
        udp_guard_occupancy(s->udp, &entries, &capacity);
    promtext_family(t, "echod_udp_guard_entries", "gauge",
                    "networks the UDP reflection guard tracks");
    promtext_uint(t, "echod_udp_guard_entries", NULL, entries);
    promtext_family(t, "echod_udp_guard_capacity", "gauge",
                    "networks the UDP reflection guard can track (udp.guard.table_size)");
    promtext_uint(t, "echod_udp_guard_capacity", NULL, capacity);
    char version[64], label[80];
    promtext_escape_label(PACKAGE_VERSION, version, sizeof(version));
    snprintf(label, sizeof(label), "version=\"%s\"", version);
    promtext_family(t, "echod_build_info", "gauge", "always 1; the version echod was built as");
    promtext_uint(t, "echod_build_info", label, 1);
    promtext_family(t, "echod_config_reloads_total", "counter",
                    "SIGHUP reloads, applied (success) or refused (failure)");
    promtext_uint(t, "echod_config_reloads_total", "result=\"success\"", sum[STAT_reloads]);
    promtext_uint(t, "echod_config_reloads_total", "result=\"failure\"", sum[STAT_reload_failures]);
    promtext_family(t, "echod_config_last_reload_success_timestamp_seconds", "gauge",
                    "when the configuration in force was loaded (start-up or reload), Unix time");
    promtext_double(t, "echod_config_last_reload_success_timestamp_seconds", NULL,
                    (double)atomic_load_explicit(&s->last_reload_ms, memory_order_relaxed) /
                        1000.0);
    server_render_process(s, t);
}

void server_destroy(struct server *s)
{
    if (s == NULL)
        return;
    server_stop_metrics(s->endpoints, s->metrics_ls.count, NULL, 0); /* scrapes read the rest */
    if (s->acceptor) {
        acceptor_stop(s->acceptor, clock_now_ms());
        acceptor_join(s->acceptor);
    }
    if (s->udp)
        udp_stop(s->udp);
    server_drain_workers(s, clock_now_ms());
    for (unsigned i = 0; i < s->nworkers; i++) {
        if (s->workers[i]) {
            worker_join(s->workers[i]);
            worker_destroy(s->workers[i]); /* releases iplimit slots: keep the table */
        }
    }
    acceptor_destroy(s->acceptor);
    iplimit_destroy(s->iplimit);
    udp_destroy(s->udp);
    snap_box_destroy(s->udp_box);
    snap_box_destroy(s->tcp_box);
    snap_box_destroy(s->conn_box);
    listener_set_clear(&s->tcp_ls);
    listener_set_clear(&s->udp_ls);
    listener_set_clear(&s->metrics_ls);
    if (s->done_fd >= 0)
        close(s->done_fd);
    free(s->workers);
    free(s);
}
