/* signals: block every signal before threads exist and read the ones echod acts on
 * from a signalfd. Main thread only. Worker, acceptor and UDP threads inherit the full
 * mask, so no signal ever interrupts them; SIGPIPE stays blocked (sends use
 * MSG_NOSIGNAL as well). Once every thread runs, the main thread alone unblocks the
 * job-control signals, so the kernel delivers them to it and their default actions
 * apply to the whole process: SIGQUIT quits with a core dump, SIGTSTP, SIGTTIN and
 * SIGTTOU stop it, SIGCONT resumes it. */
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

/* The set of the signals in sigs, a list ended by 0. */
static sigset_t signals_set_of(const int *sigs)
{
    sigset_t set;
    sigemptyset(&set);
    for (; *sigs != 0; sigs++)
        sigaddset(&set, *sigs);
    return set;
}

int signals_open_fd(void)
{
    static const int acted_on[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, 0};
    sigset_t set = signals_set_of(acted_on);
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int signals_unblock_job_control(void)
{
    static const int job_control[] = {SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU, SIGCONT, 0};
    sigset_t set = signals_set_of(job_control);
    return -pthread_sigmask(SIG_UNBLOCK, &set, NULL);
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
