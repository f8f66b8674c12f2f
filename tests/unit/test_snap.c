/* test_snap: the configuration handover. Values are freed exactly once, only after the
 * last holder released them; a reader always sees a whole value; and a storm of
 * publishes against reader threads is clean (run under ASan and TSan by test.sh). */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <setjmp.h>

#include <cmocka.h>

#include "snap.h"

struct value {
    uint64_t n;
    uint64_t check; /* 3n + 1: a torn or freed value fails it */
};

static _Atomic unsigned long values_made;
static _Atomic unsigned long values_freed;

static void value_free(void *data)
{
    struct value *v = data;
    v->check = 0; /* a use after this would see a broken value (and ASan would say so) */
    free(v);
    atomic_fetch_add(&values_freed, 1);
}

static struct value *value_new(uint64_t n)
{
    struct value *v = malloc(sizeof(*v));
    assert_non_null(v);
    v->n = n;
    v->check = 3 * n + 1;
    atomic_fetch_add(&values_made, 1);
    return v;
}

static void counts_reset(void)
{
    atomic_store(&values_made, 0);
    atomic_store(&values_freed, 0);
}

/* A value lives while anyone holds it: the box until the next publish, a reader until
 * it releases. */
static void test_lifetime(void **state)
{
    (void)state;
    counts_reset();
    struct snap_box *b;
    assert_int_equal(snap_box_create(value_new(1), value_free, &b), 0);
    assert_int_equal(snap_box_generation(b), 1);
    uint64_t gen;
    struct snap *first = snap_box_acquire(b, &gen);
    assert_int_equal(gen, 1);
    assert_int_equal(((const struct value *)snap_data(first))->n, 1);

    assert_int_equal(snap_box_publish(b, value_new(2)), 0);
    assert_int_equal(snap_box_generation(b), 2);
    assert_int_equal(atomic_load(&values_freed), 0); /* the reader still holds 1 */
    assert_int_equal(((const struct value *)snap_data(first))->check, 4);
    snap_release(first);
    assert_int_equal(atomic_load(&values_freed), 1);

    assert_int_equal(snap_box_publish(b, value_new(3)), 0); /* 2 had no reader */
    assert_int_equal(atomic_load(&values_freed), 2);
    struct snap *third = snap_box_acquire(b, &gen);
    assert_int_equal(gen, 3);
    snap_box_destroy(b);
    assert_int_equal(atomic_load(&values_freed), 2); /* the reader outlives the box */
    assert_int_equal(((const struct value *)snap_data(third))->n, 3);
    snap_release(third);
    snap_release(NULL);
    assert_int_equal(atomic_load(&values_freed), 3);
}

#define READERS   4
#define PUBLISHES 20000

struct reader {
    pthread_t thread;
    struct snap_box *box;
    _Atomic bool *is_done;
    _Atomic unsigned long pickups;
    unsigned long bad;
};

/* A worker's loop: look for news at the top, keep the held value for the whole pass. */
static void *reader_main(void *arg)
{
    struct reader *r = arg;
    uint64_t gen;
    struct snap *held = snap_box_acquire(r->box, &gen);
    uint64_t last_n = 0;
    while (!atomic_load(r->is_done)) {
        if (snap_box_generation(r->box) != gen) {
            struct snap *next = snap_box_acquire(r->box, &gen);
            snap_release(held);
            held = next;
            atomic_fetch_add(&r->pickups, 1);
        }
        const struct value *v = snap_data(held);
        if (v->check != 3 * v->n + 1 || v->n < last_n)
            r->bad++;
        last_n = v->n;
    }
    snap_release(held);
    return NULL;
}

static void test_publish_storm(void **state)
{
    (void)state;
    counts_reset();
    struct snap_box *b;
    assert_int_equal(snap_box_create(value_new(0), value_free, &b), 0);
    _Atomic bool is_done = false;
    struct reader r[READERS] = {0};
    for (int i = 0; i < READERS; i++) {
        r[i].box = b;
        r[i].is_done = &is_done;
        assert_int_equal(pthread_create(&r[i].thread, NULL, reader_main, &r[i]), 0);
    }
    /* At least PUBLISHES, and on until every reader has changed values a few times (the
     * readers may start late on a busy machine), for 10 s at the most. */
    uint64_t n = 0;
    time_t give_up = time(NULL) + 10;
    for (bool is_mixed = false; n < PUBLISHES || (!is_mixed && time(NULL) < give_up);) {
        assert_int_equal(snap_box_publish(b, value_new(++n)), 0);
        is_mixed = true;
        for (int i = 0; i < READERS; i++)
            is_mixed = is_mixed && atomic_load(&r[i].pickups) >= 10;
    }
    atomic_store(&is_done, true);
    unsigned long pickups = 0;
    for (int i = 0; i < READERS; i++) {
        pthread_join(r[i].thread, NULL);
        assert_int_equal(r[i].bad, 0);
        pickups += atomic_load(&r[i].pickups);
    }
    print_message("# %llu publishes, %lu pickups by %d readers\n", (unsigned long long)n, pickups,
                  READERS);
    for (int i = 0; i < READERS; i++)
        assert_true(atomic_load(&r[i].pickups) >= 10);
    assert_int_equal(atomic_load(&values_freed), n); /* all but the current one */
    snap_box_destroy(b);
    assert_int_equal(atomic_load(&values_freed), atomic_load(&values_made));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifetime),
        cmocka_unit_test(test_publish_storm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
