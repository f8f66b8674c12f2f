/* listener: binding the TCP and UDP sockets echod serves (and the metrics endpoint's),
 * or adopting the ones systemd passed (socket activation), and the port file that tells scripts and
 * tests which ports port 0 became. The main thread opens listeners (at start-up and on reload);
 * references are taken and dropped by any thread, and the last one closes the socket
 * (see listener.h). */
#include "config.h"

#include "listener.h"

#include <errno.h>
#include <linux/filter.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Options every listener gets before bind. */
static int listener_set_options(int fd, const struct addr *a, int type, bool is_reuseport)
{
    int one = 1;
    if (type == SOCK_STREAM && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        return -errno;
    if (is_reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        return -errno;
    /* [::] must not also take 0.0.0.0: both may be listed side by side. */
    if (a->ss.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
        return -errno;
    return 0;
}

int listener_open(const struct addr *a, int type, int backlog, bool is_reuseport,
                  struct listener **out)
{
    struct listener *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    atomic_init(&l->refs, 1);
    l->type = type;
    l->is_reuseport = is_reuseport;
    l->configured = *a;
    int fd = socket(a->ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        free(l);
        return -errno;
    }
    int rc = listener_set_options(fd, a, type, is_reuseport);
    if (rc == 0 && bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
        rc = -errno;
    if (rc == 0 && type == SOCK_STREAM && listen(fd, backlog) < 0)
        rc = -errno;
    l->bound.len = sizeof(l->bound.ss);
    if (rc == 0 && getsockname(fd, (struct sockaddr *)&l->bound.ss, &l->bound.len) < 0)
        rc = -errno;
    if (rc < 0) {
        close(fd);
        free(l);
        return rc;
    }
    l->fd = fd;
    *out = l;
    return 0;
}

/* The socket names echod knows (FileDescriptorName=), and the type each must have. */
static const struct {
    const char *name;
    int type;
} listener_names[] = {
    {"tcp", SOCK_STREAM},
    {"udp", SOCK_DGRAM},
    {"metrics", SOCK_STREAM},
};

/* The socket type name must have: SOCK_STREAM or SOCK_DGRAM, -1 for no name or one
 * echod does not know (then the socket's own type decides). */
static int listener_type_of_name(const char *name)
{
    for (size_t i = 0; name && i < sizeof(listener_names) / sizeof(listener_names[0]); i++)
        if (strcmp(name, listener_names[i].name) == 0)
            return listener_names[i].type;
    return -1;
}

/* Refuse fd: err says why, after "fd N (name)". Returns rc. */
static int listener_refuse(int rc, int fd, const char *name, char *err, size_t err_size,
                           const char *why)
{
    snprintf(err, err_size, "socket activation: fd %d (%s%s%s) %s", fd, name ? "named \"" : "",
             name ? name : "unnamed", name ? "\"" : "", why);
    return rc;
}

/* Why fd cannot be a listener (0: it can), and its type. */
static int listener_check_passed(int fd, const char *name, int *type_out, char *err,
                                 size_t err_size)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return listener_refuse(-errno, fd, name, err, err_size, "cannot be examined");
    if (!S_ISSOCK(st.st_mode))
        return listener_refuse(-ENOTSOCK, fd, name, err, err_size, "is not a socket");
    int domain = 0, type = 0, is_listening = 0;
    socklen_t len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &is_listening, &len) < 0)
        return listener_refuse(-errno, fd, name, err, err_size, "cannot be examined");
    if (domain != AF_INET && domain != AF_INET6)
        return listener_refuse(-EAFNOSUPPORT, fd, name, err, err_size,
                               "is not an IPv4 or IPv6 socket");
    if (type == SOCK_STREAM && !is_listening)
        return listener_refuse(-EISCONN, fd, name, err, err_size,
                               "is a TCP socket that is not listening, such as a connection "
                               "passed by Accept=yes: echod needs Accept=no");
    if (type != SOCK_STREAM && type != SOCK_DGRAM)
        return listener_refuse(-ESOCKTNOSUPPORT, fd, name, err, err_size,
                               "is neither a TCP (stream) nor a UDP (datagram) socket");
    int want = listener_type_of_name(name);
    if (want > 0 && want != type && name && strcmp(name, "metrics") == 0)
        return listener_refuse(-EPROTOTYPE, fd, name, err, err_size,
                               "is a UDP socket: the metrics endpoint needs a TCP one");
    if (want > 0 && want != type)
        return listener_refuse(-EPROTOTYPE, fd, name, err, err_size,
                               type == SOCK_STREAM ? "is a TCP socket, not a UDP one"
                                                   : "is a UDP socket, not a TCP one");
    *type_out = type;
    return 0;
}

int listener_adopt(int fd, const char *name, struct listener **out, char *err, size_t err_size)
{
    int type = 0;
    int rc = listener_check_passed(fd, name, &type, err, err_size);
    struct listener *l = rc == 0 ? calloc(1, sizeof(*l)) : NULL;
    if (rc == 0 && l == NULL)
        rc = listener_refuse(-ENOMEM, fd, name, err, err_size, "cannot be kept: out of memory");
    if (rc < 0)
        return rc;
    l->bound.len = sizeof(l->bound.ss);
    if (getsockname(fd, (struct sockaddr *)&l->bound.ss, &l->bound.len) < 0) {
        free(l);
        return listener_refuse(-errno, fd, name, err, err_size, "has no address");
    }
    atomic_init(&l->refs, 1);
    l->fd = fd;
    l->type = type;
    l->is_adopted = true;
    l->is_metrics = name && strcmp(name, "metrics") == 0;
    l->configured = l->bound;
    *out = l;
    return 0;
}

struct listener *listener_ref(struct listener *l)
{
    atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
    return l;
}

void listener_unref(struct listener *l)
{
    if (l == NULL || atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1)
        return;
    close(l->fd);
    free(l);
}

/* Whether two addresses are the same, byte for byte. */
static bool listener_same_addr(const struct addr *x, const struct addr *y)
{
    return x->len == y->len && memcmp(&x->ss, &y->ss, x->len) == 0;
}

bool listener_matches(const struct listener *l, const struct addr *a, int type, bool is_reuseport)
{
    return l->type == type && l->is_reuseport == is_reuseport &&
           (listener_same_addr(&l->configured, a) || listener_same_addr(&l->bound, a));
}

int listener_refuse_syns(struct listener *l)
{
    /* Classic BPF over the TCP header (where a TCP socket's filter starts): drop a
     * segment whose flags have SYN without ACK, keep everything else. */
    static const struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),          /* the flags byte */
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),       /* SYN | ACK */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1), /* SYN alone? */
        BPF_STMT(BPF_RET | BPF_K, 0),                    /* drop */
        BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),          /* keep */
    };
    struct sock_fprog prog = {sizeof(code) / sizeof(code[0]), (struct sock_filter *)code};
    if (setsockopt(l->fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0)
        return -errno;
    return 0;
}

void listener_stop(struct listener *l)
{
    if (l->type == SOCK_STREAM && !l->is_adopted)
        shutdown(l->fd, SHUT_RDWR);
}

int listener_set_add(struct listener_set *set, struct listener *l)
{
    struct listener **items = realloc(set->items, (set->count + 1) * sizeof(*items));
    if (items == NULL) {
        listener_unref(l);
        return -ENOMEM;
    }
    items[set->count++] = l;
    set->items = items;
    return 0;
}

int listener_set_copy(struct listener_set *to, const struct listener_set *from)
{
    *to = (struct listener_set){0};
    for (size_t i = 0; i < from->count; i++) {
        if (listener_set_add(to, listener_ref(from->items[i])) < 0) {
            listener_set_clear(to);
            return -ENOMEM;
        }
    }
    return 0;
}

bool listener_set_holds(const struct listener_set *set, const struct listener *l)
{
    for (size_t i = 0; i < set->count; i++)
        if (set->items[i] == l)
            return true;
    return false;
}

void listener_set_clear(struct listener_set *set)
{
    for (size_t i = 0; i < set->count; i++)
        listener_unref(set->items[i]);
    free(set->items);
    *set = (struct listener_set){0};
}

int listener_watch(const struct listener_set *set, int *epfd, int *wake_fd)
{
    *wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    *epfd = epoll_create1(EPOLL_CLOEXEC);
    int rc = *wake_fd < 0 || *epfd < 0 ? -errno : 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (rc == 0 && epoll_ctl(*epfd, EPOLL_CTL_ADD, *wake_fd, &ev) < 0)
        rc = -errno;
    for (size_t i = 0; rc == 0 && i < set->count; i++) {
        ev.data.ptr = set->items[i];
        if (epoll_ctl(*epfd, EPOLL_CTL_ADD, set->items[i]->fd, &ev) < 0)
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

void listener_describe(const struct listener *l, char *buf, size_t size)
{
    char text[ADDR_STRLEN];
    addr_format((const struct sockaddr *)&l->bound.ss, text, sizeof(text));
    snprintf(buf, size, "%s %s",
             l->is_metrics            ? "metrics"
             : l->type == SOCK_STREAM ? "tcp"
                                      : "udp",
             text);
}

int listener_write_port_file(const char *path, const struct listener_set *const *sets, size_t count)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp))
        return -ENAMETOOLONG;
    FILE *f = fopen(tmp, "we");
    if (f == NULL)
        return -errno;
    for (size_t k = 0; k < count; k++) {
        for (size_t i = 0; i < sets[k]->count; i++) {
            char line[ADDR_STRLEN + 8];
            listener_describe(sets[k]->items[i], line, sizeof(line));
            fprintf(f, "%s\n", line);
        }
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
