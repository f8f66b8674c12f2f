/* test_signals: the signals a user of a foreground daemon sends besides TERM and INT.
 * Ctrl-Z (SIGTSTP), and SIGTTIN and SIGTTOU, stop the whole of echod (state 'T' in
 * /proc/PID/stat: a byte sent meanwhile is not echoed) and SIGCONT resumes it, echoing
 * what came in meanwhile; Ctrl-\ (SIGQUIT) ends it as its default action does, with a
 * core dump (none is written: this binary sets RLIMIT_CORE to 0 for what it starts);
 * SIGUSR2 is logged and changes nothing (SIGHUP reloads: see test_reload). Every test that stops
 * echod sends SIGCONT in its teardown, so no stopped process is left behind. */
#include "config.h"

#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* The state letter of pid in /proc/PID/stat ('R', 'S', 'T', ...), or '?'. */
static char proc_state(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *text = h_read_file(path, NULL);
    const char *paren = text ? strrchr(text, ')') : NULL; /* the name may hold spaces */
    char state = paren && paren[1] == ' ' ? paren[2] : '?';
    free(text);
    return state;
}

/* Wait up to timeout_ms for pid's state to be (or, if !is_wanted, to leave) `state`. */
static bool wait_state(pid_t pid, char state, bool is_wanted, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        if ((proc_state(pid) == state) == is_wanted)
            return true;
        if (h_now_ms() >= deadline)
            return false;
        h_sleep_ms(10);
    }
}

/* Wait up to timeout_ms for echod's log to hold needle. */
static bool wait_log(const char *needle, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    while (!h_echod_log_contains(&echod, needle)) {
        if (h_now_ms() >= deadline)
            return false;
        h_sleep_ms(10);
    }
    return true;
}

/* Resume echod if a failed test left it stopped, then the usual teardown. */
static int teardown_continue(void **state)
{
    if (echod.pid > 0)
        kill(echod.pid, SIGCONT);
    return h_teardown(state);
}

/* Each job-control stop signal stops echod until SIGCONT; what a client sent while it was
 * stopped is echoed once it resumes, and the connection goes on. */
static void stop_signals_stop_until_cont(void **state)
{
    (void)state;
    const int stops[] = {SIGTSTP, SIGTTIN, SIGTTOU};
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    h_echo_roundtrip(fd, "before\n", 7, 5000);
    for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++) {
        int64_t start_ms = h_now_ms();
        kill(echod.pid, stops[i]);
        if (!wait_state(echod.pid, 'T', true, 5000))
            fail_msg("%s: echod is not stopped after 5 s (state '%c')", strsignal(stops[i]),
                     proc_state(echod.pid));
        h_note("%s: echod stopped (state T) after %lld ms", strsignal(stops[i]),
               (long long)(h_now_ms() - start_ms));
        h_send_all(fd, "while stopped\n", 14, 5000);
        h_expect_silence(fd, 300);
        kill(echod.pid, SIGCONT);
        if (!wait_state(echod.pid, 'T', false, 5000))
            fail_msg("%s: echod is still stopped 5 s after SIGCONT", strsignal(stops[i]));
        char buf[14];
        h_recv_exact(fd, buf, sizeof(buf), 5000);
        h_assert_bytes("the echo of what was sent while stopped", "while stopped\n", buf, 14);
        h_echo_roundtrip(fd, "after\n", 6, 5000);
        h_echod_assert_alive(&echod);
    }
}

/* SIGUSR2 has no meaning: it is logged at info and echod serves on. */
static void usr2_is_logged_and_ignored(void **state)
{
    (void)state;
    const int ignored[] = {SIGUSR2};
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
        char needle[128];
        snprintf(needle, sizeof(needle), "info: received %s: ignored", strsignal(ignored[i]));
        kill(echod.pid, ignored[i]);
        if (!wait_log(needle, 5000)) {
            h_echod_dump_log(&echod);
            fail_msg("no '%s' in echod's log 5 s after the signal", needle);
        }
        h_echod_assert_alive(&echod);
        h_echo_roundtrip(fd, "still here\n", 11, 5000);
    }
}

/* SIGQUIT (Ctrl-\) ends echod at once by its default action, a core dump. */
static void quit_ends_with_its_default_action(void **state)
{
    (void)state;
    int fd = h_tcp_connect_ok(&echod.tcp[0]);
    h_echo_roundtrip(fd, "before\n", 7, 5000);
    int code = h_echod_signal_wait(&echod, SIGQUIT, 5000);
    if (code != 128 + SIGQUIT)
        fail_msg("echod after SIGQUIT: expected to be killed by it (status %d), got %d",
                 128 + SIGQUIT, code);
    memset(&echod, 0, sizeof(echod)); /* ended as expected: nothing left to stop */
}

int main(void)
{
    h_init("test_signals", 120);
    /* SIGQUIT dumps core: none is wanted in the build tree. */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(stop_signals_stop_until_cont, h_setup_echo,
                                        teardown_continue),
        cmocka_unit_test_setup_teardown(usr2_is_logged_and_ignored, h_setup_echo,
                                        teardown_continue),
        cmocka_unit_test_setup_teardown(quit_ends_with_its_default_action, h_setup_echo,
                                        teardown_continue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
