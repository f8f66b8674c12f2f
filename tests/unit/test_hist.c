/* test_hist: the latency histogram. Exact percentiles where every value has its own
 * counter; the 3-digit precision bound against exactly computed percentiles of a random
 * spread from 1 µs to an hour; merging (equal to recording everything in one), max,
 * count, reset and overflow; and the .hgrm output, byte for byte against files written by
 * the reference implementation (hdr-histogram-js 3.0.1, outputPercentileDistribution(5,
 * 1000), lowest 1, highest 3600000000, 3 digits) in tests/unit/hgrm/. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "hist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct hist *new_hist(void)
{
    struct hist *h = hist_create(HIST_HOUR_US, 3);
    assert_non_null(h);
    return h;
}

/* Below 2048 every value has its own counter: percentiles are exact ranks. */
static void test_exact_percentiles(void **state)
{
    (void)state;
    struct hist *h = new_hist();
    for (uint64_t v = 1; v <= 1000; v++)
        assert_int_equal(hist_record(h, v), 0);
    assert_int_equal(hist_count(h), 1000);
    assert_int_equal(hist_max(h), 1000);
    assert_int_equal(hist_percentile(h, 50.0), 500);
    assert_int_equal(hist_percentile(h, 90.0), 900);
    assert_int_equal(hist_percentile(h, 99.0), 990);
    assert_int_equal(hist_percentile(h, 99.9), 999);
    assert_int_equal(hist_percentile(h, 99.99), 1000);
    assert_int_equal(hist_percentile(h, 100.0), 1000);
    assert_int_equal(hist_percentile(h, 0.0), 1);
    assert_true(hist_mean(h) > 500.49 && hist_mean(h) < 500.51);
    hist_free(h);
}

/* Skewed: 99 % fast, 1 % slow; the slow tail shows from p99.something on. */
static void test_skewed_tail(void **state)
{
    (void)state;
    struct hist *h = new_hist();
    for (int i = 0; i < 9900; i++)
        hist_record(h, 100);
    for (int i = 0; i < 100; i++)
        hist_record(h, 200000); /* 200 ms: bucket width 128 */
    assert_int_equal(hist_percentile(h, 50.0), 100);
    assert_int_equal(hist_percentile(h, 99.0), 100);
    /* 200000 is in [199936, 200063]; never reported above the max itself. */
    assert_int_equal(hist_percentile(h, 99.1), 200000);
    assert_int_equal(hist_percentile(h, 99.99), 200000);
    assert_int_equal(hist_max(h), 200000);
    hist_free(h);
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A log-uniform spread over 1 µs .. 1 h: each percentile is the exact one or above it by
 * at most 1/1024 of it (3 significant digits). */
static void test_precision_bound(void **state)
{
    (void)state;
    enum { N = 200000 };
    uint64_t *values = malloc(N * sizeof(*values));
    assert_non_null(values);
    struct hist *h = new_hist();
    uint64_t seed = 42;
    for (size_t i = 0; i < N; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        unsigned shift = (unsigned)(seed >> 58) % 31; /* values below 2^31 µs (36 min) */
        values[i] = 1 + ((seed >> 11) & (((uint64_t)1 << shift) - 1)) + ((uint64_t)1 << shift);
        assert_int_equal(hist_record(h, values[i]), 0);
    }
    qsort(values, N, sizeof(*values), compare_u64);
    const double ps[] = {1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};
    for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++) {
        size_t rank = (size_t)(ps[k] / 100.0 * N + 0.5);
        uint64_t exact = values[rank == 0 ? 0 : rank - 1];
        uint64_t got = hist_percentile(h, ps[k]);
        if (got < exact || (double)(got - exact) > (double)exact / 1024.0)
            fail_msg("p%g: exact %llu, histogram %llu (beyond 1/1024)", ps[k],
                     (unsigned long long)exact, (unsigned long long)got);
    }
    assert_int_equal(hist_max(h), values[N - 1]);
    hist_free(h);
    free(values);
}

/* Merging two histograms gives what recording everything in one gives. */
static void test_merge(void **state)
{
    (void)state;
    struct hist *a = new_hist(), *b = new_hist(), *all = new_hist();
    for (uint64_t v = 1; v <= 50000; v += 7) {
        hist_record(v % 2 ? a : b, v * 3);
        hist_record(all, v * 3);
    }
    hist_record(b, HIST_HOUR_US + 5); /* an overflow travels too */
    hist_record(all, HIST_HOUR_US + 5);
    assert_int_equal(hist_merge(a, b), 0);
    assert_int_equal(hist_count(a), hist_count(all));
    assert_int_equal(hist_max(a), HIST_HOUR_US + 5);
    assert_int_equal(hist_overflow_count(a), 1);
    for (double p = 0; p <= 100.0; p += 0.5)
        assert_int_equal(hist_percentile(a, p), hist_percentile(all, p));
    /* Histograms of another range or precision do not merge. */
    struct hist *other = hist_create(1000000, 3), *coarse = hist_create(HIST_HOUR_US, 2);
    assert_non_null(other);
    assert_non_null(coarse);
    assert_int_equal(hist_merge(a, other), -EINVAL);
    assert_int_equal(hist_merge(a, coarse), -EINVAL);
    hist_free(other);
    hist_free(coarse);
    hist_free(a);
    hist_free(b);
    hist_free(all);
}

/* A value above the range is counted at the top, kept exactly as the max, and said. */
static void test_overflow(void **state)
{
    (void)state;
    struct hist *h = hist_create(10000, 3);
    assert_non_null(h);
    assert_int_equal(hist_record(h, 10), 0);
    assert_int_equal(hist_record(h, 10000), 0);
    assert_int_equal(hist_record(h, 25000), -ERANGE);
    assert_int_equal(hist_record(h, UINT64_MAX), -ERANGE);
    assert_int_equal(hist_count(h), 4);
    assert_int_equal(hist_overflow_count(h), 2);
    assert_int_equal(hist_max(h), UINT64_MAX);
    /* Counted in 10000's bucket [10000, 10007]: at least the range's top is reported. */
    uint64_t p100 = hist_percentile(h, 100.0);
    assert_true(p100 >= 10000 && p100 <= 10007);
    assert_int_equal(hist_percentile(h, 25.0), 10);
    hist_free(h);
}

static void test_max_count_reset(void **state)
{
    (void)state;
    struct hist *h = new_hist();
    assert_int_equal(hist_count(h), 0);
    assert_int_equal(hist_max(h), 0);
    assert_int_equal(hist_percentile(h, 99.0), 0);
    hist_record(h, 0);
    hist_record(h, 123456789);
    hist_record(h, 77);
    assert_int_equal(hist_count(h), 3);
    assert_int_equal(hist_max(h), 123456789);
    assert_int_equal(hist_percentile(h, 100.0), 123456789);
    assert_int_equal(hist_percentile(h, 1.0), 0);
    hist_reset(h);
    assert_int_equal(hist_count(h), 0);
    assert_int_equal(hist_max(h), 0);
    assert_int_equal(hist_percentile(h, 50.0), 0);
    hist_free(h);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    errno = 0;
    assert_null(hist_create(HIST_HOUR_US, 0));
    assert_int_equal(errno, EINVAL);
    assert_null(hist_create(HIST_HOUR_US, 6));
    assert_null(hist_create(1, 3));
}

/* Write h's .hgrm and compare it with tests/unit/hgrm/NAME byte for byte. */
static void check_hgrm(const struct hist *h, const char *name)
{
    char path[4096];
    const char *srcdir = getenv("ECHOD_SRCDIR");
    snprintf(path, sizeof(path), "%s/tests/unit/hgrm/%s", srcdir ? srcdir : ".", name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    static char want[65536], got[65536];
    size_t want_len = fread(want, 1, sizeof(want) - 1, f);
    fclose(f);
    want[want_len] = '\0';
    FILE *out = fmemopen(got, sizeof(got), "w");
    assert_non_null(out);
    assert_int_equal(hist_write_hgrm(h, out, 1000.0), 0);
    long got_len = ftell(out);
    fclose(out);
    got[got_len] = '\0';
    if (strcmp(want, got) != 0) {
        size_t line = 1, start = 0;
        for (size_t i = 0; want[i] != '\0' && want[i] == got[i]; i++)
            if (want[i] == '\n') {
                line++;
                start = i + 1;
            }
        fail_msg("%s differs from line %zu:\nwant: %.*s\ngot:  %.*s", name, line,
                 (int)strcspn(want + start, "\n"), want + start, (int)strcspn(got + start, "\n"),
                 got + start);
    }
}

static void test_hgrm_uniform(void **state)
{
    (void)state;
    struct hist *h = new_hist();
    for (uint64_t v = 1; v <= 10007; v++)
        hist_record(h, v);
    check_hgrm(h, "uniform.hgrm");
    hist_free(h);
}

static void test_hgrm_skewed(void **state)
{
    (void)state;
    struct hist *h = new_hist();
    for (int i = 0; i < 990; i++)
        hist_record(h, 100);
    for (int i = 0; i < 9; i++)
        hist_record(h, 5000);
    hist_record(h, 200063);
    check_hgrm(h, "skewed.hgrm");
    hist_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_percentiles), cmocka_unit_test(test_skewed_tail),
        cmocka_unit_test(test_precision_bound),   cmocka_unit_test(test_merge),
        cmocka_unit_test(test_overflow),          cmocka_unit_test(test_max_count_reset),
        cmocka_unit_test(test_bad_arguments),     cmocka_unit_test(test_hgrm_uniform),
        cmocka_unit_test(test_hgrm_skewed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
