/* snap: refcounted immutable values behind a mutex-guarded box (see snap.h for the
 * rule). The main thread publishes; any thread acquires and releases.
 *
 * DESIGN. Readers look for news with one relaxed load of the generation per loop pass,
 * so the common case costs no lock. Only acquiring takes the box's lock: it pairs the
 * read of `current` with the reference increment, so the publisher cannot drop the last
 * reference between the two (the classic use-after-free of a swapped pointer). Release
 * needs no lock: the reference count is atomic and whoever takes it to zero frees. */
#include "config.h"

#include "snap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct snap {
    _Atomic unsigned refs; /* the box's reference (while current) plus readers' */
    void *data;
    void (*free_data)(void *);
};

struct snap_box {
    pthread_mutex_t lock; /* guards current, and pairs its read with a reference */
    struct snap *current;
    void (*free_data)(void *);
    _Atomic uint64_t generation; /* bumped after current changes, under the lock */
};

/* A snap holding data with one reference; NULL (data freed) when out of memory. */
static struct snap *snap_new(void *data, void (*free_data)(void *))
{
    struct snap *s = malloc(sizeof(*s));
    if (s == NULL) {
        free_data(data);
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->data = data;
    s->free_data = free_data;
    return s;
}

int snap_box_create(void *data, void (*free_data)(void *), struct snap_box **out)
{
    struct snap_box *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        free_data(data);
        return -ENOMEM;
    }
    b->free_data = free_data;
    b->current = snap_new(data, free_data);
    int rc = b->current == NULL ? -ENOMEM : -pthread_mutex_init(&b->lock, NULL);
    if (rc < 0) {
        snap_release(b->current);
        free(b);
        return rc;
    }
    atomic_init(&b->generation, 1);
    *out = b;
    return 0;
}

void snap_box_destroy(struct snap_box *b)
{
    if (b == NULL)
        return;
    snap_release(b->current);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

int snap_box_publish(struct snap_box *b, void *data)
{
    struct snap *s = snap_new(data, b->free_data);
    if (s == NULL)
        return -ENOMEM;
    pthread_mutex_lock(&b->lock);
    struct snap *old = b->current;
    b->current = s;
    atomic_fetch_add_explicit(&b->generation, 1, memory_order_release);
    pthread_mutex_unlock(&b->lock);
    snap_release(old);
    return 0;
}

uint64_t snap_box_generation(const struct snap_box *b)
{
    return atomic_load_explicit(&b->generation, memory_order_relaxed);
}

struct snap *snap_box_acquire(struct snap_box *b, uint64_t *generation)
{
    pthread_mutex_lock(&b->lock);
    struct snap *s = b->current;
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    *generation = atomic_load_explicit(&b->generation, memory_order_relaxed);
    pthread_mutex_unlock(&b->lock);
    return s;
}

const void *snap_data(const struct snap *s)
{
    return s->data;
}

void snap_release(struct snap *s)
{
    if (s == NULL)
        return;
    /* acq_rel: every reader's use of data happens before the free. */
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
        s->free_data(s->data);
        free(s);
    }
}
