/* udp_reference: the references scripts/bench.sh measures echod's UDP thread against
 * (its udp64 scenario). Single-threaded, one socket bound to 127.0.0.1 port 0, no epoll,
 * no guard, no counters; it prints "udp 127.0.0.1:PORT" (the port-file layout) on stdout
 * and echoes until killed.
 * - By default the plainest loop there is: one blocking recvfrom and one sendto per
 *   datagram, the fewest syscalls a one-at-a-time server can make.
 * - With -b, the plainest batched loop: a blocking recvmmsg (MSG_WAITFORONE) of up to 32
 *   datagrams and one sendmmsg of their replies; what batching alone can reach.
 * Built by make, never installed. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REFERENCE_BUF_BYTES 65536
#define REFERENCE_BATCH     32

static unsigned char bufs[REFERENCE_BATCH][REFERENCE_BUF_BYTES];

/* A UDP socket bound to 127.0.0.1 port 0, its port announced on stdout; -1 on error. */
static int reference_bind(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        fprintf(stderr, "udp_reference: %s\n", strerror(errno));
        return -1;
    }
    printf("udp 127.0.0.1:%u\n", ntohs(sa.sin_port));
    fflush(stdout);
    return fd;
}

/* One recvfrom, one sendto, forever; returns only on a receive error. */
static void reference_one_at_a_time(int fd)
{
    for (;;) {
        struct sockaddr_storage src;
        socklen_t src_len = sizeof(src);
        ssize_t n = recvfrom(fd, bufs[0], sizeof(bufs[0]), 0, (struct sockaddr *)&src, &src_len);
        if (n < 0 && errno != EINTR)
            return;
        if (n >= 0)
            (void)sendto(fd, bufs[0], (size_t)n, 0, (struct sockaddr *)&src, src_len);
    }
}

/* One recvmmsg, one sendmmsg (again past a refused reply), forever; returns only on a
 * receive error. */
static void reference_batched(int fd)
{
    static struct mmsghdr msgs[REFERENCE_BATCH];
    static struct iovec iov[REFERENCE_BATCH];
    static struct sockaddr_storage src[REFERENCE_BATCH];
    for (;;) {
        for (size_t i = 0; i < REFERENCE_BATCH; i++) {
            iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = REFERENCE_BUF_BYTES};
            msgs[i].msg_hdr = (struct msghdr){.msg_name = &src[i],
                                              .msg_namelen = sizeof(src[i]),
                                              .msg_iov = &iov[i],
                                              .msg_iovlen = 1};
        }
        int n = recvmmsg(fd, msgs, REFERENCE_BATCH, MSG_WAITFORONE, NULL);
        if (n < 0 && errno != EINTR)
            return;
        for (int i = 0; i < n; i++)
            iov[i].iov_len = msgs[i].msg_len;
        for (int done = 0; done < n;) {
            int sent = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);
            done += sent > 0 ? sent : 1;
        }
    }
}

int main(int argc, char **argv)
{
    int is_batched = argc == 2 && strcmp(argv[1], "-b") == 0;
    if (argc > 2 || (argc == 2 && !is_batched)) {
        fprintf(stderr, "usage: udp_reference [-b]\n");
        return 64;
    }
    int fd = reference_bind();
    if (fd < 0)
        return 1;
    if (is_batched)
        reference_batched(fd);
    else
        reference_one_at_a_time(fd);
    fprintf(stderr, "udp_reference: receive: %s\n", strerror(errno));
    return 1;
}
