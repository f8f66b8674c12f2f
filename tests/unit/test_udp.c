/* test_udp: what the UDP thread does when sendmmsg sends only part of a batch. sendmmsg
 * is wrapped: each call may pass on only the first few replies (a short count with no
 * error, as after an error the kernel does not report), or fail (EAGAIN: a full send
 * buffer). Seven datagrams queue on a real UDP socket before the thread starts, so its
 * first recvmmsg reads them as one batch; udp_stop answers all that is queued before it
 * returns, so the replies and counters are final without any wait. Every reply the
 * wrapper let through arrives, in order; each refused one is counted once in
 * udp_send_errors and skipped; a sendmmsg that always fails costs one call per reply,
 * never a spin. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "udp.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "snap.h"

#define BATCH 7  /* datagrams in the test batch */
#define CALLS 16 /* sendmmsg calls a test may script */

/* What the wrapped sendmmsg does on call i: pass at most limit[i] replies on to the
 * kernel (0: all), or fail with fail_errno[i] (0: do not fail). */
static struct {
    bool is_on;
    unsigned limit[CALLS];
    int fail_errno[CALLS];
    unsigned calls; /* calls made while is_on */
} mock;

int __real_sendmmsg(int fd, struct mmsghdr *msgs, unsigned vlen, int flags);
int __wrap_sendmmsg(int fd, struct mmsghdr *msgs, unsigned vlen, int flags);
int __wrap_sendmmsg(int fd, struct mmsghdr *msgs, unsigned vlen, int flags)
{
    if (!mock.is_on)
        return __real_sendmmsg(fd, msgs, vlen, flags);
    unsigned i = mock.calls++;
    if (i < CALLS && mock.fail_errno[i] != 0) {
        errno = mock.fail_errno[i];
        return -1;
    }
    if (i < CALLS && mock.limit[i] != 0 && mock.limit[i] < vlen)
        vlen = mock.limit[i];
    return __real_sendmmsg(fd, msgs, vlen, flags);
}

/* A UDP service on 127.0.0.1 port 0 (echo, guard off), not started, and a client
 * socket connected to it. */
struct fixture {
    struct snap_box *box;
    struct udp *udp;
    int client;
};

static int setup(void **state)
{
    static struct fixture f;
    memset(&mock, 0, sizeof(mock));
    struct udp_settings *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->mode = PROTO_ECHO;
    s->max_reply_bytes = 65507;
    struct addr a;
    assert_int_equal(addr_parse("127.0.0.1:0", &a), 0);
    struct listener *l;
    assert_int_equal(listener_open(&a, SOCK_DGRAM, 0, false, &l), 0);
    assert_int_equal(listener_set_add(&s->listeners, l), 0); /* takes l's reference */
    assert_int_equal(snap_box_create(s, udp_settings_free, &f.box), 0);
    assert_int_equal(udp_create(f.box, &f.udp), 0);
    f.client = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    assert_true(f.client >= 0);
    assert_int_equal(connect(f.client, (struct sockaddr *)&l->bound.ss, l->bound.len), 0);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    udp_stop(f->udp);
    udp_destroy(f->udp);
    snap_box_destroy(f->box);
    close(f->client);
    return 0;
}

/* Queue datagrams "0" to "6" (one byte each) on the service's socket. */
static void send_batch(const struct fixture *f)
{
    for (char c = '0'; c < '0' + BATCH; c++)
        assert_int_equal(send(f->client, &c, 1, 0), 1);
}

/* Start the thread, let it answer the batch (udp_stop drains what is queued), and
 * return the replies received, in order, as a string. */
static const char *run_batch(struct fixture *f)
{
    static char got[BATCH + 1];
    assert_int_equal(udp_start(f->udp), 0);
    udp_stop(f->udp);
    size_t n = 0;
    char c;
    struct pollfd p = {f->client, POLLIN, 0};
    while (n < BATCH && poll(&p, 1, 200) == 1 && recv(f->client, &c, 1, 0) == 1)
        got[n++] = c;
    got[n] = '\0';
    return got;
}

static uint64_t counter(struct fixture *f, enum stats_counter c)
{
    return atomic_load(&udp_stats(f->udp)->v[c]);
}

/* The batch as one: one recvmmsg and, without the mock, one sendmmsg. */
static void batch_sent_whole(void **state)
{
    struct fixture *f = *state;
    send_batch(f);
    mock.is_on = true; /* no limits, no failures: just count the calls */
    assert_string_equal(run_batch(f), "0123456");
    assert_int_equal(mock.calls, 1);
    assert_int_equal(counter(f, STAT_udp_batches), 1);
    assert_int_equal(counter(f, STAT_udp_datagrams_out), BATCH);
    assert_int_equal(counter(f, STAT_udp_bytes_out), BATCH);
}

/* sendmmsg takes 2, then 3, then the rest: every reply goes, in order, in 3 calls. */
static void short_counts_resent(void **state)
{
    struct fixture *f = *state;
    send_batch(f);
    mock.is_on = true;
    mock.limit[0] = 2;
    mock.limit[1] = 3;
    assert_string_equal(run_batch(f), "0123456");
    assert_int_equal(mock.calls, 3);
    assert_int_equal(counter(f, STAT_udp_datagrams_out), BATCH);
    assert_int_equal(counter(f, STAT_udp_send_errors), 0);
}

/* sendmmsg takes 2, refuses the third reply (EAGAIN), takes 1, refuses the fifth
 * (ENOBUFS), then the rest: "2" and "4" are counted as send errors and skipped, the
 * rest arrive in order. */
static void refused_replies_skipped(void **state)
{
    struct fixture *f = *state;
    send_batch(f);
    mock.is_on = true;
    mock.limit[0] = 2;
    mock.fail_errno[1] = EAGAIN;
    mock.limit[2] = 1;
    mock.fail_errno[3] = ENOBUFS;
    assert_string_equal(run_batch(f), "01356");
    assert_int_equal(mock.calls, 5);
    assert_int_equal(counter(f, STAT_udp_datagrams_out), 5);
    assert_int_equal(counter(f, STAT_udp_bytes_out), 5);
    assert_int_equal(counter(f, STAT_udp_send_errors), 2);
}

/* A sendmmsg that always fails: one call per reply, each counted, and no more. */
static void always_refused_never_spins(void **state)
{
    struct fixture *f = *state;
    send_batch(f);
    mock.is_on = true;
    for (unsigned i = 0; i < CALLS; i++)
        mock.fail_errno[i] = EAGAIN;
    assert_string_equal(run_batch(f), "");
    assert_int_equal(mock.calls, BATCH);
    assert_int_equal(counter(f, STAT_udp_send_errors), BATCH);
    assert_int_equal(counter(f, STAT_udp_datagrams_out), 0);
    assert_int_equal(counter(f, STAT_udp_datagrams_in), BATCH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(batch_sent_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(short_counts_resent, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_replies_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(always_refused_never_spins, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
