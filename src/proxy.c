/* proxy: reads the PROXY protocol header (HAProxy's specification, versions 1 and 2) one
 * piece at a time, and matches client addresses against tcp.proxy_from. Pure functions
 * on caller-owned structs; any thread.
 *
 * DESIGN. The parser is a byte-driven state machine that never looks back further than
 * its own small buffer: the v1 line (at most 107 bytes) or the v2 fixed part and
 * addresses (at most 52 bytes) are copied in, while v2 TLVs are only framed and skipped,
 * however long, so a header of any split costs the same and nothing is allocated. It
 * fails as early as the bytes allow: a client that is no balancer is told on its first
 * byte that does not fit, not at the deadline. The first byte picks the version ('P' or
 * CR); a header of the version tcp.proxy_protocol does not accept is "unsupported" once
 * its signature is complete. v2 AF_UNIX is refused as unsupported: such a client has no
 * network address for the limits and logs to use. */
#include "config.h"

#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

static const uint8_t proxy_v2_signature[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                               0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char proxy_v1_prefix[] = "PROXY ";
#define PROXY_V1_PREFIX_BYTES 6

/* v2's family and transport byte, for the families echod serves. */
#define PROXY_V2_TCP4 0x11
#define PROXY_V2_TCP6 0x21
/* v2's address block for each: two addresses and two ports. */
#define PROXY_V2_TCP4_BYTES 12
#define PROXY_V2_TCP6_BYTES 36

void proxy_parser_init(struct proxy_parser *p, enum proxy_accept accept)
{
    memset(p, 0, sizeof(*p));
    p->accept = accept;
}

/* Stop with error e; returns PROXY_ERROR. */
static enum proxy_status proxy_fail(struct proxy_parser *p, enum proxy_error e)
{
    p->error = e;
    return PROXY_ERROR;
}

/* The header is complete: total bytes so far. */
static enum proxy_status proxy_finish(struct proxy_parser *p)
{
    p->is_done = true;
    p->header.header_bytes = p->total;
    return PROXY_DONE;
}

/* A decimal port, 0..65535, without sign or leading zero; 0 or -EINVAL. */
static int proxy_v1_port(const char *text, uint16_t *out)
{
    size_t n = strlen(text);
    if (n == 0 || n > 5 || (n > 1 && text[0] == '0') || strspn(text, "0123456789") != n)
        return -EINVAL;
    unsigned long v = strtoul(text, NULL, 10);
    if (v > 65535)
        return -EINVAL;
    *out = (uint16_t)v;
    return 0;
}

/* addr:port from v1 text into a, of family af; 0 or -EINVAL. */
static int proxy_v1_addr(int af, const char *addr, const char *port, union proxy_addr *a)
{
    uint16_t p;
    memset(a, 0, sizeof(*a));
    if (proxy_v1_port(port, &p) < 0)
        return -EINVAL;
    a->sa.sa_family = (sa_family_t)af;
    if (af == AF_INET) {
        a->in.sin_port = htons(p);
        return inet_pton(AF_INET, addr, &a->in.sin_addr) == 1 ? 0 : -EINVAL;
    }
    a->in6.sin6_port = htons(p);
    return inet_pton(AF_INET6, addr, &a->in6.sin6_addr) == 1 ? 0 : -EINVAL;
}

/* The complete v1 line in p->buf (CRLF included): "PROXY TCP4 SRC DST SPORT DPORT",
 * "PROXY TCP6 ..." or "PROXY UNKNOWN" followed by anything. */
static enum proxy_status proxy_v1_line(struct proxy_parser *p)
{
    char line[PROXY_V1_MAX_BYTES];
    size_t len = p->have - 2;
    memcpy(line, p->buf, len);
    line[len] = '\0';
    char *field[7];
    size_t n = 0;
    for (char *at = line; n < 7; n++) {
        field[n] = at;
        char *space = strchr(at, ' ');
        if (space == NULL) {
            n++;
            break;
        }
        *space = '\0';
        at = space + 1;
    }
    if (n >= 2 && strcmp(field[1], "UNKNOWN") == 0) {
        p->header.is_local = true;
        return proxy_finish(p);
    }
    int af = n >= 2 && strcmp(field[1], "TCP4") == 0   ? AF_INET
             : n >= 2 && strcmp(field[1], "TCP6") == 0 ? AF_INET6
                                                       : AF_UNSPEC;
    if (af == AF_UNSPEC || n != 6 || proxy_v1_addr(af, field[2], field[4], &p->header.src) < 0 ||
        proxy_v1_addr(af, field[3], field[5], &p->header.dst) < 0)
        return proxy_fail(p, PROXY_ERR_MALFORMED);
    return proxy_finish(p);
}

/* One byte of a v1 header (after the version was chosen). */
static enum proxy_status proxy_v1_byte(struct proxy_parser *p, uint8_t b)
{
    if (p->have == PROXY_V1_MAX_BYTES)
        return proxy_fail(p, PROXY_ERR_TOO_LONG);
    bool is_after_cr = p->have > 0 && p->buf[p->have - 1] == '\r';
    p->buf[p->have++] = b;
    p->total++;
    if (p->have <= PROXY_V1_PREFIX_BYTES) {
        if (b != (uint8_t)proxy_v1_prefix[p->have - 1])
            return proxy_fail(p, PROXY_ERR_MALFORMED);
        if (p->have == PROXY_V1_PREFIX_BYTES && p->accept == PROXY_V2)
            return proxy_fail(p, PROXY_ERR_UNSUPPORTED);
        return PROXY_NEED_MORE;
    }
    if (is_after_cr != (b == '\n') || b == '\0')   /* CR only before LF, LF only after CR */
        return proxy_fail(p, PROXY_ERR_MALFORMED); /* and no NUL, which would end a field */
    return b == '\n' ? proxy_v1_line(p) : PROXY_NEED_MORE;
}

/* The v2 fixed part is in p->buf: check version, command and family, and plan the rest. */
static enum proxy_status proxy_v2_fixed(struct proxy_parser *p)
{
    unsigned version = p->buf[12] >> 4, command = p->buf[12] & 0x0f;
    unsigned family = p->buf[13];
    size_t len = (size_t)p->buf[14] << 8 | p->buf[15];
    if (version != 2)
        return proxy_fail(p, PROXY_ERR_UNSUPPORTED);
    if (command > 1)
        return proxy_fail(p, PROXY_ERR_MALFORMED);
    p->v2_end = PROXY_V2_HEADER_BYTES + len;
    size_t addr_bytes = 0;
    if (command == 0 || family == 0x00) { /* LOCAL, or PROXY for an unspecified protocol */
        p->header.is_local = true;
        p->is_skipping_raw = true;
    } else if (family == PROXY_V2_TCP4 || family == PROXY_V2_TCP6) {
        addr_bytes = family == PROXY_V2_TCP4 ? PROXY_V2_TCP4_BYTES : PROXY_V2_TCP6_BYTES;
    } else if (family == 0x12 || family == 0x22 || family == 0x31 || family == 0x32) {
        return proxy_fail(p, PROXY_ERR_UNSUPPORTED); /* UDP, AF_UNIX */
    } else {
        return proxy_fail(p, PROXY_ERR_MALFORMED); /* no such family and transport */
    }
    if (len < addr_bytes)
        return proxy_fail(p, PROXY_ERR_MALFORMED);
    p->v2_addr_end = PROXY_V2_HEADER_BYTES + addr_bytes;
    return p->total == p->v2_end ? proxy_finish(p) : PROXY_NEED_MORE;
}

/* The v2 addresses are in p->buf after the fixed part. */
static void proxy_v2_addresses(struct proxy_parser *p)
{
    const uint8_t *a = p->buf + PROXY_V2_HEADER_BYTES;
    union proxy_addr *src = &p->header.src, *dst = &p->header.dst;
    memset(src, 0, sizeof(*src));
    memset(dst, 0, sizeof(*dst));
    if (p->buf[13] == PROXY_V2_TCP4) {
        src->in.sin_family = dst->in.sin_family = AF_INET;
        memcpy(&src->in.sin_addr, a, 4);
        memcpy(&dst->in.sin_addr, a + 4, 4);
        memcpy(&src->in.sin_port, a + 8, 2); /* both in network order already */
        memcpy(&dst->in.sin_port, a + 10, 2);
    } else {
        src->in6.sin6_family = dst->in6.sin6_family = AF_INET6;
        memcpy(&src->in6.sin6_addr, a, 16);
        memcpy(&dst->in6.sin6_addr, a + 16, 16);
        memcpy(&src->in6.sin6_port, a + 32, 2);
        memcpy(&dst->in6.sin6_port, a + 34, 2);
    }
}

/* Skip up to len bytes the header ignores (a TLV's value, or everything after a LOCAL
 * fixed part); how many. */
static size_t proxy_v2_skip(struct proxy_parser *p, size_t want, size_t len)
{
    size_t n = want < len ? want : len;
    p->total += n;
    return n;
}

/* Feed v2 bytes; the signature has not necessarily been seen yet. */
static enum proxy_status proxy_v2_feed(struct proxy_parser *p, const uint8_t *data, size_t len,
                                       size_t *used)
{
    size_t i = 0;
    enum proxy_status st = PROXY_NEED_MORE;
    while (i < len && st == PROXY_NEED_MORE) {
        if (p->total < p->v2_addr_end || p->total < PROXY_V2_HEADER_BYTES) {
            uint8_t b = data[i++];
            p->buf[p->have++] = b;
            p->total++;
            if (p->total <= sizeof(proxy_v2_signature) && b != proxy_v2_signature[p->total - 1])
                st = proxy_fail(p, PROXY_ERR_MALFORMED);
            else if (p->total == sizeof(proxy_v2_signature) && p->accept == PROXY_V1)
                st = proxy_fail(p, PROXY_ERR_UNSUPPORTED);
            else if (p->total == PROXY_V2_HEADER_BYTES)
                st = proxy_v2_fixed(p);
            else if (p->total > PROXY_V2_HEADER_BYTES && p->total == p->v2_addr_end)
                proxy_v2_addresses(p);
            if (st == PROXY_NEED_MORE && p->total == p->v2_end && p->total > PROXY_V2_HEADER_BYTES)
                st = proxy_finish(p); /* addresses and no TLV */
            continue;
        }
        size_t left = p->v2_end - p->total;
        if (p->is_skipping_raw) {
            i += proxy_v2_skip(p, left, len - i);
        } else if (p->tlv_skip > 0) {
            size_t n = proxy_v2_skip(p, p->tlv_skip, len - i);
            p->tlv_skip -= n;
            i += n;
        } else {
            p->tlv[p->tlv_have++] = data[i++];
            p->total++;
            if (p->tlv_have == 3) { /* type, length high, length low */
                p->tlv_skip = (size_t)p->tlv[1] << 8 | p->tlv[2];
                p->tlv_have = 0;
                if (p->tlv_skip > left - 1)
                    st = proxy_fail(p, PROXY_ERR_MALFORMED); /* runs past the header */
            }
        }
        if (st == PROXY_NEED_MORE && p->total == p->v2_end)
            st = p->tlv_have != 0 ? proxy_fail(p, PROXY_ERR_MALFORMED) : proxy_finish(p);
    }
    *used = i;
    return st;
}

enum proxy_status proxy_parse(struct proxy_parser *p, const uint8_t *data, size_t len,
                              size_t *consumed)
{
    *consumed = 0;
    if (p->error != PROXY_ERR_NONE)
        return PROXY_ERROR;
    if (p->is_done)
        return PROXY_DONE;
    if (len == 0)
        return PROXY_NEED_MORE;
    if (p->version == 0) {
        if (data[0] == (uint8_t)proxy_v1_prefix[0])
            p->version = 1;
        else if (data[0] == proxy_v2_signature[0])
            p->version = 2;
        else {
            *consumed = 1;
            return proxy_fail(p, PROXY_ERR_MALFORMED);
        }
        p->header.version = p->version;
    }
    if (p->version == 2)
        return proxy_v2_feed(p, data, len, consumed);
    enum proxy_status st = PROXY_NEED_MORE;
    size_t i = 0;
    while (i < len && st == PROXY_NEED_MORE)
        st = proxy_v1_byte(p, data[i++]);
    *consumed = i;
    return st;
}

const char *proxy_error_name(enum proxy_error e)
{
    switch (e) {
    case PROXY_ERR_MALFORMED:
        return "malformed";
    case PROXY_ERR_UNSUPPORTED:
        return "unsupported";
    case PROXY_ERR_TOO_LONG:
        return "too long";
    case PROXY_ERR_NONE:
        break;
    }
    return "none";
}

static const char *const proxy_accept_names[] = {"off", "v1", "v2", "any"};

int proxy_accept_parse(const char *name, enum proxy_accept *out)
{
    for (size_t i = 0; i < sizeof(proxy_accept_names) / sizeof(proxy_accept_names[0]); i++) {
        if (strcmp(name, proxy_accept_names[i]) == 0) {
            *out = (enum proxy_accept)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *proxy_accept_name(enum proxy_accept a)
{
    return proxy_accept_names[a];
}

/* Whether a and b agree on their first bits bits. */
static bool proxy_prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return rest == 0 || ((a[whole] ^ b[whole]) & mask) == 0;
}

int proxy_net_parse(const char *text, struct proxy_net *out)
{
    char addr[INET6_ADDRSTRLEN];
    const char *slash = strchr(text, '/');
    size_t len = slash ? (size_t)(slash - text) : strlen(text);
    if (len == 0 || len >= sizeof(addr))
        return -EINVAL;
    memcpy(addr, text, len);
    addr[len] = '\0';
    memset(out, 0, sizeof(*out));
    bool is_v4 = strchr(addr, ':') == NULL;
    union proxy_addr a;
    memset(&a, 0, sizeof(a));
    a.sa.sa_family = is_v4 ? AF_INET : AF_INET6;
    if (inet_pton(a.sa.sa_family, addr,
                  is_v4 ? (void *)&a.in.sin_addr : (void *)&a.in6.sin6_addr) != 1)
        return -EINVAL;
    unsigned max = is_v4 ? 32 : 128, bits = max;
    if (slash != NULL) {
        const char *digits = slash + 1;
        size_t n = strlen(digits);
        if (n == 0 || n > 3 || strspn(digits, "0123456789") != n || (n > 1 && digits[0] == '0'))
            return -EINVAL;
        bits = (unsigned)strtoul(digits, NULL, 10);
        if (bits > max)
            return -EINVAL;
    }
    addr_ip16(&a.sa, out->addr);
    out->prefix_bits = bits + (is_v4 ? 96 : 0);
    uint8_t masked[16];
    memcpy(masked, out->addr, sizeof(masked));
    for (unsigned i = out->prefix_bits; i < 128; i++)
        masked[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
    return memcmp(masked, out->addr, 16) == 0 ? 0 : -EINVAL; /* host bits set: a typo */
}

bool proxy_net_contains(const struct proxy_net *nets, size_t count, const struct sockaddr *sa)
{
    uint8_t a[16];
    if (addr_ip16(sa, a) < 0)
        return false;
    for (size_t i = 0; i < count; i++)
        if (proxy_prefix_equal(a, nets[i].addr, nets[i].prefix_bits))
            return true;
    return false;
}
