/* acceptor: one thread accepting on every TCP listener and handing each socket to the
 * least-loaded worker through that worker's hand-off queue (see handoff.h for the fd
 * ownership rule). It owns a socket only between accept4() and the push.
 *
 * DESIGN. `live` counts accepted connections not yet closed; the acceptor adds, and
 * workers subtract through acceptor_release() on their own threads. At max_connections
 * the acceptor takes its listeners out of epoll, so further clients wait in the kernel
 * backlog; the release that brings `live` back under the limit writes the acceptor's
 * eventfd and accepting resumes. Resource errors (EMFILE, ENOBUFS, ...) pause
 * accepting for a back-off instead of spinning on a listener that stays readable. */
#include "config.h"

#include "acceptor.h"

#include <errno.h>
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
#include "log.h"

#define ACCEPTOR_BATCH      64    /* accepts per listener per wake-up, for fairness */
#define ACCEPTOR_BACKOFF_MS 100   /* pause after a resource error */
#define ACCEPTOR_SWEEP_MAX  65536 /* accepts at most in the final sweep */

struct acceptor {
    const struct listener *ls;
    size_t count;
    struct worker **workers;
    size_t nworkers;
    unsigned max_connections;
    _Atomic unsigned live;    /* accepted, not yet closed: see DESIGN */
    _Atomic bool is_stopping; /* set once by acceptor_stop() */
    int wake_fd;              /* eventfd: stop requests and releases under the limit */
    int epfd;
    pthread_t thread;
    bool is_started;
    bool is_paused;        /* acceptor thread only: listeners out of epoll */
    uint64_t resume_at_ms; /* acceptor thread only: end of a back-off, or 0 */
    size_t next_worker;    /* acceptor thread only: where the least-load scan starts */
    struct stats stats;    /* written by the acceptor thread only */
};

int acceptor_create(const struct listener *ls, size_t count, unsigned max_connections,
                    struct acceptor **out)
{
    struct acceptor *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->ls = ls;
    a->count = count;
    a->max_connections = max_connections;
    int rc = listener_watch(ls, count, &a->epfd, &a->wake_fd);
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

/* Errors after which the next accept may well succeed: accept(2) lists the network
 * errors a pending connection can carry, and a firewall can refuse one (EPERM). */
static bool acceptor_is_retryable(int err)
{
    switch (err) {
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
        return true;
    default:
        return false;
    }
}

/* Pause accepting for a back-off after a resource error such as EMFILE. */
static void acceptor_back_off(struct acceptor *a, const struct listener *l, int err)
{
    stats_add(&a->stats, STAT_tcp_accept_failures, 1);
    char where[ADDR_STRLEN];
    addr_format((const struct sockaddr *)&l->bound.ss, where, sizeof(where));
    log_warn("accept on tcp %s: %s; pausing accepts for %d ms", where, strerror(err),
             ACCEPTOR_BACKOFF_MS);
    acceptor_set_listening(a, false);
    a->resume_at_ms = clock_now_ms() + ACCEPTOR_BACKOFF_MS;
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
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK)
            return -EAGAIN;
        if (acceptor_is_retryable(err)) {
            stats_add(&a->stats, STAT_tcp_accept_retries, 1);
            return 0;
        }
        acceptor_back_off(a, l, err);
        return -EAGAIN;
    }
    atomic_fetch_add_explicit(&a->live, 1, memory_order_acq_rel);
    stats_add(&a->stats, STAT_tcp_accepted, 1);
    if (worker_push(acceptor_pick_worker(a), fd) < 0) {
        /* The queue closed the socket; it never became a connection. */
        stats_add(&a->stats, STAT_tcp_handoff_refused, 1);
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

static void *acceptor_main(void *arg)
{
    struct acceptor *a = arg;
    struct epoll_event events[16];
    while (!atomic_load(&a->is_stopping)) {
        int wait = -1;
        if (a->resume_at_ms != 0) {
            uint64_t now = clock_now_ms();
            wait = now >= a->resume_at_ms ? 0 : (int)(a->resume_at_ms - now);
        }
        int n = epoll_wait(a->epfd, events, 16, wait);
        for (int i = 0; i < n; i++) {
            eventfd_t count;
            if (events[i].data.ptr == NULL)
                (void)eventfd_read(a->wake_fd, &count);
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
    if (before >= a->max_connections)
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
    free(a);
}

struct stats *acceptor_stats(struct acceptor *a)
{
    return &a->stats;
}
