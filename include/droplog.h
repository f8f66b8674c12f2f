/* droplog: refusals counted by reason and logged at most once per reason per interval
 * ("udp guard: dropped 1234 datagrams in the last 9.8 s: REASON (last from ADDR)"),
 * never once per refusal, so a flood cannot flood the log. Owned by one thread (the UDP
 * thread for the guard, the acceptor for refused connections): no locks. */
#ifndef ECHOD_DROPLOG_H
#define ECHOD_DROPLOG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define DROPLOG_MAX_REASONS 8

/* The refusals of one reason since the last line. */
struct droplog_reason {
    uint64_t count;
    uint64_t first_ms;            /* when the first of them came */
    struct sockaddr_storage last; /* the last one's source, zero-padded; AF_UNSPEC: unknown */
};

struct droplog {
    const char *what; /* "udp guard: dropped" */
    const char *unit; /* "datagram"; an "s" is added for more than one */
    const char *(*describe)(unsigned reason);
    uint64_t interval_ms;
    uint64_t due_ms; /* no line before this */
    bool has_drops;  /* some r[].count > 0 */
    struct droplog_reason r[DROPLOG_MAX_REASONS];
};

/* An empty log: lines read "WHAT N UNITs in the last S s: describe(reason) (last from
 * ADDR)"; the first is written at once, later ones at most every interval_ms. */
void droplog_init(struct droplog *d, const char *what, const char *unit,
                  const char *(*describe)(unsigned reason), uint64_t interval_ms);
/* Count one refusal for reason (< DROPLOG_MAX_REASONS) from sa (NULL: unknown). */
void droplog_note(struct droplog *d, unsigned reason, const struct sockaddr *sa, socklen_t len,
                  uint64_t now_ms);
/* Write one line per reason with refusals if the interval has passed (or is_final).
 * Returns the ms until lines are due (an epoll timeout), or -1 when none wait. */
int droplog_flush(struct droplog *d, uint64_t now_ms, bool is_final);

#endif
