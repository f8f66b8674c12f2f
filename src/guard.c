/* guard: the UDP reflection guard. Run by the UDP thread only, which owns the guard (its
 * prefix table, global bucket and pending drop counts), so nothing is locked.
 * DESIGN. The source check is pure and reads the sockaddr by memcpy, never past len.
 * Buckets count milli-tokens, exact at 1 ms steps. The prefix table is one fixed array:
 * a prefix hashes (SipHash-2-4, random key) to a window of GUARD_PROBE slots; a new one
 * takes a free slot there, else a refilled one (nothing lost), else the least recently
 * seen. Evicting a prefix still being limited gives it a fresh bucket later: eviction
 * can make the guard more lenient (by at most `burst`), never refuse a source, and what
 * passes still meets the global cap. Spoofed prefixes churn slots but never add any. */
#include "config.h"

#include "guard.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "addr.h"
#include "droplog.h"

#define GUARD_PROBE      8    /* slots a prefix may live in */
#define GUARD_MILLI      1000 /* milli-tokens per token */
#define GUARD_FIRST_PORT 1024 /* lower source ports are refused */

static const uint16_t guard_reflector_ports[] = {1900, 3702, 5353, 11211};

/* One tracked prefix and its bucket. */
struct guard_slot {
    uint64_t prefix;       /* the /24 (IPv4) or /64 (IPv6), right-aligned */
    uint64_t seen_ms;      /* last refill: the last datagram from the prefix */
    uint64_t tokens_milli; /* at most burst * GUARD_MILLI */
    sa_family_t family;    /* AF_INET or AF_INET6; 0 = free */
};

struct guard {
    struct guard_conf conf;
    struct guard_policy policy;
    uint64_t key[2]; /* SipHash key, from getrandom(2) */
    uint64_t global_tokens_milli;
    uint64_t global_seen_ms;
    struct droplog drops; /* by verdict */
    size_t tracked;       /* slots in use */
    struct guard_slot slots[];
};

/* A source, as the rate limits see it. */
struct guard_source {
    sa_family_t family; /* AF_INET for IPv4 and v4-mapped IPv6 */
    uint64_t prefix;
    bool is_loopback;
};

void guard_conf_defaults(struct guard_conf *c)
{
    *c = (struct guard_conf){
        .is_enabled = true,
        .is_loopback_allowed = true,
        .is_loopback_limited = false,
        .rate = 1000,
        .burst = 2000,
        .max_rate = 100000,
        .table_size = 4096,
        .log_interval_ms = 10000,
    };
}

void guard_policy_init(struct guard_policy *p)
{
    memset(p, 0, sizeof(*p));
    p->is_loopback_allowed = true;
}

int guard_policy_add_own_port(struct guard_policy *p, uint16_t port)
{
    for (size_t i = 0; i < p->own_port_count; i++)
        if (p->own_ports[i] == port)
            return 0;
    if (p->own_port_count >= GUARD_MAX_OWN_PORTS)
        return -ENOSPC;
    p->own_ports[p->own_port_count++] = port;
    return 0;
}

/* The IPv4 rules on a (host order): 0/8, multicast, broadcast; loopback if refused. */
static enum guard_verdict guard_check_v4(const struct guard_policy *p, uint32_t a,
                                         struct guard_source *src)
{
    src->family = AF_INET;
    src->prefix = a >> 8;
    src->is_loopback = a >> 24 == 127;
    if (a >> 24 == 0 || a >> 28 == 0xe || a == UINT32_MAX)
        return GUARD_DROP_ADDRESS;
    if (src->is_loopback && !p->is_loopback_allowed)
        return GUARD_DROP_ADDRESS;
    return GUARD_PASS;
}

/* The IPv6 rules: v4-mapped go to the IPv4 rules; ::, ff00::/8; ::1 if refused. */
static enum guard_verdict guard_check_v6(const struct guard_policy *p, const struct in6_addr *a,
                                         struct guard_source *src)
{
    const uint8_t *b = a->s6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a))
        return guard_check_v4(p, (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | b[14] << 8 | b[15],
                              src);
    src->family = AF_INET6;
    src->prefix = 0;
    for (int i = 0; i < 8; i++)
        src->prefix = src->prefix << 8 | b[i];
    src->is_loopback = IN6_IS_ADDR_LOOPBACK(a);
    if (IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_MULTICAST(a))
        return GUARD_DROP_ADDRESS;
    if (src->is_loopback && !p->is_loopback_allowed)
        return GUARD_DROP_ADDRESS;
    return GUARD_PASS;
}

/* The port rules, in order: below 1024, reflector, own. */
static enum guard_verdict guard_check_port(const struct guard_policy *p, uint16_t port)
{
    if (port < GUARD_FIRST_PORT)
        return GUARD_DROP_PORT;
    for (size_t i = 0; i < sizeof(guard_reflector_ports) / sizeof(guard_reflector_ports[0]); i++)
        if (port == guard_reflector_ports[i])
            return GUARD_DROP_REFLECTOR;
    size_t n = p->own_port_count < GUARD_MAX_OWN_PORTS ? p->own_port_count : GUARD_MAX_OWN_PORTS;
    for (size_t i = 0; i < n; i++)
        if (port == p->own_ports[i])
            return GUARD_DROP_OWN_PORT;
    return GUARD_PASS;
}

/* guard_check_source, also filling src for the rate limits. */
static enum guard_verdict guard_classify(const struct guard_policy *p, const struct sockaddr *sa,
                                         socklen_t len, struct guard_source *src)
{
    sa_family_t family;
    size_t family_end = offsetof(struct sockaddr, sa_family) + sizeof(family);
    if (sa == NULL || len < family_end)
        return GUARD_DROP_ADDRESS;
    memcpy(&family, (const char *)sa + offsetof(struct sockaddr, sa_family), sizeof(family));
    enum guard_verdict v;
    uint16_t port;
    if (family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in sin;
        memcpy(&sin, sa, sizeof(sin));
        v = guard_check_v4(p, ntohl(sin.sin_addr.s_addr), src);
        port = ntohs(sin.sin_port);
    } else if (family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, sa, sizeof(sin6));
        v = guard_check_v6(p, &sin6.sin6_addr, src);
        port = ntohs(sin6.sin6_port);
    } else {
        return GUARD_DROP_ADDRESS;
    }
    return v != GUARD_PASS ? v : guard_check_port(p, port);
}

enum guard_verdict guard_check_source(const struct guard_policy *p, const struct sockaddr *sa,
                                      socklen_t len)
{
    struct guard_source src;
    return guard_classify(p, sa, len, &src);
}

const char *guard_verdict_describe(enum guard_verdict v)
{
    switch (v) {
    case GUARD_PASS:
        return "passed";
    case GUARD_DROP_PORT:
        return "source port below 1024";
    case GUARD_DROP_REFLECTOR:
        return "source port of a known reflector (1900, 3702, 5353, 11211)";
    case GUARD_DROP_OWN_PORT:
        return "source port is one of echod's own UDP ports";
    case GUARD_DROP_ADDRESS:
        return "source address multicast, broadcast, unspecified, 0.0.0.0/8, refused "
               "loopback or malformed";
    case GUARD_DROP_RATE:
        return "source /24 or /64 over udp.guard.rate";
    case GUARD_DROP_GLOBAL_RATE:
        return "over udp.guard.max_rate, the global cap";
    case GUARD_VERDICT_COUNT:
        break;
    }
    return "unknown";
}

_Static_assert(GUARD_VERDICT_COUNT <= DROPLOG_MAX_REASONS, "a drop reason per verdict");

/* guard_verdict_describe, as the drop log asks for it. */
static const char *guard_describe_reason(unsigned reason)
{
    return guard_verdict_describe((enum guard_verdict)reason);
}

#define GUARD_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void guard_sip_round(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = GUARD_ROTL(v[1], 13) ^ v[0];
    v[0] = GUARD_ROTL(v[0], 32);
    v[2] += v[3];
    v[3] = GUARD_ROTL(v[3], 16) ^ v[2];
    v[0] += v[3];
    v[3] = GUARD_ROTL(v[3], 21) ^ v[0];
    v[2] += v[1];
    v[1] = GUARD_ROTL(v[1], 17) ^ v[2];
    v[2] = GUARD_ROTL(v[2], 32);
}

/* SipHash-2-4 of the two words (m0, m1) under key. */
static uint64_t guard_siphash(const uint64_t key[2], uint64_t m0, uint64_t m1)
{
    uint64_t v[4] = {key[0] ^ 0x736f6d6570736575ull, key[1] ^ 0x646f72616e646f6dull,
                     key[0] ^ 0x6c7967656e657261ull, key[1] ^ 0x7465646279746573ull};
    const uint64_t m[3] = {m0, m1, (uint64_t)16 << 56};
    for (int i = 0; i < 3; i++) {
        v[3] ^= m[i];
        guard_sip_round(v);
        guard_sip_round(v);
        v[0] ^= m[i];
    }
    v[2] ^= 0xff;
    for (int i = 0; i < 4; i++)
        guard_sip_round(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* The bucket's milli-tokens at now: refilled at rate per second, up to cap_milli. */
static uint64_t guard_refilled(uint64_t tokens_milli, uint64_t seen_ms, uint64_t now_ms,
                               uint64_t rate, uint64_t cap_milli)
{
    if (now_ms <= seen_ms || tokens_milli >= cap_milli)
        return tokens_milli;
    uint64_t room = cap_milli - tokens_milli; /* at most 10^11 milli-tokens */
    uint64_t elapsed = now_ms - seen_ms;      /* rate tokens/s = rate milli-tokens/ms */
    if (elapsed >= room)
        return cap_milli; /* rate >= 1: full, and elapsed * rate cannot overflow below */
    uint64_t add = elapsed * rate;
    return add >= room ? cap_milli : tokens_milli + add;
}

/* Refill the bucket to now and take one token from it; false when it has none. */
static bool guard_take(uint64_t *tokens_milli, uint64_t *seen_ms, uint64_t now_ms, uint64_t rate,
                       uint64_t cap_milli)
{
    *tokens_milli = guard_refilled(*tokens_milli, *seen_ms, now_ms, rate, cap_milli);
    if (now_ms > *seen_ms)
        *seen_ms = now_ms;
    if (*tokens_milli < GUARD_MILLI)
        return false;
    *tokens_milli -= GUARD_MILLI;
    return true;
}

/* How cheaply a slot can be reused: 0 free, 1 refilled (nothing to forget), 2 in use. */
static int guard_slot_cost(const struct guard *g, const struct guard_slot *s, uint64_t now_ms)
{
    uint64_t cap = (uint64_t)g->conf.burst * GUARD_MILLI;
    if (s->family == 0)
        return 0;
    return guard_refilled(s->tokens_milli, s->seen_ms, now_ms, g->conf.rate, cap) >= cap ? 1 : 2;
}

/* The slot of src's prefix, taking one of its window (see DESIGN) for a new prefix. */
static struct guard_slot *guard_slot_for(struct guard *g, const struct guard_source *src,
                                         uint64_t now_ms)
{
    size_t size = g->conf.table_size;
    size_t start = (size_t)(guard_siphash(g->key, src->prefix, src->family) % size);
    size_t probe = size < GUARD_PROBE ? size : GUARD_PROBE;
    for (size_t k = 0; k < probe; k++) {
        struct guard_slot *s = &g->slots[start + k < size ? start + k : start + k - size];
        if (s->family == src->family && s->prefix == src->prefix)
            return s;
    }
    struct guard_slot *victim = NULL;
    int victim_cost = 3;
    for (size_t k = 0; k < probe; k++) {
        struct guard_slot *s = &g->slots[start + k < size ? start + k : start + k - size];
        int cost = guard_slot_cost(g, s, now_ms);
        if (cost < victim_cost || (cost == victim_cost && s->seen_ms < victim->seen_ms)) {
            victim = s;
            victim_cost = cost;
        }
    }
    g->tracked += victim->family == 0;
    *victim = (struct guard_slot){src->prefix, now_ms, (uint64_t)g->conf.burst * GUARD_MILLI,
                                  src->family};
    return victim;
}

/* The rate limits for a source that passed the source check. */
static enum guard_verdict guard_limit(struct guard *g, const struct guard_source *src,
                                      uint64_t now_ms)
{
    struct guard_slot *s = guard_slot_for(g, src, now_ms);
    if (!guard_take(&s->tokens_milli, &s->seen_ms, now_ms, g->conf.rate,
                    (uint64_t)g->conf.burst * GUARD_MILLI))
        return GUARD_DROP_RATE;
    uint64_t global = g->conf.max_rate;
    if (global > 0 && !guard_take(&g->global_tokens_milli, &g->global_seen_ms, now_ms, global,
                                  global * GUARD_MILLI))
        return GUARD_DROP_GLOBAL_RATE;
    return GUARD_PASS;
}

int guard_create(const struct guard_conf *c, const struct guard_policy *p, struct guard **out)
{
    if (c->rate == 0 || c->burst == 0 || c->table_size == 0)
        return -EINVAL;
    struct guard *g = calloc(1, sizeof(*g) + (size_t)c->table_size * sizeof(g->slots[0]));
    if (g == NULL)
        return -ENOMEM;
    ssize_t n;
    do
        n = getrandom(g->key, sizeof(g->key), 0);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(g->key)) {
        int rc = n < 0 ? -errno : -EIO;
        free(g);
        return rc;
    }
    g->conf = *c;
    g->policy = *p;
    g->global_tokens_milli = (uint64_t)c->max_rate * GUARD_MILLI;
    droplog_init(&g->drops, "udp guard: dropped", "datagram", guard_describe_reason,
                 c->log_interval_ms);
    *out = g;
    return 0;
}

void guard_destroy(struct guard *g)
{
    free(g);
}

enum guard_verdict guard_admit(struct guard *g, const struct sockaddr *sa, socklen_t len,
                               uint64_t now_ms)
{
    struct guard_source src;
    enum guard_verdict v = guard_classify(&g->policy, sa, len, &src);
    if (v == GUARD_PASS && (g->conf.is_loopback_limited || !src.is_loopback))
        v = guard_limit(g, &src, now_ms);
    if (v != GUARD_PASS)
        droplog_note(&g->drops, v, sa, len, now_ms);
    return v;
}

int guard_log_drops(struct guard *g, uint64_t now_ms, bool is_final)
{
    return droplog_flush(&g->drops, now_ms, is_final);
}

size_t guard_tracked(const struct guard *g)
{
    return g->tracked;
}
