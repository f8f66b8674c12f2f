/* fuzz_proto: the greet-mode line framer, proto_greet_frame, driven the way a connection
 * drives it. The input picks the greeting, max_line_bytes, the output ring's size, where
 * the stream is cut into reads and how much of the output each write drains; the rest is
 * the stream. Invariants: consumed <= len; replies fit the ring (which is allocated to its
 * exact size, so ASan sees any overflow); each status is true of the input it stopped at;
 * and the bytes written equal what a plain reference framer answers for the whole stream. */
#include "config.h"

#include "fuzz.h"

#include "proto.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* An ASCII and a UTF-8 greeting; the input chooses a prefix of one of them. */
static const char *const fuzz_greetings[] = {"Hello, ", "\xe4\xbd\xa0\xe5\xa5\xbd\x2c\x20"};

/* The input's 5-byte header, then the stream. */
struct fuzz_plan {
    struct proto_greet g;
    size_t out_cap;
    uint32_t rng; /* cuts reads and drains */
};

/* A small deterministic generator: the input's seed decides every cut. */
static size_t fuzz_next(struct fuzz_plan *p, size_t bound)
{
    p->rng = p->rng * 1103515245u + 12345u;
    return bound == 0 ? 0 : (p->rng >> 16) % bound;
}

/* What the greet framer must answer for the whole stream: greeting + line for each
 * '\n'-terminated line, greeting + rest + '\n' for a non-empty tail, stopping before the
 * first line longer than max_line_bytes. Returns the reply's length; *too_long says
 * whether such a line stopped it. */
static size_t fuzz_reference(const struct proto_greet *g, const uint8_t *in, size_t len, char *out,
                             bool *too_long)
{
    size_t n = 0;
    *too_long = false;
    for (size_t start = 0; start < len;) {
        size_t end = start;
        while (end < len && in[end] != '\n')
            end++;
        if (end - start > g->max_line_bytes) {
            *too_long = true;
            break;
        }
        memcpy(out + n, g->greeting, g->greeting_len);
        n += g->greeting_len;
        memcpy(out + n, in + start, end - start);
        n += end - start;
        out[n++] = '\n';
        start = end + 1;
    }
    return n;
}

/* Move up to max pending bytes of out to the end of sent (of *sent_len bytes). */
static void fuzz_drain(struct buf *out, size_t max, char *sent, size_t *sent_len)
{
    struct iovec iov[2];
    int n = buf_pending_iov(out, iov);
    size_t moved = 0;
    for (int i = 0; i < n && moved < max; i++) {
        size_t take = iov[i].iov_len < max - moved ? iov[i].iov_len : max - moved;
        memcpy(sent + *sent_len + moved, iov[i].iov_base, take);
        moved += take;
    }
    buf_consume(out, moved);
    *sent_len += moved;
}

/* Check what a stop with `status` after `consumed` of pending[0..len) claims. */
static void fuzz_check_status(const struct fuzz_plan *p, enum proto_status status,
                              const uint8_t *pending, size_t len, size_t consumed, bool at_eof,
                              const struct buf *out)
{
    const uint8_t *rest = pending + consumed;
    size_t rest_len = len - consumed;
    const uint8_t *nl = memchr(rest, '\n', rest_len);
    size_t content = nl ? (size_t)(nl - rest) : rest_len;
    FUZZ_ASSERT(consumed <= len);
    FUZZ_ASSERT(out->len <= out->cap);
    switch (status) {
    case PROTO_NEED_MORE: /* only a partial line is left, and not at EOF */
        FUZZ_ASSERT(nl == NULL && content <= p->g.max_line_bytes);
        FUZZ_ASSERT(!at_eof || rest_len == 0);
        break;
    case PROTO_OUT_FULL: /* the next reply really does not fit */
        FUZZ_ASSERT(rest_len > 0 && content <= p->g.max_line_bytes);
        FUZZ_ASSERT(nl != NULL || at_eof);
        FUZZ_ASSERT(buf_space(out) < p->g.greeting_len + content + 1);
        break;
    case PROTO_LINE_TOO_LONG:
        FUZZ_ASSERT(content > p->g.max_line_bytes);
        break;
    default:
        FUZZ_ASSERT(!"a status proto.h does not define");
    }
}

/* Read the 5-byte header; false when the input is shorter. */
static bool fuzz_plan_read(const uint8_t *data, size_t size, struct fuzz_plan *p)
{
    if (size < 5)
        return false;
    const char *greeting = fuzz_greetings[data[0] & 1];
    p->g.greeting = greeting;
    p->g.greeting_len = (size_t)(data[0] >> 1) % (strlen(greeting) + 1);
    p->g.max_line_bytes = 1 + data[1] % 64;
    /* conf.c guarantees room for the longest reply: greeting + max_line_bytes + '\n'. */
    p->out_cap = p->g.greeting_len + p->g.max_line_bytes + 1 + data[2] % 64;
    p->rng = (uint32_t)data[3] << 8 | data[4];
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_plan p;
    if (!fuzz_plan_read(data, size, &p))
        return 0;
    const uint8_t *stream = data + 5;
    size_t stream_len = size - 5;
    /* Every line can grow by the greeting and a '\n'. */
    size_t reply_max = stream_len * (p.g.greeting_len + 2) + 1;
    uint8_t *pending = malloc(stream_len + 1);
    char *sent = malloc(reply_max), *expected = malloc(reply_max);
    struct buf out = {.data = malloc(p.out_cap), .cap = p.out_cap, .head = 0, .len = 0};
    if (!pending || !sent || !expected || !out.data)
        goto done;

    size_t delivered = 0, pending_len = 0, sent_len = 0;
    bool too_long = false;
    for (;;) {
        size_t chunk = 1 + fuzz_next(&p, 2 * p.g.max_line_bytes + 8);
        if (chunk > stream_len - delivered)
            chunk = stream_len - delivered;
        memcpy(pending + pending_len, stream + delivered, chunk);
        pending_len += chunk;
        delivered += chunk;
        bool at_eof = delivered == stream_len;
        size_t consumed;
        size_t before = out.len;
        enum proto_status status =
            proto_greet_frame(&p.g, (const char *)pending, pending_len, at_eof, &out, &consumed);
        fuzz_check_status(&p, status, pending, pending_len, consumed, at_eof, &out);
        /* Nothing consumed, nothing written; something consumed, something written. */
        FUZZ_ASSERT((consumed == 0) == (out.len == before));
        memmove(pending, pending + consumed, pending_len - consumed);
        pending_len -= consumed;
        if (status == PROTO_LINE_TOO_LONG) {
            too_long = true;
            break;
        }
        if (status == PROTO_OUT_FULL) {
            /* A writer drains some of the output (at least a byte, so this ends); then
             * the rest is framed again, with whatever the next read brings. */
            fuzz_drain(&out, 1 + fuzz_next(&p, out.len), sent, &sent_len);
        } else {
            fuzz_drain(&out, fuzz_next(&p, out.len + 1), sent, &sent_len);
            if (at_eof)
                break;
        }
    }
    fuzz_drain(&out, out.len, sent, &sent_len);

    bool ref_too_long;
    size_t expected_len = fuzz_reference(&p.g, stream, stream_len, expected, &ref_too_long);
    FUZZ_ASSERT(too_long == ref_too_long);
    FUZZ_ASSERT(sent_len == expected_len);
    FUZZ_ASSERT(memcmp(sent, expected, sent_len) == 0);
done:
    free(pending);
    free(sent);
    free(expected);
    free(out.data);
    return 0;
}
