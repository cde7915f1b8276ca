/*
 * dpsgd.c: per-sample clipping, Gaussian noise and Poisson sampling for DP-SGD (dpsgd.h).
 *
 * The first backward pass is the model's own loop (model.c, unfused and without hooks) with two
 * differences: the layers add per-sample squared norms into `norm2`, and each weighted layer
 * either keeps every sample's own gradient (convolutions, while they fit in
 * CND_DP_KEEP_FLOATS: they are computed for the norms anyway) or has its output gradient copied
 * aside. The second pass sums the kept gradients weighted by the clip factors (one GEMV), and
 * for the other layers scales the copies and calls the layer's backward with no input
 * gradient, which computes weight gradients only.
 */
#include "dpsgd.h"

#include <cblas.h>
#include <math.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define CND_DP_RAND_WORDS 1024 /* 64-bit words fetched from the CSPRNG at a time */
/* Floats of per-sample conv2d gradients kept across a batch (128 MB): within it, the second
 * pass over a convolution is one matrix-vector product instead of im2col and a GEMM. */
#define CND_DP_KEEP_FLOATS ((size_t)1 << 25)

struct cnd_dpsgd {
    int cap_B;     /* batch capacity */
    int n_layers;  /* entries of saved */
    float **saved; /* per layer: B x out copy of its output gradient (weighted layers only) */
    float **grads; /* per layer: B x n_params per-sample gradients (conv2d within the budget) */
    double *norm2; /* cap_B: per-sample squared gradient norms */
    float *scale;  /* cap_B: per-sample clip factors */
    float *sum;    /* num_params: the step's sum of clipped gradients */
    uint64_t rnd[CND_DP_RAND_WORDS];
    int rnd_left; /* unused words at the end of rnd */
    cnd_dpsgd_stats_t st;
};

int cnd_dpsgd_new(cnd_dpsgd_t **out, cnd_model_t *m, int cap_B)
{
    return cnd_dpsgd_new_keep(out, m, cap_B, CND_DP_KEEP_FLOATS);
}

int cnd_dpsgd_check_model(const cnd_model_t *m)
{
    int refused = cnd_model_refuse_graph(m, "DP-SGD");
    if (refused) return refused;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].type == CND_L_BATCHNORM)
            return cnd_errf(CND_EINVAL,
                            "layer %d is batchnorm: under DP-SGD a sample's gradient must not "
                            "depend on the other samples of its batch, and batchnorm's batch "
                            "statistics make it; remove batchnorm from the architecture (tanh "
                            "activations train well without it)",
                            i + 1);
    return 0;
}

int cnd_dpsgd_new_keep(cnd_dpsgd_t **out, cnd_model_t *m, int cap_B, size_t keep_floats)
{
    *out = NULL;
    int rc = cnd_dpsgd_check_model(m);
    if (rc) return rc;
    if (cap_B < 1) return cnd_errf(CND_EINVAL, "DP-SGD batch capacity %d", cap_B);
    cnd_dpsgd_t *d = calloc(1, sizeof *d);
    if (!d) return CND_ENOMEM;
    d->cap_B = cap_B;
    d->n_layers = m->n_layers;
    d->saved = calloc((size_t)m->n_layers, sizeof *d->saved);
    d->grads = calloc((size_t)m->n_layers, sizeof *d->grads);
    d->norm2 = malloc((size_t)cap_B * sizeof *d->norm2);
    d->scale = malloc((size_t)cap_B * sizeof *d->scale);
    d->sum = calloc(m->num_params ? m->num_params : 1, sizeof *d->sum);
    int ok = d->saved && d->grads && d->norm2 && d->scale && d->sum;
    size_t kept = 0;
    for (int i = 0; ok && i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        size_t per = (size_t)cap_B * l->n_params;
        if (l->type == CND_L_CONV2D && kept <= keep_floats && per <= keep_floats - kept) {
            d->grads[i] = malloc(per * sizeof(float));
            ok = d->grads[i] != NULL;
            kept += per;
        } else if (l->n_params) {
            d->saved[i] = malloc((size_t)cap_B * cnd_shape_size(l->out) * sizeof(float));
            ok = d->saved[i] != NULL;
        }
    }
    if (!ok) {
        cnd_dpsgd_destroy(&d);
        return cnd_errf(CND_ENOMEM, "cannot allocate DP-SGD buffers for batch %d", cap_B);
    }
    m->no_fuse = 1;
    *out = d;
    return 0;
}

void cnd_dpsgd_destroy(cnd_dpsgd_t **pd)
{
    if (!pd || !*pd) return;
    cnd_dpsgd_t *d = *pd;
    for (int i = 0; i < d->n_layers; i++) {
        if (d->saved) free(d->saved[i]);
        if (d->grads) free(d->grads[i]);
    }
    free(d->saved);
    free(d->grads);
    free(d->norm2);
    free(d->scale);
    free(d->sum);
    free(d);
    *pd = NULL;
}

/* Layer i's weights as its forward pass used them: fake-quantized under QAT hooks. */
static const float *s_weights(const cnd_model_t *m, int i)
{
    const cnd_model_hooks_t *h = m->hooks;
    const float *w = m->params + m->layers[i].param_off;
    if (h && h->weights && m->layers[i].n_weights) w = h->weights(h->ctx, i, w);
    return w;
}

/* The first pass: model.c's backward loop, keeping each weighted layer's output gradient and
 * collecting per-sample squared norms in d->norm2. m->grads receive the unclipped sum (unused). */
static void s_first_pass(cnd_dpsgd_t *d, cnd_model_t *m, const float *dlogits, int B)
{
    const cnd_model_hooks_t *h = m->hooks;
    const float *dout = dlogits;
    if (h && h->act_backward) { /* the hook edits gradients in place: copy the caller's */
        memcpy(m->dbuf[1], dlogits, (size_t)B * m->n_classes * sizeof(float));
        dout = m->dbuf[1];
    }
    memset(d->norm2, 0, (size_t)B * sizeof *d->norm2);
    for (int i = m->n_layers - 1; i >= m->first_param_layer; i--) {
        cnd_layer_t *l = &m->layers[i];
        /* before skipping an alias: a fused relu's fake-quantization mask applies here */
        if (h && h->act_backward) h->act_backward(h->ctx, i, (float *)(uintptr_t)dout, B);
        if (l->alias) continue;
        const float *in = i ? m->acts[i - 1] : m->last_in;
        float *din =
            i > m->first_param_layer ? (dout == m->dbuf[0] ? m->dbuf[1] : m->dbuf[0]) : NULL;
        if (l->n_params) {
            if (d->saved[i])
                memcpy(d->saved[i], dout, (size_t)B * cnd_shape_size(l->out) * sizeof(float));
            l->sample_norm2 = d->norm2;
            l->sample_grads = d->grads[i];
        }
        cnd_layer_ops(l->type)->backward(l, din, m->grads + l->param_off, dout, in, m->acts[i],
                                         s_weights(m, i), m->work, B);
        l->sample_norm2 = NULL;
        l->sample_grads = NULL;
        dout = din;
    }
}

/* Scales sample b's rows of a layer's output gradient g (B samples, layer.h layouts: conv2d
 * outputs CBHW, dense NCHW) by s[b]. */
static void s_scale_rows(const cnd_layer_t *l, float *g, const float *s, int B)
{
    size_t per = cnd_shape_size(l->out);
    if (l->type == CND_L_CONV2D) {
        size_t P = (size_t)l->out.h * l->out.w;
        for (int c = 0; c < l->out.c; c++)
            for (int b = 0; b < B; b++) {
                float *p = g + ((size_t)c * B + b) * P;
                for (size_t k = 0; k < P; k++) p[k] *= s[b];
            }
        return;
    }
    for (int b = 0; b < B; b++)
        for (size_t k = 0; k < per; k++) g[(size_t)b * per + k] *= s[b];
}

void cnd_dpsgd_accumulate(cnd_dpsgd_t *d, cnd_model_t *m, const float *dlogits, int B, double clip)
{
    if (B <= 0) return;
    if (B > d->cap_B) B = d->cap_B; /* programmer error: asserted by the callers' sizing */
    s_first_pass(d, m, dlogits, B);
    float *s = d->scale;
    for (int b = 0; b < B; b++) {
        double nrm = sqrt(d->norm2[b]);
        d->st.samples++;
        d->st.norm_sum += nrm;
        if (nrm > clip) d->st.clipped++;
        /* the second pass recomputes the same gradient in float: a margin of 1e-6 keeps its
         * norm at or below the clip despite rounding */
        s[b] = nrm * (1.0 + 1e-6) > clip ? (float)(clip / (nrm * (1.0 + 1e-6))) : 1.0f;
    }
    for (int i = m->first_param_layer; i < m->n_layers; i++) {
        cnd_layer_t *l = &m->layers[i];
        if (!l->n_params) continue;
        if (d->grads[i]) { /* kept per-sample gradients: sum += G^T s */
            cblas_sgemv(CblasRowMajor, CblasTrans, B, (int)l->n_params, 1.0f, d->grads[i],
                        (int)l->n_params, s, 1, 1.0f, d->sum + l->param_off, 1);
            continue;
        }
        s_scale_rows(l, d->saved[i], s, B);
        const float *in = i ? m->acts[i - 1] : m->last_in;
        cnd_layer_ops(l->type)->backward(l, NULL, d->sum + l->param_off, d->saved[i], in,
                                         m->acts[i], s_weights(m, i), m->work, B);
    }
}

/* 64 random bits from the CSPRNG, refilled CND_DP_RAND_WORDS at a time. */
static int s_rand_u64(cnd_dpsgd_t *d, uint64_t *out)
{
    if (d->rnd_left == 0) {
        if (RAND_bytes((unsigned char *)d->rnd, (int)sizeof d->rnd) != 1)
            return cnd_errf(CND_ECRYPTO, "the CSPRNG (OpenSSL RAND_bytes) failed");
        d->rnd_left = CND_DP_RAND_WORDS;
    }
    *out = d->rnd[--d->rnd_left];
    d->rnd[d->rnd_left] = 0;
    return 0;
}

/* Uniform in (0, 1] with 53 random bits. */
static int s_rand_open(cnd_dpsgd_t *d, double *u)
{
    uint64_t w = 0;
    int rc = s_rand_u64(d, &w);
    *u = ((double)(w >> 11) + 1.0) * 0x1.0p-53;
    return rc;
}

int cnd_dpsgd_finish(cnd_dpsgd_t *d, cnd_model_t *m, double noise, double clip,
                     double expected_batch)
{
    double sd = noise * clip, inv = 1.0 / expected_batch;
    size_t n = m->num_params;
    for (size_t i = 0; i < n; i += 2) {
        /* Box-Muller: two independent standard normals from two uniforms */
        double u1, u2;
        int rc = s_rand_open(d, &u1);
        if (!rc) rc = s_rand_open(d, &u2);
        if (rc) return rc;
        double r = sqrt(-2.0 * log(u1)) * sd, t = 2.0 * M_PI * u2;
        m->grads[i] = (float)(((double)d->sum[i] + r * cos(t)) * inv);
        if (i + 1 < n) m->grads[i + 1] = (float)(((double)d->sum[i + 1] + r * sin(t)) * inv);
    }
    memset(d->sum, 0, n * sizeof *d->sum);
    return 0;
}

cnd_dpsgd_stats_t cnd_dpsgd_take_stats(cnd_dpsgd_t *d)
{
    cnd_dpsgd_stats_t s = d->st;
    memset(&d->st, 0, sizeof d->st);
    return s;
}

int cnd_dpsgd_poisson(cnd_dpsgd_t *d, uint32_t *idx, size_t *count, size_t n, double q)
{
    *count = 0;
    if (q >= 1.0) {
        for (size_t i = 0; i < n; i++) idx[i] = (uint32_t)i;
        *count = n;
        return 0;
    }
    /* The gap to the next included record is geometric: floor(log(u) / log(1 - q)). */
    double l1q = log1p(-q);
    for (size_t i = 0;;) {
        double u;
        int rc = s_rand_open(d, &u);
        if (rc) return rc;
        double gap = floor(log(u) / l1q);
        if (gap >= (double)(n - i)) break;
        i += (size_t)gap;
        idx[(*count)++] = (uint32_t)i;
        i++;
        if (i >= n) break;
    }
    return 0;
}
