/* udp: one thread answering datagrams on every UDP listener with recvfrom and sendmsg.
 * It owns its epoll fd, its eventfd and its receive buffer; the server owns the
 * listener sockets. Echo sends the datagram back; greet sends greeting + datagram,
 * gathered from two iovecs so nothing is copied. A reply the kernel refuses (a full
 * send buffer, an unreachable peer) is dropped and counted: UDP promises no delivery,
 * and the thread must never block on one client. */
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

#include "log.h"

#define UDP_BATCH     64    /* datagrams per socket per wake-up, for fairness */
#define UDP_DRAIN_MAX 4096  /* datagrams answered per socket at shutdown */
#define UDP_MAX_V4    65507 /* largest IPv4 UDP payload: 65535 - 20 - 8 */
#define UDP_MAX_V6    65527 /* largest IPv6 UDP payload without jumbograms */
#define UDP_BUF_BYTES 65536

struct udp {
    const struct listener *ls;
    size_t count;
    enum proto_mode mode;
    const char *greeting;
    size_t greeting_len;
    int epfd;
    int wake_fd;              /* eventfd: written once to stop the thread */
    _Atomic bool is_stopping; /* set once by udp_stop() */
    pthread_t thread;
    bool is_started;
    struct stats stats; /* written by the UDP thread only */
    uint8_t data[UDP_BUF_BYTES];
};

int udp_create(const struct conf_service *svc, const struct listener *ls, size_t count,
               struct udp **out)
{
    struct udp *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return -ENOMEM;
    u->ls = ls;
    u->count = count;
    u->mode = svc->mode;
    u->greeting = svc->greeting;
    u->greeting_len = svc->greeting_len;
    int rc = listener_watch(ls, count, &u->epfd, &u->wake_fd);
    if (rc < 0) {
        udp_destroy(u);
        return rc;
    }
    *out = u;
    return 0;
}

/* Answer one datagram of n bytes from src. */
static void udp_reply(struct udp *u, const struct listener *l, size_t n,
                      const struct sockaddr_storage *src, socklen_t src_len)
{
    size_t max = l->bound.ss.ss_family == AF_INET6 ? UDP_MAX_V6 : UDP_MAX_V4;
    struct iovec iov[2];
    size_t k = 0;
    if (u->mode == PROTO_GREET) {
        iov[k].iov_base = (void *)u->greeting;
        iov[k++].iov_len = u->greeting_len;
    }
    iov[k].iov_base = u->data;
    iov[k++].iov_len = n;
    size_t reply_len = n + (u->mode == PROTO_GREET ? u->greeting_len : 0);
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
        udp_reply(u, l, (size_t)n, &src, src_len);
    }
}

static void *udp_main(void *arg)
{
    struct udp *u = arg;
    struct epoll_event events[16];
    while (!atomic_load(&u->is_stopping)) {
        int n = epoll_wait(u->epfd, events, 16, -1);
        if (n < 0 && errno != EINTR)
            log_error("udp: epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++)
            if (events[i].data.ptr != NULL)
                udp_serve(u, events[i].data.ptr, UDP_BATCH);
    }
    /* Answer what arrived before the stop rather than drop it. */
    for (size_t i = 0; i < u->count; i++)
        udp_serve(u, &u->ls[i], UDP_DRAIN_MAX);
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
    free(u);
}

struct stats *udp_stats(struct udp *u)
{
    return &u->stats;
}
