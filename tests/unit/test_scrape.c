/* test_scrape: scrape_parse_response, the HTTP side of echod-cli --stat: the status line
 * (200 taken; other codes, other protocols and binary refused with a message that quotes
 * them), headers ended by CRLF CRLF or LF LF, the body split exactly, Content-Length
 * checked against the body (a response cut short is refused), and chunked coding refused.
 * scrape_fetch itself is driven by tests/integration/test_cli.c against a fake server. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "scrape.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Parse text as a whole response; the result, with r filled. */
static int parse(const char *text, struct scrape_response *r)
{
    memset(r, 0, sizeof(*r));
    r->len = strlen(text);
    r->cap = r->len + 1;
    r->buf = malloc(r->cap);
    assert_non_null(r->buf);
    memcpy(r->buf, text, r->cap);
    return scrape_parse_response(r);
}

static void expect_body(const char *text, int status, const char *body)
{
    struct scrape_response r;
    int rc = parse(text, &r);
    if (rc != 0)
        fail_msg("\"%s\": %d (%s), expected 0", text, rc, r.error);
    assert_int_equal(r.status, status);
    assert_int_equal(r.body_len, strlen(body));
    assert_memory_equal(r.body, body, r.body_len);
    scrape_response_free(&r);
}

static void expect_refused(const char *text, const char *needle)
{
    struct scrape_response r;
    int rc = parse(text, &r);
    if (rc != -EPROTO)
        fail_msg("\"%s\": %d, expected -EPROTO", text, rc);
    if (!strstr(r.error, needle))
        fail_msg("\"%s\": the message \"%s\" does not say \"%s\"", text, r.error, needle);
    scrape_response_free(&r);
}

static void ok_responses(void **state)
{
    (void)state;
    expect_body("HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\r\na 1\n", 200,
                "a 1\n");
    expect_body("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\na 1\n", 200, "a 1\n");
    expect_body("HTTP/1.1 200 OK\r\ncontent-length:  4\r\nX: y\r\n\r\na 1\n", 200, "a 1\n");
    expect_body("HTTP/1.0 200\n\nb 2", 200, "b 2");  /* no reason, bare LF */
    expect_body("HTTP/1.0 200 OK\r\n\r\n", 200, ""); /* empty body */
    expect_body("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 200, "");
    /* The body may itself hold blank lines and "HTTP/1.0" text. */
    expect_body("HTTP/1.0 200 OK\r\n\r\n\r\n\r\nHTTP/1.0 404\n", 200, "\r\n\r\nHTTP/1.0 404\n");
}

static void bad_status(void **state)
{
    (void)state;
    expect_refused("HTTP/1.0 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
                   "HTTP status 404 Not Found");
    expect_refused("HTTP/1.1 503\r\n\r\n", "HTTP status 503");
    expect_refused("HTTP/1.1 500 Internal\x01" "Error\r\n\r\n", "HTTP status 500 Internal.Error");
}

static void not_http(void **state)
{
    (void)state;
    /* An echo server sends the request back. */
    expect_refused("GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n",
                   "not an HTTP response (it begins \"GET /metrics HTTP/1.0..Host: x....\")");
    expect_refused("HTTP/2 200\r\n\r\n", "not an HTTP response");
    expect_refused("HTTP/1.0 2000 OK\r\n\r\n", "not an HTTP response");
    expect_refused("HTTP/1.0 20 OK\r\n\r\n", "not an HTTP response");
    expect_refused("HTTP/1.0 200 OK", "not an HTTP response"); /* no line end at all */
    expect_refused("\x16\x03\x01\x02\x7f", "not an HTTP response (it begins \".....\")");
}

static void bad_framing(void **state)
{
    (void)state;
    expect_refused("HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\na 1\n",
                   "a body of 4 bytes where Content-Length says 10");
    expect_refused("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\na 1\n",
                   "a body of 4 bytes where Content-Length says 2");
    expect_refused("HTTP/1.0 200 OK\r\nContent-Length: ten\r\n\r\na 1\n", "a bad Content-Length");
    expect_refused("HTTP/1.0 200 OK\r\nContent-Length: 4x\r\n\r\na 1\n", "a bad Content-Length");
    expect_refused("HTTP/1.0 200 OK\r\nContent-Length: -4\r\n\r\na 1\n", "a bad Content-Length");
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\na 1\n\r\n0\r\n\r\n",
                   "Transfer-Encoding");
    expect_refused("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n", "the headers never end");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ok_responses),
        cmocka_unit_test(bad_status),
        cmocka_unit_test(not_http),
        cmocka_unit_test(bad_framing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
