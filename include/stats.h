/* stats: named event counters. Each thread owns one `struct stats` and bumps it with
 * relaxed atomics (no lock, no shared cache line); readers sum every thread's copy.
 * STATS_COUNTERS lists each counter with what it counts: the metrics endpoint's HELP. */
#ifndef ECHOD_STATS_H
#define ECHOD_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define STATS_COUNTERS(X)                                                                          \
    X(tcp_accepted, "sockets accepted")                                                            \
    X(tcp_accept_retries, "transient accept errors retried (ECONNABORTED, ...)")                   \
    X(tcp_accept_failures, "accept errors that paused accepting (EMFILE, ENOMEM, ...)")            \
    X(tcp_handoff_refused, "closed with a FIN: a second stop signal closed the queues")            \
    X(tcp_accept_paused, "times accepting paused at max_connections")                              \
    X(tcp_accept_queue_full, "times accepting paused: every worker's hand-off queue was full")     \
    X(tcp_opened, "connections a worker took on")                                                  \
    X(tcp_closed, "connections closed, for any reason")                                            \
    X(tcp_bytes_in, "bytes read from clients")                                                     \
    X(tcp_bytes_out, "bytes written to clients")                                                   \
    X(tcp_reads, "reads that returned data: TCP messages in")                                      \
    X(tcp_writes, "writes that sent data: TCP messages out")                                       \
    X(tcp_io_errors, "connections closed by a read or write error while owed bytes")               \
    X(tcp_peer_resets, "connections the peer reset while owed nothing (a health check's RST)")     \
    X(tcp_idle_timeouts, "connections closed by idle_timeout_ms")                                  \
    X(tcp_lines_too_long, "greet: connections closed for a line over max_line_bytes")              \
    X(tcp_out_of_memory, "connections closed because a buffer could not be had")                   \
    X(tcp_shutdown_forced, "connections closed by shutdown_timeout_ms")                            \
    X(tcp_shutdown_refused, "closed with a FIN at stop: came after the signal or past deadline")   \
    X(tcp_send_timeouts, "connections closed by send_timeout_ms: output made no progress")         \
    X(tcp_per_ip_refused, "closed at once: the IP was at max_connections_per_ip")                  \
    X(tcp_accept_emfile, "connections closed at once with the reserve fd: fds ran out")            \
    X(tcp_proxy_headers, "PROXY headers read, LOCAL and UNKNOWN included")                         \
    X(tcp_proxy_local, "of those, LOCAL or UNKNOWN: served with the real peer's address")          \
    X(tcp_proxy_refused, "closed at once: the peer is not in tcp.proxy_from")                      \
    X(tcp_proxy_malformed, "closed: the PROXY header is malformed")                                \
    X(tcp_proxy_unsupported, "closed: a PROXY header of a kind echod does not serve")              \
    X(tcp_proxy_too_long, "closed: a PROXY v1 line without CRLF within 107 bytes")                 \
    X(tcp_proxy_truncated, "closed: EOF before the PROXY header was complete")                     \
    X(tcp_proxy_timeouts, "closed: no whole PROXY header within tcp.proxy_timeout_ms")             \
    X(udp_datagrams_in, "datagrams received")                                                      \
    X(udp_datagrams_out, "replies sent")                                                           \
    X(udp_batches, "recvmmsg calls that returned datagrams")                                       \
    X(udp_bytes_in, "payload bytes received")                                                      \
    X(udp_bytes_out, "payload bytes sent")                                                         \
    X(udp_reply_too_large, "replies over udp.max_reply_bytes or a datagram, not sent")             \
    X(udp_send_errors, "replies the kernel refused (full buffer, unreachable, ...)")               \
    X(udp_drop_port, "guard: source port 0 or below 1024")                                         \
    X(udp_drop_reflector, "guard: source port 1900, 3702, 5353 or 11211")                          \
    X(udp_drop_own_port, "guard: source port is one of echod's own UDP ports")                     \
    X(udp_drop_address, "guard: multicast, broadcast, unspecified or 0.0.0.0/8 source")            \
    X(udp_drop_rate, "guard: the source's /24 or /64 ran out of tokens")                           \
    X(udp_drop_global_rate, "guard: the global datagrams-per-second cap was reached")              \
    X(reloads, "SIGHUP reloads applied")                                                           \
    X(reload_failures, "SIGHUP reloads refused: the old configuration stays")

enum stats_counter {
#define STATS_ENUM(name, help) STAT_##name,
    STATS_COUNTERS(STATS_ENUM)
#undef STATS_ENUM
        STAT_COUNT
};

struct stats {
    _Atomic uint64_t v[STAT_COUNT]; /* each written by the owning thread only */
} __attribute__((aligned(64)));

/* Add n to one counter of this thread's stats. */
static inline void stats_add(struct stats *s, enum stats_counter c, uint64_t n)
{
    atomic_store_explicit(&s->v[c], atomic_load_explicit(&s->v[c], memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Sum `count` per-thread copies into out[STAT_COUNT]. */
void stats_sum(struct stats *const *all, size_t count, uint64_t out[STAT_COUNT]);
/* The counter's name, e.g. "tcp_accepted". */
const char *stats_name(enum stats_counter c);
/* What the counter counts, e.g. "sockets accepted". */
const char *stats_help(enum stats_counter c);
/* Write "name=value name=value ..." for every counter into buf; returns its length. */
size_t stats_format(const uint64_t v[STAT_COUNT], char *buf, size_t size);

#endif
