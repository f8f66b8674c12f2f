/* promtext: the Prometheus text exposition format 0.0.4, written into a growing buffer:
 * HELP and TYPE lines, samples, histograms, escaped as the format wants. Pure (no I/O,
 * no lock): the metrics endpoint's thread renders one scrape into one buffer. */
#ifndef ECHOD_PROMTEXT_H
#define ECHOD_PROMTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The Content-Type of the format. */
#define PROMTEXT_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct promtext {
    char *data; /* NUL-terminated text, len bytes; NULL until the first write */
    size_t len, cap;
    bool is_out_of_memory; /* a write failed: the text is incomplete */
};

/* An empty buffer. */
void promtext_init(struct promtext *t);
/* Free the text. */
void promtext_free(struct promtext *t);
/* "# HELP name help" (help with \ and newlines escaped) and "# TYPE name type". */
void promtext_family(struct promtext *t, const char *name, const char *type, const char *help);
/* One sample "name{labels} value"; labels is NULL, or pairs such as `worker="0"` whose
 * values went through promtext_escape_label. */
void promtext_uint(struct promtext *t, const char *name, const char *labels, uint64_t value);
void promtext_double(struct promtext *t, const char *name, const char *labels, double value);
/* A histogram's samples: name_bucket{le="B"} for each of the n upper bounds (ascending)
 * and le="+Inf", cumulative, then name_sum and name_count. counts[0..n] are the
 * observations in each bucket (not cumulative), the last one above every bound. */
void promtext_histogram(struct promtext *t, const char *name, const double *bounds,
                        const uint64_t *counts, size_t n, double sum);
/* value with \, " and newlines escaped as a label value wants, into buf (truncated to
 * size - 1 bytes, never in the middle of an escape). */
void promtext_escape_label(const char *value, char *buf, size_t size);

#endif
