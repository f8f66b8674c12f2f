/* worker: one thread, one epoll loop, many connections. The worker owns every socket it
 * pops from its hand-off queue (the fd ownership rule is in handoff.h) and everything
 * in its conn_set; only its own thread touches them. Other threads see only `load`
 * (atomic) and `deadline_ms` (atomic), and reach the thread through the queue.
 *
 * DESIGN. The acceptor pushes sockets into this worker's queue and the queue's eventfd
 * wakes the loop. worker_drain() closes the queue: the worker takes what is still
 * queued, keeps serving until every connection has closed or the deadline passes, then
 * answers what it can, closes the rest and ends. */
#include "config.h"

#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "conn.h"
#include "evloop.h"
#include "handoff.h"
#include "log.h"
#include "snap.h"

#define WORKER_EVENTS 256

struct worker {
    struct worker_hooks hooks;
    struct handoff *queue;
    struct conn_set *conns;
    int epfd;
    struct evloop loop; /* over epfd; its beat is read by the watchdog */
    pthread_t thread;
    bool is_started;
    bool is_draining;             /* worker thread only: the queue is closed and empty */
    _Atomic unsigned load;        /* pushed and not yet closed; acceptor adds, worker subtracts */
    _Atomic uint64_t deadline_ms; /* drain deadline (CLOCK_MONOTONIC ms); 0 while serving */
    struct stats stats;           /* written by the worker thread only */
    struct histogram durations;   /* its connections' lifetimes; worker thread writes */
    struct snap_box *box;         /* where the main thread publishes conn_settings */
    char name[12];                /* its index in decimal: {worker} in greetings */
    uint64_t generation;          /* worker thread only: the settings in force */
};

/* conn_set tells us each close: the load drops, and whoever runs us hears of it. */
static void worker_on_close(void *arg)
{
    struct worker *w = arg;
    atomic_fetch_sub_explicit(&w->load, 1, memory_order_relaxed);
    w->hooks.on_close(w->hooks.arg);
}

/* The connection set is done with a settings snapshot. */
static void worker_release_settings(void *snap)
{
    snap_release(snap);
}

/* Hand the settings published last to the connection set (see conn_set_use). */
static int worker_take_settings(struct worker *w)
{
    struct snap *snap = snap_box_acquire(w->box, &w->generation);
    return conn_set_use(w->conns, snap_data(snap), worker_release_settings, snap);
}

int worker_create(struct snap_box *settings, unsigned index, unsigned queue_capacity,
                  const struct worker_hooks *hooks, struct worker **out)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    snprintf(w->name, sizeof(w->name), "%u", index);
    w->hooks = *hooks;
    w->box = settings;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    int rc = w->epfd < 0 ? -errno : handoff_create(queue_capacity, &w->queue);
    struct conn_hooks ch = {hooks->iplimit, worker_on_close, w, w->name, &w->durations};
    if (rc == 0)
        rc = conn_set_create(&ch, w->epfd, &w->stats, &w->conns);
    if (rc == 0)
        rc = worker_take_settings(w);
    if (rc == 0) {
        evloop_init(&w->loop, "worker", w->epfd);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, handoff_wake_fd(w->queue), &ev) < 0)
            rc = -errno;
    }
    if (rc < 0) {
        worker_destroy(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* Take every queued socket; notice when the queue has been closed. An acceptor that
 * waits for room hears of it once the queue is empty again. */
static void worker_take_sockets(struct worker *w, uint64_t now_ms)
{
    int fd;
    unsigned proxy;
    int rc;
    bool has_taken = false;
    handoff_clear_wake(w->queue);
    while ((rc = handoff_pop(w->queue, &fd, &proxy)) == 0) {
        conn_set_adopt(w->conns, fd, (enum proxy_accept)proxy, now_ms);
        has_taken = true;
    }
    if (rc == -EPIPE)
        w->is_draining = true;
    if (has_taken)
        w->hooks.on_room(w->hooks.arg);
}

/* How long epoll_wait may sleep: until the next connection timeout or the deadline. */
static int worker_wait_ms(struct worker *w, uint64_t now_ms)
{
    int wait = conn_set_next_expiry_ms(w->conns, now_ms);
    if (!w->is_draining)
        return wait;
    uint64_t deadline = atomic_load_explicit(&w->deadline_ms, memory_order_acquire);
    int until = deadline <= now_ms ? 0 : (int)(deadline - now_ms);
    return wait < 0 || until < wait ? until : wait;
}

/* One pass of the loop: wait, then handle every event and due timeout. */
static void worker_run_once(struct worker *w)
{
    struct epoll_event events[WORKER_EVENTS];
    uint64_t now = clock_now_ms();
    if (snap_box_generation(w->box) != w->generation && worker_take_settings(w) < 0)
        log_error("worker: out of memory: keeping the TCP settings in force");
    int n = evloop_wait(&w->loop, events, WORKER_EVENTS, worker_wait_ms(w, now), &now);
    for (int i = 0; i < n; i++) {
        if (events[i].data.ptr == NULL)
            worker_take_sockets(w, now);
        else
            conn_set_handle(w->conns, events[i].data.ptr, events[i].events, now);
    }
    conn_set_expire(w->conns, now);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (;;) {
        worker_run_once(w);
        if (!w->is_draining)
            continue;
        if (conn_set_count(w->conns) == 0)
            break;
        if (atomic_load_explicit(&w->deadline_ms, memory_order_acquire) <= clock_now_ms()) {
            worker_take_sockets(w, clock_now_ms());
            conn_set_close_all(w->conns);
            break;
        }
    }
    (void)eventfd_write(w->hooks.done_fd, 1);
    return NULL;
}

int worker_start(struct worker *w)
{
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0)
        return -rc;
    w->is_started = true;
    return 0;
}

int worker_push(struct worker *w, int fd, enum proxy_accept proxy)
{
    atomic_fetch_add_explicit(&w->load, 1, memory_order_relaxed);
    int rc = handoff_push(w->queue, fd, (unsigned)proxy);
    if (rc < 0)
        atomic_fetch_sub_explicit(&w->load, 1, memory_order_relaxed);
    return rc;
}

bool worker_has_room(struct worker *w)
{
    return handoff_has_room(w->queue);
}

void worker_wake(struct worker *w)
{
    (void)eventfd_write(handoff_wake_fd(w->queue), 1);
}

unsigned worker_load(const struct worker *w)
{
    return atomic_load_explicit(&w->load, memory_order_relaxed);
}

void worker_drain(struct worker *w, uint64_t deadline_ms)
{
    /* The store is released before the queue's lock and eventfd wake the worker. */
    atomic_store_explicit(&w->deadline_ms, deadline_ms ? deadline_ms : 1, memory_order_release);
    handoff_close(w->queue);
}

void worker_join(struct worker *w)
{
    if (w->is_started)
        pthread_join(w->thread, NULL);
    w->is_started = false;
}

void worker_destroy(struct worker *w)
{
    if (w == NULL)
        return;
    conn_set_destroy(w->conns);
    handoff_destroy(w->queue);
    if (w->epfd >= 0)
        close(w->epfd);
    free(w);
}

const struct evloop_beat *worker_beat(const struct worker *w)
{
    return &w->loop.beat;
}

struct stats *worker_stats(struct worker *w)
{
    return &w->stats;
}

struct histogram *worker_durations(struct worker *w)
{
    return &w->durations;
}

unsigned worker_connections(const struct worker *w)
{
    /* The load (pushed and not yet closed; a socket that could not be adopted counts
     * as closed too, so the figure cannot drift) less the sockets still queued. Two
     * reads, no lock: a socket pushed, popped or closed between them can be off by
     * one for a moment, never below zero. */
    size_t queued = handoff_length(w->queue);
    unsigned load = atomic_load_explicit(&w->load, memory_order_relaxed);
    return load > queued ? load - (unsigned)queued : 0;
}

size_t worker_queue_length(const struct worker *w)
{
    return handoff_length(w->queue);
}
