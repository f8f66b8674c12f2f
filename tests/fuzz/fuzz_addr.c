/* fuzz_addr: addr_parse on arbitrary text. Whatever it accepts must print (addr_format)
 * whole, and that text must parse back to the very same address: family, length, address
 * and port bytes, nothing else set. Also the port must read back through addr_port. */
#include "config.h"

#include "fuzz.h"

#include "addr.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* Whether a and b are the same address, byte for byte over the whole storage. */
static int fuzz_addr_equal(const struct addr *a, const struct addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, sizeof(a->ss)) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    struct addr first;
    memset(&first, 0xa5, sizeof(first));
    if (addr_parse(text, &first) == 0) {
        int family = first.ss.ss_family;
        FUZZ_ASSERT(family == AF_INET || family == AF_INET6);
        FUZZ_ASSERT(first.len ==
                    (family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)));
        char printed[ADDR_STRLEN];
        addr_format((const struct sockaddr *)&first.ss, printed, sizeof(printed));
        FUZZ_ASSERT(strlen(printed) < sizeof(printed) - 1); /* not truncated */
        struct addr again;
        memset(&again, 0x5a, sizeof(again));
        FUZZ_ASSERT(addr_parse(printed, &again) == 0);
        FUZZ_ASSERT(fuzz_addr_equal(&first, &again));
        /* The port text is the digits after the last ':'. */
        const char *colon = strrchr(text, ':');
        FUZZ_ASSERT(colon != NULL);
        FUZZ_ASSERT(addr_port((const struct sockaddr *)&first.ss) == strtoul(colon + 1, NULL, 10));
    }
    free(text);
    return 0;
}
