/* test_dp_accountant.c: common/dp_accountant (the DP-SGD privacy accountant): closed forms,
 * published values, the properties RDP must have, noise solving and argument checks. The
 * agreement with an independent implementation on a grid is tests/common/test_dp_accountant.py. */
#include "check.h"
#include "dp_accountant.h"
#include "error.h"

#include <math.h>
#include <string.h>

/* The order list of TF-Privacy's compute_dp_sgd_privacy.py of 2019, under which its README
 * published its MNIST tutorial figures (standard conversion). */
static const double tf_orders[] = {
    1.25, 1.5, 1.75, 2.,  2.25, 2.5, 3.,  3.5, 4.,  4.5, 5.,  6.,  7.,  8.,  9.,  10., 11., 12.,
    13.,  14., 15.,  16., 17.,  18., 19., 20., 21., 22., 23., 24., 25., 26., 27., 28., 29., 30.,
    31.,  32., 33.,  34., 35.,  36., 37., 38., 39., 40., 41., 42., 43., 44., 45., 46., 47., 48.,
    49.,  50., 51.,  52., 53.,  54., 55., 56., 57., 58., 59., 60., 61., 62., 63., 128, 256, 512};

static double s_eps(double q, double sigma, long steps, double delta, cnd_dp_conversion_t conv,
                    const double *orders, size_t n)
{
    cnd_dp_params_t p = {q, sigma, steps, delta, conv, orders, n};
    double e = -1, o = 0;
    CHECK(cnd_dp_epsilon(&p, &e, &o) == 0);
    return e;
}

/* TF-Privacy README (MNIST tutorial, N = 60000, batch 256, delta 1e-5): noise 1.1 for 60
 * epochs gives eps 3.01, noise 1.3 for 15 epochs 1.19 (steps = ceil(epochs N / batch)). */
static void test_published(void)
{
    size_t n = sizeof tf_orders / sizeof tf_orders[0];
    double q = 256.0 / 60000.0;
    double e1 = s_eps(q, 1.1, 14063, 1e-5, CND_DP_CONV_STANDARD, tf_orders, n);
    double e2 = s_eps(q, 1.3, 3516, 1e-5, CND_DP_CONV_STANDARD, tf_orders, n);
    CHECK_NEAR(e1, 3.01, 0.005);
    CHECK_NEAR(e2, 1.19, 0.005);
    /* the improved conversion is never worse, and the default orders only help */
    CHECK(s_eps(q, 1.1, 14063, 1e-5, CND_DP_CONV_IMPROVED, tf_orders, n) < e1);
    CHECK(s_eps(q, 1.1, 14063, 1e-5, CND_DP_CONV_STANDARD, NULL, 0) <= e1);
}

static void test_closed_forms(void)
{
    /* q = 1: the Gaussian mechanism, RDP alpha / (2 sigma^2) per step, fractional or not */
    CHECK_NEAR(cnd_dp_rdp(1.0, 2.0, 10, 3.0), 10 * 3.0 / 8.0, 1e-12);
    CHECK_NEAR(cnd_dp_rdp(1.0, 2.0, 10, 2.5), 10 * 2.5 / 8.0, 1e-12);
    CHECK(cnd_dp_rdp(0.0, 1.0, 100, 8.0) == 0.0);
    /* alpha = 2 in closed form: A_2 = 1 + q^2 (exp(1/sigma^2) - 1) */
    double q = 0.01, s = 0.9;
    CHECK_NEAR(cnd_dp_log_a(q, s, 2.0), log1p(q * q * expm1(1 / (s * s))), 1e-15);
    /* the fractional series between integers, compared at an integer it also handles: the
     * two paths agree just off the integer (continuity) */
    double la3 = cnd_dp_log_a(q, s, 3.0), la3f = cnd_dp_log_a(q, s, 3.0 + 1e-9);
    CHECK(fabs(la3f - la3) <= 1e-6 * la3);
    double la16 = cnd_dp_log_a(0.05, 1.2, 16.0), la16f = cnd_dp_log_a(0.05, 1.2, 16.0 - 1e-9);
    CHECK(fabs(la16f - la16) <= 1e-6 * la16);
}

/* RDP grows with the order and with q, shrinks with sigma; large orders at small noise stay
 * finite in log space (terms of exp(512^2/2/0.25) would overflow a double). */
static void test_properties(void)
{
    double orders[CND_DP_DEFAULT_ORDERS];
    cnd_dp_default_orders(orders);
    CHECK(orders[0] == 1.1 && orders[CND_DP_DEFAULT_ORDERS - 1] == 512.0);
    double prev = 0;
    for (int i = 0; i < CND_DP_DEFAULT_ORDERS; i++) {
        double r = cnd_dp_rdp(0.02, 0.7, 1, orders[i]);
        CHECK(isfinite(r) && r >= prev);
        prev = r;
    }
    CHECK(cnd_dp_rdp(0.02, 1.0, 1, 8) < cnd_dp_rdp(0.04, 1.0, 1, 8));
    CHECK(cnd_dp_rdp(0.02, 1.0, 1, 8) > cnd_dp_rdp(0.02, 1.5, 1, 8));
    double big = cnd_dp_rdp(0.01, 0.5, 1, 512.0);
    CHECK(isfinite(big) && big > 100);
    CHECK(isfinite(cnd_dp_rdp(0.01, 0.5, 1, 511.5)));
    CHECK(isnan(cnd_dp_log_a(1.5, 1.0, 2.0)));
    CHECK(isnan(cnd_dp_log_a(0.1, 1.0, 1.0)));
    /* more steps, more epsilon; larger delta, less */
    double e1 = s_eps(0.01, 1.0, 100, 1e-5, CND_DP_CONV_IMPROVED, NULL, 0);
    CHECK(e1 < s_eps(0.01, 1.0, 1000, 1e-5, CND_DP_CONV_IMPROVED, NULL, 0));
    CHECK(e1 > s_eps(0.01, 1.0, 100, 1e-3, CND_DP_CONV_IMPROVED, NULL, 0));
    CHECK(s_eps(0.01, 1.0, 0, 1e-5, CND_DP_CONV_IMPROVED, NULL, 0) == 0.0);
}

static void test_solve(void)
{
    cnd_dp_params_t p = {.q = 2048.0 / 60000.0, .steps = 40 * 30, .delta = 1e-5};
    double s = 0, e = 0;
    CHECK(cnd_dp_solve_noise(&p, 3.0, &s, &e) == 0);
    CHECK(e <= 3.0 && e > 2.999);
    p.sigma = s * (1 - 1e-6);
    double e_less = 0;
    CHECK(cnd_dp_epsilon(&p, &e_less, NULL) == 0);
    CHECK(e_less > 3.0);
    /* unreachable: one record seen every step, epsilon 1e-6 */
    cnd_dp_params_t hard = {.q = 1.0, .steps = 1000000, .delta = 1e-10};
    CHECK(cnd_dp_solve_noise(&hard, 1e-6, &s, NULL) == CND_ERANGE);
    CHECK(cnd_dp_solve_noise(&p, 0.0, &s, NULL) == CND_EINVAL);
}

/* Composition: runs of the same mechanism compose to one longer run; different runs to more
 * than either; a bad run is named. */
static void test_composed(void)
{
    cnd_dp_params_t p = {.delta = 1e-5};
    cnd_dp_segment_t two[2] = {{0.02, 1.1, 300}, {0.02, 1.1, 700}};
    double e2 = 0, e1 = 0, ea = 0, eb = 0, eab = 0;
    CHECK(cnd_dp_epsilon_composed(&p, two, 2, &e2, NULL) == 0);
    cnd_dp_params_t one = {.q = 0.02, .sigma = 1.1, .steps = 1000, .delta = 1e-5};
    CHECK(cnd_dp_epsilon(&one, &e1, NULL) == 0);
    CHECK_NEAR(e2, e1, 1e-12 * e1);
    cnd_dp_segment_t ab[2] = {{0.01, 0.9, 500}, {0.05, 2.0, 200}};
    CHECK(cnd_dp_epsilon_composed(&p, ab, 1, &ea, NULL) == 0);
    CHECK(cnd_dp_epsilon_composed(&p, ab + 1, 1, &eb, NULL) == 0);
    CHECK(cnd_dp_epsilon_composed(&p, ab, 2, &eab, NULL) == 0);
    CHECK(eab > ea && eab > eb && eab < ea + eb); /* RDP composes tighter than adding epsilons */
    ab[1].q = 2;
    CHECK(cnd_dp_epsilon_composed(&p, ab, 2, &eab, NULL) == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "run 2") != NULL);
    CHECK(cnd_dp_epsilon_composed(&p, ab, 0, &eab, NULL) == CND_EINVAL);
}

static void test_refusals(void)
{
    double e, o[1] = {0.5};
    cnd_dp_params_t p = {.q = 0.01, .sigma = 1, .steps = 10, .delta = 1e-5};
    p.q = 1.5;
    CHECK(cnd_dp_epsilon(&p, &e, NULL) == CND_EINVAL);
    p.q = 0.01;
    p.sigma = 0;
    CHECK(cnd_dp_epsilon(&p, &e, NULL) == CND_EINVAL);
    p.sigma = 1;
    p.delta = 0;
    CHECK(cnd_dp_epsilon(&p, &e, NULL) == CND_EINVAL);
    p.delta = 1e-5;
    p.steps = -1;
    CHECK(cnd_dp_epsilon(&p, &e, NULL) == CND_EINVAL);
    p.steps = 10;
    p.orders = o;
    p.n_orders = 1;
    CHECK(cnd_dp_epsilon(&p, &e, NULL) == CND_EINVAL);
    p.n_orders = 0;
    CHECK(cnd_dp_epsilon(&p, &e, NULL) == CND_EINVAL);
}

/* The distributed discrete Gaussian (KLS 2021 Prop. 14): one party is the discrete Gaussian
 * mechanism (alpha l2^2 / (2 s2), as the continuous one); with enough variance tau vanishes and
 * n parties of variance s2 act as one of n s2; at small variance tau is the formula's. */
static void test_ddg(void)
{
    cnd_dp_ddg_t one = {10, 100, 4, 1, 1000};
    CHECK_NEAR(cnd_dp_ddg_rdp(&one, 3.0), 3.0 * 100 / (2 * 4), 1e-12);
    cnd_dp_ddg_t three = {10, 100, 400, 3, 1000};
    CHECK_NEAR(cnd_dp_ddg_rdp(&three, 5.5), 5.5 * 100 / (2 * 1200.0), 1e-12);
    /* s2 = 1/4, n = 2: tau = 10 exp(-pi^2 / 4) = 0.848; the smallest of the three terms */
    cnd_dp_ddg_t small = {1, 1, 0.25, 2, 3};
    double pi = 3.14159265358979323846, tau = 10 * exp(-pi * pi / 4), a = 2;
    double l = 1 / sqrt(0.5);
    double t1 = a / 2 * l * l + 3 * tau, t2 = a / 2 * (l * l + 2 * l * tau + 3 * tau * tau),
           t3 = a / 2 * (l + sqrt(3.0) * tau) * (l + sqrt(3.0) * tau);
    CHECK_NEAR(cnd_dp_ddg_rdp(&small, a), fmin(t1, fmin(t2, t3)), 1e-12);
    CHECK(cnd_dp_ddg_rdp(&small, a) > a / 2 * l * l); /* tau costs something here */
    /* more parties (the same variance each) give less RDP; out of range gives NaN */
    cnd_dp_ddg_t four = three;
    four.parties = 4;
    CHECK(cnd_dp_ddg_rdp(&four, 8) < cnd_dp_ddg_rdp(&three, 8));
    cnd_dp_ddg_t bad = three;
    bad.s2 = 0.2;
    CHECK(isnan(cnd_dp_ddg_rdp(&bad, 2)));
    bad = three;
    bad.parties = 0;
    CHECK(isnan(cnd_dp_ddg_rdp(&bad, 2)));
    /* rounding: the bound is above c and below c + sqrt(d); L1 <= l2^2 for integer vectors */
    double r = cnd_dp_ddg_rounded_l2(2047, 26010, exp(-0.5));
    CHECK(r > 2047 && r < 2047 + sqrt(26010.0));
    CHECK_NEAR(r, sqrt(2047.0 * 2047 + 26010 / 4.0 + 1 * (2047 + sqrt(26010.0) / 2)), 1e-9);
    CHECK(cnd_dp_ddg_l1(3, 100) == 9 && cnd_dp_ddg_l1(30, 100) == 300);
    /* composed with a sampled Gaussian run: RDP adds, so epsilon exceeds either alone */
    cnd_dp_params_t p = {.delta = 1e-5};
    cnd_dp_segment_t seg[2] = {{0.1, 2.0, 100}, {.steps = 40, .ddg = three}};
    double e_both, e_g, e_d;
    CHECK(cnd_dp_epsilon_composed(&p, seg, 2, &e_both, NULL) == 0);
    CHECK(cnd_dp_epsilon_composed(&p, seg, 1, &e_g, NULL) == 0);
    CHECK(cnd_dp_epsilon_composed(&p, seg + 1, 1, &e_d, NULL) == 0);
    CHECK(e_both > e_g && e_both > e_d && e_both < e_g + e_d);
    /* the Gaussian mechanism at q = 1 and sigma = sqrt(n s2) / l2 gives the same epsilon */
    cnd_dp_segment_t g1 = {1.0, sqrt(1200.0) / 10, 40};
    double e_c;
    CHECK(cnd_dp_epsilon_composed(&p, &g1, 1, &e_c, NULL) == 0);
    CHECK_NEAR(e_d, e_c, 1e-9 * e_c);
    seg[1].ddg.s2 = 0.1;
    CHECK(cnd_dp_epsilon_composed(&p, seg, 2, &e_both, NULL) == CND_EINVAL);
}

int main(void)
{
    test_ddg();
    test_published();
    test_closed_forms();
    test_properties();
    test_solve();
    test_composed();
    test_refusals();
    return check_result("test_dp_accountant");
}
