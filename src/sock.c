/* sock: helpers for accepted TCP sockets. Stateless; any thread (the acceptor when it
 * refuses a client, the hand-off queue when a push fails or it is destroyed). The caller
 * owns the fd it passes, and gives it up. */
#include "config.h"

#include "sock.h"

#include <sys/socket.h>
#include <unistd.h>

/* Reads of discarded input at most: enough for what a client sends before it sees EOF. */
#define SOCK_DISCARD_ROUNDS 4

void sock_close_clean(int fd)
{
    shutdown(fd, SHUT_WR);
    for (int i = 0; i < SOCK_DISCARD_ROUNDS; i++)
        if (recv(fd, NULL, 1 << 16, MSG_TRUNC | MSG_DONTWAIT) <= 0)
            break;
    close(fd);
}
