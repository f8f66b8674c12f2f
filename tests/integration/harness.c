/* harness: process, file and socket helpers for the integration tests (see harness.h).
 * Runs in the test binary's only thread. It owns the mkdtemp directory and every child
 * it spawns: the pids sit in a signal-safe table that the atexit hook, the SIGALRM /
 * SIGTERM / SIGINT / SIGHUP handler and PR_SET_PDEATHSIG use to SIGKILL them, whatever
 * way the test binary ends. Client sockets are tracked by fd so a teardown can close
 * everything a failed test left open. */
#include "config.h"

#include "harness.h"

#include "fdlimit.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define H_MAX_CHILDREN 64
#define H_MAX_FDS      65536

/* Children not yet reaped; read by the signal handler, so plain sig_atomic_t slots. */
static volatile sig_atomic_t h_children[H_MAX_CHILDREN];
static char h_dir[256];                /* the mkdtemp directory; "" until h_init */
static char h_name[64];                /* the test binary's name, for messages */
static unsigned h_limit_s;             /* the binary's time limit */
static uint64_t h_rng_state;           /* xorshift64* state */
static unsigned h_file_serial;         /* makes temp file names unique */
static unsigned char h_fds[H_MAX_FDS]; /* 1 = client fd to close in h_close_all */
static char *h_rm_argv[4];             /* rm -rf h_dir, prepared for the signal handler */

/* ------------------------------------------------------------------ safety net */

void h_track_child(pid_t pid)
{
    for (size_t i = 0; i < H_MAX_CHILDREN; i++) {
        if (h_children[i] == 0) {
            h_children[i] = pid;
            return;
        }
    }
    kill(pid, SIGKILL);
    fail_msg("more than %d children at once", H_MAX_CHILDREN);
}

static void h_untrack_child(pid_t pid)
{
    for (size_t i = 0; i < H_MAX_CHILDREN; i++) {
        if (h_children[i] == pid)
            h_children[i] = 0;
    }
}

/* Async-signal-safe: SIGKILL and reap every tracked child. */
static void h_kill_children(void)
{
    for (size_t i = 0; i < H_MAX_CHILDREN; i++) {
        pid_t pid = h_children[i];
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            h_children[i] = 0;
        }
    }
}

static void h_say(const char *text)
{
    ssize_t ignored = write(STDOUT_FILENO, text, strlen(text));
    (void)ignored;
}

/* Last resort (time limit or a signal to the test): kill the children, remove the
 * temp dir with fork+exec (both async-signal-safe), tell TAP, exit. */
static void h_on_fatal_signal(int sig)
{
    h_kill_children();
    if (h_dir[0] != '\0') {
        pid_t pid = fork();
        if (pid == 0) {
            execv(h_rm_argv[0], h_rm_argv);
            _exit(127);
        }
        if (pid > 0)
            waitpid(pid, NULL, 0);
    }
    h_say("Bail out! ");
    h_say(h_name);
    h_say(sig == SIGALRM ? ": time limit exceeded; echod and children killed\n"
                         : ": interrupted by a signal; echod and children killed\n");
    _exit(1);
}

static int h_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void h_at_exit(void)
{
    h_kill_children();
    if (h_dir[0] != '\0')
        nftw(h_dir, h_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void h_init(const char *name, unsigned limit_s)
{
    snprintf(h_name, sizeof(h_name), "%s", name);
    h_limit_s = limit_s;
    const char *tmp = getenv("TMPDIR");
    snprintf(h_dir, sizeof(h_dir), "%s/echod-%s-XXXXXX", tmp && tmp[0] ? tmp : "/tmp", name);
    if (!mkdtemp(h_dir)) {
        fprintf(stdout, "Bail out! %s: mkdtemp %s: %s\n", name, h_dir, strerror(errno));
        exit(1);
    }
    h_rm_argv[0] = (char *)"/bin/rm";
    h_rm_argv[1] = (char *)"-rf";
    h_rm_argv[2] = h_dir;
    atexit(h_at_exit);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = h_on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    alarm(limit_s);

    h_raise_nofile();

    const char *seed_text = getenv("ECHOD_TEST_SEED");
    uint64_t seed = seed_text ? strtoull(seed_text, NULL, 0)
                              : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (seed == 0)
        seed = 1;
    h_rng_state = seed;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("# %s: seed %llu (rerun with ECHOD_TEST_SEED=%llu), temp dir %s, time limit %u s\n",
           name, (unsigned long long)seed, (unsigned long long)seed, h_dir, limit_s);
}

const char *h_tmpdir(void)
{
    return h_dir;
}

const char *h_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !v[0])
        fail_msg("environment variable %s is not set (run the tests with make check)", name);
    return v;
}

void h_note(const char *fmt, ...)
{
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    /* Every line of the note is a TAP comment; a trailing newline adds none. */
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        printf("# %s\n", line);
    fflush(stdout);
}

/* ------------------------------------------------------------------ time, random */

int64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Milliseconds left until deadline, at least 0. */
static int h_left_ms(int64_t deadline)
{
    int64_t left = deadline - h_now_ms();
    return left < 0 ? 0 : (int)left;
}

uint64_t h_rand(void)
{
    h_rng_state ^= h_rng_state >> 12;
    h_rng_state ^= h_rng_state << 25;
    h_rng_state ^= h_rng_state >> 27;
    return h_rng_state * 2685821657736338717ull;
}

void h_fill_random(void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t r = h_rand();
        memcpy(p + i, &r, 8);
    }
    if (i < len) {
        uint64_t r = h_rand();
        memcpy(p + i, &r, len - i);
    }
}

void *h_xmalloc(size_t len)
{
    void *p = malloc(len ? len : 1);
    if (!p)
        fail_msg("out of memory allocating %zu bytes", len);
    return p;
}

/* ------------------------------------------------------------------ files */

void h_write_temp(const char *name, const void *data, size_t len, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/%s-%u", h_dir, name, ++h_file_serial);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        fail_msg("cannot create %s: %s", out, strerror(errno));
    const uint8_t *p = data;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, p + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = errno;
            close(fd);
            fail_msg("cannot write %s: %s", out, strerror(err));
        }
        off += (size_t)n;
    }
    close(fd);
}

char *h_read_file(const char *path, size_t *len_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, len = 0;
    char *text = h_xmalloc(cap);
    for (;;) {
        if (cap - len < 2) {
            cap *= 2;
            char *bigger = realloc(text, cap);
            if (!bigger) {
                free(text);
                close(fd);
                fail_msg("out of memory reading %s", path);
            }
            text = bigger;
        }
        ssize_t n = read(fd, text + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    text[len] = '\0';
    if (len_out)
        *len_out = len;
    return text;
}

/* memmem over a file's bytes, so NULs in the file do not stop the search. */
bool h_file_contains(const char *path, const char *needle)
{
    size_t len;
    char *text = h_read_file(path, &len);
    if (!text)
        return false;
    bool found = memmem(text, len, needle, strlen(needle)) != NULL;
    free(text);
    return found;
}

/* ------------------------------------------------------------------ processes */

/* Sockets the next spawned child gets as systemd passes them (h_spawn_pass_fds). */
static struct {
    int fds[H_MAX_PASSED_FDS];
    size_t count; /* 0: pass nothing */
    char names[512];
    bool has_names;
} h_passing;

void h_spawn_pass_fds(const int *fds, size_t count, const char *names)
{
    if (count > H_MAX_PASSED_FDS || (names && strlen(names) >= sizeof(h_passing.names)))
        fail_msg("h_spawn_pass_fds: too many fds or names");
    memcpy(h_passing.fds, fds, count * sizeof(*fds));
    h_passing.count = count;
    h_passing.has_names = names != NULL;
    snprintf(h_passing.names, sizeof(h_passing.names), "%s", names ? names : "");
}

/* In the child: put the passed fds on 3.. and set LISTEN_PID to this process, as
 * systemd does just before exec (the tests are single-threaded, so setenv is safe). */
static void h_spawn_child_pass_fds(void)
{
    int high[H_MAX_PASSED_FDS];
    for (size_t i = 0; i < h_passing.count; i++)
        if ((high[i] = fcntl(h_passing.fds[i], F_DUPFD_CLOEXEC, 100)) < 0)
            _exit(125);
    for (size_t i = 0; i < h_passing.count; i++)
        if (dup2(high[i], 3 + (int)i) < 0) /* dup2 clears FD_CLOEXEC: inherited */
            _exit(125);
    char text[32];
    snprintf(text, sizeof(text), "%ld", (long)getpid());
    setenv("LISTEN_PID", text, 1);
    snprintf(text, sizeof(text), "%zu", h_passing.count);
    setenv("LISTEN_FDS", text, 1);
    if (h_passing.has_names)
        setenv("LISTEN_FDNAMES", h_passing.names, 1);
    else
        unsetenv("LISTEN_FDNAMES");
}

/* How a child is started: what h_spawn_child sets up before the exec. */
struct h_spawn_how {
    int in_fd;            /* stdin; -1: /dev/null */
    const char *out_path; /* stdout; NULL: /dev/null */
    int err_fd;           /* stderr when >= 0, else err_path */
    const char *err_path; /* NULL: /dev/null */
    long nofile;          /* RLIMIT_NOFILE (soft and hard) when > 0 */
    unsigned closed_std;  /* bit N set: fd N (0, 1 or 2) is closed at the exec */
};

/* The child side of a spawn: only async-signal-safe calls until exec. */
static void h_spawn_child(pid_t parent, char *const argv[], const struct h_spawn_how *how)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Whatever the test was started with (a background job ignores INT and QUIT), the
     * child starts with every signal at its default, as from a terminal. */
    const int defaults[] = {SIGPIPE, SIGINT,  SIGQUIT, SIGHUP,  SIGTERM, SIGUSR1,
                            SIGUSR2, SIGTSTP, SIGTTIN, SIGTTOU, SIGCONT};
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        signal(defaults[i], SIG_DFL);
    /* A process group of its own whose parent (the test) is in the same session: never
     * an orphaned group, whose stop signals the kernel would discard (as it would under
     * a CI runner that starts the suite in a new session). */
    setpgid(0, 0);
    struct rlimit rl = {(rlim_t)how->nofile, (rlim_t)how->nofile};
    if (how->nofile > 0 && setrlimit(RLIMIT_NOFILE, &rl) != 0)
        _exit(126);
    int in = how->in_fd >= 0 ? how->in_fd : open("/dev/null", O_RDONLY);
    int out = open(how->out_path ? how->out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = how->err_fd >= 0 ? how->err_fd
                               : open(how->err_path ? how->err_path : "/dev/null",
                                      O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        _exit(127);
    for (int fd = 0; fd < 3; fd++)
        if (how->closed_std & (1u << fd))
            close(fd);
    if (h_passing.count > 0)
        h_spawn_child_pass_fds();
    execv(argv[0], argv);
    _exit(127);
}

/* fork, set the child up as `how` says and exec argv; the child is tracked. */
static pid_t h_spawn_how(char *const argv[], const struct h_spawn_how *how)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0)
        h_spawn_child(parent, argv, how);
    h_passing.count = 0;
    h_track_child(pid);
    return pid;
}

pid_t h_spawn(char *const argv[], int stdin_fd, const char *out_path, const char *err_path)
{
    struct h_spawn_how how = {
        .in_fd = stdin_fd, .out_path = out_path, .err_fd = -1, .err_path = err_path};
    return h_spawn_how(argv, &how);
}

/* The exit code of a wait status: the code, or 128 + the signal. */
static int h_status_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 255;
}

int h_wait_exit(pid_t pid, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            h_untrack_child(pid);
            return h_status_code(status);
        }
        if (r < 0 && errno != EINTR) {
            h_untrack_child(pid);
            fail_msg("waitpid %d: %s", (int)pid, strerror(errno));
        }
        if (h_now_ms() >= deadline)
            return -1;
        h_sleep_ms(2);
    }
}

void h_kill(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    h_untrack_child(pid);
}

int h_run(char *const argv[], const void *in, size_t in_len, int timeout_ms, char *out_path,
          char *err_path, size_t path_size)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    snprintf(out_path, path_size, "%s/run-%u.out", h_dir, ++h_file_serial);
    snprintf(err_path, path_size, "%s/run-%u.err", h_dir, h_file_serial);
    int pipefd[2] = {-1, -1};
    if (in && pipe2(pipefd, O_CLOEXEC) != 0)
        fail_msg("pipe2: %s", strerror(errno));
    pid_t pid = h_spawn(argv, in ? pipefd[0] : -1, out_path, err_path);
    if (in) {
        close(pipefd[0]);
        fcntl(pipefd[1], F_SETFL, O_NONBLOCK);
        const uint8_t *p = in;
        size_t off = 0;
        while (off < in_len) {
            ssize_t n = write(pipefd[1], p + off, in_len - off);
            if (n > 0) {
                off += (size_t)n;
                continue;
            }
            if (n < 0 && errno == EPIPE)
                break; /* the child stopped reading: its exit code will tell */
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                int err = errno;
                close(pipefd[1]);
                h_kill(pid);
                fail_msg("writing %s's stdin: %s", argv[0], strerror(err));
            }
            struct pollfd pfd = {pipefd[1], POLLOUT, 0};
            if (poll(&pfd, 1, h_left_ms(deadline) < 50 ? h_left_ms(deadline) : 50) < 0 &&
                errno != EINTR)
                break;
            if (h_now_ms() >= deadline)
                break;
        }
        close(pipefd[1]);
    }
    int code = h_wait_exit(pid, h_left_ms(deadline));
    if (code < 0) {
        h_kill(pid);
        char *err = h_read_file(err_path, NULL);
        fail_msg("%s did not exit within %d ms; stderr: %s", argv[0], timeout_ms,
                 err ? err : "(none)");
    }
    return code;
}

/* ------------------------------------------------------------------ echod */

/* Parse "127.0.0.1:40123" or "[::1]:40124" into sa; false if malformed. */
static bool h_parse_addr(const char *text, struct sockaddr_storage *sa)
{
    char host[64];
    const char *port_text;
    memset(sa, 0, sizeof(*sa));
    if (text[0] == '[') {
        const char *close_bracket = strchr(text, ']');
        if (!close_bracket || close_bracket[1] != ':' ||
            (size_t)(close_bracket - text - 1) >= sizeof(host))
            return false;
        memcpy(host, text + 1, (size_t)(close_bracket - text - 1));
        host[close_bracket - text - 1] = '\0';
        port_text = close_bracket + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon || (size_t)(colon - text) >= sizeof(host))
            return false;
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
        port_text = colon + 1;
    }
    char *end;
    errno = 0;
    unsigned long port = strtoul(port_text, &end, 10);
    if (errno || end == port_text || *end != '\0' || port == 0 || port > 65535)
        return false;
    struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return true;
    }
    if (text[0] == '[' && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        return true;
    }
    return false;
}

/* Parse the port file into e; fails the test on any malformed line. */
static void h_parse_port_file(struct echod *e, char *text)
{
    static const char *const kinds[] = {"tcp ", "udp ", "metrics "}; /* in this order */
    int last_kind = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int kind = 0;
        while (kind < 3 && strncmp(line, kinds[kind], strlen(kinds[kind])) != 0)
            kind++;
        if (kind == 3)
            fail_msg("port file %s: malformed line '%s'", e->port_path, line);
        if (kind < last_kind)
            fail_msg("port file %s: line '%s' after a %sline", e->port_path, line,
                     kinds[last_kind]);
        last_kind = kind;
        size_t *counts[] = {&e->tcp_count, &e->udp_count, &e->metrics_count};
        struct sockaddr_storage *sas[] = {e->tcp, e->udp, e->metrics};
        char(*texts[])[64] = {e->tcp_text, e->udp_text, e->metrics_text};
        size_t *count = counts[kind];
        if (*count >= H_MAX_LISTENERS)
            fail_msg("port file %s: too many listeners", e->port_path);
        const char *where = line + strlen(kinds[kind]);
        if (!h_parse_addr(where, &sas[kind][*count]))
            fail_msg("port file %s: bad address in '%s'", e->port_path, line);
        snprintf(texts[kind][*count], 64, "%s", where);
        (*count)++;
    }
}

void h_echod_dump_log(struct echod *e)
{
    size_t len;
    char *text = h_read_file(e->log_path, &len);
    if (!text) {
        h_note("echod log %s: unreadable", e->log_path);
        return;
    }
    /* The last 40 lines are enough context. */
    size_t lines = 0;
    const char *start = text;
    for (size_t i = len; i > 0; i--) {
        if (text[i - 1] == '\n' && ++lines > 40) {
            start = text + i;
            break;
        }
    }
    h_note("---- echod stderr (%s), last lines:", e->log_path);
    char *save = NULL;
    for (char *line = strtok_r((char *)start, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save))
        h_note("  %s", line);
    free(text);
}

/* h_echod_start, with RLIMIT_NOFILE set to nofile in the child when nofile > 0, its
 * stderr on err_fd instead of e->log_path when err_fd >= 0, and the std fds in the
 * closed_std mask closed. */
static void h_echod_launch(struct echod *e, const char *config_text, const char *const *extra_args,
                           long nofile, int err_fd, unsigned closed_std)
{
    memset(e, 0, sizeof(*e));
    const char *bin = h_env("ECHOD_BIN");
    h_write_temp("echod.conf", config_text, strlen(config_text), e->conf_path,
                 sizeof(e->conf_path));
    unsigned serial = ++h_file_serial;
    snprintf(e->port_path, sizeof(e->port_path), "%s/echod-%u.ports", h_dir, serial);
    snprintf(e->log_path, sizeof(e->log_path), "%s/echod-%u.log", h_dir, serial);
    snprintf(e->out_path, sizeof(e->out_path), "%s/echod-%u.out", h_dir, serial);

    char *argv[32];
    size_t argc = 0;
    argv[argc++] = (char *)bin;
    argv[argc++] = (char *)"-c";
    argv[argc++] = e->conf_path;
    argv[argc++] = (char *)"--port-file";
    argv[argc++] = e->port_path;
    for (size_t i = 0; extra_args && extra_args[i] && argc < 31; i++)
        argv[argc++] = (char *)extra_args[i];
    argv[argc] = NULL;
    if (err_fd >= 0)
        e->log_path[0] = '\0'; /* the caller reads the log from its end of err_fd */
    struct h_spawn_how how = {.in_fd = -1,
                              .out_path = e->out_path,
                              .err_fd = err_fd,
                              .err_path = e->log_path,
                              .nofile = nofile,
                              .closed_std = closed_std};
    e->pid = h_spawn_how(argv, &how);

    int64_t deadline = h_now_ms() + 5000;
    for (;;) {
        if (access(e->port_path, F_OK) == 0)
            break;
        int code = h_wait_exit(e->pid, 0);
        if (code >= 0) {
            e->pid = 0;
            e->exit_status = code;
            h_echod_dump_log(e);
            fail_msg("echod exited with %d before writing its port file; config:\n%s", code,
                     config_text);
        }
        if (h_now_ms() >= deadline) {
            h_echod_dump_log(e);
            fail_msg("echod wrote no port file %s within 5 s", e->port_path);
        }
        h_sleep_ms(5);
    }
    h_echod_read_ports(e);
}

void h_echod_read_ports(struct echod *e)
{
    char *ports = h_read_file(e->port_path, NULL);
    if (!ports)
        fail_msg("cannot read the port file %s: %s", e->port_path, strerror(errno));
    e->tcp_count = e->udp_count = e->metrics_count = 0;
    h_parse_port_file(e, ports);
    free(ports);
}

void h_echod_write_conf(struct echod *e, const char *config_text)
{
    char tmp[sizeof(e->conf_path) + 8];
    snprintf(tmp, sizeof(tmp), "%s.new", e->conf_path);
    FILE *f = fopen(tmp, "we");
    if (!f || fputs(config_text, f) < 0 || fclose(f) != 0)
        fail_msg("cannot write %s: %s", tmp, strerror(errno));
    if (rename(tmp, e->conf_path) != 0)
        fail_msg("cannot rename %s: %s", tmp, strerror(errno));
}

int h_echod_reload(struct echod *e, const char *config_text)
{
    static const char *const names[] = {"reloads", "reload_failures"};
    uint64_t before[2], now[2];
    h_echod_stats(e, names, before, 2);
    h_echod_write_conf(e, config_text);
    kill(e->pid, SIGHUP);
    int64_t deadline = h_now_ms() + 5000;
    for (;;) {
        h_echod_stats(e, names, now, 2);
        if (now[0] > before[0] || now[1] > before[1])
            break;
        if (h_now_ms() >= deadline) {
            h_echod_dump_log(e);
            fail_msg("echod neither applied nor refused a reload within 5 s of SIGHUP");
        }
        h_sleep_ms(10);
    }
    h_echod_read_ports(e);
    return now[0] > before[0] ? 0 : -1;
}

void h_echod_start(struct echod *e, const char *config_text, const char *const *extra_args)
{
    h_echod_launch(e, config_text, extra_args, 0, -1, 0);
}

int h_echod_signal_wait(struct echod *e, int sig, int timeout_ms)
{
    if (e->pid <= 0)
        fail_msg("echod is not running (it exited with %d)", e->exit_status);
    kill(e->pid, sig);
    int code = h_wait_exit(e->pid, timeout_ms);
    if (code >= 0) {
        e->pid = 0;
        e->exit_status = code;
    }
    return code;
}

int h_echod_stop(struct echod *e)
{
    if (e->pid <= 0)
        return e->exit_status;
    kill(e->pid, SIGTERM);
    int code = h_wait_exit(e->pid, 5000);
    if (code < 0) {
        h_note("echod %d did not exit within 5 s of SIGTERM: killed", (int)e->pid);
        h_kill(e->pid);
        code = -1;
    }
    e->pid = 0;
    e->exit_status = code;
    return code;
}

void h_echod_teardown(struct echod *e)
{
    h_close_all();
    int code = h_echod_stop(e);
    if (code != 0)
        h_echod_dump_log(e);
    memset(e, 0, sizeof(*e));
    if (code != 0)
        fail_msg("echod exited with %d after SIGTERM, expected 0", code);
}

struct echod echod;

int h_setup_echo(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  "tcp = { listen = [ \"127.0.0.1:0\" ]; };\n"
                  "udp = { listen = [ \"127.0.0.1:0\" ]; };\n",
                  NULL);
    return 0;
}

int h_teardown(void **state)
{
    (void)state;
    h_echod_teardown(&echod);
    return 0;
}

void h_echod_assert_alive(struct echod *e)
{
    if (e->pid <= 0)
        fail_msg("echod is not running (exit status %d)", e->exit_status);
    int code = h_wait_exit(e->pid, 0);
    if (code >= 0) {
        e->pid = 0;
        e->exit_status = code;
        h_echod_dump_log(e);
        fail_msg("echod died with exit status %d", code);
    }
}

bool h_echod_log_contains(struct echod *e, const char *needle)
{
    return h_file_contains(e->log_path, needle);
}

/* Count the "stats " log lines and return the last one's start (in text) via *last. */
static size_t h_count_stats_lines(const char *text, const char **last)
{
    size_t count = 0;
    *last = NULL;
    for (const char *p = text; (p = strstr(p, ": stats ")) != NULL; p++) {
        count++;
        *last = p + 2;
    }
    return count;
}

void h_echod_stats(struct echod *e, const char *const *names, uint64_t *values, size_t count)
{
    h_echod_assert_alive(e);
    char *text = h_read_file(e->log_path, NULL);
    const char *last;
    size_t before = text ? h_count_stats_lines(text, &last) : 0;
    free(text);
    kill(e->pid, SIGUSR1);
    int64_t deadline = h_now_ms() + 5000;
    for (;;) {
        text = h_read_file(e->log_path, NULL);
        if (text && h_count_stats_lines(text, &last) > before && strchr(last, '\n'))
            break;
        free(text);
        if (h_now_ms() >= deadline) {
            h_echod_dump_log(e);
            fail_msg("echod logged no new 'stats' line within 5 s of SIGUSR1");
        }
        h_sleep_ms(5);
    }
    const char *eol = strchr(last, '\n');
    for (size_t i = 0; i < count; i++) {
        char key[80];
        snprintf(key, sizeof(key), " %s=", names[i]);
        const char *at = strstr(last, key);
        if (!at || at > eol) {
            int line_len = (int)(eol - last);
            char copy[1024];
            snprintf(copy, sizeof(copy), "%.*s", line_len, last);
            free(text);
            fail_msg("the stats line has no counter %s: '%s'", names[i], copy);
        }
        values[i] = strtoull(at + strlen(key), NULL, 10);
    }
    free(text);
}

uint64_t h_echod_stat(struct echod *e, const char *name)
{
    uint64_t v;
    h_echod_stats(e, &name, &v, 1);
    return v;
}

uint64_t h_echod_wait_stat(struct echod *e, const char *name, uint64_t want, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    uint64_t v;
    while ((v = h_echod_stat(e, name)) < want && h_now_ms() < deadline)
        h_sleep_ms(50);
    return v;
}

/* ------------------------------------------------------------------ /proc */

/* The text of /proc/PID/FILE, or fail the test; *path_out names it for messages. */
static char *h_read_proc(pid_t pid, const char *file, char *path_out, size_t size)
{
    snprintf(path_out, size, "/proc/%d/%s", (int)pid, file);
    char *text = h_read_file(path_out, NULL);
    if (!text)
        fail_msg("cannot read %s", path_out);
    return text;
}

long h_rss_kib(pid_t pid)
{
    char path[64];
    char *text = h_read_proc(pid, "status", path, sizeof(path));
    const char *at = strstr(text, "VmRSS:");
    if (!at) {
        free(text);
        fail_msg("%s has no VmRSS", path);
    }
    long kib = strtol(at + 6, NULL, 10);
    free(text);
    return kib;
}

int h_fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] != '.')
            count++;
    }
    closedir(d);
    return count;
}

long h_raise_nofile(void)
{
    uint64_t limit = 0;
    (void)fdlimit_raise(&limit);
    return limit > (1u << 30) ? 1L << 30 : (long)limit;
}

/* ------------------------------------------------------------------ sockets */

void h_track_fd(int fd)
{
    if (fd >= 0 && fd < H_MAX_FDS)
        h_fds[fd] = 1;
}

void h_close(int fd)
{
    if (fd < 0)
        return;
    if (fd < H_MAX_FDS)
        h_fds[fd] = 0;
    close(fd);
}

void h_close_all(void)
{
    for (int fd = 0; fd < H_MAX_FDS; fd++) {
        if (h_fds[fd]) {
            h_fds[fd] = 0;
            close(fd);
        }
    }
}

static socklen_t h_sa_len(const struct sockaddr_storage *sa)
{
    return sa->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

int h_tcp_connect_from(const char *src, const struct sockaddr_storage *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    h_track_fd(fd);
    struct sockaddr_in from = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, src, &from.sin_addr), 1);
    if (bind(fd, (struct sockaddr *)&from, sizeof(from)) != 0)
        fail_msg("bind %s: %s", src, strerror(errno));
    if (connect(fd, (const struct sockaddr *)sa, sizeof(struct sockaddr_in)) != 0)
        fail_msg("connect from %s: %s", src, strerror(errno));
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* A tracked non-blocking TCP socket whose connect to sa has started; buffer sizes are set
 * before connecting when buf_bytes > 0. The fd, or -errno. */
static int h_tcp_start(const struct sockaddr_storage *sa, int buf_bytes)
{
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail_msg("socket: %s", strerror(errno));
    h_track_fd(fd);
    if (buf_bytes > 0 &&
        (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf_bytes, sizeof(buf_bytes)) != 0 ||
         setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf_bytes, sizeof(buf_bytes)) != 0))
        fail_msg("setsockopt SO_RCVBUF/SO_SNDBUF: %s", strerror(errno));
    if (connect(fd, (const struct sockaddr *)sa, h_sa_len(sa)) != 0 && errno != EINPROGRESS) {
        int err = errno;
        h_close(fd);
        return -err;
    }
    return fd;
}

int h_tcp_connect_start(const struct sockaddr_storage *sa)
{
    return h_tcp_start(sa, 0);
}

/* Wait for fd's connect to finish: fd, or -errno (fd closed). */
static int h_tcp_finish(int fd, int timeout_ms)
{
    if (fd < 0)
        return fd;
    struct pollfd pfd = {fd, POLLOUT, 0};
    int64_t deadline = h_now_ms() + timeout_ms;
    int n;
    while ((n = poll(&pfd, 1, h_left_ms(deadline))) < 0 && errno == EINTR) {
    }
    if (n == 0) {
        h_close(fd);
        return -ETIMEDOUT;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        h_close(fd);
        return -err;
    }
    return fd;
}

int h_tcp_connect(const struct sockaddr_storage *sa, int timeout_ms)
{
    int fd = h_tcp_start(sa, 0);
    return fd < 0 ? fd : h_tcp_finish(fd, timeout_ms);
}

int h_tcp_connect_sized(const struct sockaddr_storage *sa, int buf_bytes)
{
    int fd = h_tcp_start(sa, buf_bytes);
    if (fd >= 0)
        fd = h_tcp_finish(fd, 5000);
    if (fd < 0)
        fail_msg("connect to port %u: %s", h_port_of(sa), strerror(-fd));
    return fd;
}

int h_tcp_connect_ok(const struct sockaddr_storage *sa)
{
    int fd = h_tcp_connect(sa, 5000);
    if (fd < 0)
        fail_msg("connect to port %u: %s", h_port_of(sa), strerror(-fd));
    return fd;
}

int h_udp_connect(const struct sockaddr_storage *sa)
{
    int fd = socket(sa->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail_msg("socket: %s", strerror(errno));
    h_track_fd(fd);
    int size = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    if (connect(fd, (const struct sockaddr *)sa, h_sa_len(sa)) != 0)
        fail_msg("udp connect: %s", strerror(errno));
    return fd;
}

int h_udp_bind_connect(const char *ip, uint16_t port, const struct sockaddr_storage *to)
{
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, ip, &from.sin_addr) != 1)
        fail_msg("h_udp_bind_connect: %s is not an IPv4 address", ip);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail_msg("socket: %s", strerror(errno));
    h_track_fd(fd);
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (bind(fd, (struct sockaddr *)&from, sizeof(from)) != 0) {
        int err = errno;
        h_close(fd);
        return -err;
    }
    if (connect(fd, (const struct sockaddr *)to, sizeof(struct sockaddr_in)) != 0)
        fail_msg("udp connect: %s", strerror(errno));
    return fd;
}

void h_loopback(struct sockaddr_storage *sa, int af, uint16_t port)
{
    memset(sa, 0, sizeof(*sa));
    if (af == AF_INET6) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
        v6->sin6_family = AF_INET6;
        v6->sin6_addr = in6addr_loopback;
        v6->sin6_port = htons(port);
    } else {
        struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
        v4->sin_family = AF_INET;
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        v4->sin_port = htons(port);
    }
}

uint16_t h_port_of(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return ntohs(((const struct sockaddr_in *)sa)->sin_port);
}

bool h_have_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_storage sa;
    h_loopback(&sa, AF_INET6, 0);
    bool ok = bind(fd, (struct sockaddr *)&sa, sizeof(struct sockaddr_in6)) == 0;
    close(fd);
    return ok;
}

uint16_t h_unused_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_storage sa;
    h_loopback(&sa, AF_INET, 0);
    socklen_t len = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(struct sockaddr_in)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        fail_msg("cannot get a free port: %s", strerror(errno));
    close(fd);
    return h_port_of(&sa);
}

/* Wait up to the deadline for events on fd; the revents (0 on timeout). */
static short h_wait_fd(int fd, short events, int64_t deadline)
{
    struct pollfd pfd = {fd, events, 0};
    for (;;) {
        int n = poll(&pfd, 1, h_left_ms(deadline));
        if (n > 0)
            return pfd.revents;
        if (n == 0)
            return 0;
        if (errno != EINTR)
            fail_msg("poll: %s", strerror(errno));
    }
}

void h_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    const uint8_t *p = buf;
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, p + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            fail_msg("send after %zu of %zu bytes: %s", off, len, strerror(errno));
        if (h_wait_fd(fd, POLLOUT, deadline) == 0)
            fail_msg("send timed out after %d ms with %zu of %zu bytes sent", timeout_ms, off, len);
    }
}

void h_expect_urgent_echoed(struct echod *e, int fd, const char *reply_prefix)
{
    h_send_all(fd, "abc", 3, 2000);
    h_sleep_ms(50);
    if (send(fd, "X", 1, MSG_OOB | MSG_NOSIGNAL) != 1)
        fail_msg("send with MSG_OOB: %s", strerror(errno));
    h_sleep_ms(50);
    h_send_all(fd, "def\n", 4, 2000);
    char want[256];
    int want_len = snprintf(want, sizeof(want), "%sabcXdef\n", reply_prefix);
    assert_true(want_len > 0 && (size_t)want_len < sizeof(want));
    char got[256];
    size_t len = 0;
    for (int64_t deadline = h_now_ms() + 2000; len < (size_t)want_len;) {
        int left = (int)(deadline - h_now_ms());
        ssize_t n = h_recv_some(fd, got + len, (size_t)want_len - len, left > 0 ? left : 0);
        if (n <= 0)
            fail_msg("%zu of %d bytes back (\"%.*s\"), then %s", len, want_len, (int)len, got,
                     n == -1 ? "nothing for 2 s" : "EOF or an error");
        len += (size_t)n;
    }
    h_assert_bytes("echo with an urgent byte", want, got, len);
    shutdown(fd, SHUT_WR);
    h_expect_eof(fd, 2000);
    const char *names[] = {"tcp_bytes_in", "tcp_bytes_out"};
    uint64_t v[2];
    h_echod_wait_stat(e, "tcp_closed", 1, 2000);
    h_echod_stats(e, names, v, 2);
    assert_int_equal(v[0], 8);
    assert_int_equal(v[1], (uint64_t)want_len);
}

void h_recv_exact(int fd, void *buf, size_t len, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    uint8_t *p = buf;
    size_t off = 0;
    while (off < len) {
        ssize_t n = recv(fd, p + off, len - off, 0);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n == 0)
            fail_msg("EOF after %zu of %zu expected bytes", off, len);
        if (errno != EAGAIN && errno != EINTR)
            fail_msg("recv after %zu of %zu bytes: %s", off, len, strerror(errno));
        if (h_wait_fd(fd, POLLIN, deadline) == 0)
            fail_msg("recv timed out after %d ms with %zu of %zu bytes received", timeout_ms, off,
                     len);
    }
}

ssize_t h_recv_some(int fd, void *buf, size_t len, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        if (h_wait_fd(fd, POLLIN, deadline) == 0)
            return -1;
    }
}

/* Printable excerpt of bytes for a failure message. */
static void h_excerpt(const void *data, size_t len, char *out, size_t size)
{
    const uint8_t *p = data;
    size_t o = 0;
    for (size_t i = 0; i < len && o + 8 < size; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
            out[o++] = (char)p[i];
        else
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", p[i]);
    }
    out[o < size ? o : size - 1] = '\0';
}

void h_expect_eof(int fd, int timeout_ms)
{
    uint8_t buf[256];
    ssize_t n = h_recv_some(fd, buf, sizeof(buf), timeout_ms);
    if (n == 0)
        return;
    if (n == -1)
        fail_msg("no EOF within %d ms", timeout_ms);
    if (n < 0)
        fail_msg("expected EOF, got error: %s", strerror((int)-n));
    char text[600];
    h_excerpt(buf, (size_t)n, text, sizeof(text));
    fail_msg("expected EOF, got %zd more bytes: \"%s\"", n, text);
}

void h_expect_silence(int fd, int ms)
{
    uint8_t buf[256];
    ssize_t n = h_recv_some(fd, buf, sizeof(buf), ms);
    if (n == -1)
        return;
    if (n == 0)
        fail_msg("expected no reply for %d ms, got EOF", ms);
    if (n < 0)
        fail_msg("expected no reply for %d ms, got error: %s", ms, strerror((int)-n));
    char text[600];
    h_excerpt(buf, (size_t)n, text, sizeof(text));
    fail_msg("expected no reply for %d ms, got %zd bytes: \"%s\"", ms, n, text);
}

void h_assert_bytes(const char *what, const void *want, const void *got, size_t len)
{
    if (memcmp(want, got, len) == 0)
        return;
    const uint8_t *a = want, *b = got;
    size_t i = 0;
    while (a[i] == b[i])
        i++;
    size_t from = i > 16 ? i - 16 : 0;
    size_t span = len - from < 48 ? len - from : 48;
    char wtext[256], gtext[256];
    h_excerpt(a + from, span, wtext, sizeof(wtext));
    h_excerpt(b + from, span, gtext, sizeof(gtext));
    fail_msg("%s: %zu bytes differ first at offset %zu (0x%02x expected, 0x%02x received);"
             " from offset %zu expected \"%s\" received \"%s\"",
             what, len, i, a[i], b[i], from, wtext, gtext);
}

void h_streams_run(struct h_stream *s, size_t n, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    struct pollfd *pfd = h_xmalloc(n * sizeof(*pfd));
    size_t *index = h_xmalloc(n * sizeof(*index));
    bool *is_shut = calloc(n ? n : 1, sizeof(*is_shut));
    uint8_t scratch[4096];
    if (!is_shut)
        fail_msg("out of memory");
    for (size_t i = 0; i < n; i++) {
        if (s[i].is_half_closing && s[i].tx_off == s[i].tx_len && !is_shut[i]) {
            shutdown(s[i].fd, SHUT_WR);
            is_shut[i] = true;
        }
    }
    for (;;) {
        size_t live = 0;
        for (size_t i = 0; i < n; i++) {
            bool needs_rx = s[i].rx_len < s[i].rx_expect || (s[i].is_half_closing && !s[i].has_eof);
            bool needs_tx = s[i].tx_off < s[i].tx_len;
            if (!needs_rx && !needs_tx)
                continue;
            pfd[live].fd = s[i].fd;
            pfd[live].events = (short)((needs_tx ? POLLOUT : 0) | (needs_rx ? POLLIN : 0));
            pfd[live].revents = 0;
            index[live++] = i;
        }
        if (live == 0)
            break;
        if (h_now_ms() >= deadline) {
            for (size_t k = 0; k < live; k++) {
                struct h_stream *t = &s[index[k]];
                h_note("stream %zu: sent %zu of %zu, received %zu of %zu, eof %d", index[k],
                       t->tx_off, t->tx_len, t->rx_len, t->rx_expect, t->has_eof);
            }
            free(pfd);
            free(index);
            free(is_shut);
            fail_msg("%zu of %zu streams unfinished after %d ms (see above)", live, n, timeout_ms);
        }
        int ready = poll(pfd, live, h_left_ms(deadline) < 100 ? h_left_ms(deadline) : 100);
        if (ready < 0 && errno != EINTR)
            fail_msg("poll: %s", strerror(errno));
        for (size_t k = 0; ready > 0 && k < live; k++) {
            struct h_stream *t = &s[index[k]];
            short rev = pfd[k].revents;
            if ((rev & POLLOUT) && t->tx_off < t->tx_len) {
                size_t chunk = t->tx_len - t->tx_off;
                if (t->max_chunk && chunk > t->max_chunk)
                    chunk = 1 + (size_t)(h_rand() % t->max_chunk);
                ssize_t w = send(t->fd, t->tx + t->tx_off, chunk, MSG_NOSIGNAL);
                if (w > 0)
                    t->tx_off += (size_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EINTR)
                    fail_msg("stream %zu: send after %zu of %zu bytes: %s", index[k], t->tx_off,
                             t->tx_len, strerror(errno));
                if (t->tx_off == t->tx_len && t->is_half_closing && !is_shut[index[k]]) {
                    shutdown(t->fd, SHUT_WR);
                    is_shut[index[k]] = true;
                }
            }
            if (rev & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t r;
                if (t->rx_len < t->rx_expect)
                    r = recv(t->fd, t->rx + t->rx_len, t->rx_expect - t->rx_len, 0);
                else
                    r = recv(t->fd, scratch, sizeof(scratch), 0);
                if (r > 0 && t->rx_len < t->rx_expect) {
                    t->rx_len += (size_t)r;
                } else if (r > 0) {
                    char text[300];
                    h_excerpt(scratch, (size_t)r, text, sizeof(text));
                    fail_msg("stream %zu: %zd bytes beyond the %zu expected: \"%s\"", index[k], r,
                             t->rx_expect, text);
                } else if (r == 0) {
                    if (t->rx_len < t->rx_expect)
                        fail_msg("stream %zu: EOF after %zu of %zu expected bytes (sent %zu of "
                                 "%zu)",
                                 index[k], t->rx_len, t->rx_expect, t->tx_off, t->tx_len);
                    if (!t->is_half_closing)
                        fail_msg("stream %zu: EOF although the client did not close", index[k]);
                    t->has_eof = true;
                } else if (errno != EAGAIN && errno != EINTR) {
                    fail_msg("stream %zu: recv after %zu of %zu bytes: %s", index[k], t->rx_len,
                             t->rx_expect, strerror(errno));
                }
            }
        }
    }
    free(pfd);
    free(index);
    free(is_shut);
}

void h_echo_roundtrip(int fd, const void *data, size_t len, int timeout_ms)
{
    struct h_stream s = {
        .fd = fd, .tx = data, .tx_len = len, .rx = h_xmalloc(len), .rx_expect = len};
    h_streams_run(&s, 1, timeout_ms);
    char what[64];
    snprintf(what, sizeof(what), "echo of %zu bytes", len);
    /* Compare before freeing; a mismatch fails (and leaks rx, which is fine). */
    h_assert_bytes(what, data, s.rx, len);
    free(s.rx);
}

ssize_t h_udp_recv(int fd, void *buf, size_t cap, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        ssize_t n = recv(fd, buf, cap, MSG_TRUNC);
        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EINTR)
            fail_msg("udp recv: %s", strerror(errno));
        if (h_wait_fd(fd, POLLIN, deadline) == 0)
            return -1;
    }
}

void h_udp_expect(int fd, const void *req, size_t req_len, const void *want, size_t want_len,
                  int tries, int wait_ms)
{
    uint8_t *reply = h_xmalloc(65536);
    int attempt;
    for (attempt = 1; attempt <= tries; attempt++) {
        ssize_t n = send(fd, req, req_len, 0);
        if (n != (ssize_t)req_len)
            fail_msg("udp send of %zu bytes: %s", req_len, n < 0 ? strerror(errno) : "short");
        ssize_t got = h_udp_recv(fd, reply, 65536, wait_ms);
        if (got < 0) {
            h_note("no reply to a %zu-byte datagram within %d ms (try %d of %d)", req_len, wait_ms,
                   attempt, tries);
            continue;
        }
        if ((size_t)got != want_len)
            fail_msg("a %zu-byte datagram got a %zd-byte reply, expected %zu bytes", req_len, got,
                     want_len);
        char what[80];
        snprintf(what, sizeof(what), "reply to a %zu-byte datagram", req_len);
        h_assert_bytes(what, want, reply, want_len);
        break;
    }
    if (attempt > tries)
        fail_msg("no reply to a %zu-byte datagram after %d tries", req_len, tries);
    /* A retry may bring a second, identical reply: drain it so it cannot be mistaken
     * for the next exchange's reply. */
    while (attempt > 1) {
        ssize_t got = h_udp_recv(fd, reply, 65536, 200);
        if (got < 0)
            break;
        if ((size_t)got != want_len || memcmp(reply, want, want_len) != 0)
            fail_msg("unexpected %zd-byte datagram after a retried exchange", got);
    }
    free(reply);
}

/* Run the NULL-terminated lists pre (a path first) and args as one command line. */
static struct h_output h_run_argv(const char *const *pre, const char *const *args, const void *in,
                                  size_t in_len, int timeout_ms)
{
    char *argv[32];
    size_t argc = 0;
    for (size_t i = 0; pre[i] && argc < 31; i++)
        argv[argc++] = (char *)pre[i];
    for (size_t i = 0; args[i] && argc < 31; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    char out_path[512], err_path[512];
    struct h_output o;
    o.code = h_run(argv, in, in_len, timeout_ms, out_path, err_path, sizeof(out_path));
    o.out = h_read_file(out_path, &o.out_len);
    o.err = h_read_file(err_path, NULL);
    if (!o.out || !o.err)
        fail_msg("cannot read the output of %s", argv[0]);
    return o;
}

struct h_output h_run_env(const char *env_name, const char *const *args, const void *in,
                          size_t in_len, int timeout_ms)
{
    const char *pre[] = {h_env(env_name), NULL};
    return h_run_argv(pre, args, in, in_len, timeout_ms);
}

bool h_run_localhost_v6_refused(uint16_t port, const char *prog, const char *const *args,
                                const void *in, size_t in_len, int timeout_ms, struct h_output *out)
{
    static const char hosts[] = "::1 localhost\n127.0.0.1 localhost\n";
    char hosts_path[512];
    h_write_temp("hosts", hosts, strlen(hosts), hosts_path, sizeof(hosts_path));
    const char *in_namespace[] = {"/usr/bin/unshare",
                                  "--mount",
                                  "/bin/sh",
                                  "-c",
                                  "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
                                  hosts_path,
                                  NULL,
                                  NULL};
    /* The premise: there, getaddrinfo (AI_ADDRCONFIG) gives ::1 first. */
    in_namespace[6] = "/usr/bin/getent";
    const char *ahosts[] = {"ahosts", "localhost", NULL};
    struct h_output order = h_run_argv(in_namespace, ahosts, NULL, 0, 10000);
    bool is_v6_first = order.code == 0 && strncmp(order.out, "::1 ", 4) == 0 &&
                       strstr(order.out, "\n127.0.0.1 ") != NULL;
    if (!is_v6_first)
        h_note("cannot make localhost resolve to ::1 first here (getent in a private mount "
               "namespace: exit %d, \"%.80s\", \"%.80s\")",
               order.code, order.out, order.err);
    h_output_free(&order);
    if (!is_v6_first)
        return false;
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_storage sa;
    h_loopback(&sa, AF_INET6, port);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(struct sockaddr_in6)) != 0) {
        h_note("cannot bind [::1]:%u: %s", (unsigned)port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    h_track_fd(fd); /* bound, never listening: a connect to it is refused */
    in_namespace[6] = prog;
    *out = h_run_argv(in_namespace, args, in, in_len, timeout_ms);
    h_close(fd);
    return true;
}

void h_output_free(struct h_output *o)
{
    free(o->out);
    free(o->err);
}

void h_expect_usage_error(const char *env_name, const char *prog, const char *const *args,
                          const char *needle)
{
    struct h_output r = h_run_env(env_name, args, NULL, 0, 10000);
    char start[64], end[128];
    snprintf(start, sizeof(start), "%s: ", prog);
    snprintf(end, sizeof(end), "\nTry '%s --help'.\n", prog);
    size_t len = strlen(r.err);
    bool is_shaped = strncmp(r.err, start, strlen(start)) == 0 && len >= strlen(end) &&
                     strcmp(r.err + len - strlen(end), end) == 0;
    char cmd[512] = "";
    for (size_t i = 0, n = 0; args[i] && n < sizeof(cmd); i++)
        n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, " %s", args[i]);
    if (r.code != 64 || !is_shaped || !strstr(r.err, needle))
        fail_msg("%s%s: expected exit 64 and \"%s...%s...%s\", got exit %d, stderr \"%s\"", prog,
                 cmd, start, needle, end, r.code, r.err);
    h_output_free(&r);
}

/* ------------------------------------------------------------------ hostile-client suite */

double h_cpu_seconds(pid_t pid)
{
    char path[64];
    char *text = h_read_proc(pid, "stat", path, sizeof(path));
    /* The command name may hold spaces and ')': the fields start after the last ')'.
     * utime and stime are fields 14 and 15, the 12th and 13th after it. */
    const char *p = strrchr(text, ')');
    unsigned long long ticks[2] = {0, 0};
    int field = 2;
    for (; p && *p && field < 15; p++) {
        if (*p != ' ')
            continue;
        field++;
        if (field == 14 || field == 15)
            ticks[field - 14] = strtoull(p + 1, NULL, 10);
    }
    free(text);
    if (field < 15)
        fail_msg("%s: no utime and stime", path);
    return (double)(ticks[0] + ticks[1]) / (double)sysconf(_SC_CLK_TCK);
}

void h_tcp_connect_paced(int *fds, size_t n, const struct sockaddr_storage *sa, size_t batch)
{
    struct pollfd *pfd = h_xmalloc(batch * sizeof(*pfd));
    for (size_t base = 0; base < n; base += batch) {
        size_t count = n - base < batch ? n - base : batch;
        for (size_t i = 0; i < count; i++) {
            fds[base + i] = h_tcp_start(sa, 0);
            if (fds[base + i] < 0)
                fail_msg("connect %zu of %zu: %s", base + i, n, strerror(-fds[base + i]));
            pfd[i] = (struct pollfd){fds[base + i], POLLOUT, 0};
        }
        int64_t deadline = h_now_ms() + 10000;
        for (size_t done = 0; done < count;) {
            if (h_now_ms() >= deadline)
                fail_msg("connects %zu..%zu: %zu done after 10 s", base, base + count, done);
            if (poll(pfd, count, 100) < 0 && errno != EINTR)
                fail_msg("poll: %s", strerror(errno));
            for (size_t i = 0; i < count; i++) {
                if (pfd[i].fd < 0 || !pfd[i].revents)
                    continue;
                int err = 0;
                socklen_t len = sizeof(err);
                getsockopt(pfd[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err)
                    fail_msg("connect %zu of %zu: %s", base + i, n, strerror(err));
                pfd[i].fd = -1;
                done++;
            }
        }
    }
    free(pfd);
}

/* ------------------------------------------------------------------ limits */

pid_t h_spawn_limited(char *const argv[], int err_fd, const char *err_path, long nofile)
{
    struct h_spawn_how how = {
        .in_fd = -1, .err_fd = err_fd, .err_path = err_path, .nofile = nofile};
    return h_spawn_how(argv, &how);
}

void h_echod_start_limited(struct echod *e, const char *config_text, long nofile)
{
    h_echod_launch(e, config_text, NULL, nofile, -1, 0);
}

void h_echod_start_stderr(struct echod *e, const char *config_text, int err_fd)
{
    h_echod_launch(e, config_text, NULL, 0, err_fd, 0);
}

void h_echod_start_closed_std(struct echod *e, const char *config_text, unsigned closed_std)
{
    h_echod_launch(e, config_text, NULL, 0, -1, closed_std);
}

bool h_is_closed_within(int fd, int timeout_ms, bool may_have_data)
{
    uint8_t buf[4096];
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - h_now_ms());
        ssize_t n = h_recv_some(fd, buf, sizeof(buf), left > 0 ? left : 0);
        if (n == 0 || n < -1)
            return true; /* EOF, or an error such as a reset */
        if (n == -1)
            return false;
        if (!may_have_data)
            fail_msg("echod sent %zd unexpected bytes", n);
        if (h_now_ms() >= deadline)
            return false;
    }
}

/* ---------------------------------------------------------------- HTTP */

struct h_http_reply h_http_request(const struct sockaddr_storage *sa, const char *from,
                                   const char *request, size_t len, int timeout_ms)
{
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail_msg("socket: %s", strerror(errno));
    h_track_fd(fd);
    struct sockaddr_in src = {.sin_family = AF_INET};
    if (from && (inet_pton(AF_INET, from, &src.sin_addr) != 1 ||
                 bind(fd, (const struct sockaddr *)&src, sizeof(src)) != 0))
        fail_msg("cannot bind the client to %s: %s", from, strerror(errno));
    if (connect(fd, (const struct sockaddr *)sa, h_sa_len(sa)) != 0 && errno != EINPROGRESS)
        fail_msg("connect to port %u: %s", h_port_of(sa), strerror(errno));
    if ((fd = h_tcp_finish(fd, timeout_ms)) < 0)
        fail_msg("connect to port %u: %s", h_port_of(sa), strerror(-fd));
    h_send_all(fd, request, len, timeout_ms);
    size_t cap = 64 * KIB, got = 0;
    char *data = h_xmalloc(cap + 1);
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        if (got == cap)
            data = realloc(data, (cap *= 2) + 1);
        assert_non_null(data);
        ssize_t n = h_recv_some(fd, data + got, cap - got, (int)h_left_ms(deadline));
        if (n == -1)
            fail_msg("no end of the HTTP reply within %d ms (%zu bytes so far)", timeout_ms, got);
        if (n <= 0) /* EOF, or a reset after the reply */
            break;
        got += (size_t)n;
    }
    h_close(fd);
    data[got] = '\0';
    struct h_http_reply r = {0};
    char *end = strstr(data, "\r\n\r\n");
    size_t head_len = end ? (size_t)(end - data) : got;
    r.headers = h_xmalloc(head_len + 1);
    memcpy(r.headers, data, head_len);
    r.headers[head_len] = '\0';
    r.body_len = end ? got - head_len - 4 : 0;
    r.body = h_xmalloc(r.body_len + 1);
    memcpy(r.body, end ? end + 4 : "", r.body_len);
    r.body[r.body_len] = '\0';
    if (sscanf(data, "HTTP/1.%*d %d", &r.status) != 1)
        r.status = 0;
    free(data);
    return r;
}

void h_http_free(struct h_http_reply *r)
{
    free(r->headers);
    free(r->body);
    *r = (struct h_http_reply){0};
}

struct h_http_reply h_http_get(const struct sockaddr_storage *sa, const char *path)
{
    char request[512];
    int n = snprintf(request, sizeof(request),
                     "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", path);
    return h_http_request(sa, NULL, request, (size_t)n, 5000);
}

bool h_http_header(const struct h_http_reply *r, const char *name, char *buf, size_t size)
{
    size_t len = strlen(name);
    for (const char *line = strstr(r->headers, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        const char *p = line + 2;
        if (strncasecmp(p, name, len) != 0 || p[len] != ':')
            continue;
        p += len + 1;
        p += strspn(p, " \t");
        size_t n = strcspn(p, "\r");
        snprintf(buf, size, "%.*s", (int)n, p);
        return true;
    }
    return false;
}

/* Where the sample `series` starts in body (at a line's start, followed by a space). */
static const char *h_find_metric(const char *body, const char *series)
{
    size_t len = strlen(series);
    for (const char *p = body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, len) == 0 && p[len] == ' ')
            return p + len + 1;
    return NULL;
}

bool h_has_metric(const char *body, const char *series)
{
    return h_find_metric(body, series) != NULL;
}

double h_metric(const char *body, const char *series)
{
    const char *value = h_find_metric(body, series);
    if (value == NULL)
        fail_msg("no sample %s in the scrape:\n%s", series, body);
    return strtod(value, NULL);
}
