/* fdlimit: the process's open-file limit. Each TCP connection is an fd, so echod and its
 * tools raise the soft RLIMIT_NOFILE to the hard limit at start-up. Main thread only. */
#ifndef ECHOD_FDLIMIT_H
#define ECHOD_FDLIMIT_H

#include <stdint.h>

/* Raise the soft limit to the hard one and store the soft limit now in force in *out
 * (UINT64_MAX when unlimited). 0, or -errno when the limit cannot be read or raised
 * (*out then holds the limit in force, if it could be read). */
int fdlimit_raise(uint64_t *out);

#endif
