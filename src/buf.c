/* buf: fixed-capacity byte rings and per-thread pools of them.
 * Runs on whichever thread owns the buf (a worker, or the UDP thread); nothing locks.
 * Rings let a connection read into and write from its pending bytes with readv/writev
 * and never move data; pools let the echo path borrow a buffer without malloc. */
#include "config.h"

#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Offset of the first free byte. */
static size_t buf_tail(const struct buf *b)
{
    size_t t = b->head + b->len;
    return t >= b->cap ? t - b->cap : t;
}

void buf_append(struct buf *b, const void *src, size_t n)
{
    size_t tail = buf_tail(b);
    size_t first = b->cap - tail < n ? b->cap - tail : n;
    memcpy(b->data + tail, src, first);
    memcpy(b->data, (const uint8_t *)src + first, n - first);
    b->len += n;
}

int buf_pending_iov(const struct buf *b, struct iovec iov[2])
{
    if (b->len == 0)
        return 0;
    size_t first = b->cap - b->head < b->len ? b->cap - b->head : b->len;
    iov[0].iov_base = b->data + b->head;
    iov[0].iov_len = first;
    if (first == b->len)
        return 1;
    iov[1].iov_base = b->data;
    iov[1].iov_len = b->len - first;
    return 2;
}

int buf_free_iov(const struct buf *b, struct iovec iov[2])
{
    size_t space = buf_space(b);
    if (space == 0)
        return 0;
    size_t tail = buf_tail(b);
    size_t first = b->cap - tail < space ? b->cap - tail : space;
    iov[0].iov_base = b->data + tail;
    iov[0].iov_len = first;
    if (first == space)
        return 1;
    iov[1].iov_base = b->data;
    iov[1].iov_len = space - first;
    return 2;
}

void buf_consume(struct buf *b, size_t n)
{
    b->len -= n;
    b->head = b->len == 0 ? 0 : (b->head + n) % b->cap;
}

void buf_commit(struct buf *b, size_t n)
{
    b->len += n;
}

void buf_linearize(struct buf *b)
{
    if (b->head == 0)
        return;
    if (b->head + b->len <= b->cap) {
        memmove(b->data, b->data + b->head, b->len);
    } else {
        /* Wrapped: rotate the whole ring left by head (three reversals, no extra memory). */
        size_t h = b->head;
        uint8_t *d = b->data;
        for (size_t i = 0, j = h - 1; i < j; i++, j--) {
            uint8_t t = d[i];
            d[i] = d[j];
            d[j] = t;
        }
        for (size_t i = h, j = b->cap - 1; i < j; i++, j--) {
            uint8_t t = d[i];
            d[i] = d[j];
            d[j] = t;
        }
        for (size_t i = 0, j = b->cap - 1; i < j; i++, j--) {
            uint8_t t = d[i];
            d[i] = d[j];
            d[j] = t;
        }
    }
    b->head = 0;
}

struct buf *buf_new(size_t cap)
{
    /* One allocation: the header, then the bytes. */
    struct buf *b = malloc(sizeof(*b) + cap);
    if (b == NULL)
        return NULL;
    b->data = (uint8_t *)(b + 1);
    b->cap = cap;
    buf_reset(b);
    return b;
}

int buf_pool_init(struct buf_pool *p, size_t buf_bytes, size_t max_free)
{
    p->buf_bytes = buf_bytes;
    p->max_free = max_free;
    p->nfree = 0;
    p->min_free = 0;
    p->free = calloc(max_free ? max_free : 1, sizeof(*p->free));
    return p->free ? 0 : -ENOMEM;
}

void buf_pool_destroy(struct buf_pool *p)
{
    while (p->nfree > 0)
        free(p->free[--p->nfree]);
    free(p->free);
    p->free = NULL;
}

struct buf *buf_pool_get(struct buf_pool *p)
{
    struct buf *b;
    if (p->nfree > 0) {
        b = p->free[--p->nfree];
        if (p->nfree < p->min_free)
            p->min_free = p->nfree;
    } else if ((b = buf_new(p->buf_bytes)) == NULL) {
        return NULL;
    }
    buf_reset(b);
    return b;
}

void buf_pool_resize(struct buf_pool *p, size_t buf_bytes)
{
    if (p->buf_bytes == buf_bytes)
        return;
    while (p->nfree > 0)
        free(p->free[--p->nfree]);
    p->min_free = 0;
    p->buf_bytes = buf_bytes;
}

void buf_pool_put(struct buf_pool *p, struct buf *b)
{
    if (b == NULL)
        return;
    if (b->cap == p->buf_bytes && p->nfree < p->max_free)
        p->free[p->nfree++] = b;
    else
        free(b);
}

size_t buf_pool_trim(struct buf_pool *p)
{
    /* The bottom min_free entries sat in the list for the whole interval: free those. */
    size_t surplus = p->min_free;
    for (size_t i = 0; i < surplus; i++)
        free(p->free[i]);
    memmove(p->free, p->free + surplus, (p->nfree - surplus) * sizeof(*p->free));
    p->nfree -= surplus;
    p->min_free = p->nfree;
    return surplus;
}
