/* harness: what the integration tests share. It starts the real echod (and the tools)
 * on loopback with port-0 configs, learns the ports from --port-file, and gives socket
 * helpers that never block without a deadline. A safety net (atexit, SIGALRM, SIGTERM,
 * PR_SET_PDEATHSIG) SIGKILLs every child it started and removes the mkdtemp directory.
 * Single-threaded: the tests drive many sockets with poll(2), never with threads.
 * Helpers that assert use cmocka, so a failure longjmps to the test's teardown, which
 * must call h_echod_stop / h_close_all to release what the test held. */
#ifndef ECHOD_TEST_HARNESS_H
#define ECHOD_TEST_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>

#include <cmocka.h>

#define H_MAX_LISTENERS 8
#define KIB             1024u
#define MIB             (1024u * 1024u)

/* One started echod: its files, pid and the listeners read from its port file. */
struct echod {
    pid_t pid;           /* 0 once reaped */
    int exit_status;     /* as h_wait_exit returns it, once reaped */
    char conf_path[512]; /* the config it was started with */
    char port_path[512]; /* its --port-file */
    char log_path[512];  /* its stderr */
    char out_path[512];  /* its stdout */
    size_t tcp_count;    /* listeners from the port file, TCP first as echod wrote them */
    size_t udp_count;
    struct sockaddr_storage tcp[H_MAX_LISTENERS];
    struct sockaddr_storage udp[H_MAX_LISTENERS];
    char tcp_text[H_MAX_LISTENERS][64]; /* "127.0.0.1:40123" as written in the port file */
    char udp_text[H_MAX_LISTENERS][64];
    size_t metrics_count; /* metrics endpoints from the port file, after TCP and UDP */
    struct sockaddr_storage metrics[H_MAX_LISTENERS];
    char metrics_text[H_MAX_LISTENERS][64];
};

/* A stream driven by h_streams_run: sends tx, expects rx_expect bytes back. */
struct h_stream {
    int fd;            /* non-blocking connected TCP socket */
    const uint8_t *tx; /* bytes to send */
    size_t tx_len;
    size_t tx_off;        /* sent so far */
    size_t max_chunk;     /* largest single send; 0 = unlimited */
    bool is_half_closing; /* shutdown(SHUT_WR) once tx is sent, then expect EOF */
    uint8_t *rx;          /* receive buffer of rx_expect bytes */
    size_t rx_expect;
    size_t rx_len; /* received so far */
    bool has_eof;  /* EOF seen */
};

/* ---- process-wide set-up */

/* Call first in main(): temp dir, safety net, SIGPIPE ignored, RLIMIT_NOFILE raised, a
 * last-resort alarm of limit_s seconds for the whole binary, and the random seed
 * (ECHOD_TEST_SEED or the time), printed as a TAP comment. */
void h_init(const char *name, unsigned limit_s);
/* The mkdtemp directory of this test binary. */
const char *h_tmpdir(void);
/* An environment variable that must be set (ECHOD_BIN, ...): fails the test otherwise. */
const char *h_env(const char *name);
/* Print a TAP comment line "# ..." on stdout (kept in the test log). */
void h_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- time and randomness */

int64_t h_now_ms(void);
void h_sleep_ms(int ms);
/* Next value of the per-binary seeded generator (xorshift64*). */
uint64_t h_rand(void);
/* Fill buf with seeded random bytes (NULs included, as random bytes go). */
void h_fill_random(void *buf, size_t len);
/* malloc or fail the test. */
void *h_xmalloc(size_t len);

/* ---- files */

/* Write len bytes to h_tmpdir()/NAME-N (unique), returning the path in out. */
void h_write_temp(const char *name, const void *data, size_t len, char *out, size_t out_size);
/* Read a whole file (NUL-terminated; *len_out excludes the NUL); NULL if unreadable. */
char *h_read_file(const char *path, size_t *len_out);
/* Whether the file holds needle. */
bool h_file_contains(const char *path, const char *needle);

/* ---- processes */

/* fork/exec argv[0] with stdin from stdin_fd (-1: /dev/null) and stdout/stderr to the
 * given paths (NULL: /dev/null). The child is tracked by the safety net. */
pid_t h_spawn(char *const argv[], int stdin_fd, const char *out_path, const char *err_path);
/* Socket activation as systemd does it, for the next child spawned (h_spawn, h_run,
 * h_echod_start, ...) only: fds[i] on fd 3 + i, LISTEN_FDS = count, LISTEN_PID = the
 * child's own pid, LISTEN_FDNAMES = names (unset when NULL). The caller keeps fds. */
#define H_MAX_PASSED_FDS 8
void h_spawn_pass_fds(const int *fds, size_t count, const char *names);
/* Track a child forked by the test itself, so the safety net kills it too. */
void h_track_child(pid_t pid);
/* Wait up to timeout_ms for pid; returns its exit code, 128+signal if killed, or -1 on
 * timeout (pid is then still running and still tracked). */
int h_wait_exit(pid_t pid, int timeout_ms);
/* SIGKILL and reap a tracked child (no-op for 0). */
void h_kill(pid_t pid);
/* Run argv to completion: stdin gets `in` through a pipe (NULL: /dev/null), stdout and
 * stderr are saved to fresh temp files whose paths are returned. Returns the exit code
 * (as h_wait_exit) and fails the test if it does not exit within timeout_ms. */
int h_run(char *const argv[], const void *in, size_t in_len, int timeout_ms, char *out_path,
          char *err_path, size_t path_size);

/* The outcome of one run of a binary: its exit code (as h_wait_exit) and its output. */
struct h_output {
    int code;
    char *out; /* stdout, NUL-terminated */
    size_t out_len;
    char *err; /* stderr, NUL-terminated */
};

/* h_run the binary named by environment variable env_name (ECHOD_CLI_BIN, ...) with the
 * NULL-terminated args (at most 20) and `in` on stdin (NULL: /dev/null); fails the test
 * if its output cannot be read. Release with h_output_free. */
struct h_output h_run_env(const char *env_name, const char *const *args, const void *in,
                          size_t in_len, int timeout_ms);
void h_output_free(struct h_output *o);
/* Run prog (a path) with args as h_run_env does, where the name "localhost" resolves to
 * ::1 first, then 127.0.0.1, and a connect to [::1]:port is refused: in a private mount
 * namespace whose /etc/hosts says so (unshare --mount, which needs root), with a TCP
 * socket bound to [::1]:port that does not listen. False, with a note saying why, where
 * this cannot be arranged (no root, no IPv6, no such order); the test should skip then. */
bool h_run_localhost_v6_refused(uint16_t port, const char *prog, const char *const *args,
                                const void *in, size_t in_len, int timeout_ms,
                                struct h_output *out);
/* Run the binary named by env_name with args (as h_run_env), which must refuse them as
 * bad usage: exit 64 and stderr "PROG: ...needle...\nTry 'PROG --help'.\n". */
void h_expect_usage_error(const char *env_name, const char *prog, const char *const *args,
                          const char *needle);

/* ---- echod */

/* Write config_text to a temp file and start ECHOD_BIN -c FILE --port-file P plus the
 * NULL-terminated extra args (may be NULL). Waits up to 5 s for the port file and fails
 * with echod's stderr if it exits first. */
void h_echod_start(struct echod *e, const char *config_text, const char *const *extra_args);
/* Send sig and wait up to timeout_ms; returns the exit status as h_wait_exit. */
int h_echod_signal_wait(struct echod *e, int sig, int timeout_ms);
/* Teardown: if running, SIGTERM, wait 5 s, SIGKILL; returns the exit status (or -1 if it
 * had to be killed). Safe to call twice. */
int h_echod_stop(struct echod *e);
/* The usual teardown: close every tracked fd, stop echod, and fail (with its log) unless
 * it exited 0 after SIGTERM; e is zeroed for the next test. Safe when never started. */
void h_echod_teardown(struct echod *e);
/* The echod a test binary runs, and the cmocka setup and teardown built on it: TCP and
 * UDP echo on 127.0.0.1 port 0, and h_echod_teardown(&echod). */
extern struct echod echod;
int h_setup_echo(void **state);
int h_teardown(void **state);
/* Fail the test unless echod is still running. */
void h_echod_assert_alive(struct echod *e);
/* Send SIGUSR1 and wait (5 s) for a new "stats" line; parse counter `name` from it. */
uint64_t h_echod_stat(struct echod *e, const char *name);
/* Poll counter `name` until it reaches want, for up to timeout_ms; its last value. A
 * counter may move just after the client sees the effect (a reply counted once sendmsg
 * returns), so tests that expect a count wait for it. */
uint64_t h_echod_wait_stat(struct echod *e, const char *name, uint64_t want, int timeout_ms);
/* Like h_echod_stat for several counters from one stats line; values[i] for names[i]. */
void h_echod_stats(struct echod *e, const char *const *names, uint64_t *values, size_t count);
/* Replace echod's config file (atomically) by config_text, send SIGHUP, and wait (5 s)
 * until its "reloads" or "reload_failures" counter moves; then re-read the port file it
 * rewrote. Returns 0 for an applied reload, -1 for a refused one. */
int h_echod_reload(struct echod *e, const char *config_text);
/* Write config_text over echod's config file atomically (temp file + rename). */
void h_echod_write_conf(struct echod *e, const char *config_text);
/* Re-read echod's port file into e (listeners change on reload). */
void h_echod_read_ports(struct echod *e);
/* Whether echod's stderr holds needle. */
bool h_echod_log_contains(struct echod *e, const char *needle);
/* Print echod's stderr as TAP comments (for a failure's context). */
void h_echod_dump_log(struct echod *e);

/* ---- /proc */

/* Under ASan freed memory sits in a quarantine of up to 256 MiB, and TSan keeps shadow
 * memory: RSS there measures the sanitizer, so tests print it but do not assert it. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define H_RSS_IS_CHECKED false
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define H_RSS_IS_CHECKED false
#endif
#endif
#ifndef H_RSS_IS_CHECKED
#define H_RSS_IS_CHECKED true
#endif

/* VmRSS of pid in KiB; fails the test if unreadable. */
long h_rss_kib(pid_t pid);
/* Number of entries in /proc/PID/fd. */
int h_fd_count(pid_t pid);
/* Raise RLIMIT_NOFILE's soft limit to the hard one; returns the new soft limit. */
long h_raise_nofile(void);

/* ---- sockets (all non-blocking; every wait has a deadline) */

/* Track fd so h_close_all closes it. h_close closes and untracks. */
void h_track_fd(int fd);
void h_close(int fd);
/* Close every tracked fd (teardown). */
void h_close_all(void);

/* TCP connect to sa within timeout_ms: the tracked non-blocking fd, or -errno. */
int h_tcp_connect(const struct sockaddr_storage *sa, int timeout_ms);
/* h_tcp_connect or fail the test. */
int h_tcp_connect_ok(const struct sockaddr_storage *sa);
/* Connect with SO_RCVBUF and SO_SNDBUF set to buf_bytes first, or fail the test. */
int h_tcp_connect_sized(const struct sockaddr_storage *sa, int buf_bytes);
/* Connect (blocking) from loopback IPv4 address src ("127.0.0.2") to sa: the tracked fd,
 * non-blocking once connected; fails the test on any error. */
int h_tcp_connect_from(const char *src, const struct sockaddr_storage *sa);
/* Start a connect without waiting: the tracked fd (connect may be in progress). */
int h_tcp_connect_start(const struct sockaddr_storage *sa);
/* A tracked, non-blocking UDP socket connected to sa. */
int h_udp_connect(const struct sockaddr_storage *sa);
/* A tracked, non-blocking UDP socket bound to IPv4 ip:port (SO_REUSEADDR; port 0: any)
 * and connected to the IPv4 address to; -errno if the bind is refused (EACCES for a
 * port below 1024 without the privilege, EADDRINUSE), fails the test on other errors. */
int h_udp_bind_connect(const char *ip, uint16_t port, const struct sockaddr_storage *to);
/* An address of family af on loopback ("127.0.0.1" or "::1") with port. */
void h_loopback(struct sockaddr_storage *sa, int af, uint16_t port);
uint16_t h_port_of(const struct sockaddr_storage *sa);
/* Whether this machine can bind ::1. */
bool h_have_ipv6(void);
/* A loopback TCP port nothing listens on (bound, then closed). */
uint16_t h_unused_tcp_port(void);

/* Send all len bytes within timeout_ms, or fail. */
void h_send_all(int fd, const void *buf, size_t len, int timeout_ms);
/* Receive exactly len bytes within timeout_ms, or fail (EOF or error included). */
void h_recv_exact(int fd, void *buf, size_t len, int timeout_ms);
/* Wait up to timeout_ms for some bytes: count received, 0 on EOF, -1 on timeout,
 * -errno on a socket error. */
ssize_t h_recv_some(int fd, void *buf, size_t len, int timeout_ms);
/* Fail unless fd delivers EOF (no further byte) within timeout_ms. */
void h_expect_eof(int fd, int timeout_ms);
/* Fail if any byte (or EOF) arrives on fd within ms. */
void h_expect_silence(int fd, int ms);
/* Send len bytes and receive exactly them back, concurrently; fails on a mismatch with
 * the offset of the first differing byte. */
void h_echo_roundtrip(int fd, const void *data, size_t len, int timeout_ms);
/* Drive n streams concurrently with poll until each has sent tx, received rx_expect
 * bytes and (if half-closing) seen EOF; fails on timeout, error or early EOF. Does not
 * compare contents. */
void h_streams_run(struct h_stream *s, size_t n, int timeout_ms);
/* On a fresh connection fd to echod e (which has served nothing else): send "abc", then
 * "X" as urgent data (MSG_OOB), then "def\n", 50 ms apart; expect exactly reply_prefix
 * followed by "abcXdef\n" back, then EOF after a half-close, with tcp_bytes_in 8 and
 * tcp_bytes_out the bytes received. RFC 862: any data received is sent back, urgent
 * or not, in order. */
void h_expect_urgent_echoed(struct echod *e, int fd, const char *reply_prefix);
/* Fail unless got[0..len) equals want, naming what and the first differing offset. */
void h_assert_bytes(const char *what, const void *want, const void *got, size_t len);

/* ---- HTTP (the metrics endpoint) */

/* What an HTTP server answered: the status, the raw header block and the body. */
struct h_http_reply {
    int status;    /* 0 when no status line came */
    char *headers; /* from the status line to the blank line, NUL-terminated */
    char *body;    /* NUL-terminated (a body holding NULs is cut at the first) */
    size_t body_len;
};

/* Send request (whole, as given) on a new connection from IPv4 address `from`
 * ("127.0.0.2"; NULL: any) to sa, and read the reply until the server closes, within timeout_ms;
 * fails the test on a connect error or a timeout. Release with h_http_free. */
struct h_http_reply h_http_request(const struct sockaddr_storage *sa, const char *from,
                                   const char *request, size_t len, int timeout_ms);
void h_http_free(struct h_http_reply *r);
/* GET path with "Connection: close"; as h_http_request. */
struct h_http_reply h_http_get(const struct sockaddr_storage *sa, const char *path);
/* The value of header `name` (case-insensitive) in r, into buf; false if absent. */
bool h_http_header(const struct h_http_reply *r, const char *name, char *buf, size_t size);
/* The value of the sample "series" (a name, or name{labels} exactly as written) in the
 * text exposition body; fails the test when it is absent. */
double h_metric(const char *body, const char *series);
/* Whether the body holds the sample "series". */
bool h_has_metric(const char *body, const char *series);

/* One UDP request/reply on a connected socket: send req and wait wait_ms for a reply;
 * with no reply, send again (tries in all). The reply must equal want; duplicates caused
 * by a retry are drained. Fails on a wrong reply or when every try goes unanswered. */
void h_udp_expect(int fd, const void *req, size_t req_len, const void *want, size_t want_len,
                  int tries, int wait_ms);
/* Receive one datagram within timeout_ms into buf: its full length (may exceed cap),
 * or -1 on timeout; fails on a socket error. */
ssize_t h_udp_recv(int fd, void *buf, size_t cap, int timeout_ms);

/* ---- hostile-client suite */

/* CPU time (utime + stime, from /proc/PID/stat) pid has used, in seconds. */
double h_cpu_seconds(pid_t pid);
/* Connect fds[0..n) to sa, `batch` at a time so the listen backlog never overflows:
 * each batch is started, then waited for (10 s); fails on any error. */
void h_tcp_connect_paced(int *fds, size_t n, const struct sockaddr_storage *sa, size_t batch);

/* ---- limits */

/* Like h_spawn, but stdin and stdout are /dev/null, stderr goes to err_fd (or, if
 * err_fd < 0, to the file err_path), and the child runs with RLIMIT_NOFILE's soft and
 * hard limits set to nofile when nofile > 0 (exit 126 if that fails). Tracked. */
pid_t h_spawn_limited(char *const argv[], int err_fd, const char *err_path, long nofile);
/* h_echod_start with RLIMIT_NOFILE (soft and hard) set to nofile before the exec. */
void h_echod_start_limited(struct echod *e, const char *config_text, long nofile);
/* h_echod_start with echod's stderr on err_fd (say, a pipe the test holds); e->log_path
 * is then empty. */
void h_echod_start_stderr(struct echod *e, const char *config_text, int err_fd);
/* h_echod_start with the standard fds in the closed_std mask (bit N: fd N) closed when
 * echod starts, as a shell's `>&- 2>&-` leaves them. */
void h_echod_start_closed_std(struct echod *e, const char *config_text, unsigned closed_std);
/* Whether echod has closed fd within timeout_ms: EOF or an error such as a reset (true),
 * or still open (false). Bytes that arrive are discarded if may_have_data, else fail. */
bool h_is_closed_within(int fd, int timeout_ms, bool may_have_data);

#endif
