/* signals: the process's signal plumbing. Main thread only: it blocks every signal
 * before any thread starts (threads inherit the mask), reads the ones echod acts on from
 * a signalfd, and leaves the job-control ones to their default actions. */
#ifndef ECHOD_SIGNALS_H
#define ECHOD_SIGNALS_H

/* Block all blockable signals in the calling thread; 0 or -errno. */
int signals_block_all(void);
/* A non-blocking signalfd for SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2; fd or -errno. */
int signals_open_fd(void);
/* Unblock SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU and SIGCONT in the calling thread, once
 * every other thread runs with all signals blocked: the kernel then delivers them to this
 * thread and their default actions (quit with a core; stop; resume) apply to the whole
 * process. A disposition inherited as ignored stays ignored. 0 or -errno. */
int signals_unblock_job_control(void);
/* Read one pending signal from the signalfd: its number, 0 if none, or -errno. */
int signals_read(int fd);

#endif
