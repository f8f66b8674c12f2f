/* client: the client side that echod-cli and echod-bench share: the -H/-p/-u/-T options
 * and their strict parsers, name resolution, connecting with a deadline and poll waits.
 * Used by each tool's single thread; nothing here keeps state between calls. */
#ifndef ECHOD_CLIENT_H
#define ECHOD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define CLIENT_DEFAULT_HOST "127.0.0.1"
#define CLIENT_DEFAULT_PORT 7007
/* Exit code for a bad command line (sysexits' EX_USAGE). */
#define CLIENT_EXIT_USAGE 64
/* Longest "HOST:PORT" text a target keeps for prompts and messages. */
#define CLIENT_NAME_SIZE 320

/* Where a tool talks to: the options as given, then the resolved address. */
struct client_target {
    const char *host;            /* -H as given: a numeric address or a name */
    uint16_t port;               /* -p */
    bool is_udp;                 /* -u */
    struct addr addr;            /* filled by client_target_resolve */
    char name[CLIENT_NAME_SIZE]; /* "HOST:PORT" as the user wrote it */
};

/* The short options client_take_option handles, for a getopt optstring. */
#define CLIENT_SHORT_OPTS "uH:p:"
/* The matching getopt_long entries (three of them). */
#define CLIENT_LONG_OPTS                                                                           \
    {"udp", no_argument, NULL, 'u'}, {"host", required_argument, NULL, 'H'},                       \
    {                                                                                              \
        "port", required_argument, NULL, 'p'                                                       \
    }

/* A target with the defaults: TCP to 127.0.0.1:7007. */
void client_target_init(struct client_target *t);
/* Apply getopt's result ch (with optarg) if it is -u, -H, -p, ':' or '?'; returns whether
 * it was one of them. Bad values and unknown options exit 64 through client_usage_error. */
bool client_take_option(const char *prog, int ch, char **argv, struct client_target *t);
/* Exit 64 after printing "PROG: message" and a pointer to --help, for bad usage only. */
void client_usage_error(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
/* Resolve t->host and t->port into t->addr and t->name; 0 or -errno (-ENOENT: no such
 * host), with the reason in err. */
int client_target_resolve(struct client_target *t, char *err, size_t err_size);

/* Parse a port 1..65535 written in decimal digits only; 0 or -EINVAL. */
int client_parse_port(const char *text, uint16_t *out);
/* Parse a decimal count 1..max written in digits only; 0 or -EINVAL. */
int client_parse_count(const char *text, unsigned long max, unsigned long *out);

/* A non-blocking, close-on-exec socket of the target's type with a connect to it started
 * (TCP: possibly still in progress); the fd or -errno. */
int client_connect_start(const struct client_target *t);
/* The outcome of a started connect once its fd polls writable: 0 or -errno. */
int client_connect_result(int fd);
/* Connect to the target waiting at most timeout_ms: a non-blocking fd, or -errno
 * (-ETIMEDOUT when the time ran out, -ECONNREFUSED, ...). */
int client_connect(const struct client_target *t, int timeout_ms);
/* Wait up to timeout_ms (-1: no limit) for events on fd: the revents, 0 on timeout, or
 * -errno. EINTR is retried within the same deadline. */
int client_wait(int fd, short events, int timeout_ms);
/* Write all len bytes to fd (blocking or not: it polls on EAGAIN); 0 or -errno. */
int client_write_all(int fd, const void *buf, size_t len);
/* Milliseconds left until deadline_ms on clock_now_ms, as a poll(2) timeout (0 if past). */
int client_ms_left(uint64_t deadline_ms);

#endif
