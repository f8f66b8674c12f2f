/* hist: a log-linear latency histogram of HdrHistogram's design (significant digits,
 * buckets of doubling width split into equal sub-buckets), with HdrHistogram's .hgrm
 * percentile spectrum. A histogram belongs to one thread; hist_merge combines them. */
#ifndef ECHOD_HIST_H
#define ECHOD_HIST_H

#include <stdint.h>
#include <stdio.h>

/* An hour in microseconds: the range echod-bench records latencies over. */
#define HIST_HOUR_US 3600000000ull

struct hist;

/* A histogram of values 0..highest_value with significant_digits (1-5) decimal digits of
 * precision: every value is counted in a bucket no wider than 10^-digits of it, or 1.
 * NULL with errno EINVAL (bad arguments) or ENOMEM. */
struct hist *hist_create(uint64_t highest_value, unsigned significant_digits);
void hist_free(struct hist *h);
/* Forget every recorded value. */
void hist_reset(struct hist *h);

/* Count value once; 0, or -ERANGE when it is above the highest value: it is then counted
 * in the top bucket, kept exactly as the max, and counted by hist_overflow_count. */
int hist_record(struct hist *h, uint64_t value);
/* Add every count of from into into; 0, or -EINVAL when their ranges or precision differ. */
int hist_merge(struct hist *into, const struct hist *from);

/* How many values were recorded. */
uint64_t hist_count(const struct hist *h);
/* The largest value recorded, exactly (0 when none). */
uint64_t hist_max(const struct hist *h);
/* How many recorded values were above the highest value. */
uint64_t hist_overflow_count(const struct hist *h);
/* The value at or below which percentile (0-100) of the values fall, as HdrHistogram
 * gives it (the top of that value's bucket) but never above hist_max; 0 when empty. */
uint64_t hist_percentile(const struct hist *h, double percentile);
/* The mean and the standard deviation, each value taken as the middle of its bucket. */
double hist_mean(const struct hist *h);
double hist_stddev(const struct hist *h);

/* Write the percentile spectrum in HdrHistogram's .hgrm text layout (its
 * outputPercentileDistribution with 5 ticks per half distance), each value divided by
 * value_scale (1000 for µs recorded, ms printed); 0 or -errno. */
int hist_write_hgrm(const struct hist *h, FILE *out, double value_scale);

#endif
