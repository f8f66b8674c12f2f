/* fuzz_guard: the UDP guard's source check, guard_check_source, on arbitrary bytes taken
 * as a sockaddr of arbitrary length in a buffer of exactly that length (ASan sees any
 * read past len). The input's first bytes pick the policy: loopback allowed or not and
 * up to 8 own ports. Invariants: the verdict is one of the five a source check may give;
 * for AF_INET it equals a small reference written from README's rules; an IPv4-mapped
 * IPv6 source gets the verdict of the same IPv4 source. */
#include "config.h"

#include "fuzz.h"

#include "guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Read a policy from the input's header; returns the header's length, 0 if short. */
static size_t fuzz_policy_read(const uint8_t *data, size_t size, struct guard_policy *p)
{
    guard_policy_init(p);
    if (size < 2)
        return 0;
    p->is_loopback_allowed = data[0] & 1;
    size_t ports = data[1] % 9, used = 2 + 2 * ports;
    if (size < used)
        return 0;
    for (size_t i = 0; i < ports; i++)
        FUZZ_ASSERT(
            guard_policy_add_own_port(p, (uint16_t)(data[2 + 2 * i] << 8 | data[3 + 2 * i])) == 0);
    return used;
}

/* README's rules for an IPv4 source: address (host order) first, then the port. */
static enum guard_verdict fuzz_reference_v4(const struct guard_policy *p, uint32_t addr,
                                            uint16_t port)
{
    unsigned first = addr >> 24;
    if (first == 0 || (first >= 224 && first <= 239) || addr == 0xffffffffu)
        return GUARD_DROP_ADDRESS;
    if (first == 127 && !p->is_loopback_allowed)
        return GUARD_DROP_ADDRESS;
    if (port < 1024)
        return GUARD_DROP_PORT;
    if (port == 1900 || port == 3702 || port == 5353 || port == 11211)
        return GUARD_DROP_REFLECTOR;
    for (size_t i = 0; i < p->own_port_count; i++)
        if (p->own_ports[i] == port)
            return GUARD_DROP_OWN_PORT;
    return GUARD_PASS;
}

/* Big-endian 16 and 32-bit values at b. */
static uint16_t fuzz_be16(const uint8_t *b)
{
    return (uint16_t)(b[0] << 8 | b[1]);
}

static uint32_t fuzz_be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* The verdict for the same address as an AF_INET sockaddr. */
static enum guard_verdict fuzz_check_as_v4(const struct guard_policy *p, const uint8_t *v4,
                                           uint16_t port)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    memcpy(&sin.sin_addr, v4, 4);
    return guard_check_source(p, (const struct sockaddr *)&sin, sizeof(sin));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct guard_policy policy;
    size_t used = fuzz_policy_read(data, size, &policy);
    if (used == 0)
        return 0;
    size_t len = size - used;
    uint8_t *sa = malloc(len ? len : 1);
    if (sa == NULL)
        return 0;
    memcpy(sa, data + used, len);
    enum guard_verdict v = guard_check_source(&policy, (const struct sockaddr *)sa, (socklen_t)len);
    FUZZ_ASSERT(v == GUARD_PASS || v == GUARD_DROP_PORT || v == GUARD_DROP_REFLECTOR ||
                v == GUARD_DROP_OWN_PORT || v == GUARD_DROP_ADDRESS);

    sa_family_t family = 0;
    if (len >= sizeof(family))
        memcpy(&family, sa + offsetof(struct sockaddr, sa_family), sizeof(family));
    if (len < sizeof(family) || (family != AF_INET && family != AF_INET6))
        FUZZ_ASSERT(v == GUARD_DROP_ADDRESS);
    if (family == AF_INET) {
        if (len < sizeof(struct sockaddr_in))
            FUZZ_ASSERT(v == GUARD_DROP_ADDRESS);
        else
            FUZZ_ASSERT(v == fuzz_reference_v4(
                                 &policy, fuzz_be32(sa + offsetof(struct sockaddr_in, sin_addr)),
                                 fuzz_be16(sa + offsetof(struct sockaddr_in, sin_port))));
    }
    if (family == AF_INET6) {
        static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        const uint8_t *addr6 = sa + offsetof(struct sockaddr_in6, sin6_addr);
        if (len < sizeof(struct sockaddr_in6))
            FUZZ_ASSERT(v == GUARD_DROP_ADDRESS);
        else if (memcmp(addr6, v4_mapped, sizeof(v4_mapped)) == 0)
            FUZZ_ASSERT(v ==
                        fuzz_check_as_v4(&policy, addr6 + 12,
                                         fuzz_be16(sa + offsetof(struct sockaddr_in6, sin6_port))));
    }
    free(sa);
    return 0;
}
