/* udp: one thread answering datagrams on every UDP listener with recvfrom and sendmsg.
 * It owns its epoll fd, its eventfd and its receive buffer; the server owns the
 * listener sockets. Echo sends the datagram back; greet sends greeting + datagram,
 * gathered from two iovecs so nothing is copied. A reply the kernel refuses (a full
 * send buffer, an unreachable peer) is dropped and counted: UDP promises no delivery,
 * and the thread must never block on one client. The guard (guard.h), when enabled,
 * judges each datagram's source before any reply: a refused one is counted under its
 * reason and dropped. The clock is read once per batch; drop lines are logged from the
 * loop, waking epoll_wait only while some wait to be logged. */
#include "config.h"

#include "udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "clock.h"
#include "evloop.h"
#include "guard.h"
#include "log.h"
#include "snap.h"

#define UDP_BATCH     64    /* datagrams per socket per wake-up, for fairness */
#define UDP_DRAIN_MAX 4096  /* datagrams answered per socket at shutdown */
#define UDP_MAX_V4    65507 /* largest IPv4 UDP payload: 65535 - 20 - 8 */
#define UDP_MAX_V6    65527 /* largest IPv6 UDP payload without jumbograms */
#define UDP_BUF_BYTES 65536

struct udp {
    struct snap_box *box;         /* where the main thread publishes udp_settings */
    struct snap *snap;            /* UDP thread only: the settings in force */
    uint64_t generation;          /* UDP thread only: snap's generation */
    const struct udp_settings *s; /* UDP thread only: snap's data */
    struct guard *guard;          /* NULL when udp.guard.enabled is false */
    int epfd;
    struct evloop loop;       /* over epfd; its beat is read by the watchdog */
    int wake_fd;              /* eventfd: written once to stop the thread */
    _Atomic bool is_stopping; /* set once by udp_stop() */
    pthread_t thread;
    bool is_started;
    struct stats stats;            /* written by the UDP thread only */
    _Atomic size_t guard_entries;  /* the guard's tracked prefixes, as of the last batch */
    _Atomic size_t guard_capacity; /* its table_size; 0 with the guard off. UDP thread writes */
    uint8_t data[UDP_BUF_BYTES];
    char greeting[UDP_BUF_BYTES]; /* a greeting rendered for one datagram's {client} */
};

/* The counter for each guard verdict but GUARD_PASS. */
static const enum stats_counter udp_drop_counters[GUARD_VERDICT_COUNT] = {
    [GUARD_DROP_PORT] = STAT_udp_drop_port,
    [GUARD_DROP_REFLECTOR] = STAT_udp_drop_reflector,
    [GUARD_DROP_OWN_PORT] = STAT_udp_drop_own_port,
    [GUARD_DROP_ADDRESS] = STAT_udp_drop_address,
    [GUARD_DROP_RATE] = STAT_udp_drop_rate,
    [GUARD_DROP_GLOBAL_RATE] = STAT_udp_drop_global_rate,
};

void udp_settings_free(void *settings)
{
    struct udp_settings *s = settings;
    if (s == NULL)
        return;
    for (size_t i = 0; s->greetings && i < s->listeners.count; i++)
        template_free(&s->greetings[i]);
    free(s->greetings);
    listener_set_clear(&s->listeners);
    free(s);
}

/* The guard s describes, with every listener's port as an own port, into *out (NULL
 * when the guard is off); 0 or -errno. */
static int udp_create_guard(const struct udp_settings *s, struct guard **out)
{
    *out = NULL;
    if (!s->guard.is_enabled)
        return 0;
    struct guard_policy policy;
    guard_policy_init(&policy);
    policy.is_loopback_allowed = s->guard.is_loopback_allowed;
    for (size_t i = 0; i < s->listeners.count; i++) {
        const struct sockaddr *sa = (const struct sockaddr *)&s->listeners.items[i]->bound.ss;
        int rc = guard_policy_add_own_port(&policy, addr_port(sa));
        if (rc < 0)
            return rc;
    }
    return guard_create(&s->guard, &policy, out);
}

/* Whether s and t hold the same listeners (in any order). */
static bool udp_same_listeners(const struct listener_set *s, const struct listener_set *t)
{
    if (s->count != t->count)
        return false;
    for (size_t i = 0; i < s->count; i++)
        if (!listener_set_holds(t, s->items[i]))
            return false;
    return true;
}

/* Register (EPOLL_CTL_ADD) or remove (EPOLL_CTL_DEL) l for input. */
static void udp_watch(struct udp *u, int op, struct listener *l)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
    if (epoll_ctl(u->epfd, op, l->fd, &ev) < 0)
        log_error("udp: epoll_ctl: %s", strerror(errno));
}

/* A guard for the settings s when its configuration or the own ports changed; the old
 * one's drops are logged before it goes. On failure the old guard stays. */
static void udp_renew_guard(struct udp *u, const struct udp_settings *s)
{
    if (memcmp(&u->s->guard, &s->guard, sizeof(s->guard)) == 0 &&
        udp_same_listeners(&u->s->listeners, &s->listeners))
        return;
    struct guard *g;
    int rc = udp_create_guard(s, &g);
    if (rc < 0) {
        log_error("udp: cannot set up the new guard settings (%s); keeping the old ones",
                  strerror(-rc));
        return;
    }
    if (u->guard)
        guard_log_drops(u->guard, clock_now_ms(), true);
    guard_destroy(u->guard);
    u->guard = g;
}

static void udp_serve(struct udp *u, const struct listener *l, size_t max);

/* Publish the guard table's occupancy for other threads (udp_guard_occupancy). */
static void udp_publish_guard(struct udp *u)
{
    atomic_store_explicit(&u->guard_entries, u->guard ? guard_tracked(u->guard) : 0,
                          memory_order_relaxed);
    atomic_store_explicit(&u->guard_capacity, u->guard ? u->s->guard.table_size : 0,
                          memory_order_relaxed);
}

/* Take up the settings published last: a new guard if needed, watch added listeners,
 * and answer what waits on removed ones before letting them go. */
static void udp_take_settings(struct udp *u)
{
    uint64_t generation;
    struct snap *next = snap_box_acquire(u->box, &generation);
    const struct udp_settings *s = snap_data(next);
    udp_renew_guard(u, s);
    const struct listener_set *now = &s->listeners, *before = &u->s->listeners;
    for (size_t i = 0; i < now->count; i++)
        if (!listener_set_holds(before, now->items[i]))
            udp_watch(u, EPOLL_CTL_ADD, now->items[i]);
    for (size_t i = 0; i < before->count; i++) {
        if (!listener_set_holds(now, before->items[i])) {
            udp_serve(u, before->items[i], UDP_DRAIN_MAX); /* with the old settings */
            udp_watch(u, EPOLL_CTL_DEL, before->items[i]);
        }
    }
    snap_release(u->snap);
    u->snap = next;
    u->s = s;
    u->generation = generation;
    udp_publish_guard(u);
}

int udp_create(struct snap_box *settings, struct udp **out)
{
    struct udp *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return -ENOMEM;
    u->box = settings;
    u->epfd = u->wake_fd = -1;
    u->snap = snap_box_acquire(settings, &u->generation);
    u->s = snap_data(u->snap);
    int rc = udp_create_guard(u->s, &u->guard);
    if (rc == 0)
        rc = listener_watch(&u->s->listeners, &u->epfd, &u->wake_fd);
    if (rc == 0) {
        evloop_init(&u->loop, "udp", u->epfd);
        udp_publish_guard(u);
    }
    if (rc < 0) {
        udp_destroy(u);
        return rc;
    }
    *out = u;
    return 0;
}

/* The greeting of listener l (NULL in echo mode). */
static const struct template *udp_greeting_of(const struct udp *u, const struct listener *l)
{
    for (size_t i = 0; u->s->greetings && i < u->s->listeners.count; i++)
        if (u->s->listeners.items[i] == l)
            return &u->s->greetings[i];
    return NULL;
}

/* Answer one datagram of n bytes from src, with greeting g first (NULL: echo). A
 * greeting that names {client} is rendered for src into u->greeting; conf.c bounds it
 * below udp.max_reply_bytes, so it always fits. */
static void udp_reply(struct udp *u, const struct listener *l, const struct template *g, size_t n,
                      const struct sockaddr_storage *src, socklen_t src_len)
{
    const struct udp_settings *s = u->s;
    size_t max = l->bound.ss.ss_family == AF_INET6 ? UDP_MAX_V6 : UDP_MAX_V4;
    if (s->max_reply_bytes < max)
        max = s->max_reply_bytes;
    struct iovec iov[2];
    size_t k = 0, reply_len = n;
    if (g && template_is_literal(g)) {
        iov[k].iov_base = g->text;
        iov[k++].iov_len = g->text_len;
        reply_len += g->text_len;
    } else if (g) {
        char client_text[ADDR_STRLEN];
        struct template_values v = {{0}};
        template_values_site(&v, NULL, NULL, NULL, (const struct sockaddr *)src, client_text);
        size_t len = template_render(g, &v, u->greeting, sizeof(u->greeting));
        iov[k].iov_base = u->greeting;
        iov[k++].iov_len = len < sizeof(u->greeting) ? len : sizeof(u->greeting) - 1;
        reply_len += iov[k - 1].iov_len;
    }
    iov[k].iov_base = u->data;
    iov[k++].iov_len = n;
    if (reply_len > max) {
        stats_add(&u->stats, STAT_udp_reply_too_large, 1);
        return;
    }
    struct msghdr msg = {
        .msg_name = (void *)src, .msg_namelen = src_len, .msg_iov = iov, .msg_iovlen = k};
    if (sendmsg(l->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        stats_add(&u->stats, STAT_udp_send_errors, 1);
        return;
    }
    stats_add(&u->stats, STAT_udp_datagrams_out, 1);
    stats_add(&u->stats, STAT_udp_bytes_out, reply_len);
}

/* Answer up to `max` queued datagrams on l; stop early when none is left. */
static void udp_serve(struct udp *u, const struct listener *l, size_t max)
{
    uint64_t now_ms = u->guard ? clock_now_ms() : 0; /* one reading per batch */
    const struct template *greeting = u->s->mode == PROTO_GREET ? udp_greeting_of(u, l) : NULL;
    for (size_t i = 0; i < max; i++) {
        struct sockaddr_storage src;
        socklen_t src_len = sizeof(src);
        ssize_t n = recvfrom(l->fd, u->data, sizeof(u->data), MSG_DONTWAIT, (struct sockaddr *)&src,
                             &src_len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            continue; /* a queued ICMP error or EINTR: the next datagram is fine */
        }
        stats_add(&u->stats, STAT_udp_datagrams_in, 1);
        stats_add(&u->stats, STAT_udp_bytes_in, (uint64_t)n);
        if (u->guard) {
            enum guard_verdict v =
                guard_admit(u->guard, (const struct sockaddr *)&src, src_len, now_ms);
            if (v != GUARD_PASS) {
                stats_add(&u->stats, udp_drop_counters[v], 1);
                continue;
            }
        }
        udp_reply(u, l, greeting, (size_t)n, &src, src_len);
    }
}

static void *udp_main(void *arg)
{
    struct udp *u = arg;
    struct epoll_event events[16];
    int timeout_ms = -1; /* until a drop line is due */
    uint64_t now = clock_now_ms();
    while (!atomic_load(&u->is_stopping)) {
        /* A reload applies from the next datagram on; taken before the wait, so that no
         * event can name a listener retired meanwhile. */
        if (snap_box_generation(u->box) != u->generation)
            udp_take_settings(u);
        int n = evloop_wait(&u->loop, events, 16, timeout_ms, &now);
        for (int i = 0; i < n; i++)
            if (events[i].data.ptr != NULL)
                udp_serve(u, events[i].data.ptr, UDP_BATCH);
        if (u->guard) {
            timeout_ms = guard_log_drops(u->guard, now = clock_now_ms(), false);
            udp_publish_guard(u);
        }
    }
    /* Answer what arrived before the stop rather than drop it. */
    for (size_t i = 0; i < u->s->listeners.count; i++)
        udp_serve(u, u->s->listeners.items[i], UDP_DRAIN_MAX);
    if (u->guard)
        guard_log_drops(u->guard, clock_now_ms(), true);
    return NULL;
}

int udp_start(struct udp *u)
{
    int rc = pthread_create(&u->thread, NULL, udp_main, u);
    if (rc != 0)
        return -rc;
    u->is_started = true;
    return 0;
}

void udp_wake(struct udp *u)
{
    (void)eventfd_write(u->wake_fd, 1);
}

void udp_stop(struct udp *u)
{
    if (!u->is_started)
        return;
    atomic_store(&u->is_stopping, true);
    (void)eventfd_write(u->wake_fd, 1);
    pthread_join(u->thread, NULL);
    u->is_started = false;
}

void udp_destroy(struct udp *u)
{
    if (u == NULL)
        return;
    if (u->wake_fd >= 0)
        close(u->wake_fd);
    if (u->epfd >= 0)
        close(u->epfd);
    guard_destroy(u->guard);
    snap_release(u->snap);
    free(u);
}

const struct evloop_beat *udp_beat(const struct udp *u)
{
    return &u->loop.beat;
}

struct stats *udp_stats(struct udp *u)
{
    return &u->stats;
}

void udp_guard_occupancy(const struct udp *u, size_t *entries, size_t *capacity)
{
    *entries = atomic_load_explicit(&u->guard_entries, memory_order_relaxed);
    *capacity = atomic_load_explicit(&u->guard_capacity, memory_order_relaxed);
}
