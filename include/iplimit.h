/* iplimit: open TCP connections per client IP, for max_connections_per_ip. Whoever learns
 * a connection's client address admits it (the acceptor at accept, the worker once a PROXY
 * header names the client) and the worker that closes it releases the slot by its fd, so
 * the close needs no address. Any thread; one mutex inside. */
#ifndef ECHOD_IPLIMIT_H
#define ECHOD_IPLIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* A client IP as 16 bytes: IPv6 as is, IPv4 as its IPv4-mapped IPv6 address. */
struct iplimit_key {
    uint8_t addr[16];
};

struct iplimit;

/* A table allowing max_per_ip connections per IP and holding at most `capacity` IPs
 * (memory is bounded by it); 0 or -errno. */
int iplimit_create(unsigned max_per_ip, size_t capacity, struct iplimit **out);
/* Change both limits (a reload); connections over a lowered limit stay open, and new
 * ones are counted against the new limit. Any thread. */
void iplimit_set_limits(struct iplimit *t, unsigned max_per_ip, size_t capacity);
/* Free the table. */
void iplimit_destroy(struct iplimit *t);
/* The key of sa's IP address (port ignored); 0, or -EAFNOSUPPORT for a non-IP family. */
int iplimit_key_of(const struct sockaddr *sa, struct iplimit_key *key);
/* Count the connection on socket fd against key's IP: 0; -EUSERS when the IP is at the
 * limit; -ENOSPC when the table holds `capacity` IPs; -ENOMEM. Nothing is held on error. */
int iplimit_acquire(struct iplimit *t, const struct iplimit_key *key, int fd);
/* Count the connection on socket fd against sa's IP wherever its client becomes known:
 * at accept, or once a PROXY header names it. A slot fd already holds is given up first
 * (the slot moves). 0, also without counting anything for a non-IP sa; else as
 * iplimit_acquire, fd then holding nothing. */
int iplimit_admit(struct iplimit *t, const struct sockaddr *sa, int fd);
/* Release what iplimit_acquire took for fd (call before closing fd); no-op if nothing. */
void iplimit_release(struct iplimit *t, int fd);
/* Connections counted against key's IP now. */
unsigned iplimit_count(struct iplimit *t, const struct iplimit_key *key);
/* IPs with at least one connection now (entries in the table). */
size_t iplimit_ip_count(struct iplimit *t);

#endif
