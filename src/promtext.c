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
    size_t cap = t->cap ? t->cap : 16384; /* a scrape of echod is about 9 KiB */
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

/* Append len bytes. */
static void promtext_append(struct promtext *t, const char *data, size_t len)
{
    if (!promtext_reserve(t, len))
        return;
    memcpy(t->data + t->len, data, len);
    t->len += len;
    t->data[t->len] = '\0';
}

/* Append a formatted line: formatted once in place when it fits the room there is
 * (a scrape is a few hundred such lines, so this is its cost), else again after
 * growing. */
__attribute__((format(printf, 2, 3))) static void promtext_printf(struct promtext *t,
                                                                  const char *fmt, ...)
{
    if (!promtext_reserve(t, 128))
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->data + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->data[t->len] = '\0';
        return;
    }
    if ((size_t)n >= t->cap - t->len) {
        if (!promtext_reserve(t, (size_t)n)) {
            t->data[t->len] = '\0';
            return;
        }
        va_start(ap, fmt);
        vsnprintf(t->data + t->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    t->len += (size_t)n;
}

/* Append text with each byte of `special` escaped: newline as \n, others after a \. */
static void promtext_escaped(struct promtext *t, const char *text, const char *special)
{
    while (*text) {
        size_t plain = strcspn(text, special);
        promtext_append(t, text, plain);
        text += plain;
        if (*text) {
            char escape[2] = {'\\', *text == '\n' ? 'n' : *text};
            promtext_append(t, escape, 2);
            text++;
        }
    }
}

/* Append a NUL-terminated string. */
static void promtext_puts(struct promtext *t, const char *text)
{
    promtext_append(t, text, strlen(text));
}

void promtext_family(struct promtext *t, const char *name, const char *type, const char *help)
{
    promtext_puts(t, "# HELP ");
    promtext_puts(t, name);
    promtext_puts(t, " ");
    promtext_escaped(t, help, "\\\n");
    promtext_puts(t, "\n# TYPE ");
    promtext_puts(t, name);
    promtext_puts(t, " ");
    promtext_puts(t, type);
    promtext_puts(t, "\n");
}

/* "name" or "name{labels}", then a space. */
static void promtext_series(struct promtext *t, const char *name, const char *labels)
{
    promtext_puts(t, name);
    if (labels && *labels) {
        promtext_puts(t, "{");
        promtext_puts(t, labels);
        promtext_puts(t, "}");
    }
    promtext_puts(t, " ");
}

/* Append value in decimal and a newline (a scrape writes a hundred of them). */
static void promtext_uint_line(struct promtext *t, uint64_t value)
{
    char digits[24];
    size_t n = sizeof(digits);
    digits[--n] = '\n';
    do {
        digits[--n] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0);
    promtext_append(t, digits + n, sizeof(digits) - n);
}

void promtext_uint(struct promtext *t, const char *name, const char *labels, uint64_t value)
{
    promtext_series(t, name, labels);
    promtext_uint_line(t, value);
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
    promtext_puts(t, text);
    promtext_puts(t, "\n");
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
