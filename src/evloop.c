/* evloop: one epoll_wait for every serving thread. Runs on the thread that owns the
 * loop; only the beat is read by another thread (the main thread's watchdog), through
 * relaxed atomics: it needs a recent value, not an ordering.
 *
 * DESIGN. A failing epoll_wait (EBADF, EINVAL, ENOMEM from a bug or the kernel) returns
 * at once, so a loop that only logged it would spin and flood the log. The error is
 * logged when an episode starts, the thread pauses EVLOOP_BACKOFF_MS per failure, and
 * the first success logs the recovery. The beat makes a stuck thread visible: a thread
 * that neither sleeps in epoll_wait nor comes back to it for a whole watchdog interval
 * is stuck (evloop_is_alive), and echod then stops pinging the watchdog. */
#include "config.h"

#include "evloop.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"

#define EVLOOP_BACKOFF_MS 100 /* pause after a failing epoll_wait */

void evloop_init(struct evloop *l, const char *name, int epfd)
{
    l->name = name;
    l->epfd = epfd;
    l->failing_err = 0;
    atomic_init(&l->beat.beat_ms, clock_now_ms());
    atomic_init(&l->beat.is_asleep, false);
}

/* Log a failure once per episode and pause, so the caller's loop cannot spin. */
static void evloop_fail(struct evloop *l, int err)
{
    if (l->failing_err != err)
        log_error("%s: epoll_wait: %s; retrying every %d ms", l->name, strerror(err),
                  EVLOOP_BACKOFF_MS);
    l->failing_err = err;
    struct timespec pause = {0, EVLOOP_BACKOFF_MS * 1000000L};
    while (nanosleep(&pause, &pause) < 0 && errno == EINTR) {
    }
}

int evloop_wait(struct evloop *l, struct epoll_event *events, int max, int timeout_ms,
                uint64_t *now_ms)
{
    atomic_store_explicit(&l->beat.beat_ms, *now_ms, memory_order_relaxed);
    atomic_store_explicit(&l->beat.is_asleep, true, memory_order_relaxed);
    int n = epoll_wait(l->epfd, events, max, timeout_ms);
    int err = n < 0 ? errno : 0;
    atomic_store_explicit(&l->beat.is_asleep, false, memory_order_relaxed);
    if (err != 0 && err != EINTR)
        evloop_fail(l, err);
    else if (err == 0 && l->failing_err != 0) {
        log_info("%s: epoll_wait works again", l->name);
        l->failing_err = 0;
    }
    *now_ms = clock_now_ms();
    atomic_store_explicit(&l->beat.beat_ms, *now_ms, memory_order_relaxed);
    return n < 0 ? 0 : n;
}

bool evloop_is_alive(const struct evloop_beat *b, uint64_t now_ms, uint64_t interval_ms)
{
    if (atomic_load_explicit(&b->is_asleep, memory_order_relaxed))
        return true;
    uint64_t beat = atomic_load_explicit(&b->beat_ms, memory_order_relaxed);
    return now_ms < beat || now_ms - beat < interval_ms;
}
