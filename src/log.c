/* log: leveled logging to stderr.
 * Any thread. Each line is formatted into a stack buffer and written with one write(2),
 * so lines from different threads never interleave. The level is an atomic int written
 * at start-up and read everywhere. */
#include "config.h"

#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 1024

static const char *const log_names[] = {"error", "warn", "info", "debug"};

/* The most verbose level printed; guards nothing else. */
static _Atomic int log_level = LOG_LEVEL_INFO;

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

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_is_enabled(level))
        return;
    int saved_errno = errno;
    char line[LOG_LINE_MAX];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n,
                          ".%03ldZ echod[%ld]: %s: ", (long)(tv.tv_usec / 1000), (long)getpid(),
                          log_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int body = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (body > 0)
        n += (size_t)body;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2; /* truncated: keep room for the newline */
    line[n++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, n);
    (void)ignored;
    errno = saved_errno;
}
