/* acceptor: the thread that accepts on every TCP listener and hands sockets to the
 * least-loaded worker with room in its queue, pausing while max_connections are open or
 * every queue is full. It never closes a connection for lack of a queue slot. */
#ifndef ECHOD_ACCEPTOR_H
#define ECHOD_ACCEPTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iplimit.h"
#include "listener.h"
#include "proxy.h"
#include "stats.h"
#include "worker.h"

struct acceptor;
struct snap_box;

/* What the acceptor accepts on: server.c builds it and publishes a new one when a
 * reload changes the listeners (see snap.h). Holds a reference to each listener. */
struct acceptor_settings {
    struct listener_set listeners; /* the TCP listeners */
    enum proxy_accept proxy; /* tcp.proxy_protocol: PROXY_OFF, or clients come through a balancer */
    struct proxy_net *proxy_from; /* the balancers allowed when proxied (owned; free()) */
    size_t proxy_from_count;
};

/* What accept4() failing with an errno calls for. */
enum acceptor_verdict {
    ACCEPTOR_WAIT,     /* EAGAIN: nothing waits; sleep until the listener is readable */
    ACCEPTOR_RETRY,    /* the pending connection failed (ECONNABORTED, ...): accept again */
    ACCEPTOR_BACK_OFF, /* out of a resource (EMFILE, ENOBUFS, ...) or a bug: pause */
};

/* Free an acceptor_settings, dropping its listener references (the box's free). */
void acceptor_settings_free(void *settings);
/* An acceptor (not yet running) over the TCP listeners published in the settings box,
 * counting connections per IP in iplimit (NULL: no per-IP limit); 0 or -errno. When the
 * settings name a PROXY version, it refuses peers outside proxy_from and leaves the per-IP
 * count to the worker, which learns the client from the PROXY header. */
int acceptor_create(struct snap_box *settings, unsigned max_connections, struct iplimit *iplimit,
                    struct acceptor **out);
/* Make the thread take up newly published settings now (any thread). */
void acceptor_wake(struct acceptor *a);
/* Classify accept4()'s errno err (accept(2): network errors a pending connection
 * carries, and a firewall's EPERM, are retried at once). */
enum acceptor_verdict acceptor_classify(int err);
/* Start the thread, handing sockets to workers[0..nworkers); 0 or -errno. */
int acceptor_start(struct acceptor *a, struct worker **workers, size_t nworkers);
/* Begin the stop (main thread) and return at once. The thread stops accepting new
 * clients, takes in the connections the kernel had completed in the backlogs by now, as
 * slots and queue room free up, until deadline_ms (CLOCK_MONOTONIC); then it closes
 * what else waits with a FIN, closes the TCP listeners, lets every worker drain until
 * deadline_ms, and ends. Calling again moves the deadline (a second signal: now). */
void acceptor_stop(struct acceptor *a, uint64_t deadline_ms);
/* Wait for the thread to end; call acceptor_stop first. */
void acceptor_join(struct acceptor *a);
/* Change max_connections (a reload; any thread): open connections over a lowered limit
 * stay, new ones wait until they fit. */
void acceptor_set_max_connections(struct acceptor *a, unsigned max_connections);
/* A connection closed (any thread): accepting resumes if it was paused at the limit. */
void acceptor_release(void *acceptor);
/* A worker took sockets from its queue (its thread): accepting resumes if it was paused
 * because every queue was full. */
void acceptor_room(void *acceptor);
/* Free the acceptor; its thread must have ended. */
void acceptor_destroy(struct acceptor *a);
/* The acceptor thread's liveness beat (see evloop.h), for the watchdog. */
const struct evloop_beat *acceptor_beat(const struct acceptor *a);
/* The acceptor's counters. */
struct stats *acceptor_stats(struct acceptor *a);

#endif
