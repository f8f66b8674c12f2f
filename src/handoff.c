/* handoff: a bounded FIFO of accepted sockets, guarded by a mutex, with an eventfd that
 * wakes the consumer. The acceptor thread pushes; one worker thread pops. (Any number
 * of threads may push and pop safely; the unit tests use several of each.)
 *
 * DESIGN. echod gives every worker its own mailbox (memcached's model) rather than one
 * queue shared by all workers: a connection must stay on one worker for life, so the
 * acceptor has to choose the worker anyway, and it can choose the least loaded one. A
 * shared queue would wake every idle worker on each push (a thundering herd) and make
 * all of them contend for one lock. Per-worker queues keep each lock between exactly
 * two threads, held only for a few loads and stores.
 *
 * The fd ownership rule is stated once, in handoff.h. */
#include "config.h"

#include "handoff.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "sock.h"

struct handoff {
    pthread_mutex_t lock; /* guards slots, head, len and is_closed */
    struct handoff_slot {
        int fd;
        unsigned tag;
    } * slots;
    size_t capacity;
    size_t head;        /* index of the oldest socket */
    _Atomic size_t len; /* sockets queued: changed under lock, read without (length) */
    bool is_closed;
    int wake_fd; /* eventfd: signalled on empty -> non-empty and on close */
};

int handoff_create(size_t capacity, struct handoff **out)
{
    if (capacity == 0)
        return -EINVAL;
    struct handoff *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    h->slots = calloc(capacity, sizeof(*h->slots));
    h->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int rc = h->wake_fd < 0 ? -errno : 0;
    if (rc == 0 && h->slots == NULL)
        rc = -ENOMEM;
    if (rc == 0)
        rc = -pthread_mutex_init(&h->lock, NULL);
    if (rc < 0) {
        if (h->wake_fd >= 0)
            close(h->wake_fd);
        free(h->slots);
        free(h);
        return rc;
    }
    h->capacity = capacity;
    *out = h;
    return 0;
}

void handoff_destroy(struct handoff *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->len; i++)
        sock_close_clean(h->slots[(h->head + i) % h->capacity].fd);
    close(h->wake_fd);
    pthread_mutex_destroy(&h->lock);
    free(h->slots);
    free(h);
}

int handoff_push(struct handoff *h, int fd, unsigned tag)
{
    int rc = 0;
    bool was_empty = false;
    pthread_mutex_lock(&h->lock);
    if (h->is_closed) {
        rc = -EPIPE;
    } else if (h->len == h->capacity) {
        rc = -EAGAIN;
    } else {
        was_empty = h->len == 0;
        h->slots[(h->head + h->len) % h->capacity] = (struct handoff_slot){fd, tag};
        h->len++;
    }
    pthread_mutex_unlock(&h->lock);
    if (rc < 0)
        sock_close_clean(fd); /* a failed push still took ownership */
    else if (was_empty)
        (void)eventfd_write(h->wake_fd, 1);
    return rc;
}

int handoff_pop(struct handoff *h, int *fd, unsigned *tag)
{
    int rc = 0;
    pthread_mutex_lock(&h->lock);
    if (h->len == 0) {
        rc = h->is_closed ? -EPIPE : -EAGAIN;
    } else {
        *fd = h->slots[h->head].fd;
        *tag = h->slots[h->head].tag;
        h->head = (h->head + 1) % h->capacity;
        h->len--;
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}

void handoff_close(struct handoff *h)
{
    pthread_mutex_lock(&h->lock);
    h->is_closed = true;
    pthread_mutex_unlock(&h->lock);
    (void)eventfd_write(h->wake_fd, 1);
}

bool handoff_has_room(struct handoff *h)
{
    pthread_mutex_lock(&h->lock);
    bool has_room = !h->is_closed && h->len < h->capacity;
    pthread_mutex_unlock(&h->lock);
    return has_room;
}

size_t handoff_length(const struct handoff *h)
{
    /* No lock: a reader such as a metrics scrape never makes the worker wait. */
    return atomic_load_explicit(&h->len, memory_order_relaxed);
}

int handoff_wake_fd(const struct handoff *h)
{
    return h->wake_fd;
}

void handoff_clear_wake(struct handoff *h)
{
    eventfd_t count;
    (void)eventfd_read(h->wake_fd, &count);
}
