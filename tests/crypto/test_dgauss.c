/* test_dgauss.c: crypto/dgauss (the exact discrete Gaussian sampler of distributed DP): argument
 * checks, determinism of a seeded stream, that adding noise to a ring vector adds the samples,
 * symmetry, and mean and variance against the exact ones (computed here from the pmf by
 * summation) at several variances. The goodness of fit of the whole distribution against an
 * independent numpy pmf is tests/crypto/test_dgauss.py, which runs this program as
 *     test_dgauss --histogram S2 N   (prints "value count" lines of N seeded draws)
 */
#include "check.h"
#include "dgauss.h"
#include "fixedpoint.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t seed1[32] = {1, 2, 3};

/* Exact mean 0 and variance sum x^2 p(x) of N_Z(0, s2), summed over |x| <= 40 sqrt(s2) + 40. */
static double s_exact_var(double s2)
{
    long m = (long)(40 * sqrt(s2)) + 40;
    double z = 0, v = 0;
    for (long x = -m; x <= m; x++) {
        double p = exp(-(double)x * (double)x / (2 * s2));
        z += p;
        v += (double)x * (double)x * p;
    }
    return v / z;
}

static void test_args(void)
{
    cnd_dgauss_t *g = cnd_dgauss_new(seed1);
    int64_t x = 7;
    CHECK(g != NULL);
    CHECK(cnd_dgauss_sample(g, 0, &x) == CND_EINVAL);
    CHECK(cnd_dgauss_sample(g, CND_DGAUSS_S2_MAX + 1, &x) == CND_EINVAL);
    CHECK(x == 7);
    CHECK(cnd_dgauss_sample(g, CND_DGAUSS_S2_MAX, &x) == 0);
    CHECK(llabs(x) < 20 * (1LL << 20));
    cnd_dgauss_destroy(&g);
    CHECK(g == NULL);
    cnd_dgauss_destroy(&g);
    cnd_dgauss_destroy(NULL);
}

/* The same seed gives the same draws; another seed others; add is sample modulo 2^32. */
static void test_stream(void)
{
    cnd_dgauss_t *a = cnd_dgauss_new(seed1), *b = cnd_dgauss_new(seed1);
    uint8_t s2seed[32] = {9};
    cnd_dgauss_t *c = cnd_dgauss_new(s2seed);
    int same = 1, diff = 0;
    uint32_t v[64];
    for (int i = 0; i < 64; i++) v[i] = 0xfffffff0u + (uint32_t)i;
    for (int i = 0; i < 64; i++) {
        int64_t x, z;
        CHECK(cnd_dgauss_sample(a, 50, &x) == 0);
        CHECK(cnd_dgauss_sample(c, 50, &z) == 0);
        diff += x != z;
    }
    /* b replays a's stream: adding its draws to v must equal v + a's draws */
    cnd_dgauss_t *a2 = cnd_dgauss_new(seed1);
    uint32_t w[64];
    memcpy(w, v, sizeof v);
    CHECK(cnd_dgauss_add(b, 50, v, 64) == 0);
    for (int i = 0; i < 64; i++) {
        int64_t x;
        CHECK(cnd_dgauss_sample(a2, 50, &x) == 0);
        same &= v[i] == (uint32_t)(w[i] + (uint32_t)(uint64_t)x);
    }
    CHECK(same);
    CHECK(diff > 32);
    double u = cnd_dgauss_uniform(a);
    CHECK(u >= 0 && u < 1);
    cnd_dgauss_destroy(&a);
    cnd_dgauss_destroy(&a2);
    cnd_dgauss_destroy(&b);
    cnd_dgauss_destroy(&c);
}

/* Mean and variance of n draws within 5 standard errors of the exact ones (the fourth moment of
 * a Gaussian bounds the variance's error: sd(var estimate) ~ var sqrt(2 / n)). Seeded, so the
 * test is deterministic; 5 standard errors make a correct sampler fail with p < 1e-6. */
static void test_moments(void)
{
    static const uint64_t s2s[] = {1, 2, 7, 100, 12345, (uint64_t)1 << 30};
    for (size_t k = 0; k < sizeof s2s / sizeof s2s[0]; k++) {
        cnd_dgauss_t *g = cnd_dgauss_new(seed1);
        const long n = 100000;
        double sum = 0, sq = 0;
        for (long i = 0; i < n; i++) {
            int64_t x;
            CHECK(cnd_dgauss_sample(g, s2s[k], &x) == 0);
            sum += (double)x;
            sq += (double)x * (double)x;
        }
        double var = s_exact_var((double)s2s[k]), mean = sum / n, m2 = sq / n - mean * mean;
        if (!(fabs(mean) <= 5 * sqrt(var / n)) || !(fabs(m2 - var) <= 5 * var * sqrt(2.0 / n)))
            fprintf(stderr, "s2 %llu: mean %g, variance %g (exact %g)\n",
                    (unsigned long long)s2s[k], mean, m2, var);
        CHECK(fabs(mean) <= 5 * sqrt(var / n));
        CHECK(fabs(m2 - var) <= 5 * var * sqrt(2.0 / n));
        cnd_dgauss_destroy(&g);
    }
    /* the discrete Gaussian's variance is just below s2 (CKS 2020), a rounded continuous
     * Gaussian's is s2 + 1/12: at s2 = 1 the check above tells them apart (13 standard errors) */
    CHECK(s_exact_var(1) < 1 && s_exact_var(1) > 1 - 1e-6);
}

/* Distributed-DP encoding (fixedpoint.h): 3 sites' encoded vectors summed modulo 2^b decode to
 * the unweighted average of their L2-clipped updates plus noise of variance 3 s2 gamma^2 / 9 per
 * coordinate; each rounded vector (noise removed) stays within the L2 bound. */
static void test_encode_ddp(void)
{
    enum { D = 2000, N = 3 };
    cnd_fxp_params_t p = {D, N, 12, 0.5f, 0, 100, 40000};
    cnd_fxp_layout_t l;
    CHECK(cnd_fxp_layout(&l, &p) == 0);
    double bound = cnd_fxp_ddp_l2(&p), q = 2047;
    CHECK(bound > q && bound < q + sqrt((double)D));
    /* the ring: 3 * floor(bound) + 8 sqrt(3 * 40000) = 6153 + 2772 fits 14 bits + sign */
    CHECK_EQ_INT(l.bits, 15);
    static float x[N][D];
    static uint32_t enc[N][D + 64], sum[D + 64], zero[D + 64];
    double want[D] = {0};
    for (int u = 0; u < N; u++)
        for (int i = 0; i < D; i++) {
            x[u][i] = (float)(0.01 * sin(0.1 * i + u)) * (u == 2 ? 40.0f : 1.0f);
        }
    cnd_dgauss_t *g = cnd_dgauss_new(seed1);
    memset(sum, 0, sizeof sum);
    for (int u = 0; u < N; u++) {
        cnd_fxp_report_t rep;
        CHECK(l.len <= D + 64);
        CHECK(cnd_fxp_encode_ddp(enc[u], &rep, &p, &l, x[u], 50, g) == 0);
        CHECK(rep.clipped == (u == 2)); /* site 2's norm (~0.89) is above the clip 0.5 */
        for (int i = 0; i < D; i++) want[i] += x[u][i] * rep.scale / N;
        for (uint32_t i = 0; i < l.len; i++) sum[i] += enc[u][i];
    }
    float avg[D];
    cnd_fxp_totals_t tot;
    CHECK(cnd_fxp_decode(avg, &tot, &p, &l, sum, N) == 0);
    CHECK_EQ_INT(tot.weight, 150);
    double gamma = 0.5 / q, sd = sqrt(N * 40000.0) * gamma / N, se = 0, m = 0;
    for (int i = 0; i < D; i++) {
        double e = avg[i] - want[i];
        m += e;
        se += e * e;
    }
    m /= D;
    se = se / D - m * m;
    /* noise variance plus rounding (<= 1/4 gamma^2 per site, / N^2 each) */
    double var = sd * sd, rnd = N * 0.25 * gamma * gamma / (N * N);
    CHECK(fabs(m) < 5 * sqrt((var + rnd) / D));
    CHECK(se > var * 0.9 && se < (var + rnd) * 1.1);
    /* without noise (a seeded sampler replaying the rounding, s2 of 1 then subtracted is not
     * possible), check the bound on a zero-noise encode: s2 = 1 noise is at most a few units */
    cnd_fxp_params_t p1 = p;
    p1.ddp_s2 = 1;
    cnd_fxp_layout_t l1;
    CHECK(cnd_fxp_layout(&l1, &p1) == 0);
    CHECK(cnd_fxp_encode_ddp(zero, NULL, &p1, &l1, x[2], 50, g) == 0);
    double ss = 0;
    for (int i = 0; i < D; i++) {
        int64_t v = zero[i] & ((1u << l1.bits) - 1);
        if (v >= (1 << (l1.bits - 1))) v -= 1 << l1.bits;
        ss += (double)v * (double)v;
    }
    CHECK(sqrt(ss) < bound + 3 * sqrt((double)D)); /* rounded norm plus unit-variance noise */
    CHECK(sqrt(ss) > q * 0.95);
    /* refusals: no variance, a non-finite coordinate */
    cnd_fxp_params_t p0 = p;
    p0.ddp_s2 = 0;
    CHECK(cnd_fxp_encode_ddp(zero, NULL, &p0, &l, x[0], 1, g) == CND_EINVAL);
    x[0][7] = NAN;
    CHECK(cnd_fxp_encode_ddp(zero, NULL, &p, &l, x[0], 1, g) == CND_EINVAL);
    cnd_dgauss_destroy(&g);
}

static int s_histogram(uint64_t s2, long n)
{
    cnd_dgauss_t *g = cnd_dgauss_new(seed1);
    if (!g) return 1;
    long m = (long)(12 * sqrt((double)s2)) + 12, *h = calloc((size_t)(2 * m + 1), sizeof *h);
    long out = 0;
    for (long i = 0; h && i < n; i++) {
        int64_t x;
        if (cnd_dgauss_sample(g, s2, &x)) return 1;
        if (x < -m || x > m)
            out++;
        else
            h[x + m]++;
    }
    for (long x = -m; h && x <= m; x++)
        if (h[x + m]) printf("%ld %ld\n", x, h[x + m]);
    printf("outside %ld\n", out);
    free(h);
    cnd_dgauss_destroy(&g);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--histogram"))
        return s_histogram(strtoull(argv[2], NULL, 10), strtol(argv[3], NULL, 10));
    test_args();
    test_stream();
    test_moments();
    test_encode_ddp();
    return check_result("test_dgauss");
}
