/* proto: the replies echod sends. Echo needs no code here: the bytes go back as they
 * came. Greet frames input into '\n'-terminated lines and answers each one with the
 * greeting followed by the line. Pure functions over caller-owned buffers; any thread. */
#include "config.h"

#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const proto_names[] = {"echo", "greet"};

/* Append greeting + line (+ '\n' when add_newline) to out, which has room. */
static void proto_greet_emit(const struct proto_greet *g, const char *line, size_t len,
                             bool add_newline, struct buf *out)
{
    buf_append(out, g->greeting, g->greeting_len);
    buf_append(out, line, len);
    if (add_newline)
        buf_append(out, "\n", 1);
}

enum proto_status proto_greet_frame(const struct proto_greet *g, const char *in, size_t len,
                                    bool at_eof, struct buf *out, size_t *consumed)
{
    enum proto_status status = PROTO_NEED_MORE;
    size_t pos = 0;
    while (pos < len) {
        size_t rest = len - pos;
        const char *nl = memchr(in + pos, '\n', rest);
        size_t line_len = nl ? (size_t)(nl - (in + pos)) + 1 : rest;
        size_t content_len = nl ? line_len - 1 : rest;
        bool add_newline = nl == NULL;
        if (content_len > g->max_line_bytes) {
            status = PROTO_LINE_TOO_LONG;
            break;
        }
        if (nl == NULL && !at_eof)
            break; /* a partial line: wait for the rest */
        if (buf_space(out) < g->greeting_len + line_len + add_newline) {
            status = PROTO_OUT_FULL;
            break;
        }
        proto_greet_emit(g, in + pos, line_len, add_newline, out);
        pos += line_len;
    }
    *consumed = pos;
    return status;
}

int proto_line_too_long_reply(const struct proto_greet *g, char *buf, size_t size)
{
    return snprintf(buf, size, "error: line longer than %zu bytes\n", g->max_line_bytes);
}

int proto_mode_parse(const char *name, enum proto_mode *out)
{
    for (size_t i = 0; i < sizeof(proto_names) / sizeof(proto_names[0]); i++) {
        if (strcmp(name, proto_names[i]) == 0) {
            *out = (enum proto_mode)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *proto_mode_name(enum proto_mode mode)
{
    return proto_names[mode];
}
