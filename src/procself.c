/* procself: reads this process's CPU time (getrusage), memory (/proc/self/statm), open
 * fds (/proc/self/fd), fd limit (getrlimit) and start time (/proc/self/stat's start
 * ticks after /proc/stat's boot time), for the metrics endpoint's process_* metrics.
 * Any thread; owns nothing between calls. */
#include "config.h"

#include "procself.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Open fds, not counting the one reading the directory; 0 or -errno. */
static int procself_count_fds(uint64_t *out)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -errno;
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    *out = n > 0 ? n - 1 : 0;
    return 0;
}

int procself_sample(struct procself *out)
{
    *out = (struct procself){0};
    int rc = 0;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        out->cpu_seconds = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    else
        rc = -errno;
    FILE *f = fopen("/proc/self/statm", "re");
    unsigned long long size_pages = 0, resident_pages = 0;
    if (f == NULL || fscanf(f, "%llu %llu", &size_pages, &resident_pages) != 2)
        rc = f ? -EINVAL : -errno;
    if (f)
        fclose(f);
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    out->virtual_bytes = size_pages * page;
    out->resident_bytes = resident_pages * page;
    int fds_rc = procself_count_fds(&out->open_fds);
    if (fds_rc < 0)
        rc = fds_rc;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        out->max_fds = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    else
        rc = -errno;
    return rc;
}

/* The first line of path that starts with key, the number after it into *out. */
static int procself_read_key(const char *path, const char *key, unsigned long long *out)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -errno;
    char line[256];
    int rc = -ENOENT;
    size_t len = strlen(key);
    while (rc != 0 && fgets(line, sizeof(line), f))
        if (strncmp(line, key, len) == 0 && sscanf(line + len, "%llu", out) == 1)
            rc = 0;
    fclose(f);
    return rc;
}

int procself_start_time(double *out)
{
    unsigned long long boot_s = 0, start_ticks = 0;
    int rc = procself_read_key("/proc/stat", "btime ", &boot_s);
    if (rc < 0)
        return rc;
    FILE *f = fopen("/proc/self/stat", "re");
    if (f == NULL)
        return -errno;
    char text[1024];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    /* Field 22, counted after the command name's closing parenthesis (field 2), which
     * may itself hold spaces and parentheses. */
    const char *p = strrchr(text, ')');
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (p == NULL || sscanf(p, " %llu", &start_ticks) != 1)
        return -EINVAL;
    long ticks_per_s = sysconf(_SC_CLK_TCK);
    *out = (double)boot_s + (double)start_ticks / (double)(ticks_per_s > 0 ? ticks_per_s : 100);
    return 0;
}
