/* test_proxy: the PROXY protocol parser and tcp.proxy_from's networks. The headers are the
 * examples of HAProxy's specification (proxy-protocol.txt): v1 TCP4, TCP6 at its longest
 * (104 bytes), UNKNOWN short and at the longest line allowed (107); v2 TCP4, TCP6, LOCAL, UNSPEC,
 * and TLVs. Each valid header is fed whole, split at every point, byte by byte, and followed by
 * data in the same read (only the header is consumed). Every error reason is reached, from the
 * earliest byte that shows it. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define V2_SIG       "\r\n\r\n\0\r\nQUIT\n"
#define V2_SIG_BYTES 12

/* A test header: its bytes, and the client address it names ("" for local). */
struct sample {
    const char *name;
    const uint8_t *bytes;
    size_t len;
    const char *src; /* "192.168.0.1:56324", "[::1]:80", or "" when local */
    const char *dst;
};

static const char v1_tcp4[] = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
static const char v1_tcp6_longest[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
static const char v1_unknown[] = "PROXY UNKNOWN\r\n";
static const char v1_unknown_longest[] = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";

/* v2 PROXY TCP4 192.168.0.1:56324 -> 192.168.0.11:443. */
static const uint8_t v2_tcp4[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
                                  0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 192,  168,  0,    1,
                                  192,  168,  0,    11,   0xdc, 0x04, 0x01, 0xbb};
/* v2 PROXY TCP6 [2001:db8::1]:1234 -> [2001:db8::2]:7007. */
static const uint8_t v2_tcp6[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54,
                                  0x0a, 0x21, 0x21, 0x00, 0x24, 0x20, 0x01, 0x0d, 0xb8, 0,    0,
                                  0,    0,    0,    0,    0,    0,    0,    0,    0,    1,    0x20,
                                  0x01, 0x0d, 0xb8, 0,    0,    0,    0,    0,    0,    0,    0,
                                  0,    0,    0,    2,    0x04, 0xd2, 0x1b, 0x5f};
/* v2 LOCAL, as HAProxy's health checks send it: no address. */
static const uint8_t v2_local[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                   0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00};
/* v2 LOCAL carrying an (ignored) TCP4 block and a TLV, skipped unread. */
static const uint8_t v2_local_with_bytes[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x20, 0x11, 0x00, 0x10,
    1,    2,    3,    4,    5,    6,    7,    8,    0,    1,    0,    2,    0xff, 0xff, 0xff, 0xff};
/* v2 PROXY UNSPEC: an unknown protocol; served with the real peer. */
static const uint8_t v2_unspec[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55,
                                    0x49, 0x54, 0x0a, 0x21, 0x00, 0x00, 0x02, 0xab, 0xcd};
/* v2 PROXY TCP4 10.0.0.1:1000 -> 10.0.0.2:2000 with three TLVs: ALPN "h2", NOOP of 0
 * bytes, and a CRC32C of 4 (not checked). */
static const uint8_t v2_tlvs[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54,
                                  0x0a, 0x21, 0x11, 0x00, 0x1b, 10,   0,    0,    1,    10,   0,
                                  0,    2,    0x03, 0xe8, 0x07, 0xd0, 0x01, 0x00, 0x02, 'h',  '2',
                                  0x04, 0x00, 0x00, 0x03, 0x00, 0x04, 1,    2,    3,    4};

#define TEXT(s) (const uint8_t *)(s), sizeof(s) - 1
#define BIN(a)  a, sizeof(a)

static const struct sample samples[] = {
    {"v1 TCP4", TEXT(v1_tcp4), "192.168.0.1:56324", "192.168.0.11:443"},
    {"v1 TCP6 longest", TEXT(v1_tcp6_longest), "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
     "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"},
    {"v1 UNKNOWN", TEXT(v1_unknown), "", ""},
    {"v1 UNKNOWN longest", TEXT(v1_unknown_longest), "", ""},
    {"v2 TCP4", BIN(v2_tcp4), "192.168.0.1:56324", "192.168.0.11:443"},
    {"v2 TCP6", BIN(v2_tcp6), "[2001:db8::1]:1234", "[2001:db8::2]:7007"},
    {"v2 LOCAL", BIN(v2_local), "", ""},
    {"v2 LOCAL with bytes", BIN(v2_local_with_bytes), "", ""},
    {"v2 UNSPEC", BIN(v2_unspec), "", ""},
    {"v2 TLVs", BIN(v2_tlvs), "10.0.0.1:1000", "10.0.0.2:2000"},
};
#define NSAMPLES (sizeof(samples) / sizeof(samples[0]))

/* "ADDR:PORT" of a (the format of the tables above). */
static void format(const union proxy_addr *a, char *out, size_t size)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (a->sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->in.sin_addr, host, sizeof(host));
        snprintf(out, size, "%s:%u", host, ntohs(a->in.sin_port));
    } else if (a->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->in6.sin6_addr, host, sizeof(host));
        snprintf(out, size, "[%s]:%u", host, ntohs(a->in6.sin6_port));
    } else {
        snprintf(out, size, "(family %d)", a->sa.sa_family);
    }
}

/* The parser is done and says what s says. */
static void expect_header(const struct sample *s, const struct proxy_parser *p)
{
    const struct proxy_header *h = &p->header;
    assert_int_equal(h->header_bytes, s->len);
    assert_int_equal(h->version, s->bytes[0] == 'P' ? 1 : 2);
    if (s->src[0] == '\0') {
        if (!h->is_local)
            fail_msg("%s: expected a local header", s->name);
        return;
    }
    char src[80], dst[80];
    format(&h->src, src, sizeof(src));
    format(&h->dst, dst, sizeof(dst));
    if (h->is_local || strcmp(src, s->src) != 0 || strcmp(dst, s->dst) != 0)
        fail_msg("%s: expected %s -> %s, got %s -> %s%s", s->name, s->src, s->dst, src, dst,
                 h->is_local ? " (local)" : "");
}

/* Feed data[0..len) in pieces of at most `piece` bytes; the status of the last feed,
 * with *used the bytes consumed in all. */
static enum proxy_status feed(struct proxy_parser *p, const uint8_t *data, size_t len, size_t piece,
                              size_t *used)
{
    enum proxy_status st = PROXY_NEED_MORE;
    *used = 0;
    for (size_t at = 0; at < len && st == PROXY_NEED_MORE;) {
        size_t n = len - at < piece ? len - at : piece, consumed;
        st = proxy_parse(p, data + at, n, &consumed);
        if (st == PROXY_NEED_MORE)
            assert_int_equal(consumed, n);
        *used += consumed;
        at += n;
    }
    return st;
}

static void test_spec_examples_whole(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSAMPLES; i++) {
        struct proxy_parser p;
        proxy_parser_init(&p, PROXY_ANY);
        size_t used;
        if (proxy_parse(&p, samples[i].bytes, samples[i].len, &used) != PROXY_DONE)
            fail_msg("%s: not done (error %s)", samples[i].name, proxy_error_name(p.error));
        assert_int_equal(used, samples[i].len);
        expect_header(&samples[i], &p);
    }
    assert_int_equal(sizeof(v1_tcp6_longest) - 1, 104); /* the specification's figures */
    assert_int_equal(sizeof(v1_unknown_longest) - 1, PROXY_V1_MAX_BYTES);
}

/* Every split point k: bytes [0, k) then [k, len) followed by data in the same read. */
static void test_every_split_point(void **state)
{
    (void)state;
    static const char data[] = "hello after the header\n";
    for (size_t i = 0; i < NSAMPLES; i++) {
        const struct sample *s = &samples[i];
        for (size_t k = 0; k < s->len; k++) {
            uint8_t second[256];
            memcpy(second, s->bytes + k, s->len - k);
            memcpy(second + s->len - k, data, sizeof(data) - 1);
            struct proxy_parser p;
            proxy_parser_init(&p, PROXY_ANY);
            size_t used;
            assert_int_equal(proxy_parse(&p, s->bytes, k, &used), PROXY_NEED_MORE);
            assert_int_equal(used, k);
            enum proxy_status st = proxy_parse(&p, second, s->len - k + sizeof(data) - 1, &used);
            if (st != PROXY_DONE || used != s->len - k)
                fail_msg("%s split at %zu: status %d, consumed %zu (want %zu), error %s", s->name,
                         k, st, used, s->len - k, proxy_error_name(p.error));
            expect_header(s, &p);
        }
    }
}

static void test_byte_by_byte_and_done_is_sticky(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSAMPLES; i++) {
        struct proxy_parser p;
        proxy_parser_init(&p, PROXY_ANY);
        size_t used;
        assert_int_equal(feed(&p, samples[i].bytes, samples[i].len, 1, &used), PROXY_DONE);
        assert_int_equal(used, samples[i].len);
        expect_header(&samples[i], &p);
        assert_int_equal(proxy_parse(&p, (const uint8_t *)"x", 1, &used), PROXY_DONE);
        assert_int_equal(used, 0); /* data after the header is no business of the parser */
    }
}

/* Header and data in one read, as HAProxy sends them: only the header is consumed. */
static void test_header_and_data_in_one_read(void **state)
{
    (void)state;
    uint8_t in[512];
    for (size_t i = 0; i < NSAMPLES; i++) {
        memcpy(in, samples[i].bytes, samples[i].len);
        memset(in + samples[i].len, 'P', 200); /* data that looks like a header again */
        struct proxy_parser p;
        proxy_parser_init(&p, PROXY_ANY);
        size_t used;
        assert_int_equal(proxy_parse(&p, in, samples[i].len + 200, &used), PROXY_DONE);
        assert_int_equal(used, samples[i].len);
    }
}

/* The versions tcp.proxy_protocol accepts: v1 alone, v2 alone. */
static void test_accepted_versions(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSAMPLES; i++) {
        bool is_v1 = samples[i].bytes[0] == 'P';
        enum proxy_accept only[] = {PROXY_V1, PROXY_V2};
        for (size_t k = 0; k < 2; k++) {
            struct proxy_parser p;
            proxy_parser_init(&p, only[k]);
            size_t used;
            enum proxy_status st = feed(&p, samples[i].bytes, samples[i].len, 1, &used);
            bool is_accepted = (only[k] == PROXY_V1) == is_v1;
            assert_int_equal(st, is_accepted ? PROXY_DONE : PROXY_ERROR);
            if (!is_accepted) {
                assert_int_equal(p.error, PROXY_ERR_UNSUPPORTED);
                /* Told once the signature is complete, not at the end. */
                assert_int_equal(used, is_v1 ? 6 : V2_SIG_BYTES);
            }
        }
    }
}

/* A bad header fails with `want`, at byte `at` (1-based) when fed byte by byte. */
struct bad {
    const char *name;
    const uint8_t *bytes;
    size_t len;
    enum proxy_error want;
    size_t at;
};

static void expect_bad(const struct bad *b)
{
    struct proxy_parser p;
    proxy_parser_init(&p, PROXY_ANY);
    size_t used;
    enum proxy_status st = feed(&p, b->bytes, b->len, 1, &used);
    if (st != PROXY_ERROR || p.error != b->want || used != b->at)
        fail_msg("%s: status %d, error %s after %zu bytes; want error %s after %zu", b->name, st,
                 proxy_error_name(p.error), used, proxy_error_name(b->want), b->at);
    /* Whole, the same verdict; and it stays failed. */
    proxy_parser_init(&p, PROXY_ANY);
    assert_int_equal(proxy_parse(&p, b->bytes, b->len, &used), PROXY_ERROR);
    assert_int_equal(p.error, b->want);
    assert_int_equal(proxy_parse(&p, v2_local, sizeof(v2_local), &used), PROXY_ERROR);
}

static void test_malformed(void **state)
{
    (void)state;
    static const uint8_t bad_sig[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                      0x0a, 0x51, 0x55, 0x49, 0x54, 0x0b};
    static const uint8_t bad_cmd[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                      0x55, 0x49, 0x54, 0x0a, 0x22, 0x11, 0x00, 0x0c};
    static const uint8_t bad_family[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                         0x55, 0x49, 0x54, 0x0a, 0x21, 0x41, 0x00, 0x0c};
    static const uint8_t tcp4_no_transport[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                                0x55, 0x49, 0x54, 0x0a, 0x21, 0x10, 0x00, 0x0c};
    static const uint8_t short_tcp4[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                         0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0b};
    static const uint8_t short_tcp6[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                         0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00, 0x0c};
    /* A TLV of 5 bytes where 3 are left. */
    static const uint8_t tlv_overrun[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                          0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x12,
                                          1,    2,    3,    4,    5,    6,    7,    8,
                                          0,    1,    0,    2,    0x04, 0x00, 0x05, 1};
    /* Two bytes after the addresses: half a TLV header. */
    static const uint8_t tlv_partial[] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00,
        0x0e, 1,    2,    3,    4,    5,    6,    7,    8,    0,    1,    0,    2,    0x04, 0x00};
    const struct bad cases[] = {
        {"a plain client", TEXT("GET / HTTP/1.0\r\n"), PROXY_ERR_MALFORMED, 1},
        {"v1 misspelt", TEXT("PROXZ TCP4"), PROXY_ERR_MALFORMED, 5},
        {"v1 no space", TEXT("PROXYTCP4"), PROXY_ERR_MALFORMED, 6},
        {"v1 bare LF", TEXT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), PROXY_ERR_MALFORMED, 31},
        {"v1 CR without LF", TEXT("PROXY UNKNOWN\rX\n"), PROXY_ERR_MALFORMED, 15},
        {"v1 bad protocol", TEXT("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), PROXY_ERR_MALFORMED, 32},
        {"v1 empty protocol", TEXT("PROXY \r\n"), PROXY_ERR_MALFORMED, 8},
        {"v1 short address", TEXT("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"), PROXY_ERR_MALFORMED, 30},
        {"v1 IPv6 in TCP4", TEXT("PROXY TCP4 ::1 ::1 1 2\r\n"), PROXY_ERR_MALFORMED, 24},
        {"v1 IPv4 in TCP6", TEXT("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), PROXY_ERR_MALFORMED, 28},
        {"v1 port too big", TEXT("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), PROXY_ERR_MALFORMED,
         36},
        {"v1 port leading zero", TEXT("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), PROXY_ERR_MALFORMED,
         33},
        {"v1 port signed", TEXT("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"), PROXY_ERR_MALFORMED, 33},
        {"v1 double space", TEXT("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), PROXY_ERR_MALFORMED, 33},
        {"v1 missing port", TEXT("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), PROXY_ERR_MALFORMED, 30},
        {"v1 NUL after a field", (const uint8_t *)"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n", 34,
         PROXY_ERR_MALFORMED, 31},
        {"v1 extra field", TEXT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), PROXY_ERR_MALFORMED, 34},
        {"v2 signature", BIN(bad_sig), PROXY_ERR_MALFORMED, 12},
        {"v2 command 2", BIN(bad_cmd), PROXY_ERR_MALFORMED, 16},
        {"v2 family 4", BIN(bad_family), PROXY_ERR_MALFORMED, 16},
        {"v2 INET without transport", BIN(tcp4_no_transport), PROXY_ERR_MALFORMED, 16},
        {"v2 TCP4 in 11 bytes", BIN(short_tcp4), PROXY_ERR_MALFORMED, 16},
        {"v2 TCP6 in 12 bytes", BIN(short_tcp6), PROXY_ERR_MALFORMED, 16},
        {"v2 TLV past the end", BIN(tlv_overrun), PROXY_ERR_MALFORMED, 31},
        {"v2 half a TLV header", BIN(tlv_partial), PROXY_ERR_MALFORMED, 30},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_bad(&cases[i]);
}

static void test_unsupported(void **state)
{
    (void)state;
    static const uint8_t version1[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                       0x55, 0x49, 0x54, 0x0a, 0x11, 0x11, 0x00, 0x0c};
    static const uint8_t udp4[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                   0x55, 0x49, 0x54, 0x0a, 0x21, 0x12, 0x00, 0x0c};
    static const uint8_t udp6[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                   0x55, 0x49, 0x54, 0x0a, 0x21, 0x22, 0x00, 0x24};
    static const uint8_t unix_stream[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                          0x55, 0x49, 0x54, 0x0a, 0x21, 0x31, 0x00, 0xd8};
    const struct bad cases[] = {
        {"v2 version 1", BIN(version1), PROXY_ERR_UNSUPPORTED, 16},
        {"v2 UDP4", BIN(udp4), PROXY_ERR_UNSUPPORTED, 16},
        {"v2 UDP6", BIN(udp6), PROXY_ERR_UNSUPPORTED, 16},
        {"v2 AF_UNIX", BIN(unix_stream), PROXY_ERR_UNSUPPORTED, 16},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_bad(&cases[i]);
}

/* 107 bytes without a CRLF: the 108th byte is refused, whatever it is. */
static void test_too_long(void **state)
{
    (void)state;
    uint8_t line[200];
    memcpy(line, "PROXY UNKNOWN ", 14);
    memset(line + 14, 'x', sizeof(line) - 14);
    const struct bad no_crlf = {"v1 without CRLF", line, sizeof(line), PROXY_ERR_TOO_LONG,
                                PROXY_V1_MAX_BYTES + 1};
    expect_bad(&no_crlf);
    /* CR as byte 107 and LF as 108: one byte too many. */
    line[PROXY_V1_MAX_BYTES - 1] = '\r';
    line[PROXY_V1_MAX_BYTES] = '\n';
    const struct bad crlf_late = {"v1 CRLF at 108", line, PROXY_V1_MAX_BYTES + 1,
                                  PROXY_ERR_TOO_LONG, PROXY_V1_MAX_BYTES + 1};
    expect_bad(&crlf_late);
    /* CRLF as bytes 106 and 107: accepted. */
    line[PROXY_V1_MAX_BYTES - 2] = '\r';
    line[PROXY_V1_MAX_BYTES - 1] = '\n';
    struct proxy_parser p;
    proxy_parser_init(&p, PROXY_V1);
    size_t used;
    assert_int_equal(proxy_parse(&p, line, sizeof(line), &used), PROXY_DONE);
    assert_int_equal(used, PROXY_V1_MAX_BYTES);
    assert_true(p.header.is_local);
}

/* A v2 header whose TLVs fill the whole 16-bit length is skipped, not buffered. */
static void test_v2_longest(void **state)
{
    (void)state;
    static uint8_t h[PROXY_V2_HEADER_BYTES + 65535];
    memcpy(h, v2_tcp4, 16);
    h[14] = h[15] = 0xff;
    memcpy(h + 16, v2_tcp4 + 16, 12);
    size_t at = 28;
    while (at < sizeof(h)) { /* NOOP TLVs of at most 1000 bytes, the last one to the end */
        size_t value = sizeof(h) - at - 3 < 1000 ? sizeof(h) - at - 3 : 1000;
        h[at] = 0x04;
        h[at + 1] = (uint8_t)(value >> 8);
        h[at + 2] = (uint8_t)value;
        memset(h + at + 3, 0xee, value);
        at += 3 + value;
    }
    struct proxy_parser p;
    proxy_parser_init(&p, PROXY_V2);
    size_t used;
    assert_int_equal(feed(&p, h, sizeof(h), 777, &used), PROXY_DONE);
    assert_int_equal(used, sizeof(h));
    assert_int_equal(p.header.header_bytes, sizeof(h));
    char src[80];
    format(&p.header.src, src, sizeof(src));
    assert_string_equal(src, "192.168.0.1:56324");
}

static void test_error_and_accept_names(void **state)
{
    (void)state;
    assert_string_equal(proxy_error_name(PROXY_ERR_MALFORMED), "malformed");
    assert_string_equal(proxy_error_name(PROXY_ERR_UNSUPPORTED), "unsupported");
    assert_string_equal(proxy_error_name(PROXY_ERR_TOO_LONG), "too long");
    const char *names[] = {"off", "v1", "v2", "any"};
    for (int i = 0; i < 4; i++) {
        enum proxy_accept a;
        assert_int_equal(proxy_accept_parse(names[i], &a), 0);
        assert_int_equal(a, (enum proxy_accept)i);
        assert_string_equal(proxy_accept_name(a), names[i]);
    }
    enum proxy_accept a;
    assert_int_equal(proxy_accept_parse("V1", &a), -EINVAL);
    assert_int_equal(proxy_accept_parse("on", &a), -EINVAL);
    assert_int_equal(proxy_accept_parse("", &a), -EINVAL);
}

/* sa of text "1.2.3.4" or "::1". */
static union proxy_addr ip(const char *text)
{
    union proxy_addr a;
    memset(&a, 0, sizeof(a));
    if (strchr(text, ':')) {
        a.in6.sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &a.in6.sin6_addr), 1);
    } else {
        a.in.sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &a.in.sin_addr), 1);
    }
    return a;
}

static void test_networks(void **state)
{
    (void)state;
    struct proxy_net nets[3];
    assert_int_equal(proxy_net_parse("10.0.0.0/8", &nets[0]), 0);
    assert_int_equal(proxy_net_parse("2001:db8::/32", &nets[1]), 0);
    assert_int_equal(proxy_net_parse("127.0.0.1", &nets[2]), 0);
    struct {
        const char *addr;
        bool is_in;
    } checks[] = {
        {"10.0.0.0", true},       {"10.255.255.255", true},  {"11.0.0.0", false},
        {"9.255.255.255", false}, {"::ffff:10.1.2.3", true}, {"2001:db8:ffff::1", true},
        {"2001:db9::1", false},   {"127.0.0.1", true},       {"127.0.0.2", false},
        {"::1", false},
    };
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        union proxy_addr a = ip(checks[i].addr);
        if (proxy_net_contains(nets, 3, &a.sa) != checks[i].is_in)
            fail_msg("%s: expected %s the networks", checks[i].addr,
                     checks[i].is_in ? "in" : "outside");
    }
    union proxy_addr a = ip("10.1.1.1");
    assert_false(proxy_net_contains(nets, 0, &a.sa)); /* no network: nobody */
    struct sockaddr unix_sa = {.sa_family = AF_UNIX};
    assert_false(proxy_net_contains(nets, 3, &unix_sa));
    struct proxy_net all;
    assert_int_equal(proxy_net_parse("0.0.0.0/0", &all), 0);
    a = ip("203.0.113.9");
    assert_true(proxy_net_contains(&all, 1, &a.sa));
    a = ip("2001:db8::1");
    assert_false(proxy_net_contains(&all, 1, &a.sa)); /* all of IPv4 only */
    assert_int_equal(proxy_net_parse("::/0", &all), 0);
    assert_true(proxy_net_contains(&all, 1, &a.sa));
    const char *bad[] = {"",
                         "/8",
                         "10.0.0.0/",
                         "10.0.0.0/33",
                         "10.0.0.1/8",
                         "10.0.0.0/08",
                         "10.0.0.0/-1",
                         "10.0.0/8",
                         "::1/129",
                         "2001:db8::1/32",
                         "localhost",
                         "10.0.0.0/8 ",
                         " 10.0.0.0/8",
                         "10.0.0.0/8/8"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (proxy_net_parse(bad[i], &all) != -EINVAL)
            fail_msg("\"%s\" was taken as a network", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_examples_whole),
        cmocka_unit_test(test_every_split_point),
        cmocka_unit_test(test_byte_by_byte_and_done_is_sticky),
        cmocka_unit_test(test_header_and_data_in_one_read),
        cmocka_unit_test(test_accepted_versions),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_v2_longest),
        cmocka_unit_test(test_error_and_accept_names),
        cmocka_unit_test(test_networks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
