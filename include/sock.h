/* sock: small helpers for accepted TCP sockets that every thread may use. */
#ifndef ECHOD_SOCK_H
#define ECHOD_SOCK_H

/* Close an accepted socket that echod will not (or no longer) serve with a FIN, not a
 * reset: closing with unread input sends RST, so first send FIN and discard (MSG_TRUNC,
 * no copy) what the client may have sent. */
void sock_close_clean(int fd);

#endif
