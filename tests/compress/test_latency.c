/*
 * test_latency.c: the latency cost model (compress/latency.h): the features of a known model,
 * counted by hand; the fit recovering known coefficients from exact synthetic latencies (and
 * zero held-out error), keeping coefficients non-negative; cost files written and read back,
 * refused when malformed (the line named); the built-in x86 model; graphs refused.
 */
#include "check.h"
#include "error.h"
#include "latency.h"
#include "model.h"
#include "rng.h"

#include <string.h>

static void test_features(void)
{
    cnd_model_t *m = NULL;
    cnd_shape_t in = {1, 8, 8};
    CHECK(cnd_model_new(&m,
                        "conv2d(4,3,pad=1) batchnorm relu maxpool(2) conv2d(6,3,stride=2) "
                        "relu flatten dense(16) relu tanh dense(10)",
                        in, 1) == 0);
    if (!m) return;
    double f[CND_LAT_NF];
    CHECK(cnd_latency_features(m, f) == 0);
    CHECK(f[0] == 1.0);
    /* conv(4), bn folded, relu standalone (bn in between), maxpool, conv(6) with its relu fused,
     * flatten free, dense(16) with relu fused, tanh, dense(10): 7 ops */
    CHECK(f[1] == 7.0);
    CHECK(f[2] == 4.0 * 9 * 64 + 6.0 * 4 * 9 * 1); /* 4x4 -> 1x1 at stride 2 */
    CHECK(f[3] == 64.0 * 9 + 1.0 * 4 * 9);
    CHECK(f[4] == 4.0 * 64 + 6.0);
    CHECK(f[5] == 16.0 * 6 + 10.0 * 16);
    CHECK(f[6] == 26.0);
    CHECK(f[7] == 4.0 * 64 /* relu */ + 4.0 * 64 /* maxpool */ + 16.0 /* tanh */);
    CHECK(f[8] == 0.0);
    cnd_model_destroy(&m);
    CHECK(cnd_model_new(&m, "a=conv2d(4,3,pad=1) relu conv2d(4,3,pad=1) add(@a) gap dense(10)", in,
                        1) == 0);
    if (m) {
        CHECK(cnd_latency_features(m, f) == CND_EINVAL);
        CHECK(strstr(cnd_err_detail(), "latency model"));
    }
    cnd_model_destroy(&m);
}

static void test_fit(void)
{
    enum { N = 40 };
    double f[N][CND_LAT_NF], y[N];
    int held[N];
    const double truth[CND_LAT_NF] = {2.0, 0.5, 1e-4, 2e-4, 3e-3, 5e-4, 1e-2, 0.0, 4e-3};
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
    cnd_latency_model_t c = {.device = "test"};
    CHECK(cnd_latency_fit(&c, (const double(*)[CND_LAT_NF])f, y, held, N) == 0);
    for (int k = 0; k < CND_LAT_NF; k++) CHECK_NEAR(c.coef[k], truth[k], 1e-6 * (truth[k] + 1e-3));
    CHECK(c.heldout_median < 1e-6 && c.heldout_max < 1e-6);
    CHECK_EQ_INT(c.n_train, 30);
    CHECK_EQ_INT(c.n_heldout, 10);
    /* a feature that only hurts gets a negative least-squares weight: it is dropped, not kept */
    for (int i = 0; i < N; i++) y[i] -= 1e-3 * f[i][7] * (i % 2);
    CHECK(cnd_latency_fit(&c, (const double(*)[CND_LAT_NF])f, y, held, N) == 0);
    for (int k = 0; k < CND_LAT_NF; k++) CHECK(c.coef[k] >= 0.0);
    /* too few rows, a latency of zero */
    CHECK(cnd_latency_fit(&c, (const double(*)[CND_LAT_NF])f, y, held, 5) == CND_EINVAL);
    y[2] = 0;
    CHECK(cnd_latency_fit(&c, (const double(*)[CND_LAT_NF])f, y, held, N) == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "measurement 3"));
}

static void test_files(void)
{
    cnd_latency_model_t c = {.device = "x86",
                             .heldout_median = 0.04,
                             .heldout_max = 0.2,
                             .n_train = 36,
                             .n_heldout = 12};
    for (int k = 0; k < CND_LAT_NF; k++) c.coef[k] = 0.25 * k;
    char text[2048];
    cnd_latency_format(&c, text, sizeof text);
    cnd_latency_model_t back;
    CHECK(cnd_latency_parse(&back, text, "t") == 0);
    CHECK(!memcmp(back.coef, c.coef, sizeof c.coef) && !strcmp(back.device, "x86"));
    CHECK(back.heldout_median == 0.04 && back.n_heldout == 12 && back.n_train == 36);
    CHECK(cnd_latency_parse(&back, "device x86\ncoef one 1\n", "short.costs") == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "short.costs lacks"));
    CHECK(cnd_latency_parse(&back, "device x86\ncoef conv_macs -1\n", "neg.costs") == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "neg.costs line 2"));
    CHECK(cnd_latency_parse(&back, "# c\ndevice x86\nbogus 3\n", "b.costs") == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "b.costs line 3"));
    const cnd_latency_model_t *x = cnd_latency_builtin("x86");
    CHECK(x != NULL);
    CHECK(x && x->n_heldout > 0 && x->coef[0] > 0);
    CHECK(cnd_latency_builtin("cortex-m4") == NULL);
}

int main(void)
{
    test_features();
    test_fit();
    test_files();
    return check_result("test_latency");
}
