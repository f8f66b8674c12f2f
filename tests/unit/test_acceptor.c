/* test_acceptor: how the acceptor answers each accept4() error, against accept(2):
 * EAGAIN waits for readiness; the network errors a pending connection can carry
 * (ECONNABORTED, EPROTO, ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH,
 * EOPNOTSUPP, ENETUNREACH), a firewall's EPERM and EINTR are retried at once; running
 * out of a resource (EMFILE, ENFILE, ENOBUFS, ENOMEM) and programming errors (EBADF,
 * EINVAL, ENOTSOCK, EFAULT) back off rather than spin. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "acceptor.h"

#include <errno.h>
#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
