/*
 * latency.c: the per-op latency cost model (see latency.h): features, fit, prediction, cost
 * files.
 */
#include "latency.h"
#include "latency_costs.h" /* generated at configure time from the latency_*.costs files */
#include "quant.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    F_ONE,
    F_LAYERS,
    F_AVG_IN,
    F_ELT,
    F_CONCAT,
    F_GCONV_MACS,
    F_GCONV_OUT, /* shared */
    X_CONV_VMACS,
    X_CONV_IN,
    X_CONV_OUT,
    X_CONV_PIX,
    X_DENSE_VMACS,
    X_DENSE_OUT,
    X_DW_VEC,
    X_DW_TAIL,
    X_DW_OUT,
    X_MAXPOOL_IN,
    X_ADD, /* x86 fast paths */
    R_CONV_MACS,
    R_CONV_PATCH,
    R_CONV_OUT,
    R_CONV_PIX,
    R_CONV_EDGE,
    R_CONV_BIG,
    R_DENSE_MACS,
    R_DENSE_BIG,
    R_DENSE_OUT,
    R_DW_MACS,
    R_DW_OUT,
    R_MAXPOOL_IN,
    R_ADD /* reference kernels */
};
_Static_assert(R_ADD + 1 == CND_LAT_NF, "feature table");

static const char *s_names[CND_LAT_NF] = {
    "one",          "layers",       "avg_in",      "elt",        "concat",       "gconv_macs",
    "gconv_out",    "x_conv_vmacs", "x_conv_in",   "x_conv_out", "x_conv_pix",   "x_dense_vmacs",
    "x_dense_out",  "x_dw_vec",     "x_dw_tail",   "x_dw_out",   "x_maxpool_in", "x_add",
    "r_conv_macs",  "r_conv_patch", "r_conv_out",  "r_conv_pix", "r_conv_edge",  "r_conv_big",
    "r_dense_macs", "r_dense_big",  "r_dense_out", "r_dw_macs",  "r_dw_out",     "r_maxpool_in",
    "r_add"};

static const char *s_kernel_names[2] = {"x86", "ref"};

const char *cnd_latency_feature_name(int k)
{
    return k >= 0 && k < CND_LAT_NF ? s_names[k] : "";
}

int cnd_latency_feature_used(int k, cnd_latency_kernels_t ks)
{
    if (k < 0 || k >= CND_LAT_NF) return 0;
    if (k < X_CONV_VMACS) return 1;
    return ks == CND_LAT_KERNELS_X86 ? k < R_CONV_MACS : k >= R_CONV_MACS;
}

static double s_ceil(double x, double unit)
{
    return ceil(x / unit) * unit;
}

/* Dense and conv weights beyond this many bytes do not stay in a 32 KiB L1 data cache (Cortex-A7's
 * and this host's) between calls: the reference kernel reads them from further away. */
#define S_L1_BYTES 32768.0

/* The only layer reading node j, or -1 (none or several). */
static int s_sole_reader(const cnd_model_t *m, int j)
{
    int r = -1;
    for (int i = j + 1; i < m->n_layers; i++)
        for (int t = 0; t < m->layers[i].n_src; t++)
            if (m->layers[i].src[t] == j) {
                if (r >= 0) return -1;
                r = i;
            }
    return r;
}

/* Values the reference conv gathers one at a time (cnd_rt_conv_patch): a kernel row of an output
 * pixel is one copy when it lies inside the input, else k single values (padding). */
static double s_edge_values(const cnd_layer_t *l)
{
    int k = l->p.conv.k, s = l->p.conv.stride, pad = l->p.conv.pad;
    double slow = 0;
    for (int oh = 0; oh < l->out.h; oh++) {
        int rows_out = 0; /* kernel rows above or below the input */
        for (int i = 0; i < k; i++) rows_out += oh * s - pad + i < 0 || oh * s - pad + i >= l->in.h;
        for (int ow = 0; ow < l->out.w; ow++) {
            int iw0 = ow * s - pad;
            slow += iw0 >= 0 && iw0 + k <= l->in.w ? rows_out : k;
        }
    }
    return slow * k;
}

/* conv2d layer i of folded model m whose integer output is node j (i, or its fused relu):
 * both kernel sets' features; returns the maxpool the x86 kernels fuse into it, or -1
 * (rt_run.c, cnd_rt_fuses: the next layer, reading only j, non-overlapping windows). */
static int s_conv(const cnd_model_t *m, int i, int j, double *f)
{
    // in is (C, H, W), out is (OC, OH, OW), kernel k x k
    const cnd_layer_t *l = &m->layers[i];
    double C = l->in.c, H = l->in.h, W = l->in.w, pad = l->p.conv.pad, k = l->p.conv.k;
    double OC = l->out.c, P = (double)l->out.h * l->out.w;
    f[R_CONV_MACS] += P * OC * k * k * C;
    f[R_CONV_PATCH] += P * k * k * C; /* the patch gathered per pixel */
    f[R_CONV_OUT] += P * OC;
    f[R_CONV_PIX] += P; /* a patch call and a loop over the output channels per pixel */
    f[R_CONV_EDGE] += s_edge_values(l);
    if (OC * k * k * C > S_L1_BYTES) f[R_CONV_BIG] += P * OC * k * k * C; /* as dense, below */
    int p = j + 1, fuse = -1;
    const cnd_layer_t *pl = p < m->n_layers ? &m->layers[p] : NULL;
    if (pl && pl->type == CND_L_MAXPOOL && pl->src[0] == j && pl->p.pool.stride >= pl->p.pool.k &&
        s_sole_reader(m, j) == p)
        fuse = p;
    double Pc = P, Po = P; /* pixels computed, outputs requantized */
    if (fuse >= 0) {
        Po = (double)pl->out.h * pl->out.w;
        Pc = Po * pl->p.pool.k * pl->p.pool.k;
    }
    /* blocks of 16 channels; per kernel row, groups of 4 input bytes (rt_internal.h, wpack) */
    f[X_CONV_VMACS] += Pc * s_ceil(OC, 16) * k * s_ceil(k * C, 4);
    double padded = (H + 2 * pad) * (W + 2 * pad) * C; /* cnd_rt_vnni_direct's rule */
    f[X_CONV_IN] += padded <= 4 * H * W * C + 4096 ? padded : Pc * k * k * C;
    f[X_CONV_OUT] += Po * OC;
    f[X_CONV_PIX] += Pc * ceil(OC / 64); /* every pass of 4 blocks walks all pixels */
    return fuse;
}

/* grouped or depthwise conv2d layer l */
static void s_gconv(const cnd_layer_t *l, double *f)
{
    double C = l->in.c, OC = l->out.c, G = l->p.conv.groups, k = l->p.conv.k;
    double P = (double)l->out.h * l->out.w;
    if (l->p.conv.groups == l->in.c && l->out.c == l->in.c) { /* depthwise: own kernels */
        f[X_DW_VEC] += P * k * k * floor(C / 8);              /* vectors of 8 channels per tap */
        f[X_DW_TAIL] += P * k * k * fmod(C, 8);               /* the rest one channel at a time */
        f[X_DW_OUT] += P * C;
        f[R_DW_MACS] += P * C * k * k;
        f[R_DW_OUT] += P * C;
    } else {
        f[F_GCONV_MACS] += P * OC * k * k * C / G;
        f[F_GCONV_OUT] += P * OC;
    }
}

/* One layer i of folded model m (output node j) into f; fused[i] marks a maxpool the x86
 * kernels run inside the conv before it. */
static void s_layer(const cnd_model_t *m, int i, int j, char *fused, double *f)
{
    const cnd_layer_t *l = &m->layers[i];
    double in = (double)cnd_shape_size(l->in), out = (double)cnd_shape_size(l->out);
    int fp;
    switch (l->type) {
    case CND_L_CONV2D:
        if ((fp = s_conv(m, i, j, f)) >= 0) fused[fp] = 1;
        break;
    case CND_L_GCONV: s_gconv(l, f); break;
    case CND_L_DENSE:
        f[X_DENSE_VMACS] += s_ceil(out, 4) * s_ceil(in, 64); /* rows of 64-byte chunks */
        f[X_DENSE_OUT] += out;
        f[R_DENSE_MACS] += out * in;
        if (out * in > S_L1_BYTES) f[R_DENSE_BIG] += out * in; /* weights come from L2/RAM */
        f[R_DENSE_OUT] += out;
        break;
    case CND_L_MAXPOOL:
        f[R_MAXPOOL_IN] += out * l->p.pool.k * l->p.pool.k;
        if (fused[i]) return; /* x86: no layer of its own */
        f[X_MAXPOOL_IN] += out * l->p.pool.k * l->p.pool.k;
        break;
    case CND_L_AVGPOOL: f[F_AVG_IN] += out * l->p.pool.k * l->p.pool.k; break;
    case CND_L_GAP: f[F_AVG_IN] += in; break;
    case CND_L_RELU:
    case CND_L_RELU6:
    case CND_L_HARDSWISH:
    case CND_L_TANH: f[F_ELT] += in; break;
    case CND_L_ADD:
        f[X_ADD] += out;
        f[R_ADD] += out;
        break;
    case CND_L_CONCAT: f[F_CONCAT] += out; break;
    default: return; /* flatten: no work */
    }
    f[F_LAYERS] += 1.0;
}

int cnd_latency_features(const cnd_model_t *m, double *f)
{
    cnd_model_t *fm = NULL;
    cnd_qplan_t *plan = malloc(sizeof *plan);
    char *fused = calloc((size_t)m->n_layers + 1, 1);
    int rc = plan && fused ? cnd_quant_fold_bn(&fm, m) : CND_ENOMEM;
    if (!rc) rc = cnd_quant_plan(plan, fm);
    if (!rc) {
        memset(f, 0, CND_LAT_NF * sizeof *f);
        f[F_ONE] = 1.0;
        for (int i = 0; i < fm->n_layers; i++) {
            int j = plan->fused_relu[i] ? i + 1 : i; /* the relu is the same integer layer */
            s_layer(fm, i, j, fused, f);
            i = j;
        }
    }
    cnd_model_destroy(&fm);
    free(plan);
    free(fused);
    return rc ? cnd_err_wrap(rc, "the latency model") : 0;
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
    int ntr = 0, nused = 0, active[CND_LAT_NF], *use = malloc((size_t)(n ? n : 1) * sizeof *use);
    double *err = malloc((size_t)(n ? n : 1) * sizeof *err);
    int rc = use && err ? 0 : CND_ENOMEM;
    for (int i = 0; !rc && i < n; i++) {
        if (!(y[i] > 0.0))
            rc = cnd_errf(CND_EINVAL, "measurement %d: latency %g is not > 0", i + 1, y[i]);
        use[i] = !heldout[i];
        ntr += use[i];
    }
    for (int k = 0; k < CND_LAT_NF; k++)
        nused += active[k] = cnd_latency_feature_used(k, c->kernels);
    if (!rc && ntr < nused)
        rc =
            cnd_errf(CND_EINVAL, "%d training measurements; the fit needs at least %d", ntr, nused);
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
                                "microseconds per unit of each feature\ndevice %s\nkernels %s\n",
                                c->device, s_kernel_names[c->kernels]);
    for (int k = 0; k < CND_LAT_NF && w < n; k++)
        if (cnd_latency_feature_used(k, c->kernels))
            w += (size_t)snprintf(out + w, n - w, "coef %s %.9g\n", s_names[k], c->coef[k]);
    if (w < n)
        snprintf(out + w, n - w, "heldout_median %.6f\nheldout_max %.6f\ntrain %d\nheldout %d\n",
                 c->heldout_median, c->heldout_max, c->n_train, c->n_heldout);
}

#define S_SEEN_DEVICE  ((uint64_t)1 << CND_LAT_NF)
#define S_SEEN_KERNELS ((uint64_t)1 << (CND_LAT_NF + 1))

/* One "key value..." line of a cost file into c; 0 or -1 when it is not understood. */
static int s_line(cnd_latency_model_t *c, const char *line, uint64_t *seen)
{
    char key[32], name[32], tail;
    double v;
    if (sscanf(line, "device %31s %c", c->device, &tail) == 1) return (*seen |= S_SEEN_DEVICE), 0;
    if (sscanf(line, "kernels %31s %c", name, &tail) == 1) {
        for (int k = 0; k < 2; k++)
            if (!strcmp(name, s_kernel_names[k]))
                return (*seen |= S_SEEN_KERNELS), c->kernels = (cnd_latency_kernels_t)k, 0;
        return -1;
    }
    if (sscanf(line, "coef %31s %lf %c", name, &v, &tail) == 2 && isfinite(v) && v >= 0) {
        for (int k = 0; k < CND_LAT_NF; k++)
            if (!strcmp(name, s_names[k])) return (*seen |= (uint64_t)1 << k), c->coef[k] = v, 0;
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
    uint64_t seen = 0;
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
    if (!(seen & S_SEEN_DEVICE) || !(seen & S_SEEN_KERNELS))
        return cnd_errf(CND_EINVAL, "%s lacks the device or kernels line", what);
    for (int k = 0; k < CND_LAT_NF; k++) {
        int has = (seen >> k) & 1, used = cnd_latency_feature_used(k, c->kernels);
        if (has != used)
            return cnd_errf(CND_EINVAL, "%s: coefficient %s %s for kernels %s", what, s_names[k],
                            used ? "is missing" : "is not a feature", s_kernel_names[c->kernels]);
    }
    return 0;
}

/* The compiled-in classes: name and cost file text (latency_costs.h). */
static const struct {
    const char *device, *text, *file;
} s_builtin[] = {{"x86", cnd_latency_x86_costs, "latency_x86.costs"},
                 {"arm-a7-qemu", cnd_latency_arm_a7_qemu_costs, "latency_arm-a7-qemu.costs"}};
#define S_NBUILTIN (int)(sizeof s_builtin / sizeof s_builtin[0])

const cnd_latency_model_t *cnd_latency_builtin(const char *device)
{
    static cnd_latency_model_t parsed[S_NBUILTIN];
    static int state[S_NBUILTIN]; /* 0 not yet, 1 ok, -1 bad */
    for (int i = 0; i < S_NBUILTIN; i++) {
        if (strcmp(device, s_builtin[i].device)) continue;
        if (!state[i])
            state[i] = cnd_latency_parse(&parsed[i], s_builtin[i].text, s_builtin[i].file) ||
                               strcmp(parsed[i].device, device)
                           ? -1
                           : 1;
        return state[i] > 0 ? &parsed[i] : NULL;
    }
    return NULL;
}

const char *cnd_latency_builtin_names(void)
{
    return "x86, arm-a7-qemu";
}
