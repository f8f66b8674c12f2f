/* server: owns the listeners and every thread, and runs start-up and shutdown in order.
 * Main thread only. */
#ifndef ECHOD_SERVER_H
#define ECHOD_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "listener.h"
#include "sd.h"

struct server;

/* Bind every listener of c or, when systemd passed sockets, adopt those instead (the
 * listen lists of c are then not used). 0; or -errno with err naming the address that
 * failed or the passed socket that was refused. */
int server_open(const struct conf *c, const struct sd_listen *passed, struct server **out,
                char *err, size_t err_size);
/* Write the port file: one "tcp ADDR:PORT", "udp ADDR:PORT" or "metrics ADDR:PORT"
 * line per listener, in that order (see listener_write_port_file); 0 or -errno. */
int server_write_port_file(const struct server *s, const char *path);
/* Start the UDP thread, the workers, the acceptor, and last the metrics endpoints;
 * 0 or -errno. */
int server_start(struct server *s);
/* Before a reload: warn about each key of next that cannot change while echod runs
 * (workers, queue_capacity, switching the per-IP limit or a whole service on or off)
 * and set it back to the value in force. */
void server_reload_keep_fixed(const struct server *s, struct conf *next);
/* Apply next (checked, and passed through server_reload_keep_fixed): open the added
 * listeners, start the added metrics endpoints, publish the new settings to every
 * thread and wake them; listeners no longer listed are retired by their threads, and
 * metrics endpoints no longer listed are stopped. 0; or -errno with err saying why, and
 * nothing changed. The caller then makes next its configuration in force. */
int server_reload(struct server *s, const struct conf *next, char *err, size_t err_size);
/* The TCP, UDP and metrics listeners echod serves: those in force when next is NULL or
 * systemd passed the sockets, else those the configuration next (a reload's) would
 * have, for the services that run. */
void server_count_listeners(const struct server *s, const struct conf *next, size_t *tcp,
                            size_t *udp, size_t *metrics);
/* The watchdog's question: has every thread (acceptor, UDP, workers) slept idle in
 * epoll_wait or come back to its loop within interval_ms? (see evloop_is_alive) */
bool server_is_alive(const struct server *s, uint64_t now_ms, uint64_t interval_ms);
/* Count a reload as applied or refused (the reloads / reload_failures counters). */
void server_count_reload(struct server *s, bool is_applied);
/* Stop accepting now and let workers drain until shutdown_timeout_ms. Calling it again
 * cuts the wait short. */
void server_shutdown(struct server *s);
/* Whether server_shutdown has been called. */
bool server_is_shutting_down(const struct server *s);
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
