/* test_addr: addr_parse, addr_format and addr_port. IPv4 and IPv6 round trips (parse,
 * format, parse again gives the same sockaddr), the port range ends 0 and 65535, every
 * kind of malformed text addr_parse must refuse, and addr_format's truncation: it never
 * writes past size and always leaves a NUL-terminated prefix of the full text. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

/* Parse text, which must succeed, and check its family, port and formatted form. */
static void check_parse(const char *text, int family, uint16_t port, const char *formatted)
{
    struct addr a;
    memset(&a, 0xa5, sizeof(a));
    assert_int_equal(addr_parse(text, &a), 0);
    assert_int_equal(a.ss.ss_family, family);
    assert_int_equal(a.len,
                     family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    assert_int_equal(addr_port((const struct sockaddr *)&a.ss), port);

    char buf[ADDR_STRLEN];
    addr_format((const struct sockaddr *)&a.ss, buf, sizeof(buf));
    assert_string_equal(buf, formatted);

    /* The formatted text parses back to the very same address. */
    struct addr again;
    assert_int_equal(addr_parse(buf, &again), 0);
    assert_int_equal(again.len, a.len);
    assert_memory_equal(&again.ss, &a.ss, a.len);
}

/* addr_parse must refuse text and leave out untouched. */
static void check_reject(const char *text)
{
    struct addr a, before;
    memset(&a, 0x5a, sizeof(a));
    before = a;
    if (addr_parse(text, &a) != -EINVAL)
        fail_msg("addr_parse(\"%s\") accepted, expected -EINVAL", text);
    assert_memory_equal(&a, &before, sizeof(a));
}

static void test_ipv4_round_trip(void **state)
{
    (void)state;
    check_parse("127.0.0.1:7007", AF_INET, 7007, "127.0.0.1:7007");
    check_parse("0.0.0.0:7", AF_INET, 7, "0.0.0.0:7");
    check_parse("255.255.255.255:1", AF_INET, 1, "255.255.255.255:1");

    struct addr a;
    assert_int_equal(addr_parse("10.1.2.3:80", &a), 0);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.ss;
    assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x0a010203);
    assert_int_equal(ntohs(sin->sin_port), 80);
}

static void test_ipv6_round_trip(void **state)
{
    (void)state;
    check_parse("[::1]:7007", AF_INET6, 7007, "[::1]:7007");
    check_parse("[::]:7", AF_INET6, 7, "[::]:7");
    check_parse("[fe80::1:2]:443", AF_INET6, 443, "[fe80::1:2]:443");
    /* Non-canonical input comes back in canonical form. */
    check_parse("[2001:0db8:0000:0000:0000:0000:0000:0001]:9", AF_INET6, 9, "[2001:db8::1]:9");
    check_parse("[::ffff:1.2.3.4]:5", AF_INET6, 5, "[::ffff:1.2.3.4]:5");

    struct addr a;
    assert_int_equal(addr_parse("[::1]:80", &a), 0);
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.ss;
    assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
}

static void test_port_range_ends(void **state)
{
    (void)state;
    check_parse("127.0.0.1:0", AF_INET, 0, "127.0.0.1:0");
    check_parse("127.0.0.1:65535", AF_INET, 65535, "127.0.0.1:65535");
    check_parse("[::1]:0", AF_INET6, 0, "[::1]:0");
    check_parse("[::1]:65535", AF_INET6, 65535, "[::1]:65535");
    /* Leading zeros are digits like any other, within five. */
    check_parse("127.0.0.1:00080", AF_INET, 80, "127.0.0.1:80");
}

static void test_rejects_bad_ports(void **state)
{
    (void)state;
    check_reject("127.0.0.1");       /* no port */
    check_reject("127.0.0.1:");      /* empty port */
    check_reject("1.2.3.4:");        /* empty port */
    check_reject("127.0.0.1:65536"); /* one past the range */
    check_reject("127.0.0.1:99999");
    check_reject("127.0.0.1:000080"); /* six digits */
    check_reject("127.0.0.1:123456");
    check_reject("127.0.0.1:8a");
    check_reject("127.0.0.1:-1");
    check_reject("127.0.0.1:+80");
    check_reject("127.0.0.1: 80");
    check_reject("[::1]:65536");
    check_reject("[::1]:");
}

static void test_rejects_bad_hosts(void **state)
{
    (void)state;
    check_reject("");
    check_reject(":80");          /* empty host */
    check_reject("[]:80");        /* empty v6 host */
    check_reject("localhost:80"); /* names are not resolved */
    check_reject("example.com:80");
    check_reject("abc:80");
    check_reject("1.2.3:80");
    check_reject("1.2.3.256:80");
    check_reject("::1:80");         /* v6 without brackets */
    check_reject("fe80::1:80");     /* v6 without brackets */
    check_reject("[::1:80");        /* unterminated bracket */
    check_reject("[::1]");          /* bracket, no port */
    check_reject("[::1]80");        /* no colon after the bracket */
    check_reject("[127.0.0.1]:80"); /* v4 in brackets */
    check_reject("[::1]:80x");      /* trailing garbage */
    check_reject("127.0.0.1:80 ");  /* trailing space */
    check_reject("127.0.0.1:80:81");
    check_reject(" 127.0.0.1:80"); /* leading space */
}

/* Longer than any host text: addr_split must refuse it, not overflow its buffer. */
static void test_rejects_overlong_host(void **state)
{
    (void)state;
    char text[256];
    memset(text, '1', sizeof(text));
    text[0] = '[';
    memcpy(text + sizeof(text) - 5, "]:80", 5);
    check_reject(text);
    memset(text, '1', sizeof(text));
    memcpy(text + sizeof(text) - 4, ":80", 4);
    check_reject(text);
}

static void test_port_of_unknown_family(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    memset(&ss, 0xff, sizeof(ss));
    ss.ss_family = AF_UNIX;
    assert_int_equal(addr_port((const struct sockaddr *)&ss), 0);

    char buf[ADDR_STRLEN];
    addr_format((const struct sockaddr *)&ss, buf, sizeof(buf));
    assert_string_equal(buf, "(family 1)");
}

/* addr_format into every size from 0 to the full length + 1: a NUL-terminated prefix,
 * and not a byte written past size (the canary bytes after it stay). */
static void check_format_truncation(const char *text)
{
    struct addr a;
    assert_int_equal(addr_parse(text, &a), 0);
    size_t full = strlen(text);
    for (size_t size = 0; size <= full + 1; size++) {
        char buf[ADDR_STRLEN + 8];
        memset(buf, '#', sizeof(buf));
        addr_format((const struct sockaddr *)&a.ss, buf, size);
        if (size == 0) {
            assert_int_equal(buf[0], '#');
            continue;
        }
        size_t want = size - 1 < full ? size - 1 : full;
        assert_int_equal(strlen(buf), want);
        assert_memory_equal(buf, text, want);
        for (size_t i = size; i < sizeof(buf); i++)
            assert_int_equal(buf[i], '#');
    }
}

static void test_format_truncation(void **state)
{
    (void)state;
    check_format_truncation("255.255.255.255:65535");
    check_format_truncation("[::ffff:255.255.255.255]:65535");
    check_format_truncation("[1234:5678:9abc:def0:1234:5678:9abc:def0]:65535");
}

/* The longest text addr_format can write fits in ADDR_STRLEN. */
static void test_format_longest_fits(void **state)
{
    (void)state;
    const char *longest = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
    assert_true(strlen(longest) < ADDR_STRLEN);
    check_parse(longest, AF_INET6, 65535, longest);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4_round_trip),        cmocka_unit_test(test_ipv6_round_trip),
        cmocka_unit_test(test_port_range_ends),        cmocka_unit_test(test_rejects_bad_ports),
        cmocka_unit_test(test_rejects_bad_hosts),      cmocka_unit_test(test_rejects_overlong_host),
        cmocka_unit_test(test_port_of_unknown_family), cmocka_unit_test(test_format_truncation),
        cmocka_unit_test(test_format_longest_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
