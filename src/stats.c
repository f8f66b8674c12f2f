/* stats: names and sums of the per-thread event counters declared in stats.h.
 * Writers are the owning threads (relaxed atomics); any thread may sum and format. */
#include "config.h"

#include "stats.h"

#include <inttypes.h>
#include <stdio.h>

static const char *const stats_names[] = {
#define STATS_NAME(name, help) #name,
    STATS_COUNTERS(STATS_NAME)
#undef STATS_NAME
};

static const char *const stats_helps[] = {
#define STATS_HELP(name, help) help,
    STATS_COUNTERS(STATS_HELP)
#undef STATS_HELP
};

void stats_sum(struct stats *const *all, size_t count, uint64_t out[STAT_COUNT])
{
    for (int c = 0; c < STAT_COUNT; c++)
        out[c] = 0;
    for (size_t i = 0; i < count; i++)
        for (int c = 0; c < STAT_COUNT; c++)
            out[c] += atomic_load_explicit(&all[i]->v[c], memory_order_relaxed);
}

const char *stats_name(enum stats_counter c)
{
    return stats_names[c];
}

const char *stats_help(enum stats_counter c)
{
    return stats_helps[c];
}

size_t stats_format(const uint64_t v[STAT_COUNT], char *buf, size_t size)
{
    size_t n = 0;
    if (size > 0)
        buf[0] = '\0';
    for (int c = 0; c < STAT_COUNT && n < size; c++) {
        int w = snprintf(buf + n, size - n, "%s%s=%" PRIu64, c ? " " : "", stats_names[c], v[c]);
        if (w < 0)
            break;
        n += (size_t)w;
    }
    return n < size ? n : size - 1;
}
