/* test_systemd: echod as systemd sees it, with the test playing systemd's part.
 * Notify: the test binds the NOTIFY_SOCKET datagram socket; READY=1 comes first and
 * only once the port file is written and the listeners echo, STATUS= tells open
 * connections and totals at most once a second, STOPPING=1 comes with SIGTERM, and a
 * plain run (no NOTIFY_SOCKET) never wakes its main thread. Socket activation: the test
 * creates sockets on port 0 and passes them on fd 3.. with LISTEN_PID/LISTEN_FDS/
 * LISTEN_FDNAMES (h_spawn_pass_fds), and once through the real systemd-socket-activate:
 * TCP alone, TCP and UDP named, a TCP one named "metrics" serving the metrics
 * endpoint, unnamed ones classified by type, and every unusable fd
 * (a connection as Accept=yes passes, a pipe, AF_UNIX, a name that does not fit)
 * refused with exit 76. Journald: with JOURNAL_STREAM naming its stderr, lines start
 * with <N> and carry no timestamp; without it, they are unchanged. */
#include "config.h"

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define EXIT_PROTOCOL 76 /* EX_PROTOCOL: unusable sockets from systemd */

static const char *const conf_port0 = "workers = 1;\n"
                                      "tcp = { listen = [ \"127.0.0.1:0\" ]; };\n"
                                      "udp = { listen = [ \"127.0.0.1:0\" ]; };\n";

/* ---------------------------------------------------------------- helpers */

/* A datagram socket bound to a fresh path in the temp dir, as systemd's notify socket;
 * its path in path. */
static int notify_bind(char *path, size_t size)
{
    static unsigned serial;
    snprintf(path, size, "%s/notify-%u", h_tmpdir(), ++serial);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        fail_msg("notify path %s is too long", path);
    memcpy(sa.sun_path, path, strlen(path));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        fail_msg("notify socket %s: %s", path, strerror(errno));
    h_track_fd(fd);
    return fd;
}

/* The next notification within timeout_ms into buf (NUL-terminated): its length, or
 * -1 on timeout. */
static ssize_t notify_recv(int fd, char *buf, size_t size, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        ssize_t n = recv(fd, buf, size - 1, 0);
        if (n >= 0) {
            buf[n] = '\0';
            return n;
        }
        if (errno != EAGAIN && errno != EINTR)
            fail_msg("notify recv: %s", strerror(errno));
        int64_t left = deadline - h_now_ms();
        if (left <= 0)
            return -1;
        struct pollfd pfd = {fd, POLLIN, 0};
        poll(&pfd, 1, (int)left);
    }
}

/* Wait up to timeout_ms for the notification exactly equal to want, skipping others. */
static void notify_expect(int fd, const char *want, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    char got[1024] = "";
    for (;;) {
        int64_t left = deadline - h_now_ms();
        if (left <= 0 || notify_recv(fd, got, sizeof(got), (int)left) < 0)
            fail_msg("no notification \"%s\" within %d ms (last: \"%s\")", want, timeout_ms, got);
        if (strcmp(got, want) == 0)
            return;
    }
}

/* Start echod with argv after ECHOD_BIN ("-c CONF --port-file PORTS" added), without
 * waiting for anything; e gets its paths and pid. */
static void echod_spawn(struct echod *e, const char *config_text)
{
    memset(e, 0, sizeof(*e));
    static unsigned serial;
    h_write_temp("echod.conf", config_text, strlen(config_text), e->conf_path,
                 sizeof(e->conf_path));
    snprintf(e->port_path, sizeof(e->port_path), "%s/sd-%u.ports", h_tmpdir(), ++serial);
    snprintf(e->log_path, sizeof(e->log_path), "%s/sd-%u.log", h_tmpdir(), serial);
    char *argv[] = {(char *)h_env("ECHOD_BIN"), (char *)"-c", e->conf_path,
                    (char *)"--port-file",      e->port_path, NULL};
    e->pid = h_spawn(argv, -1, NULL, e->log_path);
}

/* echod_spawn with NOTIFY_SOCKET=path and the "NAME=VALUE" strings of env (NULL
 * terminated, or NULL) in its environment only. */
static void echod_spawn_notified(struct echod *e, const char *config_text, const char *path,
                                 const char *const *env)
{
    setenv("NOTIFY_SOCKET", path, 1);
    for (size_t i = 0; env && env[i]; i++)
        putenv((char *)env[i]);
    echod_spawn(e, config_text);
    unsetenv("NOTIFY_SOCKET");
    for (size_t i = 0; env && env[i]; i++) {
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)strcspn(env[i], "="), env[i]);
        unsetenv(name);
    }
}

/* A loopback socket on port 0, blocking, as systemd creates them: a listening TCP
 * socket (SOCK_STREAM) or a bound UDP one; its address in sa. Tracked. */
static int make_socket(int type, struct sockaddr_storage *sa)
{
    h_loopback(sa, AF_INET, 0);
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    socklen_t len = sizeof(struct sockaddr_in);
    if (fd < 0 || bind(fd, (struct sockaddr *)sa, len) < 0 ||
        (type == SOCK_STREAM && listen(fd, 64) < 0) ||
        getsockname(fd, (struct sockaddr *)sa, &len) < 0)
        fail_msg("cannot make a %s socket: %s", type == SOCK_STREAM ? "tcp" : "udp",
                 strerror(errno));
    h_track_fd(fd);
    return fd;
}

/* The port file line echod writes for a listener at sa. */
static void port_line(const char *proto, const struct sockaddr_storage *sa, char *out, size_t size)
{
    char host[64];
    inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, host, sizeof(host));
    snprintf(out + strlen(out), size - strlen(out), "%s %s:%u\n", proto, host, h_port_of(sa));
}

/* Fail unless e's port file holds exactly want. */
static void expect_port_file(const struct echod *e, const char *want)
{
    char *got = h_read_file(e->port_path, NULL);
    if (got == NULL)
        fail_msg("no port file %s", e->port_path);
    if (strcmp(got, want) != 0)
        fail_msg("port file \"%s\", expected \"%s\"", got, want);
    free(got);
}

/* A TCP echo on a new connection to sa and a UDP echo to usa (unless NULL). */
static void expect_echo(const struct sockaddr_storage *sa, const struct sockaddr_storage *usa)
{
    if (sa) {
        int fd = h_tcp_connect_ok(sa);
        h_echo_roundtrip(fd, "activated\n", 10, 5000);
        h_close(fd);
    }
    if (usa) {
        int fd = h_udp_connect(usa);
        h_udp_expect(fd, "datagram", 8, "datagram", 8, 5, 500);
        h_close(fd);
    }
}

/* Voluntary context switches of pid's main thread: how often it went to sleep. */
static long main_thread_wakeups(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, (int)pid);
    char *text = h_read_file(path, NULL);
    const char *at = text ? strstr(text, "\nvoluntary_ctxt_switches:") : NULL;
    if (at == NULL)
        fail_msg("cannot read %s", path);
    long n = strtol(at + strlen("\nvoluntary_ctxt_switches:"), NULL, 10);
    free(text);
    return n;
}

/* ---------------------------------------------------------------- notify */

/* READY=1 is the first notification and comes once the port file is there and both
 * listeners echo; STATUS= follows the counters, at most once a second; SIGTERM sends
 * STOPPING=1 while a connection still drains. */
static void notify_ready_status_stopping(void **state)
{
    (void)state;
    char path[256], got[1024];
    int nfd = notify_bind(path, sizeof(path));
    echod_spawn_notified(&echod, conf_port0, path, NULL);
    if (notify_recv(nfd, got, sizeof(got), 5000) < 0) {
        h_echod_dump_log(&echod);
        fail_msg("no notification within 5 s");
    }
    if (strcmp(got, "READY=1\nSTATUS=serving: 0 open connections, 0 accepted, 0 bytes echoed; "
                    "0 datagrams answered") != 0)
        fail_msg("first notification \"%s\", expected READY=1 and the first STATUS=", got);
    /* READY=1 promises the port file and working listeners, at once: no waiting here */
    char *ports = h_read_file(echod.port_path, NULL);
    if (ports == NULL)
        fail_msg("READY=1 came before the port file %s was written", echod.port_path);
    struct sockaddr_storage tcp, udp;
    unsigned tport = 0, uport = 0;
    if (sscanf(ports, "tcp 127.0.0.1:%u\nudp 127.0.0.1:%u\n", &tport, &uport) != 2)
        fail_msg("port file \"%s\"", ports);
    free(ports);
    h_loopback(&tcp, AF_INET, (uint16_t)tport);
    h_loopback(&udp, AF_INET, (uint16_t)uport);
    int fd = h_tcp_connect_ok(&tcp);
    h_echo_roundtrip(fd, "hello", 5, 5000);
    int ufd = h_udp_connect(&udp);
    h_udp_expect(ufd, "dgram", 5, "dgram", 5, 5, 500);
    notify_expect(nfd,
                  "STATUS=serving: 1 open connection, 1 accepted, 5 bytes echoed; 1 datagrams "
                  "answered",
                  3000);

    /* Traffic that changes the counters all the time: still at most one a second. The
     * sends are 1000 ms apart at least, so a window of T ms holds T / 1000 + 1 at most
     * (gaps seen here are not checked: a slow test reads two queued ones at once). */
    const char *steady = "STATUS=serving: 1 open connection, 1 accepted, ";
    int64_t start = h_now_ms();
    int statuses = 0;
    while (h_now_ms() - start < 3500) {
        h_echo_roundtrip(fd, "x", 1, 5000);
        for (; notify_recv(nfd, got, sizeof(got), 0) >= 0; statuses++)
            if (strncmp(got, steady, strlen(steady)) != 0)
                fail_msg("unexpected notification \"%s\"", got);
        h_sleep_ms(20);
    }
    int64_t window_ms = h_now_ms() - start;
    h_note("notify: %d STATUS= lines in %lld ms of changing counters", statuses,
           (long long)window_ms);
    if (statuses < 1 || statuses > window_ms / 1000 + 1)
        fail_msg("%d STATUS= lines in %lld ms: expected one a second", statuses,
                 (long long)window_ms);

    /* SIGTERM: STOPPING=1 while the open connection drains, then exit 0 once it ends. */
    kill(echod.pid, SIGTERM);
    for (int64_t deadline = h_now_ms() + 3000;;) {
        int64_t left = deadline - h_now_ms();
        if (left <= 0 || notify_recv(nfd, got, sizeof(got), (int)left) < 0)
            fail_msg("no STOPPING=1 within 3 s of SIGTERM (last: \"%s\")", got);
        if (strncmp(got, steady, strlen(steady)) == 0)
            continue; /* sent just before the signal */
        if (strncmp(got, "STOPPING=1\n", 11) != 0 ||
            strstr(got, "\nSTATUS=stopping: 1 open connection,") == NULL)
            fail_msg("after SIGTERM: \"%s\", expected STOPPING=1 and a stopping STATUS=", got);
        break;
    }
    h_echo_roundtrip(fd, "still served", 12, 5000);
    h_close(fd);
    int code = h_wait_exit(echod.pid, 5000);
    echod.pid = 0;
    assert_int_equal(code, 0);
}

/* The next notification that is not a periodic STATUS= line, within timeout_ms. */
static void notify_next_event(int fd, char *got, size_t size, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - h_now_ms();
        if (left <= 0 || notify_recv(fd, got, size, (int)left) < 0)
            fail_msg("no notification within %d ms", timeout_ms);
        if (strncmp(got, "STATUS=", 7) != 0)
            return;
    }
}

/* SIGHUP under the Type=notify-reload protocol: RELOADING=1 with MONOTONIC_USEC= (the
 * monotonic clock, now), then READY=1 with STATUS=; a refused reload says so in its
 * STATUS=, and the next applied one clears it. */
static void notify_reloading_then_ready(void **state)
{
    (void)state;
    char path[256], got[1024];
    int nfd = notify_bind(path, sizeof(path));
    echod_spawn_notified(&echod, conf_port0, path, NULL);
    notify_next_event(nfd, got, sizeof(got), 5000);
    if (strncmp(got, "READY=1\n", 8) != 0)
        fail_msg("first notification \"%s\", expected READY=1", got);
    const char *bad = "workers = 1;\ntcp = { listen = [ oops ]; };\n";
    const char *files[] = {conf_port0, bad, conf_port0};
    for (size_t i = 0; i < 3; i++) {
        h_echod_write_conf(&echod, files[i]);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        unsigned long long before_us =
            (unsigned long long)ts.tv_sec * 1000000u + (unsigned long long)ts.tv_nsec / 1000u;
        kill(echod.pid, SIGHUP);
        notify_next_event(nfd, got, sizeof(got), 5000);
        unsigned long long usec = 0;
        if (sscanf(got, "RELOADING=1\nMONOTONIC_USEC=%llu", &usec) != 1)
            fail_msg("after SIGHUP: \"%s\", expected RELOADING=1 and MONOTONIC_USEC=", got);
        if (usec < before_us || usec > before_us + 5000000u)
            fail_msg("MONOTONIC_USEC=%llu is not the monotonic time of the reload (%llu)", usec,
                     before_us);
        notify_next_event(nfd, got, sizeof(got), 5000);
        bool is_refused = files[i] == bad;
        const char *want = is_refused ? "READY=1\nSTATUS=reload failed, see the log; serving: "
                                      : "READY=1\nSTATUS=serving: ";
        if (strncmp(got, want, strlen(want)) != 0)
            fail_msg("after reload %zu: \"%s\", expected \"%s...\"", i, got, want);
        h_note("notify: reload %zu (%s): RELOADING=1 then \"%s\"", i,
               is_refused ? "refused" : "applied", got);
    }
}

/* Count WATCHDOG=1 pings within ms, driving fd (if >= 0) with echoes meanwhile. */
static int count_pings(int nfd, int ms, int fd)
{
    char got[1024];
    int pings = 0;
    for (int64_t end = h_now_ms() + ms; h_now_ms() < end;) {
        if (fd >= 0)
            h_echo_roundtrip(fd, "load", 4, 5000);
        while (notify_recv(nfd, got, sizeof(got), fd >= 0 ? 0 : 50) >= 0)
            pings += strcmp(got, "WATCHDOG=1") == 0;
    }
    return pings;
}

/* WATCHDOG_USEC=400000: WATCHDOG=1 every half interval, idle (threads asleep in
 * epoll_wait are alive) and busy alike; a WATCHDOG_PID that is not echod's asks for
 * nothing. */
static void watchdog_pings_idle_and_busy(void **state)
{
    (void)state;
    char path[256], got[1024];
    int nfd = notify_bind(path, sizeof(path));
    static const char *const ours[] = {"WATCHDOG_USEC=400000", NULL};
    echod_spawn_notified(&echod, conf_port0, path, ours);
    notify_next_event(nfd, got, sizeof(got), 5000);
    h_echod_read_ports(&echod);
    int idle = count_pings(nfd, 2000, -1);
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    int busy = count_pings(nfd, 2000, fd);
    h_note("watchdog: %d pings in 2 s idle, %d in 2 s of echoes (interval 400 ms)", idle, busy);
    if (idle < 6 || busy < 6)
        fail_msg("too few WATCHDOG=1 pings: %d idle, %d busy in 2 s each (want >= 6)", idle, busy);
    h_close(fd);
    assert_int_equal(h_echod_stop(&echod), 0);

    static const char *const others[] = {"WATCHDOG_USEC=400000", "WATCHDOG_PID=1", NULL};
    echod_spawn_notified(&echod, conf_port0, path, others);
    notify_next_event(nfd, got, sizeof(got), 5000);
    int other = count_pings(nfd, 1000, -1);
    assert_int_equal(other, 0);
}

/* Without NOTIFY_SOCKET the main thread sleeps in poll until a signal: idle for 2.5 s,
 * it does not wake. With it, it wakes each second (the check can see a wake-up). */
static void notify_plain_run_never_wakes(void **state)
{
    (void)state;
    char path[256];
    long wakeups[2];
    for (int with_notify = 0; with_notify <= 1; with_notify++) {
        if (with_notify) {
            notify_bind(path, sizeof(path));
            setenv("NOTIFY_SOCKET", path, 1);
        }
        h_echod_start(&echod, conf_port0, NULL);
        unsetenv("NOTIFY_SOCKET");
        h_sleep_ms(200); /* past start-up */
        long before = main_thread_wakeups(echod.pid);
        h_sleep_ms(2500);
        wakeups[with_notify] = main_thread_wakeups(echod.pid) - before;
        h_echod_teardown(&echod);
    }
    h_note("notify: main thread woke %ld times in 2.5 s idle without NOTIFY_SOCKET, %ld with",
           wakeups[0], wakeups[1]);
    if (wakeups[0] != 0)
        fail_msg("without NOTIFY_SOCKET the idle main thread woke %ld times", wakeups[0]);
    if (wakeups[1] < 1) /* about 2; at least 1 even on a loaded machine */
        fail_msg("with NOTIFY_SOCKET the main thread never woke in 2.5 s: the check is blind");
}

/* ---------------------------------------------------------------- socket activation */

/* Pass a UDP socket (when with_udp) and then a TCP listener, made on port 0, with
 * LISTEN_FDNAMES names; start echod and check it serves exactly those (TCP first in
 * its port file) and not the config's port-0 lists. Their addresses in tsa and usa. */
static void activate_echod(const char *names, bool with_udp, struct sockaddr_storage *tsa,
                           struct sockaddr_storage *usa)
{
    int fds[2];
    size_t count = 0;
    if (with_udp)
        fds[count++] = make_socket(SOCK_DGRAM, usa);
    fds[count++] = make_socket(SOCK_STREAM, tsa);
    h_spawn_pass_fds(fds, count, names);
    h_echod_start(&echod, conf_port0, NULL);
    char want[256] = "";
    port_line("tcp", tsa, want, sizeof(want));
    if (with_udp)
        port_line("udp", usa, want, sizeof(want));
    expect_port_file(&echod, want);
    for (size_t i = 0; i < count; i++)
        h_close(fds[i]); /* echod's copies are the only ones now */
    expect_echo(tsa, with_udp ? usa : NULL);
}

/* One passed TCP listener: served, the config's listen lists ignored (no UDP, no
 * second TCP port), each adoption logged. */
static void activation_tcp_alone(void **state)
{
    (void)state;
    struct sockaddr_storage sa, unused;
    activate_echod("tcp", false, &sa, &unused);
    assert_true(h_echod_log_contains(
        &echod, "socket activation: 1 socket passed; tcp.listen, udp.listen and metrics.listen are not used"));
    char line[128];
    snprintf(line, sizeof(line), "listening tcp 127.0.0.1:%u (adopted fd 3, named \"tcp\")",
             h_port_of(&sa));
    assert_true(h_echod_log_contains(&echod, line));
}

/* UDP passed before TCP, both named: both served, TCP first in the port file. */
static void activation_tcp_and_udp_named(void **state)
{
    (void)state;
    struct sockaddr_storage tsa, usa;
    activate_echod("udp:tcp", true, &tsa, &usa);
    char line[128];
    snprintf(line, sizeof(line), "listening udp 127.0.0.1:%u (adopted fd 3, named \"udp\")",
             h_port_of(&usa));
    assert_true(h_echod_log_contains(&echod, line));
}

/* Without names, or with names echod does not know (systemd names a socket after its
 * unit when FileDescriptorName= is not set), each fd is classified by its type. */
/* A reload keeps the sockets systemd passed whatever the listen lists now say (it logs
 * that they are ignored), and still applies the rest of the file. */
static void activation_reload_keeps_passed_sockets(void **state)
{
    (void)state;
    struct sockaddr_storage tsa, usa;
    activate_echod("udp:tcp", true, &tsa, &usa);
    const char *next = "workers = 1;\n"
                       "tcp = { listen = [ \"127.0.0.1:0\", \"127.0.0.1:0\" ]; mode = \"greet\"; "
                       "greeting = \"R: \"; };\n"
                       "udp = { listen = [ ]; };\n";
    assert_int_equal(h_echod_reload(&echod, next), 0);
    assert_true(h_echod_log_contains(&echod, "tcp.listen, udp.listen and metrics.listen are ignored"));
    char want[256] = "";
    port_line("tcp", &tsa, want, sizeof(want));
    port_line("udp", &usa, want, sizeof(want));
    expect_port_file(&echod, want);
    int fd = h_tcp_connect_ok(&tsa);
    char got[8];
    h_send_all(fd, "x\n", 2, 5000);
    h_recv_exact(fd, got, 5, 5000);
    h_assert_bytes("greeting after the reload", "R: x\n", got, 5);
}

/* A TCP listener named "metrics" is the metrics endpoint: listed last in the port file,
 * answering GET /metrics, and kept by a reload whatever metrics.listen says. */
static void activation_metrics_named(void **state)
{
    (void)state;
    struct sockaddr_storage tsa, usa, msa;
    int fds[3] = {make_socket(SOCK_STREAM, &msa), make_socket(SOCK_DGRAM, &usa),
                  make_socket(SOCK_STREAM, &tsa)};
    h_spawn_pass_fds(fds, 3, "metrics:udp:tcp");
    h_echod_start(&echod, conf_port0, NULL);
    char want[256] = "";
    port_line("tcp", &tsa, want, sizeof(want));
    port_line("udp", &usa, want, sizeof(want));
    port_line("metrics", &msa, want, sizeof(want));
    expect_port_file(&echod, want);
    for (size_t i = 0; i < 3; i++)
        h_close(fds[i]);
    char line[128];
    snprintf(line, sizeof(line), "listening metrics 127.0.0.1:%u (adopted fd 3, named \"metrics\")",
             h_port_of(&msa));
    assert_true(h_echod_log_contains(&echod, line));
    expect_echo(&tsa, &usa);
    struct h_http_reply r = h_http_get(&msa, "/metrics");
    assert_int_equal(r.status, 200);
    assert_true(h_metric(r.body, "echod_tcp_accepted_total") == 1);
    h_http_free(&r);
    const char *next = "metrics = { listen = [ \"127.0.0.1:0\" ]; };\n";
    assert_int_equal(h_echod_reload(&echod, next), 0);
    expect_port_file(&echod, want);
    r = h_http_get(&msa, "/metrics");
    assert_int_equal(r.status, 200);
    assert_true(h_metric(r.body, "echod_reloads_total") == 1);
    h_http_free(&r);
}

static void activation_unnamed_by_type(void **state)
{
    (void)state;
    struct sockaddr_storage tsa, usa;
    activate_echod(NULL, true, &tsa, &usa);
    assert_true(h_echod_log_contains(&echod, "(adopted fd 3)"));
    h_echod_teardown(&echod);
    activate_echod("echod.socket:echod.socket", true, &tsa, &usa);
    assert_true(h_echod_log_contains(&echod, "(adopted fd 4, named \"echod.socket\")"));
}

/* Run echod with fds passed under names; it must exit 76 saying says, and write no
 * port file. */
static void expect_refused(const int *fds, size_t count, const char *names, const char *says)
{
    char conf[512], ports[512];
    h_write_temp("echod.conf", conf_port0, strlen(conf_port0), conf, sizeof(conf));
    snprintf(ports, sizeof(ports), "%s/refused.ports", h_tmpdir());
    unlink(ports);
    const char *args[] = {"-c", conf, "--port-file", ports, NULL};
    h_spawn_pass_fds(fds, count, names);
    struct h_output r = h_run_env("ECHOD_BIN", args, NULL, 0, 5000);
    if (r.code != EXIT_PROTOCOL || strstr(r.err, says) == NULL)
        fail_msg("passed %zu fd(s) named %s: exit %d, stderr \"%s\"; expected %d saying \"%s\"",
                 count, names ? names : "(none)", r.code, r.err, EXIT_PROTOCOL, says);
    if (access(ports, F_OK) == 0)
        fail_msg("echod wrote a port file although it refused its sockets");
    h_output_free(&r);
}

/* Every fd that is neither a listening TCP socket nor a UDP socket is refused. */
static void activation_refuses_unusable_fds(void **state)
{
    (void)state;
    struct sockaddr_storage sa;
    int listener = make_socket(SOCK_STREAM, &sa);
    int client = h_tcp_connect_ok(&sa);
    int conn = -1;
    for (int64_t deadline = h_now_ms() + 5000; conn < 0 && h_now_ms() < deadline;)
        if ((conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC)) < 0)
            h_sleep_ms(5);
    if (conn < 0)
        fail_msg("accept: %s", strerror(errno));
    h_track_fd(conn);
    expect_refused(&conn, 1, NULL, "fd 3 (unnamed) is a TCP socket that is not listening");
    expect_refused(&conn, 1, "connection", "Accept=yes: echod needs Accept=no");

    int pipefd[2];
    assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
    h_track_fd(pipefd[0]);
    h_track_fd(pipefd[1]);
    expect_refused(pipefd, 1, "tcp", "fd 3 (named \"tcp\") is not a socket");

    int unix_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof(un.sun_path), "%s/unix.sock", h_tmpdir());
    assert_int_equal(bind(unix_fd, (struct sockaddr *)&un, sizeof(un)), 0);
    assert_int_equal(listen(unix_fd, 4), 0);
    h_track_fd(unix_fd);
    expect_refused(&unix_fd, 1, NULL, "is not an IPv4 or IPv6 socket");

    struct sockaddr_storage usa;
    int udp = make_socket(SOCK_DGRAM, &usa);
    int both[2] = {listener, udp};
    expect_refused(both, 2, "udp:tcp", "fd 3 (named \"udp\") is a TCP socket, not a UDP one");
    expect_refused(both, 2, "tcp:tcp", "fd 4 (named \"tcp\") is a UDP socket, not a TCP one");
    expect_refused(
        both, 2, "tcp:metrics",
        "fd 4 (named \"metrics\") is a UDP socket: the metrics endpoint needs a TCP one");
    expect_refused(both, 2, "tcp:udp:extra", "names 3 sockets, but LISTEN_FDS=2");
    expect_refused(both, 2, "tcp", "names 1 socket, but LISTEN_FDS=2");
    h_close(client);
}

/* ---------------------------------------------------------------- systemd-socket-activate */

#define SOCKET_ACTIVATE "/usr/bin/systemd-socket-activate"

/* Run systemd's own socket-activation tool with our sockets passed through (it takes
 * sockets from LISTEN_FDS as systemd would pass them, so no port is ever fixed) and
 * echod behind it; it starts echod on the first connection. */
static void socket_activate_run(const char *fdnames, const int *fds, size_t count, bool accept,
                                struct echod *e)
{
    memset(e, 0, sizeof(*e));
    static unsigned serial;
    h_write_temp("echod.conf", conf_port0, strlen(conf_port0), e->conf_path, sizeof(e->conf_path));
    snprintf(e->port_path, sizeof(e->port_path), "%s/ssa-%u.ports", h_tmpdir(), ++serial);
    snprintf(e->log_path, sizeof(e->log_path), "%s/ssa-%u.log", h_tmpdir(), serial);
    char names[128];
    snprintf(names, sizeof(names), "--fdname=%s", fdnames);
    char *argv[] = {(char *)SOCKET_ACTIVATE,
                    accept ? (char *)"--accept" : names,
                    (char *)h_env("ECHOD_BIN"),
                    (char *)"-c",
                    e->conf_path,
                    (char *)"--port-file",
                    e->port_path,
                    NULL};
    h_spawn_pass_fds(fds, count, NULL);
    e->pid = h_spawn(argv, -1, NULL, e->log_path);
}

/* Wait up to 5 s for e's port file (echod started behind systemd-socket-activate). */
static void wait_port_file(struct echod *e)
{
    for (int64_t deadline = h_now_ms() + 5000; access(e->port_path, F_OK) != 0;) {
        if (h_now_ms() >= deadline) {
            h_echod_dump_log(e);
            fail_msg("no port file within 5 s of the first connection");
        }
        h_sleep_ms(5);
    }
}

static void socket_activate_tcp_alone(void **state)
{
    (void)state;
    if (access(SOCKET_ACTIVATE, X_OK) != 0)
        skip(); /* Debian package systemd */
    struct sockaddr_storage sa;
    int fd = make_socket(SOCK_STREAM, &sa);
    socket_activate_run("tcp", &fd, 1, false, &echod);
    h_close(fd);
    int first = h_tcp_connect_ok(&sa); /* what makes it start echod */
    wait_port_file(&echod);
    h_echo_roundtrip(first, "first\n", 6, 5000);
    char want[256] = "";
    port_line("tcp", &sa, want, sizeof(want));
    expect_port_file(&echod, want);
    expect_echo(&sa, NULL);
    assert_true(h_echod_log_contains(&echod, "(adopted fd 3, named \"tcp\")"));
}

static void socket_activate_tcp_and_udp(void **state)
{
    (void)state;
    if (access(SOCKET_ACTIVATE, X_OK) != 0)
        skip();
    struct sockaddr_storage tsa, usa;
    int fds[2];
    fds[0] = make_socket(SOCK_STREAM, &tsa);
    fds[1] = make_socket(SOCK_DGRAM, &usa);
    socket_activate_run("tcp:udp", fds, 2, false, &echod);
    h_close(fds[0]);
    h_close(fds[1]);
    int first = h_tcp_connect_ok(&tsa);
    wait_port_file(&echod);
    h_echo_roundtrip(first, "first\n", 6, 5000);
    char want[256] = "";
    port_line("tcp", &tsa, want, sizeof(want));
    port_line("udp", &usa, want, sizeof(want));
    expect_port_file(&echod, want);
    expect_echo(&tsa, &usa);
    assert_true(h_echod_log_contains(&echod, "(adopted fd 4, named \"udp\")"));
}

/* --accept passes each connection, as Accept=yes does: echod refuses it with 76. */
static void socket_activate_accept_refused(void **state)
{
    (void)state;
    if (access(SOCKET_ACTIVATE, X_OK) != 0)
        skip();
    struct sockaddr_storage sa;
    int fd = make_socket(SOCK_STREAM, &sa);
    struct echod activator;
    socket_activate_run("", &fd, 1, true, &activator);
    h_close(fd);
    int conn = h_tcp_connect_ok(&sa);
    h_expect_eof(conn, 5000); /* echod exited, closing the connection */
    for (int64_t deadline = h_now_ms() + 5000;
         !h_echod_log_contains(&activator, "died with code 76");) {
        if (h_now_ms() >= deadline) {
            h_echod_dump_log(&activator);
            fail_msg("systemd-socket-activate did not report echod's exit 76");
        }
        h_sleep_ms(10);
    }
    assert_true(h_echod_log_contains(&activator, "Accept=yes: echod needs Accept=no"));
    h_kill(activator.pid); /* it serves on, as a socket unit would */
    h_close(conn);
}

/* ---------------------------------------------------------------- journald */

/* With JOURNAL_STREAM naming the pipe echod's stderr is, every line starts with its
 * priority and has no timestamp or name; a config error is <3>. */
static void journal_priority_prefixes(void **state)
{
    (void)state;
    int pipefd[2];
    assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
    struct stat st;
    assert_int_equal(fstat(pipefd[1], &st), 0);
    char stream[64];
    snprintf(stream, sizeof(stream), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", stream, 1);
    h_echod_start_stderr(&echod, conf_port0, pipefd[1]);
    int code = h_echod_stop(&echod);
    unsetenv("JOURNAL_STREAM");
    close(pipefd[1]);
    assert_int_equal(code, 0);
    char text[65536];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(text) - 1 && (n = read(pipefd[0], text + len, sizeof(text) - 1 - len)) > 0)
        len += (size_t)n;
    close(pipefd[0]);
    text[len] = '\0';
    memset(&echod, 0, sizeof(echod));
    int lines = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save), lines++) {
        if (strncmp(line, "<6>info: ", 9) != 0 && strncmp(line, "<4>warn: ", 9) != 0 &&
            strncmp(line, "<3>error: ", 10) != 0 && strncmp(line, "<7>debug: ", 10) != 0)
            fail_msg("journal line without its priority prefix: \"%s\"", line);
        if (strstr(line, "echod[") || strstr(line, "Z "))
            fail_msg("journal line with a name or timestamp: \"%s\"", line);
    }
    h_note("journal: %d lines, each with its <N> prefix", lines);
    assert_true(lines >= 4); /* listening x2, serving, received, shutting down, stats */

    /* The start-up error of a bad file is an error to the journal too. */
    char bad[512];
    const char *bad_text = "tcp = { buffer_bytes = 1; };\n";
    h_write_temp("bad.conf", bad_text, strlen(bad_text), bad, sizeof(bad));
    char err_path[512];
    snprintf(err_path, sizeof(err_path), "%s/journal-bad.err", h_tmpdir());
    int err_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(err_fd >= 0);
    assert_int_equal(fstat(err_fd, &st), 0);
    snprintf(stream, sizeof(stream), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", stream, 1);
    char *argv[] = {(char *)h_env("ECHOD_BIN"), (char *)"-t", (char *)"-c", bad, NULL};
    pid_t pid = h_spawn_limited(argv, err_fd, NULL, 0);
    unsetenv("JOURNAL_STREAM");
    close(err_fd);
    assert_int_equal(h_wait_exit(pid, 5000), 78);
    char *err = h_read_file(err_path, NULL);
    char want[600];
    snprintf(want, sizeof(want), "<3>%s:1: tcp.buffer_bytes: must be between", bad);
    if (err == NULL || strncmp(err, want, strlen(want)) != 0)
        fail_msg("config error to the journal: \"%s\", expected it to start \"%s\"",
                 err ? err : "(none)", want);
    free(err);
}

/* Elsewhere (no JOURNAL_STREAM, or one naming another file) lines are unchanged. */
static void journal_elsewhere_unchanged(void **state)
{
    (void)state;
    setenv("JOURNAL_STREAM", "1:2", 1); /* some other file */
    h_echod_start(&echod, conf_port0, NULL);
    unsetenv("JOURNAL_STREAM");
    int code = h_echod_stop(&echod);
    assert_int_equal(code, 0);
    char *text = h_read_file(echod.log_path, NULL);
    assert_non_null(text);
    if (text[0] == '<' || strstr(text, " echod[") == NULL || strstr(text, "Z echod[") == NULL)
        fail_msg("plain log changed: \"%s\"", text);
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save))
        if (line[0] != '2' || line[4] != '-' || line[10] != 'T')
            fail_msg("plain line without its timestamp: \"%s\"", line);
    free(text);
    memset(&echod, 0, sizeof(echod));
}

int main(void)
{
    h_init("test_systemd", 180);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("JOURNAL_STREAM");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(notify_ready_status_stopping, h_teardown),
        cmocka_unit_test_teardown(notify_plain_run_never_wakes, h_teardown),
        cmocka_unit_test_teardown(notify_reloading_then_ready, h_teardown),
        cmocka_unit_test_teardown(watchdog_pings_idle_and_busy, h_teardown),
        cmocka_unit_test_teardown(activation_tcp_alone, h_teardown),
        cmocka_unit_test_teardown(activation_tcp_and_udp_named, h_teardown),
        cmocka_unit_test_teardown(activation_reload_keeps_passed_sockets, h_teardown),
        cmocka_unit_test_teardown(activation_metrics_named, h_teardown),
        cmocka_unit_test_teardown(activation_unnamed_by_type, h_teardown),
        cmocka_unit_test_teardown(activation_refuses_unusable_fds, h_teardown),
        cmocka_unit_test_teardown(socket_activate_tcp_alone, h_teardown),
        cmocka_unit_test_teardown(socket_activate_tcp_and_udp, h_teardown),
        cmocka_unit_test_teardown(socket_activate_accept_refused, h_teardown),
        cmocka_unit_test_teardown(journal_priority_prefixes, h_teardown),
        cmocka_unit_test_teardown(journal_elsewhere_unchanged, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
