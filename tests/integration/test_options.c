/* test_options: echod's command line and configuration errors, run as a user would.
 * Bad options exit 64 with a message; -t prints "configuration OK" or FILE:LINE: naming
 * the key and exits 78; a listener that cannot be bound exits 69 naming the address;
 * --help/--version exit 0; the port file and "listening" lines; -l and log_level; a
 * max_connections that does not fit RLIMIT_NOFILE exits 78 saying what to change.
 * Every run that could start serving passes -t or a port-0 config, never a fixed port. */
#include "config.h"

#include "harness.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static char good_conf[512]; /* a valid config on port 0 */

static int setup(void **state)
{
    (void)state;
    const char *text = "tcp = { listen = [ \"127.0.0.1:0\" ]; };\n"
                       "udp = { listen = [ \"127.0.0.1:0\" ]; };\n";
    h_write_temp("good.conf", text, strlen(text), good_conf, sizeof(good_conf));
    return 0;
}

/* Run echod with args and nothing on stdin. */
static struct h_output run_echod(const char *const *args)
{
    return h_run_env("ECHOD_BIN", args, NULL, 0, 10000);
}

/* Describe a run for failure messages. */
#define RUN_FMT     "exit %d, stdout \"%s\", stderr \"%s\""
#define RUN_ARGS(r) (r).code, (r).out, (r).err

/* ---------------------------------------------------------------- options */

static void expect_usage_error(const char *const *args, const char *mention)
{
    struct h_output r = run_echod(args);
    if (r.code != 64)
        fail_msg("%s %s: expected exit 64, got " RUN_FMT, args[0], args[1] ? args[1] : "",
                 RUN_ARGS(r));
    if (r.err[0] == '\0')
        fail_msg("bad usage exited 64 without a message on stderr");
    if (mention && !strstr(r.err, mention))
        fail_msg("the usage error does not mention '%s': \"%s\"", mention, r.err);
    h_output_free(&r);
}

/* -t -c GOOD is in every run: an option wrongly accepted ends in "configuration OK" and
 * exit 0, never in a daemon bound to the default port. */
static void options_bad_usage_exits_64(void **state)
{
    (void)state;
    const char *unknown_long[] = {"-t", "-c", good_conf, "--bogus", NULL};
    expect_usage_error(unknown_long, "bogus");
    const char *unknown_short[] = {"-t", "-c", good_conf, "-x", NULL};
    expect_usage_error(unknown_short, "-x");
    const char *missing_config[] = {"-t", "-c", NULL};
    expect_usage_error(missing_config, NULL);
    const char *missing_port_file[] = {"-t", "-c", good_conf, "--port-file", NULL};
    expect_usage_error(missing_port_file, "port-file");
    const char *missing_level[] = {"-t", "-c", good_conf, "-l", NULL};
    expect_usage_error(missing_level, NULL);
    const char *extra[] = {"-t", "-c", good_conf, "extra-argument", NULL};
    expect_usage_error(extra, "extra-argument");
    const char *bad_level[] = {"-t", "-c", good_conf, "--log-level", "loud", NULL};
    expect_usage_error(bad_level, "loud");
    const char *bad_level_short[] = {"-t", "-c", good_conf, "-l", "verbose", NULL};
    expect_usage_error(bad_level_short, "verbose");
}

static void options_help_and_version_exit_0(void **state)
{
    (void)state;
    const char *helps[][2] = {{"--help", NULL}, {"-h", NULL}};
    for (size_t i = 0; i < 2; i++) {
        struct h_output r = run_echod(helps[i]);
        if (r.code != 0 || !strstr(r.out, "--config") || !strstr(r.out, "--port-file") ||
            !strstr(r.out, "--check-config") || !strstr(r.out, "--log-level"))
            fail_msg("%s: expected exit 0 and the options listed on stdout, got " RUN_FMT,
                     helps[i][0], RUN_ARGS(r));
        h_output_free(&r);
    }
    const char *versions[][2] = {{"--version", NULL}, {"-V", NULL}};
    for (size_t i = 0; i < 2; i++) {
        struct h_output r = run_echod(versions[i]);
        if (r.code != 0 || !strstr(r.out, "echod") || !strpbrk(r.out, "0123456789"))
            fail_msg("%s: expected exit 0 and 'echod VERSION' on stdout, got " RUN_FMT,
                     versions[i][0], RUN_ARGS(r));
        h_output_free(&r);
    }
}

/* ---------------------------------------------------------------- -t */

static void expect_config_ok(const char *path)
{
    for (int form = 0; form < 2; form++) {
        const char *args[] = {form ? "--check-config" : "-t", form ? "--config" : "-c", path, NULL};
        struct h_output r = run_echod(args);
        if (r.code != 0 || strcmp(r.out, "configuration OK\n") != 0)
            fail_msg("%s %s %s: expected exit 0 and exactly \"configuration OK\\n\", got " RUN_FMT,
                     args[0], args[1], path, RUN_ARGS(r));
        h_output_free(&r);
    }
}

static void check_config_valid(void **state)
{
    (void)state;
    const char *every_key = "# every key, as documented\n"
                            "workers = 0;\n"
                            "queue_capacity = 1024;\n"
                            "max_connections = 10000;\n"
                            "idle_timeout_ms = 300000;\n"
                            "shutdown_timeout_ms = 5000;\n"
                            "log_level = \"info\";\n"
                            "tcp = {\n"
                            "  listen = [ \"127.0.0.1:0\", \"[::1]:0\" ];\n"
                            "  backlog = 4096;\n"
                            "  mode = \"greet\";\n"
                            "  greeting = \"\xe4\xbd\xa0\xe5\xa5\xbd, \";\n"
                            "  max_line_bytes = 8192;\n"
                            "  buffer_bytes = 65536;\n"
                            "};\n"
                            "udp = {\n"
                            "  listen = [ \"127.0.0.1:0\" ];\n"
                            "  mode = \"echo\";\n"
                            "  greeting = \"Hello, client! You sent: \";\n"
                            "};\n";
    char path[512];
    h_write_temp("every-key.conf", every_key, strlen(every_key), path, sizeof(path));
    expect_config_ok(path);

    const char *empty = "# every key is optional\n";
    h_write_temp("empty.conf", empty, strlen(empty), path, sizeof(path));
    expect_config_ok(path);

    const char *off = "tcp = { listen = [ ]; };\nudp = { listen = [ ]; };\n";
    h_write_temp("off.conf", off, strlen(off), path, sizeof(path));
    expect_config_ok(path);

    snprintf(path, sizeof(path), "%s/etc/echod.conf", h_env("ECHOD_SRCDIR"));
    expect_config_ok(path);
}

struct bad_config {
    const char *what;
    const char *text;
    int line;        /* the line the error must name */
    const char *key; /* a key the message must name; NULL for a syntax error */
};

static const struct bad_config bad_configs[] = {
    {"unknown top-level key", "workers = 1;\nqueue_capacity = 8;\nbogus_key = 1;\n", 3,
     "bogus_key"},
    {"unknown key inside tcp",
     "tcp = {\n  listen = [ \"127.0.0.1:0\" ];\n  colour = \"red\";\n};\n", 3, "colour"},
    {"unknown key inside udp", "udp = {\n  mode = \"echo\";\n\n  flavour = 1;\n};\n", 4, "flavour"},
    {"wrong type: workers = \"two\"", "log_level = \"info\";\nworkers = \"two\";\n", 2, "workers"},
    {"wrong type: tcp.backlog = \"big\"", "tcp = {\n  backlog = \"big\";\n};\n", 2, "backlog"},
    {"wrong type: tcp = 5", "workers = 1;\ntcp = 5;\n", 2, "tcp"},
    {"out of range: max_connections = 0", "max_connections = 0;\n", 1, "max_connections"},
    {"out of range: idle_timeout_ms = -1", "\nidle_timeout_ms = -1;\n", 2, "idle_timeout_ms"},
    {"out of range: tcp.buffer_bytes = 1", "tcp = {\n  mode = \"echo\";\n  buffer_bytes = 1;\n};\n",
     3, "buffer_bytes"},
    {"bad tcp.mode", "tcp = {\n  mode = \"shout\";\n};\n", 2, "mode"},
    {"bad udp.mode", "udp = {\n  listen = [ ];\n  mode = \"whisper\";\n};\n", 3, "mode"},
    {"bad log_level", "log_level = \"loud\";\n", 1, "log_level"},
    {"listen address without a port", "tcp = {\n  listen = [ \"127.0.0.1\" ];\n};\n", 2, "listen"},
    {"listen address with an open bracket", "udp = {\n  listen = [ \"[::1\" ];\n};\n", 2, "listen"},
    {"listen port out of range", "tcp = {\n  listen = [ \"1.2.3.4:99999\" ];\n};\n", 2, "listen"},
    {"syntax error", "workers = 2;\nqueue_capacity = ;\nmax_connections = 5;\n", 2, NULL},
};

static void expect_config_error(const struct bad_config *bc, bool is_check_only)
{
    char path[512], port_path[600];
    h_write_temp("bad.conf", bc->text, strlen(bc->text), path, sizeof(path));
    snprintf(port_path, sizeof(port_path), "%s.ports", path);
    const char *check_args[] = {"-t", "-c", path, NULL};
    const char *run_args[] = {"-c", path, "--port-file", port_path, NULL};
    struct h_output r = run_echod(is_check_only ? check_args : run_args);
    char where[600];
    snprintf(where, sizeof(where), "%s:%d:", path, bc->line);
    if (r.code != 78)
        fail_msg("%s%s: expected exit 78, got " RUN_FMT, bc->what, is_check_only ? " (-t)" : "",
                 RUN_ARGS(r));
    if (!strstr(r.err, where))
        fail_msg("%s: the message does not start with '%s': \"%s\"", bc->what, where, r.err);
    if (bc->key && !strstr(r.err, bc->key))
        fail_msg("%s: the message does not name the key '%s': \"%s\"", bc->what, bc->key, r.err);
    if (strstr(r.out, "configuration OK"))
        fail_msg("%s: 'configuration OK' printed for a bad config", bc->what);
    if (access(port_path, F_OK) == 0)
        fail_msg("%s: a port file was written for a bad config", bc->what);
    h_output_free(&r);
}

static void check_config_errors_exit_78(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_configs) / sizeof(bad_configs[0]); i++)
        expect_config_error(&bad_configs[i], true);
    h_note("%zu bad configs rejected by -t with FILE:LINE: and the key",
           sizeof(bad_configs) / sizeof(bad_configs[0]));
}

/* Bad configs for a real start: each sets port-0 listeners, so a config wrongly accepted
 * never binds the default port. */
#define LISTEN_0 "tcp = { listen = [ \"127.0.0.1:0\" ]; };\nudp = { listen = [ ]; };\n"
static const struct bad_config bad_start_configs[] = {
    {"unknown top-level key", LISTEN_0 "bogus_key = 1;\n", 3, "bogus_key"},
    {"wrong type: workers = \"two\"", "workers = \"two\";\n" LISTEN_0, 1, "workers"},
    {"out of range: tcp.buffer_bytes = 1",
     "udp = { listen = [ ]; };\ntcp = {\n  listen = [ \"127.0.0.1:0\" ];\n  buffer_bytes = "
     "1;\n};\n",
     4, "buffer_bytes"},
    {"bad listen address", "udp = { listen = [ ]; };\ntcp = { listen = [ \"127.0.0.1\" ]; };\n", 2,
     "listen"},
    {"syntax error", LISTEN_0 "workers = ;\n", 3, NULL},
};

/* Without -t, a bad config stops the daemon at start-up the same way. */
static void start_with_bad_config_exits_78(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_start_configs) / sizeof(bad_start_configs[0]); i++)
        expect_config_error(&bad_start_configs[i], false);
}

static void missing_or_unreadable_config_exits_78(void **state)
{
    (void)state;
    char missing[600];
    snprintf(missing, sizeof(missing), "%s/no-such-file.conf", h_tmpdir());
    const char *args[] = {"-t", "-c", missing, NULL};
    struct h_output r = run_echod(args);
    if (r.code != 78 || !strstr(r.err, missing))
        fail_msg("missing config: expected exit 78 and the path on stderr, got " RUN_FMT,
                 RUN_ARGS(r));
    h_output_free(&r);

    const char *dir_args[] = {"-t", "-c", h_tmpdir(), NULL};
    r = run_echod(dir_args);
    if (r.code != 78 || !strstr(r.err, h_tmpdir()))
        fail_msg("a directory as config: expected exit 78 and the path on stderr, got " RUN_FMT,
                 RUN_ARGS(r));
    h_output_free(&r);
}

/* ---------------------------------------------------------------- listeners */

/* A second echod on the first one's port exits 69 and names the address; for TCP and for
 * UDP. The first keeps serving. */
static void busy_port_exits_69(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  "tcp = { listen = [ \"127.0.0.1:0\" ]; };\n"
                  "udp = { listen = [ \"127.0.0.1:0\" ]; };\n",
                  NULL);
    for (int is_udp = 0; is_udp < 2; is_udp++) {
        const char *addr = is_udp ? echod.udp_text[0] : echod.tcp_text[0];
        char text[256], path[512], port_path[600];
        snprintf(text, sizeof(text),
                 "tcp = { listen = [ %s%s%s ]; };\nudp = { listen = [ %s%s%s ]; };\n",
                 is_udp ? "" : "\"", is_udp ? "" : addr, is_udp ? "" : "\"", is_udp ? "\"" : "",
                 is_udp ? addr : "", is_udp ? "\"" : "");
        h_write_temp("busy.conf", text, strlen(text), path, sizeof(path));
        snprintf(port_path, sizeof(port_path), "%s.ports", path);
        const char *args[] = {"-c", path, "--port-file", port_path, NULL};
        struct h_output r = run_echod(args);
        if (r.code != 69)
            fail_msg("a second echod on busy %s %s: expected exit 69, got " RUN_FMT,
                     is_udp ? "udp" : "tcp", addr, RUN_ARGS(r));
        if (!strstr(r.err, addr))
            fail_msg("the bind error does not name %s: \"%s\"", addr, r.err);
        if (access(port_path, F_OK) == 0)
            fail_msg("a port file was written although a listener could not be bound");
        h_output_free(&r);
    }
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    h_echo_roundtrip(fd, "first one still serves\n", 23, 5000);
    int ufd = h_udp_connect(&echod.udp[0]);
    h_udp_expect(ufd, "udp too", 7, "udp too", 7, 5, 1000);
}

/* Assert log holds a line "... echod[PID]: info: listening PROTO ADDR". echod's log
 * thread writes the lines it is handed when it next runs, so wait up to 5 s for it. */
static void expect_listening_line(struct echod *e, const char *proto, const char *addr)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "listening %s %s", proto, addr);
    int64_t deadline_ms = h_now_ms() + 5000;
    while (!h_file_contains(e->log_path, needle) && h_now_ms() < deadline_ms)
        h_sleep_ms(10);
    char *log = h_read_file(e->log_path, NULL);
    char *at = log ? strstr(log, needle) : NULL;
    if (!at)
        fail_msg("no '%s' in echod's log: \"%s\"", needle, log ? log : "");
    char *bol = at;
    while (bol > log && bol[-1] != '\n')
        bol--;
    char prefix[64];
    snprintf(prefix, sizeof(prefix), " echod[%d]: ", (int)e->pid);
    char *p = strstr(bol, prefix);
    if (!p || p > at || p == bol || strncasecmp(p + strlen(prefix), "info: ", 6) != 0 ||
        p + strlen(prefix) + 6 != at)
        fail_msg("the log line is not 'TIME echod[%d]: info: %s': \"%.*s\"", (int)e->pid, needle,
                 (int)(strchrnul(at, '\n') - bol), bol);
    free(log);
}

/* Port file: one line per listener, TCP lines first, written atomically (no temp file
 * left beside it); every listener it names answers; "listening" lines are logged. */
static void port_file_and_listening_lines(void **state)
{
    (void)state;
    bool v6 = h_have_ipv6();
    if (!v6)
        h_note("::1 cannot be bound here: the port file is checked with IPv4 listeners only");
    char config[512];
    snprintf(config, sizeof(config),
             "tcp = { listen = [ \"127.0.0.1:0\"%s, \"127.0.0.1:0\" ]; };\n"
             "udp = { listen = [ \"127.0.0.1:0\"%s ]; };\n",
             v6 ? ", \"[::1]:0\"" : "", v6 ? ", \"[::1]:0\"" : "");
    h_echod_start(&echod, config, NULL);
    assert_int_equal(echod.tcp_count, v6 ? 3 : 2);
    assert_int_equal(echod.udp_count, v6 ? 2 : 1);

    size_t len;
    char *text = h_read_file(echod.port_path, &len);
    assert_non_null(text);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    assert_true(len > 0 && text[len - 1] == '\n');
    assert_int_equal(lines, echod.tcp_count + echod.udp_count);
    free(text);

    const char *base = strrchr(echod.port_path, '/') + 1;
    DIR *d = opendir(h_tmpdir());
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, base, strlen(base)) == 0 && strcmp(de->d_name, base) != 0)
            fail_msg("a temporary file '%s' is left beside the port file", de->d_name);
    }
    closedir(d);

    for (size_t i = 0; i < echod.tcp_count; i++) {
        for (size_t k = 0; k < i; k++)
            assert_int_not_equal(h_port_of(&echod.tcp[i]), h_port_of(&echod.tcp[k]));
        expect_listening_line(&echod, "tcp", echod.tcp_text[i]);
        int fd = h_tcp_connect_ok(&echod.tcp[i]);
        h_echo_roundtrip(fd, "tcp listener\n", 13, 5000);
        h_close(fd);
    }
    for (size_t i = 0; i < echod.udp_count; i++) {
        expect_listening_line(&echod, "udp", echod.udp_text[i]);
        int fd = h_udp_connect(&echod.udp[i]);
        h_udp_expect(fd, "udp listener", 12, "udp listener", 12, 5, 1000);
        h_close(fd);
    }
    if (v6) {
        assert_memory_equal(echod.tcp_text[1], "[::1]:", 6);
        assert_memory_equal(echod.udp_text[1], "[::1]:", 6);
    }
}

/* Start echod with a log level from the config and/or -l; whether "listening" is logged. */
static bool logs_listening(const char *config_level, const char *option_level)
{
    char config[256];
    snprintf(config, sizeof(config),
             "%s%s%s"
             "tcp = { listen = [ \"127.0.0.1:0\" ]; };\nudp = { listen = [ ]; };\n",
             config_level ? "log_level = \"" : "", config_level ? config_level : "",
             config_level ? "\";\n" : "");
    const char *extra[] = {"-l", option_level, NULL};
    h_echod_start(&echod, config, option_level ? extra : NULL);
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    h_echo_roundtrip(fd, "level\n", 6, 5000);
    h_close(fd);
    int code = h_echod_stop(&echod);
    if (code != 0)
        fail_msg("echod exited with %d after SIGTERM", code);
    /* Only once echod has exited is its log complete: its log thread writes lines when it
     * next runs, and drains them all before the exit. */
    bool found = h_echod_log_contains(&echod, "listening tcp");
    memset(&echod, 0, sizeof(echod));
    return found;
}

static void log_level_option_and_key(void **state)
{
    (void)state;
    assert_true(logs_listening(NULL, NULL));      /* default: info */
    assert_false(logs_listening(NULL, "error"));  /* -l error hides info lines */
    assert_false(logs_listening("warn", NULL));   /* so does log_level = "warn" */
    assert_true(logs_listening("error", "info")); /* -l overrides the file */
    assert_true(logs_listening(NULL, "debug"));
}

/* ---------------------------------------------------------------- fd limit */

/* Run echod with RLIMIT_NOFILE at nofile (soft and hard) and the config text; returns
 * the exit code and stderr (free it). */
static int run_limited(const char *config, long nofile, bool is_check_only, char **err_out)
{
    char path[512], port_path[600], err_path[600];
    h_write_temp("fdlimit.conf", config, strlen(config), path, sizeof(path));
    snprintf(port_path, sizeof(port_path), "%s.ports", path);
    snprintf(err_path, sizeof(err_path), "%s.err", path);
    char *check[] = {(char *)h_env("ECHOD_BIN"), (char *)"-t", (char *)"-c", path, NULL};
    char *run[] = {(char *)h_env("ECHOD_BIN"), (char *)"-c", path,
                   (char *)"--port-file",      port_path,    NULL};
    pid_t pid = h_spawn_limited(is_check_only ? check : run, -1, err_path, nofile);
    int code = h_wait_exit(pid, 10000);
    if (code < 0) {
        h_kill(pid);
        fail_msg("echod with RLIMIT_NOFILE %ld did not exit within 10 s", nofile);
    }
    if (access(port_path, F_OK) == 0)
        fail_msg("echod wrote its port file although max_connections does not fit");
    *err_out = h_read_file(err_path, NULL);
    assert_non_null(*err_out);
    return code;
}

/* With 64 fds, the default max_connections (10000) cannot fit: echod and echod -t exit
 * 78 naming max_connections, the fds needed and the limit, and both remedies. With
 * max_connections = 20 the same limit is enough. */
static void fd_limit_too_low_exits_78(void **state)
{
    (void)state;
    const char *config = LISTEN_0;
    for (int check = 0; check < 2; check++) {
        char *err;
        int code = run_limited(config, 64, check, &err);
        const char *needles[] = {"max_connections = 10000", "open file limit is 64",
                                 "lower max_connections to", "ulimit -n", "LimitNOFILE="};
        if (code != 78)
            fail_msg("%s: expected exit 78, got %d: %s", check ? "-t" : "start", code, err);
        for (size_t i = 0; i < sizeof(needles) / sizeof(needles[0]); i++)
            if (!strstr(err, needles[i]))
                fail_msg("%s: the message lacks '%s': \"%s\"", check ? "-t" : "start", needles[i],
                         err);
        /* The count includes echod's own fds: more than max_connections alone. */
        unsigned long long need = 0;
        const char *at = strstr(err, "needs ");
        assert_non_null(at);
        need = strtoull(at + 6, NULL, 10);
        if (need <= 10000 || need > 10000 + 64)
            fail_msg("fds needed %llu: expected 10000 plus echod's own few", need);
        free(err);
    }
    char *err;
    int code = run_limited("max_connections = 20;\n" LISTEN_0, 64, true, &err);
    if (code != 0)
        fail_msg("max_connections = 20 with 64 fds: expected -t to pass, got %d: %s", code, err);
    free(err);
}

int main(void)
{
    h_init("test_options", 120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(options_bad_usage_exits_64, setup, h_teardown),
        cmocka_unit_test_setup_teardown(options_help_and_version_exit_0, setup, h_teardown),
        cmocka_unit_test_setup_teardown(check_config_valid, setup, h_teardown),
        cmocka_unit_test_setup_teardown(check_config_errors_exit_78, setup, h_teardown),
        cmocka_unit_test_setup_teardown(start_with_bad_config_exits_78, setup, h_teardown),
        cmocka_unit_test_setup_teardown(missing_or_unreadable_config_exits_78, setup, h_teardown),
        cmocka_unit_test_setup_teardown(busy_port_exits_69, setup, h_teardown),
        cmocka_unit_test_setup_teardown(port_file_and_listening_lines, setup, h_teardown),
        cmocka_unit_test_setup_teardown(log_level_option_and_key, setup, h_teardown),
        cmocka_unit_test_setup_teardown(fd_limit_too_low_exits_78, setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
