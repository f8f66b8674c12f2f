/* sd: the two documented systemd protocols, without libsystemd: readiness notification
 * over NOTIFY_SOCKET (sd_notify(3)) and socket passing through LISTEN_PID, LISTEN_FDS and
 * LISTEN_FDNAMES (sd_listen_fds(3)). Main thread only, at start-up and in main_serve. */
#ifndef ECHOD_SD_H
#define ECHOD_SD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#define SD_LISTEN_FDS_START 3    /* the first passed fd, by the protocol */
#define SD_LISTEN_FDS_MAX   1024 /* more than this is a broken environment, not a config */
#define SD_FDNAME_MAX       255  /* systemd's limit on FileDescriptorName= */

/* Where echod's notifications go: opened once, then any number of messages. */
struct sd_notify {
    int fd;                  /* datagram socket; -1 when NOTIFY_SOCKET was not set */
    struct sockaddr_un addr; /* the manager's socket, path or abstract */
    socklen_t addr_len;      /* offsetof(sun_path) + the name's length, not sizeof */
};

/* Read NOTIFY_SOCKET ("/path" or "@abstract"), unset it, and open a socket to send to
 * it. 0 with n->fd == -1 when it is unset; 0; or -errno (-EINVAL for a malformed
 * value, with n->fd == -1). */
int sd_notify_open(struct sd_notify *n);
/* Whether notifications go anywhere. */
bool sd_notify_is_on(const struct sd_notify *n);
/* Send one datagram of "KEY=value" lines, e.g. "READY=1\nSTATUS=serving". It never
 * blocks (MSG_DONTWAIT) and never raises SIGPIPE. The same call serves every message
 * of the protocol: STOPPING=1, STATUS=, and RELOADING=1 with MONOTONIC_USEC= or
 * WATCHDOG=1 alike. 0 (also when off) or -errno. */
int sd_notify_send(const struct sd_notify *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Close the socket; safe when off or closed. */
void sd_notify_close(struct sd_notify *n);

/* The sockets a manager passed: fds SD_LISTEN_FDS_START .. + count - 1. */
struct sd_listen {
    size_t count;       /* 0: none passed (LISTEN_FDS unset) */
    const char **names; /* count names from LISTEN_FDNAMES, or NULL when it is unset */
    char *names_text;   /* the copy of LISTEN_FDNAMES names point into */
};

/* Take the sockets passed in LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES: check the pid is
 * ours, the count sane and the names one per fd, unset the three variables (whatever
 * the outcome), and make each fd close-on-exec and non-blocking. 0 (out->count is 0 when
 * LISTEN_FDS is unset); or -errno with err saying which variable is wrong: -ESRCH when
 * LISTEN_PID names another process, -EINVAL for a malformed value, -EBADF when a
 * passed fd is not open. Release with sd_listen_free. */
int sd_listen_take(struct sd_listen *out, char *err, size_t err_size);
/* The name of passed socket i, or NULL when the manager gave no names. */
const char *sd_listen_name(const struct sd_listen *l, size_t i);
/* Free the names; the fds belong to whoever adopted them. */
void sd_listen_free(struct sd_listen *l);

#endif
