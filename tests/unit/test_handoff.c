/* test_handoff: the bounded socket queue between the acceptor and a worker, with real
 * file descriptors so the fd ownership rule of handoff.h is checked, not assumed: FIFO
 * order across the ring's wrap, the bound (-EAGAIN closes the refused fd), -EPIPE after
 * close (also closing the fd), pop on empty, handoff_destroy closing leftovers, the wake
 * eventfd, and several producer and consumer threads passing 80,000 tokens with none
 * lost or duplicated. Every test checks that no fd leaked (/proc/self/fd). */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "clock.h"
#include "handoff.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define QUEUE_CAP 4

static struct handoff *queue; /* the fixture's queue; NULL once a test destroyed it */
static int fds_at_setup;

/* Descriptors this process has open now. */
static int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own fd */
}

/* A fresh real descriptor to stand for an accepted socket. */
static int new_fd(void)
{
    int fd = eventfd(0, EFD_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static bool is_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

static void assert_closed(int fd)
{
    errno = 0;
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
}

/* Whether the wake eventfd polls readable right now. */
static bool is_woken(void)
{
    struct pollfd p = {.fd = handoff_wake_fd(queue), .events = POLLIN};
    int n = poll(&p, 1, 0);
    assert_true(n >= 0);
    return n == 1 && (p.revents & POLLIN);
}

/* The tag a socket is pushed with: its fd number plus 1000, so each pop can check that
 * the tag travelled with its own socket. */
#define TAG_OF(fd) ((unsigned)(fd) + 1000u)

/* Tags of pops whose tag the test does not check. */
static unsigned tag_sink;

/* Push a new fd, which must be accepted; returns it. */
static int push_new(void)
{
    int fd = new_fd();
    assert_int_equal(handoff_push(queue, fd, TAG_OF(fd)), 0);
    return fd;
}

/* Pop, which must succeed with `want` and its tag, still open; the test owns it and
 * closes it. */
static void pop_expect(int want)
{
    int fd = -1;
    unsigned tag = 0;
    assert_int_equal(handoff_pop(queue, &fd, &tag), 0);
    assert_int_equal(fd, want);
    assert_int_equal(tag, TAG_OF(want));
    assert_true(is_open(fd));
    close(fd);
}

static int setup(void **state)
{
    (void)state;
    fds_at_setup = count_open_fds();
    return handoff_create(QUEUE_CAP, &queue);
}

/* Destroy the queue (closing what it holds) and check nothing leaked. */
static int teardown(void **state)
{
    (void)state;
    handoff_destroy(queue);
    queue = NULL;
    assert_int_equal(count_open_fds(), fds_at_setup);
    return 0;
}

static void test_create_rejects_zero_capacity(void **state)
{
    (void)state;
    struct handoff *h = NULL;
    assert_int_equal(handoff_create(0, &h), -EINVAL);
    assert_null(h);
    handoff_destroy(NULL); /* harmless */
}

static void test_fifo_order(void **state)
{
    (void)state;
    int fds[QUEUE_CAP];
    for (int i = 0; i < QUEUE_CAP; i++)
        fds[i] = push_new();
    assert_int_equal(handoff_length(queue), QUEUE_CAP);
    for (int i = 0; i < QUEUE_CAP; i++)
        pop_expect(fds[i]);
    assert_int_equal(handoff_length(queue), 0);
}

/* has_room says whether a push would fit: true until the last slot is taken, true again
 * after a pop, and false once the queue is closed. */
static void test_has_room(void **state)
{
    (void)state;
    int fds[QUEUE_CAP];
    for (int i = 0; i < QUEUE_CAP; i++) {
        assert_true(handoff_has_room(queue));
        fds[i] = push_new();
    }
    assert_false(handoff_has_room(queue));
    pop_expect(fds[0]);
    assert_true(handoff_has_room(queue));
    handoff_close(queue);
    assert_false(handoff_has_room(queue));
    for (int i = 1; i < QUEUE_CAP; i++)
        pop_expect(fds[i]);
    assert_false(handoff_has_room(queue));
}

/* Interleaved pushes and pops walk head around the ring many times. */
static void test_fifo_across_wrap(void **state)
{
    (void)state;
    int fds[3 * QUEUE_CAP * 5];
    size_t pushed = 0, popped = 0;
    for (int round = 0; round < 3 * 5; round++) {
        for (int k = 0; k < 3 && handoff_length(queue) < QUEUE_CAP; k++)
            fds[pushed++] = push_new();
        for (int k = 0; k < 2 + round % 2 && popped < pushed; k++)
            pop_expect(fds[popped++]);
        assert_int_equal(handoff_length(queue), pushed - popped);
    }
    while (popped < pushed)
        pop_expect(fds[popped++]);
}

/* capacity pushes succeed; the next is refused with -EAGAIN and its fd closed by the
 * queue; the queued ones are untouched; after a pop there is room again. */
static void test_bound_refuses_and_closes(void **state)
{
    (void)state;
    int fds[QUEUE_CAP];
    for (int i = 0; i < QUEUE_CAP; i++)
        fds[i] = push_new();
    int refused = new_fd();
    assert_int_equal(handoff_push(queue, refused, 0), -EAGAIN);
    assert_closed(refused);
    assert_int_equal(handoff_length(queue), QUEUE_CAP);
    for (int i = 0; i < QUEUE_CAP; i++)
        assert_true(is_open(fds[i]));

    pop_expect(fds[0]);
    int last = push_new();
    for (int i = 1; i < QUEUE_CAP; i++)
        pop_expect(fds[i]);
    pop_expect(last);
}

static void test_pop_empty(void **state)
{
    (void)state;
    int fd = 12345;
    assert_int_equal(handoff_pop(queue, &fd, &tag_sink), -EAGAIN);
    assert_int_equal(fd, 12345); /* untouched */
    pop_expect(push_new());
    assert_int_equal(handoff_pop(queue, &fd, &tag_sink), -EAGAIN);
}

/* After close: pushes get -EPIPE and their fd is closed; what was queued still pops;
 * then pop says -EPIPE, not -EAGAIN. */
static void test_close_refuses_then_drains(void **state)
{
    (void)state;
    int a = push_new(), b = push_new();
    handoff_close(queue);
    int late = new_fd();
    assert_int_equal(handoff_push(queue, late, 0), -EPIPE);
    assert_closed(late);
    assert_int_equal(handoff_length(queue), 2);
    pop_expect(a);
    pop_expect(b);
    int fd = -1;
    assert_int_equal(handoff_pop(queue, &fd, &tag_sink), -EPIPE);
    assert_int_equal(fd, -1);
    handoff_close(queue); /* twice is harmless */
    assert_int_equal(handoff_pop(queue, &fd, &tag_sink), -EPIPE);
}

/* A closed queue that is full still answers -EPIPE (closed wins over full). */
static void test_close_when_full(void **state)
{
    (void)state;
    for (int i = 0; i < QUEUE_CAP; i++)
        (void)push_new();
    handoff_close(queue);
    int late = new_fd();
    assert_int_equal(handoff_push(queue, late, 0), -EPIPE);
    assert_closed(late);
}

/* handoff_destroy closes every socket still queued, and the wake eventfd. */
static void test_destroy_closes_leftovers(void **state)
{
    (void)state;
    pop_expect(push_new()); /* move head off 0 so the leftovers wrap */
    pop_expect(push_new());
    int fds[QUEUE_CAP];
    for (int i = 0; i < QUEUE_CAP; i++)
        fds[i] = push_new();
    int wake = handoff_wake_fd(queue);
    handoff_destroy(queue);
    queue = NULL;
    for (int i = 0; i < QUEUE_CAP; i++)
        assert_closed(fds[i]);
    assert_closed(wake);
}

static void test_wake_fd(void **state)
{
    (void)state;
    int wake = handoff_wake_fd(queue);
    assert_true(wake >= 0);
    assert_true(is_open(wake));
    assert_false(is_woken());

    int a = push_new();
    assert_true(is_woken());
    handoff_clear_wake(queue);
    assert_false(is_woken());
    handoff_clear_wake(queue); /* clearing when clear does not block or fail */
    assert_false(is_woken());
    pop_expect(a);

    /* Empty again: the next push wakes again. */
    int b = push_new();
    assert_true(is_woken());
    handoff_clear_wake(queue);
    pop_expect(b);

    /* close wakes the consumer too, so it can see -EPIPE. */
    handoff_close(queue);
    assert_true(is_woken());
    handoff_clear_wake(queue);
    assert_false(is_woken());
}

/* ---------------------------------------------------------------- threads */

#define PRODUCERS           4
#define CONSUMERS           3
#define TOKENS_PER_PRODUCER 20000
#define TOKENS              (PRODUCERS * TOKENS_PER_PRODUCER)
#define THREAD_QUEUE_CAP    64
#define MAX_FD              4096
#define THREAD_DEADLINE_MS  60000

/* Which token each open fd carries: written by the producer that owns the fd before the
 * push, read by the consumer that popped it before closing it. Atomic because fd
 * numbers are reused across threads, an ordering only the kernel sees. */
static _Atomic int token_of_fd[MAX_FD];
/* How many times each token was popped; must end as exactly 1 each. */
static _Atomic int times_seen[TOKENS];
static struct handoff *shared;
static uint64_t deadline_ms;

struct worker_arg {
    int first_token;    /* producers: the first of their TOKENS_PER_PRODUCER */
    long refused;       /* producers: pushes refused as full (then retried) */
    long popped;        /* consumers: tokens taken */
    const char *failed; /* why the thread gave up, or NULL */
};

/* Push one token on a fresh fd, retrying (with a fresh fd) while the queue is full. */
static const char *produce_one(struct worker_arg *a, int token, int devnull)
{
    while (clock_now_ms() < deadline_ms) {
        int fd = dup(devnull);
        if (fd < 0 || fd >= MAX_FD)
            return fd < 0 ? "dup failed" : "fd number beyond the token table";
        atomic_store_explicit(&token_of_fd[fd], token, memory_order_relaxed);
        int rc = handoff_push(shared, fd, 0);
        if (rc == 0)
            return NULL;
        if (rc != -EAGAIN)
            return "push failed with neither 0 nor -EAGAIN";
        a->refused++;
        sched_yield();
    }
    return "deadline passed";
}

static void *producer_main(void *arg)
{
    struct worker_arg *a = arg;
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0) {
        a->failed = "cannot open /dev/null";
        return NULL;
    }
    for (int i = 0; i < TOKENS_PER_PRODUCER && a->failed == NULL; i++)
        a->failed = produce_one(a, a->first_token + i, devnull);
    close(devnull);
    return NULL;
}

/* Record the token fd carries and close it, as the worker that popped it would. */
static const char *consume_one(struct worker_arg *a, int fd)
{
    if (fd < 0 || fd >= MAX_FD || !is_open(fd))
        return "popped an fd that is not open";
    int token = atomic_load_explicit(&token_of_fd[fd], memory_order_relaxed);
    close(fd);
    if (token < 0 || token >= TOKENS)
        return "popped a token out of range";
    atomic_fetch_add_explicit(&times_seen[token], 1, memory_order_relaxed);
    a->popped++;
    return NULL;
}

static void *consumer_main(void *arg)
{
    struct worker_arg *a = arg;
    struct pollfd p = {.fd = handoff_wake_fd(shared), .events = POLLIN};
    while (a->failed == NULL) {
        if (clock_now_ms() >= deadline_ms) {
            a->failed = "deadline passed";
            break;
        }
        handoff_clear_wake(shared);
        int fd = -1;
        unsigned tag;
        int rc = handoff_pop(shared, &fd, &tag);
        if (rc == -EPIPE)
            break; /* closed and empty: every token is through */
        if (rc == -EAGAIN)
            (void)poll(&p, 1, 5); /* a consumer may eat another's wake-up: short waits */
        else if (rc == 0)
            a->failed = consume_one(a, fd);
        else
            a->failed = "pop failed with neither 0, -EAGAIN nor -EPIPE";
    }
    return NULL;
}

/* Start n threads running fn over args[0..n); the test fails if one cannot start. */
static void start_threads(pthread_t *t, struct worker_arg *args, int n, void *(*fn)(void *))
{
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_create(&t[i], NULL, fn, &args[i]), 0);
}

/* Join n threads; returns the first failure any reported, or NULL. */
static const char *join_threads(pthread_t *t, struct worker_arg *args, int n)
{
    const char *failed = NULL;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        if (failed == NULL)
            failed = args[i].failed;
    }
    return failed;
}

static void test_many_producers_and_consumers(void **state)
{
    (void)state;
    int fds_before = count_open_fds();
    assert_int_equal(handoff_create(THREAD_QUEUE_CAP, &shared), 0);
    for (int i = 0; i < TOKENS; i++)
        atomic_init(&times_seen[i], 0);
    deadline_ms = clock_now_ms() + THREAD_DEADLINE_MS;

    pthread_t prod[PRODUCERS], cons[CONSUMERS];
    struct worker_arg pargs[PRODUCERS] = {{0}}, cargs[CONSUMERS] = {{0}};
    for (int i = 0; i < PRODUCERS; i++)
        pargs[i].first_token = i * TOKENS_PER_PRODUCER;
    start_threads(cons, cargs, CONSUMERS, consumer_main);
    start_threads(prod, pargs, PRODUCERS, producer_main);
    const char *failed = join_threads(prod, pargs, PRODUCERS);
    handoff_close(shared); /* consumers drain what is left, then see -EPIPE */
    const char *cons_failed = join_threads(cons, cargs, CONSUMERS);
    handoff_destroy(shared);
    shared = NULL;
    if (failed != NULL || cons_failed != NULL)
        fail_msg("a thread failed: %s", failed ? failed : cons_failed);

    long popped = 0;
    for (int i = 0; i < CONSUMERS; i++)
        popped += cargs[i].popped;
    assert_int_equal(popped, TOKENS);
    for (int i = 0; i < TOKENS; i++)
        if (atomic_load(&times_seen[i]) != 1)
            fail_msg("token %d popped %d times", i, atomic_load(&times_seen[i]));
    assert_int_equal(count_open_fds(), fds_before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_rejects_zero_capacity),
        cmocka_unit_test_setup_teardown(test_fifo_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo_across_wrap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_has_room, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_refuses_and_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pop_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_refuses_then_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_when_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_closes_leftovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wake_fd, setup, teardown),
        cmocka_unit_test(test_many_producers_and_consumers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
