/* list_names: prints the names the documentation must cover, one per line, taken from the
 * code that defines them rather than from a copy: `list_names keys` prints every
 * configuration key (conf_each_key, the list a load accepts), `list_names counters` every
 * counter (stats.h). Run by test_man_coverage.sh; single-threaded, owns nothing. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "stats.h"

static void print_key(const char *key, void *arg)
{
    (void)arg;
    printf("%s\n", key);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "keys") == 0) {
        conf_each_key(print_key, NULL);
    } else if (argc == 2 && strcmp(argv[1], "counters") == 0) {
        for (int c = 0; c < STAT_COUNT; c++)
            printf("%s\n", stats_name((enum stats_counter)c));
    } else {
        fprintf(stderr, "usage: list_names keys|counters\n");
        return 64;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
