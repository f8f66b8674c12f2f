/* conn: one worker's TCP connections: the echo/greet state machine, the per-worker
 * scratch space and buffer pools they borrow, and their idle- and send-timeout queues.
 * Runs only on the owning worker thread; nothing here locks. */
#ifndef ECHOD_CONN_H
#define ECHOD_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "histogram.h"
#include "iplimit.h"
#include "proto.h"
#include "proxy.h"
#include "stats.h"
#include "template.h"

/* The TCP settings of one configuration generation (a snapshot's: immutable). Mode,
 * greeting and sizes apply to the connections adopted while they are current, for
 * their whole life; the timeouts of the current settings apply to every connection. */
struct conn_settings {
    enum proto_mode mode;
    struct proto_greet greet; /* the greeting, when greeting_template is literal */
    /* The greeting with what the process knows bound ({host}, {instance}, {pid}); a
     * worker binds {worker}, and what is left ({server}, {client}) is rendered per
     * connection. Literal (or zeroed): greet is the greeting of every connection. */
    struct template greeting_template;
    size_t buffer_bytes;       /* pending-output bound per connection */
    unsigned idle_timeout_ms;  /* no progress (see conn.c's DESIGN); 0 = never */
    unsigned send_timeout_ms;  /* output pending, the peer acknowledged nothing; 0 = never */
    unsigned proxy_timeout_ms; /* the whole header within this; the current settings' apply */
};

/* What the set tells its owner; fixed for the set's life. */
struct conn_hooks {
    struct iplimit *iplimit;     /* released on each close; NULL when there is no limit */
    void (*on_close)(void *arg); /* told, on this thread, whenever a connection closes */
    void *on_close_arg;
    const char *worker_name;     /* {worker} in greetings: the worker's index */
    struct histogram *durations; /* each served connection's lifetime; NULL: not kept */
};

struct conn_set;

/* A connection set registering its sockets in epfd; give it settings with conn_set_use
 * before adopting. 0 or -errno. */
int conn_set_create(const struct conn_hooks *hooks, int epfd, struct stats *stats,
                    struct conn_set **out);
/* Make s the current settings (see struct conn_settings). The set calls release(handle)
 * (release may be NULL) once no connection uses s any more. 0, or -ENOMEM with the old
 * settings kept and release(handle) called. */
int conn_set_use(struct conn_set *set, const struct conn_settings *s, void (*release)(void *),
                 void *handle);
/* Close every connection at once, telling nobody (its thread has ended), and free the
 * set. */
void conn_set_destroy(struct conn_set *set);
/* Serve the accepted socket fd, taking ownership (closed on failure); 0 or -errno. */
int conn_set_adopt(struct conn_set *set, int fd, enum proxy_accept proxy, uint64_t now_ms);
/* Handle epoll `events` for the connection registered with data.ptr == conn. */
void conn_set_handle(struct conn_set *set, void *conn, uint32_t events, uint64_t now_ms);
/* Close connections whose idle, linger or send time ran out. */
void conn_set_expire(struct conn_set *set, uint64_t now_ms);
/* Milliseconds until the next expiry (0 if due), or -1 when nothing can expire. */
int conn_set_next_expiry_ms(const struct conn_set *set, uint64_t now_ms);
/* Shutdown deadline: answer what each client already sent as far as the socket takes
 * it, send FIN, and close every connection. */
void conn_set_close_all(struct conn_set *set);
/* Open connections. */
size_t conn_set_count(const struct conn_set *set);

#endif
