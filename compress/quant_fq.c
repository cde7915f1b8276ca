/*
 * quant_fq.c: fake quantization inside the float model, through model.h's hooks.
 *
 * Forward: the input and every quantization point's tensor go through
 * x_hat = (clamp(round(x / s) + z, -128, 127) - z) * s, and each dense/conv2d layer computes
 * with per-channel fake-quantized weights w_hat = s_w * clamp(round(w / s_w), -qmax, qmax).
 * Backward (straight-through estimator, clipped): the gradient passes through an activation's
 * fake quantization where x lay inside [(-128 - z) s, (127 - z) s] and is zero where it was
 * clipped (a mask saved in forward); weight gradients computed against w_hat go unchanged to
 * the float weights. Observers: in training forwards each point's range follows an
 * exponential moving average of the batch min/max (momentum 0.01), starting from the
 * calibrated range, so activations the network learns to produce stay representable.
 *
 * The same machinery serves calibration in `auto` mode (no observers, no training), where
 * npoints_active lets points past a given one stay float.
 */
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_EMA 0.01f

struct cnd_fq {
    cnd_model_t *m;
    cnd_model_hooks_t hooks;
    cnd_qplan_t plan;
    int wbits, qmax, observe, active;
    cnd_qrange_t ranges[CND_QUANT_MAX_POINTS];
    float *ratio[CND_SPEC_MAX_LAYERS]; /* per output channel clip ratio in (0, 1] */
    float *scales;                     /* scratch: one layer's channel scales */
    float *wq;                         /* fake-quantized weights, laid out like params */
    float *xin;                        /* fake-quantized input */
    size_t xin_cap;
    uint8_t *mask[CND_SPEC_MAX_LAYERS]; /* STE masks of the last training forward */
    size_t mask_cap[CND_SPEC_MAX_LAYERS];
    int mask_valid[CND_SPEC_MAX_LAYERS];
};

static int s_rows(const cnd_layer_t *l)
{
    return l->type == CND_L_DENSE ? l->p.dense.out : l->p.conv.oc;
}

void cnd_fq_weight_scales(const cnd_fq_t *fq, int i, float *scales)
{
    const cnd_layer_t *l = &fq->m->layers[i];
    int rows = s_rows(l), cols = (int)(l->n_weights / (size_t)rows);
    const float *w = fq->m->params + l->param_off;
    for (int r = 0; r < rows; r++) {
        float mx = 0.0f;
        for (int j = 0; j < cols; j++) mx = fmaxf(mx, fabsf(w[(size_t)r * cols + j]));
        scales[r] = mx > 0.0f ? fq->ratio[i][r] * mx / (float)fq->qmax : 1.0f;
    }
}

static const float *s_weights(void *ctx, int i, const float *w)
{
    cnd_fq_t *fq = ctx;
    const cnd_layer_t *l = &fq->m->layers[i];
    if (l->type != CND_L_DENSE && l->type != CND_L_CONV2D && l->type != CND_L_GCONV) return w;
    int rows = s_rows(l), cols = (int)(l->n_weights / (size_t)rows);
    float *dst = fq->wq + l->param_off;
    cnd_fq_weight_scales(fq, i, fq->scales);
    for (int r = 0; r < rows; r++) {
        float s = fq->scales[r];
        const float *src = w + (size_t)r * cols;
        float *d = dst + (size_t)r * cols;
        for (int j = 0; j < cols; j++)
            d[j] = (float)cnd_quant_q(src[j], s, 0, -fq->qmax, fq->qmax) * s;
    }
    memcpy(dst + l->n_weights, w + l->n_weights, (l->n_params - l->n_weights) * sizeof(float));
    return dst;
}

static const float *s_input(void *ctx, const float *x, int B)
{
    cnd_fq_t *fq = ctx;
    if (fq->active < 1) return x;
    size_t n = (size_t)B * cnd_shape_size(fq->m->in);
    if (n > fq->xin_cap) {
        float *p = realloc(fq->xin, n * sizeof(float));
        if (!p) return x; /* out of memory: run this batch unquantized rather than crash */
        fq->xin = p;
        fq->xin_cap = n;
    }
    memcpy(fq->xin, x, n * sizeof(float));
    float s;
    int32_t z;
    cnd_quant_params(fq->ranges[0].lo, fq->ranges[0].hi, &s, &z);
    cnd_quant_fake(fq->xin, n, s, z, NULL);
    return fq->xin;
}

static void s_act_forward(void *ctx, int i, float *out, int B, int train)
{
    cnd_fq_t *fq = ctx;
    fq->mask_valid[i] = 0;
    if (!fq->plan.fq_at[i]) return;
    int p = fq->plan.point_of_layer[i];
    if (p < 0 || p >= fq->active) return;
    size_t n = (size_t)B * cnd_shape_size(fq->m->layers[i].out);
    if (train && fq->observe && fq->plan.point_layer[p] == i) {
        float lo = out[0], hi = out[0];
        for (size_t k = 1; k < n; k++) {
            lo = fminf(lo, out[k]);
            hi = fmaxf(hi, out[k]);
        }
        cnd_qrange_t *r = &fq->ranges[p];
        r->lo = (1.0f - S_EMA) * r->lo + S_EMA * lo;
        r->hi = (1.0f - S_EMA) * r->hi + S_EMA * hi;
        cnd_quant_cap_range(r, &fq->plan, p);
    }
    float s;
    int32_t z;
    cnd_quant_params(fq->ranges[p].lo, fq->ranges[p].hi, &s, &z);
    uint8_t *mask = NULL;
    if (train) {
        if (n > fq->mask_cap[i]) {
            uint8_t *mk = realloc(fq->mask[i], n);
            if (mk) {
                fq->mask[i] = mk;
                fq->mask_cap[i] = n;
            }
        }
        if (n <= fq->mask_cap[i]) {
            mask = fq->mask[i];
            fq->mask_valid[i] = 1;
        }
    }
    cnd_quant_fake(out, n, s, z, mask);
}

static void s_act_backward(void *ctx, int i, float *dout, int B)
{
    cnd_fq_t *fq = ctx;
    if (!fq->mask_valid[i]) return;
    size_t n = (size_t)B * cnd_shape_size(fq->m->layers[i].out);
    const uint8_t *mask = fq->mask[i];
    for (size_t k = 0; k < n; k++)
        if (!mask[k]) dout[k] = 0.0f;
}

int cnd_fq_new(cnd_fq_t **out, cnd_model_t *m, const cnd_qplan_t *plan, const cnd_qrange_t *ranges,
               const int *w_mse, int wbits, int observe, int npoints_active)
{
    *out = NULL;
    if (wbits != 8 && wbits != 4) return cnd_errf(CND_EINVAL, "weight bits must be 8 or 4");
    cnd_fq_t *fq = calloc(1, sizeof *fq);
    if (!fq) return CND_ENOMEM;
    fq->m = m;
    fq->plan = *plan;
    fq->wbits = wbits;
    fq->qmax = wbits == 8 ? 127 : 7;
    fq->observe = observe;
    fq->active = npoints_active;
    memcpy(fq->ranges, ranges, (size_t)plan->n_points * sizeof *ranges);
    fq->wq = malloc((m->num_params ? m->num_params : 1) * sizeof(float));
    int maxrows = 1;
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        if (l->type == CND_L_DENSE || l->type == CND_L_CONV2D || l->type == CND_L_GCONV)
            if (s_rows(l) > maxrows) maxrows = s_rows(l);
    }
    fq->scales = malloc((size_t)maxrows * sizeof(float));
    if (!fq->wq || !fq->scales) goto oom;
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        if (l->type != CND_L_DENSE && l->type != CND_L_CONV2D && l->type != CND_L_GCONV) continue;
        int rows = s_rows(l), cols = (int)(l->n_weights / (size_t)rows);
        fq->ratio[i] = malloc((size_t)rows * sizeof(float));
        if (!fq->ratio[i]) goto oom;
        const float *w = m->params + l->param_off;
        if (w_mse && w_mse[i]) {
            cnd_quant_weight_scales(fq->ratio[i], w, rows, cols, fq->qmax, 1);
            for (int r = 0; r < rows; r++) {
                float mx = 0.0f;
                for (int j = 0; j < cols; j++) mx = fmaxf(mx, fabsf(w[(size_t)r * cols + j]));
                fq->ratio[i][r] = mx > 0.0f ? fq->ratio[i][r] * (float)fq->qmax / mx : 1.0f;
            }
        } else {
            for (int r = 0; r < rows; r++) fq->ratio[i][r] = 1.0f;
        }
    }
    fq->hooks = (cnd_model_hooks_t){fq, s_input, s_weights, s_act_forward, s_act_backward};
    m->hooks = &fq->hooks;
    *out = fq;
    return 0;
oom:
    cnd_fq_destroy(&fq);
    return CND_ENOMEM;
}

void cnd_fq_ranges(const cnd_fq_t *fq, cnd_qrange_t *ranges)
{
    memcpy(ranges, fq->ranges, (size_t)fq->plan.n_points * sizeof *ranges);
}

void cnd_fq_destroy(cnd_fq_t **pfq)
{
    if (!pfq || !*pfq) return;
    cnd_fq_t *fq = *pfq;
    if (fq->m && fq->m->hooks == &fq->hooks) fq->m->hooks = NULL;
    for (int i = 0; i < CND_SPEC_MAX_LAYERS; i++) {
        free(fq->ratio[i]);
        free(fq->mask[i]);
    }
    free(fq->scales);
    free(fq->wq);
    free(fq->xin);
    free(fq);
    *pfq = NULL;
}
