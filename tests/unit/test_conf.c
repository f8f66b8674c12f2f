/* test_conf: the configuration loader. The defaults are README's table; a config with
 * every key loads into the struct; the tutorial's Chinese greetings come through byte
 * for byte; each error class (unknown key, wrong type, out of range at min-1 and max+1,
 * bad mode or level, bad listen address, too many addresses, greeting limits, the greet
 * buffer rule, syntax) gives -EINVAL and exactly "NAME:LINE: key: message" and leaves the
 * struct as it was; an empty listen list turns a service off; conf_worker_count;
 * a missing file; @include refused; a last line that is a comment without a newline;
 * range errors quoting the literal as written; \x00 escapes refused; paths that are not
 * regular files; the shipped etc/echod.conf, which must load to the defaults;
 * conf_each_key, which must list exactly the keys a load knows; and the PROXY protocol
 * keys, which refuse a header from everyone unless tcp.proxy_from names who may send one. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "conf.h"

#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAME "test.conf"
/* "你好, " and "你好,客户端!你发送了:" in UTF-8, spelled out byte by byte. */
#define TCP_CHINESE "\xe4\xbd\xa0\xe5\xa5\xbd\x2c\x20"
#define UDP_CHINESE                                                                                \
    "\xe4\xbd\xa0\xe5\xa5\xbd\x2c\xe5\xae\xa2\xe6\x88\xb7\xe7\xab\xaf\x21\xe4\xbd\xa0\xe5\x8f\x91" \
    "\xe9\x80\x81\xe4\xba\x86\x3a"

static struct conf conf; /* the fixture's configuration, defaults at setup */
static char err[CONF_ERR_SIZE];

static int setup(void **state)
{
    (void)state;
    memset(err, 0, sizeof(err));
    return conf_init_defaults(&conf);
}

static int teardown(void **state)
{
    (void)state;
    conf_free(&conf);
    return 0;
}

/* Load text into conf, which must succeed. */
static void load_ok(const char *text)
{
    int rc = conf_load_string(&conf, text, NAME, err, sizeof(err));
    if (rc != 0)
        fail_msg("load failed with %d: %s\n--- config:\n%s", rc, err, text);
}

/* Load text, which must fail with -EINVAL and exactly "NAME:LINE: key: message" (or
 * "NAME:LINE: message" without a key), leaving conf byte for byte as it was. */
static void check_error(const char *text, unsigned line, const char *key, const char *message)
{
    struct conf before;
    memcpy(&before, &conf, sizeof(conf));
    memset(err, 0, sizeof(err));
    int rc = conf_load_string(&conf, text, NAME, err, sizeof(err));
    if (rc != -EINVAL)
        fail_msg("load returned %d, expected -EINVAL\n--- config:\n%s", rc, text);
    char want[CONF_ERR_SIZE];
    if (key != NULL)
        snprintf(want, sizeof(want), NAME ":%u: %s: %s", line, key, message);
    else
        snprintf(want, sizeof(want), NAME ":%u: %s", line, message);
    assert_string_equal(err, want);
    assert_memory_equal(&conf, &before, sizeof(conf));
    /* Still readable (ASan would see a buffer freed behind our back). */
    assert_int_equal(strlen(conf.tcp.greeting), conf.tcp.greeting_len);
    assert_int_equal(strlen(conf.udp.greeting), conf.udp.greeting_len);
}

/* One error case: a config, and the error it must give. */
struct error_case {
    const char *text;
    unsigned line;
    const char *key;
    const char *message;
};

static void check_error_cases(const struct error_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_error(cases[i].text, cases[i].line, cases[i].key, cases[i].message);
}

#define CHECK_ERROR_CASES(cases) check_error_cases(cases, sizeof(cases) / sizeof(cases[0]))

/* The service listens on exactly the one address `text`. */
static void check_listen_one(const struct conf_service *svc, const char *text)
{
    assert_int_equal(svc->listen_count, 1);
    char buf[ADDR_STRLEN];
    addr_format((const struct sockaddr *)&svc->listen[0].ss, buf, sizeof(buf));
    assert_string_equal(buf, text);
}

/* The service's greeting is exactly `want` (NUL-terminated, length recorded). */
static void check_greeting(const struct conf_service *svc, const char *want)
{
    assert_int_equal(svc->greeting_len, strlen(want));
    assert_memory_equal(svc->greeting, want, strlen(want) + 1);
}

/* Every value of c is README's default. */
static void check_defaults(const struct conf *c)
{
    assert_int_equal(c->workers, 0);
    assert_int_equal(c->queue_capacity, 1024);
    assert_int_equal(c->max_connections, 10000);
    assert_int_equal(c->idle_timeout_ms, 300000);
    assert_int_equal(c->send_timeout_ms, 30000);
    assert_int_equal(c->max_connections_per_ip, 0);
    assert_int_equal(c->shutdown_timeout_ms, 5000);
    assert_int_equal(c->log_level, LOG_LEVEL_INFO);
    check_listen_one(&c->tcp, "127.0.0.1:7007");
    assert_int_equal(c->tcp_backlog, 4096);
    assert_int_equal(c->tcp.mode, PROTO_ECHO);
    check_greeting(&c->tcp, "Hello, ");
    assert_int_equal(c->tcp_max_line_bytes, 8192);
    assert_int_equal(c->tcp_buffer_bytes, 65536);
    assert_int_equal(c->tcp_proxy_protocol, PROXY_OFF);
    assert_int_equal(c->tcp_proxy_from_count, 0);
    assert_int_equal(c->tcp_proxy_timeout_ms, 3000);
    check_listen_one(&c->udp, "127.0.0.1:7007");
    assert_int_equal(c->udp.mode, PROTO_ECHO);
    check_greeting(&c->udp, "Hello, client! You sent: ");
    assert_int_equal(c->udp_max_reply_bytes, 65507);
    assert_true(c->udp_guard.is_enabled);
    assert_true(c->udp_guard.is_loopback_allowed);
    assert_false(c->udp_guard.is_loopback_limited);
    assert_int_equal(c->udp_guard.rate, 1000);
    assert_int_equal(c->udp_guard.burst, 2000);
    assert_int_equal(c->udp_guard.max_rate, 100000);
    assert_int_equal(c->udp_guard.table_size, 4096);
    assert_int_equal(c->udp_guard.log_interval_ms, 10000);
    assert_int_equal(c->metrics_listen_count, 0); /* the metrics endpoint is off */
}

static void test_defaults(void **state)
{
    (void)state;
    check_defaults(&conf);
}

/* An empty config, and one of comments only, change nothing. */
static void test_empty_config_gives_defaults(void **state)
{
    (void)state;
    load_ok("");
    check_defaults(&conf);
    load_ok("# nothing here\n// nor here\n");
    check_defaults(&conf);
}

static const char full_config[] = "workers = 3;\n"
                                  "queue_capacity = 17;\n"
                                  "max_connections = 250;\n"
                                  "idle_timeout_ms = 1500;\n"
                                  "send_timeout_ms = 700;\n"
                                  "max_connections_per_ip = 12;\n"
                                  "shutdown_timeout_ms = 2500;\n"
                                  "log_level = \"debug\";\n"
                                  "tcp = {\n"
                                  "  listen = [ \"0.0.0.0:7\", \"[::1]:0\" ];\n"
                                  "  backlog = 128;\n"
                                  "  mode = \"greet\";\n"
                                  "  greeting = \"" TCP_CHINESE "\";\n"
                                  "  max_line_bytes = 100;\n"
                                  "  buffer_bytes = 2048;\n"
                                  "};\n"
                                  "udp = {\n"
                                  "  listen = [ \"127.0.0.2:65535\" ];\n"
                                  "  mode = \"greet\";\n"
                                  "  greeting = \"" UDP_CHINESE "\";\n"
                                  "};\n";

static void test_full_config(void **state)
{
    (void)state;
    load_ok(full_config);
    assert_int_equal(conf.workers, 3);
    assert_int_equal(conf.queue_capacity, 17);
    assert_int_equal(conf.max_connections, 250);
    assert_int_equal(conf.idle_timeout_ms, 1500);
    assert_int_equal(conf.send_timeout_ms, 700);
    assert_int_equal(conf.max_connections_per_ip, 12);
    assert_int_equal(conf.shutdown_timeout_ms, 2500);
    assert_int_equal(conf.log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(conf.tcp.listen_count, 2);
    char buf[ADDR_STRLEN];
    addr_format((const struct sockaddr *)&conf.tcp.listen[0].ss, buf, sizeof(buf));
    assert_string_equal(buf, "0.0.0.0:7");
    addr_format((const struct sockaddr *)&conf.tcp.listen[1].ss, buf, sizeof(buf));
    assert_string_equal(buf, "[::1]:0");
    assert_int_equal(conf.tcp.listen[1].len, sizeof(struct sockaddr_in6));
    assert_int_equal(conf.tcp_backlog, 128);
    assert_int_equal(conf.tcp.mode, PROTO_GREET);
    check_greeting(&conf.tcp, TCP_CHINESE);
    assert_int_equal(conf.tcp_max_line_bytes, 100);
    assert_int_equal(conf.tcp_buffer_bytes, 2048);
    check_listen_one(&conf.udp, "127.0.0.2:65535");
    assert_int_equal(conf.udp.mode, PROTO_GREET);
    check_greeting(&conf.udp, UDP_CHINESE);
}

/* README's greet example, as written there. */
static void test_readme_greet_example(void **state)
{
    (void)state;
    load_ok("tcp = { mode = \"greet\"; greeting = \"你好, \"; };\n"
            "udp = { mode = \"greet\"; greeting = \"你好,客户端!你发送了:\"; };\n");
    check_greeting(&conf.tcp, TCP_CHINESE);
    check_greeting(&conf.udp, UDP_CHINESE);
    assert_int_equal(conf.tcp.greeting_len, 8);
    assert_int_equal(conf.udp.greeting_len, 30);
    /* Everything else stays at its default. */
    assert_int_equal(conf.tcp_buffer_bytes, 65536);
    check_listen_one(&conf.tcp, "127.0.0.1:7007");
}

/* Each load starts from the defaults: a key the new text omits is not kept from the
 * previous load. */
static void test_each_load_starts_from_defaults(void **state)
{
    (void)state;
    load_ok(full_config);
    load_ok("queue_capacity = 5;\n");
    assert_int_equal(conf.queue_capacity, 5);
    assert_int_equal(conf.workers, 0);
    assert_int_equal(conf.tcp.mode, PROTO_ECHO);
    check_greeting(&conf.tcp, "Hello, ");
}

static void test_unknown_keys(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {"workers = 1;\nbogus = 2;\n", 2, "bogus", "unknown key"},
        {"listen = [ \"127.0.0.1:7\" ];\n", 1, "listen", "unknown key"},
        {"tcp = {\n  mode = \"echo\";\n  colour = 1;\n};\n", 3, "tcp.colour", "unknown key"},
        {"tcp = {\n  workers = 1;\n};\n", 2, "tcp.workers", "unknown key"},
        /* backlog, max_line_bytes and buffer_bytes are TCP's only. */
        {"udp = {\n\n  backlog = 5;\n};\n", 3, "udp.backlog", "unknown key"},
        {"udp = { max_line_bytes = 5; };\n", 1, "udp.max_line_bytes", "unknown key"},
        {"udp = {\n buffer_bytes = 2048;\n};\n", 2, "udp.buffer_bytes", "unknown key"},
        {"tcp = { TCP = {}; };\n", 1, "tcp.TCP", "unknown key"},
    };
    CHECK_ERROR_CASES(cases);
}

/* The names conf_each_key lists. */
struct key_list {
    char names[128][CONF_KEY_NAME_MAX];
    size_t count;
};

static void collect_key(const char *key, void *arg)
{
    struct key_list *l = arg;
    assert_true(l->count < sizeof(l->names) / sizeof(l->names[0]));
    assert_true(strlen(key) < CONF_KEY_NAME_MAX);
    strcpy(l->names[l->count++], key);
}

/* Every key conf_each_key lists, once, is one a load knows: set to a float, a type no key
 * has, it fails with "KEY: must be ...", never "unknown key". A load refuses every name
 * the list lacks (test_unknown_keys), so the list is exactly the keys there are, and the
 * man page test can hold echod.conf(5) to it. */
static void test_each_key_is_known(void **state)
{
    (void)state;
    struct key_list l = {.count = 0};
    conf_each_key(collect_key, &l);
    assert_true(l.count > 0);
    for (size_t i = 0; i < l.count; i++) {
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(l.names[i], l.names[j]);
        /* "udp.guard.rate" -> "udp = { guard = { rate = 1.5; }; };" */
        char text[256] = "", closing[64] = "";
        const char *part = l.names[i];
        const char *dot;
        while ((dot = strchr(part, '.')) != NULL) {
            snprintf(text + strlen(text), sizeof(text) - strlen(text), "%.*s = { ",
                     (int)(dot - part), part);
            strcat(closing, " };");
            part = dot + 1;
        }
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s = 1.5;%s\n", part, closing);
        assert_int_equal(conf_load_string(&conf, text, NAME, err, sizeof(err)), -EINVAL);
        char want[CONF_ERR_SIZE], got[CONF_ERR_SIZE];
        snprintf(want, sizeof(want), NAME ":1: %s: must be ", l.names[i]);
        snprintf(got, sizeof(got), "%.*s", (int)strlen(want), err); /* the message's start */
        assert_string_equal(got, want);
    }
}

static void test_wrong_types(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {"workers = \"2\";\n", 1, "workers", "must be an integer"},
        {"\nworkers = 2.0;\n", 2, "workers", "must be an integer"},
        {"queue_capacity = true;\n", 1, "queue_capacity", "must be an integer"},
        {"max_connections = [ 1 ];\n", 1, "max_connections", "must be an integer"},
        {"send_timeout_ms = \"30s\";\n", 1, "send_timeout_ms", "must be an integer"},
        {"\nsend_timeout_ms = 1.5;\n", 2, "send_timeout_ms", "must be an integer"},
        {"max_connections_per_ip = false;\n", 1, "max_connections_per_ip", "must be an integer"},
        {"tcp = {\n  max_connections_per_ip = 3;\n};\n", 2, "tcp.max_connections_per_ip",
         "unknown key"},
        {"log_level = 3;\n", 1, "log_level", "must be a string"},
        {"# c\ntcp = 5;\n", 2, "tcp", "must be a group: tcp = { ... };"},
        {"udp = [ 1 ];\n", 1, "udp", "must be a group: udp = { ... };"},
        {"tcp = {\n  mode = 1;\n};\n", 2, "tcp.mode", "must be a string"},
        {"udp = {\n  greeting = 7;\n};\n", 2, "udp.greeting", "must be a string"},
        {"tcp = {\n  backlog = \"1\";\n};\n", 2, "tcp.backlog", "must be an integer"},
        {"tcp = {\n  listen = \"127.0.0.1:7\";\n};\n", 2, "tcp.listen",
         "must be a list of \"ADDR:PORT\" strings"},
        {"udp = { listen = 7; };\n", 1, "udp.listen", "must be a list of \"ADDR:PORT\" strings"},
    };
    CHECK_ERROR_CASES(cases);
}

/* A bounded key: README's range, and where the value lands in struct conf. */
struct range_case {
    const char *group; /* NULL at the top level */
    const char *key;
    long long min, max;
    size_t offset;
};

static const struct range_case ranges[] = {
    {NULL, "workers", 0, 1024, offsetof(struct conf, workers)},
    {NULL, "queue_capacity", 1, 1048576, offsetof(struct conf, queue_capacity)},
    {NULL, "max_connections", 1, 10000000, offsetof(struct conf, max_connections)},
    {NULL, "idle_timeout_ms", 0, 2147483647, offsetof(struct conf, idle_timeout_ms)},
    {NULL, "send_timeout_ms", 0, 2147483647, offsetof(struct conf, send_timeout_ms)},
    {NULL, "max_connections_per_ip", 0, 10000000, offsetof(struct conf, max_connections_per_ip)},
    {NULL, "shutdown_timeout_ms", 0, 3600000, offsetof(struct conf, shutdown_timeout_ms)},
    {"tcp", "backlog", 1, 65535, offsetof(struct conf, tcp_backlog)},
    {"tcp", "max_line_bytes", 1, 16777216, offsetof(struct conf, tcp_max_line_bytes)},
    {"tcp", "buffer_bytes", 1024, 67108864, offsetof(struct conf, tcp_buffer_bytes)},
    {"tcp", "proxy_timeout_ms", 1, 3600000, offsetof(struct conf, tcp_proxy_timeout_ms)},
};

#define NRANGES (sizeof(ranges) / sizeof(ranges[0]))

/* A config setting r's key to v on line 3; into text. libconfig 1.5 wraps a plain
 * literal past 32 bits (2147483648 reads as -2147483648), so those get the L suffix. */
static void range_text(const struct range_case *r, long long v, char *text, size_t size)
{
    const char *suffix = v > INT32_MAX || v < INT32_MIN ? "L" : "";
    const char *dot = r->group != NULL ? strchr(r->group, '.') : NULL;
    if (dot != NULL) /* "udp.guard": a group in a group, the key still on line 3 */
        snprintf(text, size, "# range\n%.*s = { %s = {\n  %s = %lld%s;\n}; };\n",
                 (int)(dot - r->group), r->group, dot + 1, r->key, v, suffix);
    else if (r->group != NULL)
        snprintf(text, size, "# range\n%s = {\n  %s = %lld%s;\n};\n", r->group, r->key, v, suffix);
    else
        snprintf(text, size, "# range\n\n%s = %lld%s;\n", r->key, v, suffix);
}

/* r's key set to v must fail naming it on line 3 with its range. */
static void check_out_of_range(const struct range_case *r, long long v)
{
    char text[256], key[64], message[128];
    range_text(r, v, text, sizeof(text));
    snprintf(key, sizeof(key), "%s%s%s", r->group ? r->group : "", r->group ? "." : "", r->key);
    snprintf(message, sizeof(message), "must be between %lld and %lld, not %lld%s", r->min, r->max,
             v, v > INT32_MAX || v < INT32_MIN ? "L" : "");
    check_error(text, 3, key, message);
}

/* r's key set to v must load, and land in its field. */
static void check_in_range(const struct range_case *r, long long v)
{
    char text[256];
    range_text(r, v, text, sizeof(text));
    load_ok(text);
    assert_int_equal(*(const unsigned *)(const void *)((const char *)&conf + r->offset), v);
}

static void test_out_of_range(void **state)
{
    (void)state;
    for (size_t i = 0; i < NRANGES; i++) {
        check_out_of_range(&ranges[i], ranges[i].min - 1);
        check_out_of_range(&ranges[i], ranges[i].max + 1);
    }
    /* Far out, both ways, past what an unsigned holds. */
    check_out_of_range(&ranges[0], -2147483649LL);
    check_out_of_range(&ranges[0], 4294967296LL + 3);
    check_out_of_range(&ranges[3], 4294967295LL);
}

static void test_range_ends_accepted(void **state)
{
    (void)state;
    for (size_t i = 0; i < NRANGES; i++) {
        check_in_range(&ranges[i], ranges[i].min);
        check_in_range(&ranges[i], ranges[i].max);
    }
    load_ok("workers = 7L;\n"); /* a 64-bit literal is an integer too */
    assert_int_equal(conf.workers, 7);
}

/* udp.max_reply_bytes and the udp.guard group: ranges, types, unknown keys. */
static const struct range_case udp_ranges[] = {
    {"udp", "max_reply_bytes", 1, 65527, offsetof(struct conf, udp_max_reply_bytes)},
    {"udp.guard", "rate", 1, 10000000, offsetof(struct conf, udp_guard.rate)},
    {"udp.guard", "burst", 1, 10000000, offsetof(struct conf, udp_guard.burst)},
    {"udp.guard", "max_rate", 0, 100000000, offsetof(struct conf, udp_guard.max_rate)},
    {"udp.guard", "table_size", 16, 1048576, offsetof(struct conf, udp_guard.table_size)},
    {"udp.guard", "log_interval_ms", 100, 86400000,
     offsetof(struct conf, udp_guard.log_interval_ms)},
};

static void test_udp_guard_ranges(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(udp_ranges) / sizeof(udp_ranges[0]); i++) {
        check_out_of_range(&udp_ranges[i], udp_ranges[i].min - 1);
        check_out_of_range(&udp_ranges[i], udp_ranges[i].max + 1);
        check_in_range(&udp_ranges[i], udp_ranges[i].min);
        check_in_range(&udp_ranges[i], udp_ranges[i].max);
    }
}

static void test_udp_guard_keys(void **state)
{
    (void)state;
    load_ok("udp = {\n"
            "  max_reply_bytes = 1400;\n"
            "  guard = {\n"
            "    enabled = false; allow_loopback = false; limit_loopback = true;\n"
            "    rate = 50; burst = 60; max_rate = 0; table_size = 128; log_interval_ms = 200;\n"
            "  };\n"
            "};\n");
    assert_int_equal(conf.udp_max_reply_bytes, 1400);
    assert_false(conf.udp_guard.is_enabled);
    assert_false(conf.udp_guard.is_loopback_allowed);
    assert_true(conf.udp_guard.is_loopback_limited);
    assert_int_equal(conf.udp_guard.rate, 50);
    assert_int_equal(conf.udp_guard.burst, 60);
    assert_int_equal(conf.udp_guard.max_rate, 0);
    assert_int_equal(conf.udp_guard.table_size, 128);
    assert_int_equal(conf.udp_guard.log_interval_ms, 200);
    load_ok("udp = { guard = { }; };\n"); /* an empty group keeps the defaults */
    check_defaults(&conf);
    static const struct error_case cases[] = {
        {"udp = {\n  guard = {\n    colour = 1;\n  };\n};\n", 3, "udp.guard.colour", "unknown key"},
        {"udp = { guard = { listen = [ ]; }; };\n", 1, "udp.guard.listen", "unknown key"},
        {"tcp = {\n  guard = { };\n};\n", 2, "tcp.guard", "unknown key"},
        {"tcp = { max_reply_bytes = 100; };\n", 1, "tcp.max_reply_bytes", "unknown key"},
        {"guard = { };\n", 1, "guard", "unknown key"},
        {"udp = {\n  guard = 1;\n};\n", 2, "udp.guard", "must be a group: guard = { ... };"},
        {"udp = { guard = { enabled = 1; }; };\n", 1, "udp.guard.enabled", "must be true or false"},
        {"udp = { guard = { allow_loopback = \"yes\"; }; };\n", 1, "udp.guard.allow_loopback",
         "must be true or false"},
        {"udp = { guard = {\n limit_loopback = 0.0; }; };\n", 2, "udp.guard.limit_loopback",
         "must be true or false"},
        {"udp = { guard = { rate = \"5\"; }; };\n", 1, "udp.guard.rate", "must be an integer"},
        {"udp = { guard = { burst = true; }; };\n", 1, "udp.guard.burst", "must be an integer"},
        {"udp = { max_reply_bytes = 1.5; };\n", 1, "udp.max_reply_bytes", "must be an integer"},
    };
    CHECK_ERROR_CASES(cases);
}

/* Greet mode needs max_reply_bytes above the greeting, or no reply could ever be sent. */
static void test_udp_greet_reply_rule(void **state)
{
    (void)state;
    /* "Hello, client! You sent: " is 25 bytes. */
    load_ok("udp = { mode = \"greet\"; max_reply_bytes = 26; };");
    assert_int_equal(conf.udp_max_reply_bytes, 26);
    static const struct error_case cases[] = {
        {"udp = {\n  mode = \"greet\";\n  max_reply_bytes = 25;\n};\n", 3, "udp.max_reply_bytes",
         "greet mode needs udp.max_reply_bytes above the greeting's 25 bytes"},
        {"udp = {\n  max_reply_bytes = 4;\n  greeting = \"Hello\";\n  mode = \"greet\";\n};\n", 2,
         "udp.max_reply_bytes",
         "greet mode needs udp.max_reply_bytes above the greeting's 5 bytes"},
    };
    CHECK_ERROR_CASES(cases);
    load_ok("udp = { mode = \"echo\"; max_reply_bytes = 1; };"); /* echo mode does not care */
}

static void test_bad_mode_and_level(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {"tcp = {\n  mode = \"Echo\";\n};\n", 2, "tcp.mode",
         "must be \"echo\" or \"greet\", not \"Echo\""},
        {"udp = {\n\n  mode = \"greeting\";\n};\n", 3, "udp.mode",
         "must be \"echo\" or \"greet\", not \"greeting\""},
        {"tcp = { mode = \"\"; };\n", 1, "tcp.mode", "must be \"echo\" or \"greet\", not \"\""},
        {"\nlog_level = \"verbose\";\n", 2, "log_level",
         "must be \"error\", \"warn\", \"info\" or \"debug\", not \"verbose\""},
    };
    CHECK_ERROR_CASES(cases);
    static const struct {
        const char *name;
        enum log_level level;
    } levels[] = {{"error", LOG_LEVEL_ERROR},
                  {"warn", LOG_LEVEL_WARN},
                  {"info", LOG_LEVEL_INFO},
                  {"debug", LOG_LEVEL_DEBUG}};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        char text[64];
        snprintf(text, sizeof(text), "log_level = \"%s\";", levels[i].name);
        load_ok(text);
        assert_int_equal(conf.log_level, levels[i].level);
    }
}

#define NOT_ADDR " is not \"ADDR:PORT\" or \"[V6ADDR]:PORT\""

static void test_bad_listen_address(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {"tcp = {\n  listen = [ \"localhost:80\" ];\n};\n", 2, "tcp.listen",
         "element 1: \"localhost:80\"" NOT_ADDR},
        {"tcp = {\n\n  listen = [ \"127.0.0.1:7\", \"::1:7\" ];\n};\n", 3, "tcp.listen",
         "element 2: \"::1:7\"" NOT_ADDR},
        {"udp = { listen = [ \"127.0.0.1:65536\" ]; };\n", 1, "udp.listen",
         "element 1: \"127.0.0.1:65536\"" NOT_ADDR},
        {"udp = { listen = [ \"127.0.0.1\" ]; };\n", 1, "udp.listen",
         "element 1: \"127.0.0.1\"" NOT_ADDR},
        {"tcp = { listen = [ 7007 ]; };\n", 1, "tcp.listen", "element 1: a non-string" NOT_ADDR},
        {"tcp = { listen = ( \"127.0.0.1:1\", 2 ); };\n", 1, "tcp.listen",
         "element 2: a non-string" NOT_ADDR},
    };
    CHECK_ERROR_CASES(cases);
}

/* A tcp group listening on n addresses 127.0.0.1:1.. on line 2; into a malloc'd text. */
static char *listen_text(int n)
{
    size_t size = 64 + (size_t)n * 24;
    char *text = malloc(size);
    assert_non_null(text);
    size_t len = (size_t)snprintf(text, size, "tcp = {\n  listen = [");
    for (int i = 0; i < n; i++)
        len +=
            (size_t)snprintf(text + len, size - len, "%s\"127.0.0.1:%d\"", i ? ", " : " ", i + 1);
    snprintf(text + len, size - len, " ];\n};\n");
    return text;
}

static void test_listen_count_limit(void **state)
{
    (void)state;
    char *text = listen_text(64);
    load_ok(text);
    free(text);
    assert_int_equal(conf.tcp.listen_count, 64);
    assert_int_equal(addr_port((const struct sockaddr *)&conf.tcp.listen[63].ss), 64);

    text = listen_text(65);
    check_error(text, 2, "tcp.listen", "at most 64 addresses");
    free(text);
}

/* An empty list turns a service off; the other keeps its default. */
static void test_empty_listen_turns_off(void **state)
{
    (void)state;
    load_ok("tcp = { listen = []; };\n");
    assert_int_equal(conf.tcp.listen_count, 0);
    check_listen_one(&conf.udp, "127.0.0.1:7007");
    load_ok("udp = { listen = ( ); };\n");
    assert_int_equal(conf.udp.listen_count, 0);
    check_listen_one(&conf.tcp, "127.0.0.1:7007");
}

/* A greeting of text repeated to `len` bytes, in udp on line 2. */
static char *greeting_text(size_t len, const char *unit)
{
    size_t size = len + 64;
    char *text = malloc(size);
    assert_non_null(text);
    size_t n = (size_t)snprintf(text, size, "udp = {\n  greeting = \"");
    for (size_t i = 0; i < len; i += strlen(unit))
        n += (size_t)snprintf(text + n, size - n, "%s", unit);
    snprintf(text + n, size - n, "\";\n};\n");
    return text;
}

static void test_greeting_limits(void **state)
{
    (void)state;
    char *text = greeting_text(4096, "ab");
    load_ok(text);
    free(text);
    assert_int_equal(conf.udp.greeting_len, 4096);
    assert_int_equal(strlen(conf.udp.greeting), 4096);

    text = greeting_text(4098, "ab");
    check_error(text, 2, "udp.greeting", "longer than 4096 bytes");
    free(text);

    /* A 4-byte character is fine; broken UTF-8 is not. */
    load_ok("tcp = { greeting = \"\xf0\x9f\x98\x80 \"; };");
    check_greeting(&conf.tcp, "\xf0\x9f\x98\x80 ");
    static const struct error_case cases[] = {
        {"tcp = {\n greeting = \"\xff\";\n};", 2, "tcp.greeting", "is not valid UTF-8"},
        {"tcp = { greeting = \"\xe4\xbd\"; };", 1, "tcp.greeting", "is not valid UTF-8"},
        {"tcp = { greeting = \"\xc0\xaf\"; };", 1, "tcp.greeting", "is not valid UTF-8"},
        {"tcp = { greeting = \"\xed\xa0\x80\"; };", 1, "tcp.greeting", "is not valid UTF-8"},
        {"udp = { greeting = \"\xf4\x90\x80\x80\"; };", 1, "udp.greeting", "is not valid UTF-8"},
        {"udp = { greeting = \"a\x80\"; };", 1, "udp.greeting", "is not valid UTF-8"},
    };
    CHECK_ERROR_CASES(cases);
}

/* Greet mode needs buffer_bytes >= greeting + max_line_bytes + 1, exactly. */
static void test_greet_buffer_rule(void **state)
{
    (void)state;
    /* "Hello, " is 7 bytes: 7 + 1016 + 1 = 1024. */
    load_ok("tcp = { mode = \"greet\"; max_line_bytes = 1016; buffer_bytes = 1024; };");
    assert_int_equal(conf.tcp_max_line_bytes, 1016);
    static const struct error_case cases[] = {
        {"tcp = {\n  mode = \"greet\";\n  max_line_bytes = 1017;\n  buffer_bytes = 1024;\n};\n", 4,
         "tcp.buffer_bytes",
         "greet mode needs tcp.buffer_bytes of at least greeting + max_line_bytes + 1 = 1025 "
         "bytes"},
        /* No buffer_bytes given: the message points at the mode line. */
        {"tcp = {\n  max_line_bytes = 65536;\n  mode = \"greet\";\n};\n", 3, "tcp.mode",
         "greet mode needs tcp.buffer_bytes of at least greeting + max_line_bytes + 1 = 65544 "
         "bytes"},
    };
    CHECK_ERROR_CASES(cases);
    /* Echo mode does not care. */
    load_ok("tcp = { mode = \"echo\"; max_line_bytes = 16777216; buffer_bytes = 1024; };");
}

static void test_syntax_error(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {"workers = 1;\nqueue_capacity = = 2;\n", 2, NULL, "syntax error"},
        {"tcp = {\n  mode = \"echo\";\n  }};\nworkers = 1;\n", 3, NULL, "syntax error"},
        {"workers = 1;\n\n\nlog_level = info;\n", 4, NULL, "syntax error"},
    };
    CHECK_ERROR_CASES(cases);
}

/* libconfig 1.5 reads a last line that is a # or // comment without a newline as a
 * syntax error: conf hands it the text ending in one. An error at the end of the text
 * names the text's last line, whether or not it ends in a newline. */
static void test_last_line_without_newline(void **state)
{
    (void)state;
    load_ok("workers = 2;\n# the last line, no newline");
    assert_int_equal(conf.workers, 2);
    load_ok("workers = 3;\n// the last line, no newline");
    assert_int_equal(conf.workers, 3);
    load_ok("workers = 4; # a comment after the value");
    assert_int_equal(conf.workers, 4);
    load_ok("workers = 5;\n/* a block comment */");
    assert_int_equal(conf.workers, 5);
    static const struct error_case cases[] = {
        {"workers = 1;\nqueue_capacity =", 2, NULL, "syntax error"},
        {"workers = 1;\nqueue_capacity =\n", 2, NULL, "syntax error"},
        {"workers = 1;\ntcp = { # open", 2, NULL, "syntax error"},
        {"workers = 1;\n\nbogus = 2; # no newline", 3, "bogus", "unknown key"},
    };
    CHECK_ERROR_CASES(cases);
}

/* After a good load, a bad one leaves every value of the good one. */
static void test_unchanged_on_failure(void **state)
{
    (void)state;
    load_ok(full_config);
    check_out_of_range(&ranges[1], 0);
    check_error("tcp = { mode = \"greet\"; buffer_bytes = 1024; };", 1, "tcp.buffer_bytes",
                "greet mode needs tcp.buffer_bytes of at least greeting + max_line_bytes + 1 = "
                "8200 bytes");
    /* The failure came late: earlier keys (workers, tcp.listen) were valid. */
    check_error("workers = 9;\ntcp = { listen = []; };\nudp = { mode = \"x\"; };\n", 3, "udp.mode",
                "must be \"echo\" or \"greet\", not \"x\"");
    assert_int_equal(conf.workers, 3);
    assert_int_equal(conf.tcp.listen_count, 2);
    check_greeting(&conf.udp, UDP_CHINESE);
}

/* A short error buffer truncates the message and never overruns. */
static void test_error_buffer_truncation(void **state)
{
    (void)state;
    char small[16];
    memset(small, '#', sizeof(small));
    assert_int_equal(conf_load_string(&conf, "bogus = 1;", NAME, small, 10), -EINVAL);
    assert_string_equal(small, "test.conf");
    assert_int_equal(small[10], '#');
}

static void test_worker_count(void **state)
{
    (void)state;
    cpu_set_t set;
    assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
    unsigned cpus = (unsigned)CPU_COUNT(&set);
    assert_int_equal(conf.workers, 0);
    assert_int_equal(conf_worker_count(&conf), cpus > CONF_MAX_WORKERS ? CONF_MAX_WORKERS : cpus);
    conf.workers = 5;
    assert_int_equal(conf_worker_count(&conf), 5);
    conf.workers = CONF_MAX_WORKERS;
    assert_int_equal(conf_worker_count(&conf), CONF_MAX_WORKERS);
}

static void test_missing_file(void **state)
{
    (void)state;
    const char *path = "/nonexistent-echod-test/echod.conf";
    struct conf before;
    memcpy(&before, &conf, sizeof(conf));
    int rc = conf_load_file(&conf, path, err, sizeof(err));
    assert_int_equal(rc, -ENOENT);
    assert_int_not_equal(rc, -EINVAL);
    assert_non_null(strstr(err, path));
    assert_memory_equal(&conf, &before, sizeof(conf));
}

/* libconfig 1.5 wraps plain integer literals past 32 bits ("4294967297" would read as 1):
 * conf refuses them before libconfig sees them, naming the key and line. Numbers in
 * strings and comments, floats, and L-suffixed literals are not such literals. */
static void test_wrapping_integer_literals(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {"workers = 4294967297;\n", 1, "workers",
         "4294967297 is out of range (integers are 32-bit)"},
        {"# x\nworkers = 2147483648;\n", 2, "workers",
         "2147483648 is out of range (integers are 32-bit)"},
        {"workers = -2147483649;\n", 1, "workers",
         "-2147483649 is out of range (integers are 32-bit)"},
        {"workers = 0x100000001;\n", 1, "workers",
         "0x100000001 is out of range (integers are 32-bit)"},
        {"tcp = {\n  max_line_bytes =\n\n    99999999999999999999;\n};\n", 4, "max_line_bytes",
         "99999999999999999999 is out of range (integers are 32-bit)"},
    };
    CHECK_ERROR_CASES(cases);
    load_ok("/* 4294967297 */ workers = 3; # 99999999999\n"
            "tcp = { greeting = \"4294967297 \\\" 4294967297\"; }; // 4294967297\n");
    assert_int_equal(conf.workers, 3);
    assert_string_equal(conf.tcp.greeting, "4294967297 \" 4294967297");
    check_error("workers = 1.5e10;\n", 1, "workers", "must be an integer");
    check_error("workers = 4294967297L;\n", 1, "workers",
                "must be between 0 and 1024, not 4294967297L");
}

/* A range error quotes the literal as written: libconfig reads a hex literal into an int,
 * so 0xFFFFFFFF has the value -1, which is not what the file says. */
static void test_range_error_quotes_the_literal(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {"idle_timeout_ms = 0xFFFFFFFF;\n", 1, "idle_timeout_ms",
         "must be between 0 and 2147483647, not 0xFFFFFFFF"},
        {"# c\nsend_timeout_ms = 0x80000000;\n", 2, "send_timeout_ms",
         "must be between 0 and 2147483647, not 0x80000000"},
        {"workers = 0x0000ffff;\n", 1, "workers", "must be between 0 and 1024, not 0x0000ffff"},
        {"workers = +2000;\n", 1, "workers", "must be between 0 and 1024, not +2000"},
        {"workers = 2000L;\n", 1, "workers", "must be between 0 and 1024, not 2000L"},
        /* The name on one line, the value further down: the value as written. */
        {"tcp = {\n  backlog =\n\n    0x10000; # 65536\n};\n", 2, "tcp.backlog",
         "must be between 1 and 65535, not 0x10000"},
        {"udp = { guard = { rate = 0; burst = 0x0; }; };\n", 1, "udp.guard.rate",
         "must be between 1 and 10000000, not 0"},
    };
    CHECK_ERROR_CASES(cases);
}

/* A string cannot hold a NUL byte: libconfig 1.5 drops the "\x00" escape, so
 * "Hi\x00there: " would load as "Hithere: ". conf refuses it (or "\X00") with its line,
 * before libconfig sees the text; "\\x00" (a backslash, then "x00") is just text. */
static void test_nul_escape_refused(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {"tcp = {\n  greeting = \"Hi\\x00there: \";\n};\n", 2, "greeting",
         "\\x00 (a NUL byte) is not allowed in a string"},
        {"udp = { mode = \"greet\"; greeting = \"a\\X00\"; };\n", 1, "greeting",
         "\\X00 (a NUL byte) is not allowed in a string"},
        {"log_level = \"info\";\ntcp = { listen = [ \"127.0.0.1:0\\x00\" ]; };\n", 2, "listen",
         "\\x00 (a NUL byte) is not allowed in a string"},
        /* In a string continued on a second line: that line. */
        {"tcp = { greeting = \"a\"\n  \"b\\x00\"; };\n", 2, "greeting",
         "\\x00 (a NUL byte) is not allowed in a string"},
    };
    CHECK_ERROR_CASES(cases);
    load_ok("tcp = { greeting = \"\\\\x00 \\x01\\x41\"; }; # \\x00\n");
    assert_string_equal(conf.tcp.greeting, "\\x00 \x01"
                                           "A");
}

/* @include is refused before libconfig sees it: its reader exits the process when the
 * included path is a directory. In strings and comments "@include" is just text. */
static void test_include_refused(void **state)
{
    (void)state;
    check_error("workers = 2;\n@include \"/\"\n", 2, "@include",
                "is not supported (echod reads one file)");
    check_error("  @include \"/etc/echod/other.conf\"\n", 1, "@include",
                "is not supported (echod reads one file)");
    load_ok("# @include \"/\"\ntcp = { greeting = \"@include \\\"/\\\"\"; };\n");
    assert_string_equal(conf.tcp.greeting, "@include \"/\"");
}

/* A path that is not a regular file, or a file with a NUL byte, is refused with its
 * path and reason: libconfig's reader would exit the process on a directory. */
static void test_unreadable_file(void **state)
{
    (void)state;
    assert_int_equal(conf_load_file(&conf, "/", err, sizeof(err)), -EISDIR);
    assert_string_equal(err, "/: is a directory, not a regular file");
    assert_int_equal(conf_load_file(&conf, "/dev/null", err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "/dev/null: is a character device, not a regular file");
    char path[] = "/tmp/echod-test_conf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "workers = 2;\0\n", 14), 14);
    close(fd);
    int rc = conf_load_file(&conf, path, err, sizeof(err));
    unlink(path);
    assert_int_equal(rc, -EILSEQ);
    assert_non_null(strstr(err, "cannot read: contains a NUL byte"));
    assert_int_equal(conf.workers, 0);
}

/* The shipped etc/echod.conf loads, and (as it says) sets exactly the defaults. */
static void test_shipped_conf(void **state)
{
    (void)state;
    const char *srcdir = getenv("ECHOD_SRCDIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/etc/echod.conf", srcdir ? srcdir : ".");
    int rc = conf_load_file(&conf, path, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s: load failed with %d: %s (set ECHOD_SRCDIR to the source tree)", path, rc,
                 err);
    check_defaults(&conf);
}

/* tcp.proxy_protocol, tcp.proxy_from: every value, the networks as given, and the rule
 * that a header is accepted from named networks only. */
static void test_proxy_keys(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        enum proxy_accept accept;
    } values[] = {{"v1", PROXY_V1}, {"v2", PROXY_V2}, {"any", PROXY_ANY}, {"off", PROXY_OFF}};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char text[160];
        snprintf(text, sizeof(text),
                 "tcp = { proxy_protocol = \"%s\"; proxy_from = [ \"10.0.0.0/8\", \"::1\" ]; };\n",
                 values[i].name);
        load_ok(text);
        assert_int_equal(conf.tcp_proxy_protocol, values[i].accept);
        assert_int_equal(conf.tcp_proxy_from_count, 2);
    }
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a010203)};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    struct sockaddr_in out = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0b000001)};
    assert_true(proxy_net_contains(conf.tcp_proxy_from, 2, (struct sockaddr *)&in));
    assert_true(proxy_net_contains(conf.tcp_proxy_from, 2, (struct sockaddr *)&in6));
    assert_false(proxy_net_contains(conf.tcp_proxy_from, 2, (struct sockaddr *)&out));
    load_ok("tcp = { proxy_from = [ ]; proxy_timeout_ms = 250; };\n"); /* off: none needed */
    assert_int_equal(conf.tcp_proxy_from_count, 0);
    assert_int_equal(conf.tcp_proxy_timeout_ms, 250);
    static const struct error_case cases[] = {
        {"tcp = {\n  proxy_protocol = \"on\";\n};\n", 2, "tcp.proxy_protocol",
         "must be \"off\", \"v1\", \"v2\" or \"any\", not \"on\""},
        {"tcp = { proxy_protocol = 2; };\n", 1, "tcp.proxy_protocol", "must be a string"},
        {"tcp = {\n  proxy_from = \"10.0.0.0/8\";\n};\n", 2, "tcp.proxy_from",
         "must be a list of \"ADDR/BITS\" strings"},
        {"tcp = { proxy_from = [ \"10.0.0.0/8\", \"10.0.0.1/8\" ]; };\n", 1, "tcp.proxy_from",
         "element 2: \"10.0.0.1/8\" is not \"ADDR/BITS\" (no bit set past BITS) or \"ADDR\""},
        {"tcp = { proxy_from = [ \"localhost\" ]; };\n", 1, "tcp.proxy_from",
         "element 1: \"localhost\" is not \"ADDR/BITS\" (no bit set past BITS) or \"ADDR\""},
        {"tcp = { proxy_from = [ 8 ]; };\n", 1, "tcp.proxy_from",
         "element 1: a non-string is not \"ADDR/BITS\" (no bit set past BITS) or \"ADDR\""},
        {"udp = { proxy_protocol = \"v1\"; };\n", 1, "udp.proxy_protocol", "unknown key"},
        /* On without proxy_from: refused, at the key that turned it on... */
        {"# proxied\ntcp = {\n  proxy_protocol = \"v2\";\n};\n", 3, "tcp.proxy_protocol",
         "tcp.proxy_protocol \"v2\" needs tcp.proxy_from, the networks allowed to send a PROXY "
         "header (none is by default)"},
        /* ... or at an empty proxy_from. */
        {"tcp = {\n  proxy_protocol = \"any\";\n  proxy_from = [ ];\n};\n", 3, "tcp.proxy_from",
         "tcp.proxy_protocol \"any\" needs tcp.proxy_from, the networks allowed to send a PROXY "
         "header (none is by default)"},
    };
    CHECK_ERROR_CASES(cases);
    char text[4096];
    size_t len = (size_t)snprintf(text, sizeof(text), "tcp = { proxy_from = [");
    for (int i = 0; i < 65; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%s\"10.0.%d.0/24\"",
                                i ? ", " : " ", i);
    snprintf(text + len, sizeof(text) - len, " ]; };\n");
    check_error(text, 1, "tcp.proxy_from", "at most 64 networks");
    text[strlen(text) - strlen(", \"10.0.64.0/24\" ]; };\n")] = '\0';
    strcat(text, " ]; };\n");
    load_ok(text);
    assert_int_equal(conf.tcp_proxy_from_count, 64);
}

/* instance: the file's base name without its extension unless the key sets it. */
static void test_instance(void **state)
{
    (void)state;
    assert_string_equal(conf.instance, "echod"); /* no file: the built-in default */
    static const struct {
        const char *name, *want;
    } names[] = {
        {"/etc/echod/eu-1.conf", "eu-1"},  {"web.v2.conf", "web.v2"}, {"plain", "plain"},
        {"/etc/echod/.hidden", ".hidden"}, {"/etc/echod/", "echod"},  {"a/b.c/d", "d"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_int_equal(conf_load_string(&conf, "", names[i].name, err, sizeof(err)), 0);
        assert_string_equal(conf.instance, names[i].want);
    }
    load_ok("instance = \"web-3\";\n");
    assert_string_equal(conf.instance, "web-3");
    load_ok("# the key is gone: the file's name again\n");
    assert_string_equal(conf.instance, "test");
    char long_name[80];
    snprintf(long_name, sizeof(long_name), "instance = \"%064d\";\n", 7);
    load_ok(long_name);
    assert_int_equal(strlen(conf.instance), 64);
    static const struct error_case cases[] = {
        {"\ninstance = \"\";\n", 2, "instance", "must be 1 to 64 bytes long"},
        {"instance = \"00000000000000000000000000000000000000000000000000000000000000000\";\n", 1,
         "instance", "must be 1 to 64 bytes long"},
        {"instance = 3;\n", 1, "instance", "must be a string"},
        {"instance = \"\xff\";\n", 1, "instance", "is not valid UTF-8"},
    };
    CHECK_ERROR_CASES(cases);
}

/* A greeting is a template: placeholders compile, mistakes are errors with their line. */
static void test_greeting_template(void **state)
{
    (void)state;
    load_ok("tcp = { greeting = \"{instance}@{host} saw {client}: \"; };\n"
            "udp = { greeting = \"{{literal}} {server} {pid} {worker}\"; };\n");
    assert_string_equal(conf.tcp.greeting, "{instance}@{host} saw {client}: ");
    assert_int_equal(conf.tcp.greeting_template.fields, TEMPLATE_BIT(TEMPLATE_INSTANCE) |
                                                            TEMPLATE_BIT(TEMPLATE_HOST) |
                                                            TEMPLATE_BIT(TEMPLATE_CLIENT));
    assert_int_equal(conf.udp.greeting_template.fields, TEMPLATE_BIT(TEMPLATE_SERVER) |
                                                            TEMPLATE_BIT(TEMPLATE_PID) |
                                                            TEMPLATE_BIT(TEMPLATE_WORKER));
    assert_true(template_is_literal(&conf.tcp.greeting_template) == false);
    load_ok("");
    assert_true(template_is_literal(&conf.tcp.greeting_template));
    assert_string_equal(conf.tcp.greeting_template.text, "Hello, ");
    static const struct error_case cases[] = {
        {"tcp = {\n  greeting = \"{hostname}: \";\n};\n", 2, "tcp.greeting",
         "unknown placeholder {hostname} (known: {host} {instance} {server} {client} {pid} "
         "{worker}; {{ and }} write a brace)"},
        {"\n\nudp = { greeting = \"hi {client\"; };\n", 3, "udp.greeting",
         "unbalanced '{' at byte 4 (write {{ for a literal brace)"},
        {"udp = { greeting = \"a } b\"; };\n", 1, "udp.greeting",
         "unbalanced '}' at byte 3 (write }} for a literal brace)"},
    };
    CHECK_ERROR_CASES(cases);
}

/* The size rules hold for a template's longest rendering: an address is 55 bytes at
 * most, {host} 64, {instance} as long as the name in force. */
static void test_greeting_template_sizes(void **state)
{
    (void)state;
    load_ok("tcp = { mode = \"greet\"; greeting = \"{client}\"; max_line_bytes = 968;"
            " buffer_bytes = 1024; };");
    assert_int_equal(conf.tcp.greeting_max_bytes, 55);
    load_ok("udp = { mode = \"greet\"; greeting = \"{host}\"; max_reply_bytes = 65; };");
    load_ok("instance = \"abc\"; udp = { mode = \"greet\"; greeting = \"{instance}{{\";"
            " max_reply_bytes = 5; };");
    assert_int_equal(conf.udp.greeting_max_bytes, 4);
    static const struct error_case cases[] = {
        {"tcp = {\n  mode = \"greet\";\n  greeting = \"{client}\";\n  max_line_bytes = 969;\n"
         "  buffer_bytes = 1024;\n};\n",
         5, "tcp.buffer_bytes",
         "greet mode needs tcp.buffer_bytes of at least greeting + max_line_bytes + 1 = 1025 "
         "bytes"},
        {"udp = {\n  mode = \"greet\";\n  greeting = \"{host}\";\n  max_reply_bytes = 64;\n};\n", 4,
         "udp.max_reply_bytes",
         "greet mode needs udp.max_reply_bytes above the greeting's 64 bytes"},
        {"instance = \"abcd\";\nudp = {\n  mode = \"greet\";\n  greeting = \"{instance}{{\";\n"
         "  max_reply_bytes = 5;\n};\n",
         5, "udp.max_reply_bytes",
         "greet mode needs udp.max_reply_bytes above the greeting's 5 bytes"},
    };
    CHECK_ERROR_CASES(cases);
}

/* tcp.reuseport and udp.reuseport: booleans, off by default. */
static void test_reuseport(void **state)
{
    (void)state;
    assert_false(conf.tcp.is_reuseport);
    assert_false(conf.udp.is_reuseport);
    load_ok("tcp = { reuseport = true; };\n");
    assert_true(conf.tcp.is_reuseport);
    assert_false(conf.udp.is_reuseport);
    load_ok("udp = { reuseport = true; };\n");
    assert_false(conf.tcp.is_reuseport);
    assert_true(conf.udp.is_reuseport);
    static const struct error_case cases[] = {
        {"tcp = {\n  reuseport = 1;\n};\n", 2, "tcp.reuseport", "must be true or false"},
        {"udp = { reuseport = \"yes\"; };\n", 1, "udp.reuseport", "must be true or false"},
        {"reuseport = true;\n", 1, "reuseport", "unknown key"},
    };
    CHECK_ERROR_CASES(cases);
}

/* metrics.listen: off by default, a list of addresses as tcp.listen (port 0 allowed),
 * with the same errors; metrics has no other key and must be a group. */
static void test_metrics_listen(void **state)
{
    (void)state;
    load_ok("metrics = { listen = [ \"127.0.0.1:9107\", \"[::1]:0\" ]; };\n");
    assert_int_equal(conf.metrics_listen_count, 2);
    char buf[ADDR_STRLEN];
    addr_format((const struct sockaddr *)&conf.metrics_listen[0].ss, buf, sizeof(buf));
    assert_string_equal(buf, "127.0.0.1:9107");
    addr_format((const struct sockaddr *)&conf.metrics_listen[1].ss, buf, sizeof(buf));
    assert_string_equal(buf, "[::1]:0");
    check_listen_one(&conf.tcp, "127.0.0.1:7007"); /* the services keep their defaults */
    load_ok("metrics = { listen = []; };\n");
    assert_int_equal(conf.metrics_listen_count, 0);
    load_ok("metrics = { };\n");
    assert_int_equal(conf.metrics_listen_count, 0);
    static const struct error_case cases[] = {
        {"metrics = {\n  listen = [ \"localhost:9107\" ];\n};\n", 2, "metrics.listen",
         "element 1: \"localhost:9107\" is not \"ADDR:PORT\" or \"[V6ADDR]:PORT\""},
        {"metrics = { listen = \"127.0.0.1:9107\"; };\n", 1, "metrics.listen",
         "must be a list of \"ADDR:PORT\" strings"},
        {"metrics = { port = 9107; };\n", 1, "metrics.port", "unknown key"},
        {"metrics = { mode = \"echo\"; };\n", 1, "metrics.mode", "unknown key"},
        {"metrics = 9107;\n", 1, "metrics", "must be a group: metrics = { ... };"},
    };
    CHECK_ERROR_CASES(cases);
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_defaults),
        TEST(test_empty_config_gives_defaults),
        TEST(test_full_config),
        TEST(test_readme_greet_example),
        TEST(test_each_load_starts_from_defaults),
        TEST(test_unknown_keys),
        TEST(test_each_key_is_known),
        TEST(test_wrong_types),
        TEST(test_out_of_range),
        TEST(test_range_ends_accepted),
        TEST(test_udp_guard_ranges),
        TEST(test_udp_guard_keys),
        TEST(test_udp_greet_reply_rule),
        TEST(test_bad_mode_and_level),
        TEST(test_bad_listen_address),
        TEST(test_listen_count_limit),
        TEST(test_empty_listen_turns_off),
        TEST(test_metrics_listen),
        TEST(test_greeting_limits),
        TEST(test_greet_buffer_rule),
        TEST(test_syntax_error),
        TEST(test_last_line_without_newline),
        TEST(test_unchanged_on_failure),
        TEST(test_error_buffer_truncation),
        TEST(test_worker_count),
        TEST(test_missing_file),
        TEST(test_wrapping_integer_literals),
        TEST(test_range_error_quotes_the_literal),
        TEST(test_nul_escape_refused),
        TEST(test_include_refused),
        TEST(test_unreadable_file),
        TEST(test_shipped_conf),
        TEST(test_proxy_keys),
        TEST(test_instance),
        TEST(test_greeting_template),
        TEST(test_greeting_template_sizes),
        TEST(test_reuseport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
