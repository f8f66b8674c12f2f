/* client: what echod-cli and echod-bench share on the client side: the -H/-p/-u options
 * and strict number parsers, resolving a host (numeric IPv4/IPv6 first, then
 * getaddrinfo, keeping every address), connects that try each address in turn with a
 * deadline, and poll-based waits.
 * Options and resolving run on a tool's main thread; connecting, waits and reports on any
 * of its threads. It owns nothing: every fd it returns is the caller's. */
#include "config.h"

#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"

void client_target_init(struct client_target *t)
{
    memset(t, 0, sizeof(*t));
    t->host = CLIENT_DEFAULT_HOST;
    t->port = CLIENT_DEFAULT_PORT;
    t->timeout_ms = CLIENT_DEFAULT_TIMEOUT_MS;
}

/* Print "PROG: message" on stderr, without a newline. */
static void client_vprint(const char *prog, const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
}

void client_usage_error(const char *prog, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    client_vprint(prog, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", prog);
    exit(CLIENT_EXIT_USAGE);
}

int client_report(const char *prog, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    client_vprint(prog, fmt, ap);
    va_end(ap);
    if (rc < 0)
        fprintf(stderr, ": %s", strerror(-rc));
    fputc('\n', stderr);
    return rc < 0 ? rc : -EIO;
}

void client_begin_options(const struct client_tool *tool, char **argv)
{
    argv[0] = (char *)tool->name;
    opterr = 1;
}

bool client_take_option(const struct client_tool *tool, int ch, struct client_target *t)
{
    unsigned long ms;
    switch (ch) {
    case 'u':
        t->is_udp = true;
        return true;
    case 'H':
        if (optarg[0] == '\0')
            client_usage_error(tool->name, "empty host");
        t->host = optarg;
        return true;
    case 'p':
        if (client_parse_port(optarg, &t->port) < 0)
            client_usage_error(tool->name, "invalid port '%s' (1-65535)", optarg);
        return true;
    case 'T':
        if (client_parse_count(optarg, CLIENT_MAX_TIMEOUT_MS, &ms) < 0)
            client_usage_error(tool->name, "invalid timeout '%s' (1-%d milliseconds)", optarg,
                               CLIENT_MAX_TIMEOUT_MS);
        t->timeout_ms = (int)ms;
        return true;
    case 'h':
        tool->print_usage(stdout);
        exit(0);
    case 'V':
        printf("%s %s\n", tool->name, PACKAGE_VERSION);
        exit(0);
    case '?': /* getopt has said what is wrong */
        fprintf(stderr, "Try '%s --help'.\n", tool->name);
        exit(CLIENT_EXIT_USAGE);
    default:
        return false;
    }
}

void client_end_options(const struct client_tool *tool, int argc, char **argv)
{
    if (optind < argc)
        client_usage_error(tool->name, "unexpected argument '%s'", argv[optind]);
}

int client_parse_count(const char *text, unsigned long max, unsigned long *out)
{
    size_t n = strlen(text);
    if (n == 0 || n > 19)
        return -EINVAL;
    unsigned long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long long)(text[i] - '0');
    }
    if (v == 0 || v > max)
        return -EINVAL;
    *out = (unsigned long)v;
    return 0;
}

int client_parse_port(const char *text, uint16_t *out)
{
    unsigned long v;
    if (client_parse_count(text, 65535, &v) < 0)
        return -EINVAL;
    *out = (uint16_t)v;
    return 0;
}

/* getaddrinfo's error as -errno. */
static int client_gai_errno(int gai)
{
    switch (gai) {
    case EAI_SYSTEM:
        return errno ? -errno : -EIO;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_AGAIN:
        return -EAGAIN;
    default:
        return -ENOENT;
    }
}

int client_target_resolve(struct client_target *t, const char *prog)
{
    /* "HOST:PORT", bracketing a bare IPv6 address; numeric ones need no resolver. */
    bool is_bare_v6 = strchr(t->host, ':') != NULL && t->host[0] != '[';
    snprintf(t->name, sizeof(t->name), "%s%s%s:%u", is_bare_v6 ? "[" : "", t->host,
             is_bare_v6 ? "]" : "", (unsigned)t->port);
    if (addr_parse(t->name, &t->addrs[0]) == 0) {
        t->addr = t->addrs[0];
        t->addr_count = 1;
        return 0;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = t->is_udp ? SOCK_DGRAM : SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV;
    char port_text[8];
    snprintf(port_text, sizeof(port_text), "%u", (unsigned)t->port);
    int gai = getaddrinfo(t->host, port_text, &hints, &res);
    if (gai != 0) {
        int rc = client_gai_errno(gai);
        client_report(prog, 0, "cannot resolve '%s': %s", t->host, gai_strerror(gai));
        return rc;
    }
    /* Every address, in getaddrinfo's order: where ::1 sorts first and the server
     * listens on IPv4 only, the first one is refused and the next one answers. */
    t->addr_count = 0;
    for (const struct addrinfo *ai = res; ai && t->addr_count < CLIENT_MAX_ADDRS;
         ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(t->addrs[0].ss))
            continue;
        struct addr *a = &t->addrs[t->addr_count++];
        memset(a, 0, sizeof(*a));
        memcpy(&a->ss, ai->ai_addr, ai->ai_addrlen);
        a->len = ai->ai_addrlen;
    }
    freeaddrinfo(res);
    if (t->addr_count == 0) {
        client_report(prog, 0, "cannot resolve '%s': no usable address", t->host);
        return -ENOENT;
    }
    t->addr = t->addrs[0];
    return 0;
}

int client_connect_start(const struct client_target *t)
{
    int type = t->is_udp ? SOCK_DGRAM : SOCK_STREAM;
    int fd = socket(t->addr.ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)&t->addr.ss, t->addr.len) != 0 &&
        errno != EINPROGRESS) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int client_connect_result(int fd)
{
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0)
        return -errno;
    return -so_error;
}

/* Connect to t->addr waiting at most timeout_ms: a non-blocking fd, or -errno. */
static int client_connect_addr(const struct client_target *t, int timeout_ms)
{
    int fd = client_connect_start(t);
    if (fd < 0)
        return fd;
    int rc = client_wait(fd, POLLOUT, timeout_ms);
    if (rc == 0)
        rc = -ETIMEDOUT;
    if (rc > 0)
        rc = client_connect_result(fd);
    if (rc == 0)
        return fd;
    close(fd);
    return rc;
}

int client_connect(struct client_target *t, int timeout_ms)
{
    int rc = -EDESTADDRREQ; /* no address: client_target_resolve was not called */
    for (size_t i = 0; i < t->addr_count; i++) {
        t->addr = t->addrs[i];
        if ((rc = client_connect_addr(t, timeout_ms)) >= 0)
            return rc;
    }
    return rc;
}

int client_ms_left(uint64_t deadline_ms)
{
    uint64_t now_ms = clock_now_ms();
    if (now_ms >= deadline_ms)
        return 0;
    uint64_t left_ms = deadline_ms - now_ms;
    return left_ms > INT_MAX ? INT_MAX : (int)left_ms;
}

int client_wait(int fd, short events, int timeout_ms)
{
    uint64_t deadline_ms = clock_now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int n = poll(&p, 1, timeout_ms < 0 ? -1 : client_ms_left(deadline_ms));
        if (n >= 0)
            return n == 0 ? 0 : p.revents;
        if (errno != EINTR)
            return -errno;
    }
}

int client_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = client_wait(fd, POLLOUT, -1);
            if (rc < 0)
                return rc;
        } else if (n < 0 && errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}
