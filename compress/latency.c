/*
 * latency.c: the per-op latency cost model (see latency.h): features, fit, prediction, cost
 * files.
 */
#include "latency.h"
#include "latency_costs.h" /* generated at configure time from latency_x86.costs */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_names[CND_LAT_NF] = {"one",        "ops",      "conv_macs",
                                          "conv_patch", "conv_out", "dense_macs",
                                          "dense_out",  "max_in",   "avg_in"};

const char *cnd_latency_feature_name(int k)
{
    return k >= 0 && k < CND_LAT_NF ? s_names[k] : "";
}

int cnd_latency_features(const cnd_model_t *m, double *f)
{
    int rc = cnd_model_refuse_graph(m, "the latency model (fitted on chains only)");
    if (rc) return rc;
    memset(f, 0, CND_LAT_NF * sizeof *f);
    f[0] = 1.0;
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        double in = (double)cnd_shape_size(l->in), out = (double)cnd_shape_size(l->out);
        double P = (double)l->out.h * l->out.w;
        switch (l->type) {
        case CND_L_CONV2D:
            f[2] += (double)cnd_layer_ops(l->type)->macs(l);
            f[3] += P * l->in.c * l->p.conv.k * l->p.conv.k;
            f[4] += out;
            break;
        case CND_L_DENSE:
            f[5] += (double)cnd_layer_ops(l->type)->macs(l);
            f[6] += out;
            break;
        case CND_L_MAXPOOL:
        case CND_L_TANH: f[7] += in; break;
        case CND_L_AVGPOOL: /* averages round: a division per output, slower than a max */
        case CND_L_GAP: f[8] += in; break;
        case CND_L_RELU:
            if (l->alias) continue; /* fused into the conv2d or dense before it */
            f[7] += in;
            break;
        default: continue; /* flatten: no work; batchnorm: folded */
        }
        f[1] += 1.0;
    }
    return 0;
}

double cnd_latency_predict(const cnd_latency_model_t *c, const double *f)
{
    double t = 0.0;
    for (int k = 0; k < CND_LAT_NF; k++) t += c->coef[k] * f[k];
    return t;
}

/* Solves the n x n system A x = b in place (partial pivoting). Returns 0, or -1 if singular. */
static int s_solve(double *A, double *b, int n)
{
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(A[r * n + c]) > fabs(A[p * n + c])) p = r;
        if (fabs(A[p * n + c]) < 1e-300) return -1;
        for (int k = 0; k < n; k++) {
            double t = A[c * n + k];
            A[c * n + k] = A[p * n + k];
            A[p * n + k] = t;
        }
        double t = b[c];
        b[c] = b[p];
        b[p] = t;
        for (int r = c + 1; r < n; r++) {
            double q = A[r * n + c] / A[c * n + c];
            for (int k = c; k < n; k++) A[r * n + k] -= q * A[c * n + k];
            b[r] -= q * b[c];
        }
    }
    for (int c = n - 1; c >= 0; c--) {
        for (int k = c + 1; k < n; k++) b[c] -= A[c * n + k] * b[k];
        b[c] /= A[c * n + c];
    }
    return 0;
}

/* Least squares of sum_i (sum_k x_k f[i][k] / y_i - 1)^2 over the active features, columns
 * scaled to unit maximum for conditioning. Writes x (0 for inactive). */
static int s_lsq(double *x, const double (*f)[CND_LAT_NF], const double *y, const int *use, int n,
                 const int *active)
{
    int idx[CND_LAT_NF], na = 0;
    double scale[CND_LAT_NF], A[CND_LAT_NF * CND_LAT_NF] = {0}, b[CND_LAT_NF] = {0};
    for (int k = 0; k < CND_LAT_NF; k++) {
        x[k] = 0.0;
        if (!active[k]) continue;
        scale[na] = 0.0;
        for (int i = 0; i < n; i++)
            if (use[i] && fabs(f[i][k] / y[i]) > scale[na]) scale[na] = fabs(f[i][k] / y[i]);
        if (scale[na] > 0.0) idx[na++] = k;
    }
    for (int i = 0; i < n; i++) {
        if (!use[i]) continue;
        double r[CND_LAT_NF];
        for (int a = 0; a < na; a++) r[a] = f[i][idx[a]] / y[i] / scale[a];
        for (int a = 0; a < na; a++) {
            b[a] += r[a];
            for (int c = 0; c < na; c++) A[a * na + c] += r[a] * r[c];
        }
    }
    for (int a = 0; a < na; a++) A[a * na + a] += 1e-10; /* a whisker of ridge */
    if (s_solve(A, b, na)) return -1;
    for (int a = 0; a < na; a++) x[idx[a]] = b[a] / scale[a];
    return 0;
}

static int s_cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int cnd_latency_fit(cnd_latency_model_t *c, const double (*f)[CND_LAT_NF], const double *y,
                    const int *heldout, int n)
{
    int ntr = 0, active[CND_LAT_NF], *use = malloc((size_t)(n ? n : 1) * sizeof *use);
    double *err = malloc((size_t)(n ? n : 1) * sizeof *err);
    int rc = use && err ? 0 : CND_ENOMEM;
    for (int i = 0; !rc && i < n; i++) {
        if (!(y[i] > 0.0))
            rc = cnd_errf(CND_EINVAL, "measurement %d: latency %g is not > 0", i + 1, y[i]);
        use[i] = !heldout[i];
        ntr += use[i];
    }
    if (!rc && ntr < CND_LAT_NF)
        rc = cnd_errf(CND_EINVAL, "%d training measurements; the fit needs at least %d", ntr,
                      CND_LAT_NF);
    for (int k = 0; k < CND_LAT_NF; k++) active[k] = 1;
    while (!rc) { /* non-negative: drop the most negative feature and refit */
        if (s_lsq(c->coef, f, y, use, n, active)) {
            rc = cnd_errf(CND_EINVAL, "the measurements do not determine the cost model");
            break;
        }
        int worst = -1;
        for (int k = 0; k < CND_LAT_NF; k++)
            if (c->coef[k] < 0.0 && (worst < 0 || c->coef[k] < c->coef[worst])) worst = k;
        if (worst < 0) break;
        active[worst] = 0;
    }
    int nh = 0;
    for (int i = 0; !rc && i < n; i++)
        if (heldout[i]) err[nh++] = fabs(cnd_latency_predict(c, f[i]) - y[i]) / y[i];
    if (!rc) {
        qsort(err, (size_t)nh, sizeof *err, s_cmpd);
        c->heldout_median = nh ? (nh % 2 ? err[nh / 2] : 0.5 * (err[nh / 2 - 1] + err[nh / 2])) : 0;
        c->heldout_max = nh ? err[nh - 1] : 0;
        c->n_train = ntr;
        c->n_heldout = nh;
    }
    free(use);
    free(err);
    return rc;
}

void cnd_latency_format(const cnd_latency_model_t *c, char *out, size_t n)
{
    size_t w = (size_t)snprintf(out, n,
                                "# condenser latency cost model (compress/latency.h): "
                                "microseconds per unit of each feature\ndevice %s\n",
                                c->device);
    for (int k = 0; k < CND_LAT_NF && w < n; k++)
        w += (size_t)snprintf(out + w, n - w, "coef %s %.9g\n", s_names[k], c->coef[k]);
    if (w < n)
        snprintf(out + w, n - w, "heldout_median %.6f\nheldout_max %.6f\ntrain %d\nheldout %d\n",
                 c->heldout_median, c->heldout_max, c->n_train, c->n_heldout);
}

/* One "key value..." line of a cost file into c; 0 or -1 when it is not understood. */
static int s_line(cnd_latency_model_t *c, const char *line, unsigned *seen)
{
    char key[32], name[32], tail;
    double v;
    if (sscanf(line, "device %31s %c", c->device, &tail) == 1)
        return (*seen |= 1u << CND_LAT_NF), 0;
    if (sscanf(line, "coef %31s %lf %c", name, &v, &tail) == 2 && isfinite(v) && v >= 0) {
        for (int k = 0; k < CND_LAT_NF; k++)
            if (!strcmp(name, s_names[k])) return (*seen |= 1u << k), c->coef[k] = v, 0;
        return -1;
    }
    int iv;
    if (sscanf(line, "%31s %lf %c", key, &v, &tail) != 2 || !isfinite(v) || v < 0) return -1;
    iv = v <= 1e9 ? (int)v : -1;
    if (!strcmp(key, "heldout_median"))
        c->heldout_median = v;
    else if (!strcmp(key, "heldout_max"))
        c->heldout_max = v;
    else if (!strcmp(key, "train") && iv == v)
        c->n_train = iv;
    else if (!strcmp(key, "heldout") && iv == v)
        c->n_heldout = iv;
    else
        return -1;
    return 0;
}

int cnd_latency_parse(cnd_latency_model_t *c, const char *text, const char *what)
{
    memset(c, 0, sizeof *c);
    unsigned seen = 0;
    int lineno = 0;
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char line[256];
        lineno++;
        if (len >= sizeof line) return cnd_errf(CND_EINVAL, "%s line %d is too long", what, lineno);
        memcpy(line, p, len);
        line[len] = 0;
        p += len + (e != NULL);
        if (!line[strspn(line, " \t\r")] || line[0] == '#') continue;
        if (s_line(c, line, &seen))
            return cnd_errf(CND_EINVAL, "%s line %d: not understood: %s", what, lineno, line);
    }
    if (seen != (1u << (CND_LAT_NF + 1)) - 1)
        return cnd_errf(CND_EINVAL, "%s lacks the device or a coefficient (%s ...)", what,
                        s_names[0]);
    return 0;
}

const cnd_latency_model_t *cnd_latency_builtin(const char *device)
{
    static cnd_latency_model_t x86;
    static int parsed; /* 1 ok, -1 bad */
    if (strcmp(device, "x86")) return NULL;
    if (!parsed)
        parsed = cnd_latency_parse(&x86, cnd_latency_x86_costs, "latency_x86.costs") ? -1 : 1;
    return parsed > 0 ? &x86 : NULL;
}
