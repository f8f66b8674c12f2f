/* listener: binding TCP and UDP sockets, or adopting those systemd passed, and
 * publishing their ports. Main thread, at start-up. The server owns every listener fd
 * and closes it last; nothing after start-up cares where a listener came from. */
#ifndef ECHOD_LISTENER_H
#define ECHOD_LISTENER_H

#include <stddef.h>

#include "addr.h"

struct listener {
    int fd;
    int type;          /* SOCK_STREAM or SOCK_DGRAM */
    struct addr bound; /* the address actually bound: port 0 resolved */
};

/* Bind a non-blocking socket of `type` to a (listening, for TCP); 0 or -errno. */
int listener_open(struct listener *l, const struct addr *a, int type, int backlog);
/* Adopt fd, a socket passed by systemd, as a listener: a listening TCP socket or a
 * bound UDP socket, IPv4 or IPv6. name (FileDescriptorName=, may be NULL) "tcp" or
 * "udp" must match the socket; any other name is classified by SO_TYPE/SO_ACCEPTCONN
 * ("metrics" is reserved and refused for now). 0; or -errno with err saying why fd is
 * refused (not a socket, not IPv4/IPv6, a connected TCP socket as Accept=yes passes,
 * neither stream nor datagram, or a name that does not fit). fd stays open on failure. */
int listener_adopt(struct listener *l, int fd, const char *name, char *err, size_t err_size);
/* An epoll fd watching every listener for input (data.ptr = &ls[i]) and a new eventfd
 * to wake its thread (data.ptr = NULL). 0 or -errno; on failure nothing stays open. */
int listener_watch(const struct listener *ls, size_t count, int *epfd, int *wake_fd);
/* Close the socket; safe on a listener that is already closed. */
void listener_close(struct listener *l);
/* "tcp 127.0.0.1:40123" or "udp [::1]:40124" into buf. */
void listener_describe(const struct listener *l, char *buf, size_t size);
/* Write one listener_describe line per listener to path, atomically (temp + rename).
 * 0 or -errno. */
int listener_write_port_file(const char *path, const struct listener *ls, size_t count);

#endif
