/* test_bench: echod-bench against the real echod. TCP and UDP runs count exactly the
 * messages asked for and verify them; a server that answers wrongly (greet mode) is a
 * mismatch with exit 1, a refused port exits 1 saying so, and bad usage exits 64. With
 * -g, greet mode's replies (the greeting, then the message) verify, pipelined too, and
 * a wrong -g is a mismatch. */
#include "config.h"

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int setup_greet(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  "tcp = { listen = [ \"127.0.0.1:0\" ]; mode = \"greet\"; };\n"
                  "udp = { listen = [ \"127.0.0.1:0\" ]; mode = \"greet\"; };\n",
                  NULL);
    return 0;
}

/* Run echod-bench with the NULL-terminated args, within 30 s. */
static struct h_output run_bench(const char *const *args)
{
    return h_run_env("ECHOD_BENCH_BIN", args, NULL, 0, 30000);
}

/* The number after " key=" in the summary line, or fail. */
static unsigned long long summary_value(const struct h_output *r, const char *key)
{
    char needle[64];
    snprintf(needle, sizeof(needle), " %s=", key);
    const char *at = strstr(r->out, needle);
    if (at == NULL)
        fail_msg("no '%s' in echod-bench's summary: \"%s\"", needle, r->out);
    return strtoull(at + strlen(needle), NULL, 10);
}

static void port_arg(char *buf, size_t size, const struct sockaddr_storage *sa)
{
    snprintf(buf, size, "%u", h_port_of(sa));
}

static void bench_tcp_counts_every_message(void **state)
{
    (void)state;
    char port[16];
    port_arg(port, sizeof(port), &echod.tcp[0]);
    const char *args[] = {"-p", port, "-c", "10", "-n", "200", "-s", "64", "-q", NULL};
    struct h_output r = run_bench(args);
    h_note("%s", r.out);
    if (r.code != 0)
        fail_msg("echod-bench exited %d, stderr \"%s\"", r.code, r.err);
    assert_int_equal(summary_value(&r, "msgs"), 10 * 200);
    assert_int_equal(summary_value(&r, "lost"), 0);
    if (strstr(r.out, "p99_us=") == NULL || strchr(r.out, '\n') != strrchr(r.out, '\n'))
        fail_msg("-q should print the one summary line only: \"%s\"", r.out);
    h_output_free(&r);
}

/* Large messages, pipelined: the stream splits them across reads and writes. */
static void bench_tcp_pipelined_large(void **state)
{
    (void)state;
    char port[16];
    port_arg(port, sizeof(port), &echod.tcp[0]);
    const char *args[] = {"-p", port, "-c", "4", "-n", "20", "-s", "100000", "-P", "4", NULL};
    struct h_output r = run_bench(args);
    if (r.code != 0)
        fail_msg("echod-bench exited %d, stderr \"%s\"", r.code, r.err);
    assert_int_equal(summary_value(&r, "msgs"), 4 * 20);
    if (strstr(r.out, "latency") == NULL)
        fail_msg("without -q the human-readable block is missing: \"%s\"", r.out);
    h_output_free(&r);
}

/* UDP: every datagram is either answered and verified or counted as lost. */
static void bench_udp_accounts_for_every_datagram(void **state)
{
    (void)state;
    char port[16];
    port_arg(port, sizeof(port), &echod.udp[0]);
    const char *args[] = {"-u", "-p", port, "-c",   "4",  "-n", "100",
                          "-P", "4",  "-T", "1000", "-q", NULL};
    struct h_output r = run_bench(args);
    if (r.code != 0)
        fail_msg("echod-bench -u exited %d, stderr \"%s\"", r.code, r.err);
    unsigned long long msgs = summary_value(&r, "msgs"), lost = summary_value(&r, "lost");
    h_note("udp: %llu answered, %llu lost", msgs, lost);
    assert_int_equal(msgs + lost, 4 * 100);
    h_output_free(&r);
}

/* Greet mode answers with a greeting first: every protocol must report a mismatch. */
static void bench_wrong_answers_exit_1(void **state)
{
    (void)state;
    char port[16];
    for (int is_udp = 0; is_udp <= 1; is_udp++) {
        port_arg(port, sizeof(port), is_udp ? &echod.udp[0] : &echod.tcp[0]);
        const char *args[] = {"-p", port, "-c", "2", "-n", "10", "-q", is_udp ? "-u" : NULL, NULL};
        struct h_output r = run_bench(args);
        if (r.code != 1 || strcasestr(r.err, "mismatch") == NULL)
            fail_msg("%s against greet mode: expected exit 1 and a mismatch, got exit %d, "
                     "stderr \"%s\"",
                     is_udp ? "udp" : "tcp", r.code, r.err);
        h_output_free(&r);
    }
}

/* -g TEXT: every reply is TEXT then the message, over TCP (pipelined, so replies run
 * together) and UDP; the default greet-mode greetings of setup_greet. */
static void bench_greeting_verifies(void **state)
{
    (void)state;
    char port[16];
    for (int is_udp = 0; is_udp <= 1; is_udp++) {
        port_arg(port, sizeof(port), is_udp ? &echod.udp[0] : &echod.tcp[0]);
        const char *greeting = is_udp ? "Hello, client! You sent: " : "Hello, ";
        const char *args[] = {"-p", port, "-c",  "4",  "-n",     "300", "-P",
                              "8",  "-s", "200", "-g", greeting, "-q",  is_udp ? "-u" : NULL,
                              NULL};
        struct h_output r = run_bench(args);
        if (r.code != 0)
            fail_msg("%s: echod-bench -g exited %d, stderr \"%s\"", is_udp ? "udp" : "tcp", r.code,
                     r.err);
        assert_int_equal(summary_value(&r, "msgs"), 4 * 300);
        h_output_free(&r);
        const char *wrong[] = {
            "-p", port, "-c", "1", "-n", "5", "-g", "Hi! ", "-q", is_udp ? "-u" : NULL, NULL};
        r = run_bench(wrong);
        if (r.code != 1 || strcasestr(r.err, "mismatch") == NULL)
            fail_msg("a wrong -g: expected exit 1 and a mismatch, got exit %d, stderr \"%s\"",
                     r.code, r.err);
        h_output_free(&r);
    }
}

static void bench_refused_exits_1(void **state)
{
    (void)state;
    char port[16];
    snprintf(port, sizeof(port), "%u", h_unused_tcp_port());
    const char *args[] = {"-p", port, "-c", "3", "-n", "5", NULL};
    struct h_output r = run_bench(args);
    if (r.code != 1 || strcasestr(r.err, "refused") == NULL)
        fail_msg("refused port: expected exit 1 saying so, got exit %d, stderr \"%s\"", r.code,
                 r.err);
    h_output_free(&r);
}

static void expect_usage(const char *const *args, const char *what)
{
    struct h_output r = run_bench(args);
    if (r.code != 64 || r.err[0] == '\0')
        fail_msg("%s: expected exit 64 and a message, got exit %d, stderr \"%s\"", what, r.code,
                 r.err);
    h_output_free(&r);
}

/* -H localhost, where localhost is ::1 first, then 127.0.0.1, and only 127.0.0.1 has
 * echod: echod-bench tries each address in turn, then runs every connection there. */
static void bench_tries_each_address(void **state)
{
    (void)state;
    char port[16];
    port_arg(port, sizeof(port), &echod.tcp[0]);
    const char *args[] = {"-H", "localhost", "-p", port, "-c", "4", "-n", "50", "-q", NULL};
    struct h_output r;
    if (!h_run_localhost_v6_refused(h_port_of(&echod.tcp[0]), h_env("ECHOD_BENCH_BIN"), args, NULL,
                                    0, 30000, &r))
        skip();
    if (r.code != 0)
        fail_msg("-H localhost (::1 refused, then 127.0.0.1): echod-bench exited %d, stderr \"%s\"",
                 r.code, r.err);
    assert_int_equal(summary_value(&r, "msgs"), 4 * 50);
    h_output_free(&r);
}

static void bench_bad_usage_exits_64(void **state)
{
    (void)state;
    const char *both[] = {"-n", "5", "-d", "1", NULL};
    expect_usage(both, "-n with -d");
    const char *zero_conns[] = {"-c", "0", NULL};
    expect_usage(zero_conns, "-c 0");
    const char *bad_size[] = {"-s", "64k", NULL};
    expect_usage(bad_size, "-s 64k");
    const char *tiny_udp[] = {"-u", "-s", "4", NULL};
    expect_usage(tiny_udp, "-u -s 4");
    const char *bad_port[] = {"-p", "http", NULL};
    expect_usage(bad_port, "-p http");
    const char *extra[] = {"-n", "1", "extra", NULL};
    expect_usage(extra, "an extra argument");
    const char *short_line[] = {"-g", "Hi ", "-s", "8", NULL};
    expect_usage(short_line, "-g with -s 8 over TCP");
    const char *udp_too_big[] = {"-u", "-g", "Hi ", "-s", "65505", NULL};
    expect_usage(udp_too_big, "-u -g with a reply over 65507 bytes");
    /* A bad option is named as getopt names it: the letter alone, even in a cluster. */
    char port[16];
    snprintf(port, sizeof(port), "%u", h_unused_tcp_port());
    const struct {
        const char *arg, *needle;
    } bad[] = {
        {"-qx", "invalid option -- 'x'"},
        {"-xq", "invalid option -- 'x'"},
        {"--bogus", "unrecognized option '--bogus'"},
        {"-qc", "option requires an argument -- 'c'"},
        {"--version=1", "option '--version' doesn't allow an argument"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *args[] = {"-p", port, "-T", "1000", "-n", "1", bad[i].arg, NULL};
        h_expect_usage_error("ECHOD_BENCH_BIN", "echod-bench", args, bad[i].needle);
    }
}

int main(void)
{
    h_init("test_bench", 120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(bench_tcp_counts_every_message, h_setup_echo, h_teardown),
        cmocka_unit_test_setup_teardown(bench_tcp_pipelined_large, h_setup_echo, h_teardown),
        cmocka_unit_test_setup_teardown(bench_udp_accounts_for_every_datagram, h_setup_echo,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(bench_wrong_answers_exit_1, setup_greet, h_teardown),
        cmocka_unit_test_setup_teardown(bench_greeting_verifies, setup_greet, h_teardown),
        cmocka_unit_test_teardown(bench_refused_exits_1, h_teardown),
        cmocka_unit_test_setup_teardown(bench_tries_each_address, h_setup_echo, h_teardown),
        cmocka_unit_test_teardown(bench_bad_usage_exits_64, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
