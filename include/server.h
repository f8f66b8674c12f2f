/* server: owns the listeners and every thread, and runs start-up and shutdown in order.
 * Main thread only. */
#ifndef ECHOD_SERVER_H
#define ECHOD_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"
#include "listener.h"
#include "sd.h"

struct server;

/* Bind every listener of c or, when systemd passed sockets, adopt those instead (the
 * listen lists of c are then not used). 0; or -errno with err naming the address that
 * failed or the passed socket that was refused. */
int server_open(const struct conf *c, const struct sd_listen *passed, struct server **out,
                char *err, size_t err_size);
/* The bound listeners, TCP first. */
const struct listener *server_listeners(const struct server *s, size_t *count);
/* Start the UDP thread, the workers and the acceptor; 0 or -errno. */
int server_start(struct server *s);
/* Stop accepting now and let workers drain until shutdown_timeout_ms. Calling it again
 * cuts the wait short. */
void server_shutdown(struct server *s);
/* An eventfd that becomes readable each time a worker finishes draining. */
int server_done_fd(const struct server *s);
/* After server_done_fd polled readable: whether every worker has now finished. */
bool server_is_done(struct server *s);
/* Log every counter, summed over threads, at info level. */
void server_log_stats(struct server *s);
/* One line for systemd's STATUS=: "serving: 3 open connections, 120 accepted, 98765
 * bytes echoed; 45 datagrams answered" ("stopping: ..." once the drain began). */
void server_status(struct server *s, char *buf, size_t size);
/* Join every thread, close every listener, free s. */
void server_destroy(struct server *s);

#endif
