/* acceptor: one thread accepting on every TCP listener and handing each socket to the
 * least-loaded worker through that worker's hand-off queue (see handoff.h for the fd
 * ownership rule). It owns a socket only between accept4() and the push, and closes it
 * itself only when refusing it (per-IP limit, fds exhausted), with a FIN, not a reset.
 *
 * DESIGN. `live` counts accepted connections not yet closed; the acceptor adds, and
 * workers subtract through acceptor_release() on their own threads. At max_connections
 * the acceptor takes its listeners out of epoll, so further clients wait in the kernel
 * backlog; the release that brings `live` back under the limit writes the acceptor's
 * eventfd and accepting resumes. Resource errors (EMFILE, ENOBUFS, ...) pause
 * accepting for a back-off instead of spinning on a listener that stays readable. Out
 * of fds, the acceptor first gives up its reserve fd for a moment to accept one waiting
 * client and close it at once (so clients get EOF rather than hang); during that back-off
 * any release also wakes it, since a closed connection frees an fd. Sockets it refuses
 * (per-IP limit, hand-off queue full) go to a droplog, written from the epoll loop at most
 * once per reason per ACCEPTOR_LOG_MS. */
#include "config.h"

#include "acceptor.h"

#include <errno.h>
#include <fcntl.h>
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
#include "log.h"

#define ACCEPTOR_BATCH      64    /* accepts per listener per wake-up, for fairness */
#define ACCEPTOR_BACKOFF_MS 100   /* pause after a resource error */
#define ACCEPTOR_SWEEP_MAX  65536 /* accepts at most in the final sweep */
#define ACCEPTOR_LOG_MS     10000 /* at most one refusal line per reason this often */

/* Why the acceptor closed a socket it had accepted, for the refusal log. */
enum acceptor_refusal { ACCEPTOR_REFUSED_PER_IP, ACCEPTOR_REFUSED_HANDOFF };

struct acceptor {
    const struct listener *ls;
    size_t count;
    struct worker **workers;
    size_t nworkers;
    unsigned max_connections;
    struct iplimit *iplimit;    /* NULL without max_connections_per_ip */
    _Atomic unsigned live;      /* accepted, not yet closed: see DESIGN */
    _Atomic bool is_stopping;   /* set once by acceptor_stop() */
    _Atomic bool is_fd_starved; /* acceptor sets: backing off for EMFILE/ENFILE; releases read */
    int wake_fd;                /* eventfd: stop requests and releases under the limit */
    int epfd;
    pthread_t thread;
    bool is_started;
    bool is_paused;         /* acceptor thread only: listeners out of epoll */
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
    return reason == ACCEPTOR_REFUSED_PER_IP ? "client IP at max_connections_per_ip"
                                             : "worker hand-off queue full (queue_capacity)";
}

/* The fd kept in reserve for running out of fds; -1 if it cannot be had. */
static int acceptor_open_reserve(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

int acceptor_create(const struct listener *ls, size_t count, unsigned max_connections,
                    struct iplimit *iplimit, struct acceptor **out)
{
    struct acceptor *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->ls = ls;
    a->count = count;
    a->max_connections = max_connections;
    a->iplimit = iplimit;
    droplog_init(&a->refused, "tcp: refused", "connection", acceptor_describe_refusal,
                 ACCEPTOR_LOG_MS);
    a->reserve_fd = acceptor_open_reserve();
    int rc = a->reserve_fd < 0 ? -errno : listener_watch(ls, count, &a->epfd, &a->wake_fd);
    if (rc < 0) {
        acceptor_destroy(a);
        return rc;
    }
    *out = a;
    return 0;
}

/* Listen (events = EPOLLIN) or stop listening (0) on every listener. */
static void acceptor_set_listening(struct acceptor *a, bool is_listening)
{
    for (size_t i = 0; i < a->count; i++) {
        struct epoll_event ev = {.events = is_listening ? EPOLLIN : 0,
                                 .data.ptr = (void *)&a->ls[i]};
        if (epoll_ctl(a->epfd, EPOLL_CTL_MOD, a->ls[i].fd, &ev) < 0)
            log_error("acceptor: epoll_ctl: %s", strerror(errno));
    }
    a->is_paused = !is_listening;
}

/* The worker with the fewest connections, scanning from a rotating start so ties
 * spread round-robin. */
static struct worker *acceptor_pick_worker(struct acceptor *a)
{
    size_t best = a->next_worker;
    unsigned best_load = worker_load(a->workers[best]);
    for (size_t k = 1; k < a->nworkers && best_load > 0; k++) {
        size_t i = (a->next_worker + k) % a->nworkers;
        unsigned load = worker_load(a->workers[i]);
        if (load < best_load) {
            best = i;
            best_load = load;
        }
    }
    a->next_worker = (best + 1) % a->nworkers;
    return a->workers[best];
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
    stats_add(&a->stats, STAT_tcp_accept_failures, 1);
    atomic_store_explicit(&a->is_fd_starved, err == EMFILE || err == ENFILE, memory_order_release);
    if (a->backoff_err != err) {
        char where[ADDR_STRLEN];
        addr_format((const struct sockaddr *)&l->bound.ss, where, sizeof(where));
        log_warn("accept on tcp %s: %s; pausing accepts for %d ms at a time until an accept "
                 "succeeds",
                 where, strerror(err), ACCEPTOR_BACKOFF_MS);
        a->backoff_err = err;
    }
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

/* Close a socket echod will not serve with a FIN, not a reset: closing with unread input
 * sends RST, so first discard (MSG_TRUNC, no copy) what the client may have sent. */
static void acceptor_close_clean(int fd)
{
    shutdown(fd, SHUT_WR);
    for (int i = 0; i < 4; i++)
        if (recv(fd, NULL, 1 << 16, MSG_TRUNC | MSG_DONTWAIT) <= 0)
            break;
    close(fd);
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
        acceptor_close_clean(fd);
        stats_add(&a->stats, STAT_tcp_accepted, 1);
        stats_add(&a->stats, STAT_tcp_accept_emfile, 1);
    }
    a->reserve_fd = acceptor_open_reserve();
}

/* Count fd against its IP's max_connections_per_ip; false (fd closed) if refused. */
static bool acceptor_admit(struct acceptor *a, int fd, const struct sockaddr_storage *peer)
{
    struct iplimit_key key;
    int rc = iplimit_key_of((const struct sockaddr *)peer, &key);
    if (rc == -EAFNOSUPPORT)
        return true; /* not an IP peer: nothing to count */
    if (rc == 0 && (rc = iplimit_acquire(a->iplimit, &key, fd)) == 0)
        return true;
    stats_add(&a->stats, rc == -ENOMEM ? STAT_tcp_out_of_memory : STAT_tcp_per_ip_refused, 1);
    if (rc != -ENOMEM)
        droplog_note(&a->refused, ACCEPTOR_REFUSED_PER_IP, (const struct sockaddr *)peer,
                     sizeof(*peer), clock_now_ms());
    acceptor_close_clean(fd);
    return false;
}

/* Accept one socket from l and hand it over. 0 to go on, -EAGAIN to stop for now. */
static int acceptor_accept_one(struct acceptor *a, const struct listener *l)
{
    if (atomic_load_explicit(&a->live, memory_order_acquire) >= a->max_connections) {
        if (!a->is_paused)
            stats_add(&a->stats, STAT_tcp_accept_paused, 1);
        acceptor_set_listening(a, false);
        return -EAGAIN;
    }
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof(peer);
    bool has_limit = a->iplimit != NULL; /* the peer address costs nothing without it */
    int fd = accept4(l->fd, has_limit ? (struct sockaddr *)&peer : NULL,
                     has_limit ? &peer_len : NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        enum acceptor_verdict v = acceptor_classify(err);
        if (v == ACCEPTOR_RETRY)
            stats_add(&a->stats, STAT_tcp_accept_retries, 1);
        if (v != ACCEPTOR_BACK_OFF)
            return v == ACCEPTOR_RETRY ? 0 : -EAGAIN;
        if (err == EMFILE || err == ENFILE)
            acceptor_shed_one(a, l);
        acceptor_back_off(a, l, err);
        return -EAGAIN;
    }
    acceptor_end_episode(a);
    stats_add(&a->stats, STAT_tcp_accepted, 1);
    if (has_limit && !acceptor_admit(a, fd, &peer))
        return 0;
    atomic_fetch_add_explicit(&a->live, 1, memory_order_acq_rel);
    if (worker_push(acceptor_pick_worker(a), fd) < 0) {
        /* The queue closed the socket; it never became a connection. Only this thread
         * acquires, so the fd number cannot have been counted again meanwhile. */
        if (has_limit)
            iplimit_release(a->iplimit, fd);
        stats_add(&a->stats, STAT_tcp_handoff_refused, 1);
        droplog_note(&a->refused, ACCEPTOR_REFUSED_HANDOFF, has_limit ? (void *)&peer : NULL,
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

/* Resume after a back-off that has run out, or once a slot is free again. */
static void acceptor_maybe_resume(struct acceptor *a, uint64_t now_ms)
{
    if (!a->is_paused)
        return;
    if (a->resume_at_ms != 0 && now_ms < a->resume_at_ms)
        return;
    if (atomic_load_explicit(&a->live, memory_order_acquire) >= a->max_connections)
        return;
    a->resume_at_ms = 0;
    acceptor_set_listening(a, true);
}

/* How long epoll_wait may sleep: until a back-off ends or refusal lines are due. Writes
 * the refusal lines that are due now. */
static int acceptor_wait_ms(struct acceptor *a, uint64_t now_ms)
{
    int wait = droplog_flush(&a->refused, now_ms, false);
    if (a->resume_at_ms == 0)
        return wait;
    int resume = now_ms >= a->resume_at_ms ? 0 : (int)(a->resume_at_ms - now_ms);
    return wait < 0 || resume < wait ? resume : wait;
}

static void *acceptor_main(void *arg)
{
    struct acceptor *a = arg;
    struct epoll_event events[16];
    while (!atomic_load(&a->is_stopping)) {
        int n = epoll_wait(a->epfd, events, 16, acceptor_wait_ms(a, clock_now_ms()));
        for (int i = 0; i < n; i++) {
            eventfd_t count;
            if (events[i].data.ptr != NULL)
                continue;
            (void)eventfd_read(a->wake_fd, &count);
            if (atomic_load_explicit(&a->is_fd_starved, memory_order_acquire))
                a->resume_at_ms = 0; /* a connection closed: an fd is free, try now */
        }
        acceptor_maybe_resume(a, clock_now_ms());
        for (int i = 0; i < n && !a->is_paused; i++)
            if (events[i].data.ptr != NULL)
                acceptor_accept_batch(a, events[i].data.ptr, ACCEPTOR_BATCH);
    }
    /* Connections the kernel already completed are clients waiting for an answer:
     * take them in (within the limit) rather than let closing the listener reset them. */
    for (size_t i = 0; i < a->count; i++)
        acceptor_accept_batch(a, &a->ls[i], ACCEPTOR_SWEEP_MAX);
    droplog_flush(&a->refused, clock_now_ms(), true);
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

void acceptor_stop(struct acceptor *a)
{
    if (!a->is_started)
        return;
    atomic_store(&a->is_stopping, true);
    (void)eventfd_write(a->wake_fd, 1);
    pthread_join(a->thread, NULL);
    a->is_started = false;
}

void acceptor_release(void *acceptor)
{
    struct acceptor *a = acceptor;
    unsigned before = atomic_fetch_sub_explicit(&a->live, 1, memory_order_acq_rel);
    if (before >= a->max_connections ||
        atomic_load_explicit(&a->is_fd_starved, memory_order_acquire))
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
    free(a);
}

struct stats *acceptor_stats(struct acceptor *a)
{
    return &a->stats;
}
