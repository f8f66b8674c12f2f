/* listener: binding the TCP and UDP sockets echod serves, and the port file that tells
 * scripts and tests which ports port 0 became. Main thread, at start-up; the server
 * owns the fds and closes them at exit. */
#include "config.h"

#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* Options every listener gets before bind. */
static int listener_set_options(int fd, const struct addr *a, int type)
{
    int one = 1;
    if (type == SOCK_STREAM && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        return -errno;
    /* [::] must not also take 0.0.0.0: both may be listed side by side. */
    if (a->ss.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
        return -errno;
    return 0;
}

int listener_open(struct listener *l, const struct addr *a, int type, int backlog)
{
    l->fd = -1;
    l->type = type;
    int fd = socket(a->ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = listener_set_options(fd, a, type);
    if (rc == 0 && bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
        rc = -errno;
    if (rc == 0 && type == SOCK_STREAM && listen(fd, backlog) < 0)
        rc = -errno;
    l->bound.len = sizeof(l->bound.ss);
    if (rc == 0 && getsockname(fd, (struct sockaddr *)&l->bound.ss, &l->bound.len) < 0)
        rc = -errno;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    l->fd = fd;
    return 0;
}

int listener_watch(const struct listener *ls, size_t count, int *epfd, int *wake_fd)
{
    *wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    *epfd = epoll_create1(EPOLL_CLOEXEC);
    int rc = *wake_fd < 0 || *epfd < 0 ? -errno : 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (rc == 0 && epoll_ctl(*epfd, EPOLL_CTL_ADD, *wake_fd, &ev) < 0)
        rc = -errno;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        ev.data.ptr = (void *)&ls[i];
        if (epoll_ctl(*epfd, EPOLL_CTL_ADD, ls[i].fd, &ev) < 0)
            rc = -errno;
    }
    if (rc < 0) {
        if (*wake_fd >= 0)
            close(*wake_fd);
        if (*epfd >= 0)
            close(*epfd);
        *wake_fd = *epfd = -1;
    }
    return rc;
}

void listener_close(struct listener *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
}

void listener_describe(const struct listener *l, char *buf, size_t size)
{
    char text[ADDR_STRLEN];
    addr_format((const struct sockaddr *)&l->bound.ss, text, sizeof(text));
    snprintf(buf, size, "%s %s", l->type == SOCK_STREAM ? "tcp" : "udp", text);
}

int listener_write_port_file(const char *path, const struct listener *ls, size_t count)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp))
        return -ENAMETOOLONG;
    FILE *f = fopen(tmp, "we");
    if (f == NULL)
        return -errno;
    for (size_t i = 0; i < count; i++) {
        char line[ADDR_STRLEN + 8];
        listener_describe(&ls[i], line, sizeof(line));
        fprintf(f, "%s\n", line);
    }
    int rc = 0;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        rc = -errno;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}
