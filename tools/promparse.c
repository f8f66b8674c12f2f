/* promparse: reads the Prometheus text exposition format 0.0.4 line by line, as
 * `echod-cli --stat` reads echod's metrics endpoint. A sample line is a metric name,
 * optional labels in braces (values quoted, with \\, \" and \n escapes), a value as Go's
 * ParseFloat writes it (NaN, +Inf, 1.5e+06, ...) and an optional timestamp in
 * milliseconds. Lenient where the format is (spaces around labels, a trailing comma),
 * strict where a wrong guess would misread a figure. Pure; any thread; owns nothing. */
#include "config.h"

#include "promparse.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The longest value or timestamp token read; Go writes at most 24 characters. */
#define PROMPARSE_MAX_NUMBER_CHARS 64

/* One label of a sample: its name and its value as written, between the quotes. */
struct promparse_pair {
    const char *name;
    size_t name_len;
    const char *raw_value;
    size_t raw_value_len;
};

static bool promparse_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool promparse_is_name_char(char c, bool is_first, bool is_metric)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
        return true;
    if (c == ':')
        return is_metric;
    return !is_first && c >= '0' && c <= '9';
}

static const char *promparse_skip_blanks(const char *p, const char *end)
{
    while (p < end && promparse_is_blank(*p))
        p++;
    return p;
}

/* Past a metric or label name at p: its end (p itself when there is none). */
static const char *promparse_scan_name(const char *p, const char *end, bool is_metric)
{
    const char *start = p;
    while (p < end && promparse_is_name_char(*p, p == start, is_metric))
        p++;
    return p;
}

/* Read the label at *p inside braces that end before `end` (blanks allowed around its
 * parts, and a comma after it): 1 and *out, with *p past it; 0 at the closing brace,
 * with *p on it; -EINVAL for anything else. */
static int promparse_next_pair(const char **p, const char *end, struct promparse_pair *out)
{
    const char *q = promparse_skip_blanks(*p, end);
    if (q < end && *q == '}') {
        *p = q;
        return 0;
    }
    const char *name_end = promparse_scan_name(q, end, false);
    if (name_end == q)
        return -EINVAL;
    out->name = q;
    out->name_len = (size_t)(name_end - q);
    q = promparse_skip_blanks(name_end, end);
    if (q >= end || *q != '=')
        return -EINVAL;
    q = promparse_skip_blanks(q + 1, end);
    if (q >= end || *q != '"')
        return -EINVAL;
    out->raw_value = ++q;
    for (;; q++) {
        if (q >= end)
            return -EINVAL; /* no closing quote */
        if (*q == '"')
            break;
        if (*q == '\\') {
            if (q + 1 >= end || (q[1] != '\\' && q[1] != '"' && q[1] != 'n'))
                return -EINVAL;
            q++;
        }
    }
    out->raw_value_len = (size_t)(q - out->raw_value);
    q = promparse_skip_blanks(q + 1, end);
    if (q < end && *q == ',')
        q++;
    else if (q >= end || *q != '}')
        return -EINVAL;
    *p = q;
    return 1;
}

/* Read the number token text[0..len), the whole of it: a float as Go's ParseFloat
 * writes it (strtod's syntax: NaN, +Inf, 1.5e+06) into *value, or, when value is NULL,
 * a decimal int64 into *timestamp_ms. 0 or -EINVAL. */
static int promparse_parse_number(const char *text, size_t len, double *value, int64_t *timestamp_ms)
{
    char buf[PROMPARSE_MAX_NUMBER_CHARS];
    if (len == 0 || len >= sizeof(buf) || promparse_is_blank(text[0]))
        return -EINVAL;
    memcpy(buf, text, len);
    buf[len] = '\0';
    char *stop;
    errno = 0;
    bool is_out_of_range; /* as Go: a float overflows to Inf, not to 0 or a subnormal */
    if (value) {
        *value = strtod(buf, &stop);
        is_out_of_range = errno == ERANGE && isinf(*value);
    } else {
        *timestamp_ms = strtoll(buf, &stop, 10);
        is_out_of_range = errno == ERANGE;
    }
    return *stop != '\0' || is_out_of_range ? -EINVAL : 0;
}

/* The token at p: its end, at the first blank or at end. */
static const char *promparse_token_end(const char *p, const char *end)
{
    while (p < end && !promparse_is_blank(*p))
        p++;
    return p;
}

int promparse_parse_line(const char *line, size_t len, struct promparse_sample *out)
{
    const char *end = line + len;
    if (end > line && end[-1] == '\r')
        end--;
    const char *p = promparse_skip_blanks(line, end);
    if (p == end || *p == '#')
        return 0;
    struct promparse_sample s = {.name = p};
    p = promparse_scan_name(p, end, true);
    s.name_len = (size_t)(p - s.name);
    if (s.name_len == 0)
        return -EINVAL;
    p = promparse_skip_blanks(p, end);
    if (p < end && *p == '{') {
        s.labels = ++p;
        struct promparse_pair pair;
        int rc;
        while ((rc = promparse_next_pair(&p, end, &pair)) > 0)
            ;
        if (rc < 0)
            return -EINVAL;
        s.labels_len = (size_t)(p - s.labels);
        p = promparse_skip_blanks(p + 1, end);
    } else if (p == s.name + s.name_len) {
        return -EINVAL; /* the name runs into something that is not a name */
    }
    const char *value_end = promparse_token_end(p, end);
    if (promparse_parse_number(p, (size_t)(value_end - p), &s.value, NULL) < 0)
        return -EINVAL;
    p = promparse_skip_blanks(value_end, end);
    if (p < end) {
        const char *stamp_end = promparse_token_end(p, end);
        if (promparse_parse_number(p, (size_t)(stamp_end - p), NULL, &s.timestamp_ms) < 0)
            return -EINVAL;
        s.has_timestamp = true;
        if (promparse_skip_blanks(stamp_end, end) != end)
            return -EINVAL;
    }
    *out = s;
    return 1;
}

bool promparse_is_named(const struct promparse_sample *s, const char *name)
{
    return strlen(name) == s->name_len && memcmp(s->name, name, s->name_len) == 0;
}

int promparse_label(const struct promparse_sample *s, const char *name, char *out, size_t size)
{
    if (!s->labels)
        return -ENOENT;
    const char *p = s->labels, *end = s->labels + s->labels_len + 1; /* with its '}' */
    struct promparse_pair pair;
    while (promparse_next_pair(&p, end, &pair) > 0) {
        if (pair.name_len != strlen(name) || memcmp(pair.name, name, pair.name_len) != 0)
            continue;
        size_t n = 0;
        for (size_t i = 0; i < pair.raw_value_len; i++, n++) {
            char c = pair.raw_value[i];
            if (c == '\\')
                c = pair.raw_value[++i] == 'n' ? '\n' : pair.raw_value[i];
            if (n + 1 >= size)
                return -ENOSPC;
            out[n] = c;
        }
        if (size == 0)
            return -ENOSPC;
        out[n] = '\0';
        return (int)n;
    }
    return -ENOENT;
}

size_t promparse_each(const char *text, size_t len,
                     void (*each)(const struct promparse_sample *s, void *arg), void *arg)
{
    size_t refused = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        struct promparse_sample s;
        int rc = promparse_parse_line(p, (size_t)(line_end - p), &s);
        if (rc > 0)
            each(&s, arg);
        else if (rc < 0)
            refused++;
        p = nl ? nl + 1 : end;
    }
    return refused;
}
