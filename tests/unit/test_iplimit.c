/* test_iplimit: the per-IP connection table behind max_connections_per_ip. Keys: IPv4
 * and its IPv4-mapped IPv6 form are one IP, ports do not matter, other families are
 * refused. The limit holds per IP and other IPs are unaffected; a release by fd frees
 * the slot, and releasing to zero removes the entry; 20,000 IPs come and go leaving
 * nothing; the table never holds more than `capacity` IPs; a held fd cannot be counted
 * twice, while admitting it by address again moves its slot; and four threads acquiring and
 * releasing concurrently end at zero. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "iplimit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

static struct iplimit *table;

static int teardown(void **state)
{
    (void)state;
    iplimit_destroy(table);
    table = NULL;
    return 0;
}

/* The key of IPv4 text v4 (port 1234) or, if v4 is NULL, of IPv6 text v6. */
static struct iplimit_key key_of(const char *v4, const char *v6)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (v4) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(1234);
        assert_int_equal(inet_pton(AF_INET, v4, &in4->sin_addr), 1);
    } else {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(4321);
        assert_int_equal(inet_pton(AF_INET6, v6, &in6->sin6_addr), 1);
    }
    struct iplimit_key key;
    assert_int_equal(iplimit_key_of((struct sockaddr *)&ss, &key), 0);
    return key;
}

/* The key of 10.x.y.z for n. */
static struct iplimit_key key_n(unsigned n)
{
    char text[32];
    snprintf(text, sizeof(text), "10.%u.%u.%u", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
    return key_of(text, NULL);
}

static void test_keys(void **state)
{
    (void)state;
    struct iplimit_key a = key_of("192.0.2.7", NULL);
    struct iplimit_key mapped = key_of(NULL, "::ffff:192.0.2.7");
    struct iplimit_key other = key_of("192.0.2.8", NULL);
    struct iplimit_key v6 = key_of(NULL, "2001:db8::7");
    assert_memory_equal(a.addr, mapped.addr, 16);
    assert_memory_not_equal(a.addr, other.addr, 16);
    assert_memory_not_equal(a.addr, v6.addr, 16);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    struct iplimit_key k;
    assert_int_equal(iplimit_key_of((struct sockaddr *)&un, &k), -EAFNOSUPPORT);
}

/* Limit 3: the fourth connection of one IP is refused, another IP is not; a release
 * makes room; v4-mapped v6 shares its IPv4 address's count. */
static void test_limit_per_ip(void **state)
{
    (void)state;
    assert_int_equal(iplimit_create(3, 100, &table), 0);
    struct iplimit_key a = key_of("127.0.0.1", NULL);
    struct iplimit_key mapped = key_of(NULL, "::ffff:127.0.0.1");
    struct iplimit_key b = key_of("127.0.0.2", NULL);
    assert_int_equal(iplimit_acquire(table, &a, 10), 0);
    assert_int_equal(iplimit_acquire(table, &a, 11), 0);
    assert_int_equal(iplimit_acquire(table, &mapped, 12), 0);
    assert_int_equal(iplimit_acquire(table, &a, 13), -EUSERS);
    assert_int_equal(iplimit_acquire(table, &mapped, 13), -EUSERS);
    assert_int_equal(iplimit_count(table, &a), 3);
    assert_int_equal(iplimit_acquire(table, &b, 13), 0);
    assert_int_equal(iplimit_count(table, &b), 1);
    assert_int_equal(iplimit_ip_count(table), 2);
    iplimit_release(table, 11);
    assert_int_equal(iplimit_count(table, &a), 2);
    assert_int_equal(iplimit_acquire(table, &a, 11), 0);
    /* Releasing an fd that holds nothing, or twice, changes nothing. */
    iplimit_release(table, 99);
    iplimit_release(table, 100000);
    iplimit_release(table, 13);
    iplimit_release(table, 13);
    assert_int_equal(iplimit_count(table, &b), 0);
    assert_int_equal(iplimit_count(table, &a), 3);
    assert_int_equal(iplimit_ip_count(table), 1);
}

/* A reload changes both limits: a raised one admits more at once; a lowered one keeps
 * what is open and refuses new connections until the IP is under it. */
static void test_set_limits(void **state)
{
    (void)state;
    assert_int_equal(iplimit_create(2, 100, &table), 0);
    struct iplimit_key a = key_of("192.0.2.1", NULL);
    struct iplimit_key b = key_of("192.0.2.2", NULL);
    assert_int_equal(iplimit_acquire(table, &a, 10), 0);
    assert_int_equal(iplimit_acquire(table, &a, 11), 0);
    assert_int_equal(iplimit_acquire(table, &a, 12), -EUSERS);
    iplimit_set_limits(table, 3, 100);
    assert_int_equal(iplimit_acquire(table, &a, 12), 0);
    iplimit_set_limits(table, 1, 1);
    assert_int_equal(iplimit_count(table, &a), 3);
    iplimit_release(table, 12);
    assert_int_equal(iplimit_acquire(table, &a, 12), -EUSERS);
    assert_int_equal(iplimit_acquire(table, &b, 13), -ENOSPC); /* capacity 1: a's */
    iplimit_release(table, 10);
    iplimit_release(table, 11);
    assert_int_equal(iplimit_acquire(table, &b, 13), 0);
}

/* A held fd cannot be counted again (it would mean an fd was reused before release). */
static void test_held_fd_refused(void **state)
{
    (void)state;
    assert_int_equal(iplimit_create(5, 10, &table), 0);
    struct iplimit_key a = key_n(1), b = key_n(2);
    assert_int_equal(iplimit_acquire(table, &a, 7), 0);
    assert_int_equal(iplimit_acquire(table, &b, 7), -EBADF);
    assert_int_equal(iplimit_acquire(table, &b, -1), -EBADF);
    assert_int_equal(iplimit_count(table, &b), 0);
    assert_int_equal(iplimit_ip_count(table), 1);
}

/* A sockaddr of IPv4 text v4 (port 1234). */
static struct sockaddr_in sockaddr_v4(const char *v4)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(1234)};
    assert_int_equal(inet_pton(AF_INET, v4, &in.sin_addr), 1);
    return in;
}

/* Admission by address: counts; a non-IP client counts nothing and is admitted; admitting
 * a held fd again moves its slot (the PROXY header named another client), so nothing is
 * counted twice; at the limit it refuses, and the fd then holds nothing. */
static void test_admit_moves_the_slot(void **state)
{
    (void)state;
    assert_int_equal(iplimit_create(2, 10, &table), 0);
    struct sockaddr_in balancer = sockaddr_v4("10.0.0.1"), client = sockaddr_v4("192.0.2.7");
    struct iplimit_key kb = key_of("10.0.0.1", NULL), kc = key_of("192.0.2.7", NULL);
    assert_int_equal(iplimit_admit(table, (struct sockaddr *)&balancer, 5), 0);
    assert_int_equal(iplimit_count(table, &kb), 1);
    assert_int_equal(iplimit_admit(table, (struct sockaddr *)&client, 5), 0);
    assert_int_equal(iplimit_count(table, &kb), 0);
    assert_int_equal(iplimit_count(table, &kc), 1);
    assert_int_equal(iplimit_ip_count(table), 1);
    assert_int_equal(iplimit_admit(table, (struct sockaddr *)&client, 5), 0); /* same IP */
    assert_int_equal(iplimit_count(table, &kc), 1);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    assert_int_equal(iplimit_admit(table, (struct sockaddr *)&un, 6), 0);
    assert_int_equal(iplimit_ip_count(table), 1);
    assert_int_equal(iplimit_admit(table, (struct sockaddr *)&client, 6), 0);
    assert_int_equal(iplimit_admit(table, (struct sockaddr *)&balancer, 7), 0);
    assert_int_equal(iplimit_admit(table, (struct sockaddr *)&client, 7), -EUSERS);
    assert_int_equal(iplimit_count(table, &kb), 0); /* 7 gave up its slot */
    assert_int_equal(iplimit_count(table, &kc), 2);
    assert_int_equal(iplimit_admit(table, (struct sockaddr *)&client, -1), -EBADF);
    iplimit_release(table, 5);
    iplimit_release(table, 6);
    iplimit_release(table, 7);
    assert_int_equal(iplimit_ip_count(table), 0);
}

/* 20,000 IPs with two connections each, fds up to 40,000, all released: the table is
 * empty again, and each release to zero removed its entry on the way. */
static void test_many_ips_release_to_zero(void **state)
{
    (void)state;
    enum { IPS = 20000 };
    assert_int_equal(iplimit_create(2, 2 * IPS, &table), 0);
    for (unsigned i = 0; i < IPS; i++) {
        struct iplimit_key k = key_n(i);
        assert_int_equal(iplimit_acquire(table, &k, (int)(2 * i)), 0);
        assert_int_equal(iplimit_acquire(table, &k, (int)(2 * i + 1)), 0);
    }
    assert_int_equal(iplimit_ip_count(table), IPS);
    struct iplimit_key k = key_n(777);
    assert_int_equal(iplimit_acquire(table, &k, 2 * IPS), -EUSERS);
    for (unsigned i = 0; i < IPS; i++) {
        iplimit_release(table, (int)(2 * i + 1));
        assert_int_equal(iplimit_ip_count(table), IPS - i);
        iplimit_release(table, (int)(2 * i));
        assert_int_equal(iplimit_ip_count(table), IPS - i - 1);
    }
    for (unsigned i = 0; i < IPS; i += 997) {
        struct iplimit_key again = key_n(i);
        assert_int_equal(iplimit_count(table, &again), 0);
    }
}

/* Memory is bounded: at most `capacity` IPs are held, whatever arrives. */
static void test_capacity_bound(void **state)
{
    (void)state;
    assert_int_equal(iplimit_create(10, 50, &table), 0);
    for (unsigned i = 0; i < 50; i++) {
        struct iplimit_key k = key_n(i);
        assert_int_equal(iplimit_acquire(table, &k, (int)i), 0);
    }
    struct iplimit_key extra = key_n(50);
    assert_int_equal(iplimit_acquire(table, &extra, 50), -ENOSPC);
    struct iplimit_key known = key_n(3);
    assert_int_equal(iplimit_acquire(table, &known, 51), 0); /* a held IP still counts */
    assert_int_equal(iplimit_ip_count(table), 50);
    iplimit_release(table, 0);
    assert_int_equal(iplimit_acquire(table, &extra, 50), 0);
}

/* Four threads, each on its own fds and a few shared IPs, acquire and release 20,000
 * times: every count ends at zero. */
struct worker_arg {
    int base_fd;
};

static void *churn(void *arg)
{
    const struct worker_arg *w = arg;
    for (unsigned round = 0; round < 5000; round++) {
        struct iplimit_key k = key_n(round % 7);
        int fd = w->base_fd + (int)(round % 16);
        if (iplimit_acquire(table, &k, fd) == 0)
            iplimit_release(table, fd);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    assert_int_equal(iplimit_create(3, 64, &table), 0);
    pthread_t t[4];
    struct worker_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i].base_fd = 100 * (i + 1);
        assert_int_equal(pthread_create(&t[i], NULL, churn, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(iplimit_ip_count(table), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_keys, teardown),
        cmocka_unit_test_teardown(test_limit_per_ip, teardown),
        cmocka_unit_test_teardown(test_held_fd_refused, teardown),
        cmocka_unit_test_teardown(test_admit_moves_the_slot, teardown),
        cmocka_unit_test_teardown(test_set_limits, teardown),
        cmocka_unit_test_teardown(test_many_ips_release_to_zero, teardown),
        cmocka_unit_test_teardown(test_capacity_bound, teardown),
        cmocka_unit_test_teardown(test_threads, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
