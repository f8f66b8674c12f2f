/* fdlimit: the process's open-file limit. Each TCP connection is an fd, so echod and its
 * tools raise the soft RLIMIT_NOFILE to the hard limit at start-up, and echod refuses to
 * start unless max_connections plus its own fds fit. Main thread only. */
#ifndef ECHOD_FDLIMIT_H
#define ECHOD_FDLIMIT_H

#include <stdbool.h>
#include <stdint.h>

/* Fds kept spare for what libc or the kernel may open behind echod's back. */
#define FDLIMIT_SLACK 8

/* Raise the soft limit to the hard one and store the soft limit now in force in *out
 * (UINT64_MAX when unlimited). 0, or -errno when the limit cannot be read or raised
 * (*out then holds the limit in force, if it could be read). */
int fdlimit_raise(uint64_t *out);
/* The fds echod holds besides its connections, with `listeners` TCP and UDP sockets and
 * `workers` worker threads (is_tcp: the acceptor and workers run; is_udp: the UDP
 * thread runs): 3 std, the listeners, 2 per worker (epoll, eventfd), the acceptor's
 * epoll, eventfd and reserve fd, the UDP thread's epoll and eventfd, the signalfd, the
 * done eventfd, the port file while it is written, and FDLIMIT_SLACK for libc. */
uint64_t fdlimit_own_fds(uint64_t listeners, uint64_t workers, bool is_tcp, bool is_udp);

#endif
