/* client: the client side that echod-cli and echod-bench share: the -H/-p/-u/-T options
 * and their strict parsers, name resolution, connecting with a deadline and poll waits.
 * Options and resolving on a tool's main thread, the rest on any; no state between calls. */
#ifndef ECHOD_CLIENT_H
#define ECHOD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "addr.h"

#define CLIENT_DEFAULT_HOST       "127.0.0.1"
#define CLIENT_DEFAULT_PORT       7007
#define CLIENT_DEFAULT_TIMEOUT_MS 5000
#define CLIENT_MAX_TIMEOUT_MS     3600000
/* Exit code for a bad command line (sysexits' EX_USAGE). */
#define CLIENT_EXIT_USAGE 64
/* Longest "HOST:PORT" text a target keeps for prompts and messages. */
#define CLIENT_NAME_SIZE 320
/* Most addresses of a name a target keeps, in getaddrinfo's order. */
#define CLIENT_MAX_ADDRS 16

/* Where a tool talks to and how long it waits: the options as given, then the resolved
 * address. */
struct client_target {
    const char *host;                    /* -H as given: a numeric address or a name */
    uint16_t port;                       /* -p */
    bool is_udp;                         /* -u */
    int timeout_ms;                      /* -T: the longest wait on the server without progress */
    struct addr addrs[CLIENT_MAX_ADDRS]; /* filled by client_target_resolve, in order */
    size_t addr_count;
    struct addr addr; /* where connections go: addrs[0], or the one client_connect reached */
    char name[CLIENT_NAME_SIZE]; /* "HOST:PORT" as the user wrote it */
};

/* The options every tool has, as getopt_long wants them; client_take_option reads them. */
#define CLIENT_SHORT_OPTS "uH:p:T:hV"
// clang-format off
#define CLIENT_LONG_OPTS                                                                           \
    {"udp", no_argument, NULL, 'u'},                                                               \
    {"host", required_argument, NULL, 'H'},                                                        \
    {"port", required_argument, NULL, 'p'},                                                        \
    {"timeout", required_argument, NULL, 'T'},                                                     \
    {"help", no_argument, NULL, 'h'},                                                              \
    {"version", no_argument, NULL, 'V'}
// clang-format on

/* A tool's name and its --help text, for the option handling both tools share. */
struct client_tool {
    const char *name;
    void (*print_usage)(FILE *out);
};

/* A target with the defaults: TCP to 127.0.0.1:7007, -T 5000. */
void client_target_init(struct client_target *t);
/* Before getopt: let getopt name a bad option itself, under the tool's name, as echod's
 * does ("echod-cli: invalid option -- 'x'"); argv[0] becomes the tool's name. */
void client_begin_options(const struct client_tool *tool, char **argv);
/* Apply getopt's result ch (with optarg) if it is a common option (-u -H -p -T -h -V) or
 * an error ('?'); returns whether it was. --help and --version exit 0; bad values exit 64
 * through client_usage_error, and a bad option (getopt has named it) exits 64. */
bool client_take_option(const struct client_tool *tool, int ch, struct client_target *t);
/* After getopt: exit 64 if an argument is left over. */
void client_end_options(const struct client_tool *tool, int argc, char **argv);
/* Exit 64 after printing "PROG: message" and a pointer to --help, for bad usage only. */
void client_usage_error(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
/* Print "PROG: message[: strerror(-rc)]" on stderr; returns rc, or -EIO when rc is 0, so
 * callers can `return client_report(...)` from a failing step. */
int client_report(const char *prog, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Resolve t->host and t->port into t->addrs (every address of a name, up to
 * CLIENT_MAX_ADDRS), t->addr (the first) and t->name; 0 or -errno (-ENOENT: no such
 * host), saying why on stderr as PROG. */
int client_target_resolve(struct client_target *t, const char *prog);

/* Parse a port 1..65535 written in decimal digits only; 0 or -EINVAL. */
int client_parse_port(const char *text, uint16_t *out);
/* Parse a decimal count 1..max written in digits only; 0 or -EINVAL. */
int client_parse_count(const char *text, unsigned long max, unsigned long *out);

/* A non-blocking, close-on-exec socket of the target's type with a connect to t->addr
 * started (TCP: possibly still in progress); the fd or -errno. */
int client_connect_start(const struct client_target *t);
/* The outcome of a started connect once its fd polls writable: 0 or -errno. */
int client_connect_result(int fd);
/* Connect to each of the target's addresses in turn, waiting at most timeout_ms for each,
 * until one answers; t->addr becomes that one. A non-blocking fd, or the last address's
 * -errno (-ETIMEDOUT when the time ran out, -ECONNREFUSED, ...). UDP has no handshake:
 * its first address that a socket can be connected to is taken. */
int client_connect(struct client_target *t, int timeout_ms);
/* Wait up to timeout_ms (-1: no limit) for events on fd: the revents, 0 on timeout, or
 * -errno. EINTR is retried within the same deadline. */
int client_wait(int fd, short events, int timeout_ms);
/* Write all len bytes to fd (blocking or not: it polls on EAGAIN); 0 or -errno. */
int client_write_all(int fd, const void *buf, size_t len);
/* Milliseconds left until deadline_ms on clock_now_ms, as a poll(2) timeout (0 if past). */
int client_ms_left(uint64_t deadline_ms);

#endif
