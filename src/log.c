/* log: leveled logging to stderr. Any thread may log.
 * Until log_start() (and after log_stop()) each line is written at once with one
 * write(2), so lines never interleave. In between, a log thread owns stderr: log_msg
 * appends the line to a bounded ring under log_q.lock and returns, so a stderr that
 * stops draining (a stalled journald, a pager nobody reads) can never block a worker,
 * the acceptor or the UDP thread. A line that finds the ring full is dropped and
 * counted, and the log thread says how many once it can write again; debug lines may
 * fill only LOG_DEBUG_BYTES of it, so they never crowd out the others. The level is an
 * atomic int written at start-up and read everywhere. When stderr is the journal
 * (log_init found JOURNAL_STREAM naming it), each line starts with its sd-daemon(3)
 * priority, <3> to <7>, instead of the time and name journald records itself. */
#include "config.h"

#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX    2048         /* room for the stats line with every counter at 20 digits */
#define LOG_QUEUE_BYTES (256 * 1024) /* lines waiting for the log thread */
#define LOG_DEBUG_BYTES (192 * 1024) /* of which debug lines may take this much */
#define LOG_DRAIN_MS    1000         /* how long log_stop waits for stderr to take them */

/* The queue between every logging thread and the log thread. */
static struct {
    pthread_mutex_t lock;   /* guards every field below */
    pthread_cond_t wake;    /* signalled when lines arrive or the queue should stop */
    pthread_cond_t drained; /* signalled when the log thread has written everything */
    char *ring;             /* LOG_QUEUE_BYTES; NULL while lines are written directly */
    size_t head, len;       /* the pending bytes, from head, wrapping */
    uint64_t dropped;       /* lines dropped for a full ring since the last notice */
    bool is_writing;        /* the log thread holds a chunk it has not written yet */
    bool is_stopping;
    bool is_stalled; /* log_stop gave up on stderr: drop what comes after */
    pthread_t thread;
} log_q = {.lock = PTHREAD_MUTEX_INITIALIZER,
           .wake = PTHREAD_COND_INITIALIZER,
           .drained = PTHREAD_COND_INITIALIZER};

static const char *const log_names[] = {"error", "warn", "info", "debug"};
/* Each level's syslog priority, as journald reads it from a "<N>" prefix. */
static const int log_priorities[] = {3, 4, 6, 7};

/* Whether stderr is the journal: set by log_init before any thread starts, then read. */
static bool log_is_journal;

/* The most verbose level printed; guards nothing else. */
static _Atomic int log_level = LOG_LEVEL_INFO;

/* A decimal number at text (digits only: no sign, no space) up to *end; false if none. */
static bool log_parse_decimal(const char *text, char **end, unsigned long long *out)
{
    if (*text < '0' || *text > '9')
        return false;
    errno = 0;
    *out = strtoull(text, end, 10);
    return errno == 0;
}

bool log_stream_is_journal(const char *journal_stream, const struct stat *st)
{
    unsigned long long dev, ino;
    char *end;
    return journal_stream != NULL && log_parse_decimal(journal_stream, &end, &dev) && *end == ':' &&
           log_parse_decimal(end + 1, &end, &ino) && *end == '\0' &&
           dev == (unsigned long long)st->st_dev && ino == (unsigned long long)st->st_ino;
}

void log_init(void)
{
    struct stat st;
    log_is_journal =
        fstat(STDERR_FILENO, &st) == 0 && log_stream_is_journal(getenv("JOURNAL_STREAM"), &st);
}

int log_level_parse(const char *name, enum log_level *out)
{
    for (size_t i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
        if (strcmp(name, log_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *log_level_name(enum log_level level)
{
    return log_names[level];
}

void log_set_level(enum log_level level)
{
    atomic_store(&log_level, (int)level);
}

int log_is_enabled(enum log_level level)
{
    return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

/* Write all n bytes to stderr, or as many as it takes before an error. */
static void log_write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* EPIPE, a full disk, ...: nowhere to say so */
        p += w;
        n -= (size_t)w;
    }
}

/* Queue one line for the log thread, or write it now when there is none. Debug lines
 * may fill only part of the queue, so a flood of them never crowds out a warning, an
 * error or the lines of start-up and shutdown. */
static void log_emit(enum log_level level, const char *line, size_t n)
{
    size_t room = level == LOG_LEVEL_DEBUG ? LOG_DEBUG_BYTES : LOG_QUEUE_BYTES;
    pthread_mutex_lock(&log_q.lock);
    if (log_q.ring == NULL) {
        bool is_stalled = log_q.is_stalled;
        pthread_mutex_unlock(&log_q.lock);
        if (!is_stalled)
            log_write_all(line, n);
        return;
    }
    if (log_q.len > room || room - log_q.len < n) {
        log_q.dropped++;
    } else {
        size_t tail = (log_q.head + log_q.len) % LOG_QUEUE_BYTES;
        size_t first = LOG_QUEUE_BYTES - tail < n ? LOG_QUEUE_BYTES - tail : n;
        memcpy(log_q.ring + tail, line, first);
        memcpy(log_q.ring, line + first, n - first);
        log_q.len += n;
        pthread_cond_signal(&log_q.wake);
    }
    pthread_mutex_unlock(&log_q.lock);
}

/* The log thread: take what is queued, write it without the lock, repeat. */
static void *log_main(void *arg)
{
    (void)arg;
    static char chunk[LOG_QUEUE_BYTES];
    pthread_mutex_lock(&log_q.lock);
    for (;;) {
        while (log_q.len == 0 && log_q.dropped == 0 && !log_q.is_stopping)
            pthread_cond_wait(&log_q.wake, &log_q.lock);
        if (log_q.len == 0 && log_q.dropped == 0)
            break; /* stopping, and everything is written */
        size_t n = log_q.len;
        size_t first = LOG_QUEUE_BYTES - log_q.head < n ? LOG_QUEUE_BYTES - log_q.head : n;
        memcpy(chunk, log_q.ring + log_q.head, first);
        memcpy(chunk + first, log_q.ring, n - first);
        log_q.head = (log_q.head + n) % LOG_QUEUE_BYTES;
        log_q.len = 0;
        uint64_t dropped = log_q.dropped;
        log_q.dropped = 0;
        log_q.is_writing = true;
        pthread_mutex_unlock(&log_q.lock);
        log_write_all(chunk, n);
        if (dropped > 0) {
            char note[128];
            int k = snprintf(note, sizeof(note),
                             "%s%llu log line%s dropped: stderr was not keeping up\n",
                             log_is_journal ? "<4>warn: " : "echod: ", (unsigned long long)dropped,
                             dropped == 1 ? "" : "s");
            log_write_all(note, (size_t)k);
        }
        pthread_mutex_lock(&log_q.lock);
        log_q.is_writing = false;
        if (log_q.len == 0)
            pthread_cond_broadcast(&log_q.drained);
    }
    pthread_cond_broadcast(&log_q.drained);
    pthread_mutex_unlock(&log_q.lock);
    return NULL;
}

int log_start(void)
{
    char *ring = malloc(LOG_QUEUE_BYTES);
    if (ring == NULL)
        return -ENOMEM;
    pthread_mutex_lock(&log_q.lock);
    log_q.ring = ring;
    log_q.head = log_q.len = 0;
    log_q.is_stopping = false;
    int rc = pthread_create(&log_q.thread, NULL, log_main, NULL);
    if (rc != 0)
        log_q.ring = NULL;
    pthread_mutex_unlock(&log_q.lock);
    if (rc != 0)
        free(ring);
    return -rc;
}

void log_stop(void)
{
    pthread_mutex_lock(&log_q.lock);
    if (log_q.ring == NULL) {
        pthread_mutex_unlock(&log_q.lock);
        return;
    }
    log_q.is_stopping = true;
    pthread_cond_signal(&log_q.wake);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += LOG_DRAIN_MS / 1000;
    int rc = 0;
    while ((log_q.len > 0 || log_q.dropped > 0 || log_q.is_writing) && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&log_q.drained, &log_q.lock, &until);
    char *ring = log_q.ring;
    bool is_drained = rc != ETIMEDOUT;
    if (is_drained)
        log_q.ring = NULL; /* the thread is ending: write directly again */
    else
        log_q.is_stalled = true; /* a write is stuck: the thread and ring stay behind */
    pthread_mutex_unlock(&log_q.lock);
    if (is_drained) {
        pthread_join(log_q.thread, NULL);
        free(ring);
    }
}

/* Format and emit one line: prefix (its length n, in line), then fmt, then '\n'. */
static void log_finish(enum log_level level, char *line, size_t n, const char *fmt, va_list ap)
{
    int body = vsnprintf(line + n, LOG_LINE_MAX - n, fmt, ap);
    if (body > 0)
        n += (size_t)body;
    if (n > LOG_LINE_MAX - 2)
        n = LOG_LINE_MAX - 2; /* truncated: keep room for the newline */
    line[n++] = '\n';
    log_emit(level, line, n);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_is_enabled(level))
        return;
    int saved_errno = errno;
    char line[LOG_LINE_MAX];
    size_t n;
    if (log_is_journal) {
        n = (size_t)snprintf(line, sizeof(line), "<%d>%s: ", log_priorities[level],
                             log_names[level]);
    } else {
        struct timeval tv;
        struct tm tm;
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof(line) - n,
                              ".%03ldZ echod[%ld]: %s: ", (long)(tv.tv_usec / 1000), (long)getpid(),
                              log_names[level]);
    }
    va_list ap;
    va_start(ap, fmt);
    log_finish(level, line, n, fmt, ap);
    va_end(ap);
    errno = saved_errno;
}

void log_bare(enum log_level level, const char *fmt, ...)
{
    int saved_errno = errno;
    char line[LOG_LINE_MAX];
    size_t n = 0;
    if (log_is_journal)
        n = (size_t)snprintf(line, sizeof(line), "<%d>", log_priorities[level]);
    va_list ap;
    va_start(ap, fmt);
    log_finish(level, line, n, fmt, ap);
    va_end(ap);
    errno = saved_errno;
}
