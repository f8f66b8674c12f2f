/* test_udp_batch: the UDP thread's batches (one recvmmsg in, one sendmmsg out) through
 * the real echod. echod is stopped (SIGSTOP) while the datagrams queue, so that on
 * SIGCONT they are read in few, full batches:
 * - a burst of 8 sources x 16 datagrams, three times, comes back whole and in order per
 *   source (sequence numbers), over more than one batch each time;
 * - one batch mixing allowed sources with refused ones (rate, own port, reflector port,
 *   low port) answers the allowed ones, in order, and counts each refusal under its
 *   reason;
 * - replies the kernel refuses in mid-batch (to a source port 0, forged from a raw
 *   socket) are counted as udp_send_errors and the rest of the batch is answered, in
 *   order (the partial sendmmsg path).
 * Every datagram is 64 bytes: the source's number, a 16-bit sequence, seeded bytes. */
#include "config.h"

#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LEN        64   /* bytes per datagram */
#define REPLY_MS   2000 /* the longest wait for one reply */
#define SILENCE_MS 300  /* how long a refused source must hear nothing */

/* What one source sent: datagram k is sent[k]. */
struct source {
    int fd;
    uint8_t number; /* first byte of each of its datagrams */
    uint16_t sent_count;
    uint8_t sent[64][LEN];
};

/* Whether every thread of pid is stopped ('T' in /proc/PID/task/TID/stat). */
static bool is_stopped(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *dir = opendir(path);
    if (dir == NULL)
        fail_msg("opendir %s: %s", path, strerror(errno));
    bool stopped = true;
    struct dirent *d;
    while (stopped && (d = readdir(dir)) != NULL) {
        if (d->d_name[0] == '.')
            continue;
        char stat_path[128], text[512];
        snprintf(stat_path, sizeof(stat_path), "%s/%.32s/stat", path, d->d_name);
        FILE *f = fopen(stat_path, "r");
        size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
        if (f)
            fclose(f);
        text[n] = '\0';
        const char *state = strrchr(text, ')');
        stopped = state == NULL || (state[1] == ' ' && (state[2] == 'T' || state[2] == 't'));
    }
    closedir(dir);
    return stopped;
}

/* Stop echod and wait (2 s) until every one of its threads is stopped: what is sent now
 * queues in the kernel until echod_resume. */
static void echod_freeze(void)
{
    if (kill(echod.pid, SIGSTOP) != 0)
        fail_msg("SIGSTOP echod: %s", strerror(errno));
    int64_t give_up = h_now_ms() + 2000;
    while (!is_stopped(echod.pid)) {
        if (h_now_ms() > give_up)
            fail_msg("echod did not stop within 2 s of SIGSTOP");
        h_sleep_ms(5);
    }
}

static void echod_resume(void)
{
    if (kill(echod.pid, SIGCONT) != 0)
        fail_msg("SIGCONT echod: %s", strerror(errno));
}

/* Send datagram number src->sent_count of src (kept in src->sent). */
static void source_send(struct source *src)
{
    uint16_t k = src->sent_count++;
    assert_true(k < 64);
    uint8_t *d = src->sent[k];
    h_fill_random(d, LEN);
    d[0] = src->number;
    d[1] = (uint8_t)(k >> 8);
    d[2] = (uint8_t)k;
    if (send(src->fd, d, LEN, 0) != LEN)
        fail_msg("udp send from source %u: %s", src->number, strerror(errno));
}

/* Fail unless src receives exactly its datagrams first..first+count-1 back, in order,
 * byte for byte (then nothing within `silence_ms`, when silence_ms > 0). */
static void expect_in_order(struct source *src, uint16_t first, uint16_t count, int silence_ms)
{
    uint8_t reply[LEN + 1];
    for (uint16_t k = first; k < first + count; k++) {
        ssize_t n = h_udp_recv(src->fd, reply, sizeof(reply), REPLY_MS);
        if (n < 0)
            fail_msg("source %u: reply %u of %u-%u never came", src->number, k, first,
                     first + count - 1);
        if (n != LEN || reply[0] != src->number)
            fail_msg("source %u: a foreign %zd-byte datagram where its reply %u was due",
                     src->number, n, k);
        unsigned got = (unsigned)reply[1] << 8 | reply[2];
        if (got != k)
            fail_msg("source %u: reply %u arrived where %u was due (lost or reordered)",
                     src->number, got, k);
        h_assert_bytes("reply", src->sent[k], reply, LEN);
    }
    if (silence_ms > 0)
        h_expect_silence(src->fd, silence_ms);
}

/* echod's counters named in names, into v. */
#define STATS(names, v) h_echod_stats(&echod, names, v, sizeof(names) / sizeof(names[0]))

enum { SOURCES = 8, EACH = 16, ROUNDS = 3 };

/* Three times: with echod stopped, 8 sources send 16 datagrams each, round-robin (128
 * datagrams: 4 batches, and 106 KiB of the kernel's default 208 KiB receive buffer, so
 * none is dropped before echod reads); on SIGCONT each source gets its 16 back in
 * order. Over the three rounds echod counts all 384 in and out, in more than one batch
 * per round. */
static void udp_batch_burst_in_order(void **state)
{
    (void)state;
    h_echod_start(&echod, "tcp = { listen = [ ]; };\nudp = { listen = [ \"127.0.0.1:0\" ]; };\n",
                  NULL);
    static struct source src[SOURCES];
    for (uint8_t s = 0; s < SOURCES; s++)
        src[s] = (struct source){.fd = h_udp_connect(&echod.udp[0]), .number = s};
    for (int round = 0; round < ROUNDS; round++) {
        echod_freeze();
        for (int k = 0; k < EACH; k++)
            for (int s = 0; s < SOURCES; s++)
                source_send(&src[s]);
        echod_resume();
        for (int s = 0; s < SOURCES; s++)
            expect_in_order(&src[s], (uint16_t)(round * EACH), EACH, 0);
    }
    const uint64_t total = SOURCES * EACH * ROUNDS;
    h_echod_wait_stat(&echod, "udp_datagrams_out", total, REPLY_MS);
    const char *names[] = {"udp_datagrams_in", "udp_datagrams_out", "udp_bytes_out", "udp_batches",
                           "udp_send_errors"};
    uint64_t v[5];
    STATS(names, v);
    h_note("burst: %llu datagrams from %d sources in %llu batches (%.1f per batch)",
           (unsigned long long)v[0], SOURCES, (unsigned long long)v[3],
           v[3] ? (double)v[0] / (double)v[3] : 0.0);
    assert_int_equal(v[0], total);
    assert_int_equal(v[1], total);
    assert_int_equal(v[2], total * LEN);
    assert_int_equal(v[4], 0);
    assert_true(v[3] >= 2 * ROUNDS);      /* more than one batch per round */
    assert_true(v[3] <= total / SOURCES); /* and batched: 8 or more per batch on average */
}

/* A source bound to ip:port sending to echod's first UDP listener, or -1 (with a note)
 * when the bind is refused. */
static int source_open(struct source *src, uint8_t number, const char *ip, uint16_t port)
{
    int fd = h_udp_bind_connect(ip, port, &echod.udp[0]);
    if (fd < 0) {
        h_note("cannot bind %s:%u (%s): that source is left out", ip, port, strerror(-fd));
        return -1;
    }
    *src = (struct source){.fd = fd, .number = number};
    return 0;
}

/* The reflector port (guard.c's list) a source can bind on 127.0.0.1, or 0. */
static uint16_t free_reflector_port(struct source *src, uint8_t number)
{
    static const uint16_t ports[] = {11211, 5353, 1900, 3702};
    for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
        if (source_open(src, number, "127.0.0.1", ports[i]) == 0)
            return ports[i];
    return 0;
}

enum { OK, FLOOD, OWN, REFLECTOR, LOW, KINDS };

/* One batch of 18 datagrams, sent round-robin while echod is stopped, from: 127.0.1.1
 * (4, within its burst of 4), 127.0.2.1 (8: its burst of 4 passes, 4 over the rate),
 * 127.0.0.1 from echod's other UDP port (2), from a reflector port (2) and from port 999
 * (2, where the bind is allowed). One recvmmsg reads them all; the first two sources
 * get exactly their first 4 back, in order, the others nothing, and each refusal is
 * counted under its reason. */
static void udp_batch_mixed_verdicts(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  "tcp = { listen = [ ]; };\n"
                  "udp = { listen = [ \"127.0.0.1:0\", \"127.0.0.2:0\" ];\n"
                  "  guard = { limit_loopback = true; rate = 1; burst = 4; }; };\n",
                  NULL);
    static struct source src[KINDS];
    static const unsigned counts[KINDS] = {
        [OK] = 4, [FLOOD] = 8, [OWN] = 2, [REFLECTOR] = 2, [LOW] = 2};
    bool is_open[KINDS];
    is_open[OK] = source_open(&src[OK], OK, "127.0.1.1", 0) == 0;
    is_open[FLOOD] = source_open(&src[FLOOD], FLOOD, "127.0.2.1", 0) == 0;
    is_open[OWN] = source_open(&src[OWN], OWN, "127.0.0.1", h_port_of(&echod.udp[1])) == 0;
    is_open[REFLECTOR] = free_reflector_port(&src[REFLECTOR], REFLECTOR) != 0;
    is_open[LOW] = source_open(&src[LOW], LOW, "127.0.0.1", 999) == 0;
    assert_true(is_open[OK] && is_open[FLOOD] && is_open[OWN] && is_open[REFLECTOR]);
    unsigned total = 0;
    echod_freeze();
    for (unsigned k = 0; k < 8; k++)
        for (int s = 0; s < KINDS; s++)
            if (is_open[s] && k < counts[s]) {
                source_send(&src[s]);
                total++;
            }
    echod_resume();
    expect_in_order(&src[OK], 0, 4, 0);
    expect_in_order(&src[FLOOD], 0, 4, SILENCE_MS);
    for (int s = OWN; s < KINDS; s++)
        if (is_open[s])
            h_expect_silence(src[s].fd, s == OWN ? SILENCE_MS : 0);
    h_echod_wait_stat(&echod, "udp_datagrams_out", 8, REPLY_MS);
    const char *names[] = {"udp_datagrams_in", "udp_datagrams_out", "udp_batches",
                           "udp_drop_rate",    "udp_drop_own_port", "udp_drop_reflector",
                           "udp_drop_port",    "udp_drop_address",  "udp_send_errors"};
    uint64_t v[9];
    STATS(names, v);
    h_note("mixed: %llu datagrams in %llu batch(es): %llu answered, drops rate %llu, own port "
           "%llu, reflector %llu, port %llu",
           (unsigned long long)v[0], (unsigned long long)v[2], (unsigned long long)v[1],
           (unsigned long long)v[3], (unsigned long long)v[4], (unsigned long long)v[5],
           (unsigned long long)v[6]);
    assert_int_equal(v[0], total);
    assert_int_equal(v[1], 8);
    assert_int_equal(v[2], 1); /* all in one batch */
    assert_int_equal(v[3], 4);
    assert_int_equal(v[4], 2);
    assert_int_equal(v[5], 2);
    assert_int_equal(v[6], is_open[LOW] ? 2 : 0);
    assert_int_equal(v[7] + v[8], 0);
}

/* A raw socket that sends UDP with a source port of 0 from 127.0.0.1, or -1 (with a
 * note) without CAP_NET_RAW. */
static int raw_udp_socket(void)
{
    int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_UDP);
    if (fd < 0) {
        h_note("no raw socket (%s): the refused-reply path is NOT tested", strerror(errno));
        return -1;
    }
    h_track_fd(fd);
    return fd;
}

/* Send a LEN-byte datagram from 127.0.0.1 port 0 to echod's first UDP listener. */
static void raw_send_from_port_0(int fd)
{
    uint8_t packet[sizeof(struct udphdr) + LEN];
    struct udphdr *udp = (struct udphdr *)packet;
    *udp = (struct udphdr){.uh_sport = 0,
                           .uh_dport = htons(h_port_of(&echod.udp[0])),
                           .uh_ulen = htons(sizeof(packet)),
                           .uh_sum = 0}; /* no checksum, as IPv4 allows */
    h_fill_random(packet + sizeof(*udp), LEN);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (sendto(fd, packet, sizeof(packet), 0, (struct sockaddr *)&to, sizeof(to)) !=
        (ssize_t)sizeof(packet))
        fail_msg("raw sendto: %s", strerror(errno));
}

/* With the guard off, a datagram from port 0 is answered, and the kernel refuses that
 * reply (EINVAL): one batch of 7, A0 A1 X A2 A3 X A4 (X from port 0, forged on a raw
 * socket), makes sendmmsg stop at each X. echod counts 2 send errors, and A still gets
 * A0 to A4, in order, in one batch. */
static void udp_batch_refused_reply(void **state)
{
    (void)state;
    h_echod_start(&echod,
                  "tcp = { listen = [ ]; };\n"
                  "udp = { listen = [ \"127.0.0.1:0\" ]; guard = { enabled = false; }; };\n",
                  NULL);
    int raw = raw_udp_socket();
    if (raw < 0)
        skip();
    static struct source a;
    a = (struct source){.fd = h_udp_connect(&echod.udp[0]), .number = 0};
    echod_freeze();
    source_send(&a);
    source_send(&a);
    raw_send_from_port_0(raw);
    source_send(&a);
    source_send(&a);
    raw_send_from_port_0(raw);
    source_send(&a);
    echod_resume();
    expect_in_order(&a, 0, 5, SILENCE_MS);
    h_echod_wait_stat(&echod, "udp_send_errors", 2, REPLY_MS);
    const char *names[] = {"udp_datagrams_in", "udp_datagrams_out", "udp_send_errors",
                           "udp_batches", "udp_bytes_out"};
    uint64_t v[5];
    STATS(names, v);
    h_note("refused replies: %llu in, %llu out, %llu send errors, %llu batch(es)",
           (unsigned long long)v[0], (unsigned long long)v[1], (unsigned long long)v[2],
           (unsigned long long)v[3]);
    assert_int_equal(v[0], 7);
    assert_int_equal(v[1], 5);
    assert_int_equal(v[2], 2);
    assert_int_equal(v[3], 1);
    assert_int_equal(v[4], 5 * LEN);
}

int main(void)
{
    h_init("test_udp_batch", 120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(udp_batch_burst_in_order, h_teardown),
        cmocka_unit_test_teardown(udp_batch_mixed_verdicts, h_teardown),
        cmocka_unit_test_teardown(udp_batch_refused_reply, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
