/* bench: echod-bench, a verifying load generator. One thread runs one level-triggered
 * epoll loop over every connection. Each connection keeps PIPELINE messages of SIZE
 * bytes in flight; every message's bytes derive from its connection and sequence number,
 * so each echoed byte is checked where it lands. TCP fails on a mismatch, an error or no
 * progress for -T ms; UDP counts a datagram unanswered for -T ms as lost and goes on.
 * It owns every socket and allocates all it needs before the first message: scratch
 * buffers are static, per-message state lives in per-connection slot rings.
 * Exit codes: 0 done and verified, 1 mismatch or connection error, 64 bad usage. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "fdlimit.h"

#define BENCH_NAME               "echod-bench"
#define BENCH_DEFAULT_CONNS      50
#define BENCH_DEFAULT_SIZE_BYTES 64
#define BENCH_DEFAULT_DURATION_S 5
#define BENCH_MAX_CONNS          100000
#define BENCH_MAX_SIZE_BYTES     (16ul * 1024 * 1024)
#define BENCH_MAX_UDP_SIZE_BYTES 65507      /* largest IPv4 UDP payload */
#define BENCH_MIN_UDP_SIZE_BYTES 8          /* the sequence header */
#define BENCH_MAX_SLOTS          10000000ul /* connections x pipeline */
#define BENCH_SCRATCH_BYTES      65536
#define BENCH_TICK_MS            10 /* deadline, loss and progress checks when idle */
#define BENCH_EVENTS             256
#define BENCH_HIST_SUB_BITS      5 /* 32 buckets per octave: within 3 % */
#define BENCH_HIST_SUB           (1u << BENCH_HIST_SUB_BITS)
#define BENCH_HIST_BUCKETS       (2 * BENCH_HIST_SUB + 64 * BENCH_HIST_SUB)

struct bench_options {
    struct client_target target;
    unsigned long conns;
    unsigned long msgs_per_conn; /* -n; 0 = run for duration_s */
    unsigned long duration_s;
    unsigned long size_bytes;
    unsigned long pipeline;
    const char *greeting; /* -g: every reply is it followed by the message ("": echo) */
    size_t greeting_len;
    bool is_quiet;
};

struct bench_conn {
    int fd;
    uint32_t id;
    uint64_t key; /* mixes the connection into every message's bytes */
    bool is_connected;
    bool is_out_wanted; /* EPOLLOUT is registered */
    bool is_done;
    uint64_t tx_seq; /* the next byte to send is byte tx_off of message tx_seq */
    size_t tx_off;
    uint64_t rx_seq; /* TCP: next byte expected is byte rx_off of message rx_seq;
                      * UDP: the oldest message neither answered nor lost */
    size_t rx_off;
    uint64_t *sent_at_us; /* [pipeline], by seq % pipeline; 0 = no message there */
};

struct bench {
    const struct bench_options *o;
    int epfd;
    struct bench_conn *conns;
    uint64_t *slots; /* every connection's sent_at_us ring, one allocation */
    size_t open_conns;
    uint64_t start_us;
    uint64_t end_us;
    uint64_t stop_sending_us; /* -d deadline; UINT64_MAX with -n */
    bool is_sending_stopped;
    uint64_t last_progress_us;
    uint64_t completed;                /* messages echoed and verified */
    uint64_t lost;                     /* UDP: unanswered within -T */
    uint64_t late;                     /* UDP: replies after their message counted as lost */
    uint64_t hist[BENCH_HIST_BUCKETS]; /* latency in µs */
    uint64_t max_latency_us;
};

static uint8_t bench_tx[BENCH_SCRATCH_BYTES];   /* bytes being sent */
static uint8_t bench_rx[BENCH_SCRATCH_BYTES];   /* bytes received */
static uint8_t bench_want[BENCH_SCRATCH_BYTES]; /* what they should be */

#define bench_error(rc, ...) client_report(BENCH_NAME, rc, __VA_ARGS__)

static uint64_t bench_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---------------------------------------------------------------- message bytes */

/* splitmix64's finalizer: a bijection that scatters every input bit. */
static uint64_t bench_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Bytes [off, off+len) of message seq on c: an 8-byte little-endian header, seq xor the
 * connection's key (so a UDP reply names its message), then a stream seeded by both, and
 * a final '\n' after the header, so that line-based servers answer every message. */
static void bench_pattern(const struct bench *b, const struct bench_conn *c, uint64_t seq,
                          size_t off, uint8_t *out, size_t len)
{
    uint64_t header = seq ^ c->key;
    uint64_t seed = bench_mix(c->key ^ bench_mix(seq + 1));
    for (size_t i = 0; i < len; i++) {
        size_t at = off + i;
        uint64_t word = at < 8 ? header : seed + (uint64_t)(at >> 3) * 0x9e3779b97f4a7c15ull;
        out[i] = (uint8_t)(word >> ((at & 7) * 8));
        if (out[i] == '\n' && b->o->greeting_len > 0 && !b->o->target.is_udp)
            out[i] = ' '; /* greet mode over TCP: one line per message */
    }
    if (off + len == b->o->size_bytes && off + len > 8)
        out[len - 1] = '\n';
}

/* The sequence number a message's first 8 bytes name. */
static uint64_t bench_header_seq(const struct bench_conn *c, const uint8_t *data)
{
    uint64_t header = 0;
    for (int i = 7; i >= 0; i--)
        header = header << 8 | data[i];
    return header ^ c->key;
}

/* The bytes of the reply to one message: -g's greeting, then the message. */
static size_t bench_reply_bytes(const struct bench *b)
{
    return b->o->greeting_len + b->o->size_bytes;
}

/* Compare got with the bytes of the reply to message seq from off (the greeting, then
 * the message); 0 or -EBADMSG with a message. */
static int bench_verify(const struct bench *b, const struct bench_conn *c, uint64_t seq, size_t off,
                        const uint8_t *got, size_t len)
{
    size_t g = b->o->greeting_len, head = off < g ? g - off : 0;
    if (head > len)
        head = len;
    memcpy(bench_want, b->o->greeting + (off < g ? off : g), head);
    bench_pattern(b, c, seq, off + head - g, bench_want + head, len - head);
    if (memcmp(bench_want, got, len) == 0)
        return 0;
    size_t i = 0;
    while (bench_want[i] == got[i])
        i++;
    return bench_error(-EBADMSG,
                       "mismatch on connection %" PRIu32 ", message %" PRIu64
                       ", byte %zu: expected 0x%02x, got 0x%02x",
                       c->id, seq, off + i, bench_want[i], got[i]);
}

/* ---------------------------------------------------------------- latency histogram */

static size_t bench_hist_index(uint64_t us)
{
    if (us < 2 * BENCH_HIST_SUB)
        return (size_t)us;
    unsigned msb = 63u - (unsigned)__builtin_clzll(us);
    unsigned shift = msb - BENCH_HIST_SUB_BITS;
    return 2 * BENCH_HIST_SUB + (msb - BENCH_HIST_SUB_BITS - 1) * BENCH_HIST_SUB +
           (size_t)((us >> shift) - BENCH_HIST_SUB);
}

/* The smallest latency bucket index holds. */
static uint64_t bench_hist_value(size_t index)
{
    if (index < 2 * BENCH_HIST_SUB)
        return index;
    size_t k = index - 2 * BENCH_HIST_SUB;
    unsigned shift = (unsigned)(k / BENCH_HIST_SUB) + 1;
    return (uint64_t)(k % BENCH_HIST_SUB + BENCH_HIST_SUB) << shift;
}

/* The latency below which fraction q of the messages fall, in µs. */
static uint64_t bench_percentile_us(const struct bench *b, double q)
{
    uint64_t rank = (uint64_t)(q * (double)b->completed + 0.999999);
    uint64_t seen = 0;
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += b->hist[i];
        if (seen >= rank && seen > 0) {
            uint64_t v = bench_hist_value(i);
            return v < b->max_latency_us ? v : b->max_latency_us;
        }
    }
    return b->max_latency_us;
}

/* Message seq of c came back whole and verified. */
static void bench_complete(struct bench *b, struct bench_conn *c, uint64_t seq, uint64_t now_us)
{
    uint64_t *sent_at_us = &c->sent_at_us[seq % b->o->pipeline];
    uint64_t latency_us = now_us > *sent_at_us ? now_us - *sent_at_us : 0;
    *sent_at_us = 0;
    b->hist[bench_hist_index(latency_us)]++;
    if (latency_us > b->max_latency_us)
        b->max_latency_us = latency_us;
    b->completed++;
    b->last_progress_us = now_us;
}

/* ---------------------------------------------------------------- connections */

/* Register or drop EPOLLOUT for c; 0 or -errno. */
static int bench_want_out(struct bench *b, struct bench_conn *c, bool is_wanted)
{
    if (c->is_out_wanted == is_wanted)
        return 0;
    struct epoll_event ev = {.events = EPOLLIN | (is_wanted ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        return bench_error(-errno, "epoll_ctl");
    c->is_out_wanted = is_wanted;
    return 0;
}

/* The first message c may not start yet: the pipeline, -n and -d allowing. */
static uint64_t bench_send_limit(const struct bench *b, const struct bench_conn *c)
{
    uint64_t limit = c->rx_seq + b->o->pipeline;
    if (b->o->msgs_per_conn != 0 && limit > b->o->msgs_per_conn)
        limit = b->o->msgs_per_conn;
    if (b->is_sending_stopped) {
        uint64_t started = c->tx_off > 0 ? c->tx_seq + 1 : c->tx_seq;
        if (limit > started)
            limit = started;
    }
    return limit;
}

/* Close c once everything it started has been answered (or lost) and it may start no
 * more. */
static void bench_finish_if_done(struct bench *b, struct bench_conn *c)
{
    bool is_idle = c->rx_seq == c->tx_seq && c->tx_off == 0;
    if (c->is_done || !is_idle || bench_send_limit(b, c) > c->tx_seq)
        return;
    epoll_ctl(b->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->is_done = true;
    b->open_conns--;
}

/* Count n bytes just sent from c's position, stamping each message they start. */
static void bench_advance_tx(struct bench *b, struct bench_conn *c, size_t n, uint64_t now_us)
{
    while (n > 0) {
        if (c->tx_off == 0)
            c->sent_at_us[c->tx_seq % b->o->pipeline] = now_us;
        size_t chunk = b->o->size_bytes - c->tx_off;
        if (chunk > n)
            chunk = n;
        c->tx_off += chunk;
        n -= chunk;
        if (c->tx_off == b->o->size_bytes) {
            c->tx_seq++;
            c->tx_off = 0;
        }
    }
}

/* Lay out the bytes c may send next into bench_tx; how many. */
static size_t bench_tcp_stage(struct bench *b, const struct bench_conn *c)
{
    uint64_t limit = bench_send_limit(b, c);
    uint64_t seq = c->tx_seq;
    size_t off = c->tx_off, len = 0;
    while (len < sizeof(bench_tx) && seq < limit) {
        size_t chunk = b->o->size_bytes - off;
        if (chunk > sizeof(bench_tx) - len)
            chunk = sizeof(bench_tx) - len;
        bench_pattern(b, c, seq, off, bench_tx + len, chunk);
        len += chunk;
        off += chunk;
        if (off == b->o->size_bytes) {
            seq++;
            off = 0;
        }
    }
    return len;
}

/* Send what the pipeline allows until the socket is full; 0 or -errno. */
static int bench_tcp_send(struct bench *b, struct bench_conn *c)
{
    for (;;) {
        size_t len = bench_tcp_stage(b, c);
        if (len == 0)
            return bench_want_out(b, c, false);
        ssize_t n = send(c->fd, bench_tx, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return bench_want_out(b, c, true);
        if (n < 0)
            return bench_error(-errno, "connection %" PRIu32 ": send", c->id);
        bench_advance_tx(b, c, (size_t)n, bench_now_us());
        if ((size_t)n < len)
            return bench_want_out(b, c, true);
    }
}

/* Read and verify what c's server echoed, then refill the pipeline; 0 or -errno. */
static int bench_tcp_receive(struct bench *b, struct bench_conn *c)
{
    ssize_t n = recv(c->fd, bench_rx, sizeof(bench_rx), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n < 0)
        return bench_error(-errno, "connection %" PRIu32 ": recv", c->id);
    if (n == 0)
        return bench_error(-ECONNRESET,
                           "connection %" PRIu32 " closed by the server after %" PRIu64 " messages",
                           c->id, c->rx_seq);
    uint64_t now_us = bench_now_us();
    /* Echo answers every byte sent; greet mode only whole messages (lines). */
    uint64_t unanswered = (c->tx_seq - c->rx_seq) * bench_reply_bytes(b) - c->rx_off +
                          (b->o->greeting_len == 0 ? c->tx_off : 0);
    size_t expected = (uint64_t)n < unanswered ? (size_t)n : (size_t)unanswered;
    for (size_t pos = 0; pos < expected;) {
        size_t chunk = bench_reply_bytes(b) - c->rx_off;
        if (chunk > expected - pos)
            chunk = expected - pos;
        int rc = bench_verify(b, c, c->rx_seq, c->rx_off, bench_rx + pos, chunk);
        if (rc < 0)
            return rc;
        pos += chunk;
        c->rx_off += chunk;
        if (c->rx_off == bench_reply_bytes(b)) {
            bench_complete(b, c, c->rx_seq, now_us);
            c->rx_seq++;
            c->rx_off = 0;
        }
    }
    if ((size_t)n > expected)
        return bench_error(-EBADMSG,
                           "mismatch on connection %" PRIu32 ": %zu bytes more than it sent", c->id,
                           (size_t)n - expected);
    b->last_progress_us = now_us;
    return bench_tcp_send(b, c);
}

/* Move c's oldest-unresolved mark past answered and lost datagrams. */
static void bench_udp_advance(struct bench *b, struct bench_conn *c)
{
    while (c->rx_seq < c->tx_seq && c->sent_at_us[c->rx_seq % b->o->pipeline] == 0)
        c->rx_seq++;
}

/* Send datagrams while the pipeline allows; 0 or -errno. */
static int bench_udp_send(struct bench *b, struct bench_conn *c)
{
    while (c->tx_seq < bench_send_limit(b, c)) {
        bench_pattern(b, c, c->tx_seq, 0, bench_tx, b->o->size_bytes);
        if (send(c->fd, bench_tx, b->o->size_bytes, 0) < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
                return bench_want_out(b, c, true);
            return bench_error(-errno, "connection %" PRIu32 ": send to %s", c->id,
                               b->o->target.name);
        }
        c->sent_at_us[c->tx_seq % b->o->pipeline] = bench_now_us();
        c->tx_seq++;
    }
    return bench_want_out(b, c, false);
}

/* Check one reply: which message it names, and every byte of it; 0 or -errno. */
static int bench_udp_check(struct bench *b, struct bench_conn *c, size_t len, uint64_t now_us)
{
    size_t g = b->o->greeting_len;
    uint64_t seq = len >= g + 8 ? bench_header_seq(c, bench_rx + g) : UINT64_MAX;
    if (len != bench_reply_bytes(b) || seq >= c->tx_seq)
        return bench_error(-EBADMSG,
                           "mismatch on connection %" PRIu32 ": a reply of %zu bytes that "
                           "answers no datagram sent (expected %zu bytes)",
                           c->id, len, bench_reply_bytes(b));
    if (seq < c->rx_seq || c->sent_at_us[seq % b->o->pipeline] == 0) {
        b->late++; /* already counted as lost */
        return 0;
    }
    int rc = bench_verify(b, c, seq, 0, bench_rx, len);
    if (rc < 0)
        return rc;
    bench_complete(b, c, seq, now_us);
    bench_udp_advance(b, c);
    return 0;
}

/* Take every reply waiting on c, then send what the pipeline allows; 0 or -errno. */
static int bench_udp_receive(struct bench *b, struct bench_conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, bench_rx, sizeof(bench_rx), MSG_TRUNC);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return bench_udp_send(b, c);
        if (n < 0)
            return bench_error(-errno, "connection %" PRIu32 ": receiving from %s", c->id,
                               b->o->target.name);
        int rc = bench_udp_check(b, c, (size_t)n, bench_now_us());
        if (rc < 0)
            return rc;
    }
}

/* Count c's datagrams unanswered for -T as lost, so it can go on; 0 or -errno. */
static int bench_udp_expire(struct bench *b, struct bench_conn *c, uint64_t now_us)
{
    uint64_t timeout_us = (uint64_t)b->o->target.timeout_ms * 1000u;
    for (uint64_t seq = c->rx_seq; seq < c->tx_seq; seq++) {
        uint64_t *sent_at_us = &c->sent_at_us[seq % b->o->pipeline];
        if (*sent_at_us != 0 && now_us - *sent_at_us > timeout_us) {
            *sent_at_us = 0;
            b->lost++;
        }
    }
    bench_udp_advance(b, c);
    return bench_udp_send(b, c);
}

/* A started TCP connect finished: fail on refusal, else start the pipeline. */
static int bench_connected(struct bench *b, struct bench_conn *c)
{
    int rc = client_connect_result(c->fd);
    if (rc < 0)
        return bench_error(rc, "connection %" PRIu32 ": cannot connect to %s", c->id,
                           b->o->target.name);
    c->is_connected = true;
    b->last_progress_us = bench_now_us();
    return bench_tcp_send(b, c);
}

/* React to epoll's events for c; 0 or -errno. */
static int bench_handle(struct bench *b, struct bench_conn *c, uint32_t events)
{
    int rc = 0;
    if (!c->is_connected)
        rc = bench_connected(b, c);
    else if (b->o->target.is_udp)
        rc = bench_udp_receive(b, c);
    else if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        rc = bench_tcp_receive(b, c);
    else if (events & EPOLLOUT)
        rc = bench_tcp_send(b, c);
    if (rc == 0)
        bench_finish_if_done(b, c);
    return rc;
}

/* Start every connection and register it with epoll; 0 or -errno. */
static int bench_open(struct bench *b)
{
    for (size_t i = 0; i < b->o->conns; i++) {
        struct bench_conn *c = &b->conns[i];
        c->id = (uint32_t)i;
        c->key = bench_mix(((uint64_t)i << 32) ^ 0x6563686f64ull);
        c->sent_at_us = &b->slots[i * b->o->pipeline];
        c->fd = client_connect_start(&b->o->target);
        if (c->fd < 0)
            return bench_error(c->fd, "connection %zu: cannot connect to %s", i, b->o->target.name);
        b->open_conns++;
        c->is_out_wanted = true;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0)
            return bench_error(-errno, "epoll_ctl");
    }
    return 0;
}

/* Every BENCH_TICK_MS and after each batch of events: the -d deadline, UDP losses and
 * the TCP no-progress limit; 0 or -errno. */
static int bench_tick(struct bench *b, uint64_t now_us)
{
    if (now_us >= b->stop_sending_us)
        b->is_sending_stopped = true;
    bool is_udp = b->o->target.is_udp;
    for (size_t i = 0; i < b->o->conns; i++) {
        struct bench_conn *c = &b->conns[i];
        if (c->is_done)
            continue;
        if (is_udp && c->is_connected) {
            int rc = bench_udp_expire(b, c, now_us);
            if (rc < 0)
                return rc;
        }
        bench_finish_if_done(b, c);
    }
    if (!is_udp && b->open_conns > 0 &&
        now_us - b->last_progress_us > (uint64_t)b->o->target.timeout_ms * 1000u)
        return bench_error(-ETIMEDOUT, "no echo from %s for %d ms (-T); %zu connections waiting",
                           b->o->target.name, b->o->target.timeout_ms, b->open_conns);
    return 0;
}

/* The epoll loop, until every connection is done; 0 or -errno. */
static int bench_loop(struct bench *b)
{
    struct epoll_event events[BENCH_EVENTS];
    uint64_t next_tick_us = 0;
    while (b->open_conns > 0) {
        int n = epoll_wait(b->epfd, events, BENCH_EVENTS, BENCH_TICK_MS);
        if (n < 0 && errno != EINTR)
            return bench_error(-errno, "epoll_wait");
        for (int i = 0; i < n; i++) {
            int rc = bench_handle(b, events[i].data.ptr, events[i].events);
            if (rc < 0)
                return rc;
        }
        uint64_t now_us = bench_now_us();
        if (now_us >= next_tick_us) {
            int rc = bench_tick(b, now_us);
            if (rc < 0)
                return rc;
            next_tick_us = now_us + BENCH_TICK_MS * 1000u;
        }
    }
    b->end_us = bench_now_us();
    return 0;
}

/* UDP sockets are connected at once: start their pipelines. */
static int bench_start_udp(struct bench *b)
{
    for (size_t i = 0; i < b->o->conns; i++) {
        b->conns[i].is_connected = true;
        int rc = bench_udp_send(b, &b->conns[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- report */

static void bench_report(const struct bench *b)
{
    const struct bench_options *o = b->o;
    double seconds = (double)(b->end_us - b->start_us) / 1e6;
    if (seconds <= 0)
        seconds = 1e-6;
    double msgs_per_s = (double)b->completed / seconds;
    double mib_per_s = msgs_per_s * (double)o->size_bytes / (1024.0 * 1024.0);
    uint64_t p50 = bench_percentile_us(b, 0.50), p90 = bench_percentile_us(b, 0.90);
    uint64_t p99 = bench_percentile_us(b, 0.99);
    const char *proto = o->target.is_udp ? "udp" : "tcp";
    if (!o->is_quiet) {
        printf("%s: %s %s, %lu connections, %lu-byte messages, pipeline %lu\n", BENCH_NAME, proto,
               o->target.name, o->conns, o->size_bytes, o->pipeline);
        printf("  messages    %" PRIu64 " echoed and verified in %.3f s (%" PRIu64 " lost, %" PRIu64
               " late)\n",
               b->completed, seconds, b->lost, b->late);
        printf("  throughput  %.0f msg/s, %.2f MiB/s\n", msgs_per_s, mib_per_s);
        printf("  latency     p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms\n", p50 / 1e3,
               p90 / 1e3, p99 / 1e3, b->max_latency_us / 1e3);
    }
    printf("%s proto=%s target=%s conns=%lu size=%lu pipeline=%lu msgs=%" PRIu64 " lost=%" PRIu64
           " late=%" PRIu64 " seconds=%.3f msgs_per_s=%.0f mib_per_s=%.2f p50_us=%" PRIu64
           " p90_us=%" PRIu64 " p99_us=%" PRIu64 " max_us=%" PRIu64 "\n",
           BENCH_NAME, proto, o->target.name, o->conns, o->size_bytes, o->pipeline, b->completed,
           b->lost, b->late, seconds, msgs_per_s, mib_per_s, p50, p90, p99, b->max_latency_us);
    fflush(stdout);
}

/* ---------------------------------------------------------------- start-up */

static void bench_usage(FILE *out)
{
    fprintf(out,
            "Usage: " BENCH_NAME " [-H HOST] [-p PORT] [-c CONNS] [-n MSGS | -d SECONDS]\n"
            "                   [-s SIZE] [-P PIPELINE] [-T MS] [-g TEXT] [-u] [-q]\n"
            "Load echod from CONNS connections and verify every echoed byte.\n"
            "\n"
            "  -H, --host HOST         server address or name (default %s)\n"
            "  -p, --port PORT         server port (default %d)\n"
            "  -u, --udp               UDP: one datagram per message (default TCP)\n"
            "  -c, --connections N     connections (default %d)\n"
            "  -n, --messages N        messages per connection, then stop\n"
            "  -d, --duration SECONDS  or: start messages for this long (default %d)\n"
            "  -s, --size BYTES        message size (default %d; UDP: 8-%d)\n"
            "  -P, --pipeline N        messages in flight per connection (default 1)\n"
            "  -T, --timeout MS        TCP: fail after MS ms without an echo; UDP: count a\n"
            "                          datagram unanswered for MS ms as lost (default %d)\n"
            "  -g, --greeting TEXT     expect every reply to be TEXT then the message:\n"
            "                          echod in greet mode (messages end in a newline)\n"
            "  -q, --quiet             print only the one-line summary\n"
            "  -h, --help              show this help and exit\n"
            "  -V, --version           show the version and exit\n"
            "\n"
            "Exit codes: 0 all verified, 1 mismatch or connection error, 64 bad usage.\n",
            CLIENT_DEFAULT_HOST, CLIENT_DEFAULT_PORT, BENCH_DEFAULT_CONNS, BENCH_DEFAULT_DURATION_S,
            BENCH_DEFAULT_SIZE_BYTES, BENCH_MAX_UDP_SIZE_BYTES, CLIENT_DEFAULT_TIMEOUT_MS);
}

/* Parse a count option's argument 1..max or exit 64. */
static unsigned long bench_count_arg(const char *what, unsigned long max)
{
    unsigned long v;
    if (client_parse_count(optarg, max, &v) < 0)
        client_usage_error(BENCH_NAME, "invalid %s '%s' (1-%lu)", what, optarg, max);
    return v;
}

/* Options that need each other: -n or -d, UDP sizes, memory for the slots. */
static void bench_check_args(struct bench_options *o, bool has_duration)
{
    if (o->msgs_per_conn != 0 && has_duration)
        client_usage_error(BENCH_NAME, "-n and -d exclude each other");
    if (o->target.is_udp &&
        (o->size_bytes < BENCH_MIN_UDP_SIZE_BYTES || o->size_bytes > BENCH_MAX_UDP_SIZE_BYTES))
        client_usage_error(BENCH_NAME, "-s %lu: UDP messages are %d to %d bytes", o->size_bytes,
                           BENCH_MIN_UDP_SIZE_BYTES, BENCH_MAX_UDP_SIZE_BYTES);
    if (o->greeting_len > 0 && !o->target.is_udp && o->size_bytes <= 8)
        client_usage_error(BENCH_NAME, "-g over TCP needs -s above 8: a message must be a line");
    if (o->target.is_udp && o->greeting_len + o->size_bytes > BENCH_MAX_UDP_SIZE_BYTES)
        client_usage_error(BENCH_NAME, "-g and -s: a UDP reply holds at most %d bytes",
                           BENCH_MAX_UDP_SIZE_BYTES);
    if (o->conns * o->pipeline > BENCH_MAX_SLOTS)
        client_usage_error(BENCH_NAME, "-c x -P may be at most %lu", BENCH_MAX_SLOTS);
}

/* Parse argv into o; exits 0 for --help/--version and 64 on bad usage. */
static void bench_parse_args(int argc, char **argv, struct bench_options *o)
{
    static const struct client_tool tool = {BENCH_NAME, bench_usage};
    static const struct option longopts[] = {
        CLIENT_LONG_OPTS,
        {"connections", required_argument, NULL, 'c'},
        {"messages", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 'd'},
        {"size", required_argument, NULL, 's'},
        {"pipeline", required_argument, NULL, 'P'},
        {"greeting", required_argument, NULL, 'g'},
        {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct bench_options){.conns = BENCH_DEFAULT_CONNS,
                                .duration_s = BENCH_DEFAULT_DURATION_S,
                                .size_bytes = BENCH_DEFAULT_SIZE_BYTES,
                                .pipeline = 1,
                                .greeting = ""};
    client_target_init(&o->target);
    bool has_duration = false;
    client_begin_options(&tool, argv);
    int ch;
    while ((ch = getopt_long(argc, argv, CLIENT_SHORT_OPTS "c:n:d:s:P:g:q", longopts, NULL)) !=
           -1) {
        if (client_take_option(&tool, ch, &o->target))
            continue;
        switch (ch) {
        case 'c':
            o->conns = bench_count_arg("connection count", BENCH_MAX_CONNS);
            break;
        case 'n':
            o->msgs_per_conn = bench_count_arg("message count", 1000000000000ul);
            break;
        case 'd':
            o->duration_s = bench_count_arg("duration", 86400);
            has_duration = true;
            break;
        case 's':
            o->size_bytes = bench_count_arg("size", BENCH_MAX_SIZE_BYTES);
            break;
        case 'P':
            o->pipeline = bench_count_arg("pipeline depth", 65536);
            break;
        case 'g':
            o->greeting = optarg;
            o->greeting_len = strlen(optarg);
            break;
        case 'q':
            o->is_quiet = true;
            break;
        default:
            client_usage_error(BENCH_NAME, "unexpected option '%s'", argv[optind - 1]);
        }
    }
    client_end_options(&tool, argc, argv);
    bench_check_args(o, has_duration);
}

/* Raise the soft fd limit to the hard one: each connection is an fd; 0 or -EMFILE. */
static int bench_raise_fd_limit(unsigned long conns)
{
    uint64_t limit = 0;
    (void)fdlimit_raise(&limit); /* what is in force is what counts */
    if (limit < (uint64_t)conns + 16)
        return bench_error(-EMFILE, "%lu connections need %lu fds; the limit is %llu", conns,
                           conns + 16, (unsigned long long)limit);
    return 0;
}

/* Set up, run and report; 0 or -errno. */
static int bench_run(const struct bench_options *o)
{
    static struct bench b; /* the histogram is large: not on the stack */
    b.o = o;
    b.stop_sending_us = UINT64_MAX;
    b.epfd = epoll_create1(EPOLL_CLOEXEC);
    b.conns = calloc(o->conns, sizeof(*b.conns));
    b.slots = calloc(o->conns * o->pipeline, sizeof(*b.slots));
    int rc = -ENOMEM;
    if (b.epfd < 0 || b.conns == NULL || b.slots == NULL) {
        bench_error(b.epfd < 0 ? -errno : rc, "start-up");
        goto fail;
    }
    for (size_t i = 0; i < o->conns; i++)
        b.conns[i].fd = -1;
    b.start_us = b.last_progress_us = bench_now_us();
    if (o->msgs_per_conn == 0)
        b.stop_sending_us = b.start_us + o->duration_s * 1000000u;
    rc = bench_open(&b);
    if (rc == 0 && o->target.is_udp)
        rc = bench_start_udp(&b);
    if (rc == 0)
        rc = bench_loop(&b);
    if (rc == 0)
        bench_report(&b);
fail:
    for (size_t i = 0; b.conns != NULL && i < o->conns; i++)
        if (b.conns[i].fd >= 0)
            close(b.conns[i].fd);
    free(b.conns);
    free(b.slots);
    if (b.epfd >= 0)
        close(b.epfd);
    return rc;
}

/* A name with several addresses (localhost: ::1 and 127.0.0.1): connect to each in turn
 * until one answers, so that every connection goes there. The connection that found it
 * is closed at once, before any byte is sent; 0 or -errno. */
static int bench_pick_address(struct client_target *t)
{
    if (t->addr_count < 2)
        return 0;
    int fd = client_connect(t, t->timeout_ms);
    if (fd < 0)
        return bench_error(fd, "cannot connect to %s", t->name);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    struct bench_options o;
    bench_parse_args(argc, argv, &o);
    signal(SIGPIPE, SIG_IGN);
    int rc = client_target_resolve(&o.target, BENCH_NAME);
    if (rc == 0)
        rc = bench_pick_address(&o.target);
    if (rc < 0)
        return 1;
    rc = bench_raise_fd_limit(o.conns);
    if (rc == 0)
        rc = bench_run(&o);
    return rc < 0 ? 1 : 0;
}
