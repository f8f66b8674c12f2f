/* iplimit: a mutex-protected chained hash table counting open connections per client
 * IP, plus an fd-indexed array telling which IP each counted socket belongs to. The
 * acceptor thread acquires (after accept4, before the hand-off); the worker that owns
 * the socket releases it by fd just before closing it, so an fd number is never reused
 * while its slot is held. An IP's entry is freed when its count drops to zero, so memory
 * is bounded by the IPs that hold connections (at most `capacity`) and the highest fd
 * counted. The hash is seeded from getrandom() so clients cannot aim at one bucket. */
#include "config.h"

#include "iplimit.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "addr.h"

#define IPLIMIT_MAX_BUCKETS (1u << 16)

struct iplimit_entry {
    struct iplimit_key key;
    unsigned count;
    struct iplimit_entry *next; /* in its bucket's chain */
};

struct iplimit {
    pthread_mutex_t lock; /* guards everything below */
    unsigned max_per_ip;
    size_t capacity;
    size_t ip_count;
    uint64_t seed;
    unsigned bucket_bits;
    struct iplimit_entry **buckets;
    struct iplimit_entry **by_fd; /* the entry each counted fd holds, or NULL */
    size_t by_fd_len;
};

int iplimit_create(unsigned max_per_ip, size_t capacity, struct iplimit **out)
{
    struct iplimit *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->max_per_ip = max_per_ip;
    t->capacity = capacity;
    t->bucket_bits = 4;
    while ((1u << t->bucket_bits) < capacity && (1u << t->bucket_bits) < IPLIMIT_MAX_BUCKETS)
        t->bucket_bits++;
    t->buckets = calloc((size_t)1 << t->bucket_bits, sizeof(*t->buckets));
    if (t->buckets == NULL) {
        free(t);
        return -ENOMEM;
    }
    if (getrandom(&t->seed, sizeof(t->seed), GRND_NONBLOCK) != sizeof(t->seed))
        t->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)t;
    pthread_mutex_init(&t->lock, NULL);
    *out = t;
    return 0;
}

void iplimit_set_limits(struct iplimit *t, unsigned max_per_ip, size_t capacity)
{
    pthread_mutex_lock(&t->lock);
    t->max_per_ip = max_per_ip;
    t->capacity = capacity;
    pthread_mutex_unlock(&t->lock);
}

void iplimit_destroy(struct iplimit *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < (size_t)1 << t->bucket_bits; i++) {
        while (t->buckets[i]) {
            struct iplimit_entry *e = t->buckets[i];
            t->buckets[i] = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&t->lock);
    free(t->buckets);
    free(t->by_fd);
    free(t);
}

int iplimit_key_of(const struct sockaddr *sa, struct iplimit_key *key)
{
    return addr_ip16(sa, key->addr);
}

/* The bucket of key: the top bits of a seeded multiplicative hash, which depend on
 * every bit of the address. */
static size_t iplimit_bucket(const struct iplimit *t, const struct iplimit_key *key)
{
    uint64_t hi, lo;
    memcpy(&hi, key->addr, 8);
    memcpy(&lo, key->addr + 8, 8);
    uint64_t h = (hi ^ t->seed) * 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 31) ^ lo) * 0xbf58476d1ce4e5b9ull;
    return (size_t)(h >> (64 - t->bucket_bits));
}

/* Where the entry for key is linked in its chain (*slot NULL if it has none). */
static struct iplimit_entry **iplimit_find(struct iplimit *t, const struct iplimit_key *key)
{
    struct iplimit_entry **slot = &t->buckets[iplimit_bucket(t, key)];
    while (*slot && memcmp((*slot)->key.addr, key->addr, 16) != 0)
        slot = &(*slot)->next;
    return slot;
}

/* Make by_fd hold index fd; 0 or -ENOMEM. */
static int iplimit_grow_by_fd(struct iplimit *t, int fd)
{
    if ((size_t)fd < t->by_fd_len)
        return 0;
    size_t len = t->by_fd_len ? t->by_fd_len : 64;
    while (len <= (size_t)fd)
        len *= 2;
    struct iplimit_entry **grown = realloc(t->by_fd, len * sizeof(*grown));
    if (grown == NULL)
        return -ENOMEM;
    memset(grown + t->by_fd_len, 0, (len - t->by_fd_len) * sizeof(*grown));
    t->by_fd = grown;
    t->by_fd_len = len;
    return 0;
}

/* Count one more connection on fd against key's IP; called with the lock held. */
static int iplimit_acquire_locked(struct iplimit *t, const struct iplimit_key *key, int fd)
{
    int rc = iplimit_grow_by_fd(t, fd);
    if (rc < 0 || t->by_fd[fd] != NULL)
        return rc < 0 ? rc : -EBADF; /* a held fd cannot be accepted again */
    struct iplimit_entry **slot = iplimit_find(t, key);
    struct iplimit_entry *e = *slot;
    if (e && e->count >= t->max_per_ip)
        return -EUSERS;
    if (e == NULL) {
        if (t->ip_count >= t->capacity)
            return -ENOSPC;
        if ((e = calloc(1, sizeof(*e))) == NULL)
            return -ENOMEM;
        e->key = *key;
        *slot = e;
        t->ip_count++;
    }
    e->count++;
    t->by_fd[fd] = e;
    return 0;
}

int iplimit_acquire(struct iplimit *t, const struct iplimit_key *key, int fd)
{
    if (fd < 0)
        return -EBADF;
    pthread_mutex_lock(&t->lock);
    int rc = iplimit_acquire_locked(t, key, fd);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* Give up the slot fd holds, if any; called with the lock held. */
static void iplimit_release_locked(struct iplimit *t, int fd)
{
    struct iplimit_entry *e = fd >= 0 && (size_t)fd < t->by_fd_len ? t->by_fd[fd] : NULL;
    if (e == NULL)
        return;
    t->by_fd[fd] = NULL;
    if (--e->count == 0) {
        struct iplimit_entry **slot = iplimit_find(t, &e->key);
        *slot = e->next;
        free(e);
        t->ip_count--;
    }
}

int iplimit_admit(struct iplimit *t, const struct sockaddr *sa, int fd)
{
    struct iplimit_key key;
    if (iplimit_key_of(sa, &key) < 0)
        return 0; /* not an IP client (AF_UNIX): nothing to count */
    if (fd < 0)
        return -EBADF;
    pthread_mutex_lock(&t->lock);
    iplimit_release_locked(t, fd);
    int rc = iplimit_acquire_locked(t, &key, fd);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

void iplimit_release(struct iplimit *t, int fd)
{
    pthread_mutex_lock(&t->lock);
    iplimit_release_locked(t, fd);
    pthread_mutex_unlock(&t->lock);
}

unsigned iplimit_count(struct iplimit *t, const struct iplimit_key *key)
{
    pthread_mutex_lock(&t->lock);
    const struct iplimit_entry *e = *iplimit_find(t, key);
    unsigned n = e ? e->count : 0;
    pthread_mutex_unlock(&t->lock);
    return n;
}

size_t iplimit_ip_count(struct iplimit *t)
{
    pthread_mutex_lock(&t->lock);
    size_t n = t->ip_count;
    pthread_mutex_unlock(&t->lock);
    return n;
}
