/* proto: what echod answers. Echo returns the bytes; greet answers each line (TCP) or
 * datagram (UDP) with a greeting followed by the data. Pure functions; any thread. */
#ifndef ECHOD_PROTO_H
#define ECHOD_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

enum proto_mode { PROTO_ECHO, PROTO_GREET };

enum proto_status {
    PROTO_NEED_MORE,     /* every complete line answered; the rest is a partial line */
    PROTO_OUT_FULL,      /* a complete line is waiting for output space */
    PROTO_LINE_TOO_LONG, /* a line is longer than max_line_bytes: answer with an error */
};

struct proto_greet {
    const char *greeting;
    size_t greeting_len;
    size_t max_line_bytes; /* longest line, not counting its '\n' */
};

/* Answer every complete '\n'-terminated line of in[0..len) that fits into out with
 * greeting + line. With at_eof, a trailing partial line is answered as if it ended in
 * '\n'. Sets *consumed to the input bytes answered; returns why it stopped. */
enum proto_status proto_greet_frame(const struct proto_greet *g, const char *in, size_t len,
                                    bool at_eof, struct buf *out, size_t *consumed);

/* The one-line reply sent before closing a connection whose line was too long. */
int proto_line_too_long_reply(const struct proto_greet *g, char *buf, size_t size);

/* "echo" or "greet" to the mode; 0 or -EINVAL. */
int proto_mode_parse(const char *name, enum proto_mode *out);
/* The mode's name. */
const char *proto_mode_name(enum proto_mode mode);

#endif
