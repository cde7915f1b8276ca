/*
 * distill.c: the distillation loss and the teacher-logit cache (see distill.h).
 */
#include "distill.h"
#include "loss.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float cnd_distill_loss(void *ctx, float *dlogits, const float *logits, const uint32_t *idx, int B,
                       int K, int *correct)
{
    const cnd_distill_t *d = ctx;
    float T = d->T, a = d->alpha, invB = 1.0f / (float)B;
    double total = 0.0;
    int ok = 0;
    float ps[256], pt[256], p1[256];
    for (int b = 0; b < B; b++) {
        const float *zs = logits + (size_t)b * K;
        const float *zt = d->teacher_logits ? d->teacher_logits + (size_t)idx[b] * (size_t)K
                                            : d->batch_logits + (size_t)b * K;
        int y = d->labels[idx[b]];
        cnd_softmax(ps, zs, K, T);
        cnd_softmax(pt, zt, K, T);
        cnd_softmax(p1, zs, K, 1.0f);
        /* KL(pt || ps) = sum pt (log pt - log ps); terms with pt == 0 contribute 0. */
        double kl = 0.0;
        for (int k = 0; k < K; k++)
            if (pt[k] > 0.0f)
                kl += (double)pt[k] * (log((double)pt[k]) - log((double)ps[k] + 1e-30));
        double ce = -log((double)p1[y] + 1e-30);
        total += (double)a * T * T * kl + (1.0 - a) * ce;
        ok += cnd_argmax(zs, K) == y;
        if (dlogits) {
            float *g = dlogits + (size_t)b * K;
            for (int k = 0; k < K; k++)
                g[k] = (a * T * (ps[k] - pt[k]) + (1.0f - a) * p1[k]) * invB;
            g[y] -= (1.0f - a) * invB;
        }
    }
    if (correct) *correct = ok;
    return (float)(total / B);
}

int cnd_distill_teacher_logits(float **logits, cnd_model_t *teacher, const cnd_dataset_t *raw)
{
    *logits = NULL;
    if (cnd_shape_size(raw->shape) != cnd_shape_size(teacher->in))
        return cnd_errf(CND_EINVAL, "teacher expects %dx%dx%d inputs, data has %dx%dx%d",
                        teacher->in.c, teacher->in.h, teacher->in.w, raw->shape.c, raw->shape.h,
                        raw->shape.w);
    if (teacher->n_classes < raw->n_classes || teacher->n_classes > 256)
        return cnd_errf(CND_EINVAL, "teacher outputs %d classes, data has %d", teacher->n_classes,
                        raw->n_classes);
    size_t d = cnd_shape_size(raw->shape);
    cnd_dataset_t view = *raw;
    view.x = malloc((raw->n ? raw->n : 1) * d * sizeof(float));
    if (!view.x) return CND_ENOMEM;
    memcpy(view.x, raw->x, raw->n * d * sizeof(float));
    cnd_model_normalize(teacher, view.x, view.n);
    int rc = cnd_model_logits(teacher, &view, 256, logits);
    free(view.x);
    return rc;
}

int cnd_distill_online_init(cnd_distill_t *d, cnd_model_t *teacher, const float *s_mean,
                            const float *s_std, int batch)
{
    int C = teacher->in.c;
    size_t dim = cnd_shape_size(teacher->in);
    d->teacher = teacher;
    d->cap = batch;
    d->tx = malloc((size_t)batch * dim * sizeof(float));
    d->batch_logits = malloc((size_t)batch * teacher->n_classes * sizeof(float));
    d->scale = malloc((size_t)C * sizeof(float));
    d->shift = malloc((size_t)C * sizeof(float));
    if (!d->tx || !d->batch_logits || !d->scale || !d->shift) {
        cnd_distill_online_free(d);
        return CND_ENOMEM;
    }
    for (int c = 0; c < C; c++) { /* raw = xs * s_std + s_mean; xt = (raw - t_mean) / t_std */
        d->scale[c] = s_std[c] / teacher->norm_std[c];
        d->shift[c] = (s_mean[c] - teacher->norm_mean[c]) / teacher->norm_std[c];
    }
    return 0;
}

void cnd_distill_online_free(cnd_distill_t *d)
{
    free(d->tx);
    free(d->batch_logits);
    free(d->scale);
    free(d->shift);
    d->tx = d->batch_logits = d->scale = d->shift = NULL;
    d->teacher = NULL;
}

int cnd_distill_on_batch(void *ctx, const float *xb, const uint32_t *idx, int B)
{
    cnd_distill_t *d = ctx;
    cnd_model_t *t = d->teacher;
    if (B > d->cap) return cnd_errf(CND_EINVAL, "batch %d over the teacher buffer %d", B, d->cap);
    size_t hw = (size_t)t->in.h * t->in.w;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < t->in.c; c++) {
            size_t o = ((size_t)b * t->in.c + (size_t)c) * hw;
            for (size_t i = 0; i < hw; i++) d->tx[o + i] = xb[o + i] * d->scale[c] + d->shift[c];
        }
    const float *lg;
    int rc = cnd_model_forward(t, d->tx, B, 0, &lg);
    if (rc) return rc;
    memcpy(d->batch_logits, lg, (size_t)B * t->n_classes * sizeof(float));
    return 0;
}
