/* log: leveled logging to stderr, whole lines so threads never interleave, through a
 * log thread between log_start and log_stop. Any thread may log; the level is an atomic
 * set once at start-up. */
#ifndef ECHOD_LOG_H
#define ECHOD_LOG_H

#include <stdbool.h>
#include <sys/stat.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Whether JOURNAL_STREAM's value ("DEV:INO", as systemd sets it) names the file st
 * describes; false when it is NULL or malformed. */
bool log_stream_is_journal(const char *journal_stream, const struct stat *st);
/* Call first, before any thread: when stderr is the journal, lines start with their
 * priority ("<4>warn: ...") instead of the time and "echod[PID]". */
void log_init(void);

/* Parse "error", "warn", "info" or "debug"; 0 or -EINVAL. */
int log_level_parse(const char *name, enum log_level *out);
/* The level's name as log_level_parse accepts it. */
const char *log_level_name(enum log_level level);
/* Set the most verbose level that is printed. */
void log_set_level(enum log_level level);
/* Whether a message at this level would be printed. */
int log_is_enabled(enum log_level level);
/* From now on, hand lines to a log thread through a bounded queue, so a stderr that does
 * not drain never blocks the caller (lines that find it full are dropped and counted).
 * Call with every signal blocked, so the thread inherits the mask; 0 or -errno. */
int log_start(void);
/* Write what is queued (waiting up to a second for stderr), end the log thread and write
 * lines directly again. If stderr never takes them, later lines are dropped instead. */
void log_stop(void);
/* Print one line: "TIME echod[PID]: LEVEL: message" ("<N>LEVEL: message" to the
 * journal). */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print one line as it is, whatever the level ("<N>" first to the journal): for the
 * start-up messages that read like a tool's ("FILE:LINE: key: message"). */
void log_bare(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_is_enabled(LOG_LEVEL_DEBUG))                                                       \
            log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                                                 \
    } while (0)

#endif
