/* addr: parsing and printing of "ADDR:PORT" and "[V6ADDR]:PORT".
 * Pure functions, any thread. Addresses must be numeric: binding never waits on DNS. */
#include "config.h"

#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* Parse a decimal port of 1 to 5 digits, 0..65535. */
static int addr_parse_port(const char *s, uint16_t *port)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5)
        return -EINVAL;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return -EINVAL;
    *port = (uint16_t)v;
    return 0;
}

/* Split text into host and port text: "[h]:p" for IPv6, "h:p" otherwise. */
static int addr_split(const char *text, char *host, size_t host_size, const char **port, int *is_v6)
{
    const char *end;
    const char *h = text;
    if (text[0] == '[') {
        h = text + 1;
        end = strchr(h, ']');
        if (end == NULL || end[1] != ':')
            return -EINVAL;
        *port = end + 2;
        *is_v6 = 1;
    } else {
        end = strrchr(text, ':');
        if (end == NULL || memchr(text, ':', (size_t)(end - text)) != NULL)
            return -EINVAL;
        *port = end + 1;
        *is_v6 = 0;
    }
    size_t len = (size_t)(end - h);
    if (len == 0 || len >= host_size)
        return -EINVAL;
    memcpy(host, h, len);
    host[len] = '\0';
    return 0;
}

int addr_parse(const char *text, struct addr *out)
{
    char host[INET6_ADDRSTRLEN];
    const char *port_text;
    int is_v6;
    uint16_t port;
    if (addr_split(text, host, sizeof(host), &port_text, &is_v6) < 0 ||
        addr_parse_port(port_text, &port) < 0)
        return -EINVAL;

    struct addr a;
    memset(&a, 0, sizeof(a));
    if (is_v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return -EINVAL;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        a.len = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return -EINVAL;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        a.len = sizeof(*sin);
    }
    *out = a;
    return 0;
}

void addr_format(const struct sockaddr *sa, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (size == 0)
        return;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(buf, size, "[%s]:%u", host, (unsigned)ntohs(sin6->sin6_port));
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(buf, size, "%s:%u", host, (unsigned)ntohs(sin->sin_port));
    } else {
        snprintf(buf, size, "(family %d)", (int)sa->sa_family);
    }
}

uint16_t addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
    return 0;
}

int addr_ip16(const struct sockaddr *sa, uint8_t out[16])
{
    memset(out, 0, 16);
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return 0;
    }
    if (sa->sa_family != AF_INET)
        return -EAFNOSUPPORT;
    out[10] = out[11] = 0xff; /* ::ffff:a.b.c.d */
    memcpy(out + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    return 0;
}
