/* histogram: per-thread bucket counts of durations, declared in histogram.h. The owner
 * (a worker, for its connections) observes with relaxed atomic stores; any thread (the
 * metrics endpoint's) sums the copies. Owns nothing beyond the structs it is given. */
#include "config.h"

#include "histogram.h"

static const uint64_t histogram_bounds_ms[HISTOGRAM_BOUNDS] = {HISTOGRAM_BOUNDS_MS};

/* Add n to an atomic only this thread writes. */
static void histogram_add(_Atomic uint64_t *v, uint64_t n)
{
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

void histogram_observe_ms(struct histogram *h, uint64_t ms)
{
    size_t b = 0;
    while (b < HISTOGRAM_BOUNDS && ms > histogram_bounds_ms[b])
        b++;
    histogram_add(&h->counts[b], 1);
    histogram_add(&h->sum_ms, ms);
}

void histogram_sum(struct histogram *const *all, size_t count, struct histogram_totals *out)
{
    *out = (struct histogram_totals){0};
    for (size_t i = 0; i < count; i++) {
        for (size_t b = 0; b < HISTOGRAM_BUCKETS; b++)
            out->counts[b] += atomic_load_explicit(&all[i]->counts[b], memory_order_relaxed);
        out->sum_ms += atomic_load_explicit(&all[i]->sum_ms, memory_order_relaxed);
    }
}

void histogram_bounds_s(double out[HISTOGRAM_BOUNDS])
{
    for (size_t b = 0; b < HISTOGRAM_BOUNDS; b++)
        out[b] = (double)histogram_bounds_ms[b] / 1000.0;
}
