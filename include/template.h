/* template: greeting templates. A greeting such as "{instance}@{host} saw {client}: " is
 * compiled once, at configuration time, into literal segments and placeholders; values
 * known early are bound in (template_bind), and what is left is rendered where the
 * values become known (per worker, per connection, per datagram). "{{" and "}}" write a
 * literal brace. Pure functions over caller-owned memory; any thread. */
#ifndef ECHOD_TEMPLATE_H
#define ECHOD_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

struct sockaddr;

enum template_field {
    TEMPLATE_HOST,     /* {host}: gethostname at start-up and reload */
    TEMPLATE_INSTANCE, /* {instance}: the instance key */
    TEMPLATE_SERVER,   /* {server}: the local ADDR:PORT the client reached */
    TEMPLATE_CLIENT,   /* {client}: the client's ADDR:PORT */
    TEMPLATE_PID,      /* {pid} */
    TEMPLATE_WORKER,   /* {worker}: the worker's index, "udp" for the UDP thread */
    TEMPLATE_FIELD_COUNT
};

/* The bit of a field in template.fields. */
#define TEMPLATE_BIT(field) (1u << (field))
/* The fields that differ from one TCP connection (or UDP datagram) to the next. */
#define TEMPLATE_PER_CLIENT (TEMPLATE_BIT(TEMPLATE_SERVER) | TEMPLATE_BIT(TEMPLATE_CLIENT))
/* Longest {host}: HOST_NAME_MAX. */
#define TEMPLATE_HOST_MAX 64

/* One piece of a compiled template: literal bytes of text, or a placeholder. */
struct template_segment {
    int field;     /* an enum template_field, or -1 for literal bytes */
    size_t offset; /* literal: where its bytes start in text */
    size_t len;    /* literal: how many */
};

struct template
{
    char *text; /* the literal bytes, braces unescaped, NUL-terminated */
    size_t text_len;
    struct template_segment *segments;
    size_t count;
    unsigned fields; /* TEMPLATE_BIT of every placeholder it holds */
};

/* What the placeholders stand for; NULL for a value not known yet (left in by
 * template_bind, rendered as nothing by template_render). */
struct template_values {
    const char *v[TEMPLATE_FIELD_COUNT];
};

/* Compile src[0..len) into *out. 0; -EINVAL with err saying what is wrong ("unknown
 * placeholder {foo}", "unbalanced '{' at byte 3"); or -ENOMEM. */
int template_compile(const char *src, size_t len, struct template *out, char *err, size_t err_size);
/* A copy of t with every field that v knows replaced by its value; 0 or -ENOMEM. */
int template_bind(const struct template *t, const struct template_values *v, struct template *out);
/* Write t with v's values into buf (size bytes, NUL-terminated when size > 0); returns
 * the rendered length, which may exceed size - 1 (the text is then cut short). */
size_t template_render(const struct template *t, const struct template_values *v, char *buf,
                       size_t size);
/* The longest rendering of t whatever the values: each placeholder at its longest
 * ({instance} at instance_len bytes, {host} TEMPLATE_HOST_MAX, an address as
 * addr_format writes it, {pid} and {worker} 10 digits). */
size_t template_max_len(const struct template *t, size_t instance_len);
/* v with {server}, {client} and {worker} filled in, formatted into the caller's
 * buffers (each ADDR_STRLEN bytes); a NULL address stays unknown. */
void template_values_site(struct template_values *v, const char *worker,
                          const struct sockaddr *server, char *server_text,
                          const struct sockaddr *client, char *client_text);
/* Whether t holds no placeholder: its text is the whole greeting. */
bool template_is_literal(const struct template *t);
/* Release what t owns (a zeroed template is fine). */
void template_free(struct template *t);

#endif
