/* hist: HdrHistogram's log-linear histogram, for echod-bench's latencies. Values below
 * sub_bucket_count (2048 for 3 digits) each have their own counter; above, bucket b holds
 * the values [1024 << b, 2048 << b) in 1024 sub-buckets of width 1 << b, so a value's
 * counter is at most 1/1024 of it wide. The counters are one array laid out as
 * HdrHistogram's (its counts index), which makes the .hgrm output match its own.
 * The caller's thread only: a histogram has no lock; merging is how threads combine. */
#include "config.h"

#include "hist.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* .hgrm: HdrHistogram's default of 5 reporting ticks per halving of the distance to 100 %. */
#define HIST_TICKS_PER_HALF 5

struct hist {
    uint64_t highest_value;
    unsigned significant_digits;
    unsigned sub_bucket_count_magnitude; /* sub_bucket_count = 1 << this */
    unsigned sub_bucket_half_count_magnitude;
    uint64_t sub_bucket_count;
    uint64_t sub_bucket_half_count;
    uint64_t sub_bucket_mask;
    unsigned bucket_count;
    size_t counts_len;
    uint64_t total;
    uint64_t max;
    uint64_t overflow;
    uint64_t counts[]; /* [counts_len] */
};

/* The bucket of value: 0 for values below sub_bucket_count, then one per doubling. */
static unsigned hist_bucket_index(const struct hist *h, uint64_t value)
{
    unsigned pow2_ceiling = 64u - (unsigned)__builtin_clzll(value | h->sub_bucket_mask);
    return pow2_ceiling - h->sub_bucket_count_magnitude;
}

static size_t hist_counts_index(const struct hist *h, uint64_t value)
{
    unsigned bucket = hist_bucket_index(h, value);
    uint64_t sub_bucket = value >> bucket;
    return ((size_t)(bucket + 1) << h->sub_bucket_half_count_magnitude) +
           (size_t)(sub_bucket - h->sub_bucket_half_count);
}

/* The lowest value counted at index. */
static uint64_t hist_value_at_index(const struct hist *h, size_t index)
{
    long bucket = (long)(index >> h->sub_bucket_half_count_magnitude) - 1;
    uint64_t sub_bucket = (index & (h->sub_bucket_half_count - 1)) + h->sub_bucket_half_count;
    if (bucket < 0) {
        sub_bucket -= h->sub_bucket_half_count;
        bucket = 0;
    }
    return sub_bucket << bucket;
}

/* How many values share value's counter. */
static uint64_t hist_range_size(const struct hist *h, uint64_t value)
{
    unsigned bucket = hist_bucket_index(h, value);
    uint64_t sub_bucket = value >> bucket;
    if (sub_bucket >= h->sub_bucket_count)
        bucket++;
    return (uint64_t)1 << bucket;
}

static uint64_t hist_lowest_equivalent(const struct hist *h, uint64_t value)
{
    unsigned bucket = hist_bucket_index(h, value);
    return (value >> bucket) << bucket;
}

static uint64_t hist_highest_equivalent(const struct hist *h, uint64_t value)
{
    return hist_lowest_equivalent(h, value) + hist_range_size(h, value) - 1;
}

static uint64_t hist_median_equivalent(const struct hist *h, uint64_t value)
{
    return hist_lowest_equivalent(h, value) + (hist_range_size(h, value) >> 1);
}

/* What a percentile query or the spectrum reports for the counter at index. */
static uint64_t hist_reported_value(const struct hist *h, size_t index)
{
    uint64_t v = hist_highest_equivalent(h, hist_value_at_index(h, index));
    return v < h->max ? v : h->max;
}

struct hist *hist_create(uint64_t highest_value, unsigned significant_digits)
{
    if (significant_digits < 1 || significant_digits > 5 || highest_value < 2) {
        errno = EINVAL;
        return NULL;
    }
    uint64_t largest_single_unit = 2;
    for (unsigned i = 0; i < significant_digits; i++)
        largest_single_unit *= 10;
    unsigned magnitude = 0;
    while (((uint64_t)1 << magnitude) < largest_single_unit)
        magnitude++;
    /* Buckets until the first value beyond them is above highest_value. */
    unsigned buckets = 1;
    uint64_t smallest_untrackable = (uint64_t)1 << magnitude;
    while (smallest_untrackable <= highest_value) {
        if (smallest_untrackable > INT64_MAX / 2) {
            buckets++;
            break;
        }
        smallest_untrackable <<= 1;
        buckets++;
    }
    size_t len = (size_t)(buckets + 1) << (magnitude - 1);
    struct hist *h = calloc(1, sizeof(*h) + len * sizeof(h->counts[0]));
    if (h == NULL)
        return NULL;
    h->highest_value = highest_value;
    h->significant_digits = significant_digits;
    h->sub_bucket_count_magnitude = magnitude;
    h->sub_bucket_half_count_magnitude = magnitude - 1;
    h->sub_bucket_count = (uint64_t)1 << magnitude;
    h->sub_bucket_half_count = h->sub_bucket_count / 2;
    h->sub_bucket_mask = h->sub_bucket_count - 1;
    h->bucket_count = buckets;
    h->counts_len = len;
    return h;
}

void hist_free(struct hist *h)
{
    free(h);
}

void hist_reset(struct hist *h)
{
    memset(h->counts, 0, h->counts_len * sizeof(h->counts[0]));
    h->total = h->max = h->overflow = 0;
}

int hist_record(struct hist *h, uint64_t value)
{
    int rc = 0;
    if (value > h->max)
        h->max = value;
    if (value > h->highest_value) {
        h->overflow++;
        value = h->highest_value;
        rc = -ERANGE;
    }
    h->counts[hist_counts_index(h, value)]++;
    h->total++;
    return rc;
}

int hist_merge(struct hist *into, const struct hist *from)
{
    if (into->counts_len != from->counts_len ||
        into->significant_digits != from->significant_digits ||
        into->highest_value != from->highest_value)
        return -EINVAL;
    for (size_t i = 0; i < from->counts_len; i++)
        into->counts[i] += from->counts[i];
    into->total += from->total;
    into->overflow += from->overflow;
    if (from->max > into->max)
        into->max = from->max;
    return 0;
}

uint64_t hist_count(const struct hist *h)
{
    return h->total;
}

uint64_t hist_max(const struct hist *h)
{
    return h->max;
}

uint64_t hist_overflow_count(const struct hist *h)
{
    return h->overflow;
}

uint64_t hist_percentile(const struct hist *h, double percentile)
{
    if (h->total == 0)
        return 0;
    /* As HdrHistogram: the rank is rounded up, after nudging the percentile down by one
     * ulp so that 99.9 % of 1000 values is rank 999 even where 99.9 / 100 * 1000 is
     * 999.0000000000001. */
    double p = nextafter(percentile, 0.0);
    p = p < 0.0 ? 0.0 : p > 100.0 ? 100.0 : p;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->total);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < h->counts_len; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            if (percentile <= 0.0)
                return hist_lowest_equivalent(h, hist_value_at_index(h, i));
            return hist_reported_value(h, i);
        }
    }
    return h->max;
}

double hist_mean(const struct hist *h)
{
    if (h->total == 0)
        return 0.0;
    double sum = 0.0;
    for (size_t i = 0; i < h->counts_len; i++)
        if (h->counts[i] != 0)
            sum +=
                (double)hist_median_equivalent(h, hist_value_at_index(h, i)) * (double)h->counts[i];
    return sum / (double)h->total;
}

double hist_stddev(const struct hist *h)
{
    if (h->total == 0)
        return 0.0;
    double mean = hist_mean(h), sum = 0.0;
    for (size_t i = 0; i < h->counts_len; i++) {
        if (h->counts[i] == 0)
            continue;
        double d = (double)hist_median_equivalent(h, hist_value_at_index(h, i)) - mean;
        sum += d * d * (double)h->counts[i];
    }
    return sqrt(sum / (double)h->total);
}

/* The next percentile the spectrum reports after level: HdrHistogram's
 * PercentileIterator steps by 100 / ticks, with ticks doubling each time the distance to
 * 100 % halves. The arithmetic is its own, log(x) / log(2) included, so that the levels
 * land on the same doubles. */
static double hist_next_level(double level)
{
    double halvings = log(100.0 / (100.0 - level)) / log(2.0);
    if (!(halvings < 61.0)) /* at (or rounded to) 100 %: nothing further */
        return 100.0;
    long long ticks = HIST_TICKS_PER_HALF * (1ll << ((long long)halvings + 1));
    return level + 100.0 / (double)ticks;
}

int hist_write_hgrm(const struct hist *h, FILE *out, double value_scale)
{
    int digits = (int)h->significant_digits;
    fprintf(out, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount",
            "1/(1-Percentile)");
    /* HdrHistogram's percentile iteration: walk the counters; each time the running
     * count reaches the next level, print a line (several levels may fall on one
     * counter); once every value is counted, one last line at 100 %. */
    double level = 0.0;
    uint64_t seen = 0;
    size_t i = 0;
    bool is_fresh = true, is_last = false;
    while (h->total > 0) {
        if (seen >= h->total) {
            if (is_last)
                break;
            level = 100.0;
            is_last = true;
        }
        for (; i < h->counts_len; i++, is_fresh = true) {
            if (is_fresh)
                seen += h->counts[i];
            is_fresh = false;
            if (h->counts[i] != 0 && 100.0 * (double)seen / (double)h->total >= level)
                break;
        }
        if (i == h->counts_len)
            break;
        double value = (double)hist_reported_value(h, i) / value_scale;
        if (level < 100.0)
            fprintf(out, "%12.*f %2.12f %10llu %14.2f\n", digits, value, level / 100.0,
                    (unsigned long long)seen, 1.0 / (1.0 - level / 100.0));
        else
            fprintf(out, "%12.*f %2.12f %10llu\n", digits, value, level / 100.0,
                    (unsigned long long)seen);
        level = hist_next_level(level);
    }
    double scale = value_scale;
    fprintf(out, "#[Mean    = %12.*f, StdDeviation   = %12.*f]\n", digits, hist_mean(h) / scale,
            digits, hist_stddev(h) / scale);
    fprintf(out, "#[Max     = %12.*f, Total count    = %12llu]\n", digits, (double)h->max / scale,
            (unsigned long long)h->total);
    fprintf(out, "#[Buckets = %12u, SubBuckets     = %12llu]\n", h->bucket_count,
            (unsigned long long)h->sub_bucket_count);
    fflush(out);
    return ferror(out) ? -EIO : 0;
}
