/* tcpinfo: one getsockopt(TCP_INFO) read for the send timeout, which calls it only when a
 * connection's output starts waiting and when its deadline comes, never per message, and
 * for the close of a connection its peer reset (was the peer owed anything?). It
 * lives apart because struct tcp_info with tcpi_bytes_acked comes from <linux/tcp.h>,
 * which clashes with the <netinet/tcp.h> the rest of echod uses (glibc's copy of the
 * struct stops before that field). Any thread; owns nothing. */
#include "config.h"

#include "tcpinfo.h"

#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

int tcpinfo_bytes(int fd, uint64_t *acked, uint64_t *received)
{
    struct tcp_info info;
    socklen_t len = sizeof(info);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
        return -errno;
    /* An older kernel copies a shorter struct and says so in len. */
    if (len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(info.tcpi_bytes_received))
        return -ENOTSUP;
    *acked = info.tcpi_bytes_acked;
    if (received)
        *received = info.tcpi_bytes_received;
    return 0;
}

int tcpinfo_bytes_acked(int fd, uint64_t *out)
{
    return tcpinfo_bytes(fd, out, NULL);
}
