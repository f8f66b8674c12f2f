/* test_buf: the byte ring and its pool. Append, consume and commit across the wrap
 * point; the pending and free iovecs (one or two, exact bases and lengths); linearize
 * when the pending bytes are contiguous and when they wrap; a randomized run against a
 * flat reference model; and the pool: bufs are reused (same pointer back), come back
 * empty, have the pool's capacity, at most max_free are kept, and a trim frees those
 * no get needed for a whole interval. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "buf.h"

#include <stdlib.h>
#include <string.h>

#define RING_CAP 16

static uint8_t storage[RING_CAP];

/* A ring over `storage` with head at `head`, empty, and the storage poisoned. */
static struct buf ring_at(size_t head)
{
    memset(storage, '.', sizeof(storage));
    struct buf b = {.data = storage, .cap = RING_CAP, .head = head, .len = 0};
    return b;
}

/* Gather the pending bytes through buf_pending_iov into out; returns how many. */
static size_t ring_read(const struct buf *b, uint8_t *out)
{
    struct iovec iov[2];
    int n = buf_pending_iov(b, iov);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        memcpy(out + total, iov[i].iov_base, iov[i].iov_len);
        total += iov[i].iov_len;
    }
    assert_int_equal(total, b->len);
    return total;
}

/* The pending bytes must be exactly want[0..n). */
static void check_pending(const struct buf *b, const char *want)
{
    uint8_t got[RING_CAP];
    size_t n = ring_read(b, got);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(got, want, n);
}

/* One iovec as (offset into storage, length). */
static void check_iov(const struct iovec *iov, size_t offset, size_t len)
{
    assert_ptr_equal(iov->iov_base, storage + offset);
    assert_int_equal(iov->iov_len, len);
}

static void test_append_consume_no_wrap(void **state)
{
    (void)state;
    struct buf b = ring_at(0);
    assert_int_equal(buf_space(&b), RING_CAP);
    buf_append(&b, "hello", 5);
    assert_int_equal(b.len, 5);
    assert_int_equal(buf_space(&b), RING_CAP - 5);
    assert_memory_equal(storage, "hello.", 6);
    check_pending(&b, "hello");

    buf_consume(&b, 2);
    assert_int_equal(b.head, 2);
    check_pending(&b, "llo");

    /* Consuming the rest rewinds to 0 so the next append is contiguous. */
    buf_consume(&b, 3);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.head, 0);
}

static void test_append_wraps(void **state)
{
    (void)state;
    struct buf b = ring_at(12);
    buf_append(&b, "abcdefg", 7);
    assert_int_equal(b.head, 12);
    assert_int_equal(b.len, 7);
    assert_memory_equal(storage + 12, "abcd", 4);
    assert_memory_equal(storage, "efg.", 4);
    check_pending(&b, "abcdefg");

    /* Consume across the wrap point: head moves to the start of the storage. */
    buf_consume(&b, 5);
    assert_int_equal(b.head, 1);
    check_pending(&b, "fg");
}

/* Fill to exactly the capacity starting mid-ring: space 0, and no free iovec. */
static void test_append_fills_exactly(void **state)
{
    (void)state;
    struct buf b = ring_at(5);
    buf_append(&b, "0123456789abcdef", RING_CAP);
    assert_int_equal(buf_space(&b), 0);
    check_pending(&b, "0123456789abcdef");
    struct iovec iov[2];
    assert_int_equal(buf_free_iov(&b, iov), 0);
    assert_int_equal(buf_pending_iov(&b, iov), 2);
    check_iov(&iov[0], 5, RING_CAP - 5);
    check_iov(&iov[1], 0, 5);
}

static void test_pending_iov_shapes(void **state)
{
    (void)state;
    struct iovec iov[2];
    struct buf b = ring_at(0);
    assert_int_equal(buf_pending_iov(&b, iov), 0);

    b = ring_at(3);
    buf_append(&b, "xyz", 3);
    assert_int_equal(buf_pending_iov(&b, iov), 1);
    check_iov(&iov[0], 3, 3);

    /* Ending exactly at the end of the storage is still one iovec. */
    b = ring_at(10);
    buf_append(&b, "123456", 6);
    assert_int_equal(buf_pending_iov(&b, iov), 1);
    check_iov(&iov[0], 10, 6);

    b = ring_at(14);
    buf_append(&b, "12345", 5);
    assert_int_equal(buf_pending_iov(&b, iov), 2);
    check_iov(&iov[0], 14, 2);
    check_iov(&iov[1], 0, 3);
}

static void test_free_iov_shapes(void **state)
{
    (void)state;
    struct iovec iov[2];
    /* Empty at 0: all of it, one piece. */
    struct buf b = ring_at(0);
    assert_int_equal(buf_free_iov(&b, iov), 1);
    check_iov(&iov[0], 0, RING_CAP);

    /* Pending in the middle: free is the tail to the end, then the start up to head. */
    b = ring_at(4);
    buf_append(&b, "abcd", 4);
    assert_int_equal(buf_free_iov(&b, iov), 2);
    check_iov(&iov[0], 8, 8);
    check_iov(&iov[1], 0, 4);

    /* Pending wraps: the free space is one piece between the tail and head. */
    b = ring_at(12);
    buf_append(&b, "abcdef", 6);
    assert_int_equal(buf_free_iov(&b, iov), 1);
    check_iov(&iov[0], 2, 10);

    /* Pending reaches the end exactly: the tail is at 0. */
    b = ring_at(12);
    buf_append(&b, "abcd", 4);
    assert_int_equal(buf_free_iov(&b, iov), 1);
    check_iov(&iov[0], 0, 12);
}

/* Read into the free iovecs as readv would, then commit: the bytes become pending. */
static void test_commit_after_free_iov(void **state)
{
    (void)state;
    struct buf b = ring_at(10);
    buf_append(&b, "ab", 2);
    struct iovec iov[2];
    assert_int_equal(buf_free_iov(&b, iov), 2);
    const char *incoming = "CDEFGHIJK"; /* 4 to the end, 5 from the start */
    memcpy(iov[0].iov_base, incoming, iov[0].iov_len);
    memcpy(iov[1].iov_base, incoming + iov[0].iov_len, 9 - iov[0].iov_len);
    buf_commit(&b, 9);
    assert_int_equal(b.len, 11);
    assert_int_equal(buf_space(&b), RING_CAP - 11);
    check_pending(&b, "abCDEFGHIJK");
}

/* Linearize and check the bytes sit at data[0..) with head 0 and the same length. */
static void check_linearize(struct buf *b, const char *want)
{
    buf_linearize(b);
    assert_int_equal(b->head, 0);
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(storage, want, b->len);
}

static void test_linearize_contiguous(void **state)
{
    (void)state;
    struct buf b = ring_at(0);
    buf_append(&b, "abc", 3);
    check_linearize(&b, "abc");

    b = ring_at(7);
    buf_append(&b, "hello", 5);
    check_linearize(&b, "hello");
}

static void test_linearize_wrapped(void **state)
{
    (void)state;
    struct buf b = ring_at(11);
    buf_append(&b, "0123456789", 10);
    check_linearize(&b, "0123456789");

    /* Full and wrapped: every byte of the storage moves. */
    b = ring_at(3);
    buf_append(&b, "ABCDEFGHIJKLMNOP", RING_CAP);
    check_linearize(&b, "ABCDEFGHIJKLMNOP");

    /* Head at the last byte. */
    b = ring_at(RING_CAP - 1);
    buf_append(&b, "wxyz", 4);
    check_linearize(&b, "wxyz");
}

/* Every head position and every length: linearize gives the appended bytes. */
static void test_linearize_every_position(void **state)
{
    (void)state;
    const char *text = "0123456789abcdef";
    for (size_t head = 0; head < RING_CAP; head++) {
        for (size_t len = 0; len <= RING_CAP; len++) {
            struct buf b = ring_at(head);
            buf_append(&b, text, len);
            buf_linearize(&b);
            assert_int_equal(b.head, 0);
            assert_int_equal(b.len, len);
            assert_memory_equal(storage, text, len);
        }
    }
}

/* Random appends, consumes and commits against a flat reference of the pending bytes. */
static void test_random_against_model(void **state)
{
    (void)state;
    uint8_t model[RING_CAP];
    size_t model_len = 0;
    uint8_t next = 0;
    struct buf b = ring_at(0);
    srand(12345);
    for (int step = 0; step < 20000; step++) {
        size_t space = buf_space(&b);
        int op = rand() % 3;
        if (op == 0 && space > 0) {
            uint8_t chunk[RING_CAP];
            size_t n = (size_t)rand() % (space + 1);
            for (size_t i = 0; i < n; i++)
                chunk[i] = next++;
            buf_append(&b, chunk, n);
            memcpy(model + model_len, chunk, n);
            model_len += n;
        } else if (op == 1 && space > 0) {
            struct iovec iov[2];
            int k = buf_free_iov(&b, iov);
            size_t n = (size_t)rand() % (space + 1), done = 0;
            for (int i = 0; i < k && done < n; i++)
                for (size_t j = 0; j < iov[i].iov_len && done < n; j++, done++)
                    ((uint8_t *)iov[i].iov_base)[j] = model[model_len + done] = next++;
            buf_commit(&b, n);
            model_len += n;
        } else if (b.len > 0) {
            size_t n = (size_t)rand() % (b.len + 1);
            buf_consume(&b, n);
            memmove(model, model + n, model_len - n);
            model_len -= n;
        }
        uint8_t got[RING_CAP];
        assert_int_equal(ring_read(&b, got), model_len);
        assert_memory_equal(got, model, model_len);
    }
}

static void test_pool_reuses(void **state)
{
    (void)state;
    struct buf_pool p;
    assert_int_equal(buf_pool_init(&p, 4096, 2), 0);
    struct buf *a = buf_pool_get(&p);
    assert_non_null(a);
    assert_int_equal(a->cap, 4096);
    assert_int_equal(a->len, 0);
    assert_int_equal(a->head, 0);
    memset(a->data, 0xee, a->cap); /* the whole capacity is usable */

    buf_append(a, "dirty", 5);
    buf_consume(a, 2);
    buf_pool_put(&p, a);
    assert_int_equal(p.nfree, 1);

    /* The same buf comes back, emptied and rewound. */
    struct buf *again = buf_pool_get(&p);
    assert_ptr_equal(again, a);
    assert_int_equal(again->len, 0);
    assert_int_equal(again->head, 0);
    assert_int_equal(p.nfree, 0);

    buf_pool_put(&p, NULL); /* ignored */
    assert_int_equal(p.nfree, 0);
    buf_pool_put(&p, again);
    buf_pool_destroy(&p);
    assert_null(p.free);
}

static void test_pool_max_free(void **state)
{
    (void)state;
    struct buf_pool p;
    assert_int_equal(buf_pool_init(&p, 64, 2), 0);
    struct buf *bufs[5];
    for (size_t i = 0; i < 5; i++) {
        bufs[i] = buf_pool_get(&p);
        assert_non_null(bufs[i]);
        for (size_t j = 0; j < i; j++)
            assert_ptr_not_equal(bufs[i], bufs[j]);
    }
    for (size_t i = 0; i < 5; i++) {
        buf_pool_put(&p, bufs[i]);
        assert_int_equal(p.nfree, i < 2 ? i + 1 : 2);
    }
    /* The kept ones come back last in, first out; then fresh ones. */
    assert_ptr_equal(buf_pool_get(&p), bufs[1]);
    assert_ptr_equal(buf_pool_get(&p), bufs[0]);
    assert_int_equal(p.nfree, 0);
    struct buf *fresh = buf_pool_get(&p);
    assert_non_null(fresh);
    assert_int_equal(fresh->cap, 64);
    buf_pool_put(&p, fresh);
    buf_pool_put(&p, bufs[0]);
    buf_pool_put(&p, bufs[1]); /* over max_free: freed, not kept */
    assert_int_equal(p.nfree, 2);
    buf_pool_destroy(&p);
}

/* max_free 0 keeps nothing: every put frees. */
static void test_pool_keeps_none(void **state)
{
    (void)state;
    struct buf_pool p;
    assert_int_equal(buf_pool_init(&p, 32, 0), 0);
    struct buf *b = buf_pool_get(&p);
    assert_non_null(b);
    assert_int_equal(b->cap, 32);
    buf_pool_put(&p, b);
    assert_int_equal(p.nfree, 0);
    buf_pool_destroy(&p);
}

/* A trim frees exactly the kept bufs no get needed since the last trim, the ones at the
 * bottom of the list, and keeps the recently used ones in place. */
static void test_pool_trim_frees_unused(void **state)
{
    (void)state;
    struct buf_pool p;
    assert_int_equal(buf_pool_init(&p, 64, 8), 0);
    struct buf *bufs[5];
    for (int i = 0; i < 5; i++)
        bufs[i] = buf_pool_get(&p);
    for (int i = 0; i < 5; i++)
        buf_pool_put(&p, bufs[i]);
    assert_int_equal(buf_pool_trim(&p), 0); /* the five arrived during this interval */
    assert_int_equal(p.nfree, 5);
    struct buf *a = buf_pool_get(&p); /* two are used again: three sat out the interval */
    struct buf *b = buf_pool_get(&p);
    assert_ptr_equal(a, bufs[4]);
    assert_ptr_equal(b, bufs[3]);
    buf_pool_put(&p, b);
    buf_pool_put(&p, a);
    assert_int_equal(buf_pool_trim(&p), 3);
    assert_int_equal(p.nfree, 2);
    assert_ptr_equal(p.free[0], bufs[3]);
    assert_ptr_equal(p.free[1], bufs[4]);
    assert_int_equal(buf_pool_trim(&p), 2); /* unused for a whole interval now */
    assert_int_equal(p.nfree, 0);
    assert_int_equal(buf_pool_trim(&p), 0);
    buf_pool_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_consume_no_wrap),
        cmocka_unit_test(test_append_wraps),
        cmocka_unit_test(test_append_fills_exactly),
        cmocka_unit_test(test_pending_iov_shapes),
        cmocka_unit_test(test_free_iov_shapes),
        cmocka_unit_test(test_commit_after_free_iov),
        cmocka_unit_test(test_linearize_contiguous),
        cmocka_unit_test(test_linearize_wrapped),
        cmocka_unit_test(test_linearize_every_position),
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_pool_reuses),
        cmocka_unit_test(test_pool_max_free),
        cmocka_unit_test(test_pool_keeps_none),
        cmocka_unit_test(test_pool_trim_frees_unused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
