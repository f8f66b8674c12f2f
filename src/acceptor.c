/* acceptor: one thread accepting on every TCP listener and handing each socket to the
 * least-loaded worker with room in its hand-off queue (see handoff.h for the fd
 * ownership rule). It owns a socket only between accept4() and the push, and closes it
 * itself only when refusing it (per-IP limit, fds exhausted, after the stop), with a
 * FIN, not a reset. It owns the TCP listeners' epoll set and closes the listeners when
 * it stops.
 *
 * DESIGN. A connection the kernel completed is never closed for lack of a queue slot:
 * the acceptor picks a worker before it accepts, and when every queue is full it stops
 * accepting (the kernel backlog holds the clients) until a worker empties its queue and
 * wakes it (acceptor_room, tcp_accept_queue_full). Likewise `live` counts accepted
 * connections not yet closed; the acceptor adds, and workers subtract through
 * acceptor_release() on their own threads. At max_connections the acceptor takes its
 * listeners out of epoll; the release that brings `live` back under the limit writes the
 * acceptor's eventfd and accepting resumes. Resource errors (EMFILE, ENOBUFS, ...) pause
 * accepting for a back-off instead of spinning on a listener that stays readable. Out of
 * fds, the acceptor first gives up its reserve fd for a moment to accept one waiting
 * client and close it at once (so clients get EOF rather than hang); during that back-off
 * any release also wakes it, since a closed connection frees an fd. Stopping: the
 * connections each backlog holds at the stop (TCP_INFO on a listener counts them) are
 * owed service and are taken in within the same limits until the shutdown deadline;
 * anything else that waits is closed with a FIN; then the listeners close and the
 * workers drain. Sockets it refuses (per-IP limit, a peer outside tcp.proxy_from, a
 * queue closed by a second stop signal) go to a droplog, written from the epoll loop at
 * most once per reason per ACCEPTOR_LOG_MS. */
#include "config.h"

#include "acceptor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "droplog.h"
#include "evloop.h"
#include "log.h"
#include "snap.h"
#include "sock.h"

#define ACCEPTOR_BATCH      64    /* accepts per listener per wake-up, for fairness */
#define ACCEPTOR_BACKOFF_MS 100   /* pause after a resource error */
#define ACCEPTOR_SWEEP_MAX  65536 /* accepts at most per listener when stopping */
#define ACCEPTOR_LOG_MS     10000 /* at most one refusal line per reason this often */

/* Why the acceptor closed a socket it had accepted, for the refusal log. */
enum acceptor_refusal { ACCEPTOR_REFUSED_PER_IP, ACCEPTOR_REFUSED_HANDOFF, ACCEPTOR_REFUSED_PROXY };

struct acceptor {
    struct snap_box *box;              /* where the main thread publishes acceptor_settings */
    struct snap *snap;                 /* acceptor thread only: the settings in force */
    uint64_t generation;               /* acceptor thread only: snap's generation */
    const struct acceptor_settings *s; /* acceptor thread only: snap's data */
    struct worker **workers;
    size_t nworkers;
    _Atomic unsigned max_connections;  /* main thread sets (reload); others read */
    struct iplimit *iplimit;           /* NULL without max_connections_per_ip */
    _Atomic unsigned live;             /* accepted, not yet closed: see DESIGN */
    _Atomic bool is_stopping;          /* set by acceptor_stop() */
    _Atomic uint64_t stop_deadline_ms; /* set by acceptor_stop() before is_stopping */
    _Atomic bool is_fd_starved;    /* acceptor sets: backing off for EMFILE/ENFILE; releases read */
    _Atomic bool is_queue_starved; /* acceptor sets: every queue full; workers' on_room reads */
    int wake_fd;                   /* eventfd: stop requests, releases, room in a queue */
    int epfd;
    struct evloop loop; /* over epfd; its beat is read by the watchdog */
    pthread_t thread;
    bool is_started;
    bool is_paused;         /* acceptor thread only: at the limit, queues full or backing off */
    bool is_listening;      /* acceptor thread only: listeners are in epoll */
    size_t *owed;           /* acceptor thread only, stopping: connections still to take in,
                               per listener of s */
    uint64_t resume_at_ms;  /* acceptor thread only: end of a back-off, or 0 */
    int backoff_err;        /* acceptor thread only: the error of the logged episode, or 0 */
    int reserve_fd;         /* acceptor thread only: /dev/null, given up when fds run out */
    size_t next_worker;     /* acceptor thread only: where the least-load scan starts */
    struct droplog refused; /* acceptor thread only: by enum acceptor_refusal */
    struct stats stats;     /* written by the acceptor thread only */
};

/* What the refusal log says for each enum acceptor_refusal. */
static const char *acceptor_describe_refusal(unsigned reason)
{
    static const char *const why[] = {
        [ACCEPTOR_REFUSED_PER_IP] = "client IP at max_connections_per_ip",
        [ACCEPTOR_REFUSED_HANDOFF] = "worker queues closed by a second stop signal",
        [ACCEPTOR_REFUSED_PROXY] = "peer not in tcp.proxy_from",
    };
    return why[reason];
}

/* The fd kept in reserve for running out of fds; -1 if it cannot be had. */
static int acceptor_open_reserve(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void acceptor_settings_free(void *settings)
{
    struct acceptor_settings *s = settings;
    if (s == NULL)
        return;
    listener_set_clear(&s->listeners);
    free(s->proxy_from);
    free(s);
}

int acceptor_create(struct snap_box *settings, unsigned max_connections, struct iplimit *iplimit,
                    struct acceptor **out)
{
    struct acceptor *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->box = settings;
    a->snap = snap_box_acquire(settings, &a->generation);
    a->s = snap_data(a->snap);
    atomic_init(&a->max_connections, max_connections);
    a->iplimit = iplimit;
    a->epfd = a->wake_fd = -1;
    a->is_listening = true; /* listener_watch registers them for input */
    droplog_init(&a->refused, "tcp: refused", "connection", acceptor_describe_refusal,
                 ACCEPTOR_LOG_MS);
    a->reserve_fd = acceptor_open_reserve();
    int rc = a->reserve_fd < 0 ? -errno : 0;
    if (rc == 0)
        rc = listener_watch(&a->s->listeners, &a->epfd, &a->wake_fd);
    if (rc == 0)
        evloop_init(&a->loop, "acceptor", a->epfd);
    if (rc < 0) {
        acceptor_destroy(a);
        return rc;
    }
    *out = a;
    return 0;
}

/* Register (op EPOLL_CTL_ADD), change (EPOLL_CTL_MOD) or remove (EPOLL_CTL_DEL) l in
 * the epoll set, for input while accepting. */
static void acceptor_watch(struct acceptor *a, int op, struct listener *l)
{
    struct epoll_event ev = {.events = a->is_listening ? EPOLLIN : 0, .data.ptr = l};
    if (epoll_ctl(a->epfd, op, l->fd, &ev) < 0)
        log_error("acceptor: epoll_ctl: %s", strerror(errno));
}

/* Listen (events = EPOLLIN) or stop listening (0) on every listener. */
static void acceptor_set_listening(struct acceptor *a, bool is_listening)
{
    if (a->is_listening == is_listening)
        return;
    a->is_listening = is_listening;
    for (size_t i = 0; i < a->s->listeners.count; i++)
        acceptor_watch(a, EPOLL_CTL_MOD, a->s->listeners.items[i]);
}

/* max_connections now. */
static unsigned acceptor_max(struct acceptor *a)
{
    return atomic_load_explicit(&a->max_connections, memory_order_relaxed);
}

/* Stop accepting until acceptor_can_resume(); `counter` says why, counted once per pause. */
static void acceptor_pause(struct acceptor *a, enum stats_counter counter)
{
    if (!a->is_paused)
        stats_add(&a->stats, counter, 1);
    a->is_paused = true;
    acceptor_set_listening(a, false);
}

/* The worker with the fewest connections among those with room in their queue, scanning
 * from a rotating start so ties spread round-robin; NULL when every queue is full. Only
 * this thread pushes, so the room it found is still there at the push. */
static struct worker *acceptor_pick_worker(struct acceptor *a)
{
    size_t best = a->nworkers;
    unsigned best_load = UINT_MAX;
    for (size_t k = 0; k < a->nworkers && best_load > 0; k++) {
        size_t i = (a->next_worker + k) % a->nworkers;
        unsigned load = worker_load(a->workers[i]);
        if (load < best_load && worker_has_room(a->workers[i])) {
            best = i;
            best_load = load;
        }
    }
    if (best == a->nworkers)
        return NULL;
    a->next_worker = (best + 1) % a->nworkers;
    return a->workers[best];
}

/* A worker with room, or NULL with is_queue_starved set, so that the next worker to
 * empty its queue wakes this thread. The second look, after the flag is set, closes the
 * race with a worker that emptied its queue while the flag was still clear. */
static struct worker *acceptor_pick_or_starve(struct acceptor *a)
{
    struct worker *w = acceptor_pick_worker(a);
    if (w != NULL)
        return w;
    atomic_store_explicit(&a->is_queue_starved, true, memory_order_seq_cst);
    w = acceptor_pick_worker(a);
    if (w != NULL)
        atomic_store_explicit(&a->is_queue_starved, false, memory_order_relaxed);
    return w;
}

enum acceptor_verdict acceptor_classify(int err)
{
    switch (err) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
        return ACCEPTOR_WAIT;
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case EPERM:
        return ACCEPTOR_RETRY;
    default:
        return ACCEPTOR_BACK_OFF;
    }
}

/* Pause accepting for a back-off after a resource error such as EMFILE. The warning is
 * logged once per episode: until an accept succeeds, the same error stays quiet. */
static void acceptor_back_off(struct acceptor *a, const struct listener *l, int err)
{
    atomic_store_explicit(&a->is_fd_starved, err == EMFILE || err == ENFILE, memory_order_release);
    if (a->backoff_err != err) {
        char where[ADDR_STRLEN];
        addr_format((const struct sockaddr *)&l->bound.ss, where, sizeof(where));
        log_warn("accept on tcp %s: %s; pausing accepts for %d ms at a time until an accept "
                 "succeeds",
                 where, strerror(err), ACCEPTOR_BACKOFF_MS);
        a->backoff_err = err;
    }
    stats_add(&a->stats, STAT_tcp_accept_failures, 1); /* every failure, not once a pause */
    a->is_paused = true;
    acceptor_set_listening(a, false);
    a->resume_at_ms = clock_now_ms() + ACCEPTOR_BACKOFF_MS;
}

/* An accept succeeded: a back-off episode, if any, is over. */
static void acceptor_end_episode(struct acceptor *a)
{
    if (a->backoff_err == 0)
        return;
    log_info("accepting again after %s", strerror(a->backoff_err));
    a->backoff_err = 0;
    atomic_store_explicit(&a->is_fd_starved, false, memory_order_release);
}

/* Out of fds: give up the reserve fd for a moment, accept one waiting client and close
 * it at once, so it gets EOF instead of hanging in the backlog; then take the reserve
 * back. */
static void acceptor_shed_one(struct acceptor *a, const struct listener *l)
{
    if (a->reserve_fd < 0 && (a->reserve_fd = acceptor_open_reserve()) < 0)
        return;
    close(a->reserve_fd);
    int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
        sock_close_clean(fd);
        stats_add(&a->stats, STAT_tcp_accepted, 1);
        stats_add(&a->stats, STAT_tcp_accept_emfile, 1);
    }
    a->reserve_fd = acceptor_open_reserve();
}

/* Refuse fd from peer: count `counter`, log `reason` (unless out of memory), close. */
static void acceptor_refuse(struct acceptor *a, int fd, const struct sockaddr_storage *peer,
                            enum stats_counter counter, enum acceptor_refusal reason)
{
    stats_add(&a->stats, counter, 1);
    if (counter != STAT_tcp_out_of_memory)
        droplog_note(&a->refused, reason, (const struct sockaddr *)peer, sizeof(*peer),
                     clock_now_ms());
    sock_close_clean(fd);
}

/* Admit fd from peer: a proxied listener takes balancers in proxy_from only, and the
 * worker counts the client once the header names it; otherwise the peer is the client
 * and is counted against max_connections_per_ip. False (fd closed) if refused. */
static bool acceptor_admit(struct acceptor *a, int fd, const struct sockaddr_storage *peer)
{
    const struct acceptor_settings *s = a->s;
    if (s->proxy != PROXY_OFF) {
        if (proxy_net_contains(s->proxy_from, s->proxy_from_count, (const struct sockaddr *)peer))
            return true;
        acceptor_refuse(a, fd, peer, STAT_tcp_proxy_refused, ACCEPTOR_REFUSED_PROXY);
        return false;
    }
    int rc = a->iplimit ? iplimit_admit(a->iplimit, (const struct sockaddr *)peer, fd) : 0;
    if (rc == 0)
        return true;
    acceptor_refuse(a, fd, peer, rc == -ENOMEM ? STAT_tcp_out_of_memory : STAT_tcp_per_ip_refused,
                    ACCEPTOR_REFUSED_PER_IP);
    return false;
}

/* What accept4() failing with err means for the caller of acceptor_accept_one. */
static int acceptor_accept_failed(struct acceptor *a, const struct listener *l, int err)
{
    enum acceptor_verdict v = acceptor_classify(err);
    if (v == ACCEPTOR_WAIT)
        return -EAGAIN;
    if (v == ACCEPTOR_RETRY) {
        stats_add(&a->stats, STAT_tcp_accept_retries, 1);
        return 0;
    }
    if (err == EMFILE || err == ENFILE)
        acceptor_shed_one(a, l);
    acceptor_back_off(a, l, err);
    return -EBUSY;
}

/* Accept one socket from l and hand it to a worker with room. 0 when a pending
 * connection was taken (served, refused or failed); -EAGAIN when none waits; -EBUSY when
 * accepting paused (max_connections, every queue full, or a back-off). */
static int acceptor_accept_one(struct acceptor *a, const struct listener *l)
{
    if (atomic_load_explicit(&a->live, memory_order_acquire) >= acceptor_max(a)) {
        acceptor_pause(a, STAT_tcp_accept_paused);
        return -EBUSY;
    }
    struct worker *w = acceptor_pick_or_starve(a);
    if (w == NULL) {
        acceptor_pause(a, STAT_tcp_accept_queue_full);
        return -EBUSY;
    }
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof(peer);
    /* The peer address costs nothing without a per-IP limit or a proxied listener. */
    bool has_check = a->iplimit != NULL || a->s->proxy != PROXY_OFF;
    int fd = accept4(l->fd, has_check ? (struct sockaddr *)&peer : NULL,
                     has_check ? &peer_len : NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return acceptor_accept_failed(a, l, errno);
    acceptor_end_episode(a);
    stats_add(&a->stats, STAT_tcp_accepted, 1);
    if (has_check && !acceptor_admit(a, fd, &peer))
        return 0;
    atomic_fetch_add_explicit(&a->live, 1, memory_order_acq_rel);
    if (worker_push(w, fd, a->s->proxy) < 0) {
        /* Only after a second stop signal closed the queues: the queue closed the socket
         * with a FIN. Only this thread opens sockets before their hand-off, and workers
         * admit only sockets they hold, so the fd number cannot have been counted again
         * meanwhile. */
        if (a->iplimit != NULL)
            iplimit_release(a->iplimit, fd);
        stats_add(&a->stats, STAT_tcp_handoff_refused, 1);
        droplog_note(&a->refused, ACCEPTOR_REFUSED_HANDOFF, has_check ? (void *)&peer : NULL,
                     sizeof(peer), clock_now_ms());
        atomic_fetch_sub_explicit(&a->live, 1, memory_order_acq_rel);
    }
    return 0;
}

/* Accept up to `max` sockets from l. */
static void acceptor_accept_batch(struct acceptor *a, const struct listener *l, size_t max)
{
    for (size_t i = 0; i < max; i++)
        if (acceptor_accept_one(a, l) < 0)
            break;
}

/* Whether a pause is over: the back-off ran out, a slot is free and a queue has room. */
static bool acceptor_can_resume(struct acceptor *a, uint64_t now_ms)
{
    if (a->resume_at_ms != 0 && now_ms < a->resume_at_ms)
        return false;
    a->resume_at_ms = 0;
    if (atomic_load_explicit(&a->live, memory_order_acquire) >= acceptor_max(a))
        return false;
    if (atomic_load_explicit(&a->is_queue_starved, memory_order_relaxed)) {
        if (acceptor_pick_worker(a) == NULL)
            return false; /* still full: the flag stays, so the next room wakes us */
        atomic_store_explicit(&a->is_queue_starved, false, memory_order_relaxed);
    }
    a->is_paused = false;
    return true;
}

/* The earlier of two waits in ms, where -1 means none. */
static int acceptor_min_wait(int a, int b)
{
    return a < 0 || (b >= 0 && b < a) ? b : a;
}

/* Milliseconds from now_ms until at_ms (0 if past), or -1 when at_ms is 0 (none). */
static int acceptor_until(uint64_t at_ms, uint64_t now_ms)
{
    if (at_ms == 0)
        return -1;
    return at_ms <= now_ms ? 0 : at_ms - now_ms > INT32_MAX ? INT32_MAX : (int)(at_ms - now_ms);
}

/* How long epoll_wait may sleep: until a back-off ends, refusal lines are due, or (when
 * stopping) the stop deadline. Writes the refusal lines that are due now. */
static int acceptor_wait_ms(struct acceptor *a, bool is_stopping, uint64_t now_ms)
{
    int wait = droplog_flush(&a->refused, now_ms, false);
    wait = acceptor_min_wait(wait, acceptor_until(a->resume_at_ms, now_ms));
    if (is_stopping)
        wait = acceptor_min_wait(wait, acceptor_until(atomic_load(&a->stop_deadline_ms), now_ms));
    return wait;
}

/* Connections the kernel has completed on l and not yet handed to accept(); TCP_INFO
 * reports them for a listener. When it cannot tell, as many as one sweep takes. */
static size_t acceptor_pending(const struct listener *l)
{
    struct tcp_info info;
    socklen_t len = sizeof(info);
    if (getsockopt(l->fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0 ||
        len < offsetof(struct tcp_info, tcpi_unacked) + sizeof(info.tcpi_unacked))
        return ACCEPTOR_SWEEP_MAX;
    return info.tcpi_unacked;
}

/* What a listener that stops (at shutdown, or removed by a reload) owes: the
 * connections its backlog holds now (`waiting`); later ones are refused. A SO_REUSEPORT
 * listener first has the kernel drop new SYNs (listener_refuse_syns: their clients
 * retry, then reach another process of the port's group), and then owes everything
 * that reaches its backlog until accept finds it empty, the handshakes already under
 * way included, so that no client of the group is refused. */
static size_t acceptor_owed_at_stop(struct listener *l, size_t *waiting)
{
    int rc = l->is_reuseport ? listener_refuse_syns(l) : -EOPNOTSUPP;
    if (l->is_reuseport && rc < 0)
        log_warn("cannot keep new clients off a stopping reuseport listener (%s): those that "
                 "come while it closes are refused",
                 strerror(-rc));
    *waiting = acceptor_pending(l);
    return rc == 0 ? ACCEPTOR_SWEEP_MAX : *waiting;
}

/* The stop began: stop listening, and note what each listener owes
 * (acceptor_owed_at_stop). An adopted socket owes nothing: what waits on it is
 * systemd's, for the next start. */
static void acceptor_begin_stop(struct acceptor *a)
{
    acceptor_set_listening(a, false);
    size_t total = 0, waiting = 0;
    const struct listener_set *ls = &a->s->listeners;
    if ((a->owed = calloc(ls->count ? ls->count : 1, sizeof(*a->owed))) == NULL)
        log_error("shutdown: out of memory: refusing the clients waiting in the backlog");
    for (size_t i = 0; a->owed && i < ls->count; i++) {
        if (ls->items[i]->is_adopted)
            continue;
        a->owed[i] = acceptor_owed_at_stop(ls->items[i], &waiting);
        total += waiting;
    }
    if (total > 0)
        log_info("shutdown: taking in %zu connection%s waiting in the listen backlog", total,
                 total == 1 ? "" : "s");
}

/* Take in what is owed, as slots and queue room allow. True once nothing more will be
 * taken in: all owed connections are in, or the stop deadline passed. */
static bool acceptor_take_owed(struct acceptor *a, uint64_t now_ms)
{
    if (now_ms >= atomic_load(&a->stop_deadline_ms))
        return true;
    if (a->is_paused && !acceptor_can_resume(a, now_ms))
        return false;
    for (size_t i = 0; a->owed && i < a->s->listeners.count; i++) {
        while (a->owed[i] > 0) {
            int rc = acceptor_accept_one(a, a->s->listeners.items[i]);
            if (rc == -EBUSY)
                return false; /* wait for a close, room in a queue, or the back-off */
            a->owed[i] = rc == -EAGAIN ? 0 : a->owed[i] - 1;
        }
    }
    return true;
}

/* Accept what waits on l and close it at once with a FIN; how many. */
static uint64_t acceptor_refuse_waiting(struct acceptor *a, const struct listener *l)
{
    uint64_t refused = 0;
    int fd;
    while (refused < ACCEPTOR_SWEEP_MAX && (fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
        sock_close_clean(fd);
        refused++;
    }
    stats_add(&a->stats, STAT_tcp_accepted, refused);
    stats_add(&a->stats, STAT_tcp_shutdown_refused, refused);
    return refused;
}

/* The end of the stop: close, with a FIN, what else waits in each backlog (clients that
 * came after the signal, or were still waiting at the deadline), stop the listeners so
 * the kernel refuses new clients, and let every worker drain until the deadline. */
static void acceptor_finish_stop(struct acceptor *a)
{
    uint64_t refused = 0;
    for (size_t i = 0; i < a->s->listeners.count; i++) {
        struct listener *l = a->s->listeners.items[i];
        if (l->is_adopted)
            continue; /* what waits there is systemd's, for the next start */
        refused += acceptor_refuse_waiting(a, l);
        listener_stop(l);
    }
    if (refused > 0)
        log_info("shutdown: refused %llu connection%s that came after the stop signal or were "
                 "still waiting at the deadline",
                 (unsigned long long)refused, refused == 1 ? "" : "s");
    uint64_t deadline = atomic_load(&a->stop_deadline_ms);
    for (size_t i = 0; i < a->nworkers; i++)
        worker_drain(a->workers[i], deadline);
    droplog_flush(&a->refused, clock_now_ms(), true);
}

/* A reload removed listener l: take in the clients waiting in its backlog while they
 * fit (without waiting for room; a reuseport listener first has new SYNs dropped, see
 * acceptor_owed_at_stop), and refuse the rest with a FIN rather than let the close reset
 * them. Connections accepted on it earlier are unaffected. */
static void acceptor_retire(struct acceptor *a, struct listener *l)
{
    acceptor_watch(a, EPOLL_CTL_DEL, l);
    if (l->is_adopted)
        return;
    size_t waiting;
    for (size_t owed = acceptor_owed_at_stop(l, &waiting); owed > 0; owed--)
        if (acceptor_accept_one(a, l) < 0)
            break;
    uint64_t refused = acceptor_refuse_waiting(a, l);
    if (refused > 0)
        log_info("reload: refused %llu connection%s waiting on a removed listener",
                 (unsigned long long)refused, refused == 1 ? "" : "s");
    listener_stop(l);
}

/* Take up the settings published last: watch added listeners, retire removed ones. The
 * old snapshot's release closes a removed listener once nothing else holds it. */
static void acceptor_take_settings(struct acceptor *a)
{
    uint64_t generation;
    struct snap *next = snap_box_acquire(a->box, &generation);
    const struct acceptor_settings *s = snap_data(next);
    /* The new set is in force before a listener retires: a pause that retiring may
     * cause must take every listener of the new set out of epoll. */
    struct snap *old = a->snap;
    const struct listener_set *now = &s->listeners, *before = &a->s->listeners;
    a->snap = next;
    a->s = s;
    a->generation = generation;
    for (size_t i = 0; i < now->count; i++)
        if (!listener_set_holds(before, now->items[i]))
            acceptor_watch(a, EPOLL_CTL_ADD, now->items[i]);
    for (size_t i = 0; i < before->count; i++)
        if (!listener_set_holds(now, before->items[i]))
            acceptor_retire(a, before->items[i]);
    snap_release(old);
}

/* Read the wake-up eventfd. A release during an fd back-off ends it early: a connection
 * closed, so an fd is free. */
static void acceptor_woken(struct acceptor *a)
{
    eventfd_t count;
    (void)eventfd_read(a->wake_fd, &count);
    if (atomic_load_explicit(&a->is_fd_starved, memory_order_acquire))
        a->resume_at_ms = 0;
}

static void *acceptor_main(void *arg)
{
    struct acceptor *a = arg;
    struct epoll_event events[16];
    bool is_stopping = false;
    uint64_t now = clock_now_ms();
    for (;;) {
        /* Before the wait, so that no event can name a listener retired meanwhile. */
        if (!is_stopping && snap_box_generation(a->box) != a->generation)
            acceptor_take_settings(a);
        int n = evloop_wait(&a->loop, events, 16, acceptor_wait_ms(a, is_stopping, now), &now);
        for (int i = 0; i < n; i++)
            if (events[i].data.ptr == NULL)
                acceptor_woken(a);
        if (!is_stopping && atomic_load(&a->is_stopping)) {
            is_stopping = true;
            acceptor_begin_stop(a);
        }
        if (is_stopping) {
            if (acceptor_take_owed(a, now))
                break;
            continue;
        }
        if (a->is_paused && acceptor_can_resume(a, now))
            acceptor_set_listening(a, true);
        for (int i = 0; i < n && !a->is_paused; i++)
            if (events[i].data.ptr != NULL)
                acceptor_accept_batch(a, events[i].data.ptr, ACCEPTOR_BATCH);
    }
    acceptor_finish_stop(a);
    return NULL;
}

int acceptor_start(struct acceptor *a, struct worker **workers, size_t nworkers)
{
    a->workers = workers;
    a->nworkers = nworkers;
    int rc = pthread_create(&a->thread, NULL, acceptor_main, a);
    if (rc != 0)
        return -rc;
    a->is_started = true;
    return 0;
}

void acceptor_stop(struct acceptor *a, uint64_t deadline_ms)
{
    atomic_store(&a->stop_deadline_ms, deadline_ms);
    atomic_store(&a->is_stopping, true);
    (void)eventfd_write(a->wake_fd, 1);
}

void acceptor_join(struct acceptor *a)
{
    if (!a->is_started)
        return;
    pthread_join(a->thread, NULL);
    a->is_started = false;
}

void acceptor_wake(struct acceptor *a)
{
    (void)eventfd_write(a->wake_fd, 1);
}

void acceptor_set_max_connections(struct acceptor *a, unsigned max_connections)
{
    atomic_store_explicit(&a->max_connections, max_connections, memory_order_relaxed);
    (void)eventfd_write(a->wake_fd, 1); /* a raised limit may end a pause */
}

void acceptor_release(void *acceptor)
{
    struct acceptor *a = acceptor;
    unsigned before = atomic_fetch_sub_explicit(&a->live, 1, memory_order_acq_rel);
    if (before >= acceptor_max(a) || atomic_load_explicit(&a->is_fd_starved, memory_order_acquire))
        (void)eventfd_write(a->wake_fd, 1);
}

void acceptor_room(void *acceptor)
{
    struct acceptor *a = acceptor;
    if (atomic_load_explicit(&a->is_queue_starved, memory_order_seq_cst))
        (void)eventfd_write(a->wake_fd, 1);
}

void acceptor_destroy(struct acceptor *a)
{
    if (a == NULL)
        return;
    if (a->wake_fd >= 0)
        close(a->wake_fd);
    if (a->epfd >= 0)
        close(a->epfd);
    if (a->reserve_fd >= 0)
        close(a->reserve_fd);
    free(a->owed);
    snap_release(a->snap);
    free(a);
}

const struct evloop_beat *acceptor_beat(const struct acceptor *a)
{
    return &a->loop.beat;
}

struct stats *acceptor_stats(struct acceptor *a)
{
    return &a->stats;
}
