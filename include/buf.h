/* buf: a fixed-capacity byte ring and a per-thread free list of them.
 * A buf belongs to one connection or one thread's scratch space; a buf_pool to one
 * worker thread. Neither locks: only the owning thread touches them. */
#ifndef ECHOD_BUF_H
#define ECHOD_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct buf {
    uint8_t *data;
    size_t cap;  /* bytes data holds */
    size_t head; /* offset of the first pending byte */
    size_t len;  /* pending bytes, from head, wrapping at cap */
};

/* Free bytes. */
static inline size_t buf_space(const struct buf *b)
{
    return b->cap - b->len;
}

/* Empty the ring and rewind it so the next append is contiguous from data[0]. */
static inline void buf_reset(struct buf *b)
{
    b->head = 0;
    b->len = 0;
}

/* Copy n bytes (n <= buf_space) after the pending ones. */
void buf_append(struct buf *b, const void *src, size_t n);
/* Describe the pending bytes as up to 2 iovecs; returns how many. */
int buf_pending_iov(const struct buf *b, struct iovec iov[2]);
/* Describe the free space as up to 2 iovecs; returns how many. */
int buf_free_iov(const struct buf *b, struct iovec iov[2]);
/* Drop n pending bytes from the front (after a write). */
void buf_consume(struct buf *b, size_t n);
/* Count n bytes, written into the buf_free_iov space, as pending (after a read). */
void buf_commit(struct buf *b, size_t n);
/* Make the pending bytes contiguous from data[0] (for linear parsers). */
void buf_linearize(struct buf *b);

/* A free list of equally sized bufs, so the echo path never mallocs per message. Kept
 * bufs that no get needed for a whole interval are surplus: buf_pool_trim frees them, so
 * memory a burst of clients took returns once the burst is over. */
struct buf_pool {
    size_t buf_bytes; /* capacity of every buf handed out */
    size_t max_free;  /* bufs kept for reuse; the rest are freed */
    size_t nfree;
    size_t min_free; /* the fewest kept since the last trim: bufs no get has needed */
    struct buf **free;
};

/* An empty buf of cap bytes in one allocation (free() releases it), or NULL. */
struct buf *buf_new(size_t cap);
/* 0 or -ENOMEM. */
int buf_pool_init(struct buf_pool *p, size_t buf_bytes, size_t max_free);
/* Hand out bufs of buf_bytes from now on: kept ones of another size are freed. */
void buf_pool_resize(struct buf_pool *p, size_t buf_bytes);
/* Free every kept buf. */
void buf_pool_destroy(struct buf_pool *p);
/* An empty buf of p->buf_bytes capacity, or NULL when memory is exhausted. */
struct buf *buf_pool_get(struct buf_pool *p);
/* Return b to the pool (one of another size, from buf_new or before a resize, is
 * freed); NULL is ignored. */
void buf_pool_put(struct buf_pool *p, struct buf *b);
/* Free the bufs kept since the last trim that no get needed meanwhile, and start the next
 * interval. Returns how many were freed. */
size_t buf_pool_trim(struct buf_pool *p);

#endif
