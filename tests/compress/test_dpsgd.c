/* test_dpsgd.c: DP-SGD (compress/dpsgd.c): the clipped per-sample sum against a reference that
 * runs each sample through the model alone (dense, conv2d with fused relu, tanh, pooling, 1 and
 * 2 threads, per-sample conv gradients kept or recomputed), the clip bound, the noise's scale,
 * Poisson sampling, the batchnorm refusal, and a short cnd_train run that learns and reports the
 * accountant's epsilon. Under fake quantization (QAT hooks, quant_fq.c): the clipped sum against
 * each sample's straight-through gradient computed alone, and a DP QAT run. */
#include "check.h"
#include "dp_accountant.h"
#include "dpsgd.h"
#include "error.h"
#include "pool.h"
#include "quant.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ARCH "conv2d(4,3,pad=1) relu conv2d(3,3) tanh maxpool(2) flatten dense(6) relu dense(5)"

/* m's gradient of sample b alone (input x, output gradient g), by a forward and backward of
 * one sample on a clone. */
static void s_sample_grad(const cnd_model_t *m, const float *x, const float *g, float *out)
{
    cnd_model_t *c = NULL;
    CHECK(cnd_model_clone(&c, m) == 0);
    if (!c) return;
    const float *lg;
    CHECK(cnd_model_forward(c, x, 1, 1, &lg) == 0);
    cnd_model_zero_grad(c);
    cnd_model_backward(c, g);
    memcpy(out, c->grads, m->num_params * sizeof(float));
    cnd_model_destroy(&c);
}

static void test_clipped_sum(int threads, size_t keep)
{
    CHECK(cnd_pool_set_threads(threads) == 0);
    cnd_model_t *m = NULL;
    cnd_shape_t in = {2, 8, 8};
    CHECK(cnd_model_new(&m, ARCH, in, 7) == 0);
    if (!m) return;
    enum { B = 9 };
    size_t d = cnd_shape_size(in), P = m->num_params;
    float *x = malloc(B * d * sizeof(float)), *g = malloc(B * 5 * sizeof(float));
    float *ref = calloc(P, sizeof(float)), *gb = malloc(P * sizeof(float));
    cnd_rng_t r;
    cnd_rng_seed(&r, 3);
    for (size_t i = 0; i < B * d; i++) x[i] = (float)cnd_rng_normal(&r);
    for (size_t i = 0; i < B * 5; i++) g[i] = (float)cnd_rng_normal(&r) * (1 + (i / 5) % 4);
    /* reference: per-sample gradients, their norms, clipped at the median-ish norm */
    double norms[B];
    for (int b = 0; b < B; b++) {
        s_sample_grad(m, x + (size_t)b * d, g + (size_t)b * 5, gb);
        double s = 0;
        for (size_t i = 0; i < P; i++) s += (double)gb[i] * gb[i];
        norms[b] = sqrt(s);
    }
    double clip = 0;
    for (int b = 0; b < B; b++) clip += norms[b] / B; /* the mean: some above, some below */
    int n_clipped = 0;
    for (int b = 0; b < B; b++) {
        s_sample_grad(m, x + (size_t)b * d, g + (size_t)b * 5, gb);
        double f = norms[b] > clip ? clip / norms[b] : 1.0;
        n_clipped += norms[b] > clip;
        for (size_t i = 0; i < P; i++) ref[i] += (float)(f * gb[i]);
    }
    CHECK(n_clipped > 0 && n_clipped < B);
    cnd_dpsgd_t *dp = NULL;
    CHECK(cnd_dpsgd_new_keep(&dp, m, B, keep) == 0);
    if (dp) {
        const float *lg;
        CHECK(cnd_model_forward(m, x, B, 1, &lg) == 0);
        cnd_dpsgd_accumulate(dp, m, g, B, clip);
        cnd_dpsgd_stats_t st = cnd_dpsgd_take_stats(dp);
        CHECK_EQ_INT(st.samples, B);
        CHECK_EQ_INT(st.clipped, n_clipped);
        double mean = 0;
        for (int b = 0; b < B; b++) mean += norms[b] / B;
        CHECK_NEAR(st.norm_sum / B, mean, 1e-4 * mean);
        CHECK(cnd_dpsgd_finish(dp, m, 0.0, clip, 1.0) == 0); /* no noise: the sum itself */
        double err = 0, scale = 0;
        for (size_t i = 0; i < P; i++) {
            err = fmax(err, fabs((double)m->grads[i] - ref[i]));
            scale = fmax(scale, fabs((double)ref[i]));
        }
        CHECK(err <= 1e-4 * scale);
        /* one sample far above the clip: its contribution has norm clip (to float rounding) */
        CHECK(cnd_model_forward(m, x, 1, 1, &lg) == 0);
        float big[5];
        for (int k = 0; k < 5; k++) big[k] = 1000.0f * g[k];
        cnd_dpsgd_accumulate(dp, m, big, 1, clip);
        CHECK(cnd_dpsgd_finish(dp, m, 0.0, clip, 1.0) == 0);
        double s = 0;
        for (size_t i = 0; i < P; i++) s += (double)m->grads[i] * m->grads[i];
        CHECK(sqrt(s) <= clip * (1 + 1e-5) && sqrt(s) >= clip * (1 - 1e-4));
    }
    cnd_dpsgd_destroy(&dp);
    cnd_dpsgd_destroy(&dp); /* idempotent */
    free(x);
    free(g);
    free(ref);
    free(gb);
    cnd_model_destroy(&m);
    CHECK(cnd_pool_set_threads(1) == 0);
}

/* With nothing accumulated, a step's gradient is pure noise of std noise * clip / batch. */
static void test_noise(void)
{
    cnd_model_t *m = NULL;
    CHECK(cnd_model_new(&m, "dense(200) dense(100)", (cnd_shape_t){100, 1, 1}, 1) == 0);
    if (!m) return;
    cnd_dpsgd_t *dp = NULL;
    CHECK(cnd_dpsgd_new(&dp, m, 4) == 0);
    double noise = 2.0, clip = 0.5, batch = 10.0, want = noise * clip / batch;
    CHECK(cnd_dpsgd_finish(dp, m, noise, clip, batch) == 0);
    double s1 = 0, s2 = 0, s4 = 0;
    size_t n = m->num_params;
    float first = m->grads[0];
    for (size_t i = 0; i < n; i++) {
        double v = m->grads[i];
        s1 += v;
        s2 += v * v;
        s4 += v * v * v * v;
    }
    double mean = s1 / n, var = s2 / n - mean * mean;
    /* 40,300 draws: the std within 2% (about 6 standard errors), the mean within 5 of its own,
     * the kurtosis of a normal (3) within 0.15 */
    CHECK(fabs(sqrt(var) / want - 1) < 0.02);
    CHECK(fabs(mean) < 5 * want / sqrt((double)n));
    CHECK(fabs(s4 / n / (var * var) - 3.0) < 0.15);
    CHECK(cnd_dpsgd_finish(dp, m, noise, clip, batch) == 0);
    CHECK(m->grads[0] != first); /* fresh noise every step */
    cnd_dpsgd_destroy(&dp);
    cnd_model_destroy(&m);
}

static void test_poisson(void)
{
    cnd_model_t *m = NULL;
    CHECK(cnd_model_new(&m, "dense(2)", (cnd_shape_t){2, 1, 1}, 1) == 0);
    cnd_dpsgd_t *dp = NULL;
    CHECK(cnd_dpsgd_new(&dp, m, 1) == 0);
    size_t n = 200000, cnt = 0;
    uint32_t *idx = malloc(n * sizeof *idx);
    if (dp && idx) {
        CHECK(cnd_dpsgd_poisson(dp, idx, &cnt, n, 0.01) == 0);
        /* Binomial(200000, 0.01): mean 2000, std 44.5 */
        CHECK(cnt > 2000 - 250 && cnt < 2000 + 250);
        int sorted = 1;
        for (size_t i = 1; i < cnt; i++) sorted &= idx[i] > idx[i - 1];
        CHECK(sorted && idx[cnt - 1] < n);
        /* both halves are sampled alike */
        size_t low = 0;
        for (size_t i = 0; i < cnt; i++) low += idx[i] < n / 2;
        CHECK(fabs((double)low / cnt - 0.5) < 0.06);
        CHECK(cnd_dpsgd_poisson(dp, idx, &cnt, 10, 1.0) == 0);
        CHECK(cnt == 10 && idx[9] == 9);
    }
    free(idx);
    cnd_dpsgd_destroy(&dp);
    cnd_model_destroy(&m);
}

static void test_refusals(void)
{
    cnd_model_t *m = NULL;
    CHECK(cnd_model_new(&m, "conv2d(2,3) batchnorm relu flatten dense(3)", (cnd_shape_t){1, 6, 6},
                        1) == 0);
    cnd_dpsgd_t *dp = NULL;
    if (m) {
        CHECK(cnd_dpsgd_new(&dp, m, 4) == CND_EINVAL);
        CHECK(strstr(cnd_err_detail(), "layer 2 is batchnorm") != NULL);
        CHECK(dp == NULL);
    }
    cnd_model_destroy(&m);
}

/* Blobs per class on 1x6x6 images (as test_train.c): DP-SGD at moderate noise still learns, and
 * the run reports the accountant's epsilon for its steps. */
static void test_train_dp(void)
{
    size_t n = 1200;
    cnd_dataset_t ds = {.n = n, .shape = {1, 6, 6}, .n_classes = 3};
    ds.x = malloc(n * 36 * sizeof(float));
    ds.y = malloc(n);
    cnd_rng_t r;
    cnd_rng_seed(&r, 5);
    for (size_t i = 0; i < n; i++) {
        int k = (int)(i % 3);
        ds.y[i] = (uint8_t)k;
        for (int p = 0; p < 36; p++)
            ds.x[i * 36 + (size_t)p] =
                ((p % 3 == k) ? 1.0f : -0.5f) + 0.7f * (float)cnd_rng_normal(&r);
    }
    cnd_model_t *m = NULL;
    CHECK(cnd_model_new(&m, "conv2d(4,3) tanh flatten dense(3)", ds.shape, 2) == 0);
    cnd_train_cfg_t cfg = cnd_train_defaults();
    cfg.epochs = 4;
    cfg.batch = 100;
    cfg.optim = cnd_optim_defaults(CND_OPT_SGD, 1.0f);
    cfg.dp = (cnd_dpsgd_cfg_t){.noise = 1.0, .clip = 0.5, .delta = 1e-4};
    cnd_train_result_t res;
    if (m && ds.x && ds.y) {
        CHECK(cnd_train(m, &ds, NULL, &cfg, &res) == 0);
        CHECK(res.steps == 4 * 12);
        cnd_dp_params_t p = {.q = 100.0 / 1200.0, .sigma = 1.0, .steps = 48, .delta = 1e-4};
        double eps = 0;
        CHECK(cnd_dp_epsilon(&p, &eps, NULL) == 0);
        CHECK(res.dp_epsilon == eps && eps > 0);
        CHECK(res.dp_clipped >= 0 && res.dp_clipped <= 1 && res.dp_mean_norm > 0);
        cnd_eval_t ev;
        CHECK(cnd_evaluate(m, &ds, 256, &ev) == 0);
        CHECK(ev.acc > 0.8);
        CHECK(m->no_fuse == 0); /* restored */
        /* a noise multiplier without a clip's partner settings is refused */
        cfg.dp.delta = 0;
        CHECK(cnd_train(m, &ds, NULL, &cfg, &res) == CND_EINVAL);
    }
    cnd_model_destroy(&m);
    free(ds.x);
    free(ds.y);
}

/* Fake quantization with narrow fixed ranges on m (observers off), so that the
 * straight-through masks zero part of the gradient. */
static cnd_fq_t *s_fq(cnd_model_t *m, cnd_qplan_t *plan)
{
    CHECK(cnd_quant_plan(plan, m) == 0);
    cnd_qrange_t ranges[CND_QUANT_MAX_POINTS];
    for (int p = 0; p < plan->n_points; p++) ranges[p] = (cnd_qrange_t){-0.6f, 0.5f};
    cnd_fq_t *fq = NULL;
    CHECK(cnd_fq_new(&fq, m, plan, ranges, NULL, 8, 0, plan->n_points) == 0);
    return fq;
}

/* Per-sample gradients through the fake-quantized forward: DP-SGD's clipped sum equals the sum
 * of each sample's own straight-through gradient (one sample forward and backward at a time
 * through the model with the same hooks), clipped; and it differs from the float model's. */
static void test_qat_per_sample(size_t keep)
{
    cnd_model_t *m = NULL;
    cnd_shape_t in = {2, 8, 8};
    CHECK(cnd_model_new(&m, ARCH, in, 11) == 0);
    if (!m) return;
    enum { B = 7 };
    size_t d = cnd_shape_size(in), P = m->num_params;
    float *x = malloc(B * d * sizeof(float)), *g = malloc(B * 5 * sizeof(float));
    float *ref = calloc(P, sizeof(float)), *flt = calloc(P, sizeof(float));
    float *gb = malloc(B * P * sizeof(float));
    cnd_rng_t r;
    cnd_rng_seed(&r, 9);
    for (size_t i = 0; i < B * d; i++) x[i] = (float)cnd_rng_normal(&r);
    for (size_t i = 0; i < B * 5; i++) g[i] = (float)cnd_rng_normal(&r) * (1 + (i / 5) % 3);
    /* the float model's unclipped sum, for contrast */
    for (int b = 0; b < B; b++) {
        s_sample_grad(m, x + (size_t)b * d, g + (size_t)b * 5, gb);
        for (size_t i = 0; i < P; i++) flt[i] += gb[i];
    }
    cnd_qplan_t plan;
    cnd_fq_t *fq = s_fq(m, &plan);
    double norms[B], clip = 0;
    const float *lg;
    for (int b = 0; b < B; b++) { /* brute force: each sample alone through the hooks */
        CHECK(cnd_model_forward(m, x + (size_t)b * d, 1, 1, &lg) == 0);
        cnd_model_zero_grad(m);
        cnd_model_backward(m, g + (size_t)b * 5);
        memcpy(gb + (size_t)b * P, m->grads, P * sizeof(float));
        double s = 0;
        for (size_t i = 0; i < P; i++) s += (double)m->grads[i] * m->grads[i];
        norms[b] = sqrt(s);
        clip += norms[b] / B;
    }
    int n_clipped = 0;
    for (int b = 0; b < B; b++) {
        double f = norms[b] > clip ? clip / norms[b] : 1.0;
        n_clipped += norms[b] > clip;
        for (size_t i = 0; i < P; i++) ref[i] += (float)(f * gb[(size_t)b * P + i]);
    }
    CHECK(n_clipped > 0 && n_clipped < B);
    cnd_dpsgd_t *dp = NULL;
    CHECK(cnd_dpsgd_new_keep(&dp, m, B, keep) == 0); /* hooks are accepted */
    if (dp && fq) {
        CHECK(cnd_model_forward(m, x, B, 1, &lg) == 0);
        cnd_dpsgd_accumulate(dp, m, g, B, clip);
        cnd_dpsgd_stats_t st = cnd_dpsgd_take_stats(dp);
        CHECK_EQ_INT(st.clipped, n_clipped);
        double mean = 0;
        for (int b = 0; b < B; b++) mean += norms[b] / B;
        CHECK_NEAR(st.norm_sum / B, mean, 1e-4 * mean);
        CHECK(cnd_dpsgd_finish(dp, m, 0.0, clip, 1.0) == 0);
        double err = 0, scale = 0, dflt = 0;
        for (size_t i = 0; i < P; i++) {
            err = fmax(err, fabs((double)m->grads[i] - ref[i]));
            scale = fmax(scale, fabs((double)ref[i]));
        }
        CHECK(err <= 1e-4 * scale);
        /* the hooks matter: without clipping, the float model's sum is far from the QAT one */
        CHECK(cnd_model_forward(m, x, B, 1, &lg) == 0);
        cnd_dpsgd_accumulate(dp, m, g, B, 1e30);
        CHECK(cnd_dpsgd_finish(dp, m, 0.0, 1e30, 1.0) == 0);
        for (size_t i = 0; i < P; i++) dflt = fmax(dflt, fabs((double)m->grads[i] - flt[i]));
        CHECK(dflt > 0.05 * scale);
    }
    cnd_dpsgd_destroy(&dp);
    cnd_fq_destroy(&fq);
    free(x);
    free(g);
    free(ref);
    free(flt);
    free(gb);
    cnd_model_destroy(&m);
}

/* QAT under DP-SGD (cnd_quant_qat with cfg.dp): it trains, reports the accountant's epsilon for
 * its steps, and leaves the calibrated ranges unchanged (observers off). */
static void test_qat_dp_train(void)
{
    size_t n = 600;
    cnd_dataset_t ds = {.n = n, .shape = {1, 6, 6}, .n_classes = 3};
    ds.x = malloc(n * 36 * sizeof(float));
    ds.y = malloc(n);
    cnd_rng_t r;
    cnd_rng_seed(&r, 6);
    for (size_t i = 0; i < n && ds.x && ds.y; i++) {
        int k = (int)(i % 3);
        ds.y[i] = (uint8_t)k;
        for (int p = 0; p < 36; p++)
            ds.x[i * 36 + (size_t)p] =
                ((p % 3 == k) ? 1.0f : -0.5f) + 0.7f * (float)cnd_rng_normal(&r);
    }
    cnd_model_t *m = NULL;
    CHECK(cnd_model_new(&m, "conv2d(4,3) relu flatten dense(3)", ds.shape, 2) == 0);
    cnd_qplan_t plan;
    if (!m || !ds.x || !ds.y || cnd_quant_plan(&plan, m) != 0) goto done;
    cnd_qrange_t ranges[CND_QUANT_MAX_POINTS], before[CND_QUANT_MAX_POINTS];
    for (int p = 0; p < plan.n_points; p++) ranges[p] = (cnd_qrange_t){-3.0f, 3.0f};
    memcpy(before, ranges, sizeof ranges);
    float *w_scales[CND_SPEC_MAX_LAYERS];
    cnd_optim_cfg_t opt = cnd_optim_defaults(CND_OPT_SGD, 0.5f);
    cnd_train_result_t res;
    cnd_qat_cfg_t qc = {.epochs = 2,
                        .batch = 100,
                        .lr = 0.5f,
                        .seed = 1,
                        .optim = &opt,
                        .dp = {.noise = 1.2, .clip = 0.5, .delta = 1e-4},
                        .result = &res};
    CHECK(cnd_quant_qat(m, &plan, ranges, NULL, w_scales, 8, &ds, NULL, &qc) == 0);
    CHECK(res.steps == 2 * 6);
    cnd_dp_params_t p = {.q = 100.0 / 600.0, .sigma = 1.2, .steps = 12, .delta = 1e-4};
    double eps = 0;
    CHECK(cnd_dp_epsilon(&p, &eps, NULL) == 0);
    CHECK(res.dp_epsilon == eps && eps > 0);
    CHECK(memcmp(before, ranges, (size_t)plan.n_points * sizeof *ranges) == 0);
    CHECK(w_scales[0] != NULL && m->hooks == NULL);
    cnd_eval_t ev;
    CHECK(cnd_evaluate(m, &ds, 256, &ev) == 0);
    CHECK(ev.acc > 0.8f); /* the blobs are easy: it learned through the fake quantization */
    cnd_quant_free_scales(w_scales, m->n_layers);
done:
    free(ds.x);
    free(ds.y);
    cnd_model_destroy(&m);
}

int main(void)
{
    test_clipped_sum(1, 1u << 25); /* per-sample conv gradients kept */
    test_clipped_sum(2, 1u << 25);
    test_clipped_sum(1, 0); /* recomputed from the scaled output gradients */
    test_clipped_sum(2, 0);
    test_clipped_sum(2, 700); /* the first conv's kept, the second's recomputed */
    test_noise();
    test_poisson();
    test_refusals();
    test_train_dp();
    test_qat_per_sample((size_t)1 << 25);
    test_qat_per_sample(0);
    test_qat_dp_train();
    return check_result("test_dpsgd");
}
