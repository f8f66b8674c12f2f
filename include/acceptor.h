/* acceptor: the thread that accepts on every TCP listener and hands sockets to the
 * least-loaded worker, pausing while max_connections are open. */
#ifndef ECHOD_ACCEPTOR_H
#define ECHOD_ACCEPTOR_H

#include <stddef.h>

#include "listener.h"
#include "stats.h"
#include "worker.h"

struct acceptor;

/* An acceptor (not yet running) over the given TCP listeners; 0 or -errno. */
int acceptor_create(const struct listener *ls, size_t count, unsigned max_connections,
                    struct acceptor **out);
/* Start the thread, handing sockets to workers[0..nworkers); 0 or -errno. */
int acceptor_start(struct acceptor *a, struct worker **workers, size_t nworkers);
/* Take in what the kernel's backlog already holds, stop accepting, and join the thread. */
void acceptor_stop(struct acceptor *a);
/* A connection closed (any thread): accepting resumes if it was paused at the limit. */
void acceptor_release(void *acceptor);
/* Free the acceptor; its thread must have ended. */
void acceptor_destroy(struct acceptor *a);
/* The acceptor's counters. */
struct stats *acceptor_stats(struct acceptor *a);

#endif
