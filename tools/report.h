/* report: what echod-bench prints: the block for people, the stable name=value summary
 * line, the JSON object (README lists its fields) and the progress line. Pure formatting
 * onto a stream; the main thread of echod-bench. */
#ifndef ECHOD_REPORT_H
#define ECHOD_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* What was run, as the options gave it. */
struct report_run {
    const char *tool;   /* "echod-bench" */
    const char *proto;  /* "tcp" or "udp" */
    const char *target; /* "HOST:PORT" */
    const char *mode;   /* "closed", "open" or "churn" */
    unsigned long threads, conns, size_bytes, pipeline;
    unsigned long rate;         /* -R; 0 in closed loop */
    unsigned long connect_rate; /* --connect-rate; 0: at once */
    double max_loss_percent;    /* --max-loss */
};

/* What was measured. report_derive fills the rates from the counts. */
struct report_figures {
    double seconds;
    uint64_t msgs, lost, late, reordered, connects;
    double msgs_per_s, mib_per_s, connects_per_s, loss_percent;
    uint64_t p50_us, p90_us, p99_us, p999_us, p9999_us, max_us, count;
    double mean_us;
};

/* Fill f's per-second rates and loss_percent from its counts and seconds. */
void report_derive(struct report_figures *f, unsigned long size_bytes);
/* The block for people: the run, messages, throughput, latency percentiles. */
void report_human(FILE *out, const struct report_run *run, const struct report_figures *f);
/* The one name=value summary line; new fields only ever go at its end. */
void report_line(FILE *out, const struct report_run *run, const struct report_figures *f);
/* The summary as one JSON object on one line. */
void report_json(FILE *out, const struct report_run *run, const struct report_figures *f);
/* One progress line: seconds since the start, the last second's rate, the errors and
 * p99 so far, and (churn: is_churn) the connections made. */
void report_progress(FILE *out, const struct report_run *run, double elapsed_s, double msgs_per_s,
                     uint64_t errors, uint64_t p99_us, bool is_churn, uint64_t connects);

#endif
