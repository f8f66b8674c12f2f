/* test_promparse: the Prometheus text reader that echod-cli --stat relies on. Sample lines
 * with and without labels and timestamps; label values with escaped quotes, backslashes
 * and newlines, read back unescaped; NaN, +Inf, -Inf and exponents; comments, HELP and
 * TYPE lines and blank lines skipped; CRLF line ends; and every kind of garbage line
 * refused (not misread), while promparse_each still yields the good lines around it. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "promparse.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static struct promparse_sample parse_ok(const char *line)
{
    struct promparse_sample s;
    memset(&s, 0xa5, sizeof(s));
    int rc = promparse_parse_line(line, strlen(line), &s);
    if (rc != 1)
        fail_msg("promparse_parse_line(\"%s\") returned %d, expected a sample", line, rc);
    return s;
}

static void expect_name(const struct promparse_sample *s, const char *name)
{
    if (!promparse_is_named(s, name))
        fail_msg("name \"%.*s\", expected \"%s\"", (int)s->name_len, s->name, name);
}

static void expect_label(const struct promparse_sample *s, const char *name, const char *want)
{
    char got[128];
    int rc = promparse_label(s, name, got, sizeof(got));
    if (rc < 0)
        fail_msg("label %s: %d, expected \"%s\"", name, rc, want);
    assert_int_equal(rc, strlen(want));
    assert_string_equal(got, want);
}

static void plain_sample(void **state)
{
    (void)state;
    struct promparse_sample s = parse_ok("echod_tcp_accepted_total 12345");
    expect_name(&s, "echod_tcp_accepted_total");
    assert_false(promparse_is_named(&s, "echod_tcp_accepted"));
    assert_false(promparse_is_named(&s, "echod_tcp_accepted_total_x"));
    assert_null(s.labels);
    assert_true(s.value == 12345.0);
    assert_false(s.has_timestamp);
    char buf[8];
    assert_int_equal(promparse_label(&s, "worker", buf, sizeof(buf)), -ENOENT);

    s = parse_ok("process_start_time_seconds 1764443000.25 1764443001000");
    expect_name(&s, "process_start_time_seconds");
    assert_true(s.value == 1764443000.25);
    assert_true(s.has_timestamp);
    assert_int_equal(s.timestamp_ms, 1764443001000LL);

    s = parse_ok("ns:sub_metric:x  -7\t-12\r"); /* colons, blanks and a tab, CR */
    expect_name(&s, "ns:sub_metric:x");
    assert_true(s.value == -7.0);
    assert_int_equal(s.timestamp_ms, -12);
    /* A counter near 2^64 reads as the nearest double. */
    s = parse_ok("big 18446744073709551615");
    assert_true(s.value == 18446744073709551615.0);
}

static void special_values_and_exponents(void **state)
{
    (void)state;
    assert_true(isnan(parse_ok("a NaN").value));
    double inf = parse_ok("a +Inf").value;
    assert_true(isinf(inf) && inf > 0);
    inf = parse_ok("a -Inf").value;
    assert_true(isinf(inf) && inf < 0);
    assert_true(parse_ok("a 1.5e+06").value == 1.5e6);
    assert_true(parse_ok("a 2E-3").value == 2e-3);
    assert_true(parse_ok("a 1e3 17").value == 1000.0);
    assert_true(parse_ok("a -0.0").value == 0.0);
    assert_true(parse_ok("a .5").value == 0.5);
    /* Underflow is no error (as Go's ParseFloat): a subnormal, or 0. */
    double tiny = parse_ok("a 1e-320").value;
    assert_true(tiny > 0 && tiny < 1e-300);
    assert_true(parse_ok("a 1e-400").value == 0.0);
}

static void labels(void **state)
{
    (void)state;
    struct promparse_sample s = parse_ok("echod_worker_connections{worker=\"3\"} 17");
    expect_name(&s, "echod_worker_connections");
    expect_label(&s, "worker", "3");
    assert_true(s.value == 17.0);

    /* Escaped quote, backslash and newline; a '}' and a ',' inside a value; a trailing
     * comma and blanks around the parts. */
    s = parse_ok("m{path=\"C:\\\\dir\\\\\\\"x\\\"\",msg=\"a\\nb\", brace = \"}{,\" ,} 2.5 99");
    expect_name(&s, "m");
    expect_label(&s, "path", "C:\\dir\\\"x\"");
    expect_label(&s, "msg", "a\nb");
    expect_label(&s, "brace", "}{,");
    char buf[4];
    assert_int_equal(promparse_label(&s, "pat", buf, sizeof(buf)), -ENOENT);
    assert_int_equal(promparse_label(&s, "brace", buf, sizeof(buf)), 3);
    assert_int_equal(promparse_label(&s, "path", buf, sizeof(buf)), -ENOSPC);
    assert_true(s.value == 2.5);
    assert_int_equal(s.timestamp_ms, 99);

    s = parse_ok("echod_build_info{version=\"1.2.3\"} 1");
    expect_label(&s, "version", "1.2.3");
    s = parse_ok("empty{} 0");
    assert_non_null(s.labels);
    assert_int_equal(s.labels_len, 0);
    s = parse_ok("h_bucket{le=\"+Inf\"} 4");
    expect_label(&s, "le", "+Inf");
    s = parse_ok("e{a=\"\"} 1");
    expect_label(&s, "a", "");
}

static void comments_and_blanks(void **state)
{
    (void)state;
    const char *skipped[] = {
        "",
        "   ",
        "\t",
        "\r",
        "# HELP echod_tcp_accepted_total sockets accepted",
        "# TYPE echod_tcp_accepted_total counter",
        "#",
        "  # indented comment 1 2",
        "# EOF",
    };
    for (size_t i = 0; i < sizeof(skipped) / sizeof(skipped[0]); i++) {
        struct promparse_sample s;
        int rc = promparse_parse_line(skipped[i], strlen(skipped[i]), &s);
        if (rc != 0)
            fail_msg("\"%s\": %d, expected 0 (skipped)", skipped[i], rc);
    }
}

static void garbage_refused(void **state)
{
    (void)state;
    const char *garbage[] = {
        "echod_tcp_accepted_total",  /* no value */
        "echod_tcp_accepted_total ", /* no value */
        "9lives 1",                  /* a name cannot start with a digit */
        "{a=\"b\"} 1",               /* no name */
        "name-x 1",                  /* '-' is not a name character */
        "name 1 2 3",                /* more than a timestamp after the value */
        "name 1,5",                  /* not a number */
        "name 12abc",                /* trailing junk */
        "name 0x",                   /* half a hex number */
        "name 1 1.5",                /* a timestamp is an integer */
        "name 1e999",                /* overflows a double */
        "name{a=1} 1",               /* unquoted label value */
        "name{a=\"1} 1",             /* unterminated label value */
        "name{a=\"1\" 1",            /* no closing brace */
        "name{a=\"1\"b=\"2\"} 1",    /* no comma between labels */
        "name{a=\"\\q\"} 1",         /* not an escape the format has */
        "name{=\"1\"} 1",            /* no label name */
        "name{a:b=\"1\"} 1",         /* ':' is not in label names */
        "name{a=\"1\"}",             /* no value after the labels */
        "name{,} 1",                 /* a lone comma */
        "name 123456789012345678901234567890123456789012345678901234567890123456789", /* long */
        "HTTP/1.0 200 OK", /* not the body */
        "\x01\x02 1",      /* binary */
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        struct promparse_sample s, before;
        memset(&s, 0x5a, sizeof(s));
        before = s;
        int rc = promparse_parse_line(garbage[i], strlen(garbage[i]), &s);
        if (rc != -EINVAL)
            fail_msg("\"%s\": %d, expected -EINVAL", garbage[i], rc);
        assert_memory_equal(&s, &before, sizeof(s));
    }
}

/* The line is read within its length only: no NUL needed, nothing past it read. */
static void bounded_by_length(void **state)
{
    (void)state;
    const char text[] = "abc 12345";
    struct promparse_sample s;
    assert_int_equal(promparse_parse_line(text, 6, &s), 1);
    assert_true(s.value == 12.0);
    assert_int_equal(promparse_parse_line(text, 3, &s), -EINVAL);
}

struct collected {
    char names[16][64];
    double values[16];
    size_t count;
};

static void collect(const struct promparse_sample *s, void *arg)
{
    struct collected *c = arg;
    assert_true(c->count < 16);
    snprintf(c->names[c->count], sizeof(c->names[0]), "%.*s", (int)s->name_len, s->name);
    c->values[c->count++] = s->value;
}

/* A whole page, CRLF and LF mixed, garbage between good lines, no final newline. */
static void each_line_of_a_page(void **state)
{
    (void)state;
    const char page[] = "# HELP echod_tcp_connections open TCP connections\n"
                        "# TYPE echod_tcp_connections gauge\r\n"
                        "echod_tcp_connections 7\r\n"
                        "\n"
                        "this is not a metric line\n"
                        "echod_worker_queue_length{worker=\"0\"} 1\n"
                        "echod_worker_queue_length{worker=\"1\" 2\n"
                        "echod_tcp_reads_total 1e+03";
    struct collected c = {0};
    assert_int_equal(promparse_each(page, sizeof(page) - 1, collect, &c), 2);
    assert_int_equal(c.count, 3);
    assert_string_equal(c.names[0], "echod_tcp_connections");
    assert_true(c.values[0] == 7.0);
    assert_string_equal(c.names[1], "echod_worker_queue_length");
    assert_true(c.values[1] == 1.0);
    assert_string_equal(c.names[2], "echod_tcp_reads_total");
    assert_true(c.values[2] == 1000.0);
    memset(&c, 0, sizeof(c));
    assert_int_equal(promparse_each("", 0, collect, &c), 0);
    assert_int_equal(c.count, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_sample),
        cmocka_unit_test(special_values_and_exponents),
        cmocka_unit_test(labels),
        cmocka_unit_test(comments_and_blanks),
        cmocka_unit_test(garbage_refused),
        cmocka_unit_test(bounded_by_length),
        cmocka_unit_test(each_line_of_a_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
