/* conn: one worker's TCP connections. Runs only on the owning worker thread; nothing
 * here locks. The set owns every connection, its socket, and the buffers it borrows.
 *
 * DESIGN. Epoll is level-triggered and a connection's interest changes only when its
 * state does (output starts or stops pending, reading pauses or ends), so the common
 * echo costs one recv and one send and no epoll_ctl. That common case runs entirely in
 * the worker's scratch space: a connection only takes a buffer from the worker's pool
 * when a send comes up short (pending output, at most buffer_bytes) or, in greet mode,
 * when a line arrives in pieces (at most max_line_bytes + 1). An idle connection holds
 * neither. While output is pending the connection reads only into the free space of
 * its output ring, and not at all once the ring is full: that is the backpressure.
 * Idle, linger and send timeouts are three lists kept in deadline order (every entry of
 * a list has the same timeout), so refreshing a deadline and finding expiries are O(1).
 * Idle means no progress: in echo mode any byte in or out; in greet mode only a byte
 * out (a line answered, output draining), so a slowloris dribbling a line that never
 * ends cannot hold its connection. A connection is in the send list only while output
 * is pending, and there progress is what the peer acknowledged (TCP_INFO's bytes
 * acked), not what echod sent: the kernel reports writable only once a third of a send
 * buffer autotuned to megabytes has drained, so a client reading a steady 410 KB/s can
 * see no send from echod for seconds. Joining the list notes the figure; at each
 * deadline a connection whose figure moved notes it and waits another timeout, one
 * whose figure did not is closed. That is one getsockopt per pending spell and per
 * timeout, never per message. Buffers a burst of clients
 * borrowed go back to the pools; those no connection needs for CONN_POOL_TRIM_MS are
 * freed and the heap trimmed, so memory returns once the burst is over. The trim timer
 * runs only while a pool keeps something, so an idle worker never wakes for it. On a
 * PROXY listener a connection first reads its header (proxy.h) through scratch space,
 * in a fourth deadline list (proxy_timeout_ms; its bytes are no progress); the bytes
 * after the header in the same read take the mode's fast path, and from then on its
 * client is the one the header named, admitted against the per-IP limit there. */
#include "config.h"

#include "conn.h"

#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "buf.h"
#include "clock.h"
#include "droplog.h"
#include "list.h"
#include "log.h"
#include "sock.h"
#include "tcpinfo.h"
#include "template.h"

/* How long a connection closed for a protocol error keeps discarding input after its
 * error reply, so that closing does not reset the reply away. */
#define CONN_LINGER_MS 2000
/* Output buffers a worker keeps for reuse; the rest go back to malloc. */
#define CONN_POOL_KEEP 64
/* How long a kept buffer may go unused before it is freed. */
#define CONN_POOL_TRIM_MS 1000
/* Rounds of reading and answering each connection gets at the shutdown deadline. */
#define CONN_FINAL_ROUNDS 8
/* At most one line per reason this often about connections closed for their PROXY header
 * or the per-IP limit it brought into play. */
#define CONN_LOG_MS 10000

/* A place in one of the deadline-ordered lists: since when the clock runs. A list is in
 * `since` order, and every entry of a list has the same timeout, so the order is the
 * deadline order whatever timeout a reload sets. */
struct conn_timer {
    uint64_t since_ms;
    struct list_node node;
};

/* The TCP settings of one configuration generation, and how many connections use it:
 * mode, greeting, line and buffer sizes stay with a connection for its life, while the
 * timeouts of the current profile apply to every connection. */
struct conn_profile {
    const struct conn_settings *s;
    void (*release)(void *handle); /* called with handle when no connection uses s */
    void *handle;
    size_t in_cap;            /* greet: a full line plus its '\n' */
    struct proto_greet greet; /* the greeting its connections share, if they do */
    struct template greeting; /* s's with {worker} bound: literal when they share greet */
    size_t conns;             /* connections that use it */
    struct list_node node;    /* in set->old_profiles once it is not current */
};

struct conn {
    int fd;
    uint32_t events;                 /* interest registered with epoll */
    bool is_read_closed;             /* the client sent FIN: nothing more will be read */
    bool is_failing;                 /* a protocol error: answer what came before, then close */
    bool has_error_reply;            /* the error reply is queued in out */
    bool is_lingering;               /* FIN sent after the error reply; discarding until EOF */
    struct buf *out;                 /* pending output, NULL when none (never empty) */
    struct buf *in;                  /* greet: unanswered input, linear, NULL when none */
    struct conn_timer timer;         /* in set->idle or set->linger */
    struct conn_timer send_timer;    /* in set->sending while out is pending, else unlinked */
    struct conn_profile *profile;    /* the settings it was accepted with */
    const struct proto_greet *greet; /* its profile's, or its own (conn_greet_start) */
    uint64_t acked_bytes;            /* what the peer had acknowledged at the last send check */
    struct proxy_parser *proxy;      /* while its PROXY header is read (c->timer in set->header) */
    union proxy_addr client;         /* the client a PROXY header named; AF_UNSPEC: the peer */
    enum stats_counter fail;         /* why a step returned -EPROTO: the close's counter */
    uint64_t opened_ms;              /* when it was adopted, for the durations histogram */
};

struct conn_set {
    struct conn_hooks hooks;
    struct conn_profile *current;  /* new connections take it; its timeouts apply to all */
    struct list_node old_profiles; /* profiles some connection still uses */
    int epfd;
    struct stats *stats;
    size_t count;
    struct buf scratch_in;    /* where the fast path reads; as large as any profile needs */
    struct buf scratch_out;   /* where greet builds replies before one send */
    struct buf_pool out_pool; /* bufs of the current profile's buffer_bytes */
    struct buf_pool in_pool;  /* bufs of the current profile's in_cap */
    struct list_node idle;    /* live connections, least recently active first */
    struct list_node linger;  /* lingering connections, oldest first */
    struct list_node sending; /* connections with pending output, least recent send first */
    struct list_node header;  /* connections reading their PROXY header, oldest first */
    uint64_t trim_at_ms;      /* when the pools are next trimmed; 0 while they keep nothing */
    struct droplog closed;    /* closes for a PROXY header or the per-IP limit (conn_log_reason) */
    uint64_t log_at_ms;       /* when its next lines are due; 0 while none wait */
};

/* The closes the worker logs (rate-limited, see CONN_LOG_MS), in droplog reason order. */
static const enum stats_counter conn_logged[] = {
    STAT_tcp_per_ip_refused, STAT_tcp_proxy_malformed, STAT_tcp_proxy_unsupported,
    STAT_tcp_proxy_too_long, STAT_tcp_proxy_truncated, STAT_tcp_proxy_timeouts,
};

static const char *conn_describe_close(unsigned reason)
{
    static const char *const why[] = {
        "client IP at max_connections_per_ip",
        "malformed PROXY header",
        "unsupported PROXY header",
        "PROXY v1 line too long",
        "EOF within the PROXY header",
        "no whole PROXY header within tcp.proxy_timeout_ms",
    };
    return why[reason];
}

enum conn_result { CONN_OPEN, CONN_DONE };

int conn_set_create(const struct conn_hooks *hooks, int epfd, struct stats *stats,
                    struct conn_set **out)
{
    struct conn_set *set = calloc(1, sizeof(*set));
    if (set == NULL)
        return -ENOMEM;
    set->hooks = *hooks;
    set->epfd = epfd;
    set->stats = stats;
    list_init(&set->old_profiles);
    list_init(&set->idle);
    list_init(&set->linger);
    list_init(&set->sending);
    list_init(&set->header);
    droplog_init(&set->closed, "tcp: closed", "connection", conn_describe_close, CONN_LOG_MS);
    int rc = buf_pool_init(&set->out_pool, 0, CONN_POOL_KEEP);
    if (rc == 0 && (rc = buf_pool_init(&set->in_pool, 0, CONN_POOL_KEEP)) < 0)
        buf_pool_destroy(&set->out_pool);
    if (rc < 0) {
        free(set);
        return rc;
    }
    *out = set;
    return 0;
}

/* Make scratch hold at least bytes (it only grows); 0 or -ENOMEM. */
static int conn_grow_scratch(struct buf *scratch, size_t bytes)
{
    if (scratch->cap >= bytes)
        return 0;
    uint8_t *data = realloc(scratch->data, bytes);
    if (data == NULL)
        return -ENOMEM;
    scratch->data = data;
    scratch->cap = bytes;
    return 0;
}

/* A greeting rendered for one connection, stored with it. */
struct conn_greeting {
    struct proto_greet greet; /* first: the connection points here */
    char text[];
};

/* Free a profile no connection uses, and tell its owner. */
static void conn_profile_free(struct conn_profile *p)
{
    template_free(&p->greeting);
    if (p->release)
        p->release(p->handle);
    free(p);
}

/* A connection let go of profile p: free it when it was the last one and p is old. */
static void conn_profile_drop(struct conn_set *set, struct conn_profile *p)
{
    if (--p->conns > 0 || p == set->current)
        return;
    list_unlink(&p->node);
    conn_profile_free(p);
}

int conn_set_use(struct conn_set *set, const struct conn_settings *s, void (*release)(void *),
                 void *handle)
{
    struct conn_profile *p = calloc(1, sizeof(*p));
    size_t in_cap = s->greet.max_line_bytes + 1;
    size_t in_bytes = s->buffer_bytes > in_cap ? s->buffer_bytes : in_cap;
    if (p == NULL || conn_grow_scratch(&set->scratch_in, in_bytes) < 0 ||
        conn_grow_scratch(&set->scratch_out, s->buffer_bytes) < 0) {
        free(p);
        if (release)
            release(handle);
        return -ENOMEM;
    }
    *p = (struct conn_profile){
        .s = s, .release = release, .handle = handle, .in_cap = in_cap, .greet = s->greet};
    struct template_values worker = {{[TEMPLATE_WORKER] = set->hooks.worker_name}};
    if (!template_is_literal(&s->greeting_template) &&
        template_bind(&s->greeting_template, &worker, &p->greeting) < 0) {
        conn_profile_free(p);
        return -ENOMEM;
    }
    if (p->greeting.text && template_is_literal(&p->greeting)) /* {worker} was all: shared */
        p->greet =
            (struct proto_greet){p->greeting.text, p->greeting.text_len, s->greet.max_line_bytes};
    list_init(&p->node);
    buf_pool_resize(&set->out_pool, s->buffer_bytes);
    buf_pool_resize(&set->in_pool, in_cap);
    struct conn_profile *old = set->current;
    set->current = p;
    if (old && old->conns == 0)
        conn_profile_free(old);
    else if (old)
        list_push_back(&set->old_profiles, &old->node);
    return 0;
}

/* c's client into *out: the one its PROXY header named, else its peer (AF_UNSPEC if the
 * socket cannot tell). */
static void conn_client(const struct conn *c, struct sockaddr_storage *out)
{
    socklen_t len = sizeof(*out);
    memset(out, 0, sizeof(*out));
    if (c->client.sa.sa_family != AF_UNSPEC)
        memcpy(out, &c->client, sizeof(c->client));
    else if (getpeername(c->fd, (struct sockaddr *)out, &len) < 0)
        out->ss_family = AF_UNSPEC;
}

/* Debug log: "tcp 127.0.0.1:5555 fd 12 EVENT (DETAIL)", naming the client. Only called at
 * debug level. */
static void conn_log(const struct conn *c, const char *event, const char *detail)
{
    struct sockaddr_storage ss;
    char peer[ADDR_STRLEN] = "?";
    conn_client(c, &ss);
    if (ss.ss_family != AF_UNSPEC)
        addr_format((const struct sockaddr *)&ss, peer, sizeof(peer));
    log_debug("tcp %s fd %d %s (%s)", peer, c->fd, event, detail);
}

/* Note a close for `reason` in the worker's refusal log if it is one logged there (a
 * refusal); whether it was. */
static bool conn_log_reason(struct conn_set *set, const struct conn *c, enum stats_counter reason,
                            uint64_t now_ms)
{
    for (unsigned i = 0; i < sizeof(conn_logged) / sizeof(conn_logged[0]); i++) {
        if (conn_logged[i] == reason) {
            struct sockaddr_storage ss;
            conn_client(c, &ss);
            droplog_note(&set->closed, i, (const struct sockaddr *)&ss, sizeof(ss), now_ms);
            if (set->log_at_ms == 0)
                set->log_at_ms = now_ms; /* the first line is due at once */
            return true;
        }
    }
    return false;
}

/* Let go of what c holds (timers, buffers, its settings, its per-IP slot), but not of
 * its socket. */
static void conn_unhold(struct conn_set *set, struct conn *c)
{
    list_unlink(&c->timer.node);
    list_unlink(&c->send_timer.node);
    buf_pool_put(&set->out_pool, c->out);
    buf_pool_put(&set->in_pool, c->in);
    free(c->proxy);
    if (c->greet != &c->profile->greet)
        free((struct conn_greeting *)(void *)c->greet);
    conn_profile_drop(set, c->profile);
    if (set->hooks.iplimit)
        iplimit_release(set->hooks.iplimit, c->fd); /* before close frees the fd number */
}

/* Close c now and forget it; `reason` is the counter that says why, or STAT_COUNT. */
static void conn_close(struct conn_set *set, struct conn *c, enum stats_counter reason)
{
    if (log_is_enabled(LOG_LEVEL_DEBUG))
        conn_log(c, "closed", reason == STAT_COUNT ? "done" : stats_name(reason));
    bool is_refusal = conn_log_reason(set, c, reason, clock_now_ms());
    conn_unhold(set, c);
    /* Counted before the client can see the close, so a reader that saw EOF and then
     * asks for the counters finds this close in them. */
    if (reason != STAT_COUNT)
        stats_add(set->stats, reason, 1);
    stats_add(set->stats, STAT_tcp_closed, 1);
    uint64_t now_ms = set->hooks.durations ? clock_now_ms() : 0;
    if (set->hooks.durations)
        histogram_observe_ms(set->hooks.durations,
                             now_ms > c->opened_ms ? now_ms - c->opened_ms : 0);
    if (is_refusal)
        sock_close_clean(c->fd); /* a FIN, not the reset unread input would cause */
    else
        close(c->fd); /* also removes it from epoll */
    free(c);
    set->count--;
    set->hooks.on_close(set->hooks.on_close_arg); /* after close: the fd is free again */
}

/* Give back buffers that hold nothing, so idle connections keep none. */
static void conn_release_empty(struct conn_set *set, struct conn *c)
{
    if (c->out && c->out->len == 0) {
        buf_pool_put(&set->out_pool, c->out);
        c->out = NULL;
    }
    if (c->in && c->in->len == 0) {
        buf_pool_put(&set->in_pool, c->in);
        c->in = NULL;
    }
}

/* Take a buffer of cap bytes into *slot if it has none: from pool when its size is
 * the one asked for (the current profile's), else a buffer of its own that the pool
 * frees on return. 0 or -ENOMEM. */
static int conn_take_buf(struct buf_pool *pool, size_t cap, struct buf **slot)
{
    if (*slot == NULL)
        *slot = pool->buf_bytes == cap ? buf_pool_get(pool) : buf_new(cap);
    return *slot ? 0 : -ENOMEM;
}

/* c's output buffer, of its profile's buffer_bytes, if it has none; 0 or -ENOMEM. */
static int conn_take_out(struct conn_set *set, struct conn *c)
{
    return conn_take_buf(&set->out_pool, c->profile->s->buffer_bytes, &c->out);
}

/* c's greet input buffer, of its profile's in_cap, if it has none; 0 or -ENOMEM. */
static int conn_take_in(struct conn_set *set, struct conn *c)
{
    return conn_take_buf(&set->in_pool, c->profile->in_cap, &c->in);
}

/* The timeouts in force: the current profile's, for every connection. */
static unsigned conn_idle_ms(const struct conn_set *set)
{
    return set->current->s->idle_timeout_ms;
}

static unsigned conn_send_ms(const struct conn_set *set)
{
    return set->current->s->send_timeout_ms;
}

static unsigned conn_header_ms(const struct conn_set *set)
{
    return set->current->s->proxy_timeout_ms;
}

/* Push the deadline of a connection that made progress. */
static void conn_touch(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
    if (c->is_lingering || c->proxy)
        return;                 /* a header's bytes are no progress: its deadline stays */
    c->timer.since_ms = now_ms; /* kept even with no idle timeout: a reload may set one */
    list_move_back(&set->idle, &c->timer.node);
}

/* Keep c in the send list exactly while output is pending. Joining it notes how much
 * the peer has acknowledged, the figure its send deadline compares with (see DESIGN).
 * The echo fast path never joins: it only tests c->out, with no syscall. */
static void conn_watch_output(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
    struct list_node *n = &c->send_timer.node;
    if (c->out == NULL) {
        list_unlink(n);
        return;
    }
    if (n->next != n)
        return;
    /* Without a send timeout the figure is not needed now: a reload that sets one gets
     * a first check that only notes it. */
    if (conn_send_ms(set) == 0 || tcpinfo_bytes_acked(c->fd, &c->acked_bytes) < 0)
        c->acked_bytes = UINT64_MAX; /* unknown: the first check only notes the figure */
    c->send_timer.since_ms = now_ms;
    list_push_back(&set->sending, n);
}

/* What a recv-like call returned: bytes (> 0) or 0 at EOF, -EAGAIN, or -errno. */
static ssize_t conn_read_result(struct conn_set *set, struct conn *c, ssize_t n)
{
    if (n > 0) {
        stats_add(set->stats, STAT_tcp_bytes_in, (uint64_t)n);
        stats_add(set->stats, STAT_tcp_reads, 1);
        return n;
    }
    if (n == 0) {
        c->is_read_closed = true;
        return 0;
    }
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
}

/* Count a send that moved n bytes (0: none, and no message). */
static void conn_count_sent(struct conn_set *set, size_t n)
{
    stats_add(set->stats, STAT_tcp_bytes_out, (uint64_t)n);
    stats_add(set->stats, STAT_tcp_writes, n > 0);
}

/* Send what is pending in c->out once; 0 (including when the socket is full) or -errno. */
static int conn_flush(struct conn_set *set, struct conn *c)
{
    if (c->out == NULL || c->out->len == 0)
        return 0;
    struct msghdr msg = {0};
    struct iovec iov[2];
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)buf_pending_iov(c->out, iov);
    ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
    buf_consume(c->out, (size_t)n);
    conn_count_sent(set, (size_t)n);
    return 0;
}

/* Send data[0..n) from scratch space, keeping what the socket does not take in c->out
 * (which holds nothing yet). 0 or -errno. */
static int conn_send_or_keep(struct conn_set *set, struct conn *c, const uint8_t *data, size_t n)
{
    ssize_t sent = send(c->fd, data, n, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        sent = 0;
    }
    conn_count_sent(set, (size_t)sent);
    if ((size_t)sent == n)
        return 0;
    int rc = conn_take_out(set, c);
    if (rc == 0)
        buf_append(c->out, data + sent, n - (size_t)sent);
    return rc;
}

/* Echo: read once and answer. Fast path: recv and send from scratch. With output
 * pending, read into the free part of the output ring instead, behind what waits. */
static int conn_read_echo(struct conn_set *set, struct conn *c)
{
    if (c->out == NULL) {
        ssize_t n = recv(c->fd, set->scratch_in.data, c->profile->s->buffer_bytes, 0);
        n = conn_read_result(set, c, n);
        return n > 0 ? conn_send_or_keep(set, c, set->scratch_in.data, (size_t)n) : (int)n;
    }
    struct msghdr msg = {0};
    struct iovec iov[2];
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)buf_free_iov(c->out, iov);
    ssize_t n = conn_read_result(set, c, recvmsg(c->fd, &msg, 0));
    if (n > 0)
        buf_commit(c->out, (size_t)n);
    return n > 0 ? 0 : (int)n;
}

/* Greet: a line was too long. Drop the input and answer with the error once the lines
 * before it are sent. */
static void conn_fail_line_too_long(struct conn_set *set, struct conn *c)
{
    c->is_failing = true;
    if (c->in)
        buf_reset(c->in);
    stats_add(set->stats, STAT_tcp_lines_too_long, 1);
}

/* Keep the input after the first `consumed` bytes of in[0..len) for later: the
 * connection's own input buffer takes it, if there is any. */
static int conn_keep_input(struct conn_set *set, struct conn *c, const char *in, size_t len,
                           size_t consumed)
{
    if (consumed == len)
        return 0;
    int rc = conn_take_in(set, c);
    if (rc == 0)
        buf_append(c->in, in + consumed, len - consumed);
    return rc;
}

/* Greet fast path: answer the lines of in[0..len) from scratch space with one send. */
static int conn_greet_answer(struct conn_set *set, struct conn *c, const char *in, size_t len)
{
    size_t consumed;
    struct buf *reply = &set->scratch_out;
    buf_reset(reply);
    enum proto_status st = proto_greet_frame(c->greet, in, len, false, reply, &consumed);
    int rc = reply->len > 0 ? conn_send_or_keep(set, c, reply->data, reply->len) : 0;
    if (st == PROTO_LINE_TOO_LONG)
        conn_fail_line_too_long(set, c);
    else if (rc == 0)
        rc = conn_keep_input(set, c, in, len, consumed);
    return rc;
}

/* Greet slow path: answer what c->in holds into c->out, as far as it has room. */
static int conn_greet_process(struct conn_set *set, struct conn *c)
{
    if (c->in == NULL || c->is_failing)
        return 0;
    int rc = conn_take_out(set, c);
    if (rc < 0)
        return rc;
    size_t consumed;
    enum proto_status st = proto_greet_frame(c->greet, (const char *)c->in->data, c->in->len,
                                             c->is_read_closed, c->out, &consumed);
    buf_consume(c->in, consumed);
    buf_linearize(c->in);
    if (st == PROTO_LINE_TOO_LONG)
        conn_fail_line_too_long(set, c);
    return 0;
}

/* Greet: read once, into scratch when nothing waits, else after the partial line. */
static int conn_read_greet(struct conn_set *set, struct conn *c)
{
    if (c->in == NULL && c->out == NULL) {
        ssize_t n = recv(c->fd, set->scratch_in.data, c->profile->in_cap, 0);
        n = conn_read_result(set, c, n);
        return n > 0 ? conn_greet_answer(set, c, (const char *)set->scratch_in.data, (size_t)n)
                     : (int)n;
    }
    int rc = conn_take_in(set, c);
    if (rc < 0)
        return rc;
    ssize_t n = recv(c->fd, c->in->data + c->in->len, c->profile->in_cap - c->in->len, 0);
    n = conn_read_result(set, c, n);
    if (n > 0)
        buf_commit(c->in, (size_t)n);
    return n >= 0 ? conn_greet_process(set, c) : (int)n;
}

/* The close counter of a PROXY header error. */
static enum stats_counter conn_header_fail(enum proxy_error e)
{
    return e == PROXY_ERR_UNSUPPORTED ? STAT_tcp_proxy_unsupported
           : e == PROXY_ERR_TOO_LONG  ? STAT_tcp_proxy_too_long
                                      : STAT_tcp_proxy_malformed;
}

static int conn_greet_start(struct conn *c, const struct sockaddr *client,
                            const struct sockaddr *server);

/* c's PROXY header is complete: from now on its client is the one the header names (the
 * peer, for LOCAL and UNKNOWN), counted against max_connections_per_ip, and its idle clock
 * runs. 0; -EPROTO with c->fail set when the client's IP is at its limit; -ENOMEM. */
static int conn_header_done(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
    bool is_local = c->proxy->header.is_local;
    union proxy_addr server = c->proxy->header.dst;
    stats_add(set->stats, STAT_tcp_proxy_headers, 1);
    if (is_local)
        stats_add(set->stats, STAT_tcp_proxy_local, 1);
    if (!is_local)
        c->client = c->proxy->header.src;
    free(c->proxy);
    c->proxy = NULL;
    c->timer.since_ms = now_ms;
    list_move_back(&set->idle, &c->timer.node);
    if (log_is_enabled(LOG_LEVEL_DEBUG))
        conn_log(c, "proxied", is_local ? "LOCAL or UNKNOWN: the peer is the client" : "PROXY");
    if (set->hooks.iplimit) { /* first: a refused client needs no greeting */
        struct sockaddr_storage client;
        conn_client(c, &client);
        int rc = iplimit_admit(set->hooks.iplimit, (const struct sockaddr *)&client, c->fd);
        if (rc < 0 && rc != -ENOMEM) {
            c->fail = STAT_tcp_per_ip_refused;
            return -EPROTO;
        }
        if (rc < 0)
            return rc;
    }
    /* The greeting names the client and server the header gave (LOCAL: the socket's). */
    if (conn_greet_start(c, is_local ? NULL : &c->client.sa, is_local ? NULL : &server.sa) < 0) {
        c->fail = STAT_tcp_out_of_memory;
        return -EPROTO;
    }
    return 0;
}

/* Read the PROXY header, then answer what came after it in the same read as the mode's
 * fast path would. 0; -EPROTO with c->fail set (a bad, unsupported or truncated header,
 * or the client's IP at its limit); -EAGAIN or -errno. */
static int conn_read_header(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
    const struct conn_settings *s = c->profile->s;
    size_t cap = s->mode == PROTO_ECHO ? s->buffer_bytes : c->profile->in_cap;
    uint8_t *data = set->scratch_in.data;
    ssize_t n = conn_read_result(set, c, recv(c->fd, data, cap, 0));
    if (n == 0)
        c->fail = STAT_tcp_proxy_truncated;
    if (n <= 0)
        return n == 0 ? -EPROTO : (int)n;
    size_t used;
    enum proxy_status st = proxy_parse(c->proxy, data, (size_t)n, &used);
    if (st == PROXY_NEED_MORE)
        return 0;
    if (st == PROXY_ERROR) {
        c->fail = conn_header_fail(c->proxy->error);
        return -EPROTO;
    }
    int rc = conn_header_done(set, c, now_ms);
    if (rc < 0 || used == (size_t)n)
        return rc;
    if (s->mode == PROTO_ECHO)
        return conn_send_or_keep(set, c, data + used, (size_t)n - used);
    return conn_greet_answer(set, c, (const char *)data + used, (size_t)n - used);
}

/* Whether the connection should be reading now. */
static bool conn_wants_read(const struct conn_set *set, const struct conn *c)
{
    if (c->is_read_closed || c->is_failing)
        return false;
    if (c->out && buf_space(c->out) == 0)
        return false; /* backpressure: the client is not reading its echo */
    return c->in == NULL || c->in->len < c->profile->in_cap;
}

/* Queue the error reply once the output ring has room for it. */
static void conn_queue_error_reply(struct conn_set *set, struct conn *c)
{
    char reply[128];
    int n = proto_line_too_long_reply(c->greet, reply, sizeof(reply));
    if (n <= 0 || (size_t)n >= sizeof(reply) || conn_take_out(set, c) < 0)
        return;
    if (buf_space(c->out) >= (size_t)n) {
        buf_append(c->out, reply, (size_t)n);
        c->has_error_reply = true;
    }
}

/* Everything is answered after an error: send FIN and discard input until the client's
 * FIN or the linger deadline, so the close does not reset the reply away. */
static void conn_start_linger(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
    shutdown(c->fd, SHUT_WR);
    c->is_lingering = true;
    c->timer.since_ms = now_ms;
    list_move_back(&set->linger, &c->timer.node);
}

/* Lingering: read and discard; CONN_DONE at EOF or error. */
static enum conn_result conn_linger_read(struct conn_set *set, struct conn *c)
{
    ssize_t n = recv(c->fd, set->scratch_in.data, set->scratch_in.cap, 0);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
        return CONN_OPEN;
    conn_close(set, c, STAT_COUNT);
    return CONN_DONE;
}

/* After I/O: close a finished connection, or set the epoll interest its state needs. */
static enum conn_result conn_settle(struct conn_set *set, struct conn *c, uint64_t now_ms)
{
    if (c->is_failing && !c->has_error_reply)
        conn_queue_error_reply(set, c);
    conn_release_empty(set, c);
    conn_watch_output(set, c, now_ms);
    bool is_answered = c->out == NULL && c->in == NULL;
    if (is_answered && c->is_failing && c->has_error_reply && !c->is_lingering)
        conn_start_linger(set, c, now_ms);
    uint32_t want = 0;
    if (c->is_lingering || conn_wants_read(set, c))
        want |= EPOLLIN;
    if (c->out)
        want |= EPOLLOUT;
    if (want == 0) {
        /* Nothing to read or send: the client closed and has every byte back. */
        conn_close(set, c, STAT_COUNT);
        return CONN_DONE;
    }
    if (want != c->events) {
        struct epoll_event ev = {.events = want, .data.ptr = c};
        if (epoll_ctl(set->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
            log_error("epoll_ctl: %s", strerror(errno));
            conn_close(set, c, STAT_tcp_io_errors);
            return CONN_DONE;
        }
        c->events = want;
    }
    return CONN_OPEN;
}

/* One round of I/O on events: flush, answer what waits, read; or read the PROXY header.
 * 0, -EAGAIN or -errno (-EPROTO: close with c->fail). */
static int conn_step(struct conn_set *set, struct conn *c, uint32_t events, uint64_t now_ms)
{
    if (c->proxy)
        return events & (EPOLLIN | EPOLLHUP) ? conn_read_header(set, c, now_ms) : 0;
    int rc = 0;
    bool had_output = c->out != NULL;
    if ((events & (EPOLLOUT | EPOLLHUP)) && had_output) {
        rc = conn_flush(set, c);
        if (rc == 0 && c->profile->s->mode == PROTO_GREET)
            rc = conn_greet_process(set, c); /* the flush made room for waiting lines */
    }
    if (rc == 0 && (events & (EPOLLIN | EPOLLHUP)) && conn_wants_read(set, c)) {
        rc = c->profile->s->mode == PROTO_ECHO ? conn_read_echo(set, c) : conn_read_greet(set, c);
        if (rc == 0 && !had_output && c->out && c->profile->s->mode == PROTO_GREET)
            rc = conn_flush(set, c); /* a split line completed: send its reply now */
    }
    if (rc == 0 && c->is_read_closed && c->profile->s->mode == PROTO_GREET)
        rc = conn_greet_process(set, c); /* EOF ends a trailing partial line */
    return rc;
}

/* One of this worker's byte counters: a change during one connection's step means that
 * connection moved bytes. */
static uint64_t conn_bytes(const struct conn_set *set, enum stats_counter which)
{
    return atomic_load_explicit(&set->stats->v[which], memory_order_relaxed);
}

/* Why c is closed after socket error err (a positive errno): a reset from a peer that
 * was owed nothing (a balancer's health check, a client closing with SO_LINGER 0 once it
 * has its echo) is the peer's way of ending, not an error; any other error is one. */
static enum stats_counter conn_error_reason(const struct conn *c, int err)
{
    if (err != ECONNRESET)
        return STAT_tcp_io_errors;
    if (c->proxy)
        return STAT_tcp_peer_resets; /* nothing of the stream is owed before the header */
    /* Nothing held here, and every byte the kernel received answered and acknowledged
     * (a reply is at least as long as its input): else bytes were lost with the reset. */
    uint64_t acked, received;
    bool owes_nothing = c->out == NULL && c->in == NULL &&
                        tcpinfo_bytes(c->fd, &acked, &received) == 0 && acked >= received;
    return owes_nothing ? STAT_tcp_peer_resets : STAT_tcp_io_errors;
}

/* The pending error of c's socket (SO_ERROR), as a positive errno; 0 if none. */
static int conn_socket_error(const struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

void conn_set_handle(struct conn_set *set, void *conn, uint32_t events, uint64_t now_ms)
{
    struct conn *c = conn;
    if (events & EPOLLERR) {
        conn_close(set, c, conn_error_reason(c, conn_socket_error(c)));
        return;
    }
    if (c->is_lingering) {
        if (conn_linger_read(set, c) == CONN_OPEN && (events & EPOLLHUP))
            conn_close(set, c, STAT_COUNT);
        return;
    }
    uint64_t in = conn_bytes(set, STAT_tcp_bytes_in);
    uint64_t out = conn_bytes(set, STAT_tcp_bytes_out);
    int rc = conn_step(set, c, events, now_ms);
    if (rc < 0 && rc != -EAGAIN) {
        conn_close(set, c,
                   rc == -ENOMEM   ? STAT_tcp_out_of_memory
                   : rc == -EPROTO ? c->fail
                                   : conn_error_reason(c, -rc));
        return;
    }
    bool has_sent = conn_bytes(set, STAT_tcp_bytes_out) != out;
    bool has_read = conn_bytes(set, STAT_tcp_bytes_in) != in;
    /* Greet: a partial line is no progress, only an answer is (see DESIGN). */
    if (has_sent || (has_read && c->profile->s->mode == PROTO_ECHO))
        conn_touch(set, c, now_ms);
    if (conn_settle(set, c, now_ms) == CONN_OPEN && (events & EPOLLHUP) && !c->is_lingering)
        conn_close(set, c, STAT_tcp_io_errors); /* both directions are gone */
}

/* Give c its greeting: its profile's when every connection shares one, else the
 * profile's template rendered with c's addresses and stored with c (one allocation,
 * freed at close; within the size conf.c bounded). The one place a connection's greeting
 * is made: called once, when the connection starts serving. client and server are the
 * addresses {client} and {server} show, NULL for the socket's own, so that the PROXY
 * protocol can call it with the ones its header gave. 0 or -ENOMEM. */
static int conn_greet_start(struct conn *c, const struct sockaddr *client,
                            const struct sockaddr *server)
{
    const struct conn_profile *p = c->profile;
    c->greet = &p->greet;
    if (p->s->mode != PROTO_GREET || p->greeting.text == NULL || template_is_literal(&p->greeting))
        return 0;
    struct sockaddr_storage peer, local;
    socklen_t len = sizeof(peer);
    if (client == NULL && (p->greeting.fields & TEMPLATE_BIT(TEMPLATE_CLIENT)) &&
        getpeername(c->fd, (struct sockaddr *)&peer, &len) == 0)
        client = (const struct sockaddr *)&peer;
    len = sizeof(local);
    if (server == NULL && (p->greeting.fields & TEMPLATE_BIT(TEMPLATE_SERVER)) &&
        getsockname(c->fd, (struct sockaddr *)&local, &len) == 0)
        server = (const struct sockaddr *)&local;
    char server_text[ADDR_STRLEN], client_text[ADDR_STRLEN];
    struct template_values v = {{0}};
    template_values_site(&v, NULL, server, server_text, client, client_text);
    size_t n = template_render(&p->greeting, &v, NULL, 0);
    struct conn_greeting *g = malloc(sizeof(*g) + n + 1);
    if (g == NULL)
        return -ENOMEM;
    template_render(&p->greeting, &v, g->text, n + 1);
    g->greet = (struct proto_greet){g->text, n, p->greet.max_line_bytes};
    c->greet = &g->greet;
    return 0;
}

int conn_set_adopt(struct conn_set *set, int fd, enum proxy_accept proxy, uint64_t now_ms)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        log_debug("TCP_NODELAY: %s", strerror(errno));
    /* Urgent data is data too (RFC 862): read it in its place in the stream, not
     * dropped as a separate byte nobody asks for. */
    if (setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one)) < 0)
        log_debug("SO_OOBINLINE: %s", strerror(errno));
    struct conn *c = calloc(1, sizeof(*c));
    int rc = c ? 0 : -ENOMEM;
    if (rc == 0 && proxy != PROXY_OFF) {
        if ((c->proxy = malloc(sizeof(*c->proxy))) == NULL)
            rc = -ENOMEM;
        else
            proxy_parser_init(c->proxy, proxy);
    }
    if (rc == 0) {
        c->fd = fd;
        c->events = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(set->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            rc = -errno;
    }
    if (rc < 0) {
        if (c)
            free(c->proxy);
        free(c);
        if (set->hooks.iplimit)
            iplimit_release(set->hooks.iplimit, fd);
        close(fd);
        stats_add(set->stats, rc == -ENOMEM ? STAT_tcp_out_of_memory : STAT_tcp_io_errors, 1);
        stats_add(set->stats, STAT_tcp_closed, 1);
        set->hooks.on_close(set->hooks.on_close_arg);
        return rc;
    }
    c->profile = set->current;
    c->profile->conns++;
    c->greet = &c->profile->greet;
    c->timer.since_ms = c->opened_ms = now_ms;
    list_push_back(c->proxy ? &set->header : &set->idle, &c->timer.node);
    list_init(&c->send_timer.node);
    if (log_is_enabled(LOG_LEVEL_DEBUG))
        conn_log(c, "opened", proto_mode_name(c->profile->s->mode));
    set->count++;
    stats_add(set->stats, STAT_tcp_opened, 1);
    /* Behind a PROXY header, the greeting waits for the client the header names. */
    if (c->proxy == NULL && conn_greet_start(c, NULL, NULL) < 0) {
        conn_close(set, c, STAT_tcp_out_of_memory);
        return -ENOMEM;
    }
    return 0;
}

/* Whether a timer with timeout_ms (0: none) has run out at now_ms. */
static bool conn_is_due(const struct conn_timer *t, unsigned timeout_ms, uint64_t now_ms)
{
    return timeout_ms > 0 && t->since_ms + timeout_ms <= now_ms;
}

/* Close the connections at the front of `list` (idle or linger, whose entries all have
 * timeout_ms) whose time has run out. */
static void conn_expire_list(struct conn_set *set, struct list_node *list, unsigned timeout_ms,
                             uint64_t now_ms, enum stats_counter reason)
{
    while (!list_is_empty(list)) {
        struct conn *c = list_entry(list->next, struct conn, timer.node);
        if (!conn_is_due(&c->timer, timeout_ms, now_ms))
            break;
        conn_close(set, c, reason);
    }
}

/* The send deadlines that have come: a connection whose peer acknowledged nothing since
 * the last check is closed; one whose peer did keeps the new figure and is checked again
 * a send timeout later. */
static void conn_expire_sending(struct conn_set *set, uint64_t now_ms)
{
    while (!list_is_empty(&set->sending)) {
        struct conn *c = list_entry(set->sending.next, struct conn, send_timer.node);
        if (!conn_is_due(&c->send_timer, conn_send_ms(set), now_ms))
            break;
        uint64_t acked;
        if (tcpinfo_bytes_acked(c->fd, &acked) < 0 || acked == c->acked_bytes) {
            conn_close(set, c, STAT_tcp_send_timeouts);
            continue;
        }
        c->acked_bytes = acked;
        c->send_timer.since_ms = now_ms;
        list_move_back(&set->sending, &c->send_timer.node);
    }
}

/* Free the kept buffers no connection has needed for a whole trim interval, and give
 * the heap's free pages back to the system when that freed any. */
static void conn_trim_pools(struct conn_set *set, uint64_t now_ms)
{
    if (set->out_pool.nfree == 0 && set->in_pool.nfree == 0) {
        set->trim_at_ms = 0;
        return;
    }
    if (set->trim_at_ms == 0) { /* start an interval: what is kept now is on probation */
        set->out_pool.min_free = set->out_pool.nfree;
        set->in_pool.min_free = set->in_pool.nfree;
    } else if (now_ms >= set->trim_at_ms) {
        if (buf_pool_trim(&set->out_pool) + buf_pool_trim(&set->in_pool) > 0)
            malloc_trim(0);
    } else {
        return;
    }
    bool is_keeping = set->out_pool.nfree > 0 || set->in_pool.nfree > 0;
    set->trim_at_ms = is_keeping ? now_ms + CONN_POOL_TRIM_MS : 0;
}

/* Write the refusal lines that are due, and note when the next ones will be. */
static void conn_flush_log(struct conn_set *set, uint64_t now_ms)
{
    if (set->log_at_ms == 0 || now_ms < set->log_at_ms)
        return;
    int wait = droplog_flush(&set->closed, now_ms, false);
    set->log_at_ms = wait < 0 ? 0 : now_ms + (uint64_t)wait;
}

void conn_set_expire(struct conn_set *set, uint64_t now_ms)
{
    conn_trim_pools(set, now_ms);
    conn_expire_list(set, &set->header, conn_header_ms(set), now_ms, STAT_tcp_proxy_timeouts);
    conn_flush_log(set, now_ms);
    conn_expire_list(set, &set->idle, conn_idle_ms(set), now_ms, STAT_tcp_idle_timeouts);
    conn_expire_list(set, &set->linger, CONN_LINGER_MS, now_ms, STAT_COUNT);
    conn_expire_sending(set, now_ms);
}

/* Milliseconds from now until the first deadline of list, whose entries all have
 * timeout_ms, or -1 if it is empty or the timeout is 0 (none). */
static int conn_list_wait_ms(const struct list_node *list, unsigned timeout_ms, uint64_t now_ms)
{
    if (list_is_empty(list) || timeout_ms == 0)
        return -1;
    const struct conn_timer *t = list_entry(list->next, struct conn_timer, node);
    uint64_t deadline = t->since_ms + timeout_ms;
    if (deadline <= now_ms)
        return 0;
    uint64_t wait = deadline - now_ms;
    return wait > INT32_MAX ? INT32_MAX : (int)wait;
}

/* The earlier of two waits, where -1 means none. */
static int conn_min_wait(int a, int b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

/* Milliseconds from now_ms until at_ms (0 if past), or -1 when at_ms is 0 (none). */
static int conn_until(uint64_t at_ms, uint64_t now_ms)
{
    if (at_ms == 0)
        return -1;
    return at_ms <= now_ms ? 0 : at_ms - now_ms > INT32_MAX ? INT32_MAX : (int)(at_ms - now_ms);
}

int conn_set_next_expiry_ms(const struct conn_set *set, uint64_t now_ms)
{
    int idle = conn_list_wait_ms(&set->idle, conn_idle_ms(set), now_ms);
    int linger = conn_list_wait_ms(&set->linger, CONN_LINGER_MS, now_ms);
    int wait = conn_min_wait(idle, linger);
    int sending = conn_list_wait_ms(&set->sending, conn_send_ms(set), now_ms);
    int header = conn_list_wait_ms(&set->header, conn_header_ms(set), now_ms);
    wait = conn_min_wait(conn_min_wait(wait, conn_until(set->trim_at_ms, now_ms)), sending);
    return conn_min_wait(conn_min_wait(wait, header), conn_until(set->log_at_ms, now_ms));
}

/* The shutdown deadline for one connection: a few last rounds of reading and answering
 * what is already there, FIN, and close. */
static void conn_close_final(struct conn_set *set, struct conn *c)
{
    for (int round = 0; round < CONN_FINAL_ROUNDS && !c->is_lingering; round++) {
        int rc = conn_step(set, c, EPOLLIN | EPOLLOUT, clock_now_ms());
        if (rc < 0 && rc != -EAGAIN)
            break;
    }
    conn_flush(set, c);
    shutdown(c->fd, SHUT_WR);
    /* Closing with unread input sends RST, which discards what the kernel still holds to
     * send: take the input in first so the echoes already queued go out before the FIN. */
    for (int round = 0; round < CONN_FINAL_ROUNDS; round++)
        if (recv(c->fd, set->scratch_in.data, set->scratch_in.cap, 0) <= 0)
            break;
    conn_close(set, c, STAT_tcp_shutdown_forced);
}

void conn_set_close_all(struct conn_set *set)
{
    struct list_node *lists[] = {&set->idle, &set->linger, &set->header};
    for (size_t i = 0; i < 3; i++)
        while (!list_is_empty(lists[i]))
            conn_close_final(set, list_entry(lists[i]->next, struct conn, timer.node));
}

size_t conn_set_count(const struct conn_set *set)
{
    return set->count;
}

/* Teardown: close c without telling anyone (the thread that counted it has ended; the
 * per-IP table locks, so releasing its slot is safe from any thread). */
static void conn_discard(struct conn_set *set, struct conn *c)
{
    conn_unhold(set, c);
    close(c->fd);
    free(c);
    set->count--;
}

void conn_set_destroy(struct conn_set *set)
{
    if (set == NULL)
        return;
    droplog_flush(&set->closed, clock_now_ms(), true); /* its thread has ended: ours now */
    struct list_node *lists[] = {&set->idle, &set->linger, &set->header};
    for (size_t i = 0; i < 3; i++)
        while (!list_is_empty(lists[i]))
            conn_discard(set, list_entry(lists[i]->next, struct conn, timer.node));
    if (set->current)
        conn_profile_free(set->current);
    buf_pool_destroy(&set->out_pool);
    buf_pool_destroy(&set->in_pool);
    free(set->scratch_in.data);
    free(set->scratch_out.data);
    free(set);
}
