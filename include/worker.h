/* worker: a thread running one epoll loop over many connections (see conn.h) and its
 * hand-off queue (see handoff.h for the fd ownership rule). */
#ifndef ECHOD_WORKER_H
#define ECHOD_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evloop.h"
#include "histogram.h"
#include "proxy.h"
#include "iplimit.h"
#include "stats.h"

struct worker;

/* How a worker reports back to whoever runs it. */
struct worker_hooks {
    void (*on_close)(void *arg); /* called on the worker thread after each close (not at
                                    worker_destroy: the thread has ended by then) */
    void (*on_room)(void *arg);  /* called on the worker thread after it took sockets */
    void *arg;
    int done_fd;             /* eventfd the worker adds 1 to when its thread ends */
    struct iplimit *iplimit; /* each close releases its IP's slot; NULL: no per-IP limit */
};

struct snap_box;

/* Worker number `index` (from 0; {worker} in greetings), not yet running, with a
 * hand-off queue of queue_capacity sockets, serving
 * connections with the conn_settings published in the box (a reload publishes new ones:
 * see conn.h for what applies to whom); 0 or -errno. */
int worker_create(struct snap_box *settings, unsigned index, unsigned queue_capacity,
                  const struct worker_hooks *hooks, struct worker **out);
/* Make the thread take up newly published settings now (any thread). */
void worker_wake(struct worker *w);
/* Start the thread; 0 or -errno. */
int worker_start(struct worker *w);
/* Hand an accepted socket to the worker (acceptor thread), with the PROXY header the
 * acceptor admitted it for (PROXY_OFF: a direct client), so that both threads treat it
 * alike whatever settings each holds during a reload. Takes ownership of fd as
 * handoff_push does; 0 or -errno. */
int worker_push(struct worker *w, int fd, enum proxy_accept proxy);
/* Whether worker_push would find room in the queue now (acceptor thread). */
bool worker_has_room(struct worker *w);
/* Connections assigned to the worker and not yet closed (any thread; approximate). */
unsigned worker_load(const struct worker *w);
/* Stop taking sockets; serve the open ones until their clients close or deadline_ms
 * (CLOCK_MONOTONIC) passes; then the thread ends. Calling again moves the deadline. */
void worker_drain(struct worker *w, uint64_t deadline_ms);
/* Wait for the thread to end. */
void worker_join(struct worker *w);
/* Free the worker; its thread must have ended or never started. */
void worker_destroy(struct worker *w);
/* The worker thread's liveness beat (see evloop.h), for the watchdog. */
const struct evloop_beat *worker_beat(const struct worker *w);
/* The worker's counters. */
struct stats *worker_stats(struct worker *w);
/* The lifetimes of the worker's closed connections. */
struct histogram *worker_durations(struct worker *w);
/* Connections the worker serves now: taken from its queue and not closed (any
 * thread, lock-free; approximate by the sockets that move while it reads). */
unsigned worker_connections(const struct worker *w);
/* Sockets waiting in the worker's hand-off queue (any thread, lock-free). */
size_t worker_queue_length(const struct worker *w);

#endif
