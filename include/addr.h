/* addr: parsing and printing of listen addresses, "ADDR:PORT" or "[V6ADDR]:PORT".
 * Pure functions; any thread. Only numeric addresses: a daemon binds without DNS. */
#ifndef ECHOD_ADDR_H
#define ECHOD_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest text addr_format writes, with its NUL: "[" v6 "]:" port. */
#define ADDR_STRLEN 56

struct addr {
    struct sockaddr_storage ss; /* AF_INET or AF_INET6 */
    socklen_t len;
};

/* Parse "1.2.3.4:80" or "[::1]:80" (port 0..65535, 0 = ephemeral); 0 or -EINVAL. */
int addr_parse(const char *text, struct addr *out);
/* Write "1.2.3.4:80" or "[::1]:80" into buf; truncates safely when size is short. */
void addr_format(const struct sockaddr *sa, char *buf, size_t size);
/* The port in host byte order, 0 for an unknown family. */
uint16_t addr_port(const struct sockaddr *sa);
/* sa's IP address as 16 bytes, IPv6 as is and IPv4 as its IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d); 0, or -EAFNOSUPPORT (out zeroed) for another family. */
int addr_ip16(const struct sockaddr *sa, uint8_t out[16]);

#endif
