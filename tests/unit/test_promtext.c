/* test_promtext: the text exposition format, byte for byte: HELP and TYPE lines with
 * help text escaped, samples with and without labels, integers written whole (a 64-bit
 * counter loses no digit), doubles read back exactly, infinities, cumulative histogram
 * buckets with +Inf, _sum and _count, label values escaped, and growth past the first
 * allocation. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promtext.h"

static struct promtext text;

static int setup(void **state)
{
    (void)state;
    promtext_init(&text);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    promtext_free(&text);
    return 0;
}

static void expect_text(const char *want)
{
    assert_false(text.is_out_of_memory);
    assert_non_null(text.data);
    assert_int_equal(text.len, strlen(text.data));
    assert_string_equal(text.data, want);
}

static void test_family_and_samples(void **state)
{
    (void)state;
    promtext_family(&text, "echod_tcp_accepted_total", "counter", "sockets accepted");
    promtext_uint(&text, "echod_tcp_accepted_total", NULL, UINT64_MAX);
    promtext_family(&text, "echod_worker_connections", "gauge", "open connections");
    promtext_uint(&text, "echod_worker_connections", "worker=\"0\"", 3);
    promtext_uint(&text, "echod_worker_connections", "", 4);
    expect_text("# HELP echod_tcp_accepted_total sockets accepted\n"
                "# TYPE echod_tcp_accepted_total counter\n"
                "echod_tcp_accepted_total 18446744073709551615\n"
                "# HELP echod_worker_connections open connections\n"
                "# TYPE echod_worker_connections gauge\n"
                "echod_worker_connections{worker=\"0\"} 3\n"
                "echod_worker_connections 4\n");
}

/* HELP escapes backslash and newline (and leaves quotes alone, as the format says). */
static void test_help_escaped(void **state)
{
    (void)state;
    promtext_family(&text, "x", "gauge", "a \\ b\nc \"d\"");
    expect_text("# HELP x a \\\\ b\\nc \"d\"\n# TYPE x gauge\n");
}

static void test_doubles(void **state)
{
    (void)state;
    promtext_double(&text, "a", NULL, 0.1);
    promtext_double(&text, "b", NULL, 1764443400.125);
    promtext_double(&text, "c", NULL, INFINITY);
    promtext_double(&text, "d", NULL, -INFINITY);
    promtext_double(&text, "e", NULL, 0);
    promtext_double(&text, "f", NULL, 1.0 / 3);
    expect_text("a 0.1\nb 1764443400.125\nc +Inf\nd -Inf\ne 0\nf 0.33333333333333331\n");
    assert_true(strtod("0.33333333333333331", NULL) == 1.0 / 3);
}

/* Buckets are cumulative, end with +Inf, and _count is the +Inf bucket. */
static void test_histogram(void **state)
{
    (void)state;
    static const double bounds[] = {0.001, 0.5, 60};
    static const uint64_t counts[] = {2, 0, 5, 1};
    promtext_histogram(&text, "h", bounds, counts, 3, 12.25);
    expect_text("h_bucket{le=\"0.001\"} 2\n"
                "h_bucket{le=\"0.5\"} 2\n"
                "h_bucket{le=\"60\"} 7\n"
                "h_bucket{le=\"+Inf\"} 8\n"
                "h_sum 12.25\n"
                "h_count 8\n");
}

static void test_escape_label(void **state)
{
    (void)state;
    char buf[32];
    promtext_escape_label("1.0 \"x\"\\\n", buf, sizeof(buf));
    assert_string_equal(buf, "1.0 \\\"x\\\"\\\\\\n");
    promtext_escape_label("ab\"", buf, 4); /* no room for the escape: cut before it */
    assert_string_equal(buf, "ab");
    promtext_escape_label("abcdef", buf, 4);
    assert_string_equal(buf, "abc");
}

/* Past the first 4 KiB the buffer grows and keeps every byte. */
static void test_growth(void **state)
{
    (void)state;
    char want[20000] = "";
    size_t n = 0;
    for (unsigned i = 0; i < 1000; i++) {
        promtext_uint(&text, "sample", NULL, i);
        n += (size_t)snprintf(want + n, sizeof(want) - n, "sample %u\n", i);
    }
    expect_text(want);
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_family_and_samples), TEST(test_help_escaped), TEST(test_doubles),
        TEST(test_histogram),          TEST(test_escape_label), TEST(test_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
