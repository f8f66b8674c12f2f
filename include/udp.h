/* udp: the thread that answers datagrams on every UDP listener, with recvmmsg/sendmmsg. */
#ifndef ECHOD_UDP_H
#define ECHOD_UDP_H

#include <stddef.h>

#include "evloop.h"
#include "guard.h"
#include "proto.h"
#include "listener.h"
#include "stats.h"
#include "template.h"

struct snap_box;
struct udp;

/* What the UDP thread answers with: server.c builds it from the configuration and
 * publishes a new one on reload (see snap.h). Owns its greetings. */
struct udp_settings {
    enum proto_mode mode;
    /* Greet mode: one greeting per listener, in the listeners' order, with everything
     * but {client} bound; one that is still a template is rendered per datagram. */
    struct template *greetings;
    size_t max_reply_bytes;        /* udp.max_reply_bytes */
    struct guard_conf guard;       /* udp.guard */
    struct listener_set listeners; /* the UDP listeners */
};

/* Free a udp_settings, dropping its listener references (the snap box's free). */
void udp_settings_free(void *settings);
/* A UDP service (not yet running) over the listeners and settings published in the box
 * (its guard treats every listener's port as its own); 0 or -errno. */
int udp_create(struct snap_box *settings, struct udp **out);
/* Make the thread take up newly published settings now rather than at its next wake-up
 * (any thread). */
void udp_wake(struct udp *u);
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
/* The guard table's prefixes in use and its size (0 and 0 with the guard off), as the
 * UDP thread last published them (any thread, lock-free). */
void udp_guard_occupancy(const struct udp *u, size_t *entries, size_t *capacity);

#endif
