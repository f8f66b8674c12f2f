/* signals: block every signal before threads exist and read the ones echod acts on
 * from a signalfd. Main thread only. Worker, acceptor and UDP threads inherit the full
 * mask, so no signal ever interrupts them; SIGPIPE stays blocked (sends use
 * MSG_NOSIGNAL as well). */
#include "config.h"

#include "signals.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

int signals_block_all(void)
{
    sigset_t all;
    sigfillset(&all);
    int rc = pthread_sigmask(SIG_BLOCK, &all, NULL);
    return -rc;
}

int signals_open_fd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int signals_read(int fd)
{
    struct signalfd_siginfo si;
    ssize_t n = read(fd, &si, sizeof(si));
    if (n == (ssize_t)sizeof(si))
        return (int)si.ssi_signo;
    if (n < 0 && errno != EAGAIN && errno != EINTR)
        return -errno;
    return 0;
}
