/* udp: the thread that answers datagrams on every UDP listener with recvfrom/sendmsg. */
#ifndef ECHOD_UDP_H
#define ECHOD_UDP_H

#include <stddef.h>

#include "conf.h"
#include "evloop.h"
#include "listener.h"
#include "stats.h"

struct udp;

/* A UDP service (not yet running) over the given bound listeners, configured by c's
 * udp group (its guard treats every listener's port as its own); 0 or -errno. */
int udp_create(const struct conf *c, const struct listener *ls, size_t count, struct udp **out);
/* Start the thread; 0 or -errno. */
int udp_start(struct udp *u);
/* Answer the datagrams already queued, then end the thread and wait for it. */
void udp_stop(struct udp *u);
/* Free the service; its thread must have ended or never started. */
void udp_destroy(struct udp *u);
/* The UDP thread's liveness beat (see evloop.h), for the watchdog. */
const struct evloop_beat *udp_beat(const struct udp *u);
/* The UDP thread's counters. */
struct stats *udp_stats(struct udp *u);

#endif
