/* sd: systemd's readiness notification and socket passing, as sd_notify(3) and
 * sd_listen_fds(3) document them, in a hundred lines of our own instead of libsystemd
 * (which would pull liblzma, libzstd, liblz4 and libgcrypt into a network daemon).
 * Main thread only: start-up reads and unsets the environment; main_serve sends. Owns
 * the notify socket; the passed fds belong to whoever adopts them. Workers never call
 * it, so a manager that stops reading can never stall a connection. */
#include "config.h"

#include "sd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SD_NOTIFY_MAX 4096 /* longest message; systemd reads far larger */

int sd_notify_open(struct sd_notify *n)
{
    memset(n, 0, sizeof(*n));
    n->fd = -1;
    const char *name = getenv("NOTIFY_SOCKET");
    if (name == NULL)
        return 0;
    size_t len = strlen(name);
    int rc = 0;
    if (name[0] != '/' && name[0] != '@')
        rc = -EAFNOSUPPORT; /* vsock: and the like are for VMs, not for echod */
    else if (len < 2 || len > sizeof(n->addr.sun_path))
        rc = -EINVAL;
    if (rc == 0) {
        n->addr.sun_family = AF_UNIX;
        memcpy(n->addr.sun_path, name, len);
        if (name[0] == '@')
            n->addr.sun_path[0] = '\0'; /* abstract: a leading NUL, no trailing one */
        n->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
        n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (n->fd < 0)
            rc = -errno;
    }
    unsetenv("NOTIFY_SOCKET"); /* nothing echod starts should notify in its name */
    return rc;
}

bool sd_notify_is_on(const struct sd_notify *n)
{
    return n->fd >= 0;
}

int sd_notify_send(const struct sd_notify *n, const char *fmt, ...)
{
    if (n->fd < 0)
        return 0;
    char text[SD_NOTIFY_MAX];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof(text))
        return -EMSGSIZE;
    ssize_t sent;
    do {
        sent = sendto(n->fd, text, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT,
                      (const struct sockaddr *)&n->addr, n->addr_len);
    } while (sent < 0 && errno == EINTR);
    return sent < 0 ? -errno : 0;
}

void sd_notify_close(struct sd_notify *n)
{
    if (n->fd >= 0)
        close(n->fd);
    n->fd = -1;
}

/* A count or pid: decimal digits only, at most max. 0 or -EINVAL. */
static int sd_parse_number(const char *text, unsigned long max, unsigned long *out)
{
    if (text == NULL || text[0] < '0' || text[0] > '9')
        return -EINVAL; /* empty, a sign or a space */
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/* Split names (owned by l) at ':' into l->names; 0, or -EINVAL unless one per fd. */
static int sd_split_names(struct sd_listen *l, char *err, size_t err_size)
{
    size_t given = 1;
    for (const char *p = l->names_text; *p; p++)
        given += *p == ':';
    if (l->count == 0 && l->names_text[0] == '\0')
        return 0;
    if (given != l->count) {
        snprintf(err, err_size, "LISTEN_FDNAMES=%s names %zu socket%s, but LISTEN_FDS=%zu",
                 l->names_text, given, given == 1 ? "" : "s", l->count);
        return -EINVAL;
    }
    l->names = calloc(given, sizeof(*l->names));
    if (l->names == NULL)
        return -ENOMEM;
    char *p = l->names_text;
    for (size_t i = 0; i < given; i++) {
        char *colon = strchr(p, ':');
        if (colon)
            *colon = '\0';
        if (strlen(p) > SD_FDNAME_MAX) {
            snprintf(err, err_size, "LISTEN_FDNAMES: name %zu is longer than %d bytes", i + 1,
                     SD_FDNAME_MAX);
            return -EINVAL;
        }
        l->names[i] = p;
        p = colon ? colon + 1 : p + strlen(p);
    }
    return 0;
}

/* Check LISTEN_PID and LISTEN_FDS (still in the environment) and split names_text. */
static int sd_listen_check(struct sd_listen *l, char *err, size_t err_size)
{
    const char *pid_text = getenv("LISTEN_PID");
    const char *fds_text = getenv("LISTEN_FDS");
    if (fds_text == NULL)
        return 0;
    unsigned long pid, count;
    if (pid_text == NULL) {
        snprintf(err, err_size, "LISTEN_FDS=%s is set without LISTEN_PID", fds_text);
        return -EINVAL;
    }
    if (sd_parse_number(pid_text, INT32_MAX, &pid) < 0 || pid == 0) {
        snprintf(err, err_size, "LISTEN_PID=%s is not a process id", pid_text);
        return -EINVAL;
    }
    if (pid != (unsigned long)getpid()) {
        snprintf(err, err_size,
                 "LISTEN_PID=%lu is not echod's pid %ld: the sockets were passed to another "
                 "process (start echod with exec, not as a child of a shell)",
                 pid, (long)getpid());
        return -ESRCH;
    }
    if (sd_parse_number(fds_text, SD_LISTEN_FDS_MAX, &count) < 0) {
        snprintf(err, err_size, "LISTEN_FDS=%s is not a count of sockets from 0 to %d", fds_text,
                 SD_LISTEN_FDS_MAX);
        return -EINVAL;
    }
    l->count = count;
    return l->names_text ? sd_split_names(l, err, err_size) : 0;
}

/* Make passed fd close-on-exec and non-blocking (they arrive blocking); 0 or -errno. */
static int sd_adopt_fd(int fd)
{
    int fd_flags = fcntl(fd, F_GETFD);
    if (fd_flags < 0 || fcntl(fd, F_SETFD, fd_flags | FD_CLOEXEC) < 0)
        return -errno;
    int fl_flags = fcntl(fd, F_GETFL);
    if (fl_flags < 0 || fcntl(fd, F_SETFL, fl_flags | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

int sd_listen_take(struct sd_listen *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    const char *names = getenv("LISTEN_FDNAMES");
    int rc = 0;
    if (names && getenv("LISTEN_FDS") && (out->names_text = strdup(names)) == NULL)
        rc = -ENOMEM;
    if (rc == 0)
        rc = sd_listen_check(out, err, err_size);
    if (rc == -ENOMEM)
        snprintf(err, err_size, "out of memory");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    for (size_t i = 0; rc == 0 && i < out->count; i++) {
        int fd = SD_LISTEN_FDS_START + (int)i;
        if ((rc = sd_adopt_fd(fd)) < 0)
            snprintf(err, err_size, "LISTEN_FDS=%zu, but fd %d cannot be used: %s", out->count, fd,
                     strerror(-rc));
    }
    if (rc < 0) {
        sd_listen_free(out);
        return rc;
    }
    return 0;
}

const char *sd_listen_name(const struct sd_listen *l, size_t i)
{
    return l->names ? l->names[i] : NULL;
}

void sd_listen_free(struct sd_listen *l)
{
    free(l->names);
    free(l->names_text);
    memset(l, 0, sizeof(*l));
}
