/* signals: the process's signal plumbing. Main thread only: it blocks every signal
 * before any thread starts (threads inherit the mask) and reads them from a signalfd. */
#ifndef ECHOD_SIGNALS_H
#define ECHOD_SIGNALS_H

/* Block all blockable signals in the calling thread; 0 or -errno. */
int signals_block_all(void);
/* A non-blocking signalfd for SIGTERM, SIGINT, SIGHUP and SIGUSR1; fd or -errno. */
int signals_open_fd(void);
/* Read one pending signal from the signalfd: its number, 0 if none, or -errno. */
int signals_read(int fd);

#endif
