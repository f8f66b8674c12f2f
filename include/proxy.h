/* proxy: the PROXY protocol header a load balancer (HAProxy, ...) sends before the client's
 * bytes, versions 1 (a text line) and 2 (binary), parsed incrementally from pieces of any
 * size; and the networks allowed to send one (tcp.proxy_from). Pure functions over
 * caller-owned structs: no I/O, no allocation, any thread. */
#ifndef ECHOD_PROXY_H
#define ECHOD_PROXY_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest v1 line, CRLF included ("PROXY UNKNOWN" + two full IPv6 addresses and
 * ports: the longest line a sender emits). */
#define PROXY_V1_MAX_BYTES 107
/* The fixed part of a v2 header: signature, version and command, family, length. */
#define PROXY_V2_HEADER_BYTES 16

/* Which headers a listener accepts (tcp.proxy_protocol). */
enum proxy_accept { PROXY_OFF, PROXY_V1, PROXY_V2, PROXY_ANY };

enum proxy_status {
    PROXY_NEED_MORE, /* every byte given belongs to the header, which is not complete yet */
    PROXY_DONE,      /* the header is complete; see proxy_parser.header */
    PROXY_ERROR,     /* the bytes are no header echod serves; see proxy_parser.error */
};

enum proxy_error {
    PROXY_ERR_NONE,
    PROXY_ERR_MALFORMED,   /* not a PROXY header, or one that breaks the specification */
    PROXY_ERR_UNSUPPORTED, /* a header echod does not serve: of the version that
                              tcp.proxy_protocol leaves out, a v2 version other than 2,
                              v2 UDP or AF_UNIX */
    PROXY_ERR_TOO_LONG,    /* a v1 line with no CRLF within PROXY_V1_MAX_BYTES */
};

/* An IPv4 or IPv6 socket address, small enough to keep per connection. */
union proxy_addr {
    struct sockaddr sa; /* sa_family AF_UNSPEC: none */
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/* What a complete header says. */
struct proxy_header {
    unsigned version;     /* 1 or 2 */
    bool is_local;        /* v2 LOCAL, v2 AF_UNSPEC or v1 UNKNOWN: use the real peer */
    union proxy_addr src; /* the client, when !is_local */
    union proxy_addr dst; /* the address the client connected to, when !is_local */
    size_t header_bytes;  /* the header's whole length */
};

/* The state of one header being read: init, then feed it every byte in order. */
struct proxy_parser {
    enum proxy_accept accept;
    enum proxy_error error; /* sticky once set */
    unsigned version;       /* 0 until the first byte tells */
    bool is_done;
    uint8_t buf[PROXY_V1_MAX_BYTES]; /* v1: the line; v2: fixed part and addresses */
    size_t have;                     /* bytes in buf */
    size_t total;                    /* header bytes consumed so far */
    size_t v2_end;                   /* v2: total length once the fixed part is in */
    size_t v2_addr_end;              /* v2: where the addresses end (then come TLVs) */
    uint8_t tlv[3];                  /* v2: a TLV's type and length, as they come */
    size_t tlv_have;                 /* bytes in tlv */
    size_t tlv_skip;                 /* bytes of the current TLV's value still to skip */
    bool is_skipping_raw;            /* v2 LOCAL or AF_UNSPEC: the rest is skipped unread */
    struct proxy_header header;      /* once PROXY_DONE */
};

/* A network of tcp.proxy_from: an address (IPv4 as IPv4-mapped IPv6) and a prefix. */
struct proxy_net {
    uint8_t addr[16];
    unsigned prefix_bits; /* 0..128, of the 16-byte form */
};

/* Start reading a header that `accept` allows (not PROXY_OFF). */
void proxy_parser_init(struct proxy_parser *p, enum proxy_accept accept);
/* Feed the next len bytes of the stream. *consumed gets how many of them belong to the
 * header: all of them on PROXY_NEED_MORE; on PROXY_DONE the rest is ordinary data; on
 * PROXY_ERROR those read up to the fault, that byte included. Once done or failed, it stays so. */
enum proxy_status proxy_parse(struct proxy_parser *p, const uint8_t *data, size_t len,
                              size_t *consumed);
/* "malformed", "unsupported" or "too long". */
const char *proxy_error_name(enum proxy_error e);

/* "off", "v1", "v2" or "any" to the setting; 0 or -EINVAL. */
int proxy_accept_parse(const char *name, enum proxy_accept *out);
/* The setting's name. */
const char *proxy_accept_name(enum proxy_accept a);

/* Parse "10.0.0.0/8", "2001:db8::/32" or a bare address (a /32 or /128); the address
 * must have no bit set past the prefix. 0 or -EINVAL. */
int proxy_net_parse(const char *text, struct proxy_net *out);
/* Whether sa (AF_INET or AF_INET6; IPv4-mapped IPv6 counts as IPv4) lies in one of
 * nets[0..count). */
bool proxy_net_contains(const struct proxy_net *nets, size_t count, const struct sockaddr *sa);

#endif
