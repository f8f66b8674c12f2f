/* fuzz_conf: the configuration loader on arbitrary text, conf_load_string. On success
 * every value is within README's documented range and the struct is self-consistent
 * (greeting lengths, listen addresses, greet-mode buffer rule). On failure the error is a
 * non-empty "NAME:..." string and the caller's struct is exactly as it was, down to the
 * bytes its pointers reach. conf_free must release everything: libFuzzer's leak check. */
#include "config.h"

#include "fuzz.h"

#include "conf.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Whether s[0..n) is valid UTF-8 (shortest forms, no surrogates, <= U+10FFFF). */
static bool fuzz_is_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], extra, min;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            extra = 1, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef)
            extra = 2, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4)
            extra = 3, min = 0x10000;
        else
            return false;
        if (n - i <= extra)
            return false;
        unsigned cp = c & (0x3fu >> extra);
        for (unsigned k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += extra + 1;
    }
    return true;
}

static void fuzz_check_service(const struct conf_service *svc)
{
    FUZZ_ASSERT(svc->mode == PROTO_ECHO || svc->mode == PROTO_GREET);
    FUZZ_ASSERT(svc->greeting != NULL && strlen(svc->greeting) == svc->greeting_len);
    FUZZ_ASSERT(svc->greeting_len <= 4096);
    FUZZ_ASSERT(fuzz_is_utf8((const unsigned char *)svc->greeting, svc->greeting_len));
    /* The template renders within the bound the size rules used. */
    FUZZ_ASSERT(svc->greeting_template.text != NULL &&
                template_max_len(&svc->greeting_template, 64) >= svc->greeting_template.text_len);
    FUZZ_ASSERT(svc->listen_count <= 64);
    FUZZ_ASSERT(svc->listen != NULL || svc->listen_count == 0);
    for (size_t i = 0; i < svc->listen_count; i++) {
        const struct addr *a = &svc->listen[i];
        FUZZ_ASSERT((a->ss.ss_family == AF_INET && a->len == sizeof(struct sockaddr_in)) ||
                    (a->ss.ss_family == AF_INET6 && a->len == sizeof(struct sockaddr_in6)));
    }
}

/* README's ranges, and the rules between keys. */
static void fuzz_check_conf(const struct conf *c)
{
    FUZZ_ASSERT(c->workers <= CONF_MAX_WORKERS);
    FUZZ_ASSERT(c->queue_capacity >= 1 && c->queue_capacity <= 1u << 20);
    FUZZ_ASSERT(c->max_connections >= 1 && c->max_connections <= 10000000);
    FUZZ_ASSERT(c->idle_timeout_ms <= 2147483647u);
    FUZZ_ASSERT(c->shutdown_timeout_ms <= 3600000);
    FUZZ_ASSERT(c->log_level == LOG_LEVEL_ERROR || c->log_level == LOG_LEVEL_WARN ||
                c->log_level == LOG_LEVEL_INFO || c->log_level == LOG_LEVEL_DEBUG);
    FUZZ_ASSERT(c->tcp_backlog >= 1 && c->tcp_backlog <= 65535);
    FUZZ_ASSERT(c->tcp_max_line_bytes >= 1 && c->tcp_max_line_bytes <= 16u << 20);
    FUZZ_ASSERT(c->tcp_buffer_bytes >= 1024 && c->tcp_buffer_bytes <= 64u << 20);
    if (c->tcp.mode == PROTO_GREET)
        FUZZ_ASSERT(c->tcp_buffer_bytes >= c->tcp.greeting_max_bytes + c->tcp_max_line_bytes + 1);
    if (c->udp.mode == PROTO_GREET)
        FUZZ_ASSERT(c->udp_max_reply_bytes > c->udp.greeting_max_bytes);
    FUZZ_ASSERT(c->instance != NULL && strlen(c->instance) >= 1 && strlen(c->instance) <= 64);
    FUZZ_ASSERT(c->udp_max_reply_bytes >= 1 && c->udp_max_reply_bytes <= 65527);
    const struct guard_conf *g = &c->udp_guard;
    FUZZ_ASSERT(g->rate >= 1 && g->rate <= 10000000 && g->burst >= 1 && g->burst <= 10000000);
    FUZZ_ASSERT(g->max_rate <= 100000000);
    FUZZ_ASSERT(g->table_size >= 16 && g->table_size <= 1u << 20);
    FUZZ_ASSERT(g->log_interval_ms >= 100 && g->log_interval_ms <= 86400000);
    fuzz_check_service(&c->tcp);
    fuzz_check_service(&c->udp);
}

/* A deep copy of what a service's pointers reach, to prove a failed load left it alone. */
struct fuzz_service_copy {
    struct conf_service svc;
    char *greeting;
    struct addr *listen;
};

static void fuzz_copy_service(const struct conf_service *svc, struct fuzz_service_copy *copy)
{
    memcpy(&copy->svc, svc, sizeof(*svc));
    copy->greeting = strdup(svc->greeting);
    copy->listen = malloc((svc->listen_count + 1) * sizeof(*svc->listen));
    if (copy->listen)
        memcpy(copy->listen, svc->listen, svc->listen_count * sizeof(*svc->listen));
}

static void fuzz_check_unchanged(const struct conf_service *svc,
                                 const struct fuzz_service_copy *copy)
{
    FUZZ_ASSERT(memcmp(svc, &copy->svc, sizeof(*svc)) == 0);
    FUZZ_ASSERT(copy->greeting && strcmp(svc->greeting, copy->greeting) == 0);
    FUZZ_ASSERT(copy->listen &&
                memcmp(svc->listen, copy->listen, svc->listen_count * sizeof(*svc->listen)) == 0);
}

static void fuzz_free_copy(struct fuzz_service_copy *copy)
{
    free(copy->greeting);
    free(copy->listen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    struct conf c;
    if (text == NULL || conf_init_defaults(&c) != 0) {
        free(text);
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';

    struct conf before;
    memcpy(&before, &c, sizeof(c));
    struct fuzz_service_copy tcp, udp;
    fuzz_copy_service(&c.tcp, &tcp);
    fuzz_copy_service(&c.udp, &udp);
    char err[CONF_ERR_SIZE] = "";
    int rc = conf_load_string(&c, text, "fuzz.conf", err, sizeof(err));
    if (rc == 0) {
        fuzz_check_conf(&c);
    } else {
        FUZZ_ASSERT(rc < 0);
        FUZZ_ASSERT(strncmp(err, "fuzz.conf", 9) == 0 && memchr(err, '\0', sizeof(err)));
        FUZZ_ASSERT(memcmp(&c, &before, sizeof(c)) == 0);
        fuzz_check_unchanged(&c.tcp, &tcp);
        fuzz_check_unchanged(&c.udp, &udp);
    }
    fuzz_free_copy(&tcp);
    fuzz_free_copy(&udp);
    conf_free(&c);
    free(text);
    return 0;
}
