/* udp: one thread answering datagrams on every UDP listener, a batch at a time: one
 * recvmmsg takes up to UDP_BATCH datagrams and one sendmmsg sends their replies, in
 * arrival order. It owns its epoll fd, its eventfd and the batch (headers and buffers);
 * the server owns the listener sockets. Echo sends the datagram back; greet sends
 * greeting + datagram, gathered from two iovecs so nothing is copied (a greeting that
 * names {client} is rendered per datagram into the batch). The guard
 * (guard.h), when enabled, judges each datagram's source before any reply: a refused
 * one is counted under its reason and dropped, the rest of its batch answered. A reply
 * the kernel refuses (a full send buffer, an unreachable peer) is dropped and counted,
 * and the batch goes on with the next: UDP promises no delivery, and the thread must
 * never block on one client. The clock is read once per batch; drop lines are logged
 * from the loop, waking epoll_wait only while some wait to be logged. */
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

#define UDP_BATCH      32    /* datagrams per recvmmsg and per sendmmsg */
#define UDP_SERVE_MAX  64    /* datagrams per socket per wake-up, for fairness */
#define UDP_DRAIN_MAX  4096  /* datagrams answered per socket at shutdown */
#define UDP_MAX_V4     65507 /* largest IPv4 UDP payload: 65535 - 20 - 8 */
#define UDP_MAX_V6     65527 /* largest IPv6 UDP payload without jumbograms */
#define UDP_SLOT_BYTES 65536 /* one slot holds any datagram */

/* One recvmmsg's datagrams and the sendmmsg of their replies. The slots (and the
 * rendered greetings) are address space until used: small datagrams touch one page of
 * each, so the batch costs 128 KiB of memory under a flood of them and 2 MiB at most (a
 * flood of the largest); a greeting naming {client} touches a page of its own. */
struct udp_batch {
    struct mmsghdr in[UDP_BATCH];           /* recvmmsg: datagram i lands in slot i */
    struct iovec in_iov[UDP_BATCH];         /* slot i, whole */
    struct sockaddr_storage src[UDP_BATCH]; /* datagram i's source */
    struct mmsghdr out[UDP_BATCH];          /* sendmmsg: the replies, in arrival order */
    struct iovec out_iov[UDP_BATCH][2];     /* a reply: [greeting,] slot */
    uint8_t slot[UDP_BATCH][UDP_SLOT_BYTES];
    char greeting[UDP_BATCH][UDP_SLOT_BYTES]; /* reply k's greeting, rendered for its {client} */
};

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
    struct udp_batch batch;        /* UDP thread only */
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
    udp_renew_guard(u, s); /* after the drain, which the old guard judged */
    snap_release(u->snap);
    u->snap = next;
    u->s = s;
    u->generation = generation;
    udp_publish_guard(u);
}

/* Point each receive header of the batch at its slot and source, once. */
static void udp_batch_init(struct udp_batch *b)
{
    for (size_t i = 0; i < UDP_BATCH; i++) {
        b->in_iov[i] = (struct iovec){.iov_base = b->slot[i], .iov_len = UDP_SLOT_BYTES};
        b->in[i].msg_hdr = (struct msghdr){.msg_name = &b->src[i],
                                           .msg_namelen = sizeof(b->src[i]),
                                           .msg_iov = &b->in_iov[i],
                                           .msg_iovlen = 1};
    }
}

int udp_create(struct snap_box *settings, struct udp **out)
{
    struct udp *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return -ENOMEM;
    udp_batch_init(&u->batch);
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

/* Receive up to max (at most UDP_BATCH) datagrams from l into the batch: how many, or
 * -errno (-EAGAIN when none waits). Counts them in. */
static int udp_receive(struct udp *u, const struct listener *l, size_t max)
{
    struct udp_batch *b = &u->batch;
    for (size_t i = 0; i < max; i++)
        b->in[i].msg_hdr.msg_namelen = sizeof(b->src[i]); /* the rest is fixed (udp_create) */
    int n = recvmmsg(l->fd, b->in, (unsigned)max, MSG_DONTWAIT, NULL);
    if (n < 0)
        return -errno;
    uint64_t bytes = 0;
    for (int i = 0; i < n; i++)
        bytes += b->in[i].msg_len;
    stats_add(&u->stats, STAT_udp_batches, 1);
    stats_add(&u->stats, STAT_udp_datagrams_in, (uint64_t)n);
    stats_add(&u->stats, STAT_udp_bytes_in, bytes);
    return n;
}

/* Whether datagram i of the batch passes the guard; a refused one is counted under its
 * reason. */
static bool udp_admit(struct udp *u, size_t i, uint64_t now_ms)
{
    const struct udp_batch *b = &u->batch;
    if (u->guard == NULL)
        return true;
    enum guard_verdict v = guard_admit(u->guard, (const struct sockaddr *)&b->src[i],
                                       b->in[i].msg_hdr.msg_namelen, now_ms);
    if (v == GUARD_PASS)
        return true;
    stats_add(&u->stats, udp_drop_counters[v], 1);
    return false;
}

/* Make the reply to datagram i of the batch, received on l, reply k of its sendmmsg:
 * greeting g first (NULL: echo), rendered for the datagram's source when it names
 * {client} (conf.c bounds it below udp.max_reply_bytes). False, counted, when the reply
 * would be over udp.max_reply_bytes or a datagram. */
static bool udp_add_reply(struct udp *u, const struct listener *l, const struct template *g,
                          size_t i, size_t k)
{
    struct udp_batch *b = &u->batch;
    struct iovec *iov = b->out_iov[k];
    size_t count = 0, reply_len = b->in[i].msg_len;
    if (g && template_is_literal(g)) {
        iov[count++] = (struct iovec){.iov_base = g->text, .iov_len = g->text_len};
    } else if (g) {
        char client_text[ADDR_STRLEN];
        struct template_values v = {{0}};
        template_values_site(&v, NULL, NULL, NULL, (const struct sockaddr *)&b->src[i],
                             client_text);
        size_t len = template_render(g, &v, b->greeting[k], UDP_SLOT_BYTES);
        iov[count++] = (struct iovec){.iov_base = b->greeting[k],
                                      .iov_len = len < UDP_SLOT_BYTES ? len : UDP_SLOT_BYTES - 1};
    }
    if (count > 0)
        reply_len += iov[0].iov_len;
    size_t max = l->bound.ss.ss_family == AF_INET6 ? UDP_MAX_V6 : UDP_MAX_V4;
    if (u->s->max_reply_bytes < max)
        max = u->s->max_reply_bytes;
    if (reply_len > max) {
        stats_add(&u->stats, STAT_udp_reply_too_large, 1);
        return false;
    }
    iov[count++] = (struct iovec){.iov_base = b->slot[i], .iov_len = b->in[i].msg_len};
    b->out[k].msg_hdr = (struct msghdr){.msg_name = &b->src[i],
                                        .msg_namelen = b->in[i].msg_hdr.msg_namelen,
                                        .msg_iov = iov,
                                        .msg_iovlen = count};
    return true;
}

/* Send the batch's `count` replies on l, in order. A reply the kernel refuses (the
 * first of a call that fails) is counted and skipped, so every call moves on. */
static void udp_send_replies(struct udp *u, const struct listener *l, size_t count)
{
    struct mmsghdr *out = u->batch.out;
    size_t done = 0;
    while (done < count) {
        int n = sendmmsg(l->fd, out + done, (unsigned)(count - done), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n <= 0) {
            stats_add(&u->stats, STAT_udp_send_errors, 1);
            done++;
            continue;
        }
        uint64_t bytes = 0;
        for (size_t k = done; k < done + (size_t)n; k++)
            bytes += out[k].msg_len;
        stats_add(&u->stats, STAT_udp_datagrams_out, (uint64_t)n);
        stats_add(&u->stats, STAT_udp_bytes_out, bytes);
        done += (size_t)n;
    }
}

/* Answer the batch's `count` datagrams received on l: judge each, send the replies. */
static void udp_answer(struct udp *u, const struct listener *l, size_t count)
{
    uint64_t now_ms = u->guard ? clock_now_ms() : 0; /* one reading per batch */
    const struct template *g = u->s->mode == PROTO_GREET ? udp_greeting_of(u, l) : NULL;
    size_t replies = 0;
    for (size_t i = 0; i < count; i++)
        if (udp_admit(u, i, now_ms) && udp_add_reply(u, l, g, i, replies))
            replies++;
    udp_send_replies(u, l, replies);
}

/* Answer up to `max` queued datagrams on l, a batch at a time; stop once a batch comes
 * back short (the queue was empty then: level-triggered epoll reports any newcomer). */
static void udp_serve(struct udp *u, const struct listener *l, size_t max)
{
    size_t served = 0;
    while (served < max) {
        size_t want = max - served < UDP_BATCH ? max - served : UDP_BATCH;
        int n = udp_receive(u, l, want);
        if (n == -EAGAIN || n == -EWOULDBLOCK)
            return;
        if (n < 0) { /* a queued ICMP error or EINTR: the next datagram is fine */
            served++;
            continue;
        }
        udp_answer(u, l, (size_t)n);
        served += (size_t)n;
        if ((size_t)n < want)
            return;
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
                udp_serve(u, events[i].data.ptr, UDP_SERVE_MAX);
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
