/* conf: builds the one configuration struct from built-in defaults and a libconfig file
 * (or a string, for the fuzzer and the tests). The only file that touches libconfig.
 * Main thread at start-up. A load builds a whole new struct and replaces the caller's
 * only when every key is valid, so a bad file never leaves a half-applied configuration.
 * Errors read "FILE:LINE: key: message" and name the key with its group ("tcp.mode"). */
#include "config.h"

#include "conf.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONF_DEFAULT_LISTEN "127.0.0.1:7007"
#define CONF_MAX_LISTEN     64u  /* addresses per service */
#define CONF_MAX_GREETING   4096 /* bytes */
#define CONF_MAX_PROXY_FROM 64u  /* networks in tcp.proxy_from */
#define CONF_MAX_FILE_BYTES (1 << 20)
#define CONF_MAX_INSTANCE     64 /* bytes of the instance name */
#define CONF_DEFAULT_INSTANCE "echod"

/* Where messages go while one load runs. */
struct conf_ctx {
    const char *name; /* file name, or the string's name */
    const char *text; /* what libconfig parsed */
    char *err;
    size_t err_size;
    unsigned last_line; /* the text's last line (1-based), as an editor shows it */
};

/* An unsigned key: its name within its group, where it lives, and its range. */
struct conf_uint_key {
    const char *name;
    size_t offset; /* of an unsigned in struct conf */
    unsigned min, max;
};

static const struct conf_uint_key conf_root_uints[] = {
    {"workers", offsetof(struct conf, workers), 0, CONF_MAX_WORKERS},
    {"queue_capacity", offsetof(struct conf, queue_capacity), 1, 1u << 20},
    {"max_connections", offsetof(struct conf, max_connections), 1, 10000000},
    {"idle_timeout_ms", offsetof(struct conf, idle_timeout_ms), 0, INT32_MAX},
    {"send_timeout_ms", offsetof(struct conf, send_timeout_ms), 0, INT32_MAX},
    {"max_connections_per_ip", offsetof(struct conf, max_connections_per_ip), 0, 10000000},
    {"shutdown_timeout_ms", offsetof(struct conf, shutdown_timeout_ms), 0, 3600000},
    {NULL, 0, 0, 0},
};

static const struct conf_uint_key conf_tcp_uints[] = {
    {"backlog", offsetof(struct conf, tcp_backlog), 1, 65535},
    {"max_line_bytes", offsetof(struct conf, tcp_max_line_bytes), 1, 16u << 20},
    {"buffer_bytes", offsetof(struct conf, tcp_buffer_bytes), 1024, 64u << 20},
    {"proxy_timeout_ms", offsetof(struct conf, tcp_proxy_timeout_ms), 1, 3600000},
    {NULL, 0, 0, 0},
};

static const struct conf_uint_key conf_udp_uints[] = {
    {"max_reply_bytes", offsetof(struct conf, udp_max_reply_bytes), 1, 65527},
    {NULL, 0, 0, 0},
};

static const struct conf_uint_key conf_guard_uints[] = {
    {"rate", offsetof(struct conf, udp_guard.rate), 1, 10000000},
    {"burst", offsetof(struct conf, udp_guard.burst), 1, 10000000},
    {"max_rate", offsetof(struct conf, udp_guard.max_rate), 0, 100000000},
    {"table_size", offsetof(struct conf, udp_guard.table_size), 16, 1u << 20},
    {"log_interval_ms", offsetof(struct conf, udp_guard.log_interval_ms), 100, 86400000},
    {NULL, 0, 0, 0},
};

/* A boolean key: its name within its group and where it lives. */
struct conf_bool_key {
    const char *name;
    size_t offset; /* of a bool in struct conf */
};

static const struct conf_bool_key conf_guard_bools[] = {
    {"enabled", offsetof(struct conf, udp_guard.is_enabled)},
    {"allow_loopback", offsetof(struct conf, udp_guard.is_loopback_allowed)},
    {"limit_loopback", offsetof(struct conf, udp_guard.is_loopback_limited)},
    {NULL, 0},
};

/* The booleans of the tcp and udp groups. */
static const struct conf_bool_key conf_tcp_bools[] = {
    {"reuseport", offsetof(struct conf, tcp.is_reuseport)},
    {NULL, 0},
};

static const struct conf_bool_key conf_udp_bools[] = {
    {"reuseport", offsetof(struct conf, udp.is_reuseport)},
    {NULL, 0},
};

/* The keys of the tcp and udp groups that are not numbers (conf_apply_service_key). */
static const char *const conf_service_keys[] = {"listen", "mode", "greeting", NULL};
/* The keys of the tcp group alone that are not numbers (conf_apply_proxy_key). */
static const char *const conf_tcp_keys[] = {"proxy_protocol", "proxy_from", NULL};

/* Call fn with "group.name" (or name alone at the top level). */
static void conf_key_emit(const char *group, const char *name, void (*fn)(const char *, void *),
                          void *arg)
{
    char key[CONF_KEY_NAME_MAX];
    snprintf(key, sizeof(key), "%s%s%s", group ? group : "", group ? "." : "", name);
    fn(key, arg);
}

static void conf_key_emit_uints(const char *group, const struct conf_uint_key *table,
                                void (*fn)(const char *, void *), void *arg)
{
    for (const struct conf_uint_key *k = table; k->name; k++)
        conf_key_emit(group, k->name, fn, arg);
}

/* Call fn with "group.name" for each boolean of table. */
static void conf_key_emit_bools(const char *group, const struct conf_bool_key *table,
                                void (*fn)(const char *, void *), void *arg)
{
    for (const struct conf_bool_key *k = table; k->name; k++)
        conf_key_emit(group, k->name, fn, arg);
}

void conf_each_key(void (*fn)(const char *key, void *arg), void *arg)
{
    conf_key_emit_uints(NULL, conf_root_uints, fn, arg);
    conf_key_emit(NULL, "log_level", fn, arg);
    conf_key_emit(NULL, "instance", fn, arg);
    for (const char *const *k = conf_service_keys; *k; k++)
        conf_key_emit("tcp", *k, fn, arg);
    for (const char *const *k = conf_tcp_keys; *k; k++)
        conf_key_emit("tcp", *k, fn, arg);
    conf_key_emit_uints("tcp", conf_tcp_uints, fn, arg);
    conf_key_emit_bools("tcp", conf_tcp_bools, fn, arg);
    for (const char *const *k = conf_service_keys; *k; k++)
        conf_key_emit("udp", *k, fn, arg);
    conf_key_emit_uints("udp", conf_udp_uints, fn, arg);
    conf_key_emit_bools("udp", conf_udp_bools, fn, arg);
    conf_key_emit_bools("udp.guard", conf_guard_bools, fn, arg);
    conf_key_emit_uints("udp.guard", conf_guard_uints, fn, arg);
    conf_key_emit("metrics", "listen", fn, arg);
}

/* Write "NAME:LINE: group.key: message" and return -EINVAL. */
__attribute__((format(printf, 4, 5))) static int conf_fail(const struct conf_ctx *ctx,
                                                           const config_setting_t *s,
                                                           const char *group, const char *fmt, ...)
{
    char msg[CONF_ERR_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const char *key = config_setting_name(s);
    snprintf(ctx->err, ctx->err_size, "%s:%u: %s%s%s: %s", ctx->name, config_setting_source_line(s),
             group ? group : "", group ? "." : "", key ? key : "(element)", msg);
    return -EINVAL;
}

/* Continuation bytes after lead byte c in UTF-8, or -1 for a byte no character starts with. */
static int conf_utf8_extra(unsigned c)
{
    if (c < 0x80)
        return 0;
    if ((c & 0xe0) == 0xc0)
        return 1;
    if ((c & 0xf0) == 0xe0)
        return 2;
    if ((c & 0xf8) == 0xf0)
        return 3;
    return -1;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
static bool conf_is_utf8(const unsigned char *s, size_t n)
{
    static const uint32_t min_cp[] = {0, 0x80, 0x800, 0x10000};
    size_t i = 0;
    while (i < n) {
        int extra = conf_utf8_extra(s[i]);
        if (extra < 0 || i + (size_t)extra >= n)
            return false;
        uint32_t cp = extra == 0 ? s[i] : s[i] & (0x3fu >> extra);
        for (int k = 1; k <= extra; k++) {
            if ((s[i + (size_t)k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + (size_t)k] & 0x3fu);
        }
        if (cp < min_cp[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += (size_t)extra + 1;
    }
    return true;
}

/* The lexer pass: libconfig 1.5 (Debian 12's) misreads some literals silently, so conf
 * scans the raw text for them before libconfig sees it.
 * - An integer literal without an L suffix is read into an int and wraps:
 *   "workers = 4294967297;" would load as 1.
 * - A "\x00" escape in a string is dropped: "Hi\x00there" would load as "Hithere".
 * - A directive (@include) makes libconfig read that file with its own reader, which
 *   exits the process on a directory and blocks on a FIFO.
 * The lexer skips comments, takes names whole (so "key2" is no number), and yields names,
 * number tokens, directives and the NUL escapes in strings. The same tokens let a range
 * error quote a literal as written (0xFFFFFFFF, which libconfig reads as -1). */
enum conf_token_kind {
    CONF_TOKEN_END,
    CONF_TOKEN_NAME,       /* a setting's name (or a word such as true) */
    CONF_TOKEN_NUMBER,     /* an integer or float literal, as written */
    CONF_TOKEN_DIRECTIVE,  /* @include */
    CONF_TOKEN_NUL_ESCAPE, /* the first "\x00" in a string */
};

struct conf_token {
    enum conf_token_kind kind;
    const char *start; /* in the text */
    int len;
    unsigned line; /* 1-based */
};

/* Where a comment starting at p ends (the byte after it), or NULL if none starts there. */
static const char *conf_skip_comment(const char *p)
{
    if (*p == '#' || (p[0] == '/' && p[1] == '/'))
        return p + strcspn(p, "\n");
    if (p[0] == '/' && p[1] == '*') {
        const char *close = strstr(p + 2, "*/");
        return close ? close + 2 : p + strlen(p);
    }
    return NULL;
}

/* Where the string whose quote is at p ends (the byte after it); *nul_escape is its
 * first escape that yields a NUL byte (\x00 or \X00), or NULL. */
static const char *conf_skip_string(const char *p, const char **nul_escape)
{
    const char *end = p + 1;
    *nul_escape = NULL;
    for (; *end && *end != '"'; end++) {
        if (end[0] == '\\' && (end[1] == 'x' || end[1] == 'X') && end[2] == '0' && end[3] == '0' &&
            *nul_escape == NULL)
            *nul_escape = end;
        end += end[0] == '\\' && end[1] != '\0';
    }
    return end + (*end == '"');
}

static void conf_count_lines(const char *from, const char *to, unsigned *line)
{
    for (const char *q = from; q < to; q++)
        *line += *q == '\n';
}

/* The next token from *p on, advancing *p past it and *line over the newlines passed. */
static struct conf_token conf_next_token(const char **p, unsigned *line)
{
    struct conf_token t = {CONF_TOKEN_END, *p, 0, *line};
    const char *at = *p;
    while (*at && t.kind == CONF_TOKEN_END) {
        const char *end = conf_skip_comment(at), *nul_escape = NULL;
        if (end == NULL && *at == '"')
            end = conf_skip_string(at, &nul_escape);
        if (end == NULL && (isalpha((unsigned char)*at) || *at == '*' || *at == '@')) {
            end = at + 1 +
                  strspn(at + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "0123456789-_*");
            t.kind = *at == '@' ? CONF_TOKEN_DIRECTIVE : CONF_TOKEN_NAME;
        } else if (end == NULL && (isdigit((unsigned char)*at) ||
                                   ((*at == '-' || *at == '+') && isdigit((unsigned char)at[1])))) {
            end = at + 1 + strspn(at + 1, "0123456789abcdefABCDEFxXL.+-");
            t.kind = CONF_TOKEN_NUMBER;
        } else if (end == NULL) {
            end = at + 1;
        }
        const char *start = nul_escape ? nul_escape : at;
        conf_count_lines(at, start, line);
        if (nul_escape)
            t = (struct conf_token){CONF_TOKEN_NUL_ESCAPE, nul_escape, 4, *line};
        else if (t.kind != CONF_TOKEN_END)
            t = (struct conf_token){t.kind, at, (int)(end - at), *line};
        conf_count_lines(start, end, line);
        at = end;
    }
    *p = at;
    return t;
}

/* Whether the number token at p (len bytes) is a plain integer that libconfig would wrap:
 * decimal outside int's range, or hex over 32 bits. */
static bool conf_int_wraps(const char *p, size_t len)
{
    bool is_hex = len > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
    if (p[len - 1] == 'L')
        return false; /* a 64-bit literal: libconfig reads it whole */
    for (size_t i = 0; !is_hex && i < len; i++)
        if (p[i] == '.' || p[i] == 'e' || p[i] == 'E')
            return false; /* a float */
    errno = 0;
    long long v = strtoll(p, NULL, is_hex ? 16 : 10);
    if (errno == ERANGE)
        return true;
    return is_hex ? v > (long long)UINT32_MAX : v > INT32_MAX || v < INT32_MIN;
}

/* The first token of text that libconfig must not see (a wrapping integer, a NUL escape,
 * a directive) into *bad, and the last name before it (its setting) into *key; false if
 * there is none. */
static bool conf_find_misread(const char *text, struct conf_token *bad, struct conf_token *key)
{
    unsigned line = 1;
    const char *p = text;
    *key = (struct conf_token){CONF_TOKEN_NAME, "", 0, 0};
    for (;;) {
        struct conf_token t = conf_next_token(&p, &line);
        if (t.kind == CONF_TOKEN_END)
            return false;
        if (t.kind == CONF_TOKEN_NAME)
            *key = t;
        if (t.kind == CONF_TOKEN_DIRECTIVE || t.kind == CONF_TOKEN_NUL_ESCAPE ||
            (t.kind == CONF_TOKEN_NUMBER && conf_int_wraps(t.start, (size_t)t.len))) {
            *bad = t;
            return true;
        }
    }
}

/* The literal of setting `key`, whose name is on `line`, as written in text: the first
 * number token after that name; false if there is none. */
static bool conf_find_literal(const char *text, const char *key, unsigned line,
                              struct conf_token *literal)
{
    unsigned at_line = 1;
    const char *p = text;
    bool is_after_key = false;
    for (;;) {
        struct conf_token t = conf_next_token(&p, &at_line);
        if (t.kind == CONF_TOKEN_END)
            return false;
        if (t.kind == CONF_TOKEN_NAME)
            is_after_key = t.line == line && (size_t)t.len == strlen(key) &&
                           memcmp(t.start, key, (size_t)t.len) == 0;
        if (t.kind == CONF_TOKEN_NUMBER && is_after_key) {
            *literal = t;
            return true;
        }
    }
}

/* An integer setting within [min, max]. */
static int conf_get_uint(const struct conf_ctx *ctx, const config_setting_t *s, const char *group,
                         unsigned min, unsigned max, unsigned *out)
{
    int type = config_setting_type(s);
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
        return conf_fail(ctx, s, group, "must be an integer");
    long long v = config_setting_get_int64(s);
    if (v >= (long long)min && v <= (long long)max) {
        *out = (unsigned)v;
        return 0;
    }
    /* Quote the literal: libconfig reads 0xFFFFFFFF into an int, as -1. */
    struct conf_token literal;
    if (conf_find_literal(ctx->text, config_setting_name(s), config_setting_source_line(s),
                          &literal))
        return conf_fail(ctx, s, group, "must be between %u and %u, not %.*s", min, max,
                         literal.len, literal.start);
    return conf_fail(ctx, s, group, "must be between %u and %u, not %lld", min, max, v);
}

/* A string setting. */
static int conf_get_string(const struct conf_ctx *ctx, const config_setting_t *s, const char *group,
                           const char **out)
{
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return conf_fail(ctx, s, group, "must be a string");
    *out = config_setting_get_string(s);
    return 0;
}

/* A key holding a list of strings, each parsed into an array element. */
struct conf_list_kind {
    const char *form;  /* "\"ADDR:PORT\"": what each string looks like */
    const char *forms; /* what the strings may be, in an element's error */
    const char *items; /* "addresses", in the count's error */
    size_t max, elem_size;
    int (*parse)(const char *text, void *elem); /* 0 or -EINVAL */
};

/* The list s of `kind`, into a new array *list of *count elements (freeing the old one). */
static int conf_get_list(const struct conf_ctx *ctx, const config_setting_t *s, const char *group,
                         const struct conf_list_kind *kind, void **list, size_t *count)
{
    int type = config_setting_type(s);
    if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
        return conf_fail(ctx, s, group, "must be a list of %s strings", kind->form);
    int n = config_setting_length(s);
    if ((size_t)n > kind->max)
        return conf_fail(ctx, s, group, "at most %zu %s", kind->max, kind->items);
    char *elems = calloc(n > 0 ? (size_t)n : 1, kind->elem_size);
    if (elems == NULL)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *text = config_setting_get_string(e);
        if (text == NULL || kind->parse(text, elems + (size_t)i * kind->elem_size) < 0) {
            free(elems);
            return conf_fail(ctx, s, group, "element %d: %s%s%s is not %s", i + 1, text ? "\"" : "",
                             text ? text : "a non-string", text ? "\"" : "", kind->forms);
        }
    }
    free(*list);
    *list = elems;
    *count = (size_t)n;
    return 0;
}

static int conf_parse_addr(const char *text, void *elem)
{
    return addr_parse(text, elem);
}

static int conf_parse_net(const char *text, void *elem)
{
    return proxy_net_parse(text, elem);
}

static const struct conf_list_kind conf_listen_kind = {
    "\"ADDR:PORT\"",     "\"ADDR:PORT\" or \"[V6ADDR]:PORT\"",
    "addresses",         CONF_MAX_LISTEN,
    sizeof(struct addr), conf_parse_addr};
static const struct conf_list_kind conf_proxy_from_kind = {
    "\"ADDR/BITS\"",
    "\"ADDR/BITS\" (no bit set past BITS) or \"ADDR\"",
    "networks",
    CONF_MAX_PROXY_FROM,
    sizeof(struct proxy_net),
    conf_parse_net};

/* A listen list: strings "ADDR:PORT" or "[V6ADDR]:PORT"; replaces *listen and *count. */
static int conf_get_listen(const struct conf_ctx *ctx, const config_setting_t *s, const char *group,
                           struct addr **listen, size_t *count)
{
    return conf_get_list(ctx, s, group, &conf_listen_kind, (void **)listen, count);
}

/* The greeting: UTF-8 text of at most CONF_MAX_GREETING bytes; replaces svc->greeting. */
static int conf_get_greeting(const struct conf_ctx *ctx, const config_setting_t *s,
                             const char *group, struct conf_service *svc)
{
    const char *text = NULL;
    int rc = conf_get_string(ctx, s, group, &text);
    if (rc < 0)
        return rc;
    size_t len = strlen(text);
    if (len > CONF_MAX_GREETING)
        return conf_fail(ctx, s, group, "longer than %d bytes", CONF_MAX_GREETING);
    if (!conf_is_utf8((const unsigned char *)text, len))
        return conf_fail(ctx, s, group, "is not valid UTF-8");
    struct template compiled;
    char why[CONF_ERR_SIZE];
    rc = template_compile(text, len, &compiled, why, sizeof(why));
    if (rc == -EINVAL)
        return conf_fail(ctx, s, group, "%s", why);
    char *copy = rc == 0 ? strdup(text) : NULL;
    if (copy == NULL) {
        template_free(&compiled);
        return -ENOMEM;
    }
    free(svc->greeting);
    template_free(&svc->greeting_template);
    svc->greeting = copy;
    svc->greeting_len = len;
    svc->greeting_template = compiled;
    return 0;
}

/* The instance name: 1 to CONF_MAX_INSTANCE bytes of UTF-8; replaces c->instance. */
static int conf_get_instance(const struct conf_ctx *ctx, const config_setting_t *s, struct conf *c)
{
    const char *text = NULL;
    int rc = conf_get_string(ctx, s, NULL, &text);
    if (rc < 0)
        return rc;
    size_t len = strlen(text);
    if (len == 0 || len > CONF_MAX_INSTANCE)
        return conf_fail(ctx, s, NULL, "must be 1 to %d bytes long", CONF_MAX_INSTANCE);
    if (!conf_is_utf8((const unsigned char *)text, len))
        return conf_fail(ctx, s, NULL, "is not valid UTF-8");
    char *copy = strdup(text);
    if (copy == NULL)
        return -ENOMEM;
    free(c->instance);
    c->instance = copy;
    return 0;
}

/* Apply s if its name is one of the keys of `table`; 1 if it was, 0 if not, or -errno. */
static int conf_apply_uint(const struct conf_ctx *ctx, const config_setting_t *s, const char *group,
                           const struct conf_uint_key *table, struct conf *c)
{
    const char *name = config_setting_name(s);
    for (const struct conf_uint_key *k = table; k->name; k++) {
        if (strcmp(name, k->name) == 0) {
            unsigned *field = (unsigned *)(void *)((char *)c + k->offset);
            int rc = conf_get_uint(ctx, s, group, k->min, k->max, field);
            return rc < 0 ? rc : 1;
        }
    }
    return 0;
}

/* Apply s if its name is one of the boolean keys of `table`; 1 if it was, 0 if not, or -errno. */
static int conf_apply_bool(const struct conf_ctx *ctx, const config_setting_t *s, const char *group,
                           const struct conf_bool_key *table, struct conf *c)
{
    const char *name = config_setting_name(s);
    for (const struct conf_bool_key *k = table; k->name; k++) {
        if (strcmp(name, k->name) == 0) {
            if (config_setting_type(s) != CONFIG_TYPE_BOOL)
                return conf_fail(ctx, s, group, "must be true or false");
            *(bool *)(void *)((char *)c + k->offset) = config_setting_get_bool(s) != 0;
            return 1;
        }
    }
    return 0;
}

/* Apply s if it is the udp.guard group; 1 if it was, 0 if not, or -errno. */
static int conf_apply_guard(const struct conf_ctx *ctx, const config_setting_t *g, struct conf *c)
{
    if (strcmp(config_setting_name(g), "guard") != 0)
        return 0;
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return conf_fail(ctx, g, "udp", "must be a group: guard = { ... };");
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        int rc = conf_apply_uint(ctx, s, "udp.guard", conf_guard_uints, c);
        if (rc == 0)
            rc = conf_apply_bool(ctx, s, "udp.guard", conf_guard_bools, c);
        if (rc == 0)
            rc = conf_fail(ctx, s, "udp.guard", "unknown key");
        if (rc < 0)
            return rc;
    }
    return 1;
}

/* Apply s if it is one of the tcp group's PROXY protocol keys that are not numbers; 1 if it
 * was, 0 if not, or -errno. */
static int conf_apply_proxy_key(const struct conf_ctx *ctx, const config_setting_t *s,
                                struct conf *c)
{
    const char *name = config_setting_name(s);
    const char *text = NULL;
    int rc;
    if (strcmp(name, "proxy_from") == 0) {
        rc = conf_get_list(ctx, s, "tcp", &conf_proxy_from_kind, (void **)&c->tcp_proxy_from,
                           &c->tcp_proxy_from_count);
        return rc < 0 ? rc : 1;
    }
    if (strcmp(name, "proxy_protocol") != 0)
        return 0;
    rc = conf_get_string(ctx, s, "tcp", &text);
    if (rc == 0 && proxy_accept_parse(text, &c->tcp_proxy_protocol) < 0)
        rc = conf_fail(ctx, s, "tcp", "must be \"off\", \"v1\", \"v2\" or \"any\", not \"%s\"",
                       text);
    return rc < 0 ? rc : 1;
}

/* Apply one member of the tcp or udp group; the keys both groups share come first. */
static int conf_apply_service_key(const struct conf_ctx *ctx, const config_setting_t *s,
                                  const char *group, struct conf_service *svc)
{
    const char *name = config_setting_name(s);
    const char *text = NULL;
    int rc;
    if (strcmp(name, "listen") == 0)
        return conf_get_listen(ctx, s, group, &svc->listen, &svc->listen_count);
    if (strcmp(name, "greeting") == 0)
        return conf_get_greeting(ctx, s, group, svc);
    if (strcmp(name, "mode") == 0) {
        rc = conf_get_string(ctx, s, group, &text);
        if (rc == 0 && proto_mode_parse(text, &svc->mode) < 0)
            rc = conf_fail(ctx, s, group, "must be \"echo\" or \"greet\", not \"%s\"", text);
        return rc;
    }
    return conf_fail(ctx, s, group, "unknown key");
}

/* Apply the tcp or udp group. */
static int conf_apply_service(const struct conf_ctx *ctx, const config_setting_t *g,
                              const char *group, struct conf *c)
{
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return conf_fail(ctx, g, NULL, "must be a group: %s = { ... };", group);
    bool is_tcp = strcmp(group, "tcp") == 0;
    struct conf_service *svc = is_tcp ? &c->tcp : &c->udp;
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        int rc = conf_apply_uint(ctx, s, group, is_tcp ? conf_tcp_uints : conf_udp_uints, c);
        if (rc == 0 && !is_tcp)
            rc = conf_apply_guard(ctx, s, c);
        if (rc == 0 && is_tcp)
            rc = conf_apply_proxy_key(ctx, s, c);
        if (rc == 0)
            rc = conf_apply_bool(ctx, s, group, is_tcp ? conf_tcp_bools : conf_udp_bools, c);
        if (rc == 0)
            rc = conf_apply_service_key(ctx, s, group, svc);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Apply the metrics group: its one key is listen. */
static int conf_apply_metrics(const struct conf_ctx *ctx, const config_setting_t *g, struct conf *c)
{
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return conf_fail(ctx, g, NULL, "must be a group: metrics = { ... };");
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        int rc =
            strcmp(config_setting_name(s), "listen") == 0
                ? conf_get_listen(ctx, s, "metrics", &c->metrics_listen, &c->metrics_listen_count)
                : conf_fail(ctx, s, "metrics", "unknown key");
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* What a full name ("tcp", "tcp.mode") is: a key, a group holding keys, or neither. */
struct conf_name_query {
    const char *name;
    size_t len;
    bool is_key, is_group;
};

static void conf_name_classify(const char *key, void *arg)
{
    struct conf_name_query *q = arg;
    q->is_key |= strcmp(key, q->name) == 0;
    q->is_group |= strncmp(key, q->name, q->len) == 0 && key[q->len] == '.';
}

/* Fail with "unknown key" at the first setting under g (the group named `group`, NULL at
 * the top) whose full name is not in conf_each_key's list, so that list is the one truth
 * about which keys exist. Types and values are left to the apply functions. */
static int conf_check_names(const struct conf_ctx *ctx, const config_setting_t *g,
                            const char *group)
{
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        char full[CONF_KEY_NAME_MAX];
        struct conf_name_query q = {full, 0, false, false};
        int len = snprintf(full, sizeof(full), "%s%s%s", group ? group : "", group ? "." : "",
                           config_setting_name(s));
        if (len > 0 && (size_t)len < sizeof(full)) {
            q.len = (size_t)len;
            conf_each_key(conf_name_classify, &q);
        }
        if (!q.is_key && !q.is_group)
            return conf_fail(ctx, s, group, "unknown key");
        if (q.is_group && config_setting_type(s) == CONFIG_TYPE_GROUP) {
            int rc = conf_check_names(ctx, s, full);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* The setting named first, or else the one named second (of which one must exist). */
static const config_setting_t *conf_lookup_either(const config_t *cfg, const char *first,
                                                  const char *second)
{
    const config_setting_t *s = config_lookup(cfg, first);
    return s != NULL ? s : config_lookup(cfg, second);
}

/* Rules that involve more than one key. */
static int conf_check_whole(const struct conf_ctx *ctx, const config_t *cfg, const struct conf *c)
{
    size_t greet_need = c->tcp.greeting_max_bytes + (size_t)c->tcp_max_line_bytes + 1;
    if (c->tcp.mode == PROTO_GREET && c->tcp_buffer_bytes < greet_need) {
        /* Greet mode is only on when tcp.mode was given, so one of the two exists. */
        const config_setting_t *s = conf_lookup_either(cfg, "tcp.buffer_bytes", "tcp.mode");
        return conf_fail(ctx, s, "tcp",
                         "greet mode needs tcp.buffer_bytes of at least greeting +"
                         " max_line_bytes + 1 = %zu bytes",
                         greet_need);
    }
    if (c->tcp_proxy_protocol != PROXY_OFF && c->tcp_proxy_from_count == 0) {
        /* Safe by default: nobody may claim to speak for another client unless named. */
        const config_setting_t *s = conf_lookup_either(cfg, "tcp.proxy_from", "tcp.proxy_protocol");
        return conf_fail(ctx, s, "tcp",
                         "tcp.proxy_protocol \"%s\" needs tcp.proxy_from, the networks allowed "
                         "to send a PROXY header (none is by default)",
                         proxy_accept_name(c->tcp_proxy_protocol));
    }
    if (c->udp.mode == PROTO_GREET && c->udp_max_reply_bytes <= c->udp.greeting_max_bytes) {
        const config_setting_t *s = conf_lookup_either(cfg, "udp.max_reply_bytes", "udp.mode");
        return conf_fail(ctx, s, "udp",
                         "greet mode needs udp.max_reply_bytes above the greeting's %zu bytes",
                         c->udp.greeting_max_bytes);
    }
    return 0;
}

/* The instance name a file called `name` gives by default: its base name without the
 * extension ("/etc/echod/eu-1.conf" gives "eu-1"), cut to CONF_MAX_INSTANCE bytes at a
 * character's start; CONF_DEFAULT_INSTANCE if that leaves nothing. 0 or -ENOMEM. */
static int conf_name_instance(struct conf *c, const char *name)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (len > CONF_MAX_INSTANCE)
        len = CONF_MAX_INSTANCE;
    while (len > 0 && !conf_is_utf8((const unsigned char *)base, len))
        len--; /* not a whole character, or not UTF-8 at all */
    char *instance = len ? strndup(base, len) : strdup(CONF_DEFAULT_INSTANCE);
    if (instance == NULL)
        return -ENOMEM;
    free(c->instance);
    c->instance = instance;
    return 0;
}

/* Each greeting's longest rendering, with the instance name in force. */
static void conf_size_greetings(struct conf *c)
{
    size_t instance_len = strlen(c->instance);
    c->tcp.greeting_max_bytes = template_max_len(&c->tcp.greeting_template, instance_len);
    c->udp.greeting_max_bytes = template_max_len(&c->udp.greeting_template, instance_len);
}

/* Apply every top-level setting of cfg to c. */
static int conf_apply_root(const struct conf_ctx *ctx, const config_t *cfg, struct conf *c)
{
    const config_setting_t *root = config_root_setting(cfg);
    int rc = conf_check_names(ctx, root, NULL);
    if (rc < 0)
        return rc;
    int n = config_setting_length(root);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        const char *name = config_setting_name(s);
        const char *text = NULL;
        rc = conf_apply_uint(ctx, s, NULL, conf_root_uints, c);
        if (rc != 0) {
            if (rc < 0)
                return rc;
        } else if (strcmp(name, "tcp") == 0 || strcmp(name, "udp") == 0) {
            if ((rc = conf_apply_service(ctx, s, name, c)) < 0)
                return rc;
        } else if (strcmp(name, "instance") == 0) {
            if ((rc = conf_get_instance(ctx, s, c)) < 0)
                return rc;
        } else if (strcmp(name, "metrics") == 0) {
            if ((rc = conf_apply_metrics(ctx, s, c)) < 0)
                return rc;
        } else if (strcmp(name, "log_level") == 0) {
            if ((rc = conf_get_string(ctx, s, NULL, &text)) < 0)
                return rc;
            if (log_level_parse(text, &c->log_level) < 0)
                return conf_fail(ctx, s, NULL,
                                 "must be \"error\", \"warn\", \"info\" or"
                                 " \"debug\", not \"%s\"",
                                 text);
        } else {
            return conf_fail(ctx, s, NULL, "unknown key");
        }
    }
    if (config_lookup(cfg, "instance") == NULL && (rc = conf_name_instance(c, ctx->name)) < 0)
        return rc;
    conf_size_greetings(c);
    return conf_check_whole(ctx, cfg, c);
}

/* Set one service's defaults. */
static int conf_service_defaults(struct conf_service *svc, const char *greeting)
{
    memset(svc, 0, sizeof(*svc));
    svc->listen = calloc(1, sizeof(*svc->listen));
    svc->greeting = strdup(greeting);
    char why[CONF_ERR_SIZE];
    if (svc->listen == NULL || svc->greeting == NULL ||
        template_compile(greeting, strlen(greeting), &svc->greeting_template, why, sizeof(why)) < 0)
        return -ENOMEM;
    addr_parse(CONF_DEFAULT_LISTEN, &svc->listen[0]);
    svc->listen_count = 1;
    svc->mode = PROTO_ECHO;
    svc->greeting_len = strlen(greeting);
    return 0;
}

int conf_init_defaults(struct conf *c)
{
    memset(c, 0, sizeof(*c));
    c->workers = 0;
    c->queue_capacity = 1024;
    c->max_connections = 10000;
    c->idle_timeout_ms = 300000;
    c->send_timeout_ms = 30000;
    c->max_connections_per_ip = 0;
    c->shutdown_timeout_ms = 5000;
    c->log_level = LOG_LEVEL_INFO;
    c->tcp_backlog = 4096;
    c->tcp_max_line_bytes = 8192;
    c->tcp_buffer_bytes = 65536;
    c->tcp_proxy_protocol = PROXY_OFF;
    c->tcp_proxy_timeout_ms = 3000;
    c->udp_max_reply_bytes = 65507;
    guard_conf_defaults(&c->udp_guard);
    if (conf_service_defaults(&c->tcp, "Hello, ") < 0 ||
        conf_service_defaults(&c->udp, "Hello, client! You sent: ") < 0 ||
        (c->instance = strdup(CONF_DEFAULT_INSTANCE)) == NULL) {
        conf_free(c);
        return -ENOMEM;
    }
    conf_size_greetings(c);
    return 0;
}

/* Turn a parsed cfg (or its parse error) into c. */
static int conf_finish(const struct conf_ctx *ctx, config_t *cfg, int parsed, struct conf *c)
{
    if (!parsed) {
        /* At the end of the text libconfig counts the line after the last newline. */
        int line = config_error_line(cfg);
        if (line > (int)ctx->last_line)
            line = (int)ctx->last_line;
        snprintf(ctx->err, ctx->err_size, "%s:%d: %s", ctx->name, line, config_error_text(cfg));
        return -EINVAL;
    }
    struct conf fresh;
    int rc = conf_init_defaults(&fresh);
    if (rc == 0)
        rc = conf_apply_root(ctx, cfg, &fresh);
    if (rc == -ENOMEM)
        snprintf(ctx->err, ctx->err_size, "%s: out of memory", ctx->name);
    if (rc < 0) {
        conf_free(&fresh);
        return rc;
    }
    conf_free(c);
    *c = fresh;
    return 0;
}

/* What a file that is not a regular one is, for messages. */
static const char *conf_file_kind(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    return "of an unknown type";
}

/* Read the regular file at path into a NUL-terminated heap string. libconfig's own
 * reader exits the process on a read error (a directory, an I/O error), so echod reads
 * the file itself and hands libconfig only text. The path is stat'ed before it is
 * opened, and opened O_NONBLOCK: opening a FIFO for reading would wait for a writer
 * forever, and opening a device can have side effects. 0 or -errno with err set. */
static int conf_read_text(const char *path, char **out, char *err, size_t err_size)
{
    char *text = NULL;
    int fd = -1;
    struct stat st;
    int rc = stat(path, &st) != 0 ? -errno : 0;
    if (rc == 0 && S_ISREG(st.st_mode) &&
        ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0))
        rc = -errno; /* fstat again: the path may have been replaced in between */
    if (rc == 0 && !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        snprintf(err, err_size, "%s: is %s, not a regular file", path, conf_file_kind(st.st_mode));
        return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
    }
    if (rc == 0 && st.st_size > CONF_MAX_FILE_BYTES)
        rc = -EFBIG;
    if (rc == 0 && (text = malloc((size_t)st.st_size + 1)) == NULL)
        rc = -ENOMEM;
    size_t len = 0;
    while (rc == 0 && len < (size_t)st.st_size) {
        ssize_t n = read(fd, text + len, (size_t)st.st_size - len);
        if (n < 0 && errno != EINTR)
            rc = -errno;
        else if (n == 0)
            break; /* the file shrank while we read it: take what is there */
        else if (n > 0)
            len += (size_t)n;
    }
    if (rc == 0 && memchr(text, '\0', len) != NULL)
        rc = -EILSEQ;
    if (fd >= 0)
        close(fd);
    if (rc != 0) {
        free(text);
        snprintf(err, err_size, "%s: cannot read: %s", path,
                 rc == -EILSEQ ? "contains a NUL byte" : strerror(-rc));
        return rc;
    }
    text[len] = '\0';
    *out = text;
    return 0;
}

int conf_load_file(struct conf *c, const char *path, char *err, size_t err_size)
{
    char *text;
    int rc = conf_read_text(path, &text, err, err_size);
    if (rc != 0)
        return rc;
    rc = conf_load_string(c, text, path, err, err_size);
    free(text);
    return rc;
}

int conf_load_string(struct conf *c, const char *text, const char *name, char *err, size_t err_size)
{
    struct conf_token bad, key;
    if (conf_find_misread(text, &bad, &key)) {
        if (bad.kind == CONF_TOKEN_DIRECTIVE)
            snprintf(err, err_size, "%s:%u: %.*s: is not supported (echod reads one file)", name,
                     bad.line, bad.len, bad.start);
        else
            snprintf(err, err_size, "%s:%u: %.*s: %.*s %s", name, bad.line, key.len, key.start,
                     bad.len, bad.start,
                     bad.kind == CONF_TOKEN_NUL_ESCAPE ? "(a NUL byte) is not allowed in a string"
                                                       : "is out of range (integers are 32-bit)");
        return -EINVAL;
    }
    /* libconfig 1.5 reads a last line that is a # or // comment without a newline as a
     * syntax error: it gets the text ending in a newline, which moves no line. */
    size_t len = strlen(text);
    char *terminated = NULL;
    if (len > 0 && text[len - 1] != '\n') {
        if ((terminated = malloc(len + 2)) == NULL) {
            snprintf(err, err_size, "%s: out of memory", name);
            return -ENOMEM;
        }
        memcpy(terminated, text, len);
        memcpy(terminated + len, "\n", 2);
    }
    struct conf_ctx ctx = {name, text, err, err_size, 1};
    for (size_t i = 0; i + 1 < len; i++)
        ctx.last_line += text[i] == '\n';
    config_t cfg;
    config_init(&cfg);
    int parsed = config_read_string(&cfg, terminated ? terminated : text) == CONFIG_TRUE;
    int rc = conf_finish(&ctx, &cfg, parsed, c);
    config_destroy(&cfg);
    free(terminated);
    return rc;
}

unsigned conf_worker_count(const struct conf *c)
{
    if (c->workers > 0)
        return c->workers;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set) > CONF_MAX_WORKERS ? CONF_MAX_WORKERS : (unsigned)CPU_COUNT(&set);
    return 1;
}

static void conf_service_free(struct conf_service *svc)
{
    free(svc->listen);
    free(svc->greeting);
    template_free(&svc->greeting_template);
    svc->listen = NULL;
    svc->greeting = NULL;
    svc->listen_count = 0;
}

void conf_free(struct conf *c)
{
    free(c->tcp_proxy_from);
    c->tcp_proxy_from = NULL;
    c->tcp_proxy_from_count = 0;
    conf_service_free(&c->tcp);
    conf_service_free(&c->udp);
    free(c->instance);
    c->instance = NULL;
    free(c->metrics_listen);
    c->metrics_listen = NULL;
    c->metrics_listen_count = 0;
}
