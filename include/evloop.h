/* evloop: the epoll_wait every serving thread (acceptor, workers, UDP) sleeps in, with
 * one error path for all of them and the liveness beat the systemd watchdog reads. */
#ifndef ECHOD_EVLOOP_H
#define ECHOD_EVLOOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

/* How a thread shows it is alive: written by its own thread, read by the main thread. */
struct evloop_beat {
    _Atomic uint64_t beat_ms; /* CLOCK_MONOTONIC ms when it last went to sleep or woke */
    _Atomic bool is_asleep;   /* inside epoll_wait: nothing to do, so alive */
};

struct evloop {
    const char *name; /* "worker", "udp", ... for the error log */
    int epfd;
    int failing_err;         /* owner thread only: errno of the logged failure, or 0 */
    struct evloop_beat beat; /* see above */
};

/* A loop named name over epfd (which the caller keeps owning). */
void evloop_init(struct evloop *l, const char *name, int epfd);
/* epoll_wait for up to timeout_ms (-1: no limit). *now_ms is the time the caller last
 * read and becomes the time after waking. Returns the events (0 on EINTR or on a
 * failure, which is logged once per episode and followed by a short pause so that a
 * broken epoll fd cannot spin the thread). */
int evloop_wait(struct evloop *l, struct epoll_event *events, int max, int timeout_ms,
                uint64_t *now_ms);
/* The watchdog's rule: a thread is alive if it sleeps in epoll_wait (idle) or has gone
 * through its loop within the last interval_ms (busy). Pure; any thread. */
bool evloop_is_alive(const struct evloop_beat *b, uint64_t now_ms, uint64_t interval_ms);

#endif
