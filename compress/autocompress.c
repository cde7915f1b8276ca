/*
 * autocompress.c: budgets, the successive-halving schedule, ranking and the Pareto front of
 * `condenser autocompress` (autocompress.h). No I/O: the command (cmd_autocompress.c) trains,
 * quantizes and measures; this file decides.
 */
#include "autocompress.h"

#include "latency.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Splits "12.5KB" into a finite number >= 0 and its unit; CND_EINVAL naming `key` otherwise. */
static int s_number(const char *v, size_t len, double *x, char *unit, size_t un, const char *key)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf)
        return cnd_errf(CND_EINVAL, "budget %s: expected a number with a unit, got '%.*s'", key,
                        (int)(len < 40 ? len : 40), v);
    memcpy(buf, v, len);
    buf[len] = 0;
    char *end;
    errno = 0;
    *x = strtod(buf, &end);
    if (end == buf || errno || !isfinite(*x) || *x < 0 || buf[0] == '-' || buf[0] == '+' ||
        isspace((unsigned char)buf[0]))
        return cnd_errf(CND_EINVAL, "budget %s: '%s' does not start with a number >= 0", key, buf);
    if (strlen(end) >= un) return cnd_errf(CND_EINVAL, "budget %s: unknown unit '%s'", key, end);
    strcpy(unit, end);
    return 0;
}

static int s_size(cnd_autoc_budget_t *b, const char *v, size_t len)
{
    static const struct {
        const char *u;
        double f;
    } units[] = {{"", 1}, {"B", 1}, {"KB", 1e3}, {"KiB", 1024}, {"MB", 1e6}, {"MiB", 1048576}};
    double x = 0;
    char u[16];
    int rc = s_number(v, len, &x, u, sizeof u, "size");
    if (rc) return rc;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(u, units[i].u)) {
            b->size_bytes = x * units[i].f;
            if (b->size_bytes < 1) return cnd_errf(CND_EINVAL, "budget size: must be >= 1 byte");
            return 0;
        }
    return cnd_errf(CND_EINVAL, "budget size: unknown unit '%s' (B, KB, KiB, MB, MiB)", u);
}

static int s_latency(cnd_autoc_budget_t *b, const char *v, size_t len)
{
    const char *at = memchr(v, '@', len);
    size_t nl = at ? (size_t)(at - v) : len;
    snprintf(b->device, sizeof b->device, "x86");
    if (at) {
        size_t dl = len - nl - 1;
        char dev[32];
        snprintf(dev, sizeof dev, "%.*s", (int)(dl < 31 ? dl : 31), at + 1);
        if (dl == 0 || dl >= sizeof b->device || !cnd_latency_builtin(dev))
            return cnd_errf(CND_EINVAL,
                            "budget latency: no latency model for device class '%s' (classes "
                            "with one: x86)",
                            dev);
        memcpy(b->device, dev, dl + 1); /* dl < sizeof b->device, checked above */
    }
    double x = 0;
    char u[16];
    int rc = s_number(v, nl, &x, u, sizeof u, "latency");
    if (rc) return rc;
    double f = !strcmp(u, "us") ? 1 : !strcmp(u, "ms") ? 1e3 : !strcmp(u, "s") ? 1e6 : -1;
    if (f < 0) return cnd_errf(CND_EINVAL, "budget latency: unknown unit '%s' (us, ms or s)", u);
    b->latency_us = x * f;
    if (b->latency_us <= 0) return cnd_errf(CND_EINVAL, "budget latency: must be > 0");
    return 0;
}

int cnd_autoc_budget_parse(cnd_autoc_budget_t *b, const char *s)
{
    memset(b, 0, sizeof *b);
    b->max_drop = -1;
    snprintf(b->device, sizeof b->device, "x86");
    int seen[3] = {0, 0, 0};
    const char *p = s;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (!eq)
            return cnd_errf(CND_EINVAL,
                            "budget: '%.*s' is not KEY=VALUE (keys: size, latency, "
                            "max-drop)",
                            (int)(len < 40 ? len : 40), p);
        size_t kl = (size_t)(eq - p), vl = len - kl - 1;
        int k = kl == 4 && !strncmp(p, "size", 4)       ? 0
                : kl == 7 && !strncmp(p, "latency", 7)  ? 1
                : kl == 8 && !strncmp(p, "max-drop", 8) ? 2
                                                        : -1;
        if (k < 0)
            return cnd_errf(CND_EINVAL,
                            "budget: unknown key '%.*s' (keys: size, latency, "
                            "max-drop)",
                            (int)(kl < 40 ? kl : 40), p);
        if (seen[k]++) return cnd_errf(CND_EINVAL, "budget: key '%.*s' given twice", (int)kl, p);
        int rc;
        if (k == 0)
            rc = s_size(b, eq + 1, vl);
        else if (k == 1)
            rc = s_latency(b, eq + 1, vl);
        else {
            char u[8];
            rc = s_number(eq + 1, vl, &b->max_drop, u, sizeof u, "max-drop");
            if (!rc && u[0])
                rc = cnd_errf(CND_EINVAL,
                              "budget max-drop: '%s' after the number: give accuracy "
                              "points as a plain number (1.0 = 0.01 accuracy)",
                              u);
        }
        if (rc) return rc;
        if (!comma) break;
        p = comma + 1;
        if (!*p) return cnd_errf(CND_EINVAL, "budget: ends with ','");
    }
    return 0;
}

void cnd_autoc_budget_format(const cnd_autoc_budget_t *b, char *out, size_t n)
{
    size_t k = 0;
    out[0] = 0;
    if (b->size_bytes > 0)
        k += (size_t)snprintf(out + k, k < n ? n - k : 0, "size=%.0fB,", b->size_bytes);
    if (b->latency_us > 0 && k < n)
        k += (size_t)snprintf(out + k, n - k, "latency=%gus@%s,", b->latency_us, b->device);
    if (b->max_drop >= 0 && k < n)
        k += (size_t)snprintf(out + k, n - k, "max-drop=%g,", b->max_drop);
    if (k == 0)
        snprintf(out, n, "none");
    else if (k <= n)
        out[k - 1] = 0;
}

int cnd_autoc_parse_duration(const char *s, double *seconds)
{
    double total = 0;
    const char *p = s;
    if (!*p) return cnd_errf(CND_EINVAL, "--time: empty duration");
    while (*p) {
        if (!isdigit((unsigned char)*p) && *p != '.')
            return cnd_errf(CND_EINVAL, "--time %s: expected a number then h, m or s", s);
        char *end;
        double x = strtod(p, &end);
        if (end == p || !isfinite(x))
            return cnd_errf(CND_EINVAL, "--time %s: expected a number then h, m or s", s);
        double f = *end == 'h' ? 3600 : *end == 'm' ? 60 : 1;
        if (*end == 'h' || *end == 'm' || *end == 's')
            end++;
        else if (*end)
            return cnd_errf(CND_EINVAL, "--time %s: unknown unit '%c' (h, m or s)", s, *end);
        total += x * f;
        p = end;
    }
    if (!(total > 0) || total > 1e7)
        return cnd_errf(CND_EINVAL, "--time %s: must be more than 0 and at most 1e7 seconds", s);
    *seconds = total;
    return 0;
}

int cnd_autoc_schedule(cnd_autoc_sched_t *s, int n_cand, int eta, int min_epochs, int max_epochs,
                       long min_subset, long n_train)
{
    if (n_cand < 1 || eta < 2 || min_epochs < 1 || max_epochs < min_epochs || min_subset < 1 ||
        n_train < 1)
        return cnd_errf(CND_EINVAL,
                        "successive halving: %d candidates, eta %d, epochs %d..%d, "
                        "subset %ld of %ld: out of range",
                        n_cand, eta, min_epochs, max_epochs, min_subset, n_train);
    memset(s, 0, sizeof *s);
    long keep = n_cand, ep = min_epochs, sub = min_subset < n_train ? min_subset : n_train;
    for (int r = 0; r < CND_AUTOC_MAX_RUNGS; r++) {
        s->keep[r] = (int)keep;
        s->epochs[r] = (int)ep;
        s->subset[r] = sub;
        s->n_rungs = r + 1;
        if (keep == 1 || (ep == max_epochs && sub == n_train)) break;
        keep = (keep + eta - 1) / eta;
        ep = ep * eta > max_epochs ? max_epochs : ep * eta;
        sub = sub > n_train / eta ? n_train : sub * eta;
    }
    return 0;
}

double cnd_autoc_violation(const cnd_autoc_budget_t *b, double teacher_acc,
                           const cnd_autoc_point_t *p)
{
    double v = 0;
    if (b->size_bytes > 0 && p->bytes > b->size_bytes) v += p->bytes / b->size_bytes - 1;
    if (b->latency_us > 0) {
        if (p->latency_us < 0)
            v += 1;
        else if (p->latency_us > b->latency_us)
            v += p->latency_us / b->latency_us - 1;
    }
    if (b->max_drop >= 0) {
        double drop = 100.0 * (teacher_acc - p->acc);
        if (drop > b->max_drop) v += (drop - b->max_drop) / 100.0;
    }
    return v;
}

int cnd_autoc_better(const cnd_autoc_budget_t *b, double teacher_acc, const cnd_autoc_point_t *a,
                     int ia, const cnd_autoc_point_t *bp, int ib)
{
    double va = cnd_autoc_violation(b, teacher_acc, a);
    double vb = cnd_autoc_violation(b, teacher_acc, bp);
    if ((va == 0) != (vb == 0)) return va == 0;
    if (va > 0 && va != vb) return va < vb;
    if (a->acc != bp->acc) return a->acc > bp->acc;
    if (a->bytes != bp->bytes) return a->bytes < bp->bytes;
    return ia < ib;
}

int cnd_autoc_choose(const cnd_autoc_budget_t *b, double teacher_acc, const cnd_autoc_point_t *p,
                     int n)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (best < 0 || cnd_autoc_better(b, teacher_acc, &p[i], i, &p[best], best)) best = i;
    return best;
}

void cnd_autoc_pareto(uint8_t *front, const double *acc, const double *cost, int n)
{
    for (int i = 0; i < n; i++) {
        front[i] = cost[i] >= 0;
        for (int j = 0; j < n && front[i]; j++) {
            if (j == i || cost[j] < 0) continue;
            if (acc[j] >= acc[i] && cost[j] <= cost[i] && (acc[j] > acc[i] || cost[j] < cost[i]))
                front[i] = 0;
        }
    }
}

int cnd_autoc_scale_spec(char *out, size_t n, const char *spec, double mult)
{
    if (!(mult > 0 && mult <= 16))
        return cnd_errf(CND_EINVAL, "width multiplier %g is not in (0, 16]", mult);
    if (strchr(spec, '@') || strstr(spec, "groups="))
        return cnd_errf(CND_EINVAL,
                        "--arch %s: only chain specs without grouped convolutions "
                        "can be scaled by a width multiplier",
                        spec);
    const char *last_dense = NULL;
    for (const char *p = strstr(spec, "dense("); p; p = strstr(p + 1, "dense(")) last_dense = p;
    size_t k = 0;
    const char *p = spec;
    while (*p) {
        const char *sp = strchr(p, ' ');
        size_t tl = sp ? (size_t)(sp - p) : strlen(p);
        const char *eq = memchr(p, '=', tl), *par = memchr(p, '(', tl);
        if (eq && (!par || eq < par))
            return cnd_errf(CND_EINVAL, "--arch %s: named nodes (graphs) cannot be scaled", spec);
        int conv = tl > 7 && !strncmp(p, "conv2d(", 7), dense = tl > 6 && !strncmp(p, "dense(", 6);
        if ((conv || dense) && p != last_dense) {
            const char *num = p + (conv ? 7 : 6);
            char *end;
            long c = strtol(num, &end, 10);
            if (end == num || c < 1 || (*end != ',' && *end != ')'))
                return cnd_errf(CND_EINVAL, "--arch: '%.*s' has no channel count", (int)tl, p);
            long sc = lround((double)c * mult);
            int w = snprintf(out + k, k < n ? n - k : 0, "%.*s%ld%.*s", (int)(num - p), p,
                             sc < 1 ? 1 : sc, (int)(tl - (size_t)(end - p)), end);
            if (w < 0) return CND_EINVAL;
            k += (size_t)w;
        } else {
            int w = snprintf(out + k, k < n ? n - k : 0, "%.*s", (int)tl, p);
            if (w < 0) return CND_EINVAL;
            k += (size_t)w;
        }
        if (sp) {
            if (k + 1 < n) out[k] = ' ', out[k + 1] = 0;
            k++;
        }
        p = sp ? sp + 1 : p + tl;
    }
    if (k >= n) return cnd_errf(CND_EINVAL, "--arch: the scaled spec is too long");
    return 0;
}
