/* fuzz_proxy: the PROXY protocol parser, fed the way a connection feeds it. The input's
 * first byte picks the accepted versions and seeds the cuts; the rest is the stream.
 * Invariants: the verdict (status, error, bytes consumed, header) is the same whether the
 * stream comes whole or in random pieces; consumed never passes the input; a v1 header
 * ends in CRLF within 107 bytes and a TCP4 one prints back to the very bytes read; a v2
 * verdict equals what a plain reference reader of the whole buffer decides (signature,
 * version, command, family, length, the TLV walk) and its addresses are the bytes sent. */
#include "config.h"

#include "fuzz.h"

#include "proxy.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const uint8_t fuzz_v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                        0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* What one run of the parser over the stream ended with. */
struct fuzz_verdict {
    enum proxy_status status;
    enum proxy_error error;
    size_t consumed;
    struct proxy_header header;
};

/* Feed data[0..len) in pieces cut by the seed (whole when seed is 0). */
static struct fuzz_verdict fuzz_run(enum proxy_accept accept, const uint8_t *data, size_t len,
                                    uint32_t seed)
{
    struct proxy_parser p;
    proxy_parser_init(&p, accept);
    struct fuzz_verdict v = {PROXY_NEED_MORE, PROXY_ERR_NONE, 0, {0}};
    size_t at = 0;
    do {
        size_t piece = len - at;
        if (seed != 0) {
            seed = seed * 1103515245u + 12345u;
            size_t cut = (seed >> 16) % 64;
            piece = piece < cut ? piece : cut;
        }
        size_t used;
        v.status = proxy_parse(&p, data + at, piece, &used);
        FUZZ_ASSERT(used <= piece);
        if (v.status == PROXY_NEED_MORE)
            FUZZ_ASSERT(used == piece);
        v.consumed += used;
        at += piece;
    } while (at < len && v.status == PROXY_NEED_MORE);
    v.error = p.error;
    FUZZ_ASSERT((v.status == PROXY_ERROR) == (v.error != PROXY_ERR_NONE));
    if (v.status == PROXY_DONE)
        v.header = p.header;
    return v;
}

static bool fuzz_same(const struct fuzz_verdict *a, const struct fuzz_verdict *b)
{
    if (a->status != b->status || a->error != b->error)
        return false;
    if (a->status == PROXY_NEED_MORE)
        return a->consumed == b->consumed;
    if (a->status == PROXY_ERROR)
        return true; /* where in the last piece it failed is the piece's business */
    return a->consumed == b->consumed && memcmp(&a->header, &b->header, sizeof(a->header)) == 0;
}

/* A reference reader of a whole v2 buffer (the signature already matched): the verdict it
 * expects, without the accepted-version rule. */
static struct fuzz_verdict fuzz_v2_reference(const uint8_t *d, size_t len)
{
    struct fuzz_verdict v = {PROXY_NEED_MORE, PROXY_ERR_NONE, len, {0}};
    if (len < 16)
        return v;
    size_t total = 16 + ((size_t)d[14] << 8 | d[15]);
    unsigned version = d[12] >> 4, command = d[12] & 15, family = d[13];
    v.status = PROXY_ERROR;
    v.error = PROXY_ERR_MALFORMED;
    if (version != 2) {
        v.error = PROXY_ERR_UNSUPPORTED;
        return v;
    }
    if (command > 1)
        return v;
    bool is_local = command == 0 || family == 0;
    size_t addr = family == 0x11 ? 12 : family == 0x21 ? 36 : 0;
    if (!is_local && (family == 0x12 || family == 0x22 || family == 0x31 || family == 0x32)) {
        v.error = PROXY_ERR_UNSUPPORTED;
        return v;
    }
    if (!is_local && (addr == 0 || total - 16 < addr))
        return v;
    if (!is_local) { /* the TLV walk over what there is */
        size_t at = 16 + addr;
        while (at < total) {
            if (at + 3 > total && len >= total)
                return v; /* half a TLV header at the end */
            if (at + 3 > len || at + 3 > total)
                break; /* not all there yet */
            size_t value = (size_t)d[at + 1] << 8 | d[at + 2];
            if (at + 3 + value > total)
                return v;
            at += 3 + value;
        }
    }
    v.error = PROXY_ERR_NONE;
    v.status = len >= total ? PROXY_DONE : PROXY_NEED_MORE;
    v.consumed = len >= total ? total : len;
    return v;
}

/* Check a v1 header against the line it was read from. */
static void fuzz_check_v1(const struct proxy_header *h, const uint8_t *d)
{
    FUZZ_ASSERT(h->header_bytes <= PROXY_V1_MAX_BYTES);
    FUZZ_ASSERT(d[h->header_bytes - 2] == '\r' && d[h->header_bytes - 1] == '\n');
    FUZZ_ASSERT(memcmp(d, "PROXY ", 6) == 0);
    if (h->is_local) {
        FUZZ_ASSERT(memcmp(d + 6, "UNKNOWN", 7) == 0);
        return;
    }
    int af = h->src.sa.sa_family;
    FUZZ_ASSERT(af == h->dst.sa.sa_family && (af == AF_INET || af == AF_INET6));
    if (af != AF_INET)
        return;
    char src[INET_ADDRSTRLEN], dst[INET_ADDRSTRLEN], line[PROXY_V1_MAX_BYTES + 1];
    inet_ntop(AF_INET, &h->src.in.sin_addr, src, sizeof(src));
    inet_ntop(AF_INET, &h->dst.in.sin_addr, dst, sizeof(dst));
    int n = snprintf(line, sizeof(line), "PROXY TCP4 %s %s %u %u\r\n", src, dst,
                     ntohs(h->src.in.sin_port), ntohs(h->dst.in.sin_port));
    FUZZ_ASSERT((size_t)n == h->header_bytes && memcmp(line, d, (size_t)n) == 0);
}

/* Check a v2 verdict against the reference, and the addresses against the bytes. */
static void fuzz_check_v2(enum proxy_accept accept, const struct fuzz_verdict *v, const uint8_t *d,
                          size_t len)
{
    size_t sig = len < 12 ? len : 12;
    if (memcmp(d, fuzz_v2_sig, sig) != 0) {
        FUZZ_ASSERT(v->status == PROXY_ERROR && v->error == PROXY_ERR_MALFORMED);
        return;
    }
    if (accept == PROXY_V1 && len >= 12) {
        FUZZ_ASSERT(v->status == PROXY_ERROR && v->error == PROXY_ERR_UNSUPPORTED);
        return;
    }
    struct fuzz_verdict want = fuzz_v2_reference(d, len);
    FUZZ_ASSERT(v->status == want.status && v->error == want.error);
    if (v->status != PROXY_DONE)
        return;
    FUZZ_ASSERT(v->consumed == want.consumed);
    if (v->header.is_local)
        return;
    const union proxy_addr *s = &v->header.src, *t = &v->header.dst;
    if (d[13] == 0x11) {
        FUZZ_ASSERT(s->sa.sa_family == AF_INET && memcmp(&s->in.sin_addr, d + 16, 4) == 0);
        FUZZ_ASSERT(memcmp(&t->in.sin_addr, d + 20, 4) == 0);
        FUZZ_ASSERT(memcmp(&s->in.sin_port, d + 24, 2) == 0);
        FUZZ_ASSERT(memcmp(&t->in.sin_port, d + 26, 2) == 0);
    } else {
        FUZZ_ASSERT(s->sa.sa_family == AF_INET6 && memcmp(&s->in6.sin6_addr, d + 16, 16) == 0);
        FUZZ_ASSERT(memcmp(&t->in6.sin6_addr, d + 32, 16) == 0);
        FUZZ_ASSERT(memcmp(&s->in6.sin6_port, d + 48, 2) == 0);
        FUZZ_ASSERT(memcmp(&t->in6.sin6_port, d + 50, 2) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum proxy_accept accept = (enum proxy_accept)(1 + data[0] % 3); /* v1, v2 or any */
    uint32_t seed = data[0] | 1u;
    const uint8_t *d = data + 1;
    size_t len = size - 1;
    struct fuzz_verdict whole = fuzz_run(accept, d, len, 0);
    struct fuzz_verdict cut = fuzz_run(accept, d, len, seed);
    FUZZ_ASSERT(fuzz_same(&whole, &cut));
    FUZZ_ASSERT(whole.consumed <= len);
    if (whole.status == PROXY_DONE)
        FUZZ_ASSERT(whole.header.header_bytes == whole.consumed);
    if (whole.error == PROXY_ERR_TOO_LONG)
        FUZZ_ASSERT(d[0] == 'P' && whole.consumed == PROXY_V1_MAX_BYTES + 1);
    if (len == 0)
        FUZZ_ASSERT(whole.status == PROXY_NEED_MORE);
    else if (d[0] == 'P' && whole.status == PROXY_DONE)
        fuzz_check_v1(&whole.header, d);
    else if (d[0] == 0x0d)
        fuzz_check_v2(accept, &whole, d, len);
    else if (d[0] != 'P')
        FUZZ_ASSERT(whole.status == PROXY_ERROR && whole.error == PROXY_ERR_MALFORMED);
    return 0;
}
