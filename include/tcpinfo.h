/* tcpinfo: what the kernel knows of a TCP connection's peer, for the send timeout and
 * for resets: how many bytes the peer has acknowledged, and how many came from it. Any thread; owns
 * nothing. */
#ifndef ECHOD_TCPINFO_H
#define ECHOD_TCPINFO_H

#include <stdint.h>

/* Store in *out the bytes of data the peer of TCP socket fd has acknowledged so far
 * (TCP_INFO's tcpi_bytes_acked, Linux 4.1 and later). 0, -ENOTSUP when the kernel does
 * not report it, or -errno. */
int tcpinfo_bytes_acked(int fd, uint64_t *out);
/* Both byte counts of fd's connection: data the peer acknowledged (tcpi_bytes_acked) and
 * data received from it (tcpi_bytes_received; received may be NULL). 0, -ENOTSUP or
 * -errno as tcpinfo_bytes_acked. */
int tcpinfo_bytes(int fd, uint64_t *acked, uint64_t *received);

#endif
