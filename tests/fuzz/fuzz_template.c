/* fuzz_template: template_compile on arbitrary bytes, against a reference. The reference
 * reads the text left to right: "{{" and "}}" are braces, "{NAME}" a placeholder that
 * must be one of the six names, anything else with a brace is an error. Where both
 * accept, rendering with values of every field's longest length gives the reference's
 * bytes and exactly template_max_len of them (the bound the size rules rely on); binding
 * some fields first, then rendering the rest, gives the same bytes. Where both refuse,
 * the error says why. */
#include "config.h"

#include "fuzz.h"

#include "addr.h"
#include "template.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_INSTANCE_LEN 7

/* Every field at its longest, so a rendering must reach template_max_len exactly. */
static char fuzz_host[TEMPLATE_HOST_MAX + 1], fuzz_addr[ADDR_STRLEN];
static const struct template_values *fuzz_values(void)
{
    static struct template_values v;
    if (v.v[TEMPLATE_HOST] == NULL) {
        memset(fuzz_host, 'h', TEMPLATE_HOST_MAX);
        memset(fuzz_addr, 'a', ADDR_STRLEN - 1);
        v.v[TEMPLATE_HOST] = fuzz_host;
        v.v[TEMPLATE_INSTANCE] = "iiiiiii"; /* FUZZ_INSTANCE_LEN */
        v.v[TEMPLATE_SERVER] = fuzz_addr;
        v.v[TEMPLATE_CLIENT] = fuzz_addr;
        v.v[TEMPLATE_PID] = "4294967295";
        v.v[TEMPLATE_WORKER] = "1234567890";
    }
    return &v;
}

static const char *const fuzz_names[TEMPLATE_FIELD_COUNT] = {"host", "instance", "server",
                                                             "client", "pid",  "worker"};

/* The reference: render src[0..len) into out (room for len * ADDR_STRLEN bytes), its
 * length, or -1 if the template is invalid. */
static long fuzz_reference(const char *src, size_t len, char *out)
{
    const struct template_values *v = fuzz_values();
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        if ((src[i] == '{' || src[i] == '}') && i + 1 < len && src[i + 1] == src[i]) {
            out[n++] = src[i];
            i += 2;
        } else if (src[i] == '}') {
            return -1;
        } else if (src[i] == '{') {
            size_t end = i + 1;
            while (end < len && src[end] != '}' && src[end] != '{')
                end++;
            if (end == len || src[end] == '{')
                return -1;
            int field = -1;
            for (int f = 0; f < TEMPLATE_FIELD_COUNT; f++)
                if (strlen(fuzz_names[f]) == end - i - 1 &&
                    memcmp(fuzz_names[f], src + i + 1, end - i - 1) == 0)
                    field = f;
            if (field < 0)
                return -1;
            memcpy(out + n, v->v[field], strlen(v->v[field]));
            n += strlen(v->v[field]);
            i = end + 1;
        } else {
            out[n++] = src[i++];
        }
    }
    return (long)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *src = (const char *)data;
    char *want = malloc(size * ADDR_STRLEN + 1), *got = malloc(size * ADDR_STRLEN + 1);
    if (want == NULL || got == NULL) {
        free(want);
        free(got);
        return 0;
    }
    long want_len = fuzz_reference(src, size, want);
    struct template t;
    char err[256] = "";
    int rc = template_compile(src, size, &t, err, sizeof(err));
    FUZZ_ASSERT(rc == 0 || rc == -EINVAL);
    FUZZ_ASSERT((rc == 0) == (want_len >= 0));
    if (rc == 0) {
        size_t n = template_render(&t, fuzz_values(), got, size * ADDR_STRLEN + 1);
        FUZZ_ASSERT(n == (size_t)want_len && memcmp(got, want, n) == 0);
        FUZZ_ASSERT(template_max_len(&t, FUZZ_INSTANCE_LEN) == n);
        /* Bind what the process knows, then render the rest: the same bytes. */
        struct template_values early = {{0}}, late = *fuzz_values();
        early.v[TEMPLATE_HOST] = late.v[TEMPLATE_HOST];
        early.v[TEMPLATE_PID] = late.v[TEMPLATE_PID];
        early.v[TEMPLATE_WORKER] = late.v[TEMPLATE_WORKER];
        struct template bound;
        if (template_bind(&t, &early, &bound) == 0) {
            FUZZ_ASSERT((bound.fields & (TEMPLATE_BIT(TEMPLATE_HOST) | TEMPLATE_BIT(TEMPLATE_PID) |
                                         TEMPLATE_BIT(TEMPLATE_WORKER))) == 0);
            n = template_render(&bound, &late, got, size * ADDR_STRLEN + 1);
            FUZZ_ASSERT(n == (size_t)want_len && memcmp(got, want, n) == 0);
            template_free(&bound);
        }
        template_free(&t);
    } else {
        FUZZ_ASSERT(strlen(err) > 0);
    }
    free(want);
    free(got);
    return 0;
}
