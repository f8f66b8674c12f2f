/* udp_reference: the reference scripts/bench.sh measures echod's UDP thread against (its
 * udp64 scenario). The plainest UDP echo there is: one blocking recvfrom and one sendto
 * per datagram, on one socket bound to 127.0.0.1 port 0, single-threaded, no epoll, no
 * guard, no counters. It prints "udp 127.0.0.1:PORT" (the port-file layout) on stdout
 * and serves until killed. Built by make, never installed. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REFERENCE_BUF_BYTES 65536

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

int main(void)
{
    static unsigned char buf[REFERENCE_BUF_BYTES];
    int fd = reference_bind();
    if (fd < 0)
        return 1;
    for (;;) {
        struct sockaddr_storage src;
        socklen_t src_len = sizeof(src);
        ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&src, &src_len);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "udp_reference: recvfrom: %s\n", strerror(errno));
            return 1;
        }
        if (n >= 0)
            (void)sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&src, src_len);
    }
}
