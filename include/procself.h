/* procself: this process's resource figures, from /proc/self, getrusage and getrlimit:
 * what Prometheus's standard process_* metrics report. Any thread; no state. */
#ifndef ECHOD_PROCSELF_H
#define ECHOD_PROCSELF_H

#include <stdint.h>

struct procself {
    double cpu_seconds;      /* user + system CPU time */
    uint64_t resident_bytes; /* resident set size */
    uint64_t virtual_bytes;  /* virtual memory size */
    uint64_t open_fds;       /* open file descriptors */
    uint64_t max_fds;        /* the soft RLIMIT_NOFILE (UINT64_MAX: unlimited) */
};

/* Read the figures now; 0 or -errno (out then holds what could be read, the rest 0). */
int procself_sample(struct procself *out);
/* When the process started, in seconds since the Unix epoch; 0 or -errno. */
int procself_start_time(double *out);

#endif
