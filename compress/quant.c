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

int cnd_quant_fold_bn(cnd_model_t **out, const cnd_model_t *m)
{
    *out = NULL;
    int refused = cnd_model_refuse_graph(m, "quantization");
    if (refused) return refused;
    char spec[4096], tok[96];
    spec[0] = 0;
    size_t used = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        if (l->type == CND_L_BATCHNORM) {
            if (i == 0 ||
                (m->layers[i - 1].type != CND_L_DENSE && m->layers[i - 1].type != CND_L_CONV2D))
                return cnd_errf(CND_EINVAL,
                                "layer %d (batchnorm) does not directly follow a dense or conv2d "
                                "layer, so it cannot be folded for integer inference",
                                i + 1);
            continue;
        }
        cnd_layer_spec(l, tok, sizeof tok);
        int w = snprintf(spec + used, sizeof spec - used, "%s%s", used ? " " : "", tok);
        if (w < 0 || (size_t)w >= sizeof spec - used)
            return cnd_errf(CND_EINVAL, "model spec too long to fold");
        used += (size_t)w;
    }
    cnd_model_t *f = NULL;
    int rc = cnd_model_new(&f, spec, m->in, 0);
    if (rc) return rc;
    int j = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        if (l->type == CND_L_BATCHNORM) continue;
        cnd_layer_t *fl = &f->layers[j++];
        if (!l->n_params) continue;
        float *dst = f->params + fl->param_off;
        memcpy(dst, m->params + l->param_off, l->n_params * sizeof(float));
        if (i + 1 < m->n_layers && m->layers[i + 1].type == CND_L_BATCHNORM) {
            const cnd_layer_t *bn = &m->layers[i + 1];
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

int cnd_quant_plan(cnd_qplan_t *p, const cnd_model_t *m)
{
    memset(p, 0, sizeof *p);
    int refused = cnd_model_refuse_graph(m, "quantization");
    if (refused) return refused;
    /* specs hold up to CND_SPEC_MAX_LAYERS layers (graphs need them), the runtime fewer */
    if (m->n_layers > CND_RT_MAX_LAYERS)
        return cnd_errf(CND_EINVAL,
                        "quantization: the model has %d layers; the integer runtime "
                        "runs at most %d",
                        m->n_layers, CND_RT_MAX_LAYERS);
    p->n_points = 1;
    p->point_layer[0] = -1;
    int cur = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        p->point_of_layer[i] = cur;
        switch (l->type) {
        case CND_L_DENSE:
        case CND_L_CONV2D:
            if (i + 1 < m->n_layers && m->layers[i + 1].type == CND_L_RELU) {
                p->fused_relu[i] = 1;
                p->point_of_layer[i] = -1; /* the pre-ReLU tensor never exists in integers */
                i++;
            }
            cur = p->n_points++;
            p->point_layer[cur] = i;
            p->point_of_layer[i] = cur;
            p->fq_at[i] = 1;
            break;
        case CND_L_AVGPOOL:
        case CND_L_GAP:
            p->fq_at[i] = 1; /* integer averaging rounds: re-round with the input's params */
            break;
        case CND_L_BATCHNORM:
            return cnd_errf(CND_EINVAL, "layer %d is a batchnorm: fold it first", i + 1);
        case CND_L_TANH:
            return cnd_errf(CND_EINVAL,
                            "layer %d is tanh: the integer runtime has no tanh kernel "
                            "(quantize a model with relu activations)",
                            i + 1);
        default: break; /* relu, maxpool, flatten keep values on the input's grid */
        }
    }
    return 0;
}
