/*
 * quant.c: the quantization arithmetic shared by PTQ, QAT and the artifact writer: scale and
 * zero point from a range, Q31 multipliers, fake quantization, per-channel weight scales,
 * batchnorm folding and the quantization plan (see quant.h for the scheme).
 */
#include "quant.h"
#include "cnd_rt_format.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cnd_quant_method_parse(const char *s, cnd_qmethod_t *out)
{
    if (!strcmp(s, "minmax"))
        *out = CND_QM_MINMAX;
    else if (!strcmp(s, "percentile"))
        *out = CND_QM_PERCENTILE;
    else if (!strcmp(s, "mse"))
        *out = CND_QM_MSE;
    else if (!strcmp(s, "auto"))
        *out = CND_QM_AUTO;
    else
        return cnd_errf(CND_EINVAL, "--method: '%s' is not auto, minmax, percentile or mse", s);
    return 0;
}

const char *cnd_quant_method_name(cnd_qmethod_t m)
{
    static const char *names[] = {"minmax", "percentile", "mse", "auto"};
    return (unsigned)m < 4 ? names[m] : "?";
}

void cnd_quant_params(float lo, float hi, float *scale, int32_t *zp)
{
    if (!(lo <= 0.0f)) lo = 0.0f; /* also catches NaN */
    if (!(hi >= 0.0f)) hi = 0.0f;
    float s = (hi - lo) / 255.0f;
    if (!(s >= 1e-8f)) s = 1e-8f;
    double z = -128.0 - (double)lo / s;
    long zr = lround(z);
    *scale = s;
    *zp = (int32_t)(zr < -128 ? -128 : zr > 127 ? 127 : zr);
}

void cnd_quant_multiplier(double real, int32_t *mult, int32_t *shift)
{
    if (!(real > 0.0)) {
        *mult = 0;
        *shift = 0;
        return;
    }
    int e;
    double f = frexp(real, &e); /* real = f * 2^e, f in [0.5, 1) */
    long long q = llround(f * 2147483648.0);
    if (q == 2147483648LL) {
        q /= 2;
        e++;
    }
    int n = -e;
    if (n > 31) { /* tiny multiplier: keep n = 31 and a smaller mantissa */
        q = llround(real * 4611686018427387904.0); /* real * 2^62 */
        n = 31;
    } else if (n < -31) {
        q = 2147483647LL;
        n = -31;
    }
    *mult = (int32_t)q;
    *shift = n;
}

void cnd_quant_fake(float *x, size_t n, float s, int32_t z, uint8_t *mask)
{
    float lo = (float)(-128 - z) * s, hi = (float)(127 - z) * s;
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (mask) mask[i] = v >= lo && v <= hi;
        x[i] = (float)(cnd_quant_q(v, s, z, -128, 127) - z) * s;
    }
}

static double s_row_err(const float *w, int cols, float s, int qmax)
{
    double e = 0.0;
    for (int j = 0; j < cols; j++) {
        float d = w[j] - (float)cnd_quant_q(w[j], s, 0, -qmax, qmax) * s;
        e += (double)d * d;
    }
    return e;
}

void cnd_quant_weight_scales(float *scales, const float *w, int rows, int cols, int qmax, int mse)
{
    for (int r = 0; r < rows; r++) {
        const float *row = w + (size_t)r * cols;
        float mx = 0.0f;
        for (int j = 0; j < cols; j++) mx = fmaxf(mx, fabsf(row[j]));
        if (mx == 0.0f) {
            scales[r] = 1.0f;
            continue;
        }
        float best = mx / (float)qmax;
        if (mse) {
            double berr = s_row_err(row, cols, best, qmax);
            for (int c = 1; c < 100; c++) {
                float s = mx * (1.0f - 0.007f * (float)c) / (float)qmax;
                double e = s_row_err(row, cols, s, qmax);
                if (e < berr) {
                    berr = e;
                    best = s;
                }
            }
        }
        scales[r] = best;
    }
}

/* Which node each batchnorm folds into: bnof[i] = the batchnorm reading node i, or -1. A
 * batchnorm must be the only reader of a dense or conv2d node (grouped or not). */
static int s_bn_targets(int *bnof, const cnd_model_t *m)
{
    int readers[CND_SPEC_MAX_LAYERS] = {0};
    for (int i = 0; i < m->n_layers; i++) {
        bnof[i] = -1;
        for (int j = 0; j < m->layers[i].n_src; j++)
            if (m->layers[i].src[j] >= 0) readers[m->layers[i].src[j]]++;
    }
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        if (l->type != CND_L_BATCHNORM) continue;
        int s = l->src[0];
        cnd_layer_type_t t = s >= 0 ? m->layers[s].type : CND_L_COUNT;
        if (s < 0 || (t != CND_L_DENSE && t != CND_L_CONV2D && t != CND_L_GCONV) || readers[s] != 1)
            return cnd_errf(CND_EINVAL,
                            "layer %d (batchnorm) does not read a dense or conv2d layer that only "
                            "it reads, so it cannot be folded for integer inference",
                            i + 1);
        bnof[s] = i;
    }
    return 0;
}

/* The folded model's spec: every node but the batchnorms, each written with explicit graph
 * notation (a node read from further on is named f<index>), reads of a batchnorm redirected to
 * the layer it folds into. newidx[i] receives node i's index in the folded model. */
static int s_fold_spec(char *spec, size_t cap, int *newidx, const cnd_model_t *m)
{
    int n = m->n_layers, k = 0, named[CND_SPEC_MAX_LAYERS] = {0};
    for (int i = 0; i < n; i++) {
        const cnd_layer_t *l = &m->layers[i];
        newidx[i] = l->type == CND_L_BATCHNORM ? newidx[l->src[0]] : k++;
        for (int j = 0; j < l->n_src; j++)
            if (l->src[j] >= 0 && newidx[l->src[j]] != newidx[i] - 1) named[newidx[l->src[j]]] = 1;
        if (l->n_src == 2) /* add/concat are written with both inputs */
            for (int j = 0; j < 2; j++)
                if (l->src[j] >= 0) named[newidx[l->src[j]]] = 1;
    }
    size_t used = 0;
    spec[0] = 0;
    for (int i = 0; i < n; i++) {
        const cnd_layer_t *l = &m->layers[i];
        if (l->type == CND_L_BATCHNORM) continue;
        char tok[96], nm[24] = "", a[24], b[24], node[200];
        cnd_layer_spec(l, tok, sizeof tok);
        if (named[newidx[i]]) snprintf(nm, sizeof nm, "f%d=", newidx[i]);
        int s0 = l->src[0] < 0 ? -1 : newidx[l->src[0]];
        if (s0 < 0)
            snprintf(a, sizeof a, "input");
        else
            snprintf(a, sizeof a, "f%d", s0);
        if (l->n_src == 2) {
            int s1 = l->src[1] < 0 ? -1 : newidx[l->src[1]];
            if (s1 < 0)
                snprintf(b, sizeof b, "input");
            else
                snprintf(b, sizeof b, "f%d", s1);
            snprintf(node, sizeof node, "%s%s(@%s,@%s)", nm, tok, a, b);
        } else if (s0 != newidx[i] - 1) {
            snprintf(node, sizeof node, "@%s %s%s", a, nm, tok);
        } else {
            snprintf(node, sizeof node, "%s%s", nm, tok);
        }
        int w = snprintf(spec + used, cap - used, "%s%s", used ? " " : "", node);
        if (w < 0 || (size_t)w >= cap - used)
            return cnd_errf(CND_EINVAL, "model spec too long to fold");
        used += (size_t)w;
    }
    return 0;
}

/* Copies m's parameters into folded model f, scaling each batchnorm's producer: w' = w g /
 * sqrt(var + eps) per output channel, b' = (b - mean) g / sqrt(var + eps) + beta. */
static void s_fold_params(cnd_model_t *f, const cnd_model_t *m, const int *newidx, const int *bnof)
{
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        if (l->type == CND_L_BATCHNORM || !l->n_params) continue;
        const cnd_layer_t *fl = &f->layers[newidx[i]];
        float *dst = f->params + fl->param_off;
        memcpy(dst, m->params + l->param_off, l->n_params * sizeof(float));
        if (bnof[i] < 0) continue;
        const cnd_layer_t *bn = &m->layers[bnof[i]];
        int C = bn->in.c;
        size_t rowlen = l->n_weights / (size_t)C;
        const float *g = m->params + bn->param_off, *beta = g + C;
        const float *mean = m->state + bn->state_off, *var = mean + C;
        float *b = dst + l->n_weights;
        for (int c = 0; c < C; c++) {
            float k = g[c] / sqrtf(var[c] + bn->p.bn.eps);
            for (size_t t = 0; t < rowlen; t++) dst[(size_t)c * rowlen + t] *= k;
            b[c] = (b[c] - mean[c]) * k + beta[c];
        }
    }
}

int cnd_quant_fold_bn(cnd_model_t **out, const cnd_model_t *m)
{
    *out = NULL;
    size_t cap = 16384;
    int newidx[CND_SPEC_MAX_LAYERS], bnof[CND_SPEC_MAX_LAYERS];
    int rc = s_bn_targets(bnof, m);
    if (rc) return rc;
    char *spec = malloc(cap);
    if (!spec) return CND_ENOMEM;
    rc = s_fold_spec(spec, cap, newidx, m);
    if (rc) {
        free(spec);
        return rc;
    }
    if (!cnd_model_is_graph(m, NULL, 0)) { /* a chain stays a chain, written without names */
        char tok[96];
        size_t used = 0;
        spec[0] = 0;
        for (int i = 0; i < m->n_layers; i++) {
            if (m->layers[i].type == CND_L_BATCHNORM) continue;
            cnd_layer_spec(&m->layers[i], tok, sizeof tok);
            used += (size_t)snprintf(spec + used, cap - used, "%s%s", used ? " " : "", tok);
        }
    }
    cnd_model_t *f = NULL;
    rc = cnd_model_new(&f, spec, m->in, 0);
    free(spec);
    if (rc) return rc;
    s_fold_params(f, m, newidx, bnof);
    memcpy(f->norm_mean, m->norm_mean, (size_t)m->in.c * sizeof(float));
    memcpy(f->norm_std, m->norm_std, (size_t)m->in.c * sizeof(float));
    for (int i = 0; i < m->n_meta; i++)
        if ((rc = cnd_model_meta_set(f, m->meta[i].key, m->meta[i].val))) {
            cnd_model_destroy(&f);
            return rc;
        }
    *out = f;
    return 0;
}

/* Node i's only reader, or -1 when it has none or several. */
static int s_sole_reader(const cnd_model_t *m, int i)
{
    int r = -1;
    for (int j = i + 1; j < m->n_layers; j++)
        for (int t = 0; t < m->layers[j].n_src; t++)
            if (m->layers[j].src[t] == i) {
                if (r >= 0) return -1;
                r = j;
            }
    return r;
}

void cnd_quant_cap_range(cnd_qrange_t *r, const cnd_qplan_t *plan, int p)
{
    float c = plan->cap[p];
    if (c <= 0) return;
    if (r->lo < -c) r->lo = -c;
    if (r->hi > c) r->hi = c;
}

int cnd_quant_feeds_tanh(const cnd_model_t *m, int i)
{
    if (i < 0) return 0; /* the input keeps its own range */
    for (;;) {
        int r = s_sole_reader(m, i);
        if (r < 0 || m->layers[r].n_src != 1) return 0;
        switch (m->layers[r].type) {
        case CND_L_TANH: return 1;
        case CND_L_RELU:
        case CND_L_MAXPOOL:
        case CND_L_FLATTEN: i = r; break;
        default: return 0;
        }
    }
}

int cnd_quant_plan(cnd_qplan_t *p, const cnd_model_t *m)
{
    memset(p, 0, sizeof *p);
    /* specs hold up to CND_SPEC_MAX_LAYERS layers (graphs need them), the runtime fewer */
    if (m->n_layers > CND_RT_MAX_LAYERS)
        return cnd_errf(CND_EINVAL,
                        "quantization: the model has %d layers; the integer runtime "
                        "runs at most %d",
                        m->n_layers, CND_RT_MAX_LAYERS);
    p->n_points = 1;
    p->point_layer[0] = -1;
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        int src = l->src[0];
        p->point_of_layer[i] = src < 0 ? 0 : p->point_of_layer[src];
        if (src >= 0 && p->point_of_layer[src] < 0) /* reads a producer whose relu is fused */
            return cnd_errf(CND_EINVAL, "layer %d reads a layer whose relu is fused", i + 1);
        switch (l->type) {
        case CND_L_DENSE:
        case CND_L_CONV2D:
        case CND_L_GCONV:
        case CND_L_ADD:
        case CND_L_CONCAT: {
            int r = s_sole_reader(m, i);
            if (r == i + 1 &&
                (m->layers[r].type == CND_L_RELU || m->layers[r].type == CND_L_RELU6)) {
                p->fused_relu[i] = m->layers[r].type == CND_L_RELU ? 1 : 6;
                p->point_of_layer[i] = -1; /* the pre-ReLU tensor never exists in integers */
                i++;
            }
            int cur = p->n_points++;
            p->point_layer[cur] = i;
            p->point_of_layer[i] = cur;
            p->fq_at[i] = 1;
            break;
        }
        case CND_L_HARDSWISH:
        case CND_L_TANH: { /* a table from input to output codes, its own output range */
            int cur = p->n_points++;
            p->point_layer[cur] = i;
            p->point_of_layer[i] = cur;
            p->fq_at[i] = 1;
            break;
        }
        case CND_L_AVGPOOL:
        case CND_L_GAP:
        case CND_L_RELU6:
            p->fq_at[i] = 1; /* integer averaging rounds, 6 is on the grid: re-round */
            break;
        case CND_L_BATCHNORM:
            return cnd_errf(CND_EINVAL, "layer %d is a batchnorm: fold it first", i + 1);
        default: break; /* relu, maxpool, flatten keep values on the input's grid */
        }
    }
    for (int q = 0; q < p->n_points; q++)
        if (cnd_quant_feeds_tanh(m, p->point_layer[q])) p->cap[q] = CND_QUANT_TANH_CAP;
    return 0;
}
