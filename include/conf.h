/* conf: the one configuration struct, loaded from a libconfig file or string.
 * Only conf.c touches libconfig. Loaded by the main thread at start-up; read-only after. */
#ifndef ECHOD_CONF_H
#define ECHOD_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"
#include "guard.h"
#include "log.h"
#include "proto.h"
#include "proxy.h"
#include "template.h"

#define CONF_DEFAULT_PORT 7007
/* Most worker threads, whether configured or counted from CPUs. */
#define CONF_MAX_WORKERS 1024
/* Room for an error message "FILE:LINE: message". */
#define CONF_ERR_SIZE 512
/* Room for a key's full name, "udp.guard.log_interval_ms". */
#define CONF_KEY_NAME_MAX 64

struct conf_service {
    struct addr *listen; /* addresses to bind; none turns the service off */
    size_t listen_count;
    enum proto_mode mode;
    char *greeting; /* greet mode prefix, UTF-8, NUL-terminated: the template's source */
    size_t greeting_len;
    struct template greeting_template; /* greeting compiled (template.h) */
    size_t greeting_max_bytes;         /* its longest rendering (template_max_len) */
    bool is_reuseport;                 /* tcp.reuseport, udp.reuseport: SO_REUSEPORT */
};

struct conf {
    unsigned workers;                /* worker threads; 0 = one per CPU we may run on */
    unsigned queue_capacity;         /* hand-off slots per worker */
    unsigned max_connections;        /* open TCP connections; more wait in the backlog */
    unsigned idle_timeout_ms;        /* close a silent connection; 0 = never */
    unsigned send_timeout_ms;        /* close a connection whose output is stuck; 0 = never */
    unsigned max_connections_per_ip; /* open TCP connections per client IP; 0 = no limit */
    unsigned shutdown_timeout_ms;    /* how long SIGTERM waits for clients to finish */
    enum log_level log_level;
    struct conf_service tcp;
    unsigned tcp_backlog;                 /* listen(2) backlog */
    unsigned tcp_max_line_bytes;          /* greet mode: longest line, not counting '\n' */
    unsigned tcp_buffer_bytes;            /* pending-output bound per connection */
    enum proxy_accept tcp_proxy_protocol; /* the PROXY header a connection starts with */
    struct proxy_net *tcp_proxy_from;     /* who may send one; required when it is on */
    size_t tcp_proxy_from_count;
    unsigned tcp_proxy_timeout_ms; /* how long the header may take to arrive */
    struct conf_service udp;
    unsigned udp_max_reply_bytes; /* a larger reply is not sent (udp_reply_too_large) */
    struct guard_conf udp_guard;  /* the reflection guard, udp.guard */
    char *instance;               /* {instance}: the file's base name by default */
    struct addr *metrics_listen;  /* metrics.listen: the metrics endpoint; none turns it off */
    size_t metrics_listen_count;
};

/* Fill c with the built-in defaults; 0 or -ENOMEM. */
int conf_init_defaults(struct conf *c);
/* Replace c's values by those in the file at path (keys it omits keep their defaults).
 * 0; -EINVAL with err = "FILE:LINE: message"; or, with err saying why, -EISDIR or -EINVAL
 * for a path that is not a regular file (never opened if so: a FIFO would block), or
 * another -errno when the file is unreadable. c is left unchanged on failure. */
int conf_load_file(struct conf *c, const char *path, char *err, size_t err_size);
/* As conf_load_file, from text in memory, naming it `name` in messages. */
int conf_load_string(struct conf *c, const char *text, const char *name, char *err,
                     size_t err_size);
/* Call fn with the full name of every key a file may set ("workers", "tcp.mode",
 * "udp.guard.rate"). A load refuses any other name as an unknown key, so this is the one
 * list of keys: the man page test checks echod.conf(5) against it. */
void conf_each_key(void (*fn)(const char *key, void *arg), void *arg);
/* The number of workers to start: c->workers, or the CPUs this process may run on. */
unsigned conf_worker_count(const struct conf *c);
/* Release what c owns. */
void conf_free(struct conf *c);

#endif
