/* metrics: the Prometheus endpoint. One HTTP server (libmicrohttpd, with its own
 * polling thread) per metrics listener, answering GET and HEAD /metrics in the text
 * format 0.0.4 with what its render callback writes, and nothing else. Started and
 * stopped by the main thread. */
#ifndef ECHOD_METRICS_H
#define ECHOD_METRICS_H

#include "listener.h"
#include "promtext.h"

/* Connections one endpoint serves at once, and from one client IP address. */
#define METRICS_MAX_CONNECTIONS 32
#define METRICS_MAX_PER_IP      8
/* A connection that sends nothing for this long is closed (a slowloris). */
#define METRICS_TIMEOUT_S 10
/* Memory a connection may use for its request; more headers get 431. */
#define METRICS_MEMORY_BYTES (32 * 1024)
/* The fds one endpoint may hold: its connections, its listener, its thread's epoll and
 * wake-up fds, and one for /proc/self/fd during a scrape. */
#define METRICS_FDS (METRICS_MAX_CONNECTIONS + 4)

struct metrics;

/* Writes one scrape's text; called on the endpoint's thread, so it must only read what
 * other threads publish lock-free (relaxed atomics), never wait on a lock. */
typedef void metrics_render_fn(void *arg, struct promtext *out);

/* Serve the metrics listener l (taking a reference of its own) on a new thread; 0 or
 * -errno. */
int metrics_start(struct listener *l, metrics_render_fn *render, void *arg, struct metrics **out);
/* The listener m serves. */
const struct listener *metrics_listener(const struct metrics *m);
/* Stop the thread, closing its connections, and drop the listener reference (NULL is
 * fine). */
void metrics_stop(struct metrics *m);

#endif
