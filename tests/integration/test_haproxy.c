/* test_haproxy: the deployment the README describes, for real. HAProxy 2.6 (Debian's
 * haproxy) listens on a loopback socket the test binds to port 0 and passes as fd 3
 * (`bind fd@3`), and balances round robin over three echod instances with the PROXY
 * protocol (send-proxy-v2, or send-proxy for v1) and TCP health checks that echo a line
 * after a header of their own (v2: a LOCAL command) and close with a FIN (tcp-check
 * connect send-proxy linger), as etc/haproxy-example.cfg does. Each echod greets every line with
 * "{instance} {client} ", so every reply says which instance answered and which client
 * it saw: the test's own socket, not HAProxy's. HAProxy's counters come from its stats
 * socket ("show stat"); echod's from SIGUSR1. Every process is stopped at teardown. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define INSTANCES  3
#define LINE_BYTES 200 /* per line, "\n" included */
#define LINES      8   /* per connection */

static struct echod backends[INSTANCES];
static pid_t haproxy_pid;
static int front_fd = -1;
static struct sockaddr_storage front;
static char stats_path[100]; /* a sun_path */
static char haproxy_log[600];

/* The echod config of instance i: greet mode naming instance and client, with `proxy`
 * ("v1", "v2" or "any") accepted from loopback only. */
static void start_backend(size_t i, const char *proxy)
{
    char config[1024];
    snprintf(config, sizeof(config),
             "instance = \"e%zu\";\n"
             "workers = 1;\n"
             "tcp = {\n"
             "  listen = [ \"127.0.0.1:0\" ];\n"
             "  mode = \"greet\";\n"
             "  greeting = \"{instance} {client} \";\n"
             "  proxy_protocol = \"%s\";\n"
             "  proxy_from = [ \"127.0.0.0/8\" ];\n"
             "};\n"
             "udp = { listen = [ ]; };\n",
             i + 1, proxy);
    h_echod_start(&backends[i], config, NULL);
    assert_int_equal(backends[i].tcp_count, 1);
}

/* Write the HAProxy config for the running backends and start it on front_fd. */
static void start_haproxy(const char *send_proxy)
{
    char config[4096];
    int n = snprintf(config, sizeof(config),
                     "global\n"
                     "    stats socket %s mode 600 level admin\n"
                     "defaults\n"
                     "    mode tcp\n"
                     "    timeout connect 1s\n"
                     "    timeout client 10s\n"
                     "    timeout server 10s\n"
                     "    timeout check 2s\n" /* not inter's 100 ms: the machine is busy */
                     "    retries 3\n"
                     "    option redispatch\n"
                     "frontend fe\n"
                     "    bind fd@3\n"
                     "    default_backend be\n"
                     "backend be\n"
                     "    balance roundrobin\n"
                     "    option tcp-check\n"
                     "    tcp-check connect send-proxy linger\n"
                     "    tcp-check send \"check\\n\"\n"
                     "    tcp-check expect string check\n",
                     stats_path);
    for (size_t i = 0; i < INSTANCES; i++)
        n += snprintf(config + n, sizeof(config) - (size_t)n,
                      "    server e%zu %s %s check inter 100ms fall 2 rise 1\n", i + 1,
                      backends[i].tcp_text[0], send_proxy);
    char path[600];
    h_write_temp("haproxy.cfg", config, (size_t)n, path, sizeof(path));
    h_spawn_pass_fds(&front_fd, 1, NULL);
    char *argv[] = {(char *)"/usr/sbin/haproxy", (char *)"-f", path, (char *)"-db", NULL};
    haproxy_pid = h_spawn(argv, -1, haproxy_log, haproxy_log);
}

/* HAProxy's "show stat" CSV, into buf (NUL-terminated); false if the socket is not up. */
static bool haproxy_stat_csv(char *buf, size_t cap)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail_msg("socket: %s", strerror(errno));
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, stats_path, sizeof(stats_path));
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        close(fd);
        return false;
    }
    h_track_fd(fd);
    h_send_all(fd, "show stat\n", 10, 2000);
    size_t len = 0;
    for (;;) {
        if (len + 1 >= cap)
            fail_msg("show stat: more than %zu bytes", cap);
        ssize_t got = h_recv_some(fd, buf + len, cap - 1 - len, 2000);
        if (got == 0)
            break;
        if (got < 0)
            fail_msg("show stat: no EOF within 2 s");
        len += (size_t)got;
    }
    buf[len] = '\0';
    h_close(fd);
    return true;
}

/* The column `name` of server `server`'s row in the CSV (copied into out); false when
 * the row or column is missing. */
static bool csv_field(const char *csv, const char *server, const char *name, char *out,
                      size_t out_size)
{
    const char *header = strstr(csv, "# pxname,");
    if (header == NULL)
        return false;
    int col = -1, i = 0;
    for (const char *p = header + 2; *p && *p != '\n'; i++) {
        size_t w = strcspn(p, ",\n");
        if (w == strlen(name) && memcmp(p, name, w) == 0)
            col = i;
        p += w + (p[w] == ',');
    }
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "\nbe,%s,", server);
    const char *row = strstr(csv, prefix);
    if (col < 0 || row == NULL)
        return false;
    const char *p = row + 1;
    for (i = 0; i < col && *p && *p != '\n'; i++)
        p += strcspn(p, ",\n") + 1;
    size_t w = strcspn(p, ",\n");
    snprintf(out, out_size, "%.*s", (int)w, p);
    return true;
}

static long server_stat(const char *csv, size_t i, const char *name)
{
    char server[16], value[64];
    snprintf(server, sizeof(server), "e%zu", i + 1);
    if (!csv_field(csv, server, name, value, sizeof(value)))
        fail_msg("show stat has no %s for %s", name, server);
    return strtol(value, NULL, 10);
}

/* Wait (5 s) until HAProxy reports every server UP. */
static void wait_all_up(void)
{
    static char csv[64 * 1024];
    int64_t deadline = h_now_ms() + 5000;
    for (;;) {
        size_t up = 0;
        char value[64];
        if (haproxy_stat_csv(csv, sizeof(csv)))
            for (size_t i = 0; i < INSTANCES; i++) {
                char server[16];
                snprintf(server, sizeof(server), "e%zu", i + 1);
                up += csv_field(csv, server, "status", value, sizeof(value)) &&
                      strcmp(value, "UP") == 0;
            }
        if (up == INSTANCES)
            return;
        if (h_now_ms() > deadline) {
            h_note("haproxy log: %s", haproxy_log);
            fail_msg("HAProxy saw %zu of %d echod instances UP within 5 s", up, INSTANCES);
        }
        h_sleep_ms(50);
    }
}

static void setup_all(const char *echod_proxy, const char *haproxy_send_proxy)
{
    if ((size_t)snprintf(stats_path, sizeof(stats_path), "%s/haproxy.sock", h_tmpdir()) >=
        sizeof(stats_path))
        fail_msg("temp dir %s too long for a unix socket path", h_tmpdir());
    snprintf(haproxy_log, sizeof(haproxy_log), "%s/haproxy.log", h_tmpdir());
    h_loopback(&front, AF_INET, 0);
    front_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socklen_t len = sizeof(front);
    if (front_fd < 0 || bind(front_fd, (struct sockaddr *)&front, sizeof(struct sockaddr_in)) < 0 ||
        getsockname(front_fd, (struct sockaddr *)&front, &len) < 0)
        fail_msg("frontend socket: %s", strerror(errno));
    for (size_t i = 0; i < INSTANCES; i++)
        start_backend(i, echod_proxy);
    start_haproxy(haproxy_send_proxy);
    wait_all_up();
}

static int setup_v2(void **state)
{
    (void)state;
    setup_all("v2", "send-proxy-v2");
    return 0;
}

static int setup_v1(void **state)
{
    (void)state;
    setup_all("v1", "send-proxy");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    h_close_all();
    if (haproxy_pid > 0) {
        kill(haproxy_pid, SIGTERM);
        if (h_wait_exit(haproxy_pid, 3000) < 0)
            h_kill(haproxy_pid);
        haproxy_pid = 0;
    }
    if (front_fd >= 0)
        close(front_fd);
    front_fd = -1;
    int bad = 0;
    for (size_t i = 0; i < INSTANCES; i++) {
        if (backends[i].pid > 0 && h_echod_stop(&backends[i]) != 0) {
            h_echod_dump_log(&backends[i]);
            bad = 1;
        }
        memset(&backends[i], 0, sizeof(backends[i]));
    }
    if (bad)
        fail_msg("an echod instance did not exit 0 after SIGTERM");
    return 0;
}

/* Receive exactly len bytes within 5 s; false if the stream ended or failed first. */
static bool recv_all(int fd, void *buf, size_t len)
{
    size_t got = 0;
    int64_t deadline = h_now_ms() + 5000;
    while (got < len) {
        int left = (int)(deadline - h_now_ms());
        ssize_t n = h_recv_some(fd, (char *)buf + got, len - got, left > 0 ? left : 0);
        if (n == -1)
            fail_msg("no reply within 5 s (%zu of %zu bytes)", got, len);
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return true;
}

/* One client: connect through HAProxy, send LINES random lines at once, and check that
 * every reply is "eN 127.0.0.1:PORT line", where PORT is this socket's own port and eN
 * one instance, then EOF after our FIN. Returns the instance index, or -1 when the
 * stream ended before the first reply (nothing of it verified); adds the payload bytes
 * verified to *verified. A wrong byte, or a stream cut after a reply, fails the test. */
static int one_client(uint64_t *verified)
{
    int fd = h_tcp_connect_ok(&front);
    struct sockaddr_storage me;
    socklen_t len = sizeof(me);
    if (getsockname(fd, (struct sockaddr *)&me, &len) < 0)
        fail_msg("getsockname: %s", strerror(errno));
    char sent[LINES * LINE_BYTES];
    for (size_t k = 0; k < sizeof(sent); k++)
        sent[k] = (k + 1) % LINE_BYTES == 0 ? '\n' : (char)(' ' + h_rand() % 95);
    h_send_all(fd, sent, sizeof(sent), 5000);
    char prefix[64];
    int plen = snprintf(prefix, sizeof(prefix), "eN 127.0.0.1:%u ", h_port_of(&me));
    int instance = -1;
    for (size_t l = 0; l < LINES; l++) {
        char got[LINE_BYTES + 64];
        if (!recv_all(fd, got, (size_t)plen + LINE_BYTES)) {
            if (l > 0)
                fail_msg("instance e%d cut the stream after %zu replies", instance + 1, l);
            h_close(fd);
            return -1;
        }
        if (instance < 0) { /* the first reply says who answered */
            if (got[0] != 'e' || got[1] < '1' || got[1] > '0' + INSTANCES)
                fail_msg("the reply does not start with an instance: \"%.40s\"", got);
            instance = got[1] - '1';
            prefix[1] = got[1];
        }
        h_assert_bytes("reply prefix: the instance and the client's own address", prefix, got,
                       (size_t)plen);
        h_assert_bytes("reply line", sent + l * LINE_BYTES, got + plen, LINE_BYTES);
        *verified += LINE_BYTES;
    }
    shutdown(fd, SHUT_WR);
    h_expect_eof(fd, 5000);
    h_close(fd);
    return instance;
}

/* echod's counters that a balancer's traffic and health checks must leave at 0. */
static const char *const echod_error_counters[] = {"tcp_io_errors",       "tcp_proxy_refused",
                                                   "tcp_proxy_malformed", "tcp_proxy_truncated",
                                                   "tcp_proxy_timeouts",  "tcp_lines_too_long"};
#define ERROR_COUNTERS (sizeof(echod_error_counters) / sizeof(echod_error_counters[0]))

/* No HAProxy check failed and no echod counted an error; notes the health checks each
 * instance served: its PROXY headers beyond the clients[i] the test sent it (v2 checks
 * send LOCAL, v1 ones a TCP4 header naming HAProxy). skip: an instance that is gone. */
static void assert_checks_clean(const size_t *clients, size_t skip)
{
    static char csv[64 * 1024];
    if (!haproxy_stat_csv(csv, sizeof(csv)))
        fail_msg("HAProxy's stats socket is gone");
    for (size_t i = 0; i < INSTANCES; i++) {
        if (i == skip)
            continue;
        long chkfail = server_stat(csv, i, "chkfail"), chkdown = server_stat(csv, i, "chkdown");
        uint64_t v[ERROR_COUNTERS];
        h_echod_stats(&backends[i], echod_error_counters, v, ERROR_COUNTERS);
        const char *names[] = {"tcp_proxy_headers", "tcp_proxy_local"};
        uint64_t headers[2];
        h_echod_stats(&backends[i], names, headers, 2);
        if (headers[0] < clients[i])
            fail_msg("e%zu read %" PRIu64 " PROXY headers for %zu clients", i + 1, headers[0],
                     clients[i]);
        uint64_t checks = headers[0] - clients[i];
        h_note("e%zu: %zu clients, %" PRIu64 " health checks served (%" PRIu64 " PROXY LOCAL), "
               "HAProxy chkfail=%ld chkdown=%ld",
               i + 1, clients[i], checks, headers[1], chkfail, chkdown);
        assert_true(checks > 0);
        assert_int_equal(chkfail, 0);
        assert_int_equal(chkdown, 0);
        for (size_t k = 0; k < ERROR_COUNTERS; k++)
            if (v[k] != 0)
                fail_msg("e%zu counted %s = %" PRIu64, i + 1, echod_error_counters[k], v[k]);
    }
}

/* `clients` clients one after another, each of which must be answered: how many each
 * instance took (counts), noted with the bytes verified; every one saw its own port. */
static void run_clients(const char *what, int clients, size_t *counts)
{
    uint64_t verified = 0;
    for (int c = 0; c < clients; c++) {
        int i = one_client(&verified);
        if (i < 0)
            fail_msg("client %d got no reply", c);
        counts[i]++;
    }
    h_note("haproxy %s: %d clients over e1/e2/e3 = %zu/%zu/%zu, %" PRIu64 " bytes verified", what,
           clients, counts[0], counts[1], counts[2], verified);
    assert_int_equal(verified, (uint64_t)clients * LINES * LINE_BYTES);
}

/* 60 clients one after another: round robin gives each instance a third, every reply
 * names the test's own client port, and the health checks cost no error anywhere. */
static void haproxy_v2_balances_and_names_the_client(void **state)
{
    (void)state;
    enum { CLIENTS = 60 };
    size_t counts[INSTANCES] = {0};
    run_clients("v2", CLIENTS, counts);
    for (size_t i = 0; i < INSTANCES; i++)
        if (counts[i] + 3 < CLIENTS / INSTANCES || counts[i] > CLIENTS / INSTANCES + 3)
            fail_msg("e%zu answered %zu of %d clients: not a third", i + 1, counts[i], CLIENTS);
    h_sleep_ms(400); /* a few more health checks, at 100 ms */
    assert_checks_clean(counts, INSTANCES);
}

/* Clients keep coming for 3 s; after 1 s e2 gets SIGTERM. It drains and exits 0, HAProxy
 * sends its clients to e1 and e3 (redispatch), and every client gets every byte. */
static void haproxy_sigterm_one_instance_moves_clients(void **state)
{
    (void)state;
    size_t before[INSTANCES] = {0}, after[INSTANCES] = {0};
    size_t failed = 0, clients = 0;
    uint64_t verified = 0;
    int64_t start = h_now_ms();
    bool is_stopping = false;
    int e2_exit = -1;
    while (h_now_ms() - start < 3000 && clients < 20000) {
        if (!is_stopping && h_now_ms() - start >= 1000) {
            kill(backends[1].pid, SIGTERM);
            is_stopping = true;
        }
        int i = one_client(&verified);
        clients++;
        if (i < 0)
            failed++;
        else
            (is_stopping ? after : before)[i]++;
        if (is_stopping && e2_exit < 0 && (e2_exit = h_wait_exit(backends[1].pid, 0)) >= 0)
            backends[1].pid = 0;
    }
    if (e2_exit < 0 && (e2_exit = h_wait_exit(backends[1].pid, 6000)) >= 0)
        backends[1].pid = 0;
    h_note("haproxy sigterm: %zu clients, %zu failed, %" PRIu64 " bytes verified; before "
           "e1/e2/e3 = %zu/%zu/%zu, after SIGTERM to e2 = %zu/%zu/%zu; e2 exited %d",
           clients, failed, verified, before[0], before[1], before[2], after[0], after[1], after[2],
           e2_exit);
    assert_int_equal(e2_exit, 0);
    assert_int_equal(failed, 0);
    assert_true(before[0] > 0 && before[1] > 0 && before[2] > 0);
    assert_true(after[0] > 0 && after[2] > 0);
    size_t total[INSTANCES];
    for (size_t i = 0; i < INSTANCES; i++)
        total[i] = before[i] + after[i];
    assert_checks_clean(total, 1);
}

/* The same deployment with v1 (send-proxy): text headers, the same replies. */
static void haproxy_v1_names_the_client(void **state)
{
    (void)state;
    size_t counts[INSTANCES] = {0};
    run_clients("v1", 15, counts);
    assert_true(counts[0] > 0 && counts[1] > 0 && counts[2] > 0);
    h_sleep_ms(300);
    assert_checks_clean(counts, INSTANCES);
}

/* The shipped example, etc/haproxy-example.cfg, is a config HAProxy accepts. */
static void haproxy_example_config_is_valid(void **state)
{
    (void)state;
    char path[600];
    snprintf(path, sizeof(path), "%s/etc/haproxy-example.cfg", h_env("ECHOD_SRCDIR"));
    char *argv[] = {(char *)"/usr/sbin/haproxy", (char *)"-c", (char *)"-f", path, NULL};
    char out[512], err[512];
    int code = h_run(argv, NULL, 0, 10000, out, err, sizeof(out));
    if (code != 0) {
        char *text = h_read_file(err, NULL);
        fail_msg("haproxy -c -f %s exited %d: %s", path, code, text ? text : "");
    }
}

int main(void)
{
    h_init("test_haproxy", 120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(haproxy_v2_balances_and_names_the_client, setup_v2,
                                        teardown),
        cmocka_unit_test_setup_teardown(haproxy_sigterm_one_instance_moves_clients, setup_v2,
                                        teardown),
        cmocka_unit_test_setup_teardown(haproxy_v1_names_the_client, setup_v1, teardown),
        cmocka_unit_test(haproxy_example_config_is_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
