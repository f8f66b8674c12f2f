/* promparse: a reader of the Prometheus text exposition format 0.0.4, one line at a time:
 * a sample's name, its labels and its value (and timestamp); comments, HELP and TYPE
 * lines and blank lines are skipped, and a line that is none of these is refused rather
 * than guessed at. Pure functions, any thread; samples point into the caller's text. */
#ifndef ECHOD_PROMPARSE_H
#define ECHOD_PROMPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One sample line: `name{label="value",...} value [timestamp_ms]`. */
struct promparse_sample {
    const char *name; /* into the line, not NUL-terminated */
    size_t name_len;
    const char *labels; /* between the braces, escapes as written; NULL without braces */
    size_t labels_len;
    double value; /* NaN, +Inf and -Inf included */
    bool has_timestamp;
    int64_t timestamp_ms;
};

/* Read one line, without its '\n' (a trailing '\r' is allowed): 1 and *out for a sample,
 * 0 for a blank line or a comment, -EINVAL for anything else. */
int promparse_parse_line(const char *line, size_t len, struct promparse_sample *out);
/* Whether the sample's name is exactly name. */
bool promparse_is_named(const struct promparse_sample *s, const char *name);
/* The value of the sample's label `name`, unescaped and NUL-terminated, into out: its
 * length, -ENOENT if the sample has no such label, -ENOSPC if it does not fit in size. */
int promparse_label(const struct promparse_sample *s, const char *name, char *out, size_t size);
/* Call each(sample, arg) for every sample line of text[0..len), in order; returns how
 * many lines were refused (and skipped). */
size_t promparse_each(const char *text, size_t len,
                     void (*each)(const struct promparse_sample *s, void *arg), void *arg);

#endif
