/* handoff: the bounded, mutex-protected queue that carries accepted sockets from the
 * acceptor to one worker, and the eventfd that wakes that worker.
 *
 * FD OWNERSHIP RULE (the only statement of it; everything else follows it):
 *   1. The acceptor owns a socket from accept4() until it calls handoff_push().
 *   2. handoff_push() always takes ownership. If it fails (queue full or closed), the
 *      queue closes the socket itself (with a FIN, see sock_close_clean) before
 *      returning; the caller must not touch it. A producer that must not lose a socket
 *      checks handoff_has_room() before it accepts one.
 *   3. A socket in the queue belongs to the queue; handoff_destroy() closes leftovers,
 *      also with a FIN.
 *   4. handoff_pop() passes ownership to the worker that popped it, and that worker is
 *      the only code that may close it.
 */
#ifndef ECHOD_HANDOFF_H
#define ECHOD_HANDOFF_H

#include <stdbool.h>
#include <stddef.h>

struct handoff;

/* A queue of `capacity` sockets with its wake-up eventfd; 0 or -errno. */
int handoff_create(size_t capacity, struct handoff **out);
/* Close every socket still queued, the eventfd, and free the queue. */
void handoff_destroy(struct handoff *h);
/* Queue fd, taking ownership, with `tag`: what the producer decided about it, handed to
 * the consumer unread (the acceptor: the PROXY header it admitted the socket for). 0;
 * -EAGAIN when full or -EPIPE when closed, fd closed. */
int handoff_push(struct handoff *h, int fd, unsigned tag);
/* Take the oldest socket and its tag. 0; -EAGAIN when empty; -EPIPE when empty and
 * closed. */
int handoff_pop(struct handoff *h, int *fd, unsigned *tag);
/* Refuse further pushes and wake the consumer; queued sockets can still be popped. */
void handoff_close(struct handoff *h);
/* Whether a push would find a free slot now (a single producer can count on it). */
bool handoff_has_room(struct handoff *h);
/* Sockets queued now (any thread; takes no lock). */
size_t handoff_length(const struct handoff *h);
/* The eventfd the consumer polls for readability. */
int handoff_wake_fd(const struct handoff *h);
/* Consume a wake-up; call before popping until -EAGAIN so no push is missed. */
void handoff_clear_wake(struct handoff *h);

#endif
