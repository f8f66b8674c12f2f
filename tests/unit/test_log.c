/* test_log: recognizing the journal. JOURNAL_STREAM is "DEV:INO" in decimal, as systemd
 * sets it; only an exact match of stderr's device and inode means the journal, and
 * anything malformed means "not the journal" (lines then stay unchanged). The prefixes
 * themselves are checked end to end by tests/integration/test_systemd. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "log.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void journal_stream_matches_exactly(void **state)
{
    (void)state;
    struct stat st;
    memset(&st, 0, sizeof(st));
    st.st_dev = 64769;
    st.st_ino = 1234567;
    assert_true(log_stream_is_journal("64769:1234567", &st));
    const char *others[] = {
        NULL,
        "",
        "64769",
        "64769:",
        ":1234567",
        "64769:1234568",
        "64768:1234567",
        "64769:1234567x",
        "64769:1234567:1",
        "x64769:1234567",
        "64769 1234567",
        "64769;1234567",
        "64769:-1234567",
        "+64769:1234567",
        "64769:+1234567",
        " 64769:1234567",
        "64769: 1234567",
    };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        if (log_stream_is_journal(others[i], &st))
            fail_msg("JOURNAL_STREAM=\"%s\" taken for %llu:%llu", others[i] ? others[i] : "(unset)",
                     (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(journal_stream_matches_exactly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
