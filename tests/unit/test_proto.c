/* test_proto: the greet-mode line framer and the small proto helpers. One line, many
 * lines per read, a line fed byte by byte, CRLF, NULs, empty lines, a trailing partial
 * line at EOF, the max_line_bytes edge (exactly max accepted, max+1 refused, with and
 * without its '\n' seen), output-full then resume, a UTF-8 greeting, the too-long reply,
 * and mode names. A randomized property test (fixed seed) streams random input split at
 * random points through small output rings and compares with a reference answer. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define OUT_MAX 4096
/* "你好, " in UTF-8. */
#define CHINESE_GREETING "\xe4\xbd\xa0\xe5\xa5\xbd\x2c\x20"

static uint8_t out_storage[OUT_MAX];

static const struct proto_greet hello = {"Hello, ", 7, 16};

/* An empty output ring of cap bytes over out_storage, poisoned. */
static struct buf out_ring(size_t cap)
{
    memset(out_storage, '#', sizeof(out_storage));
    struct buf b = {.data = out_storage, .cap = cap, .head = 0, .len = 0};
    return b;
}

/* Move up to max pending bytes of out to dst (through its iovecs); returns how many. */
static size_t drain(struct buf *out, char *dst, size_t max)
{
    struct iovec iov[2];
    int n = buf_pending_iov(out, iov);
    size_t total = 0;
    for (int i = 0; i < n && total < max; i++) {
        size_t take = iov[i].iov_len < max - total ? iov[i].iov_len : max - total;
        memcpy(dst + total, iov[i].iov_base, take);
        total += take;
    }
    buf_consume(out, total);
    return total;
}

/* The answer, computed plainly: greeting + each line; a trailing partial line gets '\n'.
 * Every line must be within max_line_bytes. Returns the answer's length. */
static size_t reference_answer(const struct proto_greet *g, const char *in, size_t len,
                               char *answer)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && in[i] != '\n')
            continue;
        if (i == len && start == len)
            break;
        memcpy(answer + n, g->greeting, g->greeting_len);
        n += g->greeting_len;
        memcpy(answer + n, in + start, i - start);
        n += i - start;
        answer[n++] = '\n';
        start = i + 1;
    }
    return n;
}

/* One call into an out ring of out_cap bytes: check status, consumed and the output. */
static void check_frame(const struct proto_greet *g, const char *in, size_t len, bool at_eof,
                        size_t out_cap, enum proto_status status, size_t consumed, const char *want,
                        size_t want_len)
{
    struct buf out = out_ring(out_cap);
    size_t got_consumed = (size_t)-1;
    assert_int_equal(proto_greet_frame(g, in, len, at_eof, &out, &got_consumed), status);
    assert_int_equal(got_consumed, consumed);
    char got[OUT_MAX];
    assert_int_equal(drain(&out, got, sizeof(got)), want_len);
    assert_memory_equal(got, want, want_len);
    assert_int_equal(out_storage[out_cap], '#'); /* nothing past the ring */
}

/* As check_frame with NUL-free C strings and a roomy output. */
static void check_text(const struct proto_greet *g, const char *in, bool at_eof,
                       enum proto_status status, size_t consumed, const char *want)
{
    check_frame(g, in, strlen(in), at_eof, 1024, status, consumed, want, strlen(want));
}

/* A deterministic generator, so failures reproduce. */
static uint64_t rng_state;

static uint32_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* A number in [lo, hi]. */
static size_t rng_range(size_t lo, size_t hi)
{
    return lo + rng_next() % (hi - lo + 1);
}

/* How stream() feeds and drains. */
struct stream_plan {
    size_t max_chunk;   /* input bytes per read: 1..max_chunk */
    size_t out_cap;     /* output ring capacity */
    bool is_random;     /* chunk sizes and drain amounts random (else max_chunk, all) */
    bool is_eof_at_end; /* the last call says at_eof */
};

/* Feed in[0..len) as a connection would: reads of up to max_chunk bytes appended to a
 * pending line buffer, framing after each, draining output whenever it is full. Returns
 * the answer's length in answer; the framer must never report a line too long. */
static size_t stream(const struct proto_greet *g, const char *in, size_t len,
                     const struct stream_plan *plan, char *answer)
{
    char *pending = malloc(len + 1);
    assert_non_null(pending);
    size_t npending = 0, fed = 0, total = 0;
    struct buf out = out_ring(plan->out_cap);
    for (size_t reads = 0; reads <= len; reads++) {
        size_t chunk = plan->is_random ? rng_range(1, plan->max_chunk) : plan->max_chunk;
        chunk = chunk < len - fed ? chunk : len - fed;
        memcpy(pending + npending, in + fed, chunk);
        npending += chunk;
        fed += chunk;
        bool at_eof = plan->is_eof_at_end && fed == len;
        for (size_t calls = 0; calls <= len + plan->out_cap + 1; calls++) {
            size_t consumed;
            enum proto_status st = proto_greet_frame(g, pending, npending, at_eof, &out, &consumed);
            memmove(pending, pending + consumed, npending - consumed);
            npending -= consumed;
            if (st == PROTO_NEED_MORE)
                break;
            assert_int_equal(st, PROTO_OUT_FULL);
            assert_true(out.len > 0); /* full with nothing to drain would never progress */
            size_t amount = plan->is_random ? rng_range(1, out.len) : out.len;
            total += drain(&out, answer + total, amount);
        }
        if (fed == len)
            break;
    }
    assert_int_equal(fed, len);
    total += drain(&out, answer + total, out.len);
    if (plan->is_eof_at_end)
        assert_int_equal(npending, 0);
    free(pending);
    return total;
}

static void test_one_line(void **state)
{
    (void)state;
    check_text(&hello, "world\n", false, PROTO_NEED_MORE, 6, "Hello, world\n");
}

static void test_several_lines_one_read(void **state)
{
    (void)state;
    check_text(&hello, "a\nbb\nccc\n", false, PROTO_NEED_MORE, 9,
               "Hello, a\nHello, bb\nHello, ccc\n");
    /* A trailing partial line stays unconsumed until more arrives. */
    check_text(&hello, "a\nbb\ncc", false, PROTO_NEED_MORE, 5, "Hello, a\nHello, bb\n");
    check_text(&hello, "partial", false, PROTO_NEED_MORE, 0, "");
    check_text(&hello, "", false, PROTO_NEED_MORE, 0, "");
    check_text(&hello, "", true, PROTO_NEED_MORE, 0, "");
}

/* Byte by byte (each call sees only what is pending) gives what one call gives. */
static void test_line_split_byte_by_byte(void **state)
{
    (void)state;
    const char in[] = "first line\nsecond\r\n\nthird with \0 NUL\nlast";
    size_t len = sizeof(in) - 1;
    char one_shot[OUT_MAX], by_byte[OUT_MAX], want[OUT_MAX];
    size_t want_len = reference_answer(&hello, in, len, want);
    const struct stream_plan whole = {len, 1024, false, true};
    const struct stream_plan bytes = {1, 1024, false, true};
    assert_int_equal(stream(&hello, in, len, &whole, one_shot), want_len);
    assert_memory_equal(one_shot, want, want_len);
    assert_int_equal(stream(&hello, in, len, &bytes, by_byte), want_len);
    assert_memory_equal(by_byte, want, want_len);
}

/* The '\r' of CRLF is part of the line, and counts against max_line_bytes. */
static void test_crlf_kept(void **state)
{
    (void)state;
    check_text(&hello, "hi\r\nyo\r\n", false, PROTO_NEED_MORE, 8, "Hello, hi\r\nHello, yo\r\n");
    const struct proto_greet g = {"> ", 2, 3};
    check_text(&g, "abc\r\n", false, PROTO_LINE_TOO_LONG, 0, "");
    check_text(&g, "ab\r\n", false, PROTO_NEED_MORE, 4, "> ab\r\n");
}

static void test_nul_bytes(void **state)
{
    (void)state;
    const char in[] = "a\0b\n\0\n";
    const char want[] = "Hello, a\0b\nHello, \0\n";
    check_frame(&hello, in, sizeof(in) - 1, false, 1024, PROTO_NEED_MORE, sizeof(in) - 1, want,
                sizeof(want) - 1);
}

static void test_empty_line(void **state)
{
    (void)state;
    check_text(&hello, "\n", false, PROTO_NEED_MORE, 1, "Hello, \n");
    check_text(&hello, "\n\nx\n", false, PROTO_NEED_MORE, 4, "Hello, \nHello, \nHello, x\n");
}

static void test_eof_partial_line(void **state)
{
    (void)state;
    check_text(&hello, "tail", true, PROTO_NEED_MORE, 4, "Hello, tail\n");
    check_text(&hello, "a\ntail", true, PROTO_NEED_MORE, 6, "Hello, a\nHello, tail\n");
    /* At EOF a line that ends in '\n' gets no second one. */
    check_text(&hello, "a\n", true, PROTO_NEED_MORE, 2, "Hello, a\n");
    /* The added '\n' needs its byte of output too. */
    const struct proto_greet g = {"G", 1, 8};
    check_text(&g, "ab", true, PROTO_NEED_MORE, 2, "Gab\n");
    check_frame(&g, "ab", 2, true, 3, PROTO_OUT_FULL, 0, "", 0);
    check_frame(&g, "ab", 2, true, 4, PROTO_NEED_MORE, 2, "Gab\n", 4);
}

/* A line of exactly max_line_bytes: accepted with its '\n', at EOF, or waiting. */
static void test_exact_max_line_accepted(void **state)
{
    (void)state;
    const struct proto_greet g = {"G:", 2, 5};
    check_text(&g, "12345\n", false, PROTO_NEED_MORE, 6, "G:12345\n");
    check_text(&g, "12345", false, PROTO_NEED_MORE, 0, "");
    check_text(&g, "12345", true, PROTO_NEED_MORE, 5, "G:12345\n");
    /* An output of exactly greeting + max + 1 holds it. */
    check_frame(&g, "12345\n", 6, false, 8, PROTO_NEED_MORE, 6, "G:12345\n", 8);
}

/* max_line_bytes + 1 is refused, whether or not its '\n' has arrived; lines before it
 * are answered first. */
static void test_max_plus_one_too_long(void **state)
{
    (void)state;
    const struct proto_greet g = {"G:", 2, 5};
    check_text(&g, "123456\n", false, PROTO_LINE_TOO_LONG, 0, "");
    check_text(&g, "123456", false, PROTO_LINE_TOO_LONG, 0, "");
    check_text(&g, "123456", true, PROTO_LINE_TOO_LONG, 0, "");
    check_text(&g, "ok\n123456", false, PROTO_LINE_TOO_LONG, 3, "G:ok\n");
    check_text(&g, "ok\n12345678901234567890\nnext\n", false, PROTO_LINE_TOO_LONG, 3, "G:ok\n");
}

/* Output full: stop before the line that does not fit; after draining, resume with
 * exactly the unconsumed input, losing and repeating nothing. */
static void test_out_full_then_resume(void **state)
{
    (void)state;
    const char *in = "one\ntwo\nthree\n";
    struct buf out = out_ring(20); /* "Hello, one\n" is 11, "Hello, two\n" 11 more */
    size_t consumed;
    assert_int_equal(proto_greet_frame(&hello, in, 14, false, &out, &consumed), PROTO_OUT_FULL);
    assert_int_equal(consumed, 4);
    char got[64];
    size_t n = drain(&out, got, 5); /* drain part of it: the ring wraps on resume */
    assert_int_equal(proto_greet_frame(&hello, in + 4, 10, false, &out, &consumed), PROTO_OUT_FULL);
    assert_int_equal(consumed, 4);
    n += drain(&out, got + n, sizeof(got) - n);
    assert_int_equal(proto_greet_frame(&hello, in + 8, 6, false, &out, &consumed), PROTO_NEED_MORE);
    assert_int_equal(consumed, 6);
    n += drain(&out, got + n, sizeof(got) - n);
    const char *want = "Hello, one\nHello, two\nHello, three\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(got, want, n);
}

/* Output with room for nothing: OUT_FULL, nothing consumed, nothing written. */
static void test_out_full_from_start(void **state)
{
    (void)state;
    check_frame(&hello, "x\n", 2, false, 8, PROTO_OUT_FULL, 0, "", 0);
    check_frame(&hello, "x\n", 2, false, 9, PROTO_NEED_MORE, 2, "Hello, x\n", 9);
}

static void test_utf8_greeting(void **state)
{
    (void)state;
    const struct proto_greet g = {CHINESE_GREETING, sizeof(CHINESE_GREETING) - 1, 64};
    check_text(&g, "world\n\xe4\xb8\x96\xe7\x95\x8c\n", false, PROTO_NEED_MORE, 13,
               CHINESE_GREETING "world\n" CHINESE_GREETING "\xe4\xb8\x96\xe7\x95\x8c\n");
}

static void test_line_too_long_reply(void **state)
{
    (void)state;
    const struct proto_greet g = {"G", 1, 8192};
    char buf[64];
    const char *want = "error: line longer than 8192 bytes\n";
    assert_int_equal(proto_line_too_long_reply(&g, buf, sizeof(buf)), (int)strlen(want));
    assert_string_equal(buf, want);
    /* Short buffer: truncated and terminated; the full length is still returned. */
    memset(buf, '#', sizeof(buf));
    assert_int_equal(proto_line_too_long_reply(&g, buf, 6), (int)strlen(want));
    assert_string_equal(buf, "error");
    assert_int_equal(buf[6], '#');
}

static void test_mode_parse_and_name(void **state)
{
    (void)state;
    enum proto_mode m = PROTO_GREET;
    assert_int_equal(proto_mode_parse("echo", &m), 0);
    assert_int_equal(m, PROTO_ECHO);
    assert_int_equal(proto_mode_parse("greet", &m), 0);
    assert_int_equal(m, PROTO_GREET);
    const char *bad[] = {"", "Echo", "GREET", "echo ", "gree", "greeting", "e"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(proto_mode_parse(bad[i], &m), -EINVAL);
        assert_int_equal(m, PROTO_GREET); /* untouched */
    }
    assert_string_equal(proto_mode_name(PROTO_ECHO), "echo");
    assert_string_equal(proto_mode_name(PROTO_GREET), "greet");
}

/* Random lines of 0..max bytes (any byte but '\n', with CR, NUL and high bytes likely),
 * and sometimes a trailing partial line. Returns the length written to in. */
static size_t random_input(size_t max_line, size_t max_len, char *in)
{
    static const char alphabet[] = {'a', 'b', '\r', '\0', '\xff', '\xe4', ' '};
    size_t len = 0;
    size_t lines = rng_range(0, 12);
    for (size_t i = 0; i < lines; i++) {
        size_t n = rng_range(0, max_line);
        if (len + n + 1 > max_len)
            break;
        for (size_t k = 0; k < n; k++)
            in[len++] = alphabet[rng_next() % sizeof(alphabet)];
        if (i + 1 < lines || rng_next() % 2)
            in[len++] = '\n';
    }
    return len;
}

static void test_random_split_property(void **state)
{
    (void)state;
    rng_state = 0x9e3779b97f4a7c15u;
    const struct proto_greet g = {CHINESE_GREETING, sizeof(CHINESE_GREETING) - 1, 24};
    size_t min_out = g.greeting_len + g.max_line_bytes + 1;
    for (int iter = 0; iter < 2000; iter++) {
        char in[512], want[2048], got[2048];
        size_t len = random_input(g.max_line_bytes, sizeof(in), in);
        size_t want_len = reference_answer(&g, in, len, want);
        const struct stream_plan plan = {rng_range(1, 40), rng_range(min_out, min_out + 40), true,
                                         true};
        size_t got_len = stream(&g, in, len, &plan, got);
        if (got_len != want_len || memcmp(got, want, want_len) != 0)
            fail_msg("iteration %d: input of %zu bytes, out_cap %zu, max_chunk %zu: answer "
                     "differs from the reference",
                     iter, len, plan.out_cap, plan.max_chunk);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_line),
        cmocka_unit_test(test_several_lines_one_read),
        cmocka_unit_test(test_line_split_byte_by_byte),
        cmocka_unit_test(test_crlf_kept),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_empty_line),
        cmocka_unit_test(test_eof_partial_line),
        cmocka_unit_test(test_exact_max_line_accepted),
        cmocka_unit_test(test_max_plus_one_too_long),
        cmocka_unit_test(test_out_full_then_resume),
        cmocka_unit_test(test_out_full_from_start),
        cmocka_unit_test(test_utf8_greeting),
        cmocka_unit_test(test_line_too_long_reply),
        cmocka_unit_test(test_mode_parse_and_name),
        cmocka_unit_test(test_random_split_property),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
