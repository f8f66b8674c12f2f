/* histogram: a fixed-bucket histogram of durations (TCP connection lifetimes), one per
 * thread: the owning thread observes with relaxed atomics (no lock, no shared cache
 * line), any thread sums every copy, as stats.h does for counters. */
#ifndef ECHOD_HISTOGRAM_H
#define ECHOD_HISTOGRAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Upper bounds of the buckets, in ms, from 1 ms to an hour; one more bucket above. */
#define HISTOGRAM_BOUNDS_MS                                                                        \
    1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 30000, 60000, 300000, 900000, 1800000, 3600000
#define HISTOGRAM_BOUNDS  15
#define HISTOGRAM_BUCKETS (HISTOGRAM_BOUNDS + 1)

struct histogram {
    _Atomic uint64_t counts[HISTOGRAM_BUCKETS]; /* written by the owning thread only */
    _Atomic uint64_t sum_ms;                    /* likewise */
} __attribute__((aligned(64)));

/* What histogram_sum adds up: counts per bucket (not cumulative) and their sum. */
struct histogram_totals {
    uint64_t counts[HISTOGRAM_BUCKETS];
    uint64_t sum_ms;
};

/* Count one duration of ms milliseconds (owning thread). */
void histogram_observe_ms(struct histogram *h, uint64_t ms);
/* Sum `count` per-thread histograms into out (any thread). */
void histogram_sum(struct histogram *const *all, size_t count, struct histogram_totals *out);
/* The buckets' upper bounds in seconds, ascending, into out. */
void histogram_bounds_s(double out[HISTOGRAM_BOUNDS]);

#endif
