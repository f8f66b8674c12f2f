/* test_sd: the two systemd protocols against real sockets this test owns. Notify: the
 * exact datagram text arrives at a path socket and at an abstract one (which only
 * matches when the address length is offsetof(sun_path) + the name's length), sends
 * never block on a manager that stops reading, and malformed NOTIFY_SOCKET values are
 * refused. Socket passing: fds the test dup2()s onto 3.. are taken with their names,
 * made close-on-exec and non-blocking, the variables unset; every malformed variable
 * (wrong pid, non-numeric, negative or absurd counts, more or fewer names than fds, a
 * passed fd that is not open) is a clear error, never a crash. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "sd.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- notify */

/* A datagram socket bound to name ("/path" or "@abstract"), as a manager binds it. */
static int bind_manager(const char *name)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    memcpy(sa.sun_path, name, len);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    if (bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)))
        fail_msg("bind %s: %s", name, strerror(errno));
    return fd;
}

/* The one datagram waiting on fd, NUL-terminated, or fail. */
static void expect_datagram(int fd, const char *want)
{
    char got[4096];
    ssize_t n = recv(fd, got, sizeof(got) - 1, 0);
    if (n < 0) {
        fail_msg("no datagram: %s", strerror(errno));
        return;
    }
    got[n] = '\0';
    if ((size_t)n != strlen(want) || memcmp(got, want, (size_t)n) != 0)
        fail_msg("datagram \"%s\" (%zd bytes), expected \"%s\"", got, n, want);
}

static void notify_path_socket(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof(path), "/tmp/test_sd-%ld.sock", (long)getpid());
    unlink(path);
    int manager = bind_manager(path);
    setenv("NOTIFY_SOCKET", path, 1);
    struct sd_notify n;
    assert_int_equal(sd_notify_open(&n), 0);
    assert_true(sd_notify_is_on(&n));
    assert_null(getenv("NOTIFY_SOCKET"));
    assert_int_equal(sd_notify_send(&n, "READY=1\nSTATUS=%s", "serving: 0 open connections"), 0);
    expect_datagram(manager, "READY=1\nSTATUS=serving: 0 open connections");
    assert_int_equal(sd_notify_send(&n, "STOPPING=1"), 0);
    expect_datagram(manager, "STOPPING=1");
    /* fd flags: close-on-exec, so nothing echod might start inherits it */
    assert_true(fcntl(n.fd, F_GETFD) & FD_CLOEXEC);
    sd_notify_close(&n);
    sd_notify_close(&n);
    assert_false(sd_notify_is_on(&n));
    close(manager);
    unlink(path);
}

static void notify_abstract_socket(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof(name), "@echod/test_sd/%ld/%ld", (long)getpid(), (long)time(NULL));
    int manager = bind_manager(name);
    setenv("NOTIFY_SOCKET", name, 1);
    struct sd_notify n;
    assert_int_equal(sd_notify_open(&n), 0);
    /* sizeof(struct sockaddr_un) would name "\0echod/...\0\0\0": another socket */
    assert_int_equal(n.addr_len, offsetof(struct sockaddr_un, sun_path) + strlen(name));
    assert_int_equal(sd_notify_send(&n, "RELOADING=1\nMONOTONIC_USEC=%llu", 123456789ULL), 0);
    expect_datagram(manager, "RELOADING=1\nMONOTONIC_USEC=123456789");
    assert_int_equal(sd_notify_send(&n, "WATCHDOG=1"), 0);
    expect_datagram(manager, "WATCHDOG=1");
    sd_notify_close(&n);
    close(manager);
}

static void notify_unset_is_off(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    struct sd_notify n;
    assert_int_equal(sd_notify_open(&n), 0);
    assert_false(sd_notify_is_on(&n));
    assert_int_equal(n.fd, -1);
    assert_int_equal(sd_notify_send(&n, "READY=1"), 0);
    sd_notify_close(&n);
}

static void notify_malformed(void **state)
{
    (void)state;
    char too_long[200];
    memset(too_long, 'x', sizeof(too_long) - 1);
    too_long[0] = '/';
    too_long[sizeof(too_long) - 1] = '\0';
    const struct {
        const char *value;
        int rc;
    } cases[] = {
        {"", -EAFNOSUPPORT},
        {"relative/notify", -EAFNOSUPPORT},
        {"vsock:2:1234", -EAFNOSUPPORT},
        {"@", -EINVAL},
        {"/", -EINVAL},
        {too_long, -EINVAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        setenv("NOTIFY_SOCKET", cases[i].value, 1);
        struct sd_notify n;
        int rc = sd_notify_open(&n);
        if (rc != cases[i].rc)
            fail_msg("NOTIFY_SOCKET=\"%s\": %d, expected %d", cases[i].value, rc, cases[i].rc);
        assert_int_equal(n.fd, -1);
        assert_null(getenv("NOTIFY_SOCKET"));
        assert_int_equal(sd_notify_send(&n, "READY=1"), 0);
    }
}

/* A manager that is gone: an error, not a crash or a hang. */
static void notify_nobody_listening(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof(path), "/tmp/test_sd-%ld-gone.sock", (long)getpid());
    unlink(path);
    setenv("NOTIFY_SOCKET", path, 1);
    struct sd_notify n;
    assert_int_equal(sd_notify_open(&n), 0);
    assert_int_equal(sd_notify_send(&n, "READY=1"), -ENOENT);
    sd_notify_close(&n);
}

/* A manager that stops reading: the queue fills and sends fail with EAGAIN at once. A
 * blocking send would hang here, and the alarm would kill the test. */
static void notify_never_blocks(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof(name), "@echod/test_sd/full/%ld", (long)getpid());
    int manager = bind_manager(name);
    setenv("NOTIFY_SOCKET", name, 1);
    struct sd_notify n;
    assert_int_equal(sd_notify_open(&n), 0);
    alarm(10);
    int rc = 0, sent = 0;
    while (sent < 100000 && (rc = sd_notify_send(&n, "STATUS=%d", sent)) == 0)
        sent++;
    alarm(0);
    if (rc != -EAGAIN)
        fail_msg("after %d sends to a manager that does not read: %d, expected -EAGAIN", sent, rc);
    expect_datagram(manager, "STATUS=0"); /* what was queued is intact */
    sd_notify_close(&n);
    close(manager);
}

/* ---------------------------------------------------------------- socket passing */

/* Move fds[0..count) onto 3.. (as a manager passes them: blocking, inheritable); the
 * originals are closed and fds[] updated. */
static void place_fds(int *fds, size_t count)
{
    int high[8];
    assert_true(count <= 8);
    for (size_t i = 0; i < count; i++) {
        high[i] = fcntl(fds[i], F_DUPFD, 100);
        assert_true(high[i] >= 100);
        close(fds[i]);
    }
    for (size_t i = 0; i < count; i++) {
        int target = SD_LISTEN_FDS_START + (int)i;
        assert_int_equal(dup2(high[i], target), target);
        close(high[i]);
        fds[i] = target;
    }
}

static void set_listen_env(const char *pid, const char *fds, const char *names)
{
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (pid)
        setenv("LISTEN_PID", pid, 1);
    if (fds)
        setenv("LISTEN_FDS", fds, 1);
    if (names)
        setenv("LISTEN_FDNAMES", names, 1);
}

static char *our_pid(void)
{
    static char text[32];
    snprintf(text, sizeof(text), "%ld", (long)getpid());
    return text;
}

static void assert_env_unset(void)
{
    assert_null(getenv("LISTEN_PID"));
    assert_null(getenv("LISTEN_FDS"));
    assert_null(getenv("LISTEN_FDNAMES"));
}

/* A blocking TCP listener and a blocking UDP socket, on loopback port 0, at 3 and 4. */
static void make_tcp_and_udp(int fds[2])
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    fds[0] = socket(AF_INET, SOCK_STREAM, 0);
    fds[1] = socket(AF_INET, SOCK_DGRAM, 0);
    assert_int_equal(bind(fds[0], (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fds[0], 8), 0);
    assert_int_equal(bind(fds[1], (struct sockaddr *)&sa, sizeof(sa)), 0);
    place_fds(fds, 2);
}

static void listen_none(void **state)
{
    (void)state;
    set_listen_env(NULL, NULL, "stray");
    struct sd_listen l;
    char err[256] = "";
    assert_int_equal(sd_listen_take(&l, err, sizeof(err)), 0);
    assert_int_equal(l.count, 0);
    assert_env_unset();
    sd_listen_free(&l);
}

static void listen_named(void **state)
{
    (void)state;
    int fds[2];
    make_tcp_and_udp(fds);
    assert_false(fcntl(3, F_GETFL) & O_NONBLOCK);
    assert_false(fcntl(3, F_GETFD) & FD_CLOEXEC);
    set_listen_env(our_pid(), "2", "tcp:udp");
    struct sd_listen l;
    char err[256] = "";
    if (sd_listen_take(&l, err, sizeof(err)) != 0)
        fail_msg("sd_listen_take: %s", err);
    assert_int_equal(l.count, 2);
    assert_string_equal(sd_listen_name(&l, 0), "tcp");
    assert_string_equal(sd_listen_name(&l, 1), "udp");
    assert_env_unset();
    for (int fd = 3; fd <= 4; fd++) {
        assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    }
    sd_listen_free(&l);
    close(3);
    close(4);
}

static void listen_unnamed(void **state)
{
    (void)state;
    int fds[2];
    make_tcp_and_udp(fds);
    set_listen_env(our_pid(), "2", NULL);
    struct sd_listen l;
    char err[256] = "";
    assert_int_equal(sd_listen_take(&l, err, sizeof(err)), 0);
    assert_int_equal(l.count, 2);
    assert_null(sd_listen_name(&l, 0));
    assert_null(sd_listen_name(&l, 1));
    sd_listen_free(&l);
    close(3);
    close(4);
}

static void listen_zero_fds(void **state)
{
    (void)state;
    set_listen_env(our_pid(), "0", NULL);
    struct sd_listen l;
    char err[256] = "";
    assert_int_equal(sd_listen_take(&l, err, sizeof(err)), 0);
    assert_int_equal(l.count, 0);
    assert_env_unset();
}

static void listen_malformed(void **state)
{
    (void)state;
    int fds[2];
    make_tcp_and_udp(fds);
    char long_name[300];
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    char other_pid[32];
    snprintf(other_pid, sizeof(other_pid), "%ld", (long)getpid() + 1);
    const struct {
        const char *pid, *fds, *names;
        int rc;
        const char *says;
    } cases[] = {
        {other_pid, "2", NULL, -ESRCH, "is not echod's pid"},
        {"1", "2", "tcp:udp", -ESRCH, "LISTEN_PID=1 "},
        {NULL, "2", NULL, -EINVAL, "without LISTEN_PID"},
        {"", "2", NULL, -EINVAL, "LISTEN_PID= is not"},
        {"abc", "2", NULL, -EINVAL, "LISTEN_PID=abc is not"},
        {"-5", "2", NULL, -EINVAL, "LISTEN_PID=-5 is not"},
        {"0", "2", NULL, -EINVAL, "LISTEN_PID=0 is not"},
        {our_pid(), "two", NULL, -EINVAL, "LISTEN_FDS=two is not"},
        {our_pid(), "-1", NULL, -EINVAL, "LISTEN_FDS=-1 is not"},
        {our_pid(), "", NULL, -EINVAL, "LISTEN_FDS= is not"},
        {our_pid(), " 2", NULL, -EINVAL, "LISTEN_FDS= 2 is not"},
        {our_pid(), "2x", NULL, -EINVAL, "LISTEN_FDS=2x is not"},
        {our_pid(), "1025", NULL, -EINVAL, "LISTEN_FDS=1025 is not"},
        {our_pid(), "99999999999999999999999", NULL, -EINVAL, "is not a count"},
        {our_pid(), "2", "tcp:udp:metrics", -EINVAL, "names 3 sockets, but LISTEN_FDS=2"},
        {our_pid(), "2", "tcp", -EINVAL, "names 1 socket, but LISTEN_FDS=2"},
        {our_pid(), "1", "", 0, NULL}, /* one empty name: an unnamed socket */
        {our_pid(), "1", long_name, -EINVAL, "longer than 255"},
        {our_pid(), "3", NULL, -EBADF, "fd 5 cannot be used"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        set_listen_env(cases[i].pid, cases[i].fds, cases[i].names);
        close(5); /* fd 5 is never open: LISTEN_FDS=3 names one too many */
        struct sd_listen l;
        char err[512] = "";
        int rc = sd_listen_take(&l, err, sizeof(err));
        assert_env_unset();
        if (cases[i].says == NULL) {
            assert_int_equal(rc, 0);
            assert_string_equal(sd_listen_name(&l, 0), "");
            sd_listen_free(&l);
            continue;
        }
        if (rc != cases[i].rc || strstr(err, cases[i].says) == NULL)
            fail_msg("LISTEN_PID=%s LISTEN_FDS=%s LISTEN_FDNAMES=%s: %d \"%s\", expected %d "
                     "saying \"%s\"",
                     cases[i].pid ? cases[i].pid : "(unset)", cases[i].fds,
                     cases[i].names ? cases[i].names : "(unset)", rc, err, cases[i].rc,
                     cases[i].says);
        assert_int_equal(l.count, 0);
        assert_null(l.names);
        sd_listen_free(&l);
    }
    close(3);
    close(4);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(notify_path_socket),
        cmocka_unit_test(notify_abstract_socket),
        cmocka_unit_test(notify_unset_is_off),
        cmocka_unit_test(notify_malformed),
        cmocka_unit_test(notify_nobody_listening),
        cmocka_unit_test(notify_never_blocks),
        cmocka_unit_test(listen_none),
        cmocka_unit_test(listen_named),
        cmocka_unit_test(listen_unnamed),
        cmocka_unit_test(listen_zero_fds),
        cmocka_unit_test(listen_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
