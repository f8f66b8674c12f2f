/* fuzz: what every libFuzzer harness in tests/fuzz shares. A harness checks invariants,
 * not just survival: FUZZ_ASSERT names the broken one on stderr and traps, so libFuzzer
 * saves the input as a crash artifact. Single-threaded, like libFuzzer's loop. */
#ifndef ECHOD_FUZZ_H
#define ECHOD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);           \
            __builtin_trap();                                                                      \
        }                                                                                          \
    } while (0)

/* libFuzzer's entry point: one input, 0 to keep it in the corpus. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
