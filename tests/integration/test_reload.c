/* test_reload: SIGHUP changes a running echod without dropping a connection, a byte or
 * a datagram. Greeting and mode apply to new connections (an open one keeps the
 * greeting it started with) and to the next datagram; listeners are opened and closed
 * while connections accepted on a removed one keep being served; an invalid file leaves
 * the old configuration in force; a key that cannot change live is named in a warning;
 * a reload storm under load leaves RSS and fds where they were; SIGHUP racing SIGTERM
 * still stops cleanly. Figures are printed as "# reload ..." lines. */
#include "config.h"

#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A greet config: TCP and UDP listeners as given, both greeting with greeting. */
static const char *greet_conf(const char *greeting, const char *tcp_listen, const char *extra)
{
    static char text[1024];
    snprintf(text, sizeof(text),
             "workers = 2;\n%s"
             "tcp = { listen = [ %s ]; mode = \"greet\"; greeting = \"%s\"; };\n"
             "udp = { listen = [ \"127.0.0.1:0\" ]; mode = \"greet\"; greeting = \"%s\"; "
             "guard = { enabled = false; }; };\n",
             extra, tcp_listen, greeting, greeting);
    return text;
}

/* Send line on fd and expect greeting + line back. */
static void expect_greeting(int fd, const char *greeting, const char *line)
{
    char want[256], got[256];
    int n = snprintf(want, sizeof(want), "%s%s", greeting, line);
    h_send_all(fd, line, strlen(line), 5000);
    h_recv_exact(fd, got, (size_t)n, 5000);
    h_assert_bytes("greet reply", want, got, (size_t)n);
}

/* One UDP datagram and its reply, which must be greeting + datagram. */
static void expect_udp_greeting(const char *greeting, const char *payload)
{
    char want[256];
    int n = snprintf(want, sizeof(want), "%s%s", greeting, payload);
    int fd = h_udp_connect(&echod.udp[0]);
    h_udp_expect(fd, payload, strlen(payload), want, (size_t)n, 5, 500);
    h_close(fd);
}

/* New connections and datagrams take the new greeting at once; a connection opened
 * before the reload keeps its own; a reload that changes nothing keeps the ports. */
static void reload_changes_greeting_for_new_connections(void **state)
{
    (void)state;
    h_echod_start(&echod, greet_conf("A: ", "\"127.0.0.1:0\"", ""), NULL);
    char tcp_before[64];
    snprintf(tcp_before, sizeof(tcp_before), "%s", echod.tcp_text[0]);
    int old = h_tcp_connect_ok(&echod.tcp[0]);
    expect_greeting(old, "A: ", "first\n");
    expect_udp_greeting("A: ", "dgram");

    assert_int_equal(h_echod_reload(&echod, greet_conf("B: ", "\"127.0.0.1:0\"", "")), 0);
    assert_string_equal(echod.tcp_text[0], tcp_before); /* the same listener, kept */
    int fresh = h_tcp_connect_ok(&echod.tcp[0]);
    expect_greeting(fresh, "B: ", "second\n");
    expect_greeting(old, "A: ", "still the old one\n");
    expect_udp_greeting("B: ", "dgram");
    assert_true(h_echod_log_contains(&echod, "reloaded"));
}

/* A file that does not parse: echod logs FILE:LINE at error level, keeps serving with
 * the old configuration, and counts the failure. */
static void reload_invalid_file_keeps_old_configuration(void **state)
{
    (void)state;
    h_echod_start(&echod, greet_conf("A: ", "\"127.0.0.1:0\"", ""), NULL);
    assert_int_equal(h_echod_reload(&echod, "workers = 2;\ntcp = { listen = [ oops ]; };\n"), -1);
    char where[600];
    snprintf(where, sizeof(where), "%s:2:", echod.conf_path);
    if (!h_echod_log_contains(&echod, where) || !h_echod_log_contains(&echod, "error"))
        fail_msg("no error line naming %s in the log", where);
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    expect_greeting(fd, "A: ", "after a failed reload\n");
    expect_udp_greeting("A: ", "still A");
    assert_int_equal(h_echod_stat(&echod, "reload_failures"), 1);
}

/* log_level changes at once: debug lines appear after a reload to "debug" and stop after
 * one back to "info". */
static void reload_changes_log_level(void **state)
{
    (void)state;
    h_echod_start(&echod, greet_conf("A: ", "\"127.0.0.1:0\"", ""), NULL);
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    expect_greeting(fd, "A: ", "quiet\n");
    h_close(fd);
    assert_false(h_echod_log_contains(&echod, "debug:"));
    assert_int_equal(
        h_echod_reload(&echod, greet_conf("A: ", "\"127.0.0.1:0\"", "log_level = \"debug\";\n")),
        0);
    fd = h_tcp_connect_ok(&echod.tcp[0]);
    expect_greeting(fd, "A: ", "loud\n");
    h_close(fd);
    int64_t deadline = h_now_ms() + 5000;
    while (!h_echod_log_contains(&echod, "debug: tcp 127.0.0.1:") && h_now_ms() < deadline)
        h_sleep_ms(20);
    assert_true(h_echod_log_contains(&echod, "debug: tcp 127.0.0.1:"));
}

/* The backlog of echod's listening TCP socket on port: the socket is taken from echod
 * with pidfd_getfd and asked with TCP_INFO, which reports a listener's maximum backlog
 * in tcpi_sacked. Fails the test when it cannot be found. */
static unsigned listener_backlog(pid_t pid, uint16_t port)
{
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0)
        fail_msg("pidfd_open: %s", strerror(errno));
    for (int target = 0; target < 256; target++) {
        int fd = (int)syscall(SYS_pidfd_getfd, pidfd, target, 0);
        if (fd < 0)
            continue;
        int is_listening = 0;
        socklen_t len = sizeof(is_listening);
        struct sockaddr_storage ss;
        socklen_t ss_len = sizeof(ss);
        struct tcp_info info;
        socklen_t info_len = sizeof(info);
        bool is_it = getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &is_listening, &len) == 0 &&
                     is_listening && getsockname(fd, (struct sockaddr *)&ss, &ss_len) == 0 &&
                     h_port_of(&ss) == port &&
                     getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &info_len) == 0;
        close(fd);
        if (is_it) {
            close(pidfd);
            return info.tcpi_sacked;
        }
    }
    close(pidfd);
    fail_msg("no listening socket on port %u among echod's fds", port);
    return 0;
}

/* tcp.backlog applies at once to a listener a reload keeps. */
static void reload_changes_backlog(void **state)
{
    (void)state;
    h_echod_start(&echod, greet_conf("A: ", "\"127.0.0.1:0\"", ""), NULL);
    uint16_t port = h_port_of(&echod.tcp[0]);
    unsigned before = listener_backlog(echod.pid, port);
    char listen[80];
    snprintf(listen, sizeof(listen), "\"%s\"", echod.tcp_text[0]);
    char text[512];
    snprintf(text, sizeof(text),
             "workers = 2;\n"
             "tcp = { listen = [ %s ]; backlog = 17; mode = \"greet\"; greeting = \"A: \"; };\n"
             "udp = { listen = [ \"127.0.0.1:0\" ]; mode = \"greet\"; greeting = \"A: \"; "
             "guard = { enabled = false; }; };\n",
             listen);
    assert_int_equal(h_echod_reload(&echod, text), 0);
    assert_int_equal(h_port_of(&echod.tcp[0]), port); /* the same listener, kept */
    unsigned after = listener_backlog(echod.pid, port);
    h_note("reload: tcp.backlog %u -> %u on the kept listener", before, after);
    assert_int_equal(after, 17);
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    expect_greeting(fd, "A: ", "still served\n");
}

/* A key that cannot change while running is named in a warning with the value kept;
 * the rest of the file still applies. */
static void reload_fixed_key_is_named(void **state)
{
    (void)state;
    h_echod_start(&echod, greet_conf("A: ", "\"127.0.0.1:0\"", "queue_capacity = 64;\n"), NULL);
    assert_int_equal(
        h_echod_reload(&echod, greet_conf("B: ", "\"127.0.0.1:0\"", "queue_capacity = 32;\n")), 0);
    if (!h_echod_log_contains(&echod, "queue_capacity"))
        fail_msg("no warning names queue_capacity");
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    expect_greeting(fd, "B: ", "x\n");
}

/* A listener added and one removed while a client keeps echoing through a connection
 * accepted on the removed one: the new port serves, the removed port refuses, and the
 * old connection never misses a byte. */
static void reload_adds_and_removes_listeners(void **state)
{
    (void)state;
    h_echod_start(&echod, greet_conf("A: ", "\"127.0.0.1:0\"", ""), NULL);
    struct sockaddr_storage first = echod.tcp[0];
    char first_text[80];
    snprintf(first_text, sizeof(first_text), "\"%s\"", echod.tcp_text[0]);
    int kept = h_tcp_connect_ok(&first);
    expect_greeting(kept, "A: ", "before\n");

    char both[200];
    snprintf(both, sizeof(both), "%s, \"127.0.0.1:0\"", first_text);
    assert_int_equal(h_echod_reload(&echod, greet_conf("A: ", both, "")), 0);
    assert_int_equal(echod.tcp_count, 2);
    assert_int_equal(h_port_of(&echod.tcp[0]), h_port_of(&first)); /* kept, in order */
    struct sockaddr_storage second = echod.tcp[1];
    int on_second = h_tcp_connect_ok(&second);
    expect_greeting(on_second, "A: ", "second listener\n");
    expect_greeting(kept, "A: ", "during\n");

    char only_second[80];
    snprintf(only_second, sizeof(only_second), "\"%s\"", echod.tcp_text[1]);
    assert_int_equal(h_echod_reload(&echod, greet_conf("A: ", only_second, "")), 0);
    assert_int_equal(echod.tcp_count, 1);
    assert_int_equal(h_port_of(&echod.tcp[0]), h_port_of(&second));
    int refused = h_tcp_connect(&first, 2000);
    if (refused >= 0)
        fail_msg("the removed listener %s still accepts", first_text);
    assert_int_equal(refused, -ECONNREFUSED);
    for (int i = 0; i < 20; i++) {
        char line[64];
        snprintf(line, sizeof(line), "on the removed listener %d\n", i);
        expect_greeting(kept, "A: ", line);
    }
    expect_greeting(on_second, "A: ", "after\n");
}

/* The storm: RELOADS SIGHUPs alternate two greetings while new clients, a long-lived
 * connection and UDP keep talking. Every reply carries one of the two greetings (a
 * long-lived connection always its own), nothing errs, and RSS and fds return. */
#define RELOADS 120
static void reload_storm_under_load(void **state)
{
    (void)state;
    const char *greet[2] = {"Alpha: ", "Beta: "};
    char conf[2][1024];
    snprintf(conf[0], sizeof(conf[0]), "%s", greet_conf(greet[0], "\"127.0.0.1:0\"", ""));
    h_echod_start(&echod, conf[0], NULL);
    char tcp_listen[80];
    snprintf(tcp_listen, sizeof(tcp_listen), "\"%s\"", echod.tcp_text[0]);
    char udp_listen[80];
    snprintf(udp_listen, sizeof(udp_listen), "%s", echod.udp_text[0]);
    for (int k = 0; k < 2; k++) /* pin the ports, so every reload keeps both listeners */
        snprintf(conf[k], sizeof(conf[k]),
                 "workers = 2;\n"
                 "tcp = { listen = [ %s ]; mode = \"greet\"; greeting = \"%s\"; };\n"
                 "udp = { listen = [ \"%s\" ]; mode = \"greet\"; greeting = \"%s\"; "
                 "guard = { enabled = false; }; };\n",
                 tcp_listen, greet[k], udp_listen, greet[k]);
    assert_int_equal(h_echod_reload(&echod, conf[0]), 0);
    int long_lived = h_tcp_connect_ok(&echod.tcp[0]);
    expect_greeting(long_lived, greet[0], "hello\n");
    h_sleep_ms(1200); /* let the pools settle before the baseline */
    long rss_before = h_rss_kib(echod.pid);
    int fds_before = h_fd_count(echod.pid);

    unsigned long messages = 0, seen[2] = {0, 0};
    int64_t t0 = h_now_ms();
    for (int r = 0; r < RELOADS; r++) {
        h_echod_write_conf(&echod, conf[(r + 1) % 2]);
        kill(echod.pid, SIGHUP);
        for (int c = 0; c < 4; c++) {
            char line[64], got[128];
            int n = snprintf(line, sizeof(line), "reload %d client %d\n", r, c);
            int fd = h_tcp_connect_ok(&echod.tcp[0]);
            h_send_all(fd, line, (size_t)n, 5000);
            ssize_t len = 0;
            int64_t deadline = h_now_ms() + 5000;
            while (len == 0 || got[len - 1] != '\n') {
                ssize_t k = h_recv_some(fd, got + len, sizeof(got) - 1 - (size_t)len,
                                        (int)(deadline - h_now_ms()));
                if (k <= 0)
                    fail_msg("reload %d client %d: no full reply (%zd)", r, c, k);
                len += k;
            }
            got[len] = '\0';
            int which = strncmp(got, greet[0], strlen(greet[0])) == 0   ? 0
                        : strncmp(got, greet[1], strlen(greet[1])) == 0 ? 1
                                                                        : -1;
            if (which < 0 || strcmp(got + strlen(greet[which]), line) != 0)
                fail_msg("reload %d client %d: reply '%s' carries neither greeting", r, c, got);
            seen[which]++;
            messages++;
            h_close(fd);
        }
        char line[64];
        snprintf(line, sizeof(line), "long-lived %d\n", r);
        expect_greeting(long_lived, greet[0], line);
        messages++;
    }
    int64_t took = h_now_ms() - t0;
    assert_int_equal(h_echod_reload(&echod, conf[1]), 0); /* the last one is in force */
    expect_udp_greeting(greet[1], "after the storm");
    const char *names[] = {"reloads", "reload_failures"};
    uint64_t counts[2];
    h_echod_stats(&echod, names, counts, 2);
    h_sleep_ms(2200); /* the pools trim what the clients borrowed */
    long rss_after = h_rss_kib(echod.pid);
    int fds_after = h_fd_count(echod.pid);
    h_note("reload storm: %d SIGHUPs in %lld ms, %llu reloads applied, %llu failed; %lu "
           "messages (%lu %s, %lu %s), 0 errors; rss %ld -> %ld KiB, fds %d -> %d",
           RELOADS, (long long)took, (unsigned long long)counts[0], (unsigned long long)counts[1],
           messages, seen[0], greet[0], seen[1], greet[1], rss_before, rss_after, fds_before,
           fds_after);
    assert_int_equal(counts[1], 0);
    assert_true(counts[0] >= 2);
    assert_true(seen[0] > 0 && seen[1] > 0);
    assert_int_equal(fds_after, fds_before);
    if (H_RSS_IS_CHECKED && rss_after > rss_before + 512)
        fail_msg("RSS grew from %ld to %ld KiB over the storm", rss_before, rss_after);
}

/* SIGHUP and SIGTERM back to back: echod stops cleanly, and a client that sent a line
 * gets its answer. */
static void reload_racing_sigterm(void **state)
{
    (void)state;
    for (int round = 0; round < 5; round++) {
        h_echod_start(&echod, greet_conf("A: ", "\"127.0.0.1:0\"", ""), NULL);
        int fd = h_tcp_connect_ok(&echod.tcp[0]);
        expect_greeting(fd, "A: ", "before\n");
        h_echod_write_conf(&echod, greet_conf("B: ", "\"127.0.0.1:0\"", ""));
        kill(echod.pid, SIGHUP);
        if (round % 2)
            h_sleep_ms(1);
        kill(echod.pid, SIGTERM);
        h_send_all(fd, "last\n", 5, 5000);
        char got[16];
        h_recv_exact(fd, got, 8, 5000);
        h_assert_bytes("reply after SIGHUP+SIGTERM", "A: last\n", got, 8);
        h_close(fd);
        int code = h_wait_exit(echod.pid, 5000);
        if (code >= 0) {
            echod.pid = 0;
            echod.exit_status = code;
        }
        assert_int_equal(code, 0);
        h_echod_teardown(&echod);
    }
}

int main(void)
{
    h_init("test_reload", 240);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(reload_changes_greeting_for_new_connections, h_teardown),
        cmocka_unit_test_teardown(reload_invalid_file_keeps_old_configuration, h_teardown),
        cmocka_unit_test_teardown(reload_fixed_key_is_named, h_teardown),
        cmocka_unit_test_teardown(reload_changes_log_level, h_teardown),
        cmocka_unit_test_teardown(reload_changes_backlog, h_teardown),
        cmocka_unit_test_teardown(reload_adds_and_removes_listeners, h_teardown),
        cmocka_unit_test_teardown(reload_storm_under_load, h_teardown),
        cmocka_unit_test_teardown(reload_racing_sigterm, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
