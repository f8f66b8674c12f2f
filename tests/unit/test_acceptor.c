/* test_acceptor: how the acceptor answers each accept4() error, against accept(2):
 * EAGAIN waits for readiness; the network errors a pending connection can carry
 * (ECONNABORTED, EPROTO, ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH,
 * EOPNOTSUPP, ENETUNREACH), a firewall's EPERM and EINTR are retried at once; running
 * out of a resource (EMFILE, ENFILE, ENOBUFS, ENOMEM) and programming errors (EBADF,
 * EINVAL, ENOTSOCK, EFAULT) back off rather than spin. And a create that fails before
 * the acceptor has its fds (open is wrapped to fail) closes none it does not own: fd 0
 * survives. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "acceptor.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "snap.h"

int __real_open(const char *path, int flags, ...);
static bool is_open_failing; /* the next open fails with EMFILE */

/* open, as the acceptor's reserve fd calls it, failing on demand. */
int __wrap_open(const char *path, int flags, ...);
int __wrap_open(const char *path, int flags, ...)
{
    if (is_open_failing) {
        errno = EMFILE;
        return -1;
    }
    return __real_open(path, flags);
}

struct verdict_case {
    int err;
    enum acceptor_verdict want;
};

static const struct verdict_case cases[] = {
    {EAGAIN, ACCEPTOR_WAIT},        {EWOULDBLOCK, ACCEPTOR_WAIT},  {EINTR, ACCEPTOR_RETRY},
    {ECONNABORTED, ACCEPTOR_RETRY}, {EPROTO, ACCEPTOR_RETRY},      {ENETDOWN, ACCEPTOR_RETRY},
    {ENOPROTOOPT, ACCEPTOR_RETRY},  {EHOSTDOWN, ACCEPTOR_RETRY},   {ENONET, ACCEPTOR_RETRY},
    {EHOSTUNREACH, ACCEPTOR_RETRY}, {EOPNOTSUPP, ACCEPTOR_RETRY},  {ENETUNREACH, ACCEPTOR_RETRY},
    {EPERM, ACCEPTOR_RETRY},        {EMFILE, ACCEPTOR_BACK_OFF},   {ENFILE, ACCEPTOR_BACK_OFF},
    {ENOBUFS, ACCEPTOR_BACK_OFF},   {ENOMEM, ACCEPTOR_BACK_OFF},   {EBADF, ACCEPTOR_BACK_OFF},
    {EINVAL, ACCEPTOR_BACK_OFF},    {ENOTSOCK, ACCEPTOR_BACK_OFF}, {EFAULT, ACCEPTOR_BACK_OFF},
    {0, ACCEPTOR_BACK_OFF},
};

static const char *verdict_name(enum acceptor_verdict v)
{
    return v == ACCEPTOR_WAIT ? "wait" : v == ACCEPTOR_RETRY ? "retry" : "back off";
}

static void test_classify(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum acceptor_verdict got = acceptor_classify(cases[i].err);
        if (got != cases[i].want)
            fail_msg("accept error %d (%s): %s, expected %s", cases[i].err, strerror(cases[i].err),
                     verdict_name(got), verdict_name(cases[i].want));
    }
}

/* A create that fails at its first fd closes nothing else: before, calloc left epfd and
 * wake_fd at 0 and the cleanup closed fd 0. */
static void test_failed_create_keeps_fd_0(void **state)
{
    (void)state;
    struct acceptor_settings *settings = calloc(1, sizeof(*settings));
    struct snap_box *box;
    assert_int_equal(snap_box_create(settings, acceptor_settings_free, &box), 0);
    struct acceptor *a = NULL;
    is_open_failing = true;
    int rc = acceptor_create(box, 10, NULL, &a);
    is_open_failing = false;
    assert_int_equal(rc, -EMFILE);
    assert_null(a);
    assert_true(fcntl(0, F_GETFD) >= 0);
    snap_box_destroy(box);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_failed_create_keeps_fd_0),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
