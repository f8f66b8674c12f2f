/* snap: hands an immutable value (a configuration snapshot) from the main thread to
 * the threads that read it, and frees each value once the last reader has moved on.
 *
 * RULE (the one statement of it): the publisher never changes a published value; it
 * publishes a new one. A reader holds the value it acquired, unchanged, until it
 * releases it; it looks for a newer one only where it chooses (the top of its loop),
 * so a value never changes under it mid-step. Whoever drops the last reference (the box
 * on the next publish, or a reader on release) frees the value. */
#ifndef ECHOD_SNAP_H
#define ECHOD_SNAP_H

#include <stdint.h>

struct snap;
struct snap_box;

/* A box publishing data (generation 1), which it owns from now on and frees with
 * free_data once nobody holds it; 0 or -ENOMEM (data freed then too). */
int snap_box_create(void *data, void (*free_data)(void *), struct snap_box **out);
/* Drop the box's reference to the current value and free the box. Readers may still
 * hold values; each is freed on its last release. */
void snap_box_destroy(struct snap_box *b);
/* Publish data as the current value (taking ownership; freed on -ENOMEM) and drop the
 * box's reference to the previous one. Main thread. */
int snap_box_publish(struct snap_box *b, void *data);
/* The generation published now: a reader compares it with its own to see whether a
 * newer value waits. One relaxed load; any thread. */
uint64_t snap_box_generation(const struct snap_box *b);
/* Take a reference to the current value; its generation goes to *generation. Any
 * thread; takes the box's lock briefly. */
struct snap *snap_box_acquire(struct snap_box *b, uint64_t *generation);
/* The value a reference holds. */
const void *snap_data(const struct snap *s);
/* Drop a reference (NULL is fine); the last one frees the value. Any thread. */
void snap_release(struct snap *s);

#endif
