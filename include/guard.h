/* guard: keeps echod's UDP service from being a reflector. A pure source check (ports,
 * addresses), per-prefix and global token buckets on a caller-supplied clock, and a
 * rate-limited drop log. Owned and run by the UDP thread only: no locks. */
#ifndef ECHOD_GUARD_H
#define ECHOD_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Own UDP ports a policy can hold: one per UDP listener (conf allows 64). */
#define GUARD_MAX_OWN_PORTS 64

/* What to do with a datagram. guard_check_source returns the first five only. */
enum guard_verdict {
    GUARD_PASS,
    GUARD_DROP_PORT,        /* source port 0 or below 1024 */
    GUARD_DROP_REFLECTOR,   /* source port 1900, 3702, 5353 or 11211 */
    GUARD_DROP_OWN_PORT,    /* source port is one of echod's own UDP ports */
    GUARD_DROP_ADDRESS,     /* multicast, broadcast, unspecified, 0/8, refused loopback,
                               or a malformed sockaddr */
    GUARD_DROP_RATE,        /* the source's /24 (IPv4) or /64 (IPv6) is out of tokens */
    GUARD_DROP_GLOBAL_RATE, /* the global datagrams-per-second cap is reached */
    GUARD_VERDICT_COUNT
};

/* The stateless part: what guard_check_source needs. */
struct guard_policy {
    bool is_loopback_allowed; /* answer 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104 */
    size_t own_port_count;
    uint16_t own_ports[GUARD_MAX_OWN_PORTS]; /* host byte order */
};

/* The tunables, as configured under udp.guard. */
struct guard_conf {
    bool is_enabled;
    bool is_loopback_allowed; /* udp.guard.allow_loopback */
    bool is_loopback_limited; /* udp.guard.limit_loopback: loopback obeys the rate limits */
    unsigned rate;            /* datagrams per second per /24 or /64 */
    unsigned burst;           /* tokens a prefix bucket holds */
    unsigned max_rate;        /* global datagrams per second (and burst); 0 = no cap */
    unsigned table_size;      /* prefixes tracked */
    unsigned log_interval_ms; /* at most one drop line per reason per interval */
};

struct guard;

/* Fill c with the defaults README documents (enabled, loopback allowed and unlimited). */
void guard_conf_defaults(struct guard_conf *c);
/* A policy with the defaults: loopback allowed, no own ports. */
void guard_policy_init(struct guard_policy *p);
/* Add an own port (host order); duplicates are ignored. 0, or -ENOSPC when full. */
int guard_policy_add_own_port(struct guard_policy *p, uint16_t port);
/* Whether a datagram from sa (len bytes, as recvfrom gave them) may be answered at all:
 * GUARD_PASS or the drop reason. Pure; never reads past len. The checks run in this
 * order, so each datagram has exactly one reason: malformed or unknown family, then
 * the address rules (both GUARD_DROP_ADDRESS), then port below 1024, reflector port,
 * own port. */
enum guard_verdict guard_check_source(const struct guard_policy *p, const struct sockaddr *sa,
                                      socklen_t len);
/* A one-line description of a drop reason, for the log. */
const char *guard_verdict_describe(enum guard_verdict v);

/* A guard with a fixed-size prefix table, keyed with getrandom(2); 0 or -errno. */
int guard_create(const struct guard_conf *c, const struct guard_policy *p, struct guard **out);
/* Free the guard (NULL is fine). */
void guard_destroy(struct guard *g);
/* The verdict for one datagram at now_ms: the source check, then the source prefix's
 * bucket, then the global bucket. Drops are remembered for guard_log_drops. No syscall,
 * no allocation. */
enum guard_verdict guard_admit(struct guard *g, const struct sockaddr *sa, socklen_t len,
                               uint64_t now_ms);
/* Log one line per reason that dropped datagrams, if the log interval has passed since
 * the last lines (or always, with is_final). Returns the ms until the next lines are
 * due, or -1 when nothing waits: a timeout for epoll_wait. */
int guard_log_drops(struct guard *g, uint64_t now_ms, bool is_final);
/* Prefixes the table tracks now (at most table_size). */
size_t guard_tracked(const struct guard *g);

#endif
