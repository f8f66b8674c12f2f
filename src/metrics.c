/* metrics: the Prometheus endpoint over libmicrohttpd. The main thread starts one MHD
 * daemon per metrics listener, on the already-bound socket (MHD_OPTION_LISTEN_SOCKET),
 * so a listener from the listen list, a kept one after a reload and one systemd passed
 * are served alike; MHD's own polling thread (started with every signal blocked) then
 * answers requests, calling the render callback for each scrape. It owns its daemon and
 * a reference to its listener.
 *
 * DESIGN. The endpoint must never slow the echo service: its thread only reads counters
 * the serving threads publish lock-free, and every resource a client can take is
 * bounded: connections in all and per client IP, an inactivity timeout for slowloris,
 * and a memory pool per connection (a request whose headers do not fit gets 431).
 * Paths other than /metrics get 404; methods other than GET and HEAD, 405 with
 * "Allow: GET, HEAD". A scrape's connection stays open for the next scrape. */
#include "config.h"

#include "metrics.h"

#include <errno.h>
#include <microhttpd.h>
#include <signal.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct metrics {
    struct MHD_Daemon *daemon;
    struct listener *listener; /* a reference of ours */
    metrics_render_fn *render;
    void *arg;
};

/* MHD's messages (a refused connection, a timeout...), at debug level: any client can
 * cause them at will, so they must not flood the log. */
static void metrics_log(void *arg, const char *fmt, va_list ap)
{
    (void)arg;
    if (!log_is_enabled(LOG_LEVEL_DEBUG))
        return;
    char text[256];
    vsnprintf(text, sizeof(text), fmt, ap);
    text[strcspn(text, "\n")] = '\0';
    log_debug("metrics: %s", text);
}

/* Queue a small fixed answer: status, a one-line body, and Allow when allow is set. */
static enum MHD_Result metrics_answer_text(struct MHD_Connection *conn, unsigned status,
                                           const char *body, const char *allow)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* Render a scrape and queue it. */
static enum MHD_Result metrics_answer_scrape(struct metrics *m, struct MHD_Connection *conn)
{
    struct promtext text;
    promtext_init(&text);
    m->render(m->arg, &text);
    if (text.is_out_of_memory || text.data == NULL) {
        promtext_free(&text);
        return metrics_answer_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", NULL);
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(text.len, text.data, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        promtext_free(&text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, PROMTEXT_CONTENT_TYPE);
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

/* MHD's request handler: called once the headers are in, then for each piece of a
 * body, then once more at its end. Another method is answered at once, so MHD closes
 * the connection rather than read a body nobody wants; GET and HEAD are answered at the
 * end (any body discarded), which lets MHD keep the connection alive for the next
 * scrape, as Prometheus expects. */
static enum MHD_Result metrics_handle(void *arg, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **request)
{
    static int headers_seen; /* its address marks a request whose headers came in */
    (void)version;
    (void)upload_data;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return metrics_answer_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                                   "method not allowed: use GET or HEAD\n", "GET, HEAD");
    if (*request == NULL) {
        *request = &headers_seen;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/metrics") != 0)
        return metrics_answer_text(conn, MHD_HTTP_NOT_FOUND,
                                   "not found: the metrics are at /metrics\n", NULL);
    return metrics_answer_scrape(arg, conn);
}

int metrics_start(struct listener *l, metrics_render_fn *render, void *arg, struct metrics **out)
{
    struct metrics *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    m->render = render;
    m->arg = arg;
    /* MHD's thread inherits this thread's mask: every signal blocked, as echod's other
     * threads run (the main thread unblocks the job-control ones after start-up). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    m->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG, 0, NULL,
        NULL, metrics_handle, m, MHD_OPTION_EXTERNAL_LOGGER, metrics_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, l->fd, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)METRICS_MAX_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)METRICS_MAX_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)METRICS_MEMORY_BYTES, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (m->daemon == NULL) { /* MHD says no more than that (its lines are at debug level) */
        char where[ADDR_STRLEN + 8];
        listener_describe(l, where, sizeof(where));
        log_error("libmicrohttpd cannot serve %s (threads, fds or memory ran out?)", where);
        free(m);
        return -ENOMEM;
    }
    m->listener = listener_ref(l);
    *out = m;
    return 0;
}

const struct listener *metrics_listener(const struct metrics *m)
{
    return m->listener;
}

void metrics_stop(struct metrics *m)
{
    if (m == NULL)
        return;
    /* Quiesced first, MHD hands the listening socket back instead of closing it: the
     * listener's last reference closes it, or a reload keeps it. */
    MHD_quiesce_daemon(m->daemon);
    MHD_stop_daemon(m->daemon);
    listener_unref(m->listener);
    free(m);
}
