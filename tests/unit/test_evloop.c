/* test_evloop: the shared epoll_wait. The watchdog's liveness rule on a fake clock (an
 * idle thread asleep in epoll_wait is alive, a busy one that keeps coming back is alive,
 * a stuck one is not); the beat a wait leaves; and a failing epoll fd that pauses the
 * loop instead of spinning it. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "evloop.h"

/* The rule, on a fake clock with a 2000 ms interval. */
static void test_liveness_rule(void **state)
{
    (void)state;
    struct evloop_beat b;
    atomic_init(&b.beat_ms, 10000);
    atomic_init(&b.is_asleep, false);
    assert_true(evloop_is_alive(&b, 10000, 2000));  /* just beat */
    assert_true(evloop_is_alive(&b, 11999, 2000));  /* busy, back within the interval */
    assert_false(evloop_is_alive(&b, 12000, 2000)); /* stuck for a whole interval */
    assert_false(evloop_is_alive(&b, 99999, 2000));
    atomic_store(&b.is_asleep, true);
    assert_true(evloop_is_alive(&b, 99999, 2000)); /* idle in epoll_wait for ages */
    atomic_store(&b.is_asleep, false);
    assert_true(evloop_is_alive(&b, 9000, 2000)); /* a clock read before the beat */
}

/* A wait that returns an event leaves the thread awake with a fresh beat. */
static void test_wait_beats(void **state)
{
    (void)state;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int ev = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(ep >= 0 && ev >= 0);
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e), 0);
    struct evloop l;
    evloop_init(&l, "test", ep);
    uint64_t now = 5; /* an old reading: the wait replaces it */
    struct epoll_event out[4];
    assert_int_equal(evloop_wait(&l, out, 4, 1000, &now), 1);
    assert_true(now >= clock_now_ms() - 1000);
    assert_int_equal(atomic_load(&l.beat.beat_ms), now);
    assert_false(atomic_load(&l.beat.is_asleep));
    assert_true(evloop_is_alive(&l.beat, now, 2000));
    close(ev);
    close(ep);
}

/* A broken epoll fd: every wait returns 0 events after a pause, so 5 waits take about
 * half a second instead of spinning; the loop stays alive by its beat. */
static void test_failing_wait_pauses(void **state)
{
    (void)state;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    assert_true(ep >= 0);
    close(ep); /* now EBADF */
    struct evloop l;
    evloop_init(&l, "test", ep);
    struct epoll_event out[4];
    uint64_t start = clock_now_ms(), now = start;
    for (int i = 0; i < 5; i++)
        assert_int_equal(evloop_wait(&l, out, 4, 0, &now), 0);
    uint64_t took = clock_now_ms() - start;
    print_message("# 5 failing waits took %llu ms\n", (unsigned long long)took);
    assert_true(took >= 450);
    assert_int_equal(l.failing_err, EBADF);
    assert_true(evloop_is_alive(&l.beat, clock_now_ms(), 2000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_liveness_rule),
        cmocka_unit_test(test_wait_beats),
        cmocka_unit_test(test_failing_wait_pauses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
