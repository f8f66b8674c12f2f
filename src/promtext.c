/* promtext: writes the Prometheus text exposition format 0.0.4 (the format every
 * Prometheus server scrapes) into a buffer that grows as needed. Runs on whichever
 * thread renders a scrape; owns only its buffer. Numbers are written so that the
 * format's parser reads them back exactly: integers as integers, other values with 17
 * significant digits (shortest first), infinities as +Inf and -Inf. */
#include "config.h"

#include "promtext.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void promtext_init(struct promtext *t)
{
    *t = (struct promtext){0};
}

void promtext_free(struct promtext *t)
{
    free(t->data);
    promtext_init(t);
}

/* Make room for `more` bytes and the NUL; false (and is_out_of_memory) when it cannot. */
static bool promtext_reserve(struct promtext *t, size_t more)
{
    if (t->is_out_of_memory)
        return false;
    if (t->len + more + 1 <= t->cap)
        return true;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + more + 1)
        cap *= 2;
    char *data = realloc(t->data, cap);
    if (data == NULL) {
        t->is_out_of_memory = true;
        return false;
    }
    t->data = data;
    t->cap = cap;
    return true;
}

__attribute__((format(printf, 2, 3))) static void promtext_printf(struct promtext *t,
                                                                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !promtext_reserve(t, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(t->data + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* Append text with each byte of `special` escaped: newline as \n, others after a \. */
static void promtext_escaped(struct promtext *t, const char *text, const char *special)
{
    for (const char *p = text; *p; p++) {
        if (strchr(special, *p) == NULL)
            promtext_printf(t, "%c", *p);
        else
            promtext_printf(t, "\\%c", *p == '\n' ? 'n' : *p);
    }
}

void promtext_family(struct promtext *t, const char *name, const char *type, const char *help)
{
    promtext_printf(t, "# HELP %s ", name);
    promtext_escaped(t, help, "\\\n");
    promtext_printf(t, "\n# TYPE %s %s\n", name, type);
}

/* "name" or "name{labels}", then a space. */
static void promtext_series(struct promtext *t, const char *name, const char *labels)
{
    if (labels && *labels)
        promtext_printf(t, "%s{%s} ", name, labels);
    else
        promtext_printf(t, "%s ", name);
}

void promtext_uint(struct promtext *t, const char *name, const char *labels, uint64_t value)
{
    promtext_series(t, name, labels);
    promtext_printf(t, "%" PRIu64 "\n", value);
}

/* value as the format writes it into buf. */
static void promtext_format_double(double value, char *buf, size_t size)
{
    if (isnan(value)) {
        snprintf(buf, size, "NaN");
    } else if (isinf(value)) {
        snprintf(buf, size, "%sInf", value > 0 ? "+" : "-");
    } else {
        snprintf(buf, size, "%.15g", value); /* the shortest that reads back exactly */
        if (strtod(buf, NULL) != value)
            snprintf(buf, size, "%.17g", value);
    }
}

void promtext_double(struct promtext *t, const char *name, const char *labels, double value)
{
    char text[64];
    promtext_format_double(value, text, sizeof(text));
    promtext_series(t, name, labels);
    promtext_printf(t, "%s\n", text);
}

void promtext_histogram(struct promtext *t, const char *name, const double *bounds,
                        const uint64_t *counts, size_t n, double sum)
{
    uint64_t total = 0;
    for (size_t i = 0; i <= n; i++) {
        char le[64];
        promtext_format_double(i < n ? bounds[i] : INFINITY, le, sizeof(le));
        total += counts[i];
        promtext_printf(t, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name, le, total);
    }
    char text[64];
    promtext_format_double(sum, text, sizeof(text));
    promtext_printf(t, "%s_sum %s\n%s_count %" PRIu64 "\n", name, text, name, total);
}

void promtext_escape_label(const char *value, char *buf, size_t size)
{
    size_t n = 0;
    for (const char *p = value; *p && size > 0; p++) {
        bool is_special = *p == '\\' || *p == '"' || *p == '\n';
        if (n + 1 + is_special >= size)
            break;
        if (is_special)
            buf[n++] = '\\';
        buf[n++] = *p == '\n' ? 'n' : *p;
    }
    if (size > 0)
        buf[n] = '\0';
}
