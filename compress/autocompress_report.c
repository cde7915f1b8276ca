/*
 * autocompress_report.c: report.html of `condenser autocompress` (autocompress_files.h).
 *
 * One XHTML page (it parses as XML as well as HTML): a summary, three inline SVG scatter plots
 * of validation accuracy against artifact bytes, predicted latency and measured latency (one dot
 * per result, green when it meets the budget, the Pareto front as a line, the chosen result
 * ringed in red, dashed lines at the budget), and a table of every result with its recipe,
 * bottleneck figures (weight bytes, peak activation bytes, MACs, latencies) and the per-layer
 * SNR of its quantized weights' outputs. Every string is escaped.
 */
#include "autocompress_files.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void s_pf(cnd_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_pf(cnd_buf_t *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    cnd_buf_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

void cnd_autoc_html_escape(cnd_buf_t *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': cnd_buf_put(out, "&amp;", 5); break;
        case '<': cnd_buf_put(out, "&lt;", 4); break;
        case '>': cnd_buf_put(out, "&gt;", 4); break;
        case '"': cnd_buf_put(out, "&quot;", 6); break;
        case '\'': cnd_buf_put(out, "&#39;", 5); break;
        default:
            /* control characters are not allowed in XML 1.0 */
            if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t')
                cnd_buf_put(out, "?", 1);
            else
                cnd_buf_put(out, s, 1);
        }
    }
}

static void s_recipe(char *out, size_t n, const cnd_autoc_result_t *r)
{
    char wt[32], bt[CND_AUTOC_MAX_LAYERS * 2 + 8];
    cnd_autoc_width_text(wt, sizeof wt, r);
    cnd_autoc_bits_text(bt, sizeof bt, r);
    snprintf(out, n, "#%d rung %d: %s, %s, T %g, alpha %g, QAT %d, %d epochs on %ld", r->cand,
             r->rung, wt, bt, r->T, r->alpha, r->qat, r->epochs, r->subset);
}

typedef struct {
    const char *title, *xlabel;
    double budget; /* x budget line, 0 = none */
} s_plot_t;

/* One scatter plot of acc[i] against x[i] (x < 0: not drawn). */
static void s_plot(cnd_buf_t *b, const s_plot_t *pl, const cnd_autoc_report_t *rep,
                   const cnd_autoc_result_t *r, int n, const double *x)
{
    const double W = 460, H = 300, L = 60, R = 20, T = 30, B = 45;
    double x0 = 1e300, x1 = -1e300, y0 = 1, y1 = 0;
    int drawn = 0;
    for (int i = 0; i < n; i++) {
        if (x[i] < 0) continue;
        drawn++;
        x0 = fmin(x0, x[i]), x1 = fmax(x1, x[i]);
        y0 = fmin(y0, r[i].val_acc), y1 = fmax(y1, r[i].val_acc);
    }
    if (pl->budget > 0) x0 = fmin(x0, pl->budget), x1 = fmax(x1, pl->budget);
    s_pf(b,
         "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
         "viewBox=\"0 0 %.0f %.0f\" role=\"img\">\n",
         W, H, W, H);
    s_pf(b, "<text x=\"%.0f\" y=\"18\" font-size=\"14\" text-anchor=\"middle\">", W / 2);
    cnd_autoc_html_escape(b, pl->title);
    s_pf(b,
         "</text>\n<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
         "stroke=\"#888\"/>\n",
         L, T, W - L - R, H - T - B);
    if (!drawn) {
        s_pf(b,
             "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">no result has this figure"
             "</text></svg></figure>\n",
             W / 2, H / 2);
        return;
    }
    if (x1 <= x0) x0 *= 0.9, x1 = x1 * 1.1 + 1e-9;
    if (y1 <= y0) y0 -= 0.01, y1 += 0.01;
    double dx = (x1 - x0) * 0.05, dy = (y1 - y0) * 0.05;
    x0 -= dx, x1 += dx, y0 -= dy, y1 += dy;
#define PX(v) (L + ((v)-x0) / (x1 - x0) * (W - L - R))
#define PY(v) (H - B - ((v)-y0) / (y1 - y0) * (H - T - B))
    s_pf(b, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\">%.4g</text>\n", L, H - B + 14, x0);
    s_pf(b, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"end\">%.4g</text>\n", W - R,
         H - B + 14, x1);
    s_pf(b, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\" text-anchor=\"middle\">", (L + W - R) / 2,
         H - 8);
    cnd_autoc_html_escape(b, pl->xlabel);
    s_pf(b, "</text>\n<text x=\"4\" y=\"%.0f\" font-size=\"11\">%.4f</text>\n", H - B, y0);
    s_pf(b, "<text x=\"4\" y=\"%.0f\" font-size=\"11\">%.4f</text>\n", T + 10, y1);
    s_pf(b, "<text x=\"4\" y=\"%.0f\" font-size=\"11\">val acc</text>\n", (H - B + T) / 2);
    if (pl->budget > 0)
        s_pf(b,
             "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#c60\" "
             "stroke-dasharray=\"4 3\"/>\n",
             PX(pl->budget), T, PX(pl->budget), H - B);
    if (rep->teacher_acc >= 0 && rep->budget->max_drop >= 0) {
        double ya = rep->teacher_acc - rep->budget->max_drop / 100.0;
        if (ya > y0 && ya < y1)
            s_pf(b,
                 "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#c60\" "
                 "stroke-dasharray=\"4 3\"/>\n",
                 L, PY(ya), W - R, PY(ya));
    }
    double *acc = malloc((size_t)n * sizeof *acc);
    uint8_t *front = malloc((size_t)n);
    int *ord = malloc((size_t)n * sizeof *ord);
    if (acc && front && ord) {
        for (int i = 0; i < n; i++) acc[i] = r[i].val_acc;
        cnd_autoc_pareto(front, acc, x, n);
        int k = 0;
        for (int i = 0; i < n; i++)
            if (front[i]) ord[k++] = i;
        for (int i = 1; i < k; i++) /* insertion sort by cost */
            for (int j = i; j > 0 && x[ord[j]] < x[ord[j - 1]]; j--) {
                int t = ord[j];
                ord[j] = ord[j - 1], ord[j - 1] = t;
            }
        s_pf(b, "<polyline fill=\"none\" stroke=\"#36c\" points=\"");
        for (int i = 0; i < k; i++) s_pf(b, "%.1f,%.1f ", PX(x[ord[i]]), PY(r[ord[i]].val_acc));
        s_pf(b, "\"/>\n");
    }
    for (int i = 0; i < n; i++) {
        if (x[i] < 0) continue;
        cnd_autoc_point_t p = cnd_autoc_point(&r[i]);
        int ok = cnd_autoc_violation(rep->budget, rep->teacher_acc, &p) == 0;
        char rec[384];
        s_recipe(rec, sizeof rec, &r[i]);
        s_pf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"><title>", PX(x[i]),
             PY(r[i].val_acc), ok ? "#2a2" : "#999");
        cnd_autoc_html_escape(b, rec);
        s_pf(b, "</title></circle>\n");
        if (i == rep->chosen)
            s_pf(b,
                 "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"8\" fill=\"none\" stroke=\"#d00\" "
                 "stroke-width=\"2\"/>\n",
                 PX(x[i]), PY(r[i].val_acc));
    }
#undef PX
#undef PY
    free(acc);
    free(front);
    free(ord);
    s_pf(b, "</svg></figure>\n");
}

static void s_num(cnd_buf_t *b, double v, const char *fmt)
{
    if (v < 0)
        s_pf(b, "<td>-</td>");
    else {
        s_pf(b, "<td>");
        s_pf(b, fmt, v);
        s_pf(b, "</td>");
    }
}

static void s_table(cnd_buf_t *b, const cnd_autoc_report_t *rep, const cnd_autoc_result_t *r, int n)
{
    s_pf(b, "<table>\n<tr><th>#</th><th>rung</th><th>recipe</th><th>architecture</th>"
            "<th>val acc</th><th>.cndq bytes</th><th>weight bytes</th><th>peak activation "
            "bytes</th><th>MACs</th><th>predicted us</th><th>measured us</th><th>seconds</th>"
            "<th>per-layer SNR dB</th></tr>\n");
    for (int i = 0; i < n; i++) {
        const cnd_autoc_result_t *x = &r[i];
        cnd_autoc_point_t p = cnd_autoc_point(x);
        int ok = cnd_autoc_violation(rep->budget, rep->teacher_acc, &p) == 0;
        s_pf(b, "<tr class=\"%s%s\"><td>%d</td><td>%d</td>", ok ? "ok" : "miss",
             i == rep->chosen ? " chosen" : "", x->cand, x->rung);
        char wt[32], bt[CND_AUTOC_MAX_LAYERS * 2 + 8];
        cnd_autoc_width_text(wt, sizeof wt, x);
        cnd_autoc_bits_text(bt, sizeof bt, x);
        s_pf(b, "<td>%s, %s, T %g, alpha %g, QAT %d; %d epochs on %ld</td><td><code>", wt, bt, x->T,
             x->alpha, x->qat, x->epochs, x->subset);
        cnd_autoc_html_escape(b, x->spec);
        s_pf(b, "</code></td>");
        s_num(b, x->val_acc, "%.4f");
        s_num(b, x->bytes, "%.0f");
        s_num(b, x->weight_bytes, "%.0f");
        s_num(b, x->act_bytes, "%.0f");
        s_num(b, x->macs, "%.0f");
        s_num(b, x->pred_us, "%.1f");
        s_num(b, x->meas_us, "%.1f");
        s_num(b, x->seconds, "%.1f");
        s_pf(b, "<td>");
        for (int k = 0; k < x->n_layers; k++) {
            if (k) s_pf(b, "; ");
            cnd_autoc_html_escape(b, x->layer[k]);
            if (isfinite(x->snr_db[k]))
                s_pf(b, " %.1f", x->snr_db[k]);
            else
                s_pf(b, " exact");
        }
        s_pf(b, "</td></tr>\n");
    }
    s_pf(b, "</table>\n");
}

void cnd_autoc_report_html(cnd_buf_t *b, const cnd_autoc_report_t *rep, const cnd_autoc_result_t *r,
                           int n)
{
    s_pf(b, "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>"
            "<meta charset=\"utf-8\"/><title>condenser autocompress report</title>\n<style>"
            "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ccc;padding:2px 4px}tr.chosen{background:#fee}"
            "tr.ok td:first-child{color:#080}figure{display:inline-block;margin:4px}</style>"
            "</head>\n<body>\n<h1>condenser autocompress</h1>\n<p>model <code>");
    cnd_autoc_html_escape(b, rep->model);
    s_pf(b, "</code>, data <code>");
    cnd_autoc_html_escape(b, rep->data);
    s_pf(b, "</code>, budget <code>");
    cnd_autoc_html_escape(b, rep->budget_text);
    s_pf(b, "</code>.</p>\n<p>");
    if (rep->teacher_acc >= 0)
        s_pf(b, "Teacher (float): validation accuracy %.4f, %.0f bytes. ", rep->teacher_acc,
             rep->teacher_bytes);
    s_pf(b, "%d results. ", n);
    if (rep->chosen >= 0) {
        char rec[384];
        s_recipe(rec, sizeof rec, &r[rep->chosen]);
        s_pf(b, "Chosen (ringed in red): ");
        cnd_autoc_html_escape(b, rec);
        s_pf(b, ", validation accuracy %.4f, %.0f bytes; %s.", r[rep->chosen].val_acc,
             r[rep->chosen].bytes,
             rep->met ? "it meets the budget" : "NO result meets the budget: this is the closest");
        if (rep->test_acc >= 0)
            s_pf(b, " Test accuracy of the chosen artifact: %.4f.", rep->test_acc);
    }
    s_pf(b, "</p>\n");
    if (rep->sched) {
        s_pf(b, "<p>Successive halving:");
        for (int k = 0; k < rep->sched->n_rungs; k++)
            s_pf(b, " rung %d: %d candidates, %d epochs on %ld samples%s", k, rep->sched->keep[k],
                 rep->sched->epochs[k], rep->sched->subset[k],
                 k + 1 < rep->sched->n_rungs ? ";" : ".");
        s_pf(b, "</p>\n");
    }
    double *x = malloc((n ? (size_t)n : 1) * sizeof *x);
    if (!x) {
        b->err = CND_ENOMEM;
        return;
    }
    const s_plot_t plots[3] = {
        {"accuracy vs artifact size", ".cndq bytes", rep->budget->size_bytes},
        {"accuracy vs predicted latency", "predicted us (cost model)", rep->budget->latency_us},
        {"accuracy vs measured latency", "measured us (integer runtime)", rep->budget->latency_us}};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < n; i++)
            x[i] = k == 0 ? r[i].bytes : k == 1 ? r[i].pred_us : r[i].meas_us;
        s_plot(b, &plots[k], rep, r, n, x);
    }
    free(x);
    s_pf(b, "<p>Green: meets the budget; grey: misses it; blue line: Pareto front; dashed: the "
            "budget. Latency is measured for the last two rungs (the finalists) and the chosen "
            "result.</p>\n");
    s_table(b, rep, r, n);
    s_pf(b, "</body>\n</html>\n");
}
