/* test_template: greeting templates. Compiling (literal text, every placeholder, "{{" and
 * "}}", adjacent placeholders, the errors: unknown name, unbalanced braces, an empty
 * name), binding early values (what is left, literals merged), rendering with exact
 * bytes (an unknown value renders as nothing, a short buffer is cut and NUL-terminated),
 * the worst-case length, and the site values (IPv4 and IPv6 addresses as addr_format). */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "template.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "addr.h"

/* Compile src (which must succeed) into *t. */
static void compile_ok(const char *src, struct template *t)
{
    char err[256] = "";
    int rc = template_compile(src, strlen(src), t, err, sizeof(err));
    if (rc != 0)
        fail_msg("compiling \"%s\": %d (%s)", src, rc, err);
}

/* Compile src, which must fail with an error containing needle. */
static void compile_fails(const char *src, const char *needle)
{
    struct template t = {0};
    char err[256] = "";
    assert_int_equal(template_compile(src, strlen(src), &t, err, sizeof(err)), -EINVAL);
    if (strstr(err, needle) == NULL)
        fail_msg("compiling \"%s\": error \"%s\" does not say \"%s\"", src, err, needle);
    assert_null(t.text);
    assert_null(t.segments);
}

/* Render t with v and compare with want, byte for byte. */
static void expect_render(const struct template *t, const struct template_values *v,
                          const char *want)
{
    char buf[512];
    size_t len = template_render(t, v, buf, sizeof(buf));
    assert_int_equal(len, strlen(want));
    assert_string_equal(buf, want);
}

static const struct template_values all_values = {{
    [TEMPLATE_HOST] = "box",
    [TEMPLATE_INSTANCE] = "eu-1",
    [TEMPLATE_SERVER] = "127.0.0.1:7007",
    [TEMPLATE_CLIENT] = "127.0.0.1:40000",
    [TEMPLATE_PID] = "1234",
    [TEMPLATE_WORKER] = "3",
}};

static void test_literal_text_is_one_segment(void **state)
{
    (void)state;
    struct template t;
    compile_ok("Hello, ", &t);
    assert_true(template_is_literal(&t));
    assert_int_equal(t.count, 1);
    assert_int_equal(t.text_len, 7);
    assert_string_equal(t.text, "Hello, ");
    expect_render(&t, &all_values, "Hello, ");
    template_free(&t);
}

static void test_empty_template(void **state)
{
    (void)state;
    struct template t;
    compile_ok("", &t);
    assert_true(template_is_literal(&t));
    assert_int_equal(t.count, 0);
    assert_non_null(t.text);
    expect_render(&t, &all_values, "");
    template_free(&t);
}

static void test_every_placeholder(void **state)
{
    (void)state;
    struct template t;
    compile_ok("{host}|{instance}|{server}|{client}|{pid}|{worker}", &t);
    assert_false(template_is_literal(&t));
    assert_int_equal(t.fields, (1u << TEMPLATE_FIELD_COUNT) - 1);
    expect_render(&t, &all_values, "box|eu-1|127.0.0.1:7007|127.0.0.1:40000|1234|3");
    template_free(&t);
}

static void test_issue_example(void **state)
{
    (void)state;
    struct template t;
    compile_ok("{instance}@{host} saw {client}: ", &t);
    assert_int_equal(t.count, 6);
    expect_render(&t, &all_values, "eu-1@box saw 127.0.0.1:40000: ");
    template_free(&t);
}

static void test_adjacent_and_repeated_placeholders(void **state)
{
    (void)state;
    struct template t;
    compile_ok("{pid}{pid}{worker}", &t);
    assert_int_equal(t.count, 3);
    expect_render(&t, &all_values, "123412343");
    template_free(&t);
}

static void test_doubled_braces_are_literal(void **state)
{
    (void)state;
    struct template t;
    compile_ok("{{host}} is {host}; }}{{ {{{pid}}}", &t);
    assert_int_equal(t.fields, TEMPLATE_BIT(TEMPLATE_HOST) | TEMPLATE_BIT(TEMPLATE_PID));
    expect_render(&t, &all_values, "{host} is box; }{ {1234}");
    template_free(&t);
    compile_ok("{{}}", &t);
    assert_true(template_is_literal(&t));
    assert_string_equal(t.text, "{}");
    template_free(&t);
}

static void test_utf8_and_nul_free_text_kept(void **state)
{
    (void)state;
    struct template t;
    compile_ok("\xe4\xbd\xa0\xe5\xa5\xbd {worker}\xef\xbc\x9a", &t);
    expect_render(&t, &all_values, "\xe4\xbd\xa0\xe5\xa5\xbd 3\xef\xbc\x9a");
    template_free(&t);
}

static void test_unknown_placeholder(void **state)
{
    (void)state;
    compile_fails("hi {hostname}: ", "unknown placeholder {hostname}");
    compile_fails("{}", "unknown placeholder {}");
    compile_fails("{HOST}", "unknown placeholder {HOST}");
    compile_fails("{ host}", "unknown placeholder { host}");
}

static void test_unbalanced_braces(void **state)
{
    (void)state;
    compile_fails("hi {host", "unbalanced '{' at byte 4");
    compile_fails("{", "unbalanced '{' at byte 1");
    compile_fails("a}b", "unbalanced '}' at byte 2");
    compile_fails("{ho{st}", "unbalanced '{' at byte 1");
    compile_fails("{{{", "unbalanced '{' at byte 3");
    compile_fails("}", "write }} for a literal brace");
}

static void test_compile_stops_at_len(void **state)
{
    (void)state;
    struct template t;
    char err[64];
    assert_int_equal(template_compile("ab{pid}", 2, &t, err, sizeof(err)), 0);
    assert_true(template_is_literal(&t));
    assert_string_equal(t.text, "ab");
    template_free(&t);
}

static void test_bind_leaves_unknown_fields(void **state)
{
    (void)state;
    struct template t, bound, done;
    compile_ok("{instance}@{host} [{worker}] saw {client}: ", &t);
    struct template_values early = {{[TEMPLATE_HOST] = "box", [TEMPLATE_INSTANCE] = "eu-1"}};
    assert_int_equal(template_bind(&t, &early, &bound), 0);
    assert_int_equal(bound.fields, TEMPLATE_BIT(TEMPLATE_WORKER) | TEMPLATE_BIT(TEMPLATE_CLIENT));
    assert_string_equal(bound.text, "eu-1@box [] saw : "); /* literals merged */
    assert_int_equal(bound.count, 5);
    struct template_values worker = {{[TEMPLATE_WORKER] = "0"}};
    assert_int_equal(template_bind(&bound, &worker, &done), 0);
    assert_int_equal(done.fields, TEMPLATE_BIT(TEMPLATE_CLIENT));
    struct template_values client = {{[TEMPLATE_CLIENT] = "[::1]:5"}};
    expect_render(&done, &client, "eu-1@box [0] saw [::1]:5: ");
    template_free(&t);
    template_free(&bound);
    template_free(&done);
}

static void test_bind_everything_gives_a_literal(void **state)
{
    (void)state;
    struct template t, bound;
    compile_ok("{host}-{pid}", &t);
    assert_int_equal(template_bind(&t, &all_values, &bound), 0);
    assert_true(template_is_literal(&bound));
    assert_int_equal(bound.count, 1);
    assert_string_equal(bound.text, "box-1234");
    assert_int_equal(bound.text_len, 8);
    template_free(&t);
    template_free(&bound);
}

static void test_render_unknown_is_empty_and_short_buffer_cut(void **state)
{
    (void)state;
    struct template t;
    compile_ok("a{client}b{host}c", &t);
    struct template_values none = {{0}};
    expect_render(&t, &none, "abc");
    char small[5];
    assert_int_equal(template_render(&t, &all_values, small, sizeof(small)),
                     strlen("a127.0.0.1:40000bboxc"));
    assert_string_equal(small, "a127");
    template_free(&t);
}

static void test_max_len(void **state)
{
    (void)state;
    struct template t;
    compile_ok("ab{{", &t);
    assert_int_equal(template_max_len(&t, 4), 3);
    template_free(&t);
    compile_ok("[{host}|{instance}|{server}|{client}|{pid}|{worker}]", &t);
    assert_int_equal(template_max_len(&t, 7),
                     7 + TEMPLATE_HOST_MAX + 7 + 2 * (ADDR_STRLEN - 1) + 10 + 10);
    template_free(&t);
}

static void test_site_values(void **state)
{
    (void)state;
    struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons(7007)};
    inet_pton(AF_INET, "127.0.0.1", &server.sin_addr);
    struct sockaddr_in6 client = {.sin6_family = AF_INET6, .sin6_port = htons(65535)};
    inet_pton(AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", &client.sin6_addr);
    char server_text[ADDR_STRLEN], client_text[ADDR_STRLEN];
    struct template_values v = all_values;
    template_values_site(&v, "udp", (const struct sockaddr *)&server, server_text,
                         (const struct sockaddr *)&client, client_text);
    struct template t;
    compile_ok("{server} {client} {worker} {host}", &t);
    expect_render(&t, &v, "127.0.0.1:7007 [ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535 udp box");
    /* The longest address fits the bound template_max_len assumes. */
    assert_true(strlen(client_text) <= ADDR_STRLEN - 1);
    template_values_site(&v, "1", NULL, server_text, NULL, client_text);
    expect_render(&t, &v, "  1 box");
    template_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_text_is_one_segment),
        cmocka_unit_test(test_empty_template),
        cmocka_unit_test(test_every_placeholder),
        cmocka_unit_test(test_issue_example),
        cmocka_unit_test(test_adjacent_and_repeated_placeholders),
        cmocka_unit_test(test_doubled_braces_are_literal),
        cmocka_unit_test(test_utf8_and_nul_free_text_kept),
        cmocka_unit_test(test_unknown_placeholder),
        cmocka_unit_test(test_unbalanced_braces),
        cmocka_unit_test(test_compile_stops_at_len),
        cmocka_unit_test(test_bind_leaves_unknown_fields),
        cmocka_unit_test(test_bind_everything_gives_a_literal),
        cmocka_unit_test(test_render_unknown_is_empty_and_short_buffer_cut),
        cmocka_unit_test(test_max_len),
        cmocka_unit_test(test_site_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
