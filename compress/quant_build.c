/*
 * quant_build.c: turning a folded float model plus activation ranges into the integer model
 * (cnd_qmodel_t) that the artifact writer serialises and the runtime executes.
 *
 * This is where layouts change: activations become HWC, conv2d weights go from OIHW to OHWI,
 * and a dense layer fed by a C x H x W tensor has its weight columns permuted from CHW order
 * to HWC order, so that flatten costs nothing at run time. Biases are quantized with scale
 * s_in * s_w[c] and requantization multipliers computed in double precision.
 */
#include "quant.h"
#include "cnd_rt_format.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void cnd_qmodel_destroy(cnd_qmodel_t **pq)
{
    if (!pq || !*pq) return;
    cnd_qmodel_t *q = *pq;
    for (int i = 0; i < q->n_layers; i++) {
        cnd_qlayer_t *l = &q->layers[i];
        free(l->w);
        free(l->w_scale);
        free(l->bias);
        free(l->mult);
        free(l->shift);
    }
    free(q->layers);
    free(q->norm_mean);
    free(q->norm_std);
    free(q->lut);
    if (q->labels)
        for (int k = 0; k < q->n_classes; k++) free(q->labels[k]);
    free(q->labels);
    for (int i = 0; i < q->n_meta; i++) {
        free(q->meta[i].key);
        free(q->meta[i].val);
    }
    free(q->test_in);
    free(q->test_out);
    free(q);
    *pq = NULL;
}

static int s_labels(cnd_qmodel_t *q, const char *csv)
{
    q->labels = calloc((size_t)q->n_classes, sizeof(char *));
    if (!q->labels) return CND_ENOMEM;
    const char *p = csv;
    for (int k = 0; k < q->n_classes; k++) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0 || (!e && k + 1 < q->n_classes)) break; /* too few labels: keep none */
        if (n > CND_RT_LABEL_MAX) n = CND_RT_LABEL_MAX;
        q->labels[k] = malloc(n + 1);
        if (!q->labels[k]) return CND_ENOMEM;
        for (size_t j = 0; j < n; j++) {
            unsigned char ch = (unsigned char)p[j];
            q->labels[k][j] = (char)(ch < 0x20 || ch == 0x7f ? '?' : ch);
        }
        q->labels[k][n] = 0;
        if (!e) break;
        p = e + 1;
    }
    for (int k = 0; k < q->n_classes; k++)
        if (!q->labels[k]) { /* incomplete: drop them all rather than ship wrong names */
            for (int j = 0; j < q->n_classes; j++) free(q->labels[j]);
            free(q->labels);
            q->labels = NULL;
            break;
        }
    return 0;
}

/* `layout` is the C x H x W arrangement of the layer's input: for a dense layer behind a
 * flatten it is the shape before the flatten, whose CHW order the float weights follow. */
static int s_weighted(cnd_qlayer_t *ql, const cnd_layer_t *l, const float *w, float s_in,
                      float s_out, int wbits, int mse, const float *scales, cnd_shape_t layout)
{
    int rows = ql->out_c, K = ql->K, C = layout.c, H = layout.h, W = layout.w;
    int qmax = wbits == 8 ? 127 : 7;
    if (l->type == CND_L_GCONV) C /= l->p.conv.groups; /* a row reads one group's channels */
    ql->w = malloc((size_t)rows * K);
    ql->w_scale = malloc((size_t)rows * sizeof(float));
    ql->bias = malloc((size_t)rows * sizeof(int32_t));
    ql->mult = malloc((size_t)rows * sizeof(int32_t));
    ql->shift = malloc((size_t)rows * sizeof(int32_t));
    if (!ql->w || !ql->w_scale || !ql->bias || !ql->mult || !ql->shift) return CND_ENOMEM;
    if (scales)
        memcpy(ql->w_scale, scales, (size_t)rows * sizeof(float));
    else
        cnd_quant_weight_scales(ql->w_scale, w, rows, K, qmax, mse);
    const float *b = w + l->n_weights;
    for (int r = 0; r < rows; r++) {
        float s = ql->w_scale[r];
        const float *src = w + (size_t)r * K;
        int8_t *dst = ql->w + (size_t)r * K;
        if (l->type == CND_L_CONV2D || l->type == CND_L_GCONV) {
            int k = l->p.conv.k;
            for (int c = 0; c < C; c++)
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++)
                        dst[((size_t)i * k + j) * C + c] = (int8_t)cnd_quant_q(
                            src[((size_t)c * k + i) * k + j], s, 0, -qmax, qmax);
        } else {
            for (int c = 0; c < C; c++)
                for (int h = 0; h < H; h++)
                    for (int x = 0; x < W; x++)
                        dst[((size_t)h * W + x) * C + c] = (int8_t)cnd_quant_q(
                            src[((size_t)c * H + h) * W + x], s, 0, -qmax, qmax);
        }
        double bs = (double)s_in * s;
        double bq = bs > 0 ? round((double)b[r] / bs) : 0.0;
        if (bq > 1073741823.0) bq = 1073741823.0; /* leave headroom; the loader checks sums */
        if (bq < -1073741823.0) bq = -1073741823.0;
        ql->bias[r] = (int32_t)bq;
        cnd_quant_multiplier((double)s_in * s / s_out, &ql->mult[r], &ql->shift[r]);
    }
    return 0;
}

/* What cnd_qmodel_build was given, and where its walk over the float layers stands. */
typedef struct {
    const cnd_model_t *m;
    const cnd_qplan_t *plan;
    const cnd_qrange_t *ranges;
    const int *w_mse;
    float *const *w_scales;
    int wbits;
    float s_cur;        /* scale of the current node's (first) input */
    int32_t z_cur;      /* its zero point */
    cnd_shape_t layout; /* its spatial arrangement (see s_weighted) */
    /* per float node: the integer layer computing its output, that output's scale, zero point
     * and layout (a fused relu maps to its producer's integer layer) */
    int qidx[CND_SPEC_MAX_LAYERS];
    float sc[CND_SPEC_MAX_LAYERS];
    int32_t zc[CND_SPEC_MAX_LAYERS];
    cnd_shape_t lay[CND_SPEC_MAX_LAYERS];
    float s_in; /* the model input's scale and zero point */
    int32_t z_in;
} s_build_t;

/* The input's quantization and the per-channel lookup table from raw bytes through the
 * model's normalisation to int8. */
static int s_input(cnd_qmodel_t *q, const cnd_model_t *m, const cnd_qrange_t *ranges)
{
    int C = m->in.c;
    q->in = m->in;
    q->n_classes = m->n_classes;
    cnd_quant_params(ranges[0].lo, ranges[0].hi, &q->in_scale, &q->in_zp);
    q->norm_mean = malloc((size_t)C * sizeof(float));
    q->norm_std = malloc((size_t)C * sizeof(float));
    q->lut = malloc((size_t)C * 256);
    q->layers = calloc((size_t)m->n_layers, sizeof *q->layers);
    if (!q->norm_mean || !q->norm_std || !q->lut || !q->layers) return CND_ENOMEM;
    memcpy(q->norm_mean, m->norm_mean, (size_t)C * sizeof(float));
    memcpy(q->norm_std, m->norm_std, (size_t)C * sizeof(float));
    for (int c = 0; c < C; c++) {
        float mu = m->norm_mean[c], inv = 1.0f / m->norm_std[c];
        for (int r = 0; r < 256; r++)
            q->lut[c * 256 + r] =
                (int8_t)cnd_quant_q(((float)r - mu) * inv, q->in_scale, q->in_zp, -128, 127);
    }
    return 0;
}

/* A relu (fused 1) or relu6 (fused 6) after node *i becomes the integer layer's clamp: from
 * the zero point, and for relu6 up to the code of 6 (*i moves past the relu). */
static void s_fused_clamp(cnd_qlayer_t *ql, s_build_t *b, int *i)
{
    int fused = b->plan->fused_relu[*i];
    if (!fused) return;
    ql->act_min = ql->out_zp;
    if (fused == 6) {
        long top = ql->out_zp + lround(6.0 / ql->out_scale);
        ql->act_max = top < 127 ? (int32_t)top : 127;
    }
    ql->src = ++*i; /* the relu's output is what the integer layer produces */
}

/* add and concat: the output point's parameters and the multipliers bringing each input to it
 * (cnd_rt_requant.h, cnd_rt_add), with the relu after it fused. */
static int s_merge_layer(cnd_qlayer_t *ql, s_build_t *b, int *i)
{
    const cnd_layer_t *l = &b->m->layers[*i];
    int fused = b->plan->fused_relu[*i];
    int p = b->plan->point_of_layer[fused ? *i + 1 : *i];
    int s1 = l->src[1];
    double sa = b->s_cur, sb = s1 < 0 ? b->s_in : b->sc[s1];
    cnd_quant_params(b->ranges[p].lo, b->ranges[p].hi, &ql->out_scale, &ql->out_zp);
    double so = ql->out_scale;
    ql->op = l->type == CND_L_ADD ? CND_RT_OP_ADD : CND_RT_OP_CONCAT;
    ql->mult = calloc(3, sizeof(int32_t));
    ql->shift = calloc(3, sizeof(int32_t));
    if (!ql->mult || !ql->shift) return CND_ENOMEM;
    if (l->type == CND_L_ADD) {
        double twice = 2.0 * (sa > sb ? sa : sb);
        cnd_quant_multiplier(sa / twice, &ql->mult[0], &ql->shift[0]);
        cnd_quant_multiplier(sb / twice, &ql->mult[1], &ql->shift[1]);
        cnd_quant_multiplier(twice / ((double)(1 << CND_RT_ADD_SHIFT) * so), &ql->mult[2],
                             &ql->shift[2]);
    } else {
        cnd_quant_multiplier(sa / so, &ql->mult[0], &ql->shift[0]);
        cnd_quant_multiplier(sb / so, &ql->mult[1], &ql->shift[1]);
    }
    s_fused_clamp(ql, b, i);
    return 0;
}

/* hardswish or tanh as a 256-entry table from input codes to output codes (in float, once,
 * here): a function of one int8 code has at most 256 values, so the table is exact. */
static int s_lut_layer(cnd_qlayer_t *ql, s_build_t *b, int i)
{
    int p = b->plan->point_of_layer[i];
    int tanh_ = b->m->layers[i].type == CND_L_TANH;
    cnd_quant_params(b->ranges[p].lo, b->ranges[p].hi, &ql->out_scale, &ql->out_zp);
    ql->op = CND_RT_OP_LUT;
    ql->w = malloc(256);
    if (!ql->w) return CND_ENOMEM;
    for (int q = -128; q < 128; q++) {
        float x = b->s_cur * (float)(q - b->z_cur), y;
        if (tanh_) {
            y = tanhf(x);
        } else {
            float r6 = x + 3.0f < 0.0f ? 0.0f : x + 3.0f > 6.0f ? 6.0f : x + 3.0f;
            y = x * r6 / 6.0f;
        }
        ql->w[q + 128] = (int8_t)cnd_quant_q(y, ql->out_scale, ql->out_zp, -128, 127);
    }
    return 0;
}

/* A dense or conv2d layer i (with the ReLU after it when the plan fuses them: *i moves past
 * it): its output quantization and its integer weights. */
static int s_weighted_layer(cnd_qlayer_t *ql, s_build_t *b, int *i)
{
    const cnd_layer_t *l = &b->m->layers[*i];
    int fused = b->plan->fused_relu[*i];
    int p = b->plan->point_of_layer[fused ? *i + 1 : *i];
    ql->op = l->type == CND_L_DENSE   ? CND_RT_OP_DENSE
             : l->type == CND_L_GCONV ? CND_RT_OP_GCONV
                                      : CND_RT_OP_CONV2D;
    ql->relu = fused == 1;
    ql->wbits = cnd_quant_layer_wbits(b->plan, *i, b->wbits);
    if (l->type == CND_L_GCONV) ql->groups = l->p.conv.groups;
    if (l->type != CND_L_DENSE) {
        ql->k = l->p.conv.k;
        ql->stride = l->p.conv.stride;
        ql->pad = l->p.conv.pad;
        if (ql->k > 255 || ql->stride > 255 || ql->pad > 255)
            return cnd_errf(CND_ERANGE, "layer %d: kernel, stride or pad above 255", *i + 1);
    }
    ql->K = (int)(l->n_weights / (size_t)l->out.c);
    cnd_quant_params(b->ranges[p].lo, b->ranges[p].hi, &ql->out_scale, &ql->out_zp);
    int rc = s_weighted(ql, l, b->m->params + l->param_off, b->s_cur, ql->out_scale, ql->wbits,
                        b->w_mse && b->w_mse[*i], b->w_scales ? b->w_scales[*i] : NULL, b->layout);
    if (rc) return rc;
    s_fused_clamp(ql, b, i);
    return 0;
}

/* The integer layer for float layer *i (and the ReLU fused into it). Layers without weights
 * keep their input's quantization. */
static int s_layer(cnd_qlayer_t *ql, s_build_t *b, int *i)
{
    const cnd_layer_t *l = &b->m->layers[*i];
    memset(ql, 0, sizeof *ql);
    ql->src = *i;
    ql->n_src = l->n_src;
    for (int j = 0; j < 2; j++)
        ql->srcq[j] = j < l->n_src && l->src[j] >= 0 ? b->qidx[l->src[j]] : -1;
    if (l->src[0] >= 0) { /* the node read: its parameters and layout */
        b->s_cur = b->sc[l->src[0]];
        b->z_cur = b->zc[l->src[0]];
        b->layout = b->lay[l->src[0]];
    } else {
        b->s_cur = b->s_in;
        b->z_cur = b->z_in;
        b->layout = b->m->in;
    }
    ql->in_c = l->in.c;
    ql->in_h = l->in.h;
    ql->in_w = l->in.w;
    ql->out_c = l->out.c;
    ql->out_h = l->out.h;
    ql->out_w = l->out.w;
    ql->in_scale = ql->out_scale = b->s_cur;
    ql->in_zp = ql->out_zp = b->z_cur;
    ql->act_min = -128;
    ql->act_max = 127;
    int rc = 0;
    switch (l->type) {
    case CND_L_DENSE:
    case CND_L_CONV2D:
    case CND_L_GCONV: rc = s_weighted_layer(ql, b, i); break;
    case CND_L_ADD:
    case CND_L_CONCAT: rc = s_merge_layer(ql, b, i); break;
    case CND_L_HARDSWISH:
    case CND_L_TANH: rc = s_lut_layer(ql, b, *i); break;
    case CND_L_RELU:
    case CND_L_RELU6:
        ql->op = CND_RT_OP_RELU;
        ql->act_min = b->z_cur;
        if (l->type == CND_L_RELU6) {
            long top = b->z_cur + lround(6.0 / b->s_cur);
            ql->act_max = top < 127 ? (int32_t)top : 127;
        }
        break;
    case CND_L_MAXPOOL:
    case CND_L_AVGPOOL:
        ql->op = l->type == CND_L_MAXPOOL ? CND_RT_OP_MAXPOOL : CND_RT_OP_AVGPOOL;
        ql->k = l->p.pool.k;
        ql->stride = l->p.pool.stride;
        if (ql->k > 255 || ql->stride > 255)
            rc = cnd_errf(CND_ERANGE, "layer %d: pool window or stride above 255", *i + 1);
        break;
    case CND_L_GAP: ql->op = CND_RT_OP_GAP; break;
    case CND_L_FLATTEN: ql->op = CND_RT_OP_FLATTEN; break;
    default:
        rc = cnd_errf(CND_EINVAL, "layer %d (%s) has no integer kernel; fold batchnorm first",
                      *i + 1, cnd_layer_ops(l->type)->name);
    }
    if (rc) return rc;
    if (l->type != CND_L_FLATTEN) b->layout = b->m->layers[ql->src].out;
    if (ql->out_c > 65535)
        return cnd_errf(CND_ERANGE,
                        "layer %d: %d output channels/features exceed the runtime's 65535", *i + 1,
                        ql->out_c);
    return 0;
}

/* The model's metadata the runtime can hold: keys of 1-64 bytes, values cut at 1024. */
static int s_meta(cnd_qmodel_t *q, const cnd_model_t *m)
{
    for (int i = 0; i < m->n_meta && q->n_meta < CND_RT_META_MAX; i++) {
        const char *k = m->meta[i].key, *v = m->meta[i].val;
        if (strlen(k) < 1 || strlen(k) > 64) continue;
        size_t vl = strlen(v) > 1024 ? 1024 : strlen(v);
        q->meta[q->n_meta].key = strdup(k);
        q->meta[q->n_meta].val = strndup(v, vl);
        q->n_meta++; /* freed by cnd_qmodel_destroy even when only half made */
        if (!q->meta[q->n_meta - 1].key || !q->meta[q->n_meta - 1].val) return CND_ENOMEM;
    }
    return 0;
}

int cnd_qmodel_meta_set(cnd_qmodel_t *q, const char *k, const char *v)
{
    for (int i = 0; i < q->n_meta; i++)
        if (!strcmp(q->meta[i].key, k)) {
            char *nv = strdup(v);
            if (!nv) return CND_ENOMEM;
            free(q->meta[i].val);
            q->meta[i].val = nv;
            return 0;
        }
    if (q->n_meta >= CND_RT_META_MAX) return 0;
    q->meta[q->n_meta].key = strdup(k);
    q->meta[q->n_meta].val = strdup(v);
    if (!q->meta[q->n_meta].key || !q->meta[q->n_meta].val) return CND_ENOMEM;
    q->n_meta++;
    return 0;
}

int cnd_qmodel_build(cnd_qmodel_t **out, const cnd_model_t *m, const cnd_qplan_t *plan,
                     const cnd_qrange_t *ranges, const int *w_mse, float *const *w_scales,
                     int wbits)
{
    *out = NULL;
    if (wbits != 8 && wbits != 4) return cnd_errf(CND_EINVAL, "weight bits must be 8 or 4");
    if (m->in.c > CND_RT_MAX_DIM || m->in.h > CND_RT_MAX_DIM || m->in.w > CND_RT_MAX_DIM)
        return cnd_errf(CND_ERANGE, "input %dx%dx%d too large for the runtime", m->in.c, m->in.h,
                        m->in.w);
    cnd_qmodel_t *q = calloc(1, sizeof *q);
    if (!q) return CND_ENOMEM;
    int rc = s_input(q, m, ranges);
    static const s_build_t zero;
    s_build_t *b = malloc(sizeof *b);
    if (!b) rc = CND_ENOMEM;
    if (b) {
        *b = zero;
        b->m = m;
        b->plan = plan;
        b->ranges = ranges;
        b->w_mse = w_mse;
        b->w_scales = w_scales;
        b->wbits = wbits;
        b->s_in = q->in_scale;
        b->z_in = q->in_zp;
    }
    for (int i = 0; !rc && i < m->n_layers; i++) {
        int i0 = i;
        cnd_qlayer_t *ql = &q->layers[q->n_layers];
        if ((rc = s_layer(ql, b, &i))) break;
        for (int j = i0; j <= i; j++) { /* the node and a relu fused into it */
            b->qidx[j] = q->n_layers;
            b->sc[j] = ql->out_scale;
            b->zc[j] = ql->out_zp;
            b->lay[j] = b->layout;
        }
        q->n_layers++;
    }
    free(b);
    if (!rc) rc = s_meta(q, m);
    const char *labels = cnd_model_meta_get(m, "labels");
    if (!rc && labels) rc = s_labels(q, labels);
    if (rc) {
        cnd_qmodel_destroy(&q);
        return rc;
    }
    *out = q;
    return 0;
}

int cnd_quant_raw_is_u8(const float *x, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (!(x[i] >= 0.0f && x[i] <= 255.0f) || x[i] != floorf(x[i])) return 0;
    return 1;
}

void cnd_qmodel_input(const cnd_qmodel_t *q, int8_t *x, const float *raw)
{
    int C = q->in.c, H = q->in.h, W = q->in.w;
    size_t hw = (size_t)H * W;
    for (int c = 0; c < C; c++) {
        float mu = q->norm_mean[c], inv = 1.0f / q->norm_std[c];
        for (size_t p = 0; p < hw; p++) {
            float v = raw[(size_t)c * hw + p];
            int8_t o;
            if (v >= 0.0f && v <= 255.0f && v == floorf(v))
                o = q->lut[c * 256 + (int)v];
            else
                o = (int8_t)cnd_quant_q((v - mu) * inv, q->in_scale, q->in_zp, -128, 127);
            x[p * C + c] = o;
        }
    }
}
