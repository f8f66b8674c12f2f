/* test_report: echod-bench's output formats, byte for byte. The name=value line keeps
 * its first fields as scripts/bench.sh and older scripts read them, the JSON object has
 * the fields README lists and escapes what a JSON string must, the block for people
 * names the mode, and report_derive's rates and loss follow from the counts. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "report.h"

#include <stdio.h>
#include <string.h>

static const struct report_run run = {.tool = "echod-bench",
                                      .proto = "tcp",
                                      .target = "127.0.0.1:7007",
                                      .mode = "open",
                                      .threads = 2,
                                      .conns = 4,
                                      .size_bytes = 64,
                                      .pipeline = 1,
                                      .rate = 2000,
                                      .connect_rate = 0,
                                      .max_loss_percent = 1.0};

/* Figures of a 3 s open-loop run, derived. */
static struct report_figures figures(void)
{
    struct report_figures f = {.seconds = 3.0,
                               .msgs = 6000,
                               .connects = 4,
                               .p50_us = 171,
                               .p90_us = 279,
                               .p99_us = 978,
                               .p999_us = 2395,
                               .p9999_us = 5221,
                               .max_us = 5221,
                               .count = 6000,
                               .mean_us = 208.84};
    report_derive(&f, run.size_bytes);
    return f;
}

/* What fn writes for run and f, into buf. */
static const char *capture(void (*fn)(FILE *, const struct report_run *,
                                      const struct report_figures *),
                           const struct report_run *r, const struct report_figures *f)
{
    static char buf[4096];
    FILE *out = fmemopen(buf, sizeof(buf), "w");
    assert_non_null(out);
    fn(out, r, f);
    fclose(out);
    return buf;
}

static void test_derive(void **state)
{
    (void)state;
    struct report_figures f = {.seconds = 2.0, .msgs = 990, .lost = 10, .connects = 7};
    report_derive(&f, 1048576);
    assert_true(f.msgs_per_s == 495.0);
    assert_true(f.mib_per_s == 495.0);
    assert_true(f.connects_per_s == 3.5);
    assert_true(f.loss_percent == 1.0);
    struct report_figures none = {.seconds = 0.0};
    report_derive(&none, 64);
    assert_true(none.msgs_per_s == 0.0 && none.loss_percent == 0.0);
}

static void test_line(void **state)
{
    (void)state;
    struct report_figures f = figures();
    assert_string_equal(
        capture(report_line, &run, &f),
        "echod-bench proto=tcp target=127.0.0.1:7007 conns=4 size=64 pipeline=1 msgs=6000 "
        "lost=0 late=0 seconds=3.000 msgs_per_s=2000 mib_per_s=0.12 p50_us=171 p90_us=279 "
        "p99_us=978 max_us=5221 mode=open threads=2 rate=2000 p999_us=2395 p9999_us=5221 "
        "reordered=0 connects=4 connects_per_s=1\n");
}

static void test_json(void **state)
{
    (void)state;
    struct report_figures f = figures();
    assert_string_equal(
        capture(report_json, &run, &f),
        "{\"proto\":\"tcp\",\"target\":\"127.0.0.1:7007\",\"mode\":\"open\",\"threads\":2,"
        "\"connections\":4,\"size\":64,\"pipeline\":1,\"rate\":2000,\"connect_rate\":0,"
        "\"seconds\":3.000000,\"msgs\":6000,\"msgs_per_s\":2000.0,\"mib_per_s\":0.122,"
        "\"connects\":4,\"connects_per_s\":1.3,\"lost\":0,\"late\":0,\"reordered\":0,"
        "\"loss_percent\":0.0000,\"max_loss_percent\":1,\"latency_us\":{\"p50\":171,"
        "\"p90\":279,\"p99\":978,\"p99_9\":2395,\"p99_99\":5221,\"max\":5221,\"mean\":208.8,"
        "\"count\":6000}}\n");
}

/* A name the user typed goes into a JSON string escaped. */
static void test_json_escapes(void **state)
{
    (void)state;
    struct report_run odd = run;
    odd.target = "a\"b\\c\td:1";
    struct report_figures f = figures();
    const char *json = capture(report_json, &odd, &f);
    if (strstr(json, "\"target\":\"a\\\"b\\\\c\\u0009d:1\",") == NULL)
        fail_msg("target not escaped: %s", json);
}

static void test_human(void **state)
{
    (void)state;
    struct report_figures f = figures();
    assert_string_equal(capture(report_human, &run, &f),
                        "echod-bench: tcp 127.0.0.1:7007, 4 connections on 2 threads, 64-byte "
                        "messages, pipeline 1, open loop at 2000 msg/s\n"
                        "  messages    6000 echoed and verified in 3.000 s (0 lost, 0 late, 0 "
                        "reordered)\n"
                        "  throughput  2000 msg/s, 0.12 MiB/s\n"
                        "  latency     p50 0.171 ms, p90 0.279 ms, p99 0.978 ms, p99.9 2.395 ms, "
                        "p99.99 5.221 ms, max 5.221 ms\n");
    struct report_run churn = run;
    churn.mode = "churn";
    churn.rate = 0;
    churn.threads = 1;
    const char *text = capture(report_human, &churn, &f);
    if (strstr(text, "on 1 thread, 64-byte messages, pipeline 1, churn\n") == NULL ||
        strstr(text, "msg/s, 0.12 MiB/s, 1 connections/s\n") == NULL)
        fail_msg("churn block: %s", text);
}

static void test_progress(void **state)
{
    (void)state;
    static char buf[256];
    FILE *out = fmemopen(buf, sizeof(buf), "w");
    assert_non_null(out);
    report_progress(out, &run, 3.0, 42128.4, 5, 1234, false, 0);
    report_progress(out, &run, 4.0, 100.0, 0, 900, true, 77);
    fclose(out);
    assert_string_equal(buf,
                        "echod-bench:     3 s       42128 msg/s         5 errors  p99 1.234 ms\n"
                        "echod-bench:     4 s         100 msg/s         0 errors  p99 0.900 "
                        "ms  77 connections\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_derive), cmocka_unit_test(test_line),
        cmocka_unit_test(test_json),   cmocka_unit_test(test_json_escapes),
        cmocka_unit_test(test_human),  cmocka_unit_test(test_progress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
