/* scrape: one HTTP/1.0 GET of a metrics endpoint, as `echod-cli --stat` does once a
 * second: connect, send the request, read the response to EOF within the target's -T and
 * SCRAPE_MAX_RESPONSE_BYTES, check the status line and split the headers from the body.
 * Runs on the tool's only thread; the response buffer is the caller's and is reused. */
#ifndef ECHOD_SCRAPE_H
#define ECHOD_SCRAPE_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"

/* The largest response read; echod's metrics are a few KiB. */
#define SCRAPE_MAX_RESPONSE_BYTES (4u * 1024u * 1024u)
/* Room for the text of what went wrong. */
#define SCRAPE_ERROR_SIZE 200

/* One response: the raw bytes and, once parsed, where its parts are. */
struct scrape_response {
    char *buf; /* the whole response, NUL-terminated; grows, kept between scrapes */
    size_t cap;
    size_t len;
    int status;       /* the status code, e.g. 200 */
    const char *body; /* into buf */
    size_t body_len;
    uint64_t first_byte_us;        /* clock_now_us when its first byte arrived */
    char error[SCRAPE_ERROR_SIZE]; /* why the last fetch failed, for a message */
};

/* GET path from t (each of its addresses in turn; t->addr becomes the one that answered)
 * within t->timeout_ms, into r. 0 for a complete 200 response; -ECANCELED as soon as
 * cancel_fd (if >= 0) polls readable; else -errno, with r->error saying what happened:
 * -ECONNREFUSED, -ECONNRESET, -ETIMEDOUT, -EMSGSIZE (over the size cap), -EPROTO (not
 * HTTP, not 200, cut short), ... */
int scrape_fetch(struct client_target *t, const char *path, int cancel_fd,
                 struct scrape_response *r);
/* Parse r->buf[0..len) as a whole HTTP response: status, headers, then the body (its
 * Content-Length, if given, must match). 0 for a 200 response; -EPROTO otherwise, with
 * r->error saying why. Pure. */
int scrape_parse_response(struct scrape_response *r);
/* Release r's buffer. */
void scrape_response_free(struct scrape_response *r);

#endif
