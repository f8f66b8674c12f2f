/* template: greeting templates compiled into segments (see template.h). Compiling runs
 * on the main thread at configuration time; binding when settings are built (main
 * thread) or a worker takes them up; rendering on the thread that serves the client.
 * Pure: no syscall, no global state; a template owns its text and segment array. */
#include "config.h"

#include "template.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

/* Longest {pid} and {worker}: a 32-bit number in decimal. */
#define TEMPLATE_NUMBER_MAX 10

static const char *const template_names[TEMPLATE_FIELD_COUNT] = {
    [TEMPLATE_HOST] = "host",     [TEMPLATE_INSTANCE] = "instance", [TEMPLATE_SERVER] = "server",
    [TEMPLATE_CLIENT] = "client", [TEMPLATE_PID] = "pid",           [TEMPLATE_WORKER] = "worker",
};

/* A template being built: text and segments grow as pieces are added. */
struct template_builder {
    struct template t;
    size_t text_cap, segments_cap;
};

/* Append a segment; 0 or -ENOMEM. */
static int template_add_segment(struct template_builder *b, struct template_segment seg)
{
    if (b->t.count == b->segments_cap) {
        size_t cap = b->segments_cap ? b->segments_cap * 2 : 4;
        struct template_segment *s = realloc(b->t.segments, cap * sizeof(*s));
        if (s == NULL)
            return -ENOMEM;
        b->t.segments = s;
        b->segments_cap = cap;
    }
    b->t.segments[b->t.count++] = seg;
    if (seg.field >= 0)
        b->t.fields |= TEMPLATE_BIT(seg.field);
    return 0;
}

/* Append literal bytes, merging with a literal segment just before; 0 or -ENOMEM. */
static int template_add_literal(struct template_builder *b, const char *p, size_t len)
{
    if (len == 0)
        return 0;
    if (b->t.text_len + len + 1 > b->text_cap) {
        size_t cap = (b->t.text_len + len + 1) * 2;
        char *text = realloc(b->t.text, cap);
        if (text == NULL)
            return -ENOMEM;
        b->t.text = text;
        b->text_cap = cap;
    }
    memcpy(b->t.text + b->t.text_len, p, len);
    size_t offset = b->t.text_len;
    b->t.text_len += len;
    b->t.text[b->t.text_len] = '\0';
    struct template_segment *last = b->t.count ? &b->t.segments[b->t.count - 1] : NULL;
    if (last && last->field < 0) {
        last->len += len;
        return 0;
    }
    return template_add_segment(b, (struct template_segment){-1, offset, len});
}

/* Append a placeholder; 0 or -ENOMEM. */
static int template_add_field(struct template_builder *b, int field)
{
    return template_add_segment(b, (struct template_segment){field, 0, 0});
}

/* The builder's template, with text allocated even when empty; 0 or -ENOMEM. */
static int template_finish(struct template_builder *b, struct template *out)
{
    if (b->t.text == NULL && (b->t.text = calloc(1, 1)) == NULL)
        return -ENOMEM;
    *out = b->t;
    return 0;
}

/* The field named name[0..len), or -1. */
static int template_field_of(const char *name, size_t len)
{
    for (int f = 0; f < TEMPLATE_FIELD_COUNT; f++)
        if (strlen(template_names[f]) == len && memcmp(template_names[f], name, len) == 0)
            return f;
    return -1;
}

int template_compile(const char *src, size_t len, struct template *out, char *err, size_t err_size)
{
    struct template_builder b = {0};
    int rc = 0;
    size_t i = 0;
    while (rc == 0 && i < len) {
        size_t run = 0;
        while (i + run < len && src[i + run] != '{' && src[i + run] != '}')
            run++;
        rc = template_add_literal(&b, src + i, run);
        i += run;
        if (rc < 0 || i == len)
            break;
        if (i + 1 < len && src[i + 1] == src[i]) { /* "{{" or "}}": one brace */
            rc = template_add_literal(&b, src + i, 1);
            i += 2;
            continue;
        }
        if (src[i] == '}') {
            snprintf(err, err_size, "unbalanced '}' at byte %zu (write }} for a literal brace)",
                     i + 1);
            rc = -EINVAL;
            break;
        }
        const char *close = memchr(src + i + 1, '}', len - i - 1);
        const char *open = memchr(src + i + 1, '{', len - i - 1);
        if (close == NULL || (open && open < close)) {
            snprintf(err, err_size, "unbalanced '{' at byte %zu (write {{ for a literal brace)",
                     i + 1);
            rc = -EINVAL;
            break;
        }
        size_t name_len = (size_t)(close - (src + i + 1));
        int field = template_field_of(src + i + 1, name_len);
        if (field < 0) {
            snprintf(err, err_size,
                     "unknown placeholder {%.*s} (known: {host} {instance} {server} {client} "
                     "{pid} {worker}; {{ and }} write a brace)",
                     (int)(name_len > 64 ? 64 : name_len), src + i + 1);
            rc = -EINVAL;
            break;
        }
        rc = template_add_field(&b, field);
        i += name_len + 2;
    }
    if (rc == 0)
        rc = template_finish(&b, out);
    if (rc == -ENOMEM)
        snprintf(err, err_size, "out of memory");
    if (rc < 0)
        template_free(&b.t);
    return rc;
}

int template_bind(const struct template *t, const struct template_values *v, struct template *out)
{
    struct template_builder b = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < t->count; i++) {
        const struct template_segment *s = &t->segments[i];
        if (s->field < 0)
            rc = template_add_literal(&b, t->text + s->offset, s->len);
        else if (v->v[s->field])
            rc = template_add_literal(&b, v->v[s->field], strlen(v->v[s->field]));
        else
            rc = template_add_field(&b, s->field);
    }
    if (rc == 0)
        rc = template_finish(&b, out);
    if (rc < 0)
        template_free(&b.t);
    return rc;
}

size_t template_render(const struct template *t, const struct template_values *v, char *buf,
                       size_t size)
{
    size_t len = 0;
    for (size_t i = 0; i < t->count; i++) {
        const struct template_segment *s = &t->segments[i];
        const char *p = s->field < 0 ? t->text + s->offset : v->v[s->field];
        size_t n = s->field < 0 ? s->len : p ? strlen(p) : 0;
        if (n > 0 && len < size) /* an unknown value (p NULL) writes nothing */
            memcpy(buf + len, p, len + n < size ? n : size - len);
        len += n;
    }
    if (size > 0)
        buf[len < size ? len : size - 1] = '\0';
    return len;
}

size_t template_max_len(const struct template *t, size_t instance_len)
{
    const size_t longest[TEMPLATE_FIELD_COUNT] = {
        [TEMPLATE_HOST] = TEMPLATE_HOST_MAX,  [TEMPLATE_INSTANCE] = instance_len,
        [TEMPLATE_SERVER] = ADDR_STRLEN - 1,  [TEMPLATE_CLIENT] = ADDR_STRLEN - 1,
        [TEMPLATE_PID] = TEMPLATE_NUMBER_MAX, [TEMPLATE_WORKER] = TEMPLATE_NUMBER_MAX,
    };
    size_t len = 0;
    for (size_t i = 0; i < t->count; i++)
        len += t->segments[i].field < 0 ? t->segments[i].len : longest[t->segments[i].field];
    return len;
}

void template_values_site(struct template_values *v, const char *worker,
                          const struct sockaddr *server, char *server_text,
                          const struct sockaddr *client, char *client_text)
{
    v->v[TEMPLATE_WORKER] = worker;
    v->v[TEMPLATE_SERVER] = NULL;
    v->v[TEMPLATE_CLIENT] = NULL;
    if (server) {
        addr_format(server, server_text, ADDR_STRLEN);
        v->v[TEMPLATE_SERVER] = server_text;
    }
    if (client) {
        addr_format(client, client_text, ADDR_STRLEN);
        v->v[TEMPLATE_CLIENT] = client_text;
    }
}

bool template_is_literal(const struct template *t)
{
    return t->fields == 0;
}

void template_free(struct template *t)
{
    free(t->text);
    free(t->segments);
    *t = (struct template){0};
}
