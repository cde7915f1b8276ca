/*
 * quant_calib.c: post-training calibration of activation ranges.
 *
 * Two passes of the float model over the calibration samples: the first records each
 * quantization point's min and max, the second a 2048-bin histogram over [min, max]. From
 * the histogram come the three candidate ranges:
 *   minmax      [min, max]
 *   percentile  the 0.01% and 99.99% quantiles (the low end stays at min when min >= 0, as
 *               after a ReLU)
 *   mse         [a * min, a * max] for the a in {1, 0.99, ..., 0.2} that minimises the
 *               histogram's squared quantization error (rounding plus clipping)
 * `auto` measures instead of guessing: it first picks, per weighted layer, max-|w| or
 * MSE-clipped weight scales, then walks the points from input to output and keeps, for each,
 * the candidate whose fake-quantized model (points up to this one quantized, the rest float)
 * gives logits closest (mean squared error) to the float model's on up to 256 samples.
 */
#include "quant.h"
#include "rng.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_BATCH        100
#define S_AUTO_SAMPLES 256

static const float *s_point_data(const cnd_model_t *m, const cnd_qplan_t *plan, int p,
                                 const float *x, size_t *count, int bs)
{
    if (plan->point_layer[p] < 0) {
        *count = (size_t)bs * cnd_shape_size(m->in);
        return x;
    }
    const cnd_layer_t *l = &m->layers[plan->point_layer[p]];
    *count = (size_t)bs * cnd_shape_size(l->out);
    return m->acts[plan->point_layer[p]];
}

static void s_candidates(cnd_qrange_t r[3], const cnd_observer_t *o)
{
    float mn = o->min, mx = o->max;
    r[CND_QM_MINMAX] = (cnd_qrange_t){mn, mx};
    double width = ((double)mx - mn) / CND_QUANT_BINS, total = 0.0;
    for (int b = 0; b < CND_QUANT_BINS; b++) total += o->hist[b];
    /* percentile */
    double cum = 0.0, qlo = 1e-4 * total, qhi = (1.0 - 1e-4) * total;
    float plo = mn, phi = mx;
    int got_lo = 0;
    for (int b = 0; b < CND_QUANT_BINS; b++) {
        cum += o->hist[b];
        if (!got_lo && cum >= qlo) {
            plo = (float)(mn + width * b);
            got_lo = 1;
        }
        if (cum >= qhi) {
            phi = (float)(mn + width * (b + 1));
            break;
        }
    }
    if (mn >= 0.0f) plo = mn;
    r[CND_QM_PERCENTILE] = (cnd_qrange_t){plo, phi};
    /* mse */
    double best = DBL_MAX;
    float ba = 1.0f;
    for (int c = 0; c <= 80; c++) {
        float a = 1.0f - 0.01f * (float)c, s;
        int32_t z;
        cnd_quant_params(mn * a, mx * a, &s, &z);
        double err = 0.0;
        for (int b = 0; b < CND_QUANT_BINS; b++) {
            if (o->hist[b] == 0.0) continue;
            float v = (float)(mn + width * (b + 0.5)), q = v;
            cnd_quant_fake(&q, 1, s, z, NULL);
            err += o->hist[b] * ((double)v - q) * ((double)v - q);
        }
        if (err < best) {
            best = err;
            ba = a;
        }
    }
    r[CND_QM_MSE] = (cnd_qrange_t){mn * ba, mx * ba};
}

/* Mean squared difference between the logits of m (hooks as installed) and ref. */
static int s_logit_err(double *err, cnd_model_t *m, const float *x, size_t n, const float *ref)
{
    size_t d = cnd_shape_size(m->in);
    int K = m->n_classes;
    double e = 0.0;
    for (size_t s = 0; s < n; s += S_BATCH) {
        int bs = (int)(n - s < S_BATCH ? n - s : S_BATCH);
        const float *lg;
        int rc = cnd_model_forward(m, x + s * d, bs, 0, &lg);
        if (rc) return rc;
        for (size_t k = 0; k < (size_t)bs * K; k++) {
            double dv = (double)lg[k] - ref[s * K + k];
            e += dv * dv;
        }
    }
    *err = e / (double)(n * K);
    return 0;
}

int cnd_quant_calibrate(cnd_qrange_t *ranges, cnd_qmethod_t *chosen, int *w_mse, cnd_model_t *m,
                        const cnd_qplan_t *plan, const float *x, size_t n, cnd_qmethod_t method,
                        int wbits)
{
    if (n == 0) return cnd_errf(CND_EINVAL, "calibration needs at least one sample");
    if (m->hooks) return cnd_errf(CND_ESTATE, "calibration needs a model without hooks");
    int P = plan->n_points, rc = 0;
    size_t d = cnd_shape_size(m->in);
    cnd_observer_t *obs = calloc((size_t)P, sizeof *obs);
    cnd_qrange_t(*cand)[3] = calloc((size_t)P, sizeof *cand);
    float *ref = NULL;
    cnd_fq_t *fq = NULL;
    if (!obs || !cand) {
        rc = CND_ENOMEM;
        goto done;
    }
    for (int p = 0; p < P; p++) {
        obs[p].min = FLT_MAX;
        obs[p].max = -FLT_MAX;
    }
    for (int pass = 0; pass < 2; pass++)
        for (size_t s = 0; s < n; s += S_BATCH) {
            int bs = (int)(n - s < S_BATCH ? n - s : S_BATCH);
            const float *lg;
            if ((rc = cnd_model_forward(m, x + s * d, bs, 0, &lg))) goto done;
            for (int p = 0; p < P; p++) {
                size_t cnt;
                const float *v = s_point_data(m, plan, p, x + s * d, &cnt, bs);
                cnd_observer_t *o = &obs[p];
                if (pass == 0) {
                    for (size_t k = 0; k < cnt; k++) {
                        if (!isfinite(v[k])) {
                            rc = cnd_errf(CND_EINVAL,
                                          "calibration: non-finite activation at "
                                          "quantization point %d",
                                          p);
                            goto done;
                        }
                        o->min = fminf(o->min, v[k]);
                        o->max = fmaxf(o->max, v[k]);
                    }
                    o->n += cnt;
                } else {
                    double w = ((double)o->max - o->min) / CND_QUANT_BINS;
                    for (size_t k = 0; k < cnt; k++) {
                        long b = w > 0 ? (long)(((double)v[k] - o->min) / w) : 0;
                        if (b >= CND_QUANT_BINS) b = CND_QUANT_BINS - 1;
                        if (b < 0) b = 0;
                        o->hist[b] += 1.0;
                    }
                }
            }
        }
    for (int p = 0; p < P; p++) {
        s_candidates(cand[p], &obs[p]);
        for (int k = 0; k < 3; k++) cnd_quant_cap_range(&cand[p][k], plan, p);
    }
    for (int i = 0; i < m->n_layers; i++) w_mse[i] = wbits == 4;
    if (method != CND_QM_AUTO) {
        for (int p = 0; p < P; p++) {
            ranges[p] = cand[p][method];
            if (chosen) chosen[p] = method;
        }
        goto done;
    }
    size_t ne = n < S_AUTO_SAMPLES ? n : S_AUTO_SAMPLES;
    int K = m->n_classes;
    ref = malloc(ne * (size_t)K * sizeof(float));
    if (!ref) {
        rc = CND_ENOMEM;
        goto done;
    }
    for (size_t s = 0; s < ne; s += S_BATCH) {
        int bs = (int)(ne - s < S_BATCH ? ne - s : S_BATCH);
        const float *lg;
        if ((rc = cnd_model_forward(m, x + s * d, bs, 0, &lg))) goto done;
        memcpy(ref + s * K, lg, (size_t)bs * K * sizeof(float));
    }
    for (int p = 0; p < P; p++) ranges[p] = cand[p][CND_QM_MINMAX];
    /* Weight scales first, activations float. */
    for (int i = 0; i < m->n_layers; i++) {
        if (m->layers[i].type != CND_L_DENSE && m->layers[i].type != CND_L_CONV2D &&
            m->layers[i].type != CND_L_GCONV)
            continue;
        double e[2];
        for (int t = 0; t < 2; t++) {
            w_mse[i] = t;
            if ((rc = cnd_fq_new(&fq, m, plan, ranges, w_mse, wbits, 0, 0))) goto done;
            rc = s_logit_err(&e[t], m, x, ne, ref);
            cnd_fq_destroy(&fq);
            if (rc) goto done;
        }
        w_mse[i] = e[1] < e[0];
    }
    /* Then each point in turn, earlier ones fixed, later ones float. */
    for (int p = 0; p < P; p++) {
        double best = DBL_MAX;
        int bm = CND_QM_MINMAX;
        for (int meth = 0; meth < 3; meth++) {
            ranges[p] = cand[p][meth];
            double e;
            if ((rc = cnd_fq_new(&fq, m, plan, ranges, w_mse, wbits, 0, p + 1))) goto done;
            rc = s_logit_err(&e, m, x, ne, ref);
            cnd_fq_destroy(&fq);
            if (rc) goto done;
            if (e < best) {
                best = e;
                bm = meth;
            }
        }
        ranges[p] = cand[p][bm];
        if (chosen) chosen[p] = (cnd_qmethod_t)bm;
    }
done:
    cnd_fq_destroy(&fq);
    free(obs);
    free(cand);
    free(ref);
    return rc;
}

int cnd_quant_calib_sample(cnd_dataset_t **out, const cnd_dataset_t *ds, size_t n, uint64_t seed)
{
    *out = NULL;
    uint32_t *idx = malloc((ds->n ? ds->n : 1) * sizeof *idx);
    if (!idx) return CND_ENOMEM;
    for (size_t i = 0; i < ds->n; i++) idx[i] = (uint32_t)i;
    cnd_rng_t rng;
    cnd_rng_seed(&rng, seed ^ 0xca11b);
    cnd_rng_shuffle_u32(&rng, idx, ds->n);
    int rc = cnd_data_subset(out, ds, idx, n < ds->n ? n : ds->n);
    free(idx);
    return rc;
}
