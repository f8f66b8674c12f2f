/* test_histogram: the connection-duration histogram. Each duration lands in the first
 * bucket whose bound it does not exceed (a bound is inclusive, as Prometheus's le
 * says), anything over an hour in the last; the bounds in seconds are the ms bounds;
 * per-thread copies sum bucket by bucket, with their sums. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "histogram.h"

static void test_buckets_and_bounds(void **state)
{
    (void)state;
    static struct histogram h;
    memset(&h, 0, sizeof(h));
    const uint64_t ms[] = {0, 1, 2, 5, 6, 999, 1000, 1001, 3600000, 3600001, UINT32_MAX};
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
        histogram_observe_ms(&h, ms[i]);
    struct histogram *all[] = {&h};
    struct histogram_totals t;
    histogram_sum(all, 1, &t);
    /* bounds 1, 5, 10, 50, 100, 500, 1000, 5000, ... 3600000 ms, then +Inf */
    const uint64_t want[HISTOGRAM_BUCKETS] = {2, 2, 1, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0, 1, 2};
    assert_memory_equal(t.counts, want, sizeof(want));
    uint64_t sum = 0;
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
        sum += ms[i];
    assert_int_equal(t.sum_ms, sum);
    double bounds[HISTOGRAM_BOUNDS];
    histogram_bounds_s(bounds);
    assert_true(bounds[0] == 0.001);
    assert_true(bounds[6] == 1);
    assert_true(bounds[HISTOGRAM_BOUNDS - 1] == 3600);
    for (size_t b = 1; b < HISTOGRAM_BOUNDS; b++)
        assert_true(bounds[b] > bounds[b - 1]);
}

/* Two threads' histograms sum bucket by bucket. */
static void test_sum_of_threads(void **state)
{
    (void)state;
    static struct histogram a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    histogram_observe_ms(&a, 3);
    histogram_observe_ms(&b, 4);
    histogram_observe_ms(&b, 20000);
    struct histogram *all[] = {&a, &b};
    struct histogram_totals t;
    histogram_sum(all, 2, &t);
    assert_int_equal(t.counts[1], 2);
    assert_int_equal(t.counts[9], 1); /* 10 s < 20 s <= 30 s */
    assert_int_equal(t.sum_ms, 20007);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_and_bounds),
        cmocka_unit_test(test_sum_of_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
