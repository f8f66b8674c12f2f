/* test_greet: greet mode through the real echod, byte for byte, with the tutorial's
 * Chinese greetings (UTF-8). TCP: one line, many lines in one write, a line split across
 * delayed writes, CRLF, NULs, a trailing partial line at half-close, a line of exactly
 * max_line_bytes, the error line then EOF for longer ones, and an urgent (MSG_OOB) byte
 * answered in its place in the line. UDP: greeting + datagram,
 * up to the largest datagram; a reply that would be larger is dropped and counted.
 * Templates: every placeholder over TCP and UDP with exact bytes ({client} is the port
 * the test's own socket has), the default {instance}, and reloads that change the
 * template or bring a bad one (refused, naming its line). */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

/* "你好, " and "你好,客户端!你发送了:" in UTF-8, spelled out byte by byte. */
#define TCP_GREETING "\xe4\xbd\xa0\xe5\xa5\xbd\x2c\x20"
#define UDP_GREETING                                                                               \
    "\xe4\xbd\xa0\xe5\xa5\xbd\x2c\xe5\xae\xa2\xe6\x88\xb7\xe7\xab\xaf\x21\xe4\xbd\xa0\xe5\x8f\x91" \
    "\xe9\x80\x81\xe4\xba\x86\x3a"
#define MAX_LINE      100
#define ERROR_PREFIX  "error: line longer than"
#define UDP_MAX_REPLY 65507

static int setup(void **state)
{
    (void)state;
    char config[512];
    snprintf(config, sizeof(config),
             "workers = 2;\n"
             "tcp = {\n"
             "  listen = [ \"127.0.0.1:0\" ];\n"
             "  mode = \"greet\";\n"
             "  greeting = \"%s\";\n"
             "  max_line_bytes = %d;\n"
             "};\n"
             "udp = {\n"
             "  listen = [ \"127.0.0.1:0\" ];\n"
             "  mode = \"greet\";\n"
             "  greeting = \"%s\";\n"
             "};\n",
             TCP_GREETING, MAX_LINE, UDP_GREETING);
    h_echod_start(&echod, config, NULL);
    assert_int_equal(echod.tcp_count, 1);
    assert_int_equal(echod.udp_count, 1);
    return 0;
}

/* A growing byte string for expected replies. */
struct bytes {
    uint8_t *p;
    size_t len, cap;
};

static void bytes_add(struct bytes *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2 + 64;
        uint8_t *bigger = realloc(b->p, b->cap);
        if (!bigger)
            fail_msg("out of memory");
        b->p = bigger;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
}

static void bytes_add_str(struct bytes *b, const char *s)
{
    bytes_add(b, s, strlen(s));
}

/* Receive exactly want_len bytes and compare them with want. */
static void expect_reply(int fd, const void *want, size_t want_len, const char *what)
{
    uint8_t *got = h_xmalloc(want_len);
    h_recv_exact(fd, got, want_len, 5000);
    h_assert_bytes(what, want, got, want_len);
    free(got);
}

/* Read until EOF (5 s at most) into a fresh buffer; *err gets 0 or the socket error that
 * ended the stream instead of EOF. */
static uint8_t *read_to_eof(int fd, size_t *len_out, int *err)
{
    size_t cap = 1 * MIB, len = 0;
    uint8_t *buf = h_xmalloc(cap);
    int64_t deadline = h_now_ms() + 5000;
    *err = 0;
    for (;;) {
        if (len == cap)
            fail_msg("more than %zu bytes before EOF", cap);
        int left = (int)(deadline - h_now_ms());
        ssize_t n = h_recv_some(fd, buf + len, cap - len, left > 0 ? left : 0);
        if (n == 0)
            break;
        if (n == -1)
            fail_msg("no EOF within 5 s (%zu bytes received)", len);
        if (n < 0) {
            *err = (int)-n;
            break;
        }
        len += (size_t)n;
    }
    *len_out = len;
    return buf;
}

/* The one-line error reply: starts with ERROR_PREFIX, ends with its only "\n". */
static void assert_error_line(const uint8_t *p, size_t len)
{
    char text[256];
    snprintf(text, sizeof(text), "%.*s", (int)(len < 200 ? len : 200), (const char *)p);
    if (len < strlen(ERROR_PREFIX) + 1 || memcmp(p, ERROR_PREFIX, strlen(ERROR_PREFIX)) != 0)
        fail_msg("expected a line starting '%s', got %zu bytes: \"%s\"", ERROR_PREFIX, len, text);
    if (p[len - 1] != '\n' || memchr(p, '\n', len - 1) != NULL)
        fail_msg("expected exactly one line ending in \\n, got %zu bytes: \"%s\"", len, text);
}

/* An urgent (MSG_OOB) byte is part of the line: "abc", "X", "def\n" is answered with
 * the greeting and "abcXdef\n", and the counters agree. */
static void tcp_greet_urgent_byte_in_line(void **state)
{
    (void)state;
    h_expect_urgent_echoed(&echod, h_tcp_connect_ok(&echod.tcp[0]), TCP_GREETING);
}

static void tcp_greet_single_line(void **state)
{
    (void)state;
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    h_send_all(fd, "world\n", 6, 5000);
    const char want[] = TCP_GREETING "world\n";
    expect_reply(fd, want, sizeof(want) - 1, "greeting of one line");
    shutdown(fd, SHUT_WR);
    h_expect_eof(fd, 5000);
}

/* 60 random lines (any byte but "\n", empty ones included) in a single write. */
static void tcp_greet_many_lines_one_write(void **state)
{
    (void)state;
    struct bytes req = {0}, want = {0};
    for (int i = 0; i < 60; i++) {
        uint8_t line[MAX_LINE + 1];
        size_t len = i == 7 ? 0 : (size_t)(h_rand() % (MAX_LINE + 1));
        h_fill_random(line, len);
        for (size_t k = 0; k < len; k++) {
            if (line[k] == '\n')
                line[k] = 'n';
        }
        line[len] = '\n';
        bytes_add(&req, line, len + 1);
        bytes_add_str(&want, TCP_GREETING);
        bytes_add(&want, line, len + 1);
    }
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    h_send_all(fd, req.p, req.len, 5000);
    expect_reply(fd, want.p, want.len, "greetings of 60 lines sent in one write");
    shutdown(fd, SHUT_WR);
    h_expect_eof(fd, 5000);
    free(req.p);
    free(want.p);
}

/* A line in pieces with pauses: nothing is answered until its "\n" arrives. */
static void tcp_greet_line_split_across_writes(void **state)
{
    (void)state;
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    h_send_all(fd, "hel", 3, 5000);
    h_expect_silence(fd, 100);
    h_send_all(fd, "lo wor", 6, 5000);
    h_sleep_ms(50);
    h_send_all(fd, "ld\nsec", 6, 5000);
    const char first[] = TCP_GREETING "hello world\n";
    expect_reply(fd, first, sizeof(first) - 1, "greeting of a line split in three writes");
    h_expect_silence(fd, 100);
    h_send_all(fd, "ond\n", 4, 5000);
    const char second[] = TCP_GREETING "second\n";
    expect_reply(fd, second, sizeof(second) - 1, "greeting of a line split in two writes");
}

/* "\r\n" endings: the "\r" is part of the line and comes back. */
static void tcp_greet_crlf(void **state)
{
    (void)state;
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    h_send_all(fd, "abc\r\n\r\n", 7, 5000);
    const char want[] = TCP_GREETING "abc\r\n" TCP_GREETING "\r\n";
    expect_reply(fd, want, sizeof(want) - 1, "greeting of CRLF lines");
}

/* NUL bytes are ordinary bytes of a line. */
static void tcp_greet_nul_bytes(void **state)
{
    (void)state;
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    const char req[] = "a\0b\0\0c\n\0\n";
    h_send_all(fd, req, sizeof(req) - 1, 5000);
    const char want[] = TCP_GREETING "a\0b\0\0c\n" TCP_GREETING "\0\n";
    expect_reply(fd, want, sizeof(want) - 1, "greeting of lines with NULs");
}

/* At half-close, a trailing partial line is answered as if it ended in "\n", then EOF. */
static void tcp_greet_partial_line_at_half_close(void **state)
{
    (void)state;
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    h_send_all(fd, "x\ntail", 6, 5000);
    const char first[] = TCP_GREETING "x\n";
    expect_reply(fd, first, sizeof(first) - 1, "greeting before the partial line");
    h_expect_silence(fd, 100);
    shutdown(fd, SHUT_WR);
    const char rest[] = TCP_GREETING "tail\n";
    expect_reply(fd, rest, sizeof(rest) - 1, "greeting of the trailing partial line");
    h_expect_eof(fd, 5000);
}

/* A line of exactly max_line_bytes (one ending in "\r\n" too) is answered normally and
 * the connection stays open. */
static void tcp_greet_line_of_max_bytes(void **state)
{
    (void)state;
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    char line[MAX_LINE + 1];
    memset(line, 'm', MAX_LINE);
    line[MAX_LINE] = '\n';
    struct bytes want = {0};
    bytes_add_str(&want, TCP_GREETING);
    bytes_add(&want, line, sizeof(line));
    h_send_all(fd, line, sizeof(line), 5000);
    expect_reply(fd, want.p, want.len, "greeting of a line of max_line_bytes");

    line[MAX_LINE - 1] = '\r'; /* 99 bytes + "\r" = 100 */
    want.len = 0;
    bytes_add_str(&want, TCP_GREETING);
    bytes_add(&want, line, sizeof(line));
    h_send_all(fd, line, sizeof(line), 5000);
    expect_reply(fd, want.p, want.len, "greeting of a CRLF line of max_line_bytes");

    h_send_all(fd, "next\n", 5, 5000);
    const char next[] = TCP_GREETING "next\n";
    expect_reply(fd, next, sizeof(next) - 1, "greeting after the longest lines");
    free(want.p);
}

/* A line of max_line_bytes + 1: the lines before it are answered, then one error line,
 * then EOF; the line after it in the same write is not answered. */
static void tcp_greet_line_too_long(void **state)
{
    (void)state;
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    struct bytes req = {0};
    bytes_add_str(&req, "ok\n");
    char line[MAX_LINE + 1];
    memset(line, 'L', sizeof(line));
    bytes_add(&req, line, sizeof(line));
    bytes_add_str(&req, "\nafter\n");
    h_send_all(fd, req.p, req.len, 5000);
    const char first[] = TCP_GREETING "ok\n";
    size_t len;
    int err;
    uint8_t *got = read_to_eof(fd, &len, &err);
    if (err)
        fail_msg("the connection ended with %s instead of EOF after %zu bytes", strerror(err), len);
    if (len < sizeof(first) - 1)
        fail_msg("only %zu bytes before EOF", len);
    h_assert_bytes("greeting before the long line", first, got, sizeof(first) - 1);
    assert_error_line(got + sizeof(first) - 1, len - (sizeof(first) - 1));
    free(got);
    free(req.p);
}

/* A CRLF line of max_line_bytes + "\r" is one byte too long: the "\r" counts. */
static void tcp_greet_crlf_counts_toward_max(void **state)
{
    (void)state;
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    char line[MAX_LINE + 2];
    memset(line, 'c', MAX_LINE);
    line[MAX_LINE] = '\r';
    line[MAX_LINE + 1] = '\n';
    h_send_all(fd, line, sizeof(line), 5000);
    size_t len;
    int err;
    uint8_t *got = read_to_eof(fd, &len, &err);
    if (err)
        fail_msg("the connection ended with %s instead of EOF after %zu bytes", strerror(err), len);
    assert_error_line(got, len);
    free(got);
}

/* 1 MiB with no "\n" at all: echod must not wait for the end of the line. The error line
 * arrives in full; then the stream ends (EOF, or a reset because the client was still
 * sending after echod closed). */
static void tcp_greet_endless_line(void **state)
{
    (void)state;
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    size_t total = 1 * MIB, sent = 0;
    uint8_t *junk = h_xmalloc(total);
    memset(junk, 'z', total);
    int64_t last_progress = h_now_ms();
    while (sent < total && h_now_ms() - last_progress < 300) {
        ssize_t n = send(fd, junk + sent, total - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            last_progress = h_now_ms();
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            break; /* echod closed: expected */
        } else {
            h_sleep_ms(5);
        }
    }
    free(junk);
    size_t len;
    int err;
    uint8_t *got = read_to_eof(fd, &len, &err);
    h_note("endless line: sent %zu bytes; got %zu bytes then %s", sent, len,
           err ? strerror(err) : "EOF");
    assert_error_line(got, len);
    free(got);
}

static void udp_greet_datagrams(void **state)
{
    (void)state;
    int fd = h_udp_connect(&echod.udp[0]);
    const char want[] = UDP_GREETING "hello";
    h_udp_expect(fd, "hello", 5, want, sizeof(want) - 1, 5, 1000);

    const char utf8[] = "\xe4\xb8\x96\xe7\x95\x8c"; /* 世界 */
    const char want_utf8[] = UDP_GREETING "\xe4\xb8\x96\xe7\x95\x8c";
    h_udp_expect(fd, utf8, sizeof(utf8) - 1, want_utf8, sizeof(want_utf8) - 1, 5, 1000);

    const char one[] = "\0";
    const char want_one[] = UDP_GREETING "\0";
    h_udp_expect(fd, one, 1, want_one, sizeof(want_one) - 1, 5, 1000);

    uint8_t data[1000];
    h_fill_random(data, sizeof(data));
    data[10] = 0;
    struct bytes w = {0};
    bytes_add_str(&w, UDP_GREETING);
    bytes_add(&w, data, sizeof(data));
    h_udp_expect(fd, data, sizeof(data), w.p, w.len, 5, 1000);
    free(w.p);
}

/* The largest request whose reply still fits is answered (a 65,507-byte reply); one byte
 * more gets no reply, is counted as udp_reply_too_large, and echod keeps answering. */
static void udp_greet_reply_size_limit(void **state)
{
    (void)state;
    size_t greeting_len = strlen(UDP_GREETING);
    assert_int_equal(greeting_len, 30);
    size_t fits = UDP_MAX_REPLY - greeting_len;
    int fd = h_udp_connect(&echod.udp[0]);
    uint8_t *data = h_xmalloc(fits + 1);
    h_fill_random(data, fits + 1);
    struct bytes w = {0};
    bytes_add_str(&w, UDP_GREETING);
    bytes_add(&w, data, fits);
    h_udp_expect(fd, data, fits, w.p, w.len, 5, 1000);

    if (send(fd, data, fits + 1, 0) != (ssize_t)(fits + 1))
        fail_msg("udp send of %zu bytes: %s", fits + 1, strerror(errno));
    uint8_t reply[16];
    ssize_t n = h_udp_recv(fd, reply, sizeof(reply), 500);
    if (n >= 0)
        fail_msg("a %zu-byte request got a %zd-byte reply; greeting + request is %zu bytes, "
                 "more than a datagram holds",
                 fits + 1, n, fits + 1 + greeting_len);
    int64_t deadline = h_now_ms() + 2000;
    uint64_t too_large;
    while ((too_large = h_echod_stat(&echod, "udp_reply_too_large")) == 0 && h_now_ms() < deadline)
        h_sleep_ms(50);
    assert_int_equal(too_large, 1);

    const char want[] = UDP_GREETING "after";
    h_udp_expect(fd, "after", 5, want, sizeof(want) - 1, 5, 1000);
    free(w.p);
    free(data);
}

/* ---- templates */

/* "ADDR:PORT" of fd's own end (local) or its peer's, as echod writes addresses. */
static void socket_text(int fd, bool is_local, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int rc = is_local ? getsockname(fd, (struct sockaddr *)&ss, &len)
                      : getpeername(fd, (struct sockaddr *)&ss, &len);
    assert_int_equal(rc, 0);
    assert_int_equal(ss.ss_family, AF_INET);
    const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
    snprintf(buf, size, "%s:%u", ip, ntohs(in->sin_port));
}

/* Every placeholder, with a literal brace pair: the same template for TCP and UDP. */
#define ALL_PLACEHOLDERS "h={host}|i={instance}|s={server}|c={client}|p={pid}|w={worker}|{{}}: "

/* ALL_PLACEHOLDERS as echod must render it. */
static void all_placeholders_text(const char *instance, const char *server, const char *client,
                                  const char *worker, char *buf, size_t size)
{
    char host[128] = "";
    assert_int_equal(gethostname(host, sizeof(host)), 0);
    snprintf(buf, size, "h=%s|i=%s|s=%s|c=%s|p=%ld|w=%s|{}: ", host, instance, server, client,
             (long)echod.pid, worker);
}

/* One worker (so {worker} is 0), the instance named, both services greeting with every
 * placeholder. */
static int setup_template(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  "workers = 1;\n"
                  "instance = \"eu-1\";\n"
                  "tcp = { listen = [ \"127.0.0.1:0\" ]; mode = \"greet\";\n"
                  "        greeting = \"" ALL_PLACEHOLDERS "\"; };\n"
                  "udp = { listen = [ \"127.0.0.1:0\" ]; mode = \"greet\";\n"
                  "        greeting = \"" ALL_PLACEHOLDERS "\"; };\n",
                  NULL);
    return 0;
}

/* TCP: each placeholder, exactly; two connections get their own {client}, and each
 * line of a connection the same greeting. */
static void tcp_template_each_placeholder(void **state)
{
    (void)state;
    for (int round = 0; round < 2; round++) {
        int fd = h_tcp_connect_ok(&echod.tcp[0]);
        char client[64], greeting[512], want[1100];
        socket_text(fd, true, client, sizeof(client));
        all_placeholders_text("eu-1", echod.tcp_text[0], client, "0", greeting, sizeof(greeting));
        h_send_all(fd, "one\ntwo\n", 8, 5000);
        snprintf(want, sizeof(want), "%sone\n%stwo\n", greeting, greeting);
        expect_reply(fd, want, strlen(want), "greeting template over TCP");
        shutdown(fd, SHUT_WR);
        h_expect_eof(fd, 5000);
        h_close(fd);
    }
}

/* UDP: each placeholder, exactly; {worker} is "udp", {client} the socket's own port. */
static void udp_template_each_placeholder(void **state)
{
    (void)state;
    for (int round = 0; round < 2; round++) {
        int fd = h_udp_connect(&echod.udp[0]);
        char client[64], greeting[512], want[1100];
        socket_text(fd, true, client, sizeof(client));
        all_placeholders_text("eu-1", echod.udp_text[0], client, "udp", greeting, sizeof(greeting));
        snprintf(want, sizeof(want), "%sping", greeting);
        h_udp_expect(fd, "ping", 4, want, strlen(want), 5, 1000);
        h_close(fd);
    }
}

/* Without the key, {instance} is the config file's base name without its extension. */
static void template_default_instance(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  "tcp = { listen = [ \"127.0.0.1:0\" ]; mode = \"greet\";"
                  " greeting = \"[{instance}] \"; };\n"
                  "udp = { listen = [ \"127.0.0.1:0\" ]; mode = \"greet\";"
                  " greeting = \"[{instance}] \"; };\n",
                  NULL);
    const char *base = strrchr(echod.conf_path, '/') + 1;
    char instance[256], want[300];
    snprintf(instance, sizeof(instance), "%.*s", (int)(strrchr(base, '.') - base), base);
    snprintf(want, sizeof(want), "[%s] x\n", instance);
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    h_send_all(fd, "x\n", 2, 5000);
    expect_reply(fd, want, strlen(want), "the default instance over TCP");
    int ufd = h_udp_connect(&echod.udp[0]);
    h_udp_expect(ufd, "x\n", 2, want, strlen(want), 5, 1000);
}

/* A reload changes the template: new connections and datagrams take the new one, an open
 * connection keeps the one it started with; a template with an unknown placeholder is
 * refused with its file and line, and the one in force stays. */
static void template_reload(void **state)
{
    (void)state;
    const char *before = "workers = 1;\n"
                         "tcp = { listen = [ \"127.0.0.1:0\" ]; mode = \"greet\";"
                         " greeting = \"A {pid}: \"; };\n"
                         "udp = { listen = [ \"127.0.0.1:0\" ]; mode = \"greet\";"
                         " greeting = \"A {pid}: \"; };\n";
    h_echod_start(&echod, before, NULL);
    char a[64], b[160], want[256];
    snprintf(a, sizeof(a), "A %ld: ", (long)echod.pid);
    int old_fd = h_tcp_connect_ok(&echod.tcp[0]);
    h_send_all(old_fd, "1\n", 2, 5000);
    snprintf(want, sizeof(want), "%s1\n", a);
    expect_reply(old_fd, want, strlen(want), "before the reload");

    char config[512];
    snprintf(config, sizeof(config),
             "workers = 1;\ninstance = \"blue\";\n"
             "tcp = { listen = [ \"%s\" ]; mode = \"greet\"; greeting = \"B {instance} {client}: "
             "\"; };\n"
             "udp = { listen = [ \"%s\" ]; mode = \"greet\"; greeting = \"B {instance} {client}: "
             "\"; };\n",
             echod.tcp_text[0], echod.udp_text[0]);
    assert_int_equal(h_echod_reload(&echod, config), 0);

    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    char client[64];
    socket_text(fd, true, client, sizeof(client));
    snprintf(b, sizeof(b), "B blue %s: ", client);
    h_send_all(fd, "2\n", 2, 5000);
    snprintf(want, sizeof(want), "%s2\n", b);
    expect_reply(fd, want, strlen(want), "a new connection after the reload");
    h_send_all(old_fd, "3\n", 2, 5000);
    snprintf(want, sizeof(want), "%s3\n", a);
    expect_reply(old_fd, want, strlen(want), "the open connection after the reload");
    int ufd = h_udp_connect(&echod.udp[0]);
    socket_text(ufd, true, client, sizeof(client));
    snprintf(want, sizeof(want), "B blue %s: 4", client);
    h_udp_expect(ufd, "4", 1, want, strlen(want), 5, 1000);

    assert_int_equal(h_echod_reload(&echod, "tcp = {\n  greeting = \"{nope} \";\n};\n"), -1);
    char needle[600];
    snprintf(needle, sizeof(needle), "%s:2: tcp.greeting: unknown placeholder {nope}",
             echod.conf_path);
    if (!h_echod_log_contains(&echod, needle)) {
        h_echod_dump_log(&echod);
        fail_msg("the log does not say \"%s\"", needle);
    }
    h_send_all(fd, "5\n", 2, 5000);
    snprintf(want, sizeof(want), "%s5\n", b);
    expect_reply(fd, want, strlen(want), "after the refused reload");
}

int main(void)
{
    h_init("test_greet", 120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(tcp_greet_single_line, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_greet_urgent_byte_in_line, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_greet_many_lines_one_write, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_greet_line_split_across_writes, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_greet_crlf, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_greet_nul_bytes, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_greet_partial_line_at_half_close, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_greet_line_of_max_bytes, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_greet_line_too_long, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_greet_crlf_counts_toward_max, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_greet_endless_line, setup, h_teardown),
        cmocka_unit_test_setup_teardown(udp_greet_datagrams, setup, h_teardown),
        cmocka_unit_test_setup_teardown(udp_greet_reply_size_limit, setup, h_teardown),
        cmocka_unit_test_setup_teardown(tcp_template_each_placeholder, setup_template, h_teardown),
        cmocka_unit_test_setup_teardown(udp_template_each_placeholder, setup_template, h_teardown),
        cmocka_unit_test_teardown(template_default_instance, h_teardown),
        cmocka_unit_test_teardown(template_reload, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
