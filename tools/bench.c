/* bench: echod-bench, a verifying load generator. Each of -t worker threads owns a share
 * of the connections, one level-triggered epoll loop over them, its scratch buffers and
 * its latency histogram; the main thread starts them, prints a progress line a second
 * at a terminal, joins them and reports. Every message's bytes derive from its
 * connection and sequence number, so each echoed byte is checked where it lands. TCP
 * fails on a mismatch, an error or no progress for -T ms; UDP counts a datagram
 * unanswered for -T ms as lost and goes on, and fails when more than --max-loss % is.
 * With -g every reply is the greeting, then the message (echod in greet mode).
 *
 * DESIGN. Closed loop (the default) keeps -P messages in flight per connection and
 * times each from its send. Open loop (-R) gives each connection a schedule, rate / -c
 * messages a second, staggered within its thread; a message may go once its slot has
 * come and the pipeline has room, and its latency runs from the slot's time, not the
 * send's: a server stall then delays every message scheduled during it, as wrk2 showed
 * (coordinated omission). Churn (--churn) carries one message per connection, then
 * closes it and connects again. Nothing is allocated once the first message is sent:
 * per-message state lives in per-connection slot rings. A worker merges its histogram
 * into the shared one (under bench.lock) every BENCH_MERGE_MS and when it ends.
 * Exit codes: 0 done and verified, 1 mismatch or connection error, 2 UDP loss above
 * --max-loss, 64 bad usage. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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
#include "clock.h"
#include "fdlimit.h"
#include "hist.h"
#include "report.h"

#define BENCH_NAME               "echod-bench"
#define BENCH_DEFAULT_CONNS      50
#define BENCH_DEFAULT_SIZE_BYTES 64
#define BENCH_DEFAULT_DURATION_S 5
#define BENCH_DEFAULT_MAX_LOSS   1.0 /* %: UDP loss above this fails the run */
#define BENCH_MAX_CONNS          100000
#define BENCH_MAX_THREADS        256
#define BENCH_MAX_RATE           100000000ul /* messages or connections a second */
#define BENCH_MAX_SIZE_BYTES     (16ul * 1024 * 1024)
#define BENCH_MAX_UDP_SIZE_BYTES 65507      /* largest IPv4 UDP payload */
#define BENCH_MIN_UDP_SIZE_BYTES 8          /* the sequence header */
#define BENCH_MAX_SLOTS          10000000ul /* connections x pipeline */
#define BENCH_SCRATCH_BYTES      65536
#define BENCH_TICK_MS            10  /* deadline, loss and progress checks */
#define BENCH_MERGE_MS           250 /* a worker's histogram into the shared one */
#define BENCH_EVENTS             256
#define BENCH_HIST_DIGITS        3
#define BENCH_EXIT_ERROR         1
#define BENCH_EXIT_LOSS          2

enum bench_mode { BENCH_CLOSED, BENCH_OPEN, BENCH_CHURN };

struct bench_options {
    struct client_target target;
    unsigned long conns;
    unsigned long threads;       /* -t */
    unsigned long msgs_per_conn; /* -n (churn: connections per slot); 0 = run for duration_s */
    unsigned long duration_s;
    unsigned long size_bytes;
    unsigned long pipeline;
    unsigned long rate;         /* -R: messages a second in total; 0 = closed loop */
    unsigned long connect_rate; /* --connect-rate: connections opened a second; 0 = at once */
    double max_loss_percent;    /* --max-loss */
    const char *latency_out;    /* --latency-out FILE, or NULL */
    const char *greeting;       /* -g: every reply is it, then the message ("": echo) */
    size_t greeting_len;
    enum bench_mode mode;
    bool is_quiet;
    bool is_json;
};

struct bench_conn {
    int fd;
    uint32_t id;    /* 0 .. -c - 1, across threads */
    uint32_t index; /* within its worker: its place in the open-loop schedule */
    uint64_t key;   /* mixes the connection into every message's bytes */
    bool is_opened; /* its first connect has started (--connect-rate ramps this) */
    bool is_connected;
    bool is_out_wanted; /* EPOLLOUT is registered */
    bool is_done;
    uint64_t tx_seq; /* the next byte to send is byte tx_off of message tx_seq */
    size_t tx_off;
    uint64_t rx_seq; /* TCP: next byte expected is byte rx_off of message rx_seq;
                      * UDP: the oldest message neither answered nor lost */
    size_t rx_off;
    uint64_t rx_top;      /* UDP: 1 + the highest message answered (reordering) */
    uint64_t first_seq;   /* churn: the one message this connection carries */
    uint64_t slot_offset; /* open loop: schedule slots gone before it connected */
    uint64_t due_slots;   /* open loop: schedule slots come so far */
    uint64_t connect_started_us;
    uint64_t last_progress_us; /* connected, or bytes moved while waiting on the server */
    uint64_t *sent_at_us; /* [pipeline], by seq % pipeline: the send (or slot) time; 0 = free */
};

struct bench;

/* A worker thread and everything it alone touches, but the published counters. */
struct bench_worker {
    struct bench *b;
    pthread_t thread;
    int epfd;
    struct bench_conn *conns; /* its share of bench.conns */
    size_t conn_count;
    size_t opened;            /* connections started so far */
    size_t open_conns;        /* started and not done */
    double slot_period_us;    /* open loop: between two slots of this worker */
    uint64_t next_slot;       /* open loop: the next slot to come, over all its connections */
    double connect_period_us; /* --connect-rate: between two of its connects */
    bool is_stopped;          /* -d has run out: no new messages (open loop: no slots) */
    struct hist *hist;        /* latencies since the last merge */
    uint64_t completed, lost, late, reordered, connects;
    uint64_t next_merge_us;
    int rc; /* 0, or the -errno that ended it */
    /* Counters for the progress line: written by the worker, read by the main thread. */
    _Atomic uint64_t shown_completed, shown_lost, shown_connects;
    uint8_t tx[BENCH_SCRATCH_BYTES];   /* bytes being sent */
    uint8_t rx[BENCH_SCRATCH_BYTES];   /* bytes received */
    uint8_t want[BENCH_SCRATCH_BYTES]; /* what they should be */
};

struct bench {
    const struct bench_options *o;
    struct bench_conn *conns;
    uint64_t *slots; /* every connection's sent_at_us ring, one allocation */
    struct bench_worker *workers;
    size_t worker_count;
    uint64_t start_us;
    uint64_t end_us;
    uint64_t stop_sending_us; /* -d deadline; UINT64_MAX with -n */
    atomic_bool is_aborted;   /* a worker failed: the others stop at once */
    pthread_mutex_t lock;     /* guards hist, running and done */
    pthread_cond_t done;      /* signalled when a worker ends */
    struct hist *hist;        /* the workers' merged latencies */
    size_t running;           /* workers not yet ended */
};

#define bench_error(rc, ...) client_report(BENCH_NAME, rc, __VA_ARGS__)

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
 * a final '\n' after the header, so that line-based servers answer every message. With
 * -g over TCP that '\n' is its only one (others become spaces): one message, one line. */
static void bench_pattern(const struct bench *b, const struct bench_conn *c, uint64_t seq,
                          size_t off, uint8_t *out, size_t len)
{
    uint64_t header = seq ^ c->key;
    uint64_t seed = bench_mix(c->key ^ bench_mix(seq + 1));
    bool is_one_line = b->o->greeting_len > 0 && !b->o->target.is_udp;
    for (size_t i = 0; i < len; i++) {
        size_t at = off + i;
        uint64_t word = at < 8 ? header : seed + (uint64_t)(at >> 3) * 0x9e3779b97f4a7c15ull;
        out[i] = (uint8_t)(word >> ((at & 7) * 8));
        if (out[i] == '\n' && is_one_line)
            out[i] = ' ';
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

/* "127.0.0.1:40000", c's own end, for error messages. */
static void bench_local_name(const struct bench_conn *c, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (c->fd < 0 || getsockname(c->fd, (struct sockaddr *)&ss, &len) != 0)
        snprintf(buf, size, "?");
    else
        addr_format((const struct sockaddr *)&ss, buf, size);
}

/* The bytes of the reply to one message: -g's greeting, then the message. */
static size_t bench_reply_bytes(const struct bench_options *o)
{
    return o->greeting_len + o->size_bytes;
}

/* Compare got with bytes [off, off+len) of the reply to message seq (-g's greeting, then
 * the message); 0 or -EBADMSG with a message naming the connection (and its local
 * address), the message, the byte (of the greeting, or of the message) and its offset
 * in the connection's stream of replies. */
static int bench_verify(struct bench_worker *w, const struct bench_conn *c, uint64_t seq,
                        size_t off, const uint8_t *got, size_t len)
{
    const struct bench_options *o = w->b->o;
    size_t g = o->greeting_len, head = off < g ? g - off : 0;
    if (head > len)
        head = len;
    memcpy(w->want, o->greeting + (off < g ? off : g), head);
    if (head < len)
        bench_pattern(w->b, c, seq, off + head - g, w->want + head, len - head);
    if (memcmp(w->want, got, len) == 0)
        return 0;
    size_t i = 0;
    while (w->want[i] == got[i])
        i++;
    char local[ADDR_STRLEN];
    bench_local_name(c, local, sizeof(local));
    uint64_t first_seq = o->mode == BENCH_CHURN ? c->first_seq : 0;
    size_t at = off + i; /* in the reply */
    uint64_t stream_off = (seq - first_seq) * bench_reply_bytes(o) + at;
    return bench_error(-EBADMSG,
                       "mismatch on connection %" PRIu32 " (from %s), message %" PRIu64
                       ", %s %zu, stream offset %" PRIu64 ": expected 0x%02x, got 0x%02x",
                       c->id, local, seq, at < g ? "greeting byte" : "byte", at < g ? at : at - g,
                       stream_off, w->want[i], got[i]);
}

/* ---------------------------------------------------------------- schedule */

static bool bench_is_open_loop(const struct bench_worker *w)
{
    return w->b->o->mode == BENCH_OPEN;
}

/* When slot number `slot` of this worker comes: slot j is connection j % count's
 * (j / count)th. */
static uint64_t bench_slot_time_us(const struct bench_worker *w, uint64_t slot)
{
    return w->b->start_us + (uint64_t)((double)slot * w->slot_period_us);
}

/* The send time message seq of c counts from: its slot's (open loop), its connect's
 * (churn: the whole connect-echo-close), or now. */
static uint64_t bench_stamp_us(const struct bench_worker *w, const struct bench_conn *c,
                               uint64_t seq, uint64_t now_us)
{
    switch (w->b->o->mode) {
    case BENCH_OPEN:
        return bench_slot_time_us(w, (seq + c->slot_offset) * w->conn_count + c->index);
    case BENCH_CHURN:
        return c->connect_started_us;
    default:
        return now_us;
    }
}

/* The messages c will have sent when it is done, as far as is known: -n, and once -d has
 * run out what it has started (open loop: what its slots so far allow); UINT64_MAX while
 * open-ended. */
static uint64_t bench_final_limit(const struct bench_worker *w, const struct bench_conn *c)
{
    uint64_t limit = w->b->o->msgs_per_conn != 0 ? w->b->o->msgs_per_conn : UINT64_MAX;
    if (w->is_stopped || atomic_load_explicit(&w->b->is_aborted, memory_order_relaxed)) {
        uint64_t started = c->tx_off > 0 ? c->tx_seq + 1 : c->tx_seq;
        if (bench_is_open_loop(w) && c->due_slots > c->slot_offset)
            started =
                started > c->due_slots - c->slot_offset ? started : c->due_slots - c->slot_offset;
        if (limit > started)
            limit = started;
    }
    return limit;
}

/* The first message c may not start yet: the pipeline, the final limit, its slots (open
 * loop) and its one message (churn) allowing. */
static uint64_t bench_send_limit(const struct bench_worker *w, const struct bench_conn *c)
{
    uint64_t limit = c->rx_seq + w->b->o->pipeline;
    uint64_t final = bench_final_limit(w, c);
    if (limit > final)
        limit = final;
    if (bench_is_open_loop(w)) {
        uint64_t due = c->due_slots > c->slot_offset ? c->due_slots - c->slot_offset : 0;
        if (limit > due)
            limit = due;
    }
    if (w->b->o->mode == BENCH_CHURN && limit > c->first_seq + 1)
        limit = c->first_seq + 1;
    return limit;
}

/* ---------------------------------------------------------------- latencies */

/* Message seq of c came back whole and verified. */
static void bench_complete(struct bench_worker *w, struct bench_conn *c, uint64_t seq,
                           uint64_t now_us)
{
    uint64_t *sent_at_us = &c->sent_at_us[seq % w->b->o->pipeline];
    uint64_t latency_us = now_us > *sent_at_us ? now_us - *sent_at_us : 0;
    *sent_at_us = 0;
    (void)hist_record(w->hist, latency_us); /* beyond an hour: counted at the top */
    w->completed++;
    c->last_progress_us = now_us;
}

/* Move this worker's latencies into the shared histogram. */
static void bench_merge(struct bench_worker *w)
{
    pthread_mutex_lock(&w->b->lock);
    (void)hist_merge(w->b->hist, w->hist); /* same range and precision: cannot fail */
    pthread_mutex_unlock(&w->b->lock);
    hist_reset(w->hist);
}

/* Publish the counters the progress line shows. */
static void bench_publish(struct bench_worker *w)
{
    atomic_store_explicit(&w->shown_completed, w->completed, memory_order_relaxed);
    atomic_store_explicit(&w->shown_lost, w->lost, memory_order_relaxed);
    atomic_store_explicit(&w->shown_connects, w->connects, memory_order_relaxed);
}

/* ---------------------------------------------------------------- connections */

/* Register or drop EPOLLOUT for c; 0 or -errno. */
static int bench_want_out(struct bench_worker *w, struct bench_conn *c, bool is_wanted)
{
    if (c->is_out_wanted == is_wanted)
        return 0;
    struct epoll_event ev = {.events = EPOLLIN | (is_wanted ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        return bench_error(-errno, "epoll_ctl");
    c->is_out_wanted = is_wanted;
    return 0;
}

/* Whether c waits on the server: connecting, or bytes sent and not all echoed. */
static bool bench_is_waiting(const struct bench_conn *c)
{
    return !c->is_connected || c->rx_seq != c->tx_seq || c->tx_off != 0 || c->rx_off != 0;
}

/* Start a connect for c (its first, or churn's next) and register it; 0 or -errno. */
static int bench_connect(struct bench_worker *w, struct bench_conn *c, uint64_t now_us)
{
    const struct bench *b = w->b;
    c->fd = client_connect_start(&b->o->target);
    if (c->fd < 0)
        return bench_error(c->fd, "connection %" PRIu32 ": cannot connect to %s", c->id,
                           b->o->target.name);
    c->is_connected = false;
    c->is_out_wanted = true;
    c->connect_started_us = c->last_progress_us = now_us;
    c->first_seq = c->tx_seq;
    c->rx_off = c->tx_off = 0;
    if (bench_is_open_loop(w) && !c->is_opened)
        c->slot_offset = c->due_slots; /* the slots gone before it existed are skipped */
    c->is_opened = true;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        return bench_error(-errno, "epoll_ctl");
    return 0;
}

/* Close c's socket. */
static void bench_disconnect(struct bench_worker *w, struct bench_conn *c)
{
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->is_connected = false;
}

/* Close c once everything it started has been answered (or lost) and it may start no
 * more; churn: close it after its one message, and connect again unless done. 0 or
 * -errno. */
static int bench_finish_if_done(struct bench_worker *w, struct bench_conn *c, uint64_t now_us)
{
    if (c->is_done || !c->is_opened || (c->is_connected && bench_is_waiting(c)))
        return 0;
    bool is_final = c->tx_seq >= bench_final_limit(w, c);
    if (w->b->o->mode == BENCH_CHURN && c->is_connected && c->tx_seq == c->first_seq + 1) {
        bench_disconnect(w, c);
        w->connects++;
        if (!is_final)
            return bench_connect(w, c, now_us);
    }
    if (!c->is_connected && !is_final)
        return 0; /* still connecting */
    if (!is_final || (w->b->o->mode != BENCH_CHURN && bench_send_limit(w, c) > c->tx_seq))
        return 0;
    if (c->fd >= 0)
        bench_disconnect(w, c);
    c->is_done = true;
    w->open_conns--;
    return 0;
}

/* Count n bytes just sent from c's position, stamping each message they start. */
static void bench_advance_tx(struct bench_worker *w, struct bench_conn *c, size_t n,
                             uint64_t now_us)
{
    size_t size = w->b->o->size_bytes;
    while (n > 0) {
        if (c->tx_off == 0)
            c->sent_at_us[c->tx_seq % w->b->o->pipeline] = bench_stamp_us(w, c, c->tx_seq, now_us);
        size_t chunk = size - c->tx_off;
        if (chunk > n)
            chunk = n;
        c->tx_off += chunk;
        n -= chunk;
        if (c->tx_off == size) {
            c->tx_seq++;
            c->tx_off = 0;
        }
    }
}

/* Lay out the bytes c may send next into w->tx; how many. */
static size_t bench_tcp_stage(struct bench_worker *w, const struct bench_conn *c)
{
    uint64_t limit = bench_send_limit(w, c);
    uint64_t seq = c->tx_seq;
    size_t size = w->b->o->size_bytes, off = c->tx_off, len = 0;
    while (len < sizeof(w->tx) && seq < limit) {
        size_t chunk = size - off;
        if (chunk > sizeof(w->tx) - len)
            chunk = sizeof(w->tx) - len;
        bench_pattern(w->b, c, seq, off, w->tx + len, chunk);
        len += chunk;
        off += chunk;
        if (off == size) {
            seq++;
            off = 0;
        }
    }
    return len;
}

/* Send what the pipeline allows until the socket is full; 0 or -errno. */
static int bench_tcp_send(struct bench_worker *w, struct bench_conn *c)
{
    for (;;) {
        size_t len = bench_tcp_stage(w, c);
        if (len == 0)
            return bench_want_out(w, c, false);
        bool was_idle = !bench_is_waiting(c);
        ssize_t n = send(c->fd, w->tx, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return bench_want_out(w, c, true);
        if (n < 0)
            return bench_error(-errno, "connection %" PRIu32 ": send", c->id);
        uint64_t now_us = clock_now_us();
        if (was_idle)
            c->last_progress_us = now_us; /* the -T clock starts with the first byte */
        bench_advance_tx(w, c, (size_t)n, now_us);
        if ((size_t)n < len)
            return bench_want_out(w, c, true);
    }
}

/* Read and verify what c's server echoed, then refill the pipeline; 0 or -errno. */
static int bench_tcp_receive(struct bench_worker *w, struct bench_conn *c)
{
    ssize_t n = recv(c->fd, w->rx, sizeof(w->rx), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n < 0)
        return bench_error(-errno, "connection %" PRIu32 ": recv", c->id);
    if (n == 0)
        return bench_error(-ECONNRESET,
                           "connection %" PRIu32 " closed by the server after %" PRIu64 " messages",
                           c->id, c->rx_seq);
    uint64_t now_us = clock_now_us();
    size_t size = bench_reply_bytes(w->b->o);
    /* An echo answers every byte sent; greet mode only whole messages (lines). */
    uint64_t unanswered =
        (c->tx_seq - c->rx_seq) * size - c->rx_off + (w->b->o->greeting_len == 0 ? c->tx_off : 0);
    size_t expected = (uint64_t)n < unanswered ? (size_t)n : (size_t)unanswered;
    for (size_t pos = 0; pos < expected;) {
        size_t chunk = size - c->rx_off;
        if (chunk > expected - pos)
            chunk = expected - pos;
        int rc = bench_verify(w, c, c->rx_seq, c->rx_off, w->rx + pos, chunk);
        if (rc < 0)
            return rc;
        pos += chunk;
        c->rx_off += chunk;
        if (c->rx_off == size) {
            bench_complete(w, c, c->rx_seq, now_us);
            c->rx_seq++;
            c->rx_off = 0;
        }
    }
    if ((size_t)n > expected)
        return bench_error(-EBADMSG,
                           "mismatch on connection %" PRIu32 ": %zu bytes more than it sent", c->id,
                           (size_t)n - expected);
    c->last_progress_us = now_us;
    return bench_tcp_send(w, c);
}

/* Move c's oldest-unresolved mark past answered and lost datagrams. */
static void bench_udp_advance(struct bench_worker *w, struct bench_conn *c)
{
    while (c->rx_seq < c->tx_seq && c->sent_at_us[c->rx_seq % w->b->o->pipeline] == 0)
        c->rx_seq++;
}

/* Send datagrams while the pipeline allows; 0 or -errno. */
static int bench_udp_send(struct bench_worker *w, struct bench_conn *c)
{
    size_t size = w->b->o->size_bytes;
    while (c->tx_seq < bench_send_limit(w, c)) {
        bench_pattern(w->b, c, c->tx_seq, 0, w->tx, size);
        if (send(c->fd, w->tx, size, 0) < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
                return bench_want_out(w, c, true);
            return bench_error(-errno, "connection %" PRIu32 ": send to %s", c->id,
                               w->b->o->target.name);
        }
        c->sent_at_us[c->tx_seq % w->b->o->pipeline] =
            bench_stamp_us(w, c, c->tx_seq, clock_now_us());
        c->tx_seq++;
    }
    return bench_want_out(w, c, false);
}

/* Check one reply: which message it names, and every byte of it; 0 or -errno. */
static int bench_udp_check(struct bench_worker *w, struct bench_conn *c, size_t len,
                           uint64_t now_us)
{
    size_t g = w->b->o->greeting_len, size = bench_reply_bytes(w->b->o);
    uint64_t seq = len >= g + 8 ? bench_header_seq(c, w->rx + g) : UINT64_MAX;
    if (len != size || seq >= c->tx_seq)
        return bench_error(-EBADMSG,
                           "mismatch on connection %" PRIu32 ": a reply of %zu bytes that "
                           "answers no datagram sent (expected %zu bytes)",
                           c->id, len, size);
    if (seq < c->rx_seq || c->sent_at_us[seq % w->b->o->pipeline] == 0) {
        w->late++; /* already counted as lost */
        return 0;
    }
    int rc = bench_verify(w, c, seq, 0, w->rx, len);
    if (rc < 0)
        return rc;
    if (seq + 1 < c->rx_top)
        w->reordered++; /* a later datagram was answered first */
    else
        c->rx_top = seq + 1;
    bench_complete(w, c, seq, now_us);
    bench_udp_advance(w, c);
    return 0;
}

/* Take every reply waiting on c, then send what the pipeline allows; 0 or -errno. */
static int bench_udp_receive(struct bench_worker *w, struct bench_conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, w->rx, sizeof(w->rx), MSG_TRUNC);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return bench_udp_send(w, c);
        if (n < 0)
            return bench_error(-errno, "connection %" PRIu32 ": receiving from %s", c->id,
                               w->b->o->target.name);
        int rc = bench_udp_check(w, c, (size_t)n, clock_now_us());
        if (rc < 0)
            return rc;
    }
}

/* Count c's datagrams unanswered for -T as lost, so it can go on; 0 or -errno. */
static int bench_udp_expire(struct bench_worker *w, struct bench_conn *c, uint64_t now_us)
{
    uint64_t timeout_us = (uint64_t)w->b->o->target.timeout_ms * 1000u;
    for (uint64_t seq = c->rx_seq; seq < c->tx_seq; seq++) {
        uint64_t *sent_at_us = &c->sent_at_us[seq % w->b->o->pipeline];
        if (*sent_at_us != 0 && now_us > *sent_at_us && now_us - *sent_at_us > timeout_us) {
            *sent_at_us = 0;
            w->lost++;
        }
    }
    bench_udp_advance(w, c);
    return bench_udp_send(w, c);
}

/* Send what c may send now, by protocol; 0 or -errno. */
static int bench_send(struct bench_worker *w, struct bench_conn *c)
{
    return w->b->o->target.is_udp ? bench_udp_send(w, c) : bench_tcp_send(w, c);
}

/* A started connect finished: fail on refusal, else start sending. UDP sockets are
 * connected at once. */
static int bench_connected(struct bench_worker *w, struct bench_conn *c, uint64_t now_us)
{
    if (!w->b->o->target.is_udp) {
        int rc = client_connect_result(c->fd);
        if (rc < 0)
            return bench_error(rc, "connection %" PRIu32 ": cannot connect to %s", c->id,
                               w->b->o->target.name);
    }
    c->is_connected = true;
    c->last_progress_us = now_us;
    if (w->b->o->mode != BENCH_CHURN)
        w->connects++;
    return bench_send(w, c);
}

/* React to epoll's events for c; 0 or -errno. */
static int bench_handle(struct bench_worker *w, struct bench_conn *c, uint32_t events)
{
    int rc = 0;
    if (!c->is_connected)
        rc = bench_connected(w, c, clock_now_us());
    else if (w->b->o->target.is_udp)
        rc = bench_udp_receive(w, c);
    else if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        rc = bench_tcp_receive(w, c);
    else if (events & EPOLLOUT)
        rc = bench_tcp_send(w, c);
    if (rc == 0)
        rc = bench_finish_if_done(w, c, clock_now_us());
    return rc;
}

/* Start the connections whose turn has come (--connect-rate; else all); 0 or -errno.
 * UDP sockets are connected at once and start sending. */
static int bench_open_due(struct bench_worker *w, uint64_t now_us)
{
    while (w->opened < w->conn_count && !w->is_stopped) {
        uint64_t due_us = w->b->start_us + (uint64_t)((double)w->opened * w->connect_period_us);
        if (due_us > now_us)
            return 0;
        struct bench_conn *c = &w->conns[w->opened++];
        w->open_conns++;
        int rc = bench_connect(w, c, now_us);
        if (rc == 0 && w->b->o->target.is_udp)
            rc = bench_connected(w, c, now_us);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Open loop: let every slot that has come go to its connection, and send; 0 or -errno.
 * No slot comes at or after the -d deadline. */
static int bench_issue_slots(struct bench_worker *w, uint64_t now_us)
{
    for (;;) {
        uint64_t at_us = bench_slot_time_us(w, w->next_slot);
        if (at_us > now_us || at_us >= w->b->stop_sending_us)
            return 0;
        struct bench_conn *c = &w->conns[w->next_slot % w->conn_count];
        c->due_slots = w->next_slot / w->conn_count + 1;
        w->next_slot++;
        if (c->is_connected && !c->is_done) {
            int rc = bench_send(w, c);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* Once the -d deadline has come: (open loop) let every slot before it go, then start
 * no more messages, and close the connections that wait on nothing; 0 or -errno. */
static int bench_stop_if_due(struct bench_worker *w, uint64_t now_us)
{
    if (w->is_stopped || now_us < w->b->stop_sending_us)
        return 0;
    int rc = bench_is_open_loop(w) ? bench_issue_slots(w, now_us) : 0;
    w->is_stopped = true;
    for (size_t i = 0; rc == 0 && i < w->opened; i++)
        rc = bench_finish_if_done(w, &w->conns[i], now_us);
    return rc;
}

/* Every BENCH_TICK_MS: UDP losses, the TCP no-progress limit, finished connections, the
 * progress counters and the histogram merge; 0 or -errno. */
static int bench_tick(struct bench_worker *w, uint64_t now_us)
{
    const struct bench_options *o = w->b->o;
    uint64_t timeout_us = (uint64_t)o->target.timeout_ms * 1000u;
    for (size_t i = 0; i < w->opened; i++) {
        struct bench_conn *c = &w->conns[i];
        if (c->is_done)
            continue;
        if (o->target.is_udp) {
            int rc = bench_udp_expire(w, c, now_us);
            if (rc < 0)
                return rc;
        } else if (bench_is_waiting(c) && now_us > c->last_progress_us &&
                   now_us - c->last_progress_us > timeout_us) {
            return bench_error(-ETIMEDOUT, "connection %" PRIu32 ": %s %s for %d ms (-T)", c->id,
                               c->is_connected ? "no echo from" : "no answer to connecting to",
                               o->target.name, o->target.timeout_ms);
        }
        int rc = bench_finish_if_done(w, c, now_us);
        if (rc < 0)
            return rc;
    }
    bench_publish(w);
    if (now_us >= w->next_merge_us) {
        bench_merge(w);
        w->next_merge_us = now_us + BENCH_MERGE_MS * 1000u;
    }
    return 0;
}

/* epoll_wait with a timeout in µs (epoll_pwait2, else rounded up to ms). */
static int bench_wait(struct bench_worker *w, struct epoll_event *events, uint64_t timeout_us)
{
    struct timespec ts = {.tv_sec = (time_t)(timeout_us / 1000000u),
                          .tv_nsec = (long)(timeout_us % 1000000u) * 1000};
    int n = epoll_pwait2(w->epfd, events, BENCH_EVENTS, &ts, NULL);
    if (n < 0 && errno == ENOSYS)
        n = epoll_wait(w->epfd, events, BENCH_EVENTS, (int)((timeout_us + 999) / 1000));
    return n;
}

/* The next time the loop must wake without events: a slot, a connect, the -d deadline
 * or the tick. */
static uint64_t bench_next_wake_us(const struct bench_worker *w, uint64_t next_tick_us)
{
    uint64_t wake_us = next_tick_us;
    if (!w->is_stopped && w->b->stop_sending_us < wake_us)
        wake_us = w->b->stop_sending_us;
    if (bench_is_open_loop(w) && !w->is_stopped) {
        uint64_t slot_us = bench_slot_time_us(w, w->next_slot);
        if (slot_us < wake_us)
            wake_us = slot_us;
    }
    if (w->opened < w->conn_count && !w->is_stopped) {
        uint64_t connect_us = w->b->start_us + (uint64_t)((double)w->opened * w->connect_period_us);
        if (connect_us < wake_us)
            wake_us = connect_us;
    }
    return wake_us;
}

/* The worker's epoll loop, until each of its connections is done; 0 or -errno. */
static int bench_loop(struct bench_worker *w)
{
    struct epoll_event events[BENCH_EVENTS];
    uint64_t next_tick_us = 0;
    for (;;) {
        if (atomic_load_explicit(&w->b->is_aborted, memory_order_relaxed))
            return 0;
        uint64_t now_us = clock_now_us();
        int rc = bench_stop_if_due(w, now_us);
        if (rc == 0 && now_us >= next_tick_us) {
            rc = bench_tick(w, now_us);
            next_tick_us = now_us + BENCH_TICK_MS * 1000u;
        }
        if (rc == 0)
            rc = bench_open_due(w, now_us);
        if (rc == 0 && bench_is_open_loop(w))
            rc = bench_issue_slots(w, now_us);
        if (rc < 0)
            return rc;
        if (w->open_conns == 0 && (w->opened == w->conn_count || w->is_stopped))
            return 0;
        uint64_t wake_us = bench_next_wake_us(w, next_tick_us);
        int n = bench_wait(w, events, wake_us > now_us ? wake_us - now_us : 0);
        if (n < 0 && errno != EINTR)
            return bench_error(-errno, "epoll_wait");
        for (int i = 0; i < n; i++) {
            rc = bench_handle(w, events[i].data.ptr, events[i].events);
            if (rc < 0)
                return rc;
        }
    }
}

static void *bench_worker_main(void *arg)
{
    struct bench_worker *w = arg;
    w->rc = bench_loop(w);
    if (w->rc < 0)
        atomic_store(&w->b->is_aborted, true);
    bench_publish(w);
    bench_merge(w);
    pthread_mutex_lock(&w->b->lock);
    w->b->running--;
    pthread_cond_signal(&w->b->done);
    pthread_mutex_unlock(&w->b->lock);
    return NULL;
}

/* ---------------------------------------------------------------- report */

static const char *bench_mode_name(enum bench_mode mode)
{
    return mode == BENCH_OPEN ? "open" : mode == BENCH_CHURN ? "churn" : "closed";
}

/* The run as the options describe it, for report.c. */
static struct report_run bench_run_desc(const struct bench_options *o)
{
    return (struct report_run){.tool = BENCH_NAME,
                               .proto = o->target.is_udp ? "udp" : "tcp",
                               .target = o->target.name,
                               .mode = bench_mode_name(o->mode),
                               .threads = o->threads,
                               .conns = o->conns,
                               .size_bytes = o->size_bytes,
                               .pipeline = o->pipeline,
                               .rate = o->rate,
                               .connect_rate = o->connect_rate,
                               .max_loss_percent = o->max_loss_percent};
}

/* Sum the workers' final counters and read the merged histogram. */
static void bench_figures(const struct bench *b, struct report_figures *f)
{
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < b->worker_count; i++) {
        const struct bench_worker *w = &b->workers[i];
        f->msgs += w->completed;
        f->lost += w->lost;
        f->late += w->late;
        f->reordered += w->reordered;
        f->connects += w->connects;
    }
    f->seconds = (double)(b->end_us - b->start_us) / 1e6;
    f->p50_us = hist_percentile(b->hist, 50.0);
    f->p90_us = hist_percentile(b->hist, 90.0);
    f->p99_us = hist_percentile(b->hist, 99.0);
    f->p999_us = hist_percentile(b->hist, 99.9);
    f->p9999_us = hist_percentile(b->hist, 99.99);
    f->max_us = hist_max(b->hist);
    f->mean_us = hist_mean(b->hist);
    f->count = hist_count(b->hist);
    report_derive(f, b->o->size_bytes);
}

/* The summary: JSON, or the block for people (unless -q) and the name=value line. */
static void bench_report(const struct bench *b, const struct report_figures *f)
{
    struct report_run run = bench_run_desc(b->o);
    if (b->o->is_json) {
        report_json(stdout, &run, f);
    } else {
        if (!b->o->is_quiet)
            report_human(stdout, &run, f);
        report_line(stdout, &run, f);
    }
    fflush(stdout);
}

/* --latency-out: the merged histogram's .hgrm, in milliseconds; 0 or -errno. */
static int bench_write_latency(const struct bench *b)
{
    const char *path = b->o->latency_out;
    FILE *out = fopen(path, "w");
    if (out == NULL)
        return bench_error(-errno, "cannot write %s", path);
    int rc = hist_write_hgrm(b->hist, out, 1000.0);
    if (fclose(out) != 0 && rc == 0)
        rc = -errno;
    if (rc < 0)
        return bench_error(rc, "cannot write %s", path);
    return 0;
}

/* One progress line: the last second's rate, the errors so far and the p99 so far. */
static void bench_progress(struct bench *b, uint64_t now_us, uint64_t *last_completed,
                           uint64_t *last_us)
{
    uint64_t completed = 0, lost = 0, connects = 0;
    for (size_t i = 0; i < b->worker_count; i++) {
        completed += atomic_load_explicit(&b->workers[i].shown_completed, memory_order_relaxed);
        lost += atomic_load_explicit(&b->workers[i].shown_lost, memory_order_relaxed);
        connects += atomic_load_explicit(&b->workers[i].shown_connects, memory_order_relaxed);
    }
    double dt = (double)(now_us - *last_us) / 1e6;
    pthread_mutex_lock(&b->lock);
    uint64_t p99_us = hist_percentile(b->hist, 99.0);
    pthread_mutex_unlock(&b->lock);
    struct report_run run = bench_run_desc(b->o);
    report_progress(stdout, &run, (double)(now_us - b->start_us) / 1e6,
                    dt > 0 ? (double)(completed - *last_completed) / dt : 0, lost, p99_us,
                    b->o->mode == BENCH_CHURN, connects);
    fflush(stdout);
    *last_completed = completed;
    *last_us = now_us;
}

/* The main thread while the workers run: wait for them all, with a progress line each
 * second when stdout is a terminal. */
static void bench_watch(struct bench *b)
{
    bool is_progress = !b->o->is_quiet && isatty(STDOUT_FILENO);
    uint64_t last_completed = 0, last_us = b->start_us, next_us = b->start_us + 1000000u;
    pthread_mutex_lock(&b->lock);
    while (b->running > 0) {
        struct timespec until = {.tv_sec = (time_t)(next_us / 1000000u),
                                 .tv_nsec = (long)(next_us % 1000000u) * 1000};
        int rc = pthread_cond_timedwait(&b->done, &b->lock, &until);
        if (rc == ETIMEDOUT && b->running > 0) {
            next_us += 1000000u;
            if (is_progress) {
                pthread_mutex_unlock(&b->lock);
                bench_progress(b, clock_now_us(), &last_completed, &last_us);
                pthread_mutex_lock(&b->lock);
            }
        }
    }
    pthread_mutex_unlock(&b->lock);
}

/* ---------------------------------------------------------------- start-up */

static void bench_usage(FILE *out)
{
    fprintf(
        out,
        "Usage: " BENCH_NAME " [-H HOST] [-p PORT] [-c CONNS] [-t THREADS] [-n MSGS | -d SECONDS]\n"
        "                   [-s SIZE] [-P PIPELINE] [-R RATE] [-T MS] [-g TEXT] [-u] [-q]\n"
        "                   [--json] [--churn] [--connect-rate N] [--latency-out FILE]\n"
        "                   [--max-loss PCT]\n"
        "Load echod from CONNS connections and verify every echoed byte.\n"
        "\n"
        "  -H, --host HOST         server address or name (default %s)\n"
        "  -p, --port PORT         server port (default %d)\n"
        "  -u, --udp               UDP: one datagram per message (default TCP)\n"
        "  -c, --connections N     connections (default %d)\n"
        "  -t, --threads N         threads, each with its share of the connections (default 1)\n"
        "  -n, --messages N        messages per connection, then stop\n"
        "  -d, --duration SECONDS  or: start messages for this long (default %d)\n"
        "  -s, --size BYTES        message size (default %d; UDP: 8-%d)\n"
        "  -P, --pipeline N        messages in flight per connection (default 1)\n"
        "  -R, --rate N            open loop: N messages/s in total, latency from each\n"
        "                          message's scheduled time (default: closed loop)\n"
        "      --connect-rate N    open the connections at N a second (default: at once)\n"
        "      --churn             connect, one echo, close, again; reports connections/s\n"
        "  -T, --timeout MS        TCP: fail after MS ms without an echo; UDP: count a\n"
        "                          datagram unanswered for MS ms as lost (default %d)\n"
        "  -g, --greeting TEXT     expect every reply to be TEXT then the message:\n"
        "                          echod in greet mode (TCP: a message is one line)\n"
        "      --max-loss PCT      UDP: fail when more than PCT %% is lost (default %g)\n"
        "      --latency-out FILE  write the latency percentiles to FILE (.hgrm, in ms)\n"
        "      --json              print the summary as one JSON object\n"
        "  -q, --quiet             print only the one-line summary\n"
        "  -h, --help              show this help and exit\n"
        "  -V, --version           show the version and exit\n"
        "\n"
        "Exit codes: 0 all verified, 1 mismatch or connection error, 2 more UDP datagrams\n"
        "lost than --max-loss allows, 64 bad usage.\n",
        CLIENT_DEFAULT_HOST, CLIENT_DEFAULT_PORT, BENCH_DEFAULT_CONNS, BENCH_DEFAULT_DURATION_S,
        BENCH_DEFAULT_SIZE_BYTES, BENCH_MAX_UDP_SIZE_BYTES, CLIENT_DEFAULT_TIMEOUT_MS,
        BENCH_DEFAULT_MAX_LOSS);
}

/* Parse a count option's argument 1..max or exit 64. */
static unsigned long bench_count_arg(const char *what, unsigned long max)
{
    unsigned long v;
    if (client_parse_count(optarg, max, &v) < 0)
        client_usage_error(BENCH_NAME, "invalid %s '%s' (1-%lu)", what, optarg, max);
    return v;
}

/* Parse --max-loss's percentage, 0 to 100 in decimal, or exit 64. */
static double bench_percent_arg(void)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(optarg, &end);
    bool is_digits = optarg[0] >= '0' && optarg[0] <= '9';
    if (!is_digits || errno != 0 || *end != '\0' || !(v >= 0.0 && v <= 100.0))
        client_usage_error(BENCH_NAME, "invalid loss percentage '%s' (0-100)", optarg);
    return v;
}

/* Options that need each other: -n or -d, UDP sizes, -g, threads, modes, slot memory. */
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
    if (o->target.is_udp && bench_reply_bytes(o) > BENCH_MAX_UDP_SIZE_BYTES)
        client_usage_error(BENCH_NAME, "-g and -s: a UDP reply holds at most %d bytes",
                           BENCH_MAX_UDP_SIZE_BYTES);
    if (o->conns * o->pipeline > BENCH_MAX_SLOTS)
        client_usage_error(BENCH_NAME, "-c x -P may be at most %lu", BENCH_MAX_SLOTS);
    if (o->threads > o->conns)
        client_usage_error(BENCH_NAME, "-t %lu needs at least %lu connections (-c %lu)", o->threads,
                           o->threads, o->conns);
    if (o->mode == BENCH_CHURN && o->target.is_udp)
        client_usage_error(BENCH_NAME, "--churn is for TCP: UDP has no connection to churn");
    if (o->mode == BENCH_CHURN && o->rate != 0)
        client_usage_error(BENCH_NAME, "--churn and -R exclude each other");
    if (o->rate != 0)
        o->mode = BENCH_OPEN;
}

/* Long options without a short one. */
enum {
    BENCH_OPT_JSON = 256,
    BENCH_OPT_CHURN,
    BENCH_OPT_CONNECT_RATE,
    BENCH_OPT_LATENCY_OUT,
    BENCH_OPT_MAX_LOSS
};

/* Parse argv into o; exits 0 for --help/--version and 64 on bad usage. */
static void bench_parse_args(int argc, char **argv, struct bench_options *o)
{
    static const struct client_tool tool = {BENCH_NAME, bench_usage};
    static const struct option longopts[] = {
        CLIENT_LONG_OPTS,
        {"connections", required_argument, NULL, 'c'},
        {"threads", required_argument, NULL, 't'},
        {"messages", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 'd'},
        {"size", required_argument, NULL, 's'},
        {"pipeline", required_argument, NULL, 'P'},
        {"rate", required_argument, NULL, 'R'},
        {"greeting", required_argument, NULL, 'g'},
        {"quiet", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, BENCH_OPT_JSON},
        {"churn", no_argument, NULL, BENCH_OPT_CHURN},
        {"connect-rate", required_argument, NULL, BENCH_OPT_CONNECT_RATE},
        {"latency-out", required_argument, NULL, BENCH_OPT_LATENCY_OUT},
        {"max-loss", required_argument, NULL, BENCH_OPT_MAX_LOSS},
        {NULL, 0, NULL, 0},
    };
    *o = (struct bench_options){.conns = BENCH_DEFAULT_CONNS,
                                .threads = 1,
                                .duration_s = BENCH_DEFAULT_DURATION_S,
                                .size_bytes = BENCH_DEFAULT_SIZE_BYTES,
                                .pipeline = 1,
                                .max_loss_percent = BENCH_DEFAULT_MAX_LOSS,
                                .greeting = ""};
    client_target_init(&o->target);
    bool has_duration = false;
    client_begin_options(&tool, argv);
    int ch;
    while ((ch = getopt_long(argc, argv, CLIENT_SHORT_OPTS "c:t:n:d:s:P:R:g:q", longopts, NULL)) !=
           -1) {
        if (client_take_option(&tool, ch, &o->target))
            continue;
        switch (ch) {
        case 'c':
            o->conns = bench_count_arg("connection count", BENCH_MAX_CONNS);
            break;
        case 't':
            o->threads = bench_count_arg("thread count", BENCH_MAX_THREADS);
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
        case 'R':
            o->rate = bench_count_arg("rate", BENCH_MAX_RATE);
            break;
        case 'g':
            o->greeting = optarg;
            o->greeting_len = strlen(optarg);
            break;
        case 'q':
            o->is_quiet = true;
            break;
        case BENCH_OPT_JSON:
            o->is_json = true;
            break;
        case BENCH_OPT_CHURN:
            o->mode = BENCH_CHURN;
            break;
        case BENCH_OPT_CONNECT_RATE:
            o->connect_rate = bench_count_arg("connect rate", BENCH_MAX_RATE);
            break;
        case BENCH_OPT_LATENCY_OUT:
            if (optarg[0] == '\0')
                client_usage_error(BENCH_NAME, "empty --latency-out file name");
            o->latency_out = optarg;
            break;
        case BENCH_OPT_MAX_LOSS:
            o->max_loss_percent = bench_percent_arg();
            break;
        default:
            client_usage_error(BENCH_NAME, "unexpected option '%s'", argv[optind - 1]);
        }
    }
    client_end_options(&tool, argc, argv);
    bench_check_args(o, has_duration);
}

/* Raise the soft fd limit to the hard one: each connection is an fd; 0 or -EMFILE. */
static int bench_raise_fd_limit(unsigned long conns, unsigned long threads)
{
    uint64_t limit = 0;
    (void)fdlimit_raise(&limit); /* what is in force is what counts */
    uint64_t need = (uint64_t)conns + threads + 16;
    if (limit < need)
        return bench_error(-EMFILE, "%lu connections need %llu fds; the limit is %llu", conns,
                           (unsigned long long)need, (unsigned long long)limit);
    return 0;
}

/* Give worker i its share of the connections, its epoll and its histogram; 0 or -errno. */
static int bench_worker_init(struct bench *b, size_t i)
{
    const struct bench_options *o = b->o;
    struct bench_worker *w = &b->workers[i];
    size_t first = i * o->conns / b->worker_count, end = (i + 1) * o->conns / b->worker_count;
    w->b = b;
    w->conns = &b->conns[first];
    w->conn_count = end - first;
    w->hist = hist_create(HIST_HOUR_US, BENCH_HIST_DIGITS);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->hist == NULL || w->epfd < 0)
        return bench_error(-errno, "start-up");
    double share = (double)w->conn_count / (double)o->conns;
    if (o->rate != 0)
        w->slot_period_us = 1e6 / ((double)o->rate * share);
    if (o->connect_rate != 0)
        w->connect_period_us = 1e6 / ((double)o->connect_rate * share);
    for (size_t k = 0; k < w->conn_count; k++) {
        struct bench_conn *c = &w->conns[k];
        c->id = (uint32_t)(first + k);
        c->index = (uint32_t)k;
        c->key = bench_mix(((uint64_t)c->id << 32) ^ 0x6563686f64ull);
        c->sent_at_us = &b->slots[c->id * o->pipeline];
        c->fd = -1;
    }
    return 0;
}

/* Start the workers, watch them and join them; 0, or the first worker's -errno. */
static int bench_run_workers(struct bench *b)
{
    int rc = 0;
    size_t started = 0;
    b->running = b->worker_count;
    for (; started < b->worker_count; started++) {
        int err = pthread_create(&b->workers[started].thread, NULL, bench_worker_main,
                                 &b->workers[started]);
        if (err != 0) {
            rc = bench_error(-err, "pthread_create");
            atomic_store(&b->is_aborted, true);
            pthread_mutex_lock(&b->lock);
            b->running -= b->worker_count - started;
            pthread_mutex_unlock(&b->lock);
            break;
        }
    }
    bench_watch(b);
    for (size_t i = 0; i < started; i++) {
        pthread_join(b->workers[i].thread, NULL);
        if (rc == 0 && b->workers[i].rc < 0)
            rc = b->workers[i].rc;
    }
    b->end_us = clock_now_us();
    return rc;
}

/* UDP: whether more than --max-loss % went unanswered; says so. */
static bool bench_is_loss_too_high(const struct bench *b, const struct report_figures *f)
{
    if (!b->o->target.is_udp || f->loss_percent <= b->o->max_loss_percent)
        return false;
    bench_error(0,
                "%" PRIu64 " of %" PRIu64 " datagrams to %s unanswered within %d ms "
                "(%.2f %%, above --max-loss %g %%)",
                f->lost, f->lost + f->msgs, b->o->target.name, b->o->target.timeout_ms,
                f->loss_percent, b->o->max_loss_percent);
    return true;
}

/* Set up, run and report; an exit code. */
static int bench_run(const struct bench_options *o)
{
    struct bench b = {.o = o, .worker_count = o->threads};
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&b.done, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&b.lock, NULL);
    b.conns = calloc(o->conns, sizeof(*b.conns));
    b.slots = calloc(o->conns * o->pipeline, sizeof(*b.slots));
    b.workers = calloc(o->threads, sizeof(*b.workers));
    b.hist = hist_create(HIST_HOUR_US, BENCH_HIST_DIGITS);
    int rc = -ENOMEM;
    bool is_loss_too_high = false;
    for (size_t i = 0; i < b.worker_count && b.workers != NULL; i++)
        b.workers[i].epfd = -1;
    if (b.conns == NULL || b.slots == NULL || b.workers == NULL || b.hist == NULL) {
        bench_error(rc, "start-up");
        goto fail;
    }
    for (size_t i = 0; i < b.worker_count; i++)
        if ((rc = bench_worker_init(&b, i)) < 0)
            goto fail;
    b.start_us = clock_now_us();
    b.stop_sending_us = o->msgs_per_conn == 0 ? b.start_us + o->duration_s * 1000000u : UINT64_MAX;
    rc = bench_run_workers(&b);
    if (rc == 0) {
        struct report_figures f;
        bench_figures(&b, &f);
        bench_report(&b, &f);
        if (o->latency_out != NULL)
            rc = bench_write_latency(&b);
        is_loss_too_high = rc == 0 && bench_is_loss_too_high(&b, &f);
    }
fail:
    for (size_t i = 0; b.conns != NULL && i < o->conns; i++)
        if (b.conns[i].fd >= 0)
            close(b.conns[i].fd);
    for (size_t i = 0; b.workers != NULL && i < b.worker_count; i++) {
        if (b.workers[i].epfd >= 0)
            close(b.workers[i].epfd);
        hist_free(b.workers[i].hist);
    }
    hist_free(b.hist);
    free(b.workers);
    free(b.conns);
    free(b.slots);
    pthread_mutex_destroy(&b.lock);
    pthread_cond_destroy(&b.done);
    return rc < 0 ? BENCH_EXIT_ERROR : is_loss_too_high ? BENCH_EXIT_LOSS : 0;
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
    if (rc == 0)
        rc = bench_raise_fd_limit(o.conns, o.threads);
    if (rc < 0)
        return BENCH_EXIT_ERROR;
    return bench_run(&o);
}
