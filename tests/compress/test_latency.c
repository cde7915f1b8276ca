/*
 * test_latency.c: the latency cost model (compress/latency.h): the features of known models
 * (a chain with a fused conv + maxpool, a graph with mbconv, add, concat, hardswish, a grouped
 * conv), counted by hand; the fit recovering known coefficients from exact synthetic latencies
 * (and zero held-out error), keeping coefficients non-negative; cost files written and read
 * back, refused when malformed (the line or coefficient named); the built-in classes.
 */
#include "check.h"
#include "error.h"
#include "latency.h"
#include "model.h"
#include "rng.h"

#include <string.h>

/* Feature `name` of f. */
static double s_f(const double *f, const char *name)
{
    for (int k = 0; k < CND_LAT_NF; k++)
        if (!strcmp(cnd_latency_feature_name(k), name)) return f[k];
    CHECK(!"no such feature");
    return -1;
}

static void test_features(void)
{
    cnd_model_t *m = NULL;
    cnd_shape_t in = {1, 8, 8};
    double f[CND_LAT_NF];
    /* bn folded, so the relu follows conv(4) and is fused; the x86 kernels run the maxpool
     * inside that conv; conv(6) 4x4 -> 1x1 at stride 2 with its relu fused; flatten free;
     * dense(16) with relu fused, tanh, dense(10): 5 layers */
    CHECK(cnd_model_new(&m,
                        "conv2d(4,3,pad=1) batchnorm relu maxpool(2) conv2d(6,3,stride=2) "
                        "relu flatten dense(16) relu tanh dense(10)",
                        in, 1) == 0);
    CHECK(m && cnd_latency_features(m, f) == 0);
    CHECK(s_f(f, "one") == 1.0 && s_f(f, "layers") == 5.0 && s_f(f, "elt") == 16.0);
    /* 16-channel blocks x k x kC rounded up to 4: 64 px * 16 * 3 * 4 + 1 * 16 * 3 * 12 */
    CHECK(s_f(f, "x_conv_vmacs") == 64.0 * 16 * 3 * 4 + 16.0 * 3 * 12);
    CHECK(s_f(f, "x_conv_in") == 10.0 * 10 + 4 * 4 * 4); /* padded input copies */
    CHECK(s_f(f, "x_conv_out") == 16.0 * 4 + 6);         /* pooled outputs only */
    CHECK(s_f(f, "x_conv_pix") == 64.0 + 1 && s_f(f, "r_conv_pix") == 64.0 + 1);
    CHECK(s_f(f, "x_maxpool_in") == 0.0);
    CHECK(s_f(f, "x_dense_vmacs") == 16.0 * 64 + 12 * 64); /* rows by 4, K by 64 */
    CHECK(s_f(f, "x_dense_out") == 26.0 && s_f(f, "r_dense_out") == 26.0);
    CHECK(s_f(f, "r_conv_macs") == 64.0 * 4 * 9 + 6.0 * 36);
    CHECK(s_f(f, "r_conv_patch") == 64.0 * 9 + 36);
    CHECK(s_f(f, "r_conv_out") == 256.0 + 6);
    CHECK(s_f(f, "r_dense_macs") == 16.0 * 6 + 10 * 16);
    CHECK(s_f(f, "r_maxpool_in") == 256.0);
    /* padding: columns 0 and 7 gather their 3 rows value by value, rows 0 and 7 one row */
    CHECK(s_f(f, "r_conv_edge") == (8.0 * 2 * 3 + 6.0 * 2) * 3);
    CHECK(s_f(f, "r_conv_big") == 0.0 && s_f(f, "r_dense_big") == 0.0);
    cnd_model_destroy(&m);
    /* a graph: conv(8,1) relu6 fused; mbconv(1,8,1) = depthwise 3x3 (relu6 fused), conv(8,1),
     * add; a=conv(4,3) read twice, conv(4,1), concat, hardswish, avgpool, gap, dense: 11 */
    CHECK(cnd_model_new(&m,
                        "conv2d(8,1) batchnorm relu6 mbconv(1,8,1) a=conv2d(4,3,pad=1) "
                        "conv2d(4,1) concat(@a) hardswish avgpool(2) gap dense(10)",
                        in, 1) == 0);
    CHECK(m && cnd_latency_features(m, f) == 0);
    CHECK(s_f(f, "layers") == 11.0 && s_f(f, "elt") == 512.0 && s_f(f, "concat") == 512.0);
    CHECK(s_f(f, "avg_in") == 512.0 + 128);
    CHECK(s_f(f, "x_conv_vmacs") == 64.0 * 16 * (4 + 8 + 3 * 24 + 4));
    CHECK(s_f(f, "x_conv_in") == 64.0 + 512 + 800 + 256);
    CHECK(s_f(f, "x_conv_out") == 64.0 * (8 + 8 + 4 + 4) && s_f(f, "r_conv_out") == 1536.0);
    CHECK(s_f(f, "x_dw_vec") == 64.0 * 9 && s_f(f, "x_dw_out") == 512.0);
    CHECK(s_f(f, "x_dw_tail") == 0.0);
    CHECK(s_f(f, "r_dw_macs") == 64.0 * 8 * 9 && s_f(f, "r_dw_out") == 512.0);
    CHECK(s_f(f, "x_add") == 512.0 && s_f(f, "r_add") == 512.0);
    CHECK(s_f(f, "r_conv_macs") == 64.0 * (8 + 64 + 4 * 72 + 16));
    CHECK(s_f(f, "r_conv_patch") == 64.0 * (1 + 8 + 72 + 4));
    CHECK(s_f(f, "gconv_macs") == 0.0);
    cnd_model_destroy(&m);
    /* grouped, not depthwise: the reference kernel on every class */
    CHECK(cnd_model_new(&m, "conv2d(4,1) conv2d(8,3,pad=1,groups=2) relu gap dense(10)", in, 1) ==
          0);
    CHECK(m && cnd_latency_features(m, f) == 0);
    CHECK(s_f(f, "gconv_macs") == 64.0 * 8 * 9 * 2 && s_f(f, "gconv_out") == 512.0);
    CHECK(s_f(f, "x_dw_vec") == 0.0 && s_f(f, "layers") == 4.0);
    cnd_model_destroy(&m);
    /* depthwise over 12 channels: one vector of 8 and 4 channels one by one per tap */
    CHECK(cnd_model_new(&m, "conv2d(12,1) dwconv(3,pad=1) gap dense(10)", in, 1) == 0);
    CHECK(m && cnd_latency_features(m, f) == 0);
    CHECK(s_f(f, "x_dw_vec") == 64.0 * 9 && s_f(f, "x_dw_tail") == 64.0 * 9 * 4);
    CHECK(s_f(f, "r_dw_macs") == 64.0 * 9 * 12);
    cnd_model_destroy(&m);
    /* weights beyond 32 KiB: 784 x 64 bytes do not stay in L1, 64 x 10 do */
    cnd_shape_t big = {1, 28, 28};
    CHECK(cnd_model_new(&m, "flatten dense(64) relu dense(10)", big, 1) == 0);
    CHECK(m && cnd_latency_features(m, f) == 0);
    CHECK(s_f(f, "r_dense_big") == 784.0 * 64 && s_f(f, "r_dense_macs") == 784.0 * 64 + 640);
    cnd_model_destroy(&m);
}

static void test_fit(void)
{
    enum { N = 40 };
    double f[N][CND_LAT_NF], y[N];
    int held[N];
    double truth[CND_LAT_NF];
    for (int k = 0; k < CND_LAT_NF; k++) /* x86 set only; one feature that costs nothing */
        truth[k] = cnd_latency_feature_used(k, CND_LAT_KERNELS_X86) && k != 8 ? 1e-3 * (k + 1) : 0;
    truth[0] = 2.0;
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 3);
    for (int i = 0; i < N; i++) {
        f[i][0] = 1.0;
        for (int k = 1; k < CND_LAT_NF; k++)
            f[i][k] = (double)cnd_rng_below(&rng, 100000) * (k == 1 ? 1e-4 : 1.0);
        y[i] = 0;
        for (int k = 0; k < CND_LAT_NF; k++) y[i] += truth[k] * f[i][k];
        held[i] = i % 4 == 3;
    }
    cnd_latency_model_t c = {.device = "test", .kernels = CND_LAT_KERNELS_X86};
    CHECK(cnd_latency_fit(&c, (const double(*)[CND_LAT_NF])f, y, held, N) == 0);
    for (int k = 0; k < CND_LAT_NF; k++) CHECK_NEAR(c.coef[k], truth[k], 1e-4 * (truth[k] + 1e-3));
    CHECK(c.heldout_median < 1e-5 && c.heldout_max < 1e-5);
    CHECK_EQ_INT(c.n_train, 30);
    CHECK_EQ_INT(c.n_heldout, 10);
    /* a feature that only hurts gets a negative least-squares weight: it is dropped, not kept */
    for (int i = 0; i < N; i++) y[i] -= 1e-3 * f[i][7] * (i % 2);
    CHECK(cnd_latency_fit(&c, (const double(*)[CND_LAT_NF])f, y, held, N) == 0);
    for (int k = 0; k < CND_LAT_NF; k++) CHECK(c.coef[k] >= 0.0);
    /* too few rows (fewer than the x86 set's 18 features), a latency of zero */
    CHECK(cnd_latency_fit(&c, (const double(*)[CND_LAT_NF])f, y, held, 20) == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "15 training measurements; the fit needs at least 18"));
    y[2] = 0;
    CHECK(cnd_latency_fit(&c, (const double(*)[CND_LAT_NF])f, y, held, N) == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "measurement 3"));
}

static void test_files(void)
{
    cnd_latency_model_t c = {.device = "x86",
                             .kernels = CND_LAT_KERNELS_REF,
                             .heldout_median = 0.04,
                             .heldout_max = 0.2,
                             .n_train = 36,
                             .n_heldout = 12};
    for (int k = 0; k < CND_LAT_NF; k++)
        c.coef[k] = cnd_latency_feature_used(k, c.kernels) ? 0.25 * k : 0;
    char text[2048];
    cnd_latency_format(&c, text, sizeof text);
    cnd_latency_model_t back;
    CHECK(cnd_latency_parse(&back, text, "t") == 0);
    CHECK(!memcmp(back.coef, c.coef, sizeof c.coef) && !strcmp(back.device, "x86"));
    CHECK(back.kernels == CND_LAT_KERNELS_REF);
    CHECK(back.heldout_median == 0.04 && back.n_heldout == 12 && back.n_train == 36);
    /* a coefficient of the other kernel set, or a missing one, is refused */
    char *at = strstr(text, "coef r_add");
    CHECK(at != NULL);
    if (at) {
        memcpy(at, "coef x_add", 10);
        CHECK(cnd_latency_parse(&back, text, "mixed.costs") == CND_EINVAL);
        CHECK(strstr(cnd_err_detail(), "mixed.costs: coefficient"));
    }
    CHECK(cnd_latency_parse(&back, "device x86\ncoef one 1\n", "nok.costs") == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "nok.costs lacks the device or kernels line"));
    CHECK(cnd_latency_parse(&back, "device x86\nkernels arm\n", "k.costs") == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "k.costs line 2"));
    CHECK(cnd_latency_parse(&back, "device x86\nkernels x86\ncoef one 1\n", "short.costs") ==
          CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "short.costs: coefficient layers is missing"));
    CHECK(cnd_latency_parse(&back, "device x86\ncoef r_conv_macs -1\n", "neg.costs") == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "neg.costs line 2"));
    CHECK(cnd_latency_parse(&back, "# c\ndevice x86\nbogus 3\n", "b.costs") == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "b.costs line 3"));
    const cnd_latency_model_t *x = cnd_latency_builtin("x86");
    CHECK(x != NULL);
    CHECK(x && x->n_heldout > 0 && x->kernels == CND_LAT_KERNELS_X86);
    const cnd_latency_model_t *a = cnd_latency_builtin("arm-a7-qemu");
    CHECK(a && a->n_heldout > 0 && a->kernels == CND_LAT_KERNELS_REF);
    CHECK(cnd_latency_builtin("cortex-m4") == NULL);
}

int main(void)
{
    test_features();
    test_fit();
    test_files();
    return check_result("test_latency");
}
