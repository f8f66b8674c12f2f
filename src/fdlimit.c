/* fdlimit: raising the soft RLIMIT_NOFILE to the hard limit, for echod (which refuses to
 * start when max_connections does not fit), echod-bench and the integration tests, and
 * counting the fds echod needs for itself. Runs at start-up on the main thread; owns
 * nothing. */
#include "config.h"

#include "fdlimit.h"

#include <errno.h>
#include <sys/resource.h>

int fdlimit_raise(uint64_t *out)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    int rc = 0;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit raised = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            rl = raised;
        else
            rc = -errno;
    }
    *out = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    return rc;
}

uint64_t fdlimit_own_fds(uint64_t listeners, uint64_t workers, bool is_tcp, bool is_udp)
{
    uint64_t n = 3 + listeners + 1 /* signalfd */ + 1 /* done eventfd */ + 1 /* port file */;
    if (is_tcp)
        n += 3 /* acceptor epoll, eventfd, reserve */ + 2 * workers;
    if (is_udp)
        n += 2; /* UDP thread epoll, eventfd */
    return n + FDLIMIT_SLACK;
}
