/* test_guard: the UDP reflection guard on sources no loopback test can send from. Every
 * source rule in IPv4, IPv6 and v4-mapped form (low ports, reflector ports, own ports,
 * multicast, broadcast, unspecified, 0/8, loopback allowed and refused); malformed and
 * random sockaddrs in buffers of exactly len bytes; then, on a fake clock, the token
 * buckets (burst, refill, /24 and /64 grouping, v4-mapped grouped with IPv4, loopback
 * exempt unless limited), the global cap, the fixed-size table under 100,000 spoofed
 * prefixes (no allocation; a source being limited is not evicted), and the drop log.
 * malloc, calloc and realloc are wrapped (see Makefile.am) to count allocations. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "guard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

static unsigned long allocations; /* malloc, calloc and realloc calls */

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);

void *__wrap_malloc(size_t size)
{
    allocations++;
    return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    allocations++;
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    allocations++;
    return __real_realloc(p, size);
}

/* "1.2.3.4" or an IPv6 text (with ':') and a port, as recvfrom would fill them. */
static socklen_t make_addr(struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
    memset(ss, 0, sizeof(*ss));
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) != 1)
            fail_msg("bad IPv6 literal in the test: %s", ip);
        return sizeof(*sin6);
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    if (inet_pton(AF_INET, ip, &sin->sin_addr) != 1)
        fail_msg("bad IPv4 literal in the test: %s", ip);
    return sizeof(*sin);
}

static const char *const verdict_names[] = {"PASS",      "DROP_PORT", "DROP_REFLECTOR", "DROP_OWN",
                                            "DROP_ADDR", "DROP_RATE", "DROP_GLOBAL"};

/* guard_check_source on ip:port must give want. */
static void expect_source(const struct guard_policy *p, const char *ip, uint16_t port,
                          enum guard_verdict want)
{
    struct sockaddr_storage ss;
    socklen_t len = make_addr(&ss, ip, port);
    enum guard_verdict got = guard_check_source(p, (const struct sockaddr *)&ss, len);
    if (got != want)
        fail_msg("%s port %u: got %s, want %s", ip, port, verdict_names[got], verdict_names[want]);
}

/* One ordinary address in each family form. */
static const char *const forms[] = {"192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"};
#define FORMS (sizeof(forms) / sizeof(forms[0]))

static void test_ordinary_sources_pass(void **state)
{
    (void)state;
    struct guard_policy p;
    guard_policy_init(&p);
    for (size_t i = 0; i < FORMS; i++) {
        expect_source(&p, forms[i], 1024, GUARD_PASS);
        expect_source(&p, forms[i], 40000, GUARD_PASS);
        expect_source(&p, forms[i], 65535, GUARD_PASS);
    }
    expect_source(&p, "8.8.8.8", 53000, GUARD_PASS);
    expect_source(&p, "223.255.255.255", 2000, GUARD_PASS); /* just below multicast */
    expect_source(&p, "1.0.0.0", 2000, GUARD_PASS);         /* just above 0/8 */
    expect_source(&p, "fe80::1", 2000, GUARD_PASS);
    expect_source(&p, "feff::1", 2000, GUARD_PASS); /* just below ff00::/8 */
}

static void test_low_ports_dropped(void **state)
{
    (void)state;
    static const uint16_t low[] = {0, 1, 7, 9, 13, 17, 19, 37, 53, 123, 1023};
    struct guard_policy p;
    guard_policy_init(&p);
    for (size_t i = 0; i < FORMS; i++) {
        for (size_t k = 0; k < sizeof(low) / sizeof(low[0]); k++)
            expect_source(&p, forms[i], low[k], GUARD_DROP_PORT);
        expect_source(&p, forms[i], 1024, GUARD_PASS);
    }
    expect_source(&p, "127.0.0.1", 7, GUARD_DROP_PORT); /* loopback too */
    expect_source(&p, "::1", 19, GUARD_DROP_PORT);
}

static void test_reflector_ports_dropped(void **state)
{
    (void)state;
    static const uint16_t reflectors[] = {1900, 3702, 5353, 11211};
    struct guard_policy p;
    guard_policy_init(&p);
    for (size_t i = 0; i < FORMS; i++) {
        for (size_t k = 0; k < 4; k++) {
            expect_source(&p, forms[i], reflectors[k], GUARD_DROP_REFLECTOR);
            expect_source(&p, forms[i], reflectors[k] - 1, GUARD_PASS);
            expect_source(&p, forms[i], reflectors[k] + 1, GUARD_PASS);
        }
    }
}

static void test_own_ports_dropped(void **state)
{
    (void)state;
    struct guard_policy p;
    guard_policy_init(&p);
    assert_int_equal(guard_policy_add_own_port(&p, 40123), 0);
    assert_int_equal(guard_policy_add_own_port(&p, 7007), 0);
    assert_int_equal(guard_policy_add_own_port(&p, 7007), 0); /* a duplicate is ignored */
    assert_int_equal(p.own_port_count, 2);
    for (size_t i = 0; i < FORMS; i++) {
        expect_source(&p, forms[i], 40123, GUARD_DROP_OWN_PORT);
        expect_source(&p, forms[i], 7007, GUARD_DROP_OWN_PORT);
        expect_source(&p, forms[i], 40124, GUARD_PASS);
        expect_source(&p, forms[i], 7006, GUARD_PASS);
    }
    expect_source(&p, "127.0.0.1", 40123, GUARD_DROP_OWN_PORT);
    /* The table holds GUARD_MAX_OWN_PORTS, then refuses. */
    for (uint16_t port = 2000; p.own_port_count < GUARD_MAX_OWN_PORTS; port++)
        assert_int_equal(guard_policy_add_own_port(&p, port), 0);
    assert_int_equal(guard_policy_add_own_port(&p, 60000), -ENOSPC);
    assert_int_equal(guard_policy_add_own_port(&p, 40123), 0); /* already there */
    expect_source(&p, "192.0.2.1", 60000, GUARD_PASS);
    expect_source(&p, "192.0.2.1", (uint16_t)(2000 + GUARD_MAX_OWN_PORTS - 3), GUARD_DROP_OWN_PORT);
}

static void test_bad_addresses_dropped(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "224.0.0.1",      "239.255.255.250",  "239.1.2.3",
        "231.0.0.9",      "255.255.255.255",  "0.0.0.0",
        "0.1.2.3",        "0.255.255.255",    "::",
        "ff02::1",        "ff05::1:3",        "ff0e::fb",
        "ff00::",         "::ffff:224.0.0.1", "::ffff:0.0.0.0",
        "::ffff:0.1.2.3", "::ffff:239.1.1.1", "::ffff:255.255.255.255",
    };
    struct guard_policy p;
    guard_policy_init(&p);
    assert_int_equal(guard_policy_add_own_port(&p, 40000), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_source(&p, bad[i], 5000, GUARD_DROP_ADDRESS);
        /* The address rules come before the port rules: one reason per datagram. */
        expect_source(&p, bad[i], 19, GUARD_DROP_ADDRESS);
        expect_source(&p, bad[i], 1900, GUARD_DROP_ADDRESS);
        expect_source(&p, bad[i], 40000, GUARD_DROP_ADDRESS);
    }
}

static void test_loopback(void **state)
{
    (void)state;
    static const char *const loopback[] = {"127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"};
    struct guard_policy p;
    guard_policy_init(&p);
    for (size_t i = 0; i < 4; i++)
        expect_source(&p, loopback[i], 40000, GUARD_PASS);
    p.is_loopback_allowed = false;
    for (size_t i = 0; i < 4; i++)
        expect_source(&p, loopback[i], 40000, GUARD_DROP_ADDRESS);
    expect_source(&p, "128.0.0.1", 40000, GUARD_PASS);
    expect_source(&p, "::2", 40000, GUARD_PASS);
}

/* guard_check_source on the first len bytes of src, copied into a heap block of exactly
 * len bytes so that AddressSanitizer sees any read past it. */
static enum guard_verdict check_exact(const struct guard_policy *p, const void *src, size_t len)
{
    uint8_t *block = __real_malloc(len ? len : 1);
    assert_non_null(block);
    memcpy(block, src, len);
    enum guard_verdict v =
        guard_check_source(p, (const struct sockaddr *)(void *)block, (socklen_t)len);
    free(block);
    return v;
}

static void test_malformed_sockaddrs(void **state)
{
    (void)state;
    struct guard_policy p;
    guard_policy_init(&p);
    struct sockaddr_storage ss;
    socklen_t len4 = make_addr(&ss, "192.0.2.1", 40000);
    assert_int_equal(check_exact(&p, &ss, len4), GUARD_PASS);
    for (socklen_t n = 0; n < len4; n++)
        assert_int_equal(check_exact(&p, &ss, n), GUARD_DROP_ADDRESS);
    socklen_t len6 = make_addr(&ss, "2001:db8::1", 40000);
    assert_int_equal(check_exact(&p, &ss, len6), GUARD_PASS);
    for (socklen_t n = 0; n < len6; n++)
        assert_int_equal(check_exact(&p, &ss, n), GUARD_DROP_ADDRESS);
    assert_int_equal(guard_check_source(&p, NULL, 0), GUARD_DROP_ADDRESS);
    assert_int_equal(guard_check_source(&p, NULL, 16), GUARD_DROP_ADDRESS);
    /* Unknown families, at full length. */
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    assert_int_equal(check_exact(&p, &un, sizeof(un)), GUARD_DROP_ADDRESS);
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNSPEC;
    assert_int_equal(check_exact(&p, &ss, sizeof(ss)), GUARD_DROP_ADDRESS);
    /* An own-port table claiming more than it holds is read only as far as it goes. */
    p.own_port_count = (size_t)-1;
    expect_source(&p, "192.0.2.1", 40000, GUARD_PASS);
}

/* Random bytes of random lengths, some with a real family: a verdict, never a crash or
 * an overread (under ASan). */
static void test_random_sockaddrs(void **state)
{
    (void)state;
    struct guard_policy p;
    guard_policy_init(&p);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    unsigned passed = 0;
    for (int i = 0; i < 100000; i++) {
        uint8_t buf[40];
        for (size_t k = 0; k < sizeof(buf); k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[k] = (uint8_t)x;
        }
        sa_family_t family = (x >> 8) % 3 == 0 ? AF_INET : (x >> 8) % 3 == 1 ? AF_INET6 : buf[0];
        memcpy(buf, &family, sizeof(family));
        enum guard_verdict v = check_exact(&p, buf, (size_t)(x % (sizeof(buf) + 1)));
        assert_true(v >= GUARD_PASS && v <= GUARD_DROP_ADDRESS);
        passed += v == GUARD_PASS;
    }
    assert_true(passed > 0); /* the random inputs did reach the port rules */
}

/* ---- the stateful guard, on a fake clock */

static struct guard *guard;

static int teardown_guard(void **state)
{
    (void)state;
    guard_destroy(guard);
    guard = NULL;
    return 0;
}

/* A guard with loopback limited, rate/burst per prefix and the global cap max_rate. */
static void make_guard(unsigned rate, unsigned burst, unsigned max_rate, unsigned table_size)
{
    struct guard_conf c;
    guard_conf_defaults(&c);
    c.rate = rate;
    c.burst = burst;
    c.max_rate = max_rate;
    c.table_size = table_size;
    c.is_loopback_limited = true;
    c.log_interval_ms = 1000;
    struct guard_policy p;
    guard_policy_init(&p);
    assert_int_equal(guard_create(&c, &p, &guard), 0);
}

static enum guard_verdict admit(const char *ip, uint64_t now_ms)
{
    struct sockaddr_storage ss;
    socklen_t len = make_addr(&ss, ip, 40000);
    return guard_admit(guard, (const struct sockaddr *)&ss, len, now_ms);
}

/* Send n datagrams from ip at now_ms: how many passed. Any drop must be `drop`. */
static unsigned admit_n(const char *ip, unsigned n, uint64_t now_ms, enum guard_verdict drop)
{
    unsigned passed = 0;
    for (unsigned i = 0; i < n; i++) {
        enum guard_verdict v = admit(ip, now_ms);
        if (v != GUARD_PASS && v != drop)
            fail_msg("%s at %llu ms: %s, expected PASS or %s", ip, (unsigned long long)now_ms,
                     verdict_names[v], verdict_names[drop]);
        passed += v == GUARD_PASS;
    }
    return passed;
}

static void test_bucket_burst_then_rate(void **state)
{
    (void)state;
    make_guard(10, 5, 0, 64); /* 10 per second, burst 5, no global cap */
    uint64_t t = 1000000;
    assert_int_equal(admit_n("192.0.2.1", 100, t, GUARD_DROP_RATE), 5);
    /* One token every 100 ms, not a moment before. */
    assert_int_equal(admit_n("192.0.2.1", 10, t + 99, GUARD_DROP_RATE), 0);
    assert_int_equal(admit_n("192.0.2.1", 10, t + 100, GUARD_DROP_RATE), 1);
    assert_int_equal(admit_n("192.0.2.1", 10, t + 350, GUARD_DROP_RATE), 2);
    /* The same /24 shares the bucket: .200 has none left either. */
    assert_int_equal(admit_n("192.0.2.200", 10, t + 350, GUARD_DROP_RATE), 0);
    /* Another /24 is unaffected. */
    assert_int_equal(admit_n("192.0.3.1", 100, t + 350, GUARD_DROP_RATE), 5);
    /* A long silence refills up to the burst, not beyond. */
    assert_int_equal(admit_n("192.0.2.1", 100, t + 3600000, GUARD_DROP_RATE), 5);
    /* Sustained: 10 per second over 10 s at one datagram per ms gives 100. */
    uint64_t start = t + 7200000;
    unsigned passed = 0;
    for (uint64_t ms = 0; ms < 10000; ms++)
        passed += admit_n("192.0.2.1", 1, start + ms, GUARD_DROP_RATE);
    assert_in_range(passed, 5 + 99, 5 + 100);
}

static void test_bucket_ipv6_and_mapped_grouping(void **state)
{
    (void)state;
    make_guard(1, 3, 0, 64);
    uint64_t t = 5000;
    /* A /64 is one bucket, whatever the interface ID. */
    assert_int_equal(admit_n("2001:db8:0:1::1", 2, t, GUARD_DROP_RATE), 2);
    assert_int_equal(admit_n("2001:db8:0:1:ffff:ffff:ffff:ffff", 5, t, GUARD_DROP_RATE), 1);
    /* The next /64 is another. */
    assert_int_equal(admit_n("2001:db8:0:2::1", 5, t, GUARD_DROP_RATE), 3);
    /* A v4-mapped source counts as its IPv4 /24. */
    assert_int_equal(admit_n("198.51.100.7", 2, t, GUARD_DROP_RATE), 2);
    assert_int_equal(admit_n("::ffff:198.51.100.99", 5, t, GUARD_DROP_RATE), 1);
    assert_int_equal(admit_n("198.51.100.1", 5, t, GUARD_DROP_RATE), 0);
    /* An IPv6 address whose /64 bits look like an IPv4 /24 is still another bucket. */
    assert_int_equal(admit_n("::c633:6407", 5, t, GUARD_DROP_RATE), 3);
}

/* Loopback is exempt unless limit_loopback; source drops are still drops. */
static void test_loopback_exempt_by_default(void **state)
{
    (void)state;
    struct guard_conf c;
    guard_conf_defaults(&c);
    c.rate = 1;
    c.burst = 1;
    c.max_rate = 1;
    struct guard_policy p;
    guard_policy_init(&p);
    assert_int_equal(guard_create(&c, &p, &guard), 0);
    assert_int_equal(admit_n("127.0.0.1", 1000, 10, GUARD_DROP_RATE), 1000);
    assert_int_equal(admit_n("::1", 1000, 10, GUARD_DROP_RATE), 1000);
    assert_int_equal(admit_n("192.0.2.1", 10, 10, GUARD_DROP_RATE), 1);
    struct sockaddr_storage ss;
    socklen_t len = make_addr(&ss, "127.0.0.1", 19);
    assert_int_equal(guard_admit(guard, (struct sockaddr *)&ss, len, 10), GUARD_DROP_PORT);
    guard_destroy(guard);
    make_guard(1, 1, 0, 64); /* limit_loopback = true */
    assert_int_equal(admit_n("127.0.0.1", 1000, 10, GUARD_DROP_RATE), 1);
    assert_int_equal(admit_n("127.0.1.1", 1000, 10, GUARD_DROP_RATE), 1);
}

static void test_global_cap(void **state)
{
    (void)state;
    make_guard(1000, 1000, 20, 4096); /* 20 per second in all */
    uint64_t t = 1000;
    char ip[32];
    unsigned passed = 0, capped = 0;
    for (int i = 0; i < 100; i++) {
        snprintf(ip, sizeof(ip), "10.0.%d.1", i);
        enum guard_verdict v = admit(ip, t);
        passed += v == GUARD_PASS;
        capped += v == GUARD_DROP_GLOBAL_RATE;
    }
    assert_int_equal(passed, 20);
    assert_int_equal(capped, 80);
    assert_int_equal(admit_n("10.1.0.1", 5, t + 100, GUARD_DROP_GLOBAL_RATE), 2);
    guard_destroy(guard);
    /* A source held by its own bucket spends none of the global budget. */
    make_guard(5, 5, 20, 4096);
    assert_int_equal(admit_n("192.0.2.1", 10000, t, GUARD_DROP_RATE), 5);
    assert_int_equal(admit_n("192.0.3.1", 5, t, GUARD_DROP_GLOBAL_RATE), 5);
    assert_int_equal(admit_n("192.0.4.1", 5, t, GUARD_DROP_GLOBAL_RATE), 5);
    assert_int_equal(admit_n("192.0.5.1", 5, t, GUARD_DROP_GLOBAL_RATE), 5);
    assert_int_equal(admit_n("192.0.6.1", 5, t, GUARD_DROP_GLOBAL_RATE), 0);
}

/* 100,000 spoofed /24s, one per ms, through a 64-slot table: no allocation, at most 64
 * tracked, each new prefix answered once. A source the limiter is holding back at the
 * same time (100 datagrams every 50 ms against a rate of 1000/s) is seen less recently
 * than most spoofed prefixes, yet keeps its empty bucket: the spoofed slots, refilled
 * after 1 ms, are reused first. Were it evicted, its next round would pass 100. */
static void test_table_fixed_under_spoofed_flood(void **state)
{
    (void)state;
    make_guard(1000, 2000, 0, 64);
    uint64_t t = 1000;
    assert_int_equal(admit_n("198.51.100.1", 2000, t, GUARD_DROP_RATE), 2000);
    assert_int_equal(admit_n("198.51.100.1", 10, t, GUARD_DROP_RATE), 0);
    unsigned long before = allocations;
    unsigned spoofed_passed = 0;
    for (uint32_t i = 0; i < 100000; i++) {
        char ip[32];
        uint32_t net = 0x0b0000u + i; /* 11.0.0.0/24 onwards: 100,000 distinct /24s */
        snprintf(ip, sizeof(ip), "%u.%u.%u.9", net >> 16 & 0xff, net >> 8 & 0xff, net & 0xff);
        t++;
        spoofed_passed += admit(ip, t) == GUARD_PASS;
        if (i % 50 == 49) {
            unsigned legit = admit_n("198.51.100.1", 100, t, GUARD_DROP_RATE);
            if (legit != 50)
                fail_msg("after %u spoofed prefixes the limited source passed %u of 100, "
                         "not the 50 its rate gives",
                         i + 1, legit);
        }
        assert_true(guard_tracked(guard) <= 64);
    }
    assert_int_equal(allocations, before);
    assert_int_equal(guard_tracked(guard), 64);
    assert_int_equal(spoofed_passed, 100000);
}

/* Read what fn logged to stderr. */
static char *capture_stderr(int (*fn)(uint64_t), uint64_t now_ms, int *rc)
{
    char path[] = "/tmp/test_guard_log.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    int saved = dup(2);
    dup2(fd, 2);
    *rc = fn(now_ms);
    dup2(saved, 2);
    close(saved);
    static char text[4096];
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    close(fd);
    text[n > 0 ? n : 0] = '\0';
    return text;
}

static int log_now(uint64_t now_ms)
{
    return guard_log_drops(guard, now_ms, false);
}

static int log_final(uint64_t now_ms)
{
    return guard_log_drops(guard, now_ms, true);
}

static unsigned count_lines(const char *text, const char *needle)
{
    unsigned n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* One line per reason per interval, however many drops; nothing when nothing dropped. */
static void test_drop_log_rate_limited(void **state)
{
    (void)state;
    make_guard(1, 1, 0, 64); /* log_interval_ms = 1000 */
    int rc;
    assert_string_equal(capture_stderr(log_now, 0, &rc), "");
    assert_int_equal(rc, -1);
    struct sockaddr_storage ss;
    socklen_t len = make_addr(&ss, "192.0.2.7", 19);
    for (int i = 0; i < 1234; i++)
        guard_admit(guard, (struct sockaddr *)&ss, len, 100);
    assert_int_equal(admit_n("203.0.113.5", 4, 100, GUARD_DROP_RATE), 1);
    char *text = capture_stderr(log_now, 150, &rc);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(text, "udp guard: dropped 1234 datagrams in the last 0.0 s: source "
                                 "port below 1024 (last from 192.0.2.7:19)\n"));
    assert_non_null(strstr(text, "udp guard: dropped 3 datagrams in the last 0.0 s: source /24 "
                                 "or /64 over udp.guard.rate (last from 203.0.113.5:40000)\n"));
    assert_int_equal(count_lines(text, "udp guard:"), 2);
    /* More drops within the interval wait for it: the epoll timeout says how long. */
    for (int i = 0; i < 500; i++)
        guard_admit(guard, (struct sockaddr *)&ss, len, 200 + (uint64_t)i);
    assert_string_equal(capture_stderr(log_now, 700, &rc), "");
    assert_int_equal(rc, 450);
    assert_string_equal(capture_stderr(log_now, 1149, &rc), "");
    assert_int_equal(rc, 1);
    text = capture_stderr(log_now, 1150, &rc);
    assert_int_equal(rc, -1);
    assert_int_equal(count_lines(text, "udp guard:"), 1);
    assert_non_null(strstr(text, "dropped 500 datagrams in the last 0.9 s: source port below"));
    /* A final flush ignores the interval. */
    guard_admit(guard, (struct sockaddr *)&ss, len, 1200);
    text = capture_stderr(log_final, 1200, &rc);
    assert_non_null(strstr(text, "dropped 1 datagram in the last 0.0 s: source port below"));
}

static void test_create_rejects_zero_sizes(void **state)
{
    (void)state;
    struct guard_conf c;
    guard_conf_defaults(&c);
    struct guard_policy p;
    guard_policy_init(&p);
    c.table_size = 0;
    assert_int_equal(guard_create(&c, &p, &guard), -EINVAL);
    guard_conf_defaults(&c);
    c.rate = 0;
    assert_int_equal(guard_create(&c, &p, &guard), -EINVAL);
    assert_null(guard);
}

#define TEST_GUARD(f) cmocka_unit_test_teardown(f, teardown_guard)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ordinary_sources_pass),
        cmocka_unit_test(test_low_ports_dropped),
        cmocka_unit_test(test_reflector_ports_dropped),
        cmocka_unit_test(test_own_ports_dropped),
        cmocka_unit_test(test_bad_addresses_dropped),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_malformed_sockaddrs),
        cmocka_unit_test(test_random_sockaddrs),
        TEST_GUARD(test_bucket_burst_then_rate),
        TEST_GUARD(test_bucket_ipv6_and_mapped_grouping),
        TEST_GUARD(test_loopback_exempt_by_default),
        TEST_GUARD(test_global_cap),
        TEST_GUARD(test_table_fixed_under_spoofed_flood),
        TEST_GUARD(test_drop_log_rate_limited),
        TEST_GUARD(test_create_rejects_zero_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
