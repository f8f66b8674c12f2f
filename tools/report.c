/* report: echod-bench's output formats. The name=value line and the JSON object are
 * interfaces that scripts read: their fields keep their names, and new ones are added
 * at the end. Runs on echod-bench's main thread; owns nothing. */
#include "config.h"

#include "report.h"

#include <inttypes.h>
#include <string.h>

void report_derive(struct report_figures *f, unsigned long size_bytes)
{
    double seconds = f->seconds > 0 ? f->seconds : 1e-6;
    f->msgs_per_s = (double)f->msgs / seconds;
    f->mib_per_s = f->msgs_per_s * (double)size_bytes / (1024.0 * 1024.0);
    f->connects_per_s = (double)f->connects / seconds;
    uint64_t resolved = f->msgs + f->lost;
    f->loss_percent = resolved > 0 ? 100.0 * (double)f->lost / (double)resolved : 0.0;
}

void report_human(FILE *out, const struct report_run *run, const struct report_figures *f)
{
    bool is_churn = strcmp(run->mode, "churn") == 0;
    fprintf(out, "%s: %s %s, %lu connections on %lu thread%s, %lu-byte messages, pipeline %lu, ",
            run->tool, run->proto, run->target, run->conns, run->threads,
            run->threads > 1 ? "s" : "", run->size_bytes, run->pipeline);
    if (run->rate != 0)
        fprintf(out, "open loop at %lu msg/s\n", run->rate);
    else
        fprintf(out, "%s\n", is_churn ? "churn" : "closed loop");
    fprintf(out,
            "  messages    %" PRIu64 " echoed and verified in %.3f s (%" PRIu64 " lost, %" PRIu64
            " late, %" PRIu64 " reordered)\n",
            f->msgs, f->seconds, f->lost, f->late, f->reordered);
    fprintf(out, "  throughput  %.0f msg/s, %.2f MiB/s", f->msgs_per_s, f->mib_per_s);
    if (is_churn)
        fprintf(out, ", %.0f connections/s", f->connects_per_s);
    fprintf(out,
            "\n  latency     p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, "
            "p99.99 %.3f ms, max %.3f ms\n",
            f->p50_us / 1e3, f->p90_us / 1e3, f->p99_us / 1e3, f->p999_us / 1e3, f->p9999_us / 1e3,
            f->max_us / 1e3);
}

void report_line(FILE *out, const struct report_run *run, const struct report_figures *f)
{
    fprintf(out,
            "%s proto=%s target=%s conns=%lu size=%lu pipeline=%lu msgs=%" PRIu64 " lost=%" PRIu64
            " late=%" PRIu64 " seconds=%.3f msgs_per_s=%.0f mib_per_s=%.2f p50_us=%" PRIu64
            " p90_us=%" PRIu64 " p99_us=%" PRIu64 " max_us=%" PRIu64 " mode=%s threads=%lu"
            " rate=%lu p999_us=%" PRIu64 " p9999_us=%" PRIu64 " reordered=%" PRIu64
            " connects=%" PRIu64 " connects_per_s=%.0f\n",
            run->tool, run->proto, run->target, run->conns, run->size_bytes, run->pipeline, f->msgs,
            f->lost, f->late, f->seconds, f->msgs_per_s, f->mib_per_s, f->p50_us, f->p90_us,
            f->p99_us, f->max_us, run->mode, run->threads, run->rate, f->p999_us, f->p9999_us,
            f->reordered, f->connects, f->connects_per_s);
}

/* text as a JSON string: quotes, backslashes and control bytes escaped. */
static void report_json_string(FILE *out, const char *text)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

void report_json(FILE *out, const struct report_run *run, const struct report_figures *f)
{
    fprintf(out, "{\"proto\":");
    report_json_string(out, run->proto);
    fprintf(out, ",\"target\":");
    report_json_string(out, run->target);
    fprintf(out, ",\"mode\":");
    report_json_string(out, run->mode);
    fprintf(out,
            ",\"threads\":%lu,\"connections\":%lu,\"size\":%lu,\"pipeline\":%lu,\"rate\":%lu,"
            "\"connect_rate\":%lu,\"seconds\":%.6f,\"msgs\":%" PRIu64
            ",\"msgs_per_s\":%.1f,\"mib_per_s\":%.3f,\"connects\":%" PRIu64
            ",\"connects_per_s\":%.1f,\"lost\":%" PRIu64 ",\"late\":%" PRIu64
            ",\"reordered\":%" PRIu64 ",\"loss_percent\":%.4f,\"max_loss_percent\":%g,"
            "\"latency_us\":{\"p50\":%" PRIu64 ",\"p90\":%" PRIu64 ",\"p99\":%" PRIu64
            ",\"p99_9\":%" PRIu64 ",\"p99_99\":%" PRIu64 ",\"max\":%" PRIu64
            ",\"mean\":%.1f,\"count\":%" PRIu64 "}}\n",
            run->threads, run->conns, run->size_bytes, run->pipeline, run->rate, run->connect_rate,
            f->seconds, f->msgs, f->msgs_per_s, f->mib_per_s, f->connects, f->connects_per_s,
            f->lost, f->late, f->reordered, f->loss_percent, run->max_loss_percent, f->p50_us,
            f->p90_us, f->p99_us, f->p999_us, f->p9999_us, f->max_us, f->mean_us, f->count);
}

void report_progress(FILE *out, const struct report_run *run, double elapsed_s, double msgs_per_s,
                     uint64_t errors, uint64_t p99_us, bool is_churn, uint64_t connects)
{
    fprintf(out, "%s: %5.0f s  %10.0f msg/s  %8" PRIu64 " errors  p99 %.3f ms", run->tool,
            elapsed_s, msgs_per_s, errors, p99_us / 1e3);
    if (is_churn)
        fprintf(out, "  %" PRIu64 " connections", connects);
    fputc('\n', out);
}
