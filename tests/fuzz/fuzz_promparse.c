/* fuzz_promparse: the readers echod-cli --stat applies to what a metrics endpoint sends.
 * promparse_parse_line on arbitrary bytes (exactly sized, no NUL: it must read within
 * len): a sample it accepts has a well-formed name, and written back out (name, labels as
 * given, value with %.17g, timestamp) it reads back as the very same sample; its first
 * label can be looked up and unescapes to no more than its raw length. promparse_each
 * yields no more samples than lines. scrape_parse_response either takes a 200 response
 * whose body ends the buffer or refuses it with a message. */
#include "config.h"

#include "fuzz.h"

#include "promparse.h"
#include "scrape.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fuzz_is_name_char(char c, int is_first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!is_first && c >= '0' && c <= '9');
}

static int fuzz_same_value(double a, double b)
{
    return (isnan(a) && isnan(b)) || (a == b && signbit(a) == signbit(b));
}

static void fuzz_count(const struct promparse_sample *s, void *arg)
{
    (void)s;
    ++*(size_t *)arg;
}

/* Write s back out as a line and read it again: the same sample. */
static void fuzz_round_trip(const struct promparse_sample *s)
{
    size_t size = s->name_len + s->labels_len + 128;
    char *line = malloc(size);
    if (line == NULL)
        return;
    /* memcpy, not %.*s: a label value may hold a NUL byte. */
    int n = (int)s->name_len;
    memcpy(line, s->name, s->name_len);
    if (s->labels) {
        line[n++] = '{';
        memcpy(line + n, s->labels, s->labels_len);
        n += (int)s->labels_len;
        line[n++] = '}';
    }
    n += snprintf(line + n, size - (size_t)n, " %.17g", s->value);
    if (s->has_timestamp)
        n += snprintf(line + n, size - (size_t)n, " %lld", (long long)s->timestamp_ms);
    FUZZ_ASSERT(n > 0 && (size_t)n < size);
    struct promparse_sample again;
    FUZZ_ASSERT(promparse_parse_line(line, (size_t)n, &again) == 1);
    FUZZ_ASSERT(again.name_len == s->name_len && memcmp(again.name, s->name, s->name_len) == 0);
    FUZZ_ASSERT((again.labels == NULL) == (s->labels == NULL));
    FUZZ_ASSERT(again.labels_len == s->labels_len);
    FUZZ_ASSERT(s->labels_len == 0 || memcmp(again.labels, s->labels, s->labels_len) == 0);
    FUZZ_ASSERT(fuzz_same_value(again.value, s->value));
    FUZZ_ASSERT(again.has_timestamp == s->has_timestamp);
    FUZZ_ASSERT(!s->has_timestamp || again.timestamp_ms == s->timestamp_ms);
    free(line);
}

/* The first label of s, by its name, unescapes to at most its raw length. */
static void fuzz_first_label(const struct promparse_sample *s)
{
    if (!s->labels)
        return;
    const char *p = s->labels, *end = s->labels + s->labels_len;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    const char *name = p;
    while (p < end && fuzz_is_name_char(*p, p == name) && *p != ':')
        p++;
    if (p == name)
        return; /* an empty label set */
    char label_name[256], value[4096];
    if ((size_t)(p - name) >= sizeof(label_name))
        return;
    memcpy(label_name, name, (size_t)(p - name));
    label_name[p - name] = '\0';
    int rc = promparse_label(s, label_name, value, sizeof(value));
    FUZZ_ASSERT(rc >= 0 || (rc == -ENOSPC && s->labels_len >= sizeof(value)));
    FUZZ_ASSERT(rc < 0 || (size_t)rc <= s->labels_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1); /* exactly sized: ASan sees any read past it */
    if (text == NULL)
        return 0;
    memcpy(text, data, size);

    struct promparse_sample s;
    int rc = promparse_parse_line(text, size, &s);
    FUZZ_ASSERT(rc == 1 || rc == 0 || rc == -EINVAL);
    if (rc == 1) {
        FUZZ_ASSERT(s.name >= text && s.name_len > 0 && s.name + s.name_len <= text + size);
        for (size_t i = 0; i < s.name_len; i++)
            FUZZ_ASSERT(fuzz_is_name_char(s.name[i], i == 0));
        FUZZ_ASSERT(!s.labels || (s.labels > text && s.labels + s.labels_len < text + size));
        fuzz_round_trip(&s);
        fuzz_first_label(&s);
    }

    size_t samples = 0, lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += text[i] == '\n';
    size_t refused = promparse_each(text, size, fuzz_count, &samples);
    FUZZ_ASSERT(samples + refused <= lines);

    struct scrape_response r = {0};
    r.buf = malloc(size + 1);
    if (r.buf) {
        memcpy(r.buf, data, size);
        r.buf[size] = '\0';
        r.len = size;
        r.cap = size + 1;
        rc = scrape_parse_response(&r);
        FUZZ_ASSERT(rc == 0 || rc == -EPROTO);
        if (rc == 0) {
            FUZZ_ASSERT(r.status == 200);
            FUZZ_ASSERT(r.body > r.buf && r.body + r.body_len == r.buf + r.len);
        } else {
            FUZZ_ASSERT(r.error[0] != '\0' && strlen(r.error) < sizeof(r.error));
        }
        scrape_response_free(&r);
    }
    free(text);
    return 0;
}
