/* scrape: fetches a metrics page over HTTP/1.0, the least a client needs: one request
 * with "Connection: close", the response read to EOF (so no chunking and no keep-alive to
 * follow), bounded by the target's -T for the whole exchange and by
 * SCRAPE_MAX_RESPONSE_BYTES. Every wait also watches a cancel fd (echod-cli's signalfd),
 * so Ctrl-C is never held up by a slow server. Runs on the tool's only thread; it owns
 * the one socket of a fetch, closed before scrape_fetch returns, and nothing else. */
#include "config.h"

#include "scrape.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"

/* The first allocation of a response buffer; it doubles up to the cap. */
#define SCRAPE_FIRST_BUF_BYTES (64u * 1024u)
/* The most bytes of a bad response quoted in a message. */
#define SCRAPE_QUOTE_CHARS 40

/* Wait until deadline_ms for events on fd: its revents, or -ETIMEDOUT, -ECANCELED (the
 * cancel fd polled readable) or -errno. */
static int scrape_wait(int fd, short events, uint64_t deadline_ms, int cancel_fd)
{
    struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = cancel_fd, .events = POLLIN}};
    for (;;) {
        int n = poll(p, 2, client_ms_left(deadline_ms));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (p[1].revents != 0)
            return -ECANCELED;
        return n == 0 ? -ETIMEDOUT : p[0].revents;
    }
}

/* Connect to each of t's addresses in turn until one answers: the fd or -errno. */
static int scrape_connect(struct client_target *t, uint64_t deadline_ms, int cancel_fd)
{
    int rc = -EDESTADDRREQ; /* no address: client_target_resolve was not called */
    for (size_t i = 0; i < t->addr_count; i++) {
        t->addr = t->addrs[i];
        int fd = client_connect_start(t);
        if (fd < 0) {
            rc = fd;
            continue;
        }
        rc = scrape_wait(fd, POLLOUT, deadline_ms, cancel_fd);
        if (rc > 0)
            rc = client_connect_result(fd);
        if (rc == 0)
            return fd;
        close(fd);
        if (rc == -ECANCELED || rc == -ETIMEDOUT)
            break;
    }
    return rc;
}

/* Make room for more of the response: 0, or -EMSGSIZE once it holds the cap and one
 * byte more (so that a response of exactly the cap still fits). */
static int scrape_grow(struct scrape_response *r)
{
    if (r->len + 1 < r->cap)
        return 0;
    size_t max_cap = SCRAPE_MAX_RESPONSE_BYTES + 2; /* one byte over, and the NUL */
    if (r->cap >= max_cap)
        return -EMSGSIZE;
    size_t cap = r->cap ? r->cap * 2 : SCRAPE_FIRST_BUF_BYTES;
    if (cap > max_cap)
        cap = max_cap;
    char *buf = realloc(r->buf, cap);
    if (!buf)
        return -ENOMEM;
    r->buf = buf;
    r->cap = cap;
    return 0;
}

/* Send the request on fd, then read the whole response into r; 0 or -errno. */
static int scrape_exchange(int fd, const char *request, size_t request_len, uint64_t deadline_ms,
                           int cancel_fd, struct scrape_response *r)
{
    size_t sent = 0;
    while (sent < request_len) {
        ssize_t n = send(fd, request + sent, request_len - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        int rc = scrape_wait(fd, POLLOUT, deadline_ms, cancel_fd);
        if (rc < 0)
            return rc;
    }
    for (;;) {
        int rc = scrape_grow(r);
        if (rc < 0)
            return rc;
        ssize_t n = recv(fd, r->buf + r->len, r->cap - 1 - r->len, 0);
        if (n > 0) {
            if (r->len == 0)
                r->first_byte_us = clock_now_us();
            r->len += (size_t)n;
        } else if (n == 0) {
            return 0;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            rc = scrape_wait(fd, POLLIN, deadline_ms, cancel_fd);
            if (rc < 0)
                return rc;
        } else if (errno != EINTR) {
            return -errno;
        }
    }
}

/* Say what went wrong in r->error; returns rc. */
__attribute__((format(printf, 3, 4))) static int scrape_fail(struct scrape_response *r, int rc,
                                                             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
    return rc;
}

int scrape_fetch(struct client_target *t, const char *path, int cancel_fd,
                 struct scrape_response *r)
{
    uint64_t deadline_ms = clock_now_ms() + (uint64_t)t->timeout_ms;
    r->len = 0;
    r->status = 0;
    r->body = NULL;
    r->body_len = 0;
    r->error[0] = '\0';
    int fd = scrape_connect(t, deadline_ms, cancel_fd);
    if (fd == -ETIMEDOUT)
        return scrape_fail(r, fd, "cannot connect to %s within %d ms (-T)", t->name, t->timeout_ms);
    if (fd < 0)
        return scrape_fail(r, fd, "cannot connect to %s", t->name);
    char request[CLIENT_NAME_SIZE + 256];
    int request_len = snprintf(request, sizeof(request),
                               "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: echod-cli/%s\r\n"
                               "Accept: text/plain;version=0.0.4\r\nConnection: close\r\n\r\n",
                               path, t->name, PACKAGE_VERSION);
    int rc = -ENAMETOOLONG;
    if (request_len > 0 && (size_t)request_len < sizeof(request))
        rc = scrape_exchange(fd, request, (size_t)request_len, deadline_ms, cancel_fd, r);
    close(fd);
    if (r->buf)
        r->buf[r->len] = '\0';
    switch (rc) {
    case 0:
        break;
    case -ECANCELED:
        return rc;
    case -ETIMEDOUT:
        return scrape_fail(r, rc, "no complete response from %s within %d ms (-T)", t->name,
                           t->timeout_ms);
    case -EMSGSIZE:
        return scrape_fail(r, rc, "the response from http://%s%s is over %u bytes", t->name, path,
                           SCRAPE_MAX_RESPONSE_BYTES);
    case -ECONNRESET:
    case -EPIPE:
        return scrape_fail(r, -ECONNRESET, "%s reset the connection", t->name);
    default:
        return scrape_fail(r, rc, "talking to %s", t->name);
    }
    if (r->len == 0)
        return scrape_fail(r, -ECONNABORTED, "%s closed the connection without a response",
                           t->name);
    rc = scrape_parse_response(r);
    if (rc < 0) {
        char why[SCRAPE_ERROR_SIZE];
        snprintf(why, sizeof(why), "%s", r->error);
        return scrape_fail(r, rc, "bad response from http://%s%s: %s", t->name, path, why);
    }
    return 0;
}

/* Quote up to SCRAPE_QUOTE_CHARS bytes of text, with what is not printable as '.'. */
static void scrape_quote(const char *text, size_t len, char *out, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < len && i < SCRAPE_QUOTE_CHARS && n + 1 < size; i++, n++)
        out[n] = text[i] >= 0x20 && text[i] < 0x7f ? text[i] : '.';
    if (size > 0)
        out[n] = '\0';
}

/* Whether line[0..len) is the header `name` (case-insensitive, with its ':'); *value
 * then points past the colon and the blanks after it. */
static bool scrape_is_header(const char *line, size_t len, const char *name, const char **value)
{
    size_t name_len = strlen(name);
    if (len <= name_len || line[name_len] != ':' || strncasecmp(line, name, name_len) != 0)
        return false;
    const char *v = line + name_len + 1;
    while (v < line + len && (*v == ' ' || *v == '\t'))
        v++;
    *value = v;
    return true;
}

int scrape_parse_response(struct scrape_response *r)
{
    const char *p = r->buf, *end = r->buf + r->len;
    r->status = 0;
    r->body = NULL;
    r->body_len = 0;
    char quoted[SCRAPE_QUOTE_CHARS + 1];
    const char *eol = memchr(p, '\n', r->len);
    bool is_http = eol && r->len >= 12 && memcmp(p, "HTTP/1.", 7) == 0 && p[7] >= '0' &&
                   p[7] <= '9' && p[8] == ' ';
    for (int i = 9; is_http && i < 12; i++)
        is_http = p[i] >= '0' && p[i] <= '9';
    if (!is_http || (p[12] != ' ' && p[12] != '\r' && p[12] != '\n')) {
        scrape_quote(p, r->len, quoted, sizeof(quoted));
        return scrape_fail(r, -EPROTO, "not an HTTP response (it begins \"%s\")", quoted);
    }
    r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (r->status != 200) {
        const char *reason = p + 12 + (p[12] == ' ');
        size_t reason_len = (size_t)(eol - reason);
        if (reason_len > 0 && reason[reason_len - 1] == '\r')
            reason_len--;
        scrape_quote(reason, reason_len, quoted, sizeof(quoted));
        return scrape_fail(r, -EPROTO, "HTTP status %d%s%s", r->status, quoted[0] ? " " : "",
                           quoted);
    }
    long long content_length = -1;
    for (p = eol + 1;;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return scrape_fail(r, -EPROTO, "the headers never end");
        size_t line_len = (size_t)(nl - p);
        if (line_len > 0 && p[line_len - 1] == '\r')
            line_len--;
        const char *line = p, *value;
        p = nl + 1;
        if (line_len == 0)
            break;
        if (scrape_is_header(line, line_len, "Content-Length", &value)) {
            char *stop;
            content_length = strtoll(value, &stop, 10);
            if (stop == value || content_length < 0 || (stop != nl && *stop != '\r'))
                return scrape_fail(r, -EPROTO, "a bad Content-Length");
        } else if (scrape_is_header(line, line_len, "Transfer-Encoding", &value)) {
            return scrape_fail(r, -EPROTO, "a Transfer-Encoding in an HTTP/1.0 exchange");
        }
    }
    r->body = p;
    r->body_len = (size_t)(end - p);
    if (content_length >= 0 && (unsigned long long)content_length != r->body_len)
        return scrape_fail(r, -EPROTO, "a body of %zu bytes where Content-Length says %lld",
                           r->body_len, content_length);
    return 0;
}

void scrape_response_free(struct scrape_response *r)
{
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
    r->len = 0;
}
