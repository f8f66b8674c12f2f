/* test_under_systemd: echod's units under the real systemd, booted for each test by
 * tests/systemd/sandbox as PID 1 of private namespaces, with its own journald. The
 * units are the generated ones, hardening included; `sandbox units` changes only where
 * the binary and the configuration live (a directory of this test, shown inside as
 * /run/echod-test) and, for the socket units, port 7 into a loopback port that was free
 * a moment before. Clients connect from outside the sandbox to 127.0.0.1 (the network is
 * the host's). Each teardown stops its sandbox; if this binary dies, the sandbox's reaper
 * does it when the pipe this binary holds closes.
 * Besides start, stop and the journal: `systemctl reload` under load, and WatchdogSec=2
 * under 10 s of full load with no restart.
 * The whole binary is a SKIP, with the reason, when this machine cannot boot systemd (not
 * root, no namespaces, no systemd) or when echod is built with sanitizers. */
#include "config.h"

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define SB_ROOT  "/run/echod-test" /* the test's directory, seen from inside */
#define SB_BIN   SB_ROOT "/bin"
#define SB_CONF  SB_ROOT "/etc"
#define SB_STEPS 50 /* ms between two looks at a unit's state */

/* One booted sandbox: the pid printed by `sandbox up`, the host directory shown at
 * SB_ROOT, and the write end of the pipe whose closing tears the sandbox down. */
struct sandbox {
    char id[32]; /* "" when there is none */
    char root[512];
    int life_fd;
    uint16_t port;         /* the loopback port the units and configs of this test use */
    uint16_t metrics_port; /* the loopback port of echod-metrics.socket */
    int64_t start_ms;      /* when sb_up began, for the run time the teardown reports */
    unsigned watchdog_sec; /* set before sb_up: a drop-in gives echod.service this WatchdogSec */
};

static struct sandbox sb = {.life_fd = -1};

/* ------------------------------------------------------------------ helpers */

/* Make the directory sb.root/name ("": sb.root itself). */
static void sb_mkdir(const char *name)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", sb.root, name);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", path, strerror(errno));
    chmod(path, 0755); /* the dynamic user must reach what is inside */
}

/* Write text to sb.root/NAME, readable by every user (the dynamic user reads it). */
static void sb_write(const char *name, const char *text, mode_t mode)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", sb.root, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        fail_msg("cannot write %s: %s", path, strerror(errno));
    chmod(path, mode);
}

/* Run the sandbox script with args (NULL-terminated); its exit code and output. */
static struct h_output sb_script(const char *const *args, int timeout_ms)
{
    return h_run_env("ECHOD_SANDBOX", args, NULL, 0, timeout_ms);
}

/* Run a command inside the sandbox: sandbox run ID ARGS... */
static struct h_output sb_run(const char *const *args, int timeout_ms)
{
    const char *argv[24] = {"run", sb.id};
    size_t n = 2;
    for (size_t i = 0; args[i] && n < 23; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return sb_script(argv, timeout_ms);
}

/* Print the unit's journal as TAP comments (for a failure's context). */
static void sb_dump(const char *unit)
{
    struct h_output o =
        sb_run((const char *[]){"journalctl", "--no-pager", "-u", unit, "-n", "40", NULL}, 10000);
    h_note("---- journal of %s in sandbox %s:", unit, sb.id);
    for (char *line = strtok(o.out, "\n"); line; line = strtok(NULL, "\n"))
        h_note("  %s", line);
    h_output_free(&o);
}

/* Run a command inside the sandbox that must succeed; its stdout, to free. */
static char *sb_run_ok(const char *const *args, const char *unit)
{
    struct h_output o = sb_run(args, 20000);
    if (o.code != 0) {
        h_note("%s exited %d: %s%s", args[0], o.code, o.out, o.err);
        if (unit)
            sb_dump(unit);
        fail_msg("%s %s failed in the sandbox", args[0], args[1] ? args[1] : "");
    }
    free(o.err);
    return o.out;
}

/* systemctl show -p PROP --value UNIT, without the newline; to free. */
static char *sb_prop(const char *unit, const char *prop)
{
    char *v =
        sb_run_ok((const char *[]){"systemctl", "show", "-p", prop, "--value", unit, NULL}, NULL);
    v[strcspn(v, "\n")] = '\0';
    return v;
}

static bool sb_prop_is(const char *unit, const char *prop, const char *want)
{
    char *v = sb_prop(unit, prop);
    bool is = strcmp(v, want) == 0;
    free(v);
    return is;
}

/* Wait up to timeout_ms for the unit's ActiveState to become state. */
static void sb_wait_state(const char *unit, const char *state, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    while (!sb_prop_is(unit, "ActiveState", state)) {
        if (h_now_ms() > deadline) {
            char *now = sb_prop(unit, "ActiveState");
            h_note("%s is %s after %d ms, not %s", unit, now, timeout_ms, state);
            free(now);
            sb_dump(unit);
            fail_msg("%s did not become %s", unit, state);
        }
        h_sleep_ms(SB_STEPS);
    }
}

/* The unit's journal, messages only (-o cat), with the extra journalctl args. */
static char *sb_journal(const char *unit, const char *priority)
{
    const char *args[] = {"journalctl", "--no-pager",           "-q",     "-o", "cat", "-u",
                          unit,         priority ? "-p" : NULL, priority, NULL};
    return sb_run_ok(args, NULL);
}

/* Wait up to timeout_ms for the unit's journal (at priority, if given) to hold needle;
 * journald may take a moment to store what echod wrote. */
static void sb_wait_journal(const char *unit, const char *priority, const char *needle,
                            int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        char *text = sb_journal(unit, priority);
        bool has = strstr(text, needle) != NULL;
        free(text);
        if (has)
            return;
        if (h_now_ms() > deadline) {
            sb_dump(unit);
            fail_msg("the journal of %s%s%s has no \"%s\" after %d ms", unit,
                     priority ? " at priority " : "", priority ? priority : "", needle, timeout_ms);
        }
        h_sleep_ms(SB_STEPS);
    }
}

/* A loopback port free for TCP and for UDP at this moment. */
static uint16_t sb_free_port(void)
{
    for (int i = 0; i < 50; i++) {
        uint16_t port = h_unused_tcp_port();
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_storage sa;
        h_loopback(&sa, AF_INET, port);
        bool is_free = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(struct sockaddr_in)) == 0;
        if (fd >= 0)
            close(fd);
        if (is_free)
            return port;
    }
    fail_msg("no loopback port free for both TCP and UDP in 50 tries");
    return 0;
}

/* A configuration of echod.conf's syntax that listens on 127.0.0.1:port (TCP and UDP)
 * with the extra keys, and tcp_keys inside the tcp group; written to sb.root/etc/name. */
static void sb_write_conf_tcp(const char *name, uint16_t port, const char *extra,
                              const char *tcp_keys)
{
    char text[1024], file[64];
    snprintf(text, sizeof(text),
             "workers = 2;\n%s"
             "tcp = { listen = [ \"127.0.0.1:%u\" ]; %s};\n"
             "udp = { listen = [ \"127.0.0.1:%u\" ]; };\n",
             extra, port, tcp_keys, port);
    snprintf(file, sizeof(file), "etc/%s", name);
    sb_write(file, text, 0644);
}

/* sb_write_conf_tcp with nothing in the tcp group but the listen list. */
static void sb_write_conf(const char *name, uint16_t port, const char *extra)
{
    sb_write_conf_tcp(name, port, extra, "");
}

/* sb_write_conf in greet mode with greeting. */
static void sb_write_conf_greet(const char *name, uint16_t port, const char *greeting)
{
    char keys[160];
    snprintf(keys, sizeof(keys), "mode = \"greet\"; greeting = \"%s\"; ", greeting);
    sb_write_conf_tcp(name, port, "", keys);
}

/* Prepare sb.root (bin/echod, etc/echod.conf = config, units/) and boot the sandbox.
 * With is_delayed, bin/echod is a wrapper that waits 1 s before it runs the daemon
 * (not before echod -t), to show that systemd waits for READY=1. */
static void sb_up(const char *config, bool is_delayed)
{
    static unsigned serial;
    sb.start_ms = h_now_ms();
    snprintf(sb.root, sizeof(sb.root), "%s/sandbox-%u", h_tmpdir(), ++serial);
    sb_mkdir("");
    sb_mkdir("bin");
    sb_mkdir("etc");
    sb_mkdir("units");
    sb.port = sb_free_port();
    do
        sb.metrics_port = h_unused_tcp_port();
    while (sb.metrics_port == sb.port);

    const char *real = is_delayed ? "bin/echod.real" : "bin/echod";
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", sb.root, real);
    size_t len;
    char *binary = h_read_file(h_env("ECHOD_BIN"), &len);
    if (!binary)
        fail_msg("cannot read %s", h_env("ECHOD_BIN"));
    h_write_temp("echod", binary, len, path, sizeof(path)); /* then moved into place */
    free(binary);
    char dest[600];
    snprintf(dest, sizeof(dest), "%s/%s", sb.root, real);
    if (rename(path, dest) != 0 || chmod(dest, 0755) != 0)
        fail_msg("cannot install %s: %s", dest, strerror(errno));
    if (is_delayed)
        sb_write("bin/echod",
                 "#!/bin/sh\n"
                 "# the daemon starts 1 s late, so systemd must wait for its READY=1\n"
                 "[ \"$1\" = -t ] || sleep 1\n"
                 "exec " SB_BIN "/echod.real \"$@\"\n",
                 0755);
    if (config)
        sb_write("etc/echod.conf", config, 0644);
    else
        sb_write_conf("echod.conf", sb.port, "");

    char units[600], port[16], metrics_port[16];
    snprintf(units, sizeof(units), "%s/units", sb.root);
    snprintf(port, sizeof(port), "%u", sb.port);
    snprintf(metrics_port, sizeof(metrics_port), "%u", sb.metrics_port);
    struct h_output o = sb_script(
        (const char *[]){"units", units, SB_BIN, SB_CONF, port, metrics_port, NULL}, 10000);
    if (o.code != 0)
        fail_msg("sandbox units: exit %d: %s", o.code, o.err);
    h_output_free(&o);
    if (sb.watchdog_sec > 0) { /* a drop-in with a short watchdog for echod.service */
        char text[64];
        sb_mkdir("units/echod.service.d");
        snprintf(text, sizeof(text), "[Service]\nWatchdogSec=%u\n", sb.watchdog_sec);
        sb_write("units/echod.service.d/watchdog.conf", text, 0644);
    }

    int life[2];
    if (pipe2(life, O_CLOEXEC) != 0)
        fail_msg("pipe2: %s", strerror(errno));
    char *argv[] = {(char *)h_env("ECHOD_SANDBOX"),
                    (char *)"up",
                    units,
                    (char *)"--bind",
                    sb.root,
                    (char *)SB_ROOT,
                    NULL};
    char out_path[600], err_path[600];
    snprintf(out_path, sizeof(out_path), "%s/up.out", sb.root);
    snprintf(err_path, sizeof(err_path), "%s/up.err", sb.root);
    pid_t pid = h_spawn(argv, life[0], out_path, err_path);
    close(life[0]);
    sb.life_fd = life[1];
    int code = h_wait_exit(pid, 30000);
    char *out = h_read_file(out_path, NULL);
    char *err = h_read_file(err_path, NULL);
    if (code < 0)
        h_kill(pid);
    if (code != 0 || !out || !out[0])
        fail_msg("sandbox up: exit %d: %s", code, err ? err : "");
    snprintf(sb.id, sizeof(sb.id), "%.*s", (int)strcspn(out, "\n"), out);
    free(out);
    free(err);
}

static int sb_teardown(void **state)
{
    (void)state;
    h_close_all();
    if (sb.id[0]) {
        struct h_output o = sb_script((const char *[]){"down", sb.id, NULL}, 20000);
        if (o.code != 0)
            h_note("sandbox down %s: exit %d: %s", sb.id, o.code, o.err);
        h_output_free(&o);
        h_note("sandbox %s: %lld ms from boot to teardown", sb.id,
               (long long)(h_now_ms() - sb.start_ms));
    }
    if (sb.life_fd >= 0)
        close(sb.life_fd);
    memset(&sb, 0, sizeof(sb));
    sb.life_fd = -1;
    return 0;
}

static void sb_address(struct sockaddr_storage *sa, uint16_t port)
{
    h_loopback(sa, AF_INET, port);
}

/* TCP and UDP echo on 127.0.0.1:port: random bytes back, exactly. */
static void sb_assert_echo(uint16_t port, size_t tcp_bytes)
{
    struct sockaddr_storage sa;
    sb_address(&sa, port);
    int fd = h_tcp_connect(&sa, 5000);
    if (fd < 0)
        fail_msg("connect to 127.0.0.1:%u: %s", port, strerror(-fd));
    uint8_t *data = h_xmalloc(tcp_bytes);
    h_fill_random(data, tcp_bytes);
    h_echo_roundtrip(fd, data, tcp_bytes, 10000);
    h_close(fd);
    free(data);
    int ufd = h_udp_connect(&sa);
    static const char datagram[] = "echo, datagram";
    h_udp_expect(ufd, datagram, sizeof(datagram) - 1, datagram, sizeof(datagram) - 1, 5, 500);
    h_close(ufd);
}

/* ------------------------------------------------------------------ tests */

/* Type=notify: with the daemon 1 s late, systemd keeps echod.service activating until
 * echod's READY=1, and once it says active echod answers at once, TCP and UDP: it was
 * never active before echod could serve. Then STATUS= shows in systemctl. */
static void notify_ready_then_status(void **state)
{
    (void)state;
    sb_up(NULL, true);
    int64_t start = h_now_ms();
    free(sb_run_ok((const char *[]){"systemctl", "start", "--no-block", "echod.service", NULL},
                   "echod.service"));
    bool was_activating = false;
    while (!sb_prop_is("echod.service", "ActiveState", "active")) {
        was_activating |= sb_prop_is("echod.service", "ActiveState", "activating");
        if (h_now_ms() - start > 10000) {
            sb_dump("echod.service");
            fail_msg("echod.service not active 10 s after its start (no READY=1?)");
        }
        h_sleep_ms(10);
    }
    int64_t active_ms = h_now_ms() - start;
    sb_assert_echo(sb.port, 64 * KIB); /* no retry: a refused connect fails */
    h_note("echod.service: active after %lld ms (the daemon starts 1 s late), echo at once",
           (long long)active_ms);
    assert_true(was_activating);
    assert_true(active_ms >= 1000);

    /* STATUS= follows the counters, at most once a second: wait for the connection of
     * sb_assert_echo to show. */
    int64_t deadline = h_now_ms() + 5000;
    char *status;
    while (!strstr(status = sb_prop("echod.service", "StatusText"), " 1 accepted") &&
           h_now_ms() < deadline) {
        free(status);
        h_sleep_ms(SB_STEPS);
    }
    h_note("StatusText: %s", status);
    if (strncmp(status, "serving: ", 9) != 0 || !strstr(status, " 1 accepted"))
        fail_msg("echod.service's StatusText is not \"serving: ... 1 accepted ...\" 5 s "
                 "after READY=1 and a connection: \"%s\"",
                 status);
    char *shown = sb_run_ok(
        (const char *[]){"systemctl", "status", "--no-pager", "echod.service", NULL}, NULL);
    char want[600];
    snprintf(want, sizeof(want), "Status: \"%s", status);
    if (!strstr(shown, want))
        fail_msg("systemctl status does not show %s:\n%s", want, shown);
    free(shown);
    free(status);
}

/* The socket units bind 127.0.0.1:port (port 7 in the shipped units), the first
 * connection starts echod-activated.service with every restriction in force (no
 * network namespace of the host's, no capability, a dynamic user, seccomp), and echod
 * echoes TCP and UDP on the sockets systemd passed it, and answers GET /metrics on the
 * one echod-metrics.socket passed (127.0.0.1:9107 in the shipped unit). The
 * configuration is the shipped etc/echod.conf: its listen lists are not used. */
static void socket_activation_hardened(void **state)
{
    (void)state;
    char conf_path[600];
    snprintf(conf_path, sizeof(conf_path), "%s/etc/echod.conf", h_env("ECHOD_SRCDIR"));
    char *shipped = h_read_file(conf_path, NULL);
    if (!shipped)
        fail_msg("cannot read %s", conf_path);
    sb_up(shipped, false);
    free(shipped);
    free(sb_run_ok((const char *[]){"systemctl", "start", "echod-tcp.socket", "echod-udp.socket",
                                    "echod-metrics.socket", NULL},
                   "echod-tcp.socket"));
    assert_true(sb_prop_is("echod-activated.service", "ActiveState", "inactive"));

    sb_assert_echo(sb.port, 256 * KIB);
    sb_wait_state("echod-activated.service", "active", 5000);

    /* The restrictions, as the kernel sees them in the running echod. */
    char *pid = sb_prop("echod-activated.service", "MainPID");
    char path[64];
    snprintf(path, sizeof(path), "/proc/%s/status", pid);
    char *status = sb_run_ok((const char *[]){"cat", path, NULL}, NULL);
    h_note("echod-activated.service: MainPID %s", pid);
    const char *want[] = {"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000",
                          "NoNewPrivs:\t1", "Seccomp:\t2"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(status, want[i]))
            fail_msg("/proc/%s/status lacks \"%s\":\n%s", pid, want[i], status);
    if (strstr(status, "\nUid:\t0\t"))
        fail_msg("echod runs as root:\n%s", status);
    free(status);
    snprintf(path, sizeof(path), "/proc/%s/ns/net", pid);
    char *net = sb_run_ok((const char *[]){"readlink", path, "/proc/1/ns/net", NULL}, NULL);
    char *second = strchr(net, '\n');
    if (!second || strncmp(net, second + 1, (size_t)(second - net)) == 0)
        fail_msg("echod shares the host's network namespace: %s", net);
    free(net);
    free(pid);
    /* And again, now that echod runs. */
    sb_assert_echo(sb.port, 64 * KIB);
    /* The metrics, through the socket systemd passed: echod has no network of its own. */
    struct sockaddr_storage msa;
    sb_address(&msa, sb.metrics_port);
    struct h_http_reply r = h_http_get(&msa, "/metrics");
    if (r.status != 200)
        fail_msg("GET /metrics on 127.0.0.1:%u answered %d", sb.metrics_port, r.status);
    h_note("echod-activated.service: GET /metrics: echod_tcp_accepted_total %.0f",
           h_metric(r.body, "echod_tcp_accepted_total"));
    assert_true(h_metric(r.body, "echod_tcp_accepted_total") == 2);
    assert_true(h_metric(r.body, "echod_udp_datagrams_out_total") >= 2);
    h_http_free(&r);
}

/* One client stream of stop_loses_no_byte: what it sent and what came back. It sends
 * at FLOW_BYTES_PER_MS at most, so that its buffers last the whole test. */
#define FLOW_BYTES_PER_MS (2 * KIB)
struct flow {
    int fd;
    int64_t start_ms;
    uint8_t *tx, *rx;
    size_t cap, sent, received;
    bool is_closed_wr, has_eof;
};

/* What stream f may have sent by now. */
static size_t flow_allowance(const struct flow *f)
{
    size_t paced = (size_t)(h_now_ms() - f->start_ms + 1) * FLOW_BYTES_PER_MS;
    return paced < f->cap ? paced : f->cap;
}

/* Move bytes for up to ms: send what the pace allows (while sending), receive all that
 * came; fails on an error or an early EOF. */
static void flows_pump(struct flow *f, size_t n, int ms, bool is_sending)
{
    int64_t end = h_now_ms() + ms;
    do {
        struct pollfd p[8];
        for (size_t i = 0; i < n; i++) {
            p[i].fd = f[i].fd;
            p[i].events = (short)(f[i].has_eof ? 0 : POLLIN);
            if (is_sending && f[i].sent < flow_allowance(&f[i]))
                p[i].events |= POLLOUT;
        }
        poll(p, n, 5);
        for (size_t i = 0; i < n; i++) {
            if ((p[i].revents & POLLOUT) && is_sending) {
                size_t len = flow_allowance(&f[i]) - f[i].sent;
                ssize_t k = send(f[i].fd, f[i].tx + f[i].sent, len, MSG_NOSIGNAL);
                if (k < 0 && errno != EAGAIN)
                    fail_msg("stream %zu: send after %zu bytes: %s", i, f[i].sent, strerror(errno));
                if (k > 0)
                    f[i].sent += (size_t)k;
            }
            if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t k = recv(f[i].fd, f[i].rx + f[i].received, f[i].cap - f[i].received, 0);
                if (k < 0 && errno != EAGAIN)
                    fail_msg("stream %zu: recv after %zu of %zu bytes: %s", i, f[i].received,
                             f[i].sent, strerror(errno));
                if (k == 0 && !f[i].is_closed_wr)
                    fail_msg("stream %zu: EOF before the client closed, after %zu of %zu bytes", i,
                             f[i].received, f[i].sent);
                if (k == 0)
                    f[i].has_eof = true;
                if (k > 0)
                    f[i].received += (size_t)k;
            }
        }
    } while (h_now_ms() < end);
}

static size_t flows_sent(const struct flow *f, size_t n)
{
    size_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += f[i].sent;
    return sum;
}

/* `systemctl stop` while clients send: none loses a byte. Precisely: each client, already
 * connected when the stop begins, keeps sending for 300 ms after systemd reports the unit
 * deactivating (echod has its SIGTERM), then half-closes; it must get back every byte it
 * sent, in order and unchanged, then EOF (not a reset). Meanwhile a new client is
 * refused. echod then exits 0 and systemd records the stop as a success. */
static void stop_loses_no_byte(void **state)
{
    (void)state;
    enum { FLOWS = 4 };
    sb_up(NULL, false);
    sb_write_conf("echod.conf", sb.port, "shutdown_timeout_ms = 20000;\n");
    free(sb_run_ok((const char *[]){"systemctl", "start", "echod.service", NULL}, "echod.service"));
    struct sockaddr_storage sa;
    sb_address(&sa, sb.port);
    struct flow f[FLOWS];
    memset(f, 0, sizeof(f));
    for (size_t i = 0; i < FLOWS; i++) {
        f[i].fd = h_tcp_connect_ok(&sa);
        f[i].cap = 8 * MIB;
        f[i].tx = h_xmalloc(f[i].cap);
        f[i].rx = h_xmalloc(f[i].cap);
        h_fill_random(f[i].tx, f[i].cap);
    }
    for (size_t i = 0; i < FLOWS; i++)
        f[i].start_ms = h_now_ms();
    flows_pump(f, FLOWS, 200, true);
    size_t before_stop = flows_sent(f, FLOWS);

    char *argv[] = {
        (char *)h_env("ECHOD_SANDBOX"), (char *)"run", sb.id, (char *)"systemctl", (char *)"stop",
        (char *)"echod.service",        NULL};
    pid_t stop = h_spawn(argv, -1, NULL, NULL);
    int64_t deadline = h_now_ms() + 5000;
    while (!sb_prop_is("echod.service", "ActiveState", "deactivating")) {
        if (h_now_ms() > deadline)
            fail_msg("echod.service not deactivating 5 s after systemctl stop");
        flows_pump(f, FLOWS, 20, true);
    }
    size_t at_stop = flows_sent(f, FLOWS);
    flows_pump(f, FLOWS, 300, true);
    size_t after_stop = flows_sent(f, FLOWS) - at_stop;
    int late = h_tcp_connect(&sa, 2000); /* accepting stopped at the SIGTERM */
    if (late != -ECONNREFUSED)
        fail_msg("a connect during the drain: %s, not refused",
                 late >= 0 ? "accepted" : strerror(-late));
    for (size_t i = 0; i < FLOWS; i++) {
        shutdown(f[i].fd, SHUT_WR);
        f[i].is_closed_wr = true;
    }
    deadline = h_now_ms() + 15000;
    for (size_t done = 0; done < FLOWS;) {
        if (h_now_ms() > deadline)
            fail_msg("the echo of the last bytes has not come back in 15 s");
        flows_pump(f, FLOWS, 20, false);
        done = 0;
        for (size_t i = 0; i < FLOWS; i++)
            done += f[i].has_eof;
    }
    for (size_t i = 0; i < FLOWS; i++) {
        if (f[i].received != f[i].sent)
            fail_msg("stream %zu: sent %zu bytes, got %zu back", i, f[i].sent, f[i].received);
        h_assert_bytes("echo", f[i].tx, f[i].rx, f[i].sent);
        free(f[i].tx);
        free(f[i].rx);
    }
    int code = h_wait_exit(stop, 20000);
    h_note("sent %zu bytes before the stop, %zu more while echod drained; all echoed", before_stop,
           after_stop);
    assert_int_equal(code, 0);
    assert_true(after_stop > 0);
    assert_true(sb_prop_is("echod.service", "ActiveState", "inactive"));
    assert_true(sb_prop_is("echod.service", "Result", "success"));
    assert_true(sb_prop_is("echod.service", "ExecMainStatus", "0"));
}

/* Under journald, echod's lines carry their priority: `journalctl -p warning` shows the
 * warning for a refused connection (max_connections_per_ip = 1, a second connection)
 * and none of the info lines that the full journal holds. */
static void journal_priority_filter(void **state)
{
    (void)state;
    sb_up(NULL, false);
    sb_write_conf("echod.conf", sb.port, "max_connections_per_ip = 1;\n");
    free(sb_run_ok((const char *[]){"systemctl", "start", "echod.service", NULL}, "echod.service"));
    struct sockaddr_storage sa;
    sb_address(&sa, sb.port);
    int first = h_tcp_connect_ok(&sa);
    h_echo_roundtrip(first, "x", 1, 5000); /* accepted and counted */
    int second = h_tcp_connect_ok(&sa);
    assert_true(h_is_closed_within(second, 5000, false));

    sb_wait_journal("echod.service", "warning", "tcp: refused 1 connection", 5000);
    char *all = sb_journal("echod.service", NULL);
    char *warnings = sb_journal("echod.service", "warning");
    h_note("journalctl -p warning -u echod.service:\n%s", warnings);
    const char *info[] = {"listening tcp", "serving:", "configuration OK"};
    for (size_t i = 0; i < sizeof(info) / sizeof(info[0]); i++) {
        if (!strstr(all, info[i]))
            fail_msg("the journal lacks the info line \"%s\":\n%s", info[i], all);
        if (strstr(warnings, info[i]))
            fail_msg("journalctl -p warning shows the info line \"%s\":\n%s", info[i], warnings);
    }
    free(all);
    free(warnings);
}

/* A configuration error fails the start: ExecStartPre=echod -t exits 78 and the journal
 * holds FILE:LINE: key: message at priority err; the daemon never runs. */
static void bad_config_fails_start(void **state)
{
    (void)state;
    sb_up("# a comment\n"
          "workers = 2;\n"
          "queue_capacity = 0;\n",
          false);
    struct h_output o =
        sb_run((const char *[]){"systemctl", "start", "echod.service", NULL}, 20000);
    h_note("systemctl start: exit %d: %s", o.code, o.err);
    assert_int_not_equal(o.code, 0);
    h_output_free(&o);
    sb_wait_journal("echod.service", "err", SB_CONF "/echod.conf:3: queue_capacity: ", 5000);
    sb_wait_state("echod.service", "failed", 10000);
    assert_true(sb_prop_is("echod.service", "ExecMainPID", "0"));
    char *journal = sb_journal("echod.service", NULL);
    h_note("journal of echod.service:\n%s", journal);
    free(journal);
}

/* Two instances of echod@.service side by side, each with its own file and port. */
static void instances_side_by_side(void **state)
{
    (void)state;
    sb_up(NULL, false);
    uint16_t other = sb_free_port();
    sb_write_conf("a.conf", sb.port, "");
    sb_write_conf("b.conf", other, "");
    free(sb_run_ok(
        (const char *[]){"systemctl", "start", "echod@a.service", "echod@b.service", NULL},
        "echod@a.service"));
    sb_assert_echo(sb.port, 16 * KIB);
    sb_assert_echo(other, 16 * KIB);
    char want[64];
    snprintf(want, sizeof(want), "listening tcp 127.0.0.1:%u", other);
    sb_wait_journal("echod@b.service", NULL, want, 5000);
}

/* What the load child saw: replies by greeting, and anything else. */
struct greet_tally {
    unsigned long replies[2];
    unsigned long errors;
};

/* One greet exchange on a new connection to port: the reply's greeting index (0 or 1),
 * or -1 for an error or a reply carrying neither. Plain syscalls: runs in a child. */
static int greet_once(uint16_t port, unsigned long n, const char *const greet[2])
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char line[64], got[128];
    int len = snprintf(line, sizeof(line), "line %lu\n", n);
    size_t have = 0;
    int which = -1;
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        send(fd, line, (size_t)len, MSG_NOSIGNAL) == len) {
        ssize_t r;
        while (have < sizeof(got) - 1 && (have == 0 || got[have - 1] != '\n') &&
               (r = recv(fd, got + have, sizeof(got) - 1 - have, 0)) > 0)
            have += (size_t)r;
        got[have] = '\0';
        for (int k = 0; k < 2; k++)
            if (strncmp(got, greet[k], strlen(greet[k])) == 0 &&
                strcmp(got + strlen(greet[k]), line) == 0)
                which = k;
    }
    if (fd >= 0)
        close(fd);
    return which;
}

/* Fork a client that opens a connection per greet exchange for ms, then writes its
 * tally to a pipe; returns the pipe's read end, its pid in *pid. */
static int greet_load_start(uint16_t port, int ms, const char *const greet[2], pid_t *pid)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        fail_msg("pipe2: %s", strerror(errno));
    *pid = fork();
    if (*pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (*pid == 0) {
        struct greet_tally t = {{0, 0}, 0};
        for (int64_t end = h_now_ms() + ms; h_now_ms() < end;) {
            int which = greet_once(port, t.replies[0] + t.replies[1] + t.errors, greet);
            if (which < 0)
                t.errors++;
            else
                t.replies[which]++;
        }
        _exit(write(p[1], &t, sizeof(t)) == sizeof(t) ? 0 : 1);
    }
    h_track_child(*pid);
    close(p[1]);
    return p[0];
}

/* systemctl reload under load: ten reloads alternate two greetings while a client
 * keeps connecting; every reply carries one of them, none errs, and both are seen. */
static void reload_under_load(void **state)
{
    (void)state;
    static const char *const greet[2] = {"Alpha: ", "Beta: "};
    sb_up(NULL, false);
    sb_write_conf_greet("echod.conf", sb.port, greet[0]);
    free(sb_run_ok((const char *[]){"systemctl", "start", "echod.service", NULL}, "echod.service"));
    char *pid_before = sb_prop("echod.service", "MainPID");
    pid_t child;
    int rfd = greet_load_start(sb.port, 4000, greet, &child);
    int64_t start = h_now_ms();
    int reloads = 0;
    for (; h_now_ms() - start < 3000; reloads++) {
        sb_write_conf_greet("echod.conf", sb.port, greet[(reloads + 1) % 2]);
        free(sb_run_ok((const char *[]){"systemctl", "reload", "echod.service", NULL},
                       "echod.service"));
        h_sleep_ms(150);
    }
    struct greet_tally t;
    ssize_t n = read(rfd, &t, sizeof(t));
    close(rfd);
    int code = h_wait_exit(child, 10000);
    if (n != (ssize_t)sizeof(t) || code != 0)
        fail_msg("the load client ended with %d and no tally", code);
    char *pid_after = sb_prop("echod.service", "MainPID");
    h_note("systemctl reload: %d reloads under load; %lu replies \"%s\", %lu \"%s\", %lu "
           "errors; MainPID %s -> %s",
           reloads, t.replies[0], greet[0], t.replies[1], greet[1], t.errors, pid_before,
           pid_after);
    assert_string_equal(pid_before, pid_after);
    free(pid_before);
    free(pid_after);
    assert_int_equal(t.errors, 0);
    assert_true(t.replies[0] > 0 && t.replies[1] > 0);
    assert_true(sb_prop_is("echod.service", "ActiveState", "active"));
    sb_wait_journal("echod.service", NULL, "reloaded " SB_CONF "/echod.conf", 5000);
}

/* WatchdogSec=2 and 10 s of full load from echod-bench: WATCHDOG=1 keeps coming, so
 * systemd restarts nothing (NRestarts stays 0, MainPID the same) and the bench verifies
 * every byte. */
static void watchdog_no_false_restart(void **state)
{
    (void)state;
    sb.watchdog_sec = 2;
    sb_up(NULL, false);
    free(sb_run_ok((const char *[]){"systemctl", "start", "echod.service", NULL}, "echod.service"));
    char *pid_before = sb_prop("echod.service", "MainPID");
    char port[16];
    snprintf(port, sizeof(port), "%u", sb.port);
    struct h_output o =
        h_run_env("ECHOD_BENCH_BIN",
                  (const char *[]){"-p", port, "-c", "50", "-d", "10", "-q", NULL}, NULL, 0, 30000);
    char *pid_after = sb_prop("echod.service", "MainPID");
    char *restarts = sb_prop("echod.service", "NRestarts");
    char *watchdog = sb_prop("echod.service", "WatchdogUSec");
    h_note("watchdog: WatchdogUSec=%s, 10 s of echod-bench (exit %d): %s; NRestarts=%s, "
           "MainPID %s -> %s",
           watchdog, o.code, o.out, restarts, pid_before, pid_after);
    assert_int_equal(o.code, 0);
    assert_string_equal(restarts, "0");
    assert_string_equal(pid_before, pid_after);
    assert_true(sb_prop_is("echod.service", "ActiveState", "active"));
    free(pid_before);
    free(pid_after);
    free(restarts);
    free(watchdog);
    h_output_free(&o);
}

/* Whether this build and machine can run the tests; if not, why, in reason. */
static bool sb_can_run(char *reason, size_t size)
{
    const char *san = getenv("ECHOD_SANITIZERS");
    if (san && san[0]) {
        /* Seen here: under SystemCallFilter=@system-service, LeakSanitizer cannot ptrace
         * and "has encountered a fatal error" at every exit, so even ExecStartPre=echod -t
         * fails. And a service gets none of the suite's *SAN_OPTIONS (exit codes,
         * log_path), nor the setarch -R that TSan needs on this kernel, so a report
         * could go unnoticed. */
        snprintf(reason, size,
                 "echod is built with %s: the hardened units cannot run a sanitized echod as "
                 "the suite needs it (LeakSanitizer dies without ptrace, *SAN_OPTIONS and "
                 "setarch -R do not reach a service); the plain build runs these tests",
                 san);
        return false;
    }
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/probe", h_tmpdir());
    mkdir(dir, 0755);
    const char *up[] = {"up", dir, NULL};
    struct h_output o = h_run_env("ECHOD_SANDBOX", up, NULL, 0, 30000);
    bool can = o.code == 0;
    if (can) {
        o.out[strcspn(o.out, "\n")] = '\0';
        struct h_output d =
            h_run_env("ECHOD_SANDBOX", (const char *[]){"down", o.out, NULL}, NULL, 0, 20000);
        h_output_free(&d);
    } else {
        o.err[strcspn(o.err, "\n")] = '\0';
        snprintf(reason, size, "cannot boot systemd in a sandbox (exit %d): %s", o.code, o.err);
    }
    h_output_free(&o);
    return can;
}

int main(void)
{
    h_init("test_under_systemd", 240);
    char script[600];
    snprintf(script, sizeof(script), "%s/tests/systemd/sandbox", h_env("ECHOD_SRCDIR"));
    setenv("ECHOD_SANDBOX", script, 1);
    char reason[512];
    if (!sb_can_run(reason, sizeof(reason))) {
        printf("1..0 # SKIP %s\n", reason);
        fprintf(stderr, "test_under_systemd: SKIPPED: %s\n", reason);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(notify_ready_then_status, sb_teardown),
        cmocka_unit_test_teardown(socket_activation_hardened, sb_teardown),
        cmocka_unit_test_teardown(stop_loses_no_byte, sb_teardown),
        cmocka_unit_test_teardown(journal_priority_filter, sb_teardown),
        cmocka_unit_test_teardown(bad_config_fails_start, sb_teardown),
        cmocka_unit_test_teardown(instances_side_by_side, sb_teardown),
        cmocka_unit_test_teardown(reload_under_load, sb_teardown),
        cmocka_unit_test_teardown(watchdog_no_false_restart, sb_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
