/*
 * test_quant.c: the host quantizer: scale/zero-point rules, fake quantization and its
 * straight-through gradient (forward values and backward masks through the model hooks),
 * batchnorm folding, the quantization plan, calibration methods, weight scales, and that the
 * integer runtime agrees with the fake-quantized float model it was built from (layouts:
 * HWC activations, OHWI conv weights, CHW->HWC column permutation behind flatten).
 */
#include "check.h"
#include "loss.h"
#include "quant_eval.h"
#include "quant_testutil.h"

#include <math.h>

static void s_params(void)
{
    float s;
    int32_t z;
    cnd_quant_params(-1.0f, 3.0f, &s, &z);
    CHECK_NEAR(s, 4.0 / 255.0, 1e-7);
    CHECK_EQ_INT(z, -64); /* -128 + 1/s = -64.25 -> -64 */
    float zero = 0.0f;
    cnd_quant_fake(&zero, 1, s, z, NULL);
    CHECK(zero == 0.0f);                  /* zero is exact */
    cnd_quant_params(0.0f, 6.0f, &s, &z); /* after a ReLU */
    CHECK_EQ_INT(z, -128);
    cnd_quant_params(0.5f, 2.0f, &s, &z); /* widened to contain 0 */
    CHECK_EQ_INT(z, -128);
    CHECK_NEAR(s, 2.0 / 255.0, 1e-7);
    cnd_quant_params(-5.0f, -1.0f, &s, &z);
    CHECK_EQ_INT(z, 127);
    cnd_quant_params(0.0f, 0.0f, &s, &z); /* degenerate */
    CHECK(s > 0.0f);
    cnd_quant_params(NAN, NAN, &s, &z);
    CHECK(s > 0.0f && z >= -128 && z <= 127);
    /* rounding half away from zero */
    CHECK_EQ_INT(cnd_quant_q(0.5f, 1.0f, 0, -128, 127), 1);
    CHECK_EQ_INT(cnd_quant_q(-0.5f, 1.0f, 0, -128, 127), -1);
    CHECK_EQ_INT(cnd_quant_q(2.49f, 1.0f, 0, -128, 127), 2);
    CHECK_EQ_INT(cnd_quant_q(0.49999997f, 1.0f, 0, -128, 127), 0); /* r + 0.5f would give 1 */
    CHECK_EQ_INT(cnd_quant_q(-0.49999997f, 1.0f, 0, -128, 127), 0);
    CHECK_EQ_INT(cnd_quant_q(-2.5f, 1.0f, 0, -128, 127), -3);
    CHECK_EQ_INT(cnd_quant_q(NAN, 1.0f, 3, -128, 127), 3);
    CHECK_EQ_INT(cnd_quant_q(1e30f, 1.0f, 0, -128, 127), 127);
    CHECK_EQ_INT(cnd_quant_q(-1e30f, 1.0f, 0, -7, 7), -7);
    /* fake quantization values and mask */
    float x[6] = {-2.0f, -0.26f, 0.0f, 0.26f, 1.0f, 9.0f};
    uint8_t mask[6];
    cnd_quant_params(-1.0f, 3.0f, &s, &z);
    cnd_quant_fake(x, 6, s, z, mask);
    CHECK_EQ_INT(mask[0], 0);
    CHECK_EQ_INT(mask[5], 0);
    for (int i = 1; i < 5; i++) CHECK_EQ_INT(mask[i], 1);
    CHECK_NEAR(x[0], (-128 - z) * s, 1e-6); /* clipped to the low end */
    CHECK_NEAR(x[5], (127 - z) * s, 1e-6);
    CHECK_NEAR(x[1], -17 * s, 1e-6); /* -0.26 / s = -16.6 -> -17 */
    CHECK_NEAR(x[4], 1.0f, s / 2);
}

static void s_weight_scales(void)
{
    float w[2 * 8] = {1, -2, 0.5f, 0.25f, 0, 0, 0, 0.1f, /* row 0: max 2 */
                      0, 0,  0,    0,     0, 0, 0, 0};   /* row 1: all zero */
    float sc[2];
    cnd_quant_weight_scales(sc, w, 2, 8, 127, 0);
    CHECK_NEAR(sc[0], 2.0 / 127, 1e-7);
    CHECK(sc[1] > 0);
    /* MSE clipping never increases the error and may clip an outlier */
    float ow[64];
    cnd_rng_t r;
    cnd_rng_seed(&r, 3);
    for (int i = 0; i < 64; i++) ow[i] = 0.1f * (float)cnd_rng_normal(&r);
    ow[7] = 3.0f;
    float smax, smse;
    cnd_quant_weight_scales(&smax, ow, 1, 64, 7, 0);
    cnd_quant_weight_scales(&smse, ow, 1, 64, 7, 1);
    CHECK(smse < smax);
    double emax = 0, emse = 0;
    for (int i = 0; i < 64; i++) {
        double a = ow[i] - cnd_quant_q(ow[i], smax, 0, -7, 7) * smax;
        double b = ow[i] - cnd_quant_q(ow[i], smse, 0, -7, 7) * smse;
        emax += a * a;
        emse += b * b;
    }
    CHECK(emse <= emax);
}

static void s_fold_bn(void)
{
    cnd_model_t *m = NULL, *f = NULL;
    cnd_shape_t in = {2, 6, 6};
    CHECK_EQ_INT(
        cnd_model_new(&m, "conv2d(3,3) batchnorm relu flatten dense(4) batchnorm dense(2)", in, 4),
        0);
    if (!m) return;
    cnd_rng_t r;
    cnd_rng_seed(&r, 8);
    for (int i = 0; i < m->n_layers; i++) {
        cnd_layer_t *l = &m->layers[i];
        if (l->type != CND_L_BATCHNORM) continue;
        int C = l->in.c;
        float *p = m->params + l->param_off, *st = m->state + l->state_off;
        for (int c = 0; c < C; c++) {
            p[c] = 0.5f + (float)cnd_rng_double(&r);
            p[C + c] = (float)cnd_rng_normal(&r);
            st[c] = (float)cnd_rng_normal(&r);
            st[C + c] = 0.2f + (float)cnd_rng_double(&r);
        }
    }
    CHECK_EQ_INT(cnd_quant_fold_bn(&f, m), 0);
    if (f) {
        CHECK(strstr(f->spec, "batchnorm") == NULL);
        CHECK_EQ_INT(f->n_layers, m->n_layers - 2);
        float *x = qt_pixels(in, 5, 9);
        for (size_t i = 0; i < 5 * cnd_shape_size(in); i++) x[i] = x[i] / 100.0f - 1.0f;
        const float *a, *b;
        float ya[10], yb[10];
        CHECK_EQ_INT(cnd_model_forward(m, x, 5, 0, &a), 0);
        memcpy(ya, a, sizeof ya);
        CHECK_EQ_INT(cnd_model_forward(f, x, 5, 0, &b), 0);
        memcpy(yb, b, sizeof yb);
        for (int i = 0; i < 10; i++) CHECK_NEAR(ya[i], yb[i], 1e-4 * (1 + fabsf(ya[i])));
        free(x);
    }
    cnd_model_destroy(&f);
    cnd_model_destroy(&m);
    CHECK_EQ_INT(cnd_model_new(&m, "flatten batchnorm dense(2)", in, 1), 0);
    if (m) {
        CHECK_EQ_INT(cnd_quant_fold_bn(&f, m), CND_EINVAL);
        CHECK(strstr(cnd_err_detail(), "layer 2") != NULL);
    }
    cnd_model_destroy(&m);
}

static void s_plan(void)
{
    cnd_model_t *m = NULL;
    cnd_shape_t in = {1, 8, 8};
    CHECK_EQ_INT(cnd_model_new(&m,
                               "conv2d(4,3,pad=1) relu maxpool(2) avgpool(2) flatten dense(5) "
                               "relu relu dense(3)",
                               in, 1),
                 0);
    if (!m) return;
    cnd_qplan_t p;
    CHECK_EQ_INT(cnd_quant_plan(&p, m), 0);
    CHECK_EQ_INT(p.n_points, 4); /* input, conv+relu, dense+relu, dense */
    CHECK_EQ_INT(p.point_layer[0], -1);
    CHECK_EQ_INT(p.point_layer[1], 1);
    CHECK_EQ_INT(p.fused_relu[0], 1);
    CHECK_EQ_INT(p.point_of_layer[0], -1);
    CHECK_EQ_INT(p.point_of_layer[2], 1); /* maxpool keeps it */
    CHECK_EQ_INT(p.fq_at[3], 1);          /* avgpool re-rounds */
    CHECK_EQ_INT(p.point_of_layer[3], 1);
    CHECK_EQ_INT(p.point_layer[2], 6); /* dense(5) + fused relu at layer 6 */
    CHECK_EQ_INT(p.fq_at[7], 0);       /* the second relu: stand-alone, same grid */
    CHECK_EQ_INT(p.point_layer[3], 8);
    cnd_model_destroy(&m);
}

/* Values that only reach a tanh get a [-4, 4] cap; values read by anything else do not. */
static void s_tanh_caps(void)
{
    struct {
        const char *spec;
        float cap[4]; /* per point: input, then the points in order */
    } c[] = {
        {"conv2d(4,3) tanh flatten dense(3)", {0, 4, 0, 0}},
        {"conv2d(4,3) relu maxpool(2) tanh flatten dense(3)", {0, 4, 0, 0}},
        {"conv2d(4,3) avgpool(2) tanh flatten dense(3)", {0, 0, 0, 0}}, /* avgpool re-rounds */
        {"flatten dense(6) tanh dense(3) tanh", {0, 4, 0, 4}},
        {"x=conv2d(4,3,pad=1) tanh add(@x) flatten dense(3)", {0, 0, 0, 0}}, /* x read twice */
    };
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        cnd_model_t *m = NULL;
        CHECK_EQ_INT(cnd_model_new(&m, c[k].spec, (cnd_shape_t){1, 6, 6}, 3), 0);
        if (!m) continue;
        cnd_qplan_t p;
        CHECK_EQ_INT(cnd_quant_plan(&p, m), 0);
        for (int q = 0; q < p.n_points && q < 4; q++)
            if (p.cap[q] != c[k].cap[q]) {
                fprintf(stderr, "%s: point %d cap %g, want %g\n", c[k].spec, q, p.cap[q],
                        c[k].cap[q]);
                CHECK(0);
            }
        cnd_qrange_t r = {-9, 2};
        cnd_quant_cap_range(&r, &p, 1);
        CHECK(r.lo == (c[k].cap[1] > 0 ? -4.0f : -9.0f) && r.hi == 2.0f);
        cnd_model_destroy(&m);
    }
}

/* Forward values and the straight-through backward of fake quantization. */
static void s_fake_quant_hooks(void)
{
    cnd_model_t *m = NULL;
    cnd_shape_t in = {1, 1, 6};
    CHECK_EQ_INT(cnd_model_new(&m, "dense(3)", in, 2), 0);
    if (!m) return;
    cnd_qplan_t plan;
    CHECK_EQ_INT(cnd_quant_plan(&plan, m), 0);
    cnd_qrange_t ranges[2] = {{-1.0f, 1.0f}, {-0.5f, 0.5f}};
    float x[2 * 6];
    cnd_rng_t r;
    cnd_rng_seed(&r, 5);
    for (int i = 0; i < 12; i++) x[i] = 1.5f * (float)cnd_rng_normal(&r);
    cnd_fq_t *fq = NULL;
    CHECK_EQ_INT(cnd_fq_new(&fq, m, &plan, ranges, NULL, 8, 0, 2), 0);
    if (!fq) return;
    const float *lg;
    CHECK_EQ_INT(cnd_model_forward(m, x, 2, 1, &lg), 0);
    /* manual: quantize inputs, weights (per row), compute, quantize outputs */
    float s0, s1, sw[3];
    int32_t z0, z1;
    cnd_quant_params(-1, 1, &s0, &z0);
    cnd_quant_params(-0.5f, 0.5f, &s1, &z1);
    const float *W = m->params, *bias = m->params + 18;
    cnd_quant_weight_scales(sw, W, 3, 6, 127, 0);
    float xq[12], pre[6], want[6];
    uint8_t mk[6];
    memcpy(xq, x, sizeof xq);
    cnd_quant_fake(xq, 12, s0, z0, NULL);
    for (int b = 0; b < 2; b++)
        for (int o = 0; o < 3; o++) {
            float acc = bias[o];
            for (int k = 0; k < 6; k++)
                acc +=
                    xq[b * 6 + k] * (float)cnd_quant_q(W[o * 6 + k], sw[o], 0, -127, 127) * sw[o];
            pre[b * 3 + o] = want[b * 3 + o] = acc;
        }
    cnd_quant_fake(want, 6, s1, z1, mk);
    for (int i = 0; i < 6; i++) CHECK_NEAR(lg[i], want[i], 1e-5);
    int clipped = 0;
    for (int i = 0; i < 6; i++) clipped += !mk[i];
    CHECK(clipped > 0 && clipped < 6); /* the test exercises both sides of the mask */
    /* backward: dW = sum_b (dlogits * mask) x_hat, db = sum_b dlogits * mask */
    float dl[6] = {0.3f, -0.2f, 0.5f, 0.1f, 0.7f, -0.4f};
    cnd_model_zero_grad(m);
    cnd_model_backward(m, dl);
    for (int o = 0; o < 3; o++) {
        double db = 0;
        for (int b = 0; b < 2; b++) db += mk[b * 3 + o] ? dl[b * 3 + o] : 0.0;
        CHECK_NEAR(m->grads[18 + o], db, 1e-6);
        for (int k = 0; k < 6; k++) {
            double dw = 0;
            for (int b = 0; b < 2; b++) dw += (mk[b * 3 + o] ? dl[b * 3 + o] : 0.0) * xq[b * 6 + k];
            CHECK_NEAR(m->grads[o * 6 + k], dw, 1e-5);
        }
    }
    (void)pre;
    /* removing the hooks restores the float path */
    cnd_fq_destroy(&fq);
    CHECK(m->hooks == NULL);
    CHECK_EQ_INT(cnd_model_forward(m, x, 2, 0, &lg), 0);
    for (int o = 0; o < 3; o++) {
        float acc = bias[o];
        for (int k = 0; k < 6; k++) acc += x[k] * W[o * 6 + k];
        CHECK_NEAR(lg[o], acc, 1e-5);
    }
    cnd_model_destroy(&m);
}

/* The integer runtime matches the fake-quantized float model it was built from. */
static void s_int_vs_fake(const char *spec, cnd_shape_t in, int wbits)
{
    cnd_qmodel_t *q = NULL;
    cnd_model_t *m = NULL;
    CHECK_EQ_INT(qt_make(&q, &m, spec, in, wbits, CND_QM_MINMAX, 21), 0);
    if (!q) return;
    /* same ranges again for the fake-quant model */
    size_t n = 64, d = cnd_shape_size(in);
    float *x = qt_pixels(in, n, 23), *xn = malloc(n * d * sizeof(float));
    memcpy(xn, x, n * d * sizeof(float));
    cnd_model_normalize(m, xn, n);
    cnd_qplan_t plan;
    cnd_qrange_t ranges[CND_QUANT_MAX_POINTS];
    int w_mse[CND_SPEC_MAX_LAYERS];
    CHECK_EQ_INT(cnd_quant_plan(&plan, m), 0);
    float *xc = qt_pixels(in, 64, 21 + 2); /* the calibration pixels qt_make used */
    cnd_model_normalize(m, xc, 64);
    CHECK_EQ_INT(cnd_quant_calibrate(ranges, NULL, w_mse, m, &plan, xc, 64, CND_QM_MINMAX, wbits),
                 0);
    cnd_fq_t *fq = NULL;
    CHECK_EQ_INT(cnd_fq_new(&fq, m, &plan, ranges, w_mse, wbits, 0, plan.n_points), 0);
    const float *lg;
    CHECK_EQ_INT(cnd_model_forward(m, xn, (int)n, 0, &lg), 0);
    uint8_t *bytes;
    size_t len;
    CHECK_EQ_INT(cnd_artifact_serialize(q, &bytes, &len), 0);
    cnd_artifact_t *a = NULL;
    CHECK_EQ_INT(cnd_artifact_open(&a, bytes, len, spec), 0);
    int K = q->n_classes, far = 0, agree = 0;
    const cnd_qlayer_t *last = &q->layers[q->n_layers - 1];
    cnd_dataset_t ds = {.n = n, .shape = in, .x = x, .n_classes = K};
    int8_t *xi = malloc(d), out[64];
    double maxerr = 0;
    for (size_t s = 0; a && s < n; s++) {
        cnd_qeval_input(a, xi, &ds, s);
        cnd_rt_run_i8(a->rt, out, xi);
        int bi = 0, bf = 0;
        for (int k = 0; k < K; k++) {
            double deq = last->out_scale * (out[k] - last->out_zp);
            double e = fabs(deq - lg[s * K + k]) / last->out_scale;
            if (e > maxerr) maxerr = e;
            far += e > 3.0;
            if (out[k] > out[bi]) bi = k;
            if (lg[s * K + k] > lg[s * K + bf]) bf = k;
        }
        agree += bi == bf;
    }
    /* a few LSB of difference from bias rounding and double-rounded requantization */
    if (far)
        fprintf(stderr, "%s w%d: %d logits more than 3 LSB apart (max %.1f)\n", spec, wbits, far,
                maxerr);
    CHECK(far <= (int)(n * K / 50));
    CHECK(agree >= (int)(n * 9 / 10));
    cnd_fq_destroy(&fq);
    cnd_artifact_destroy(&a);
    free(bytes);
    free(xi);
    free(x);
    free(xn);
    free(xc);
    cnd_qmodel_destroy(&q);
    cnd_model_destroy(&m);
}

static void s_calib_methods(void)
{
    cnd_model_t *m = NULL;
    cnd_shape_t in = {1, 8, 8};
    CHECK_EQ_INT(cnd_model_new(&m, "conv2d(4,3) relu flatten dense(6) dense(3)", in, 3), 0);
    if (!m) return;
    size_t n = 200;
    float *x = qt_pixels(in, n, 4);
    x[777] = 255.0f * 4; /* one outlier in 12800 values */
    for (int c = 0; c < 1; c++) {
        m->norm_mean[c] = 128;
        m->norm_std[c] = 70;
    }
    cnd_model_normalize(m, x, n);
    cnd_qplan_t plan;
    CHECK_EQ_INT(cnd_quant_plan(&plan, m), 0);
    cnd_qrange_t rmm[8], rpc[8], rmse[8], rauto[8];
    cnd_qmethod_t ch[8];
    int wm[CND_SPEC_MAX_LAYERS];
    CHECK_EQ_INT(cnd_quant_calibrate(rmm, NULL, wm, m, &plan, x, n, CND_QM_MINMAX, 8), 0);
    for (int i = 0; i < m->n_layers; i++) CHECK_EQ_INT(wm[i], 0);
    CHECK_EQ_INT(cnd_quant_calibrate(rpc, NULL, wm, m, &plan, x, n, CND_QM_PERCENTILE, 4), 0);
    CHECK_EQ_INT(wm[0], 1); /* int4 uses MSE weight clipping */
    CHECK_EQ_INT(cnd_quant_calibrate(rmse, NULL, wm, m, &plan, x, n, CND_QM_MSE, 8), 0);
    CHECK_EQ_INT(cnd_quant_calibrate(rauto, ch, wm, m, &plan, x, n, CND_QM_AUTO, 8), 0);
    float xmin = x[0], xmax = x[0];
    for (size_t i = 0; i < n * 64; i++) {
        xmin = fminf(xmin, x[i]);
        xmax = fmaxf(xmax, x[i]);
    }
    CHECK_NEAR(rmm[0].lo, xmin, 1e-6);
    CHECK_NEAR(rmm[0].hi, xmax, 1e-6);
    CHECK(rpc[0].hi < rmm[0].hi); /* 1 value in 12800 is above the 99.99th percentile */
    CHECK(rmse[0].hi <= rmm[0].hi);
    CHECK(rpc[1].lo == 0.0f && rmm[1].lo == 0.0f); /* after ReLU */
    for (int p = 0; p < plan.n_points; p++) {
        CHECK(ch[p] >= CND_QM_MINMAX && ch[p] <= CND_QM_MSE);
        const cnd_qrange_t *want = ch[p] == CND_QM_MINMAX       ? &rmm[p]
                                   : ch[p] == CND_QM_PERCENTILE ? &rpc[p]
                                                                : &rmse[p];
        CHECK_NEAR(rauto[p].lo, want->lo, 1e-6);
        CHECK_NEAR(rauto[p].hi, want->hi, 1e-6);
    }
    CHECK(m->hooks == NULL);
    CHECK_EQ_INT(cnd_quant_calibrate(rmm, NULL, wm, m, &plan, x, 0, CND_QM_MINMAX, 8), CND_EINVAL);
    free(x);
    cnd_model_destroy(&m);
}

int main(void)
{
    s_params();
    s_weight_scales();
    s_fold_bn();
    s_plan();
    s_tanh_caps();
    s_fake_quant_hooks();
    s_calib_methods();
    s_int_vs_fake("flatten dense(16) relu dense(4)", (cnd_shape_t){1, 6, 6}, 8);
    s_int_vs_fake("conv2d(6,3,pad=1) relu maxpool(2) flatten dense(8) relu dense(5)",
                  (cnd_shape_t){2, 8, 8}, 8);
    s_int_vs_fake("conv2d(6,3,pad=1) relu avgpool(2) conv2d(5,3) relu gap dense(4)",
                  (cnd_shape_t){3, 9, 9}, 8);
    s_int_vs_fake("conv2d(6,3,pad=1) relu maxpool(2) flatten dense(8) relu dense(5)",
                  (cnd_shape_t){2, 8, 8}, 4);
    s_int_vs_fake("conv2d(6,3,pad=1) tanh maxpool(2) flatten dense(8) tanh dense(5)",
                  (cnd_shape_t){2, 8, 8}, 8);
    return check_result("test_quant");
}
