/* droplog: the rate-limited refusal log. Run only by the thread that owns the struct
 * droplog (the UDP thread for the guard's drops, the acceptor for refused connections);
 * nothing locks. Counting a refusal is a few stores and no syscall; the owner's event
 * loop calls droplog_flush and sleeps at most until the next line is due. */
#include "config.h"

#include "droplog.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "log.h"

void droplog_init(struct droplog *d, const char *what, const char *unit,
                  const char *(*describe)(unsigned reason), uint64_t interval_ms)
{
    memset(d, 0, sizeof(*d));
    d->what = what;
    d->unit = unit;
    d->describe = describe;
    d->interval_ms = interval_ms;
}

void droplog_note(struct droplog *d, unsigned reason, const struct sockaddr *sa, socklen_t len,
                  uint64_t now_ms)
{
    struct droplog_reason *r = &d->r[reason];
    if (r->count++ == 0)
        r->first_ms = now_ms;
    d->has_drops = true;
    size_t n = sa == NULL ? 0 : len < sizeof(r->last) ? len : sizeof(r->last);
    memset(&r->last, 0, sizeof(r->last));
    if (n > 0)
        memcpy(&r->last, sa, n);
}

/* Write the line for one reason and start counting it afresh. */
static void droplog_write(struct droplog *d, unsigned reason, uint64_t now_ms)
{
    struct droplog_reason *r = &d->r[reason];
    char from[ADDR_STRLEN + 16] = "";
    if (r->last.ss_family != AF_UNSPEC) {
        char addr[ADDR_STRLEN];
        addr_format((const struct sockaddr *)&r->last, addr, sizeof(addr));
        snprintf(from, sizeof(from), " (last from %s)", addr);
    }
    uint64_t span_ms = now_ms > r->first_ms ? now_ms - r->first_ms : 0;
    log_warn("%s %llu %s%s in the last %llu.%llu s: %s%s", d->what, (unsigned long long)r->count,
             d->unit, r->count == 1 ? "" : "s", (unsigned long long)(span_ms / 1000),
             (unsigned long long)(span_ms % 1000 / 100), d->describe(reason), from);
    r->count = 0;
}

int droplog_flush(struct droplog *d, uint64_t now_ms, bool is_final)
{
    if (!d->has_drops)
        return -1;
    if (!is_final && now_ms < d->due_ms)
        return d->due_ms - now_ms > INT_MAX ? INT_MAX : (int)(d->due_ms - now_ms);
    for (unsigned i = 0; i < DROPLOG_MAX_REASONS; i++)
        if (d->r[i].count > 0)
            droplog_write(d, i, now_ms);
    d->has_drops = false;
    d->due_ms = now_ms + d->interval_ms;
    return -1;
}
