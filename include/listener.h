/* listener: the TCP and UDP sockets echod serves (and the metrics endpoint's TCP
 * sockets), bound or adopted from systemd, as
 * shared, refcounted objects, and the port file that publishes their ports. Opened by
 * the main thread (at start-up and on reload); the settings snapshots of the acceptor
 * and the UDP thread hold references, and the last reference closes the socket, so a
 * listener a reload removed stays open exactly until the thread serving it has moved
 * on. Nothing after start-up cares where a listener came from. */
#ifndef ECHOD_LISTENER_H
#define ECHOD_LISTENER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "addr.h"

struct listener {
    _Atomic unsigned refs;
    int fd;
    int type;               /* SOCK_STREAM or SOCK_DGRAM */
    bool is_adopted;        /* passed by systemd: closed, never shut down */
    bool is_reuseport;      /* bound with SO_REUSEPORT (tcp.reuseport, udp.reuseport) */
    bool is_metrics;        /* a TCP listener for the metrics endpoint, not for echo */
    struct addr configured; /* the listen entry it was opened for (port 0 stays 0) */
    struct addr bound;      /* the address actually bound: port 0 resolved */
};

/* A list of listener references (a settings snapshot's, or the server's). */
struct listener_set {
    struct listener **items;
    size_t count;
};

/* Bind a non-blocking socket of `type` to a (listening, for TCP), with SO_REUSEPORT when
 * is_reuseport (several processes may then bind the same address and the kernel spreads
 * clients over them), into a new listener with one reference; 0 or -errno. */
int listener_open(const struct addr *a, int type, int backlog, bool is_reuseport,
                  struct listener **out);
/* Adopt fd, a socket passed by systemd, as a new listener with one reference: a
 * listening TCP socket or a bound UDP socket, IPv4 or IPv6. name (FileDescriptorName=,
 * may be NULL) "tcp" or "udp" must match the socket, and "metrics" must be a listening
 * TCP socket (the listener is then is_metrics); any other name is classified by
 * SO_TYPE/SO_ACCEPTCONN. 0; or -errno with
 * err saying why fd is refused (not a socket, not IPv4/IPv6, a connected TCP socket as
 * Accept=yes passes, neither stream nor datagram, or a name that does not fit). fd
 * stays open on failure. */
int listener_adopt(int fd, const char *name, struct listener **out, char *err, size_t err_size);
/* Take another reference; returns l. Any thread. */
struct listener *listener_ref(struct listener *l);
/* Drop a reference (NULL is fine); the last one closes the socket. Any thread. */
void listener_unref(struct listener *l);
/* Whether l serves the listen entry a with `type` and is_reuseport: a is the entry l was
 * opened for or the address it is bound to. A reload keeps such a listener instead of
 * binding it again (so "127.0.0.1:0" keeps its port, and naming that port keeps it
 * too); a changed is_reuseport needs a new socket. */
bool listener_matches(const struct listener *l, const struct addr *a, int type, bool is_reuseport);
/* A stopping SO_REUSEPORT TCP listener: from now on the kernel drops every SYN that would
 * open a connection on l (a socket filter), while the handshakes already under way
 * complete and wait to be accepted. A client whose SYN was dropped sends it again about
 * a second later, and by then l has left the port's group (listener_stop), so another
 * process takes it: draining l refuses and resets nobody. 0 or -errno. */
int listener_refuse_syns(struct listener *l);
/* Stop a TCP listener for good: new connects are refused (shutdown(2); the fd stays
 * open until the last reference). An adopted socket is left alone: systemd keeps
 * listening on it for the next start. */
void listener_stop(struct listener *l);
/* Append l (taking over the caller's reference); 0 or -ENOMEM (reference dropped). */
int listener_set_add(struct listener_set *set, struct listener *l);
/* A copy of from in *to, with a reference of its own to each listener; 0 or -ENOMEM. */
int listener_set_copy(struct listener_set *to, const struct listener_set *from);
/* Whether set holds l. */
bool listener_set_holds(const struct listener_set *set, const struct listener *l);
/* Drop every reference and empty the set. */
void listener_set_clear(struct listener_set *set);
/* An epoll fd and a new eventfd to wake its thread (registered with data.ptr = NULL),
 * and each of ls[0..count) registered for input (data.ptr = the listener). 0 or -errno;
 * on failure nothing stays open. */
int listener_watch(const struct listener_set *set, int *epfd, int *wake_fd);
/* "tcp 127.0.0.1:40123", "udp [::1]:40124" or "metrics 127.0.0.1:9107" into buf. */
void listener_describe(const struct listener *l, char *buf, size_t size);
/* Write one listener_describe line per listener of each set, in order, to path,
 * atomically (temp + rename). 0 or -errno. */
int listener_write_port_file(const char *path, const struct listener_set *const *sets,
                             size_t count);

#endif
