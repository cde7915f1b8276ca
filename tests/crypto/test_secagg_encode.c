/*
 * test_secagg_encode.c: fixed-point encoding of updates for secure aggregation
 * (crypto/fixedpoint.h): ring width from value range and client count with the overflow check,
 * clipping (per coordinate and L2), capped sample-count weighting with exact count limbs,
 * unbiased stochastic rounding, bit packing at every width against a bit-by-bit reference, and a
 * weighted average recovered through a real masked round.
 */
#include "check.h"
#include "fixedpoint.h"
#include "rng.h"
#include "secagg.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static void test_layout(void)
{
    cnd_fxp_params_t p = {1000, 256, 8, 1.0f, 0, 1};
    cnd_fxp_layout_t l;
    CHECK(cnd_fxp_layout(&l, &p) == 0);
    CHECK_EQ_INT(l.bits, 16); /* 256 * 127 = 32512 <= 2^15 - 1 */
    CHECK_EQ_INT(l.n_limbs, 1);
    CHECK_EQ_INT(l.m_limbs, 1);
    CHECK_EQ_INT(l.loss_limbs, 2); /* 1 * 256 * 16 = 4096 needs 13 bits, 7 per limb */
    CHECK_EQ_INT(l.len, 1000 + 3 + 2);
    p.n_max = 258; /* 258 * 127 = 32766 still fits */
    CHECK(cnd_fxp_layout(&l, &p) == 0);
    CHECK_EQ_INT(l.bits, 16);
    p.n_max = 259; /* 32893 does not */
    CHECK(cnd_fxp_layout(&l, &p) == 0);
    CHECK_EQ_INT(l.bits, 17);
    p.n_max = 100;
    CHECK(cnd_fxp_layout(&l, &p) == 0);
    CHECK_EQ_INT(l.bits, 15);
    /* Count limbs: with b = 15 and 100 clients each limb carries 8 bits (100 * 255 < 2^15);
     * a cap of 10000 needs 14 bits, so two limbs. */
    p.weight_cap = 10000;
    CHECK(cnd_fxp_layout(&l, &p) == 0);
    CHECK_EQ_INT(l.limb_bits, 8);
    CHECK_EQ_INT(l.n_limbs, 2);
    /* Overflow: refused before the round. */
    p.value_bits = 24;
    p.n_max = 1000;
    CHECK_EQ_INT(cnd_fxp_layout(&l, &p), CND_ERANGE);
    CHECK(strstr(cnd_err_detail(), "33-bit") != NULL ||
          strstr(cnd_err_detail(), "bit ring") != NULL);
    p.value_bits = 16;
    p.n_max = 65536; /* 65536 * 32767 < 2^31 */
    CHECK(cnd_fxp_layout(&l, &p) == 0);
    CHECK_EQ_INT(l.bits, 32);
    p.n_max = 65539; /* 65539 * 32767 > 2^31 - 1 */
    CHECK_EQ_INT(cnd_fxp_layout(&l, &p), CND_ERANGE);
    cnd_fxp_params_t bad = {10, 10, 1, 1.0f, 0, 1};
    CHECK_EQ_INT(cnd_fxp_layout(&l, &bad), CND_EINVAL);
    bad.value_bits = 8;
    bad.clip = NAN;
    CHECK_EQ_INT(cnd_fxp_layout(&l, &bad), CND_EINVAL);
    bad.clip = 1;
    bad.weight_cap = 0;
    CHECK_EQ_INT(cnd_fxp_layout(&l, &bad), CND_EINVAL);
}

static int32_t s_centred(uint32_t v, uint32_t bits)
{
    uint64_t m = 1ull << bits;
    uint64_t s = v & (m - 1);
    return (int32_t)(s >= m / 2 ? (int64_t)s - (int64_t)m : (int64_t)s);
}

static void test_encode(void)
{
    cnd_fxp_params_t p = {6, 10, 8, 2.0f, 0, 100};
    cnd_fxp_layout_t l;
    CHECK(cnd_fxp_layout(&l, &p) == 0);
    float x[6] = {0.0f, 1.0f, -1.0f, 2.0f, 5.0f, -7.5f};
    uint32_t out[16];
    cnd_fxp_report_t rep;
    CHECK(cnd_fxp_encode(out, &rep, &p, &l, x, 100) == 0);
    /* Exactly representable: 1.0 -> 63.5 is not, but +-2 (and clipped values) map to +-127. */
    CHECK_EQ_INT(s_centred(out[0], l.bits), 0);
    CHECK_EQ_INT(s_centred(out[3], l.bits), 127);
    CHECK_EQ_INT(s_centred(out[4], l.bits), 127);
    CHECK_EQ_INT(s_centred(out[5], l.bits), -127);
    CHECK(s_centred(out[1], l.bits) == 63 || s_centred(out[1], l.bits) == 64);
    CHECK(s_centred(out[2], l.bits) == -63 || s_centred(out[2], l.bits) == -64);
    CHECK_EQ_INT(rep.clipped, 2);
    CHECK_EQ_INT(rep.weight, 100);
    CHECK_EQ_INT(out[6], 100); /* the count limb */
    /* Weight above the cap counts as the cap; half the cap halves the values. */
    CHECK(cnd_fxp_encode(out, &rep, &p, &l, x, 1000) == 0);
    CHECK_EQ_INT(rep.weight, 100);
    CHECK(cnd_fxp_encode(out, &rep, &p, &l, x, 50) == 0);
    CHECK(s_centred(out[3], l.bits) == 63 || s_centred(out[3], l.bits) == 64);
    CHECK_EQ_INT(out[6], 50);
    /* L2 clipping: (3, 4) with clip 10 and l2_max 1 becomes (0.6, 0.8). */
    cnd_fxp_params_t p2 = {2, 1, 16, 10.0f, 1.0f, 1};
    cnd_fxp_layout_t l2;
    CHECK(cnd_fxp_layout(&l2, &p2) == 0);
    float y[2] = {3, 4}, avg[2];
    cnd_fxp_totals_t tw;
    CHECK(cnd_fxp_encode(out, &rep, &p2, &l2, y, 1) == 0);
    CHECK_NEAR(rep.norm, 5.0, 1e-9);
    CHECK_NEAR(rep.scale, 0.2, 1e-9);
    CHECK(cnd_fxp_decode(avg, &tw, &p2, &l2, out, 1) == 0);
    CHECK_EQ_INT(tw.weight, 1);
    CHECK_NEAR(avg[0], 0.6, 10.0 / 32767);
    CHECK_NEAR(avg[1], 0.8, 10.0 / 32767);
    /* Non-finite input is refused, naming the coordinate. */
    y[1] = NAN;
    CHECK_EQ_INT(cnd_fxp_encode(out, &rep, &p2, &l2, y, 1), CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "coordinate 1") != NULL);
    /* Total weight 0 cannot be averaged. */
    memset(out, 0, sizeof out);
    CHECK_EQ_INT(cnd_fxp_decode(avg, &tw, &p2, &l2, out, 1), CND_ERANGE);
}

/* Stochastic rounding is unbiased: the mean of many encodings of 0.3 * Q / clip approaches it,
 * while deterministic rounding would be off by 0.3 per coordinate. Seeded runs repeat. */
static void test_unbiased(void)
{
    enum { D = 20000 };
    cnd_fxp_params_t p = {D, 1, 4, 1.0f, 0, 1};
    cnd_fxp_layout_t l;
    CHECK(cnd_fxp_layout(&l, &p) == 0); /* Q = 7 */
    float *x = malloc(D * sizeof *x);
    uint32_t *o = malloc(l.len * sizeof *o), *o2 = malloc(l.len * sizeof *o2);
    for (int i = 0; i < D; i++) x[i] = (float)(2.3 / 7); /* 2.3 levels */
    CHECK(cnd_fxp_encode(o, NULL, &p, &l, x, 1) == 0);
    double mean = 0;
    int only23 = 1;
    for (int i = 0; i < D; i++) {
        int v = s_centred(o[i], l.bits);
        only23 &= v == 2 || v == 3;
        mean += v;
    }
    mean /= D;
    CHECK(only23);
    CHECK_NEAR(mean, 2.3, 0.02); /* sd of the mean about 0.0032 */
    uint8_t seed[32] = {1};
    CHECK(cnd_fxp_encode_seeded(o, NULL, &p, &l, x, 1, seed) == 0);
    CHECK(cnd_fxp_encode_seeded(o2, NULL, &p, &l, x, 1, seed) == 0);
    CHECK(memcmp(o, o2, l.len * 4) == 0);
    seed[0] = 2;
    CHECK(cnd_fxp_encode_seeded(o2, NULL, &p, &l, x, 1, seed) == 0);
    CHECK(memcmp(o, o2, D * 4) != 0);
    free(x);
    free(o);
    free(o2);
}

/* Reference packing: bit i*b + j of the stream is bit j of element i. */
static void s_pack_ref(uint8_t *out, const uint32_t *v, size_t n, unsigned bits)
{
    memset(out, 0, cnd_ring_packed_bytes(n, bits));
    for (size_t i = 0; i < n; i++)
        for (unsigned j = 0; j < bits; j++)
            if (v[i] >> j & 1) {
                size_t bit = i * bits + j;
                out[bit / 8] |= (uint8_t)(1u << (bit % 8));
            }
}

static void test_packing(void)
{
    cnd_rng_t r;
    cnd_rng_seed(&r, 5);
    enum { N = 203 };
    uint32_t v[N], back[N], acc[N];
    uint8_t a[N * 4 + 8], b[N * 4 + 8];
    for (unsigned bits = 1; bits <= 32; bits++) {
        for (size_t n = 0; n <= N; n += (n < 17 ? 1 : 31)) {
            for (size_t i = 0; i < n; i++) v[i] = (uint32_t)cnd_rng_u64(&r);
            size_t nb = cnd_ring_packed_bytes(n, bits);
            CHECK_EQ_INT(nb, (n * bits + 7) / 8);
            cnd_ring_pack(a, v, n, bits);
            s_pack_ref(b, v, n, bits);
            CHECK(memcmp(a, b, nb) == 0);
            CHECK(cnd_ring_unpack(back, a, n, bits) == 0);
            uint32_t m = bits == 32 ? 0xffffffffu : ((1u << bits) - 1);
            int ok = 1;
            for (size_t i = 0; i < n; i++) ok &= back[i] == (v[i] & m);
            CHECK(ok);
            for (size_t i = 0; i < n; i++) acc[i] = 1000;
            CHECK(cnd_ring_unpack_add(acc, a, n, bits) == 0);
            for (size_t i = 0; i < n; i++) ok &= acc[i] == 1000 + (v[i] & m);
            CHECK(ok);
            /* A set padding bit is refused and the accumulator is left untouched. */
            if ((n * bits) % 8) {
                a[nb - 1] |= 0x80;
                for (size_t i = 0; i < n; i++) acc[i] = 7;
                CHECK_EQ_INT(cnd_ring_unpack_add(acc, a, n, bits), CND_EFORMAT);
                for (size_t i = 0; i < n; i++) ok &= acc[i] == 7;
                CHECK(ok);
            }
        }
    }
}

/* Weighted average through a real masked round: 5 clients, different sample counts. */
static void test_weighted_round(void)
{
    enum { N = 5, D = 300 };
    cnd_fxp_params_t fp = {D, N, 12, 1.0f, 0, 1000};
    cnd_fxp_layout_t l;
    CHECK(cnd_fxp_layout(&l, &fp) == 0);
    cnd_secagg_params_t p;
    memset(&p, 0, sizeof p);
    p.round_id = 3;
    p.n = N;
    p.len = l.len;
    p.bits = l.bits;
    CHECK(cnd_secagg_params_fill(&p) == 0);
    cnd_identity_t *ids[N];
    cnd_secagg_member_t roster[N];
    cnd_secagg_client_t *cl[N];
    float x[N][D];
    uint64_t w[N] = {10, 200, 1000, 5000, 1}; /* 5000 is capped at 1000 */
    cnd_rng_t r;
    cnd_rng_seed(&r, 8);
    for (int u = 0; u < N; u++) {
        CHECK(cnd_identity_generate(&ids[u]) == 0);
        memset(&roster[u], 0, sizeof roster[u]);
        memcpy(roster[u].id_pk, cnd_identity_pk(ids[u]), 32);
        for (int i = 0; i < D; i++) x[u][i] = (float)(cnd_rng_double(&r) * 1.6 - 0.8);
    }
    cnd_secagg_server_t *s = NULL;
    CHECK(cnd_secagg_server_new(&s, &p, roster, 1) == 0);
    cnd_buf_t b, m;
    for (int u = 0; u < N; u++) {
        CHECK(cnd_secagg_client_new(&cl[u], &p, (uint32_t)u, ids[u], roster) == 0);
        cnd_buf_init(&b);
        CHECK(cnd_secagg_client_advertise(cl[u], &b) == 0);
        CHECK(cnd_secagg_server_add_advert(s, (uint32_t)u, b.data, b.len) == 0);
        cnd_buf_free(&b);
    }
    CHECK(cnd_secagg_server_end_adverts(s) == 0);
    for (int u = 0; u < N; u++) {
        cnd_buf_init(&b);
        cnd_buf_init(&m);
        CHECK(cnd_secagg_server_keys_msg(s, &b, (uint32_t)u) == 0);
        CHECK(cnd_secagg_client_share_keys(cl[u], &m, b.data, b.len) == 0);
        CHECK(cnd_secagg_server_add_shares(s, (uint32_t)u, m.data, m.len) == 0);
        cnd_buf_free(&b);
        cnd_buf_free(&m);
    }
    CHECK(cnd_secagg_server_end_shares(s) == 0);
    uint32_t enc[D + 8];
    for (int u = 0; u < N; u++) {
        CHECK(cnd_fxp_encode(enc, NULL, &fp, &l, x[u], w[u]) == 0);
        cnd_fxp_metrics_t mt = {50 + (uint64_t)u, 40 + (uint64_t)u, 0.5 * u};
        CHECK(cnd_fxp_encode_metrics(enc, &fp, &l, &mt) == 0);
        cnd_buf_init(&b);
        cnd_buf_init(&m);
        CHECK(cnd_secagg_server_shares_msg(s, &b, (uint32_t)u) == 0);
        CHECK(cnd_secagg_client_mask(cl[u], &m, b.data, b.len, enc) == 0);
        /* wire size: header + len + bits + packed plaintext */
        CHECK_EQ_INT(m.len, CND_SECAGG_HDR_BYTES + 5 + cnd_ring_packed_bytes(l.len, l.bits));
        CHECK(cnd_secagg_server_add_masked(s, (uint32_t)u, m.data, m.len) == 0);
        cnd_buf_free(&b);
        cnd_buf_free(&m);
    }
    CHECK(cnd_secagg_server_end_masked(s) == 0);
    for (int u = 0; u < N; u++) {
        cnd_buf_init(&b);
        cnd_buf_init(&m);
        CHECK(cnd_secagg_server_consistency_msg(s, &b, (uint32_t)u) == 0);
        CHECK(cnd_secagg_client_consistency(cl[u], &m, b.data, b.len) == 0);
        CHECK(cnd_secagg_server_add_consistency(s, (uint32_t)u, m.data, m.len) == 0);
        cnd_buf_free(&b);
        cnd_buf_free(&m);
    }
    CHECK(cnd_secagg_server_end_consistency(s) == 0);
    for (int u = 0; u < N; u++) {
        cnd_buf_init(&b);
        cnd_buf_init(&m);
        CHECK(cnd_secagg_server_unmask_msg(s, &b, (uint32_t)u) == 0);
        CHECK(cnd_secagg_client_unmask(cl[u], &m, b.data, b.len) == 0);
        CHECK(cnd_secagg_server_add_unmask(s, (uint32_t)u, m.data, m.len) == 0);
        cnd_buf_free(&b);
        cnd_buf_free(&m);
    }
    uint32_t sum[D + 8];
    float avg[D];
    cnd_fxp_totals_t tot;
    CHECK(cnd_secagg_server_finish(s, sum) == 0);
    CHECK(cnd_fxp_decode(avg, &tot, &fp, &l, sum, N) == 0);
    CHECK_EQ_INT(tot.weight, 10 + 200 + 1000 + 1000 + 1);
    /* the metrics came out only as sums */
    CHECK_EQ_INT(tot.validated, 5 * 50 + 10);
    CHECK_EQ_INT(tot.correct, 5 * 40 + 10);
    CHECK_EQ_INT(tot.loss_q,
                 (uint64_t)(0.5 * CND_FXP_LOSS_SCALE) * (51 + 2 * 52 + 3 * 53 + 4 * 54));
    uint64_t tw = tot.weight;
    double maxerr = 0;
    for (int i = 0; i < D; i++) {
        double want = 0;
        for (int u = 0; u < N; u++) want += (double)(w[u] < 1000 ? w[u] : 1000) * x[u][i];
        want /= (double)tw;
        double e = fabs(avg[i] - want);
        if (e > maxerr) maxerr = e;
    }
    /* Each client's rounding error is below one level, clip * W / (Q * total weight) once
     * decoded; the mean error over coordinates is far smaller (rounding is unbiased). */
    CHECK(maxerr < N * 1.0 * 1000 / (2047.0 * (double)tw));
    CHECK(maxerr > 0);
    for (int u = 0; u < N; u++) {
        cnd_secagg_client_destroy(&cl[u]);
        cnd_identity_destroy(&ids[u]);
    }
    cnd_secagg_server_destroy(&s);
}

/* Sum of `k` encoded vectors of length len modulo 2^bits into out. */
static void s_ring_sum(uint32_t *out, uint32_t (*v)[32], int k, uint32_t len, uint32_t bits)
{
    uint32_t m = bits == 32 ? 0xffffffffu : (1u << bits) - 1;
    for (uint32_t i = 0; i < len; i++) {
        uint32_t a = 0;
        for (int j = 0; j < k; j++) a += v[j][i];
        out[i] = a & m;
    }
}

/* One malicious site among the survivors cannot move the decoded result beyond what a site
 * within the rules could: a forged sample count (the example: two honest sites sending
 * 0.1 with clip 1, the third chooses its limbs so the total weight reads 1, which used to decode
 * to about -384), a coordinate wrapped around the ring, a count of 0 or below the survivors, a
 * wrapped count limb, metrics that contradict each other: each is refused by decode. */
static void test_bounded_influence(void)
{
    cnd_fxp_params_t fp = {4, 3, 8, 1.0f, 0, 100};
    cnd_fxp_layout_t l;
    CHECK(cnd_fxp_layout(&l, &fp) == 0);
    CHECK(l.len <= 32);
    uint32_t v[3][32], sum[32], m = (1u << l.bits) - 1;
    float x[4] = {0.1f, 0.1f, 0.1f, 0.1f}, avg[4];
    cnd_fxp_totals_t t;
    uint8_t seed[32] = {9};
    for (int u = 0; u < 3; u++)
        CHECK(cnd_fxp_encode_seeded(v[u], NULL, &fp, &l, x, 100, seed) == 0);
    s_ring_sum(sum, v, 3, l.len, l.bits);
    CHECK_EQ_INT(cnd_fxp_decode(avg, &t, &fp, &l, sum, 3), 0); /* honest: fine */
    CHECK_NEAR(avg[0], 0.1, 0.01);
    CHECK_EQ_INT(t.weight, 300);
    /* forged count: site 2's limbs make the total read 1 */
    memset(v[2], 0, sizeof v[2]);
    uint32_t want[8] = {1};
    for (uint32_t j = 0; j < l.n_limbs; j++)
        v[2][fp.dim + j] = (want[j] - v[0][fp.dim + j] - v[1][fp.dim + j]) & m;
    s_ring_sum(sum, v, 3, l.len, l.bits);
    CHECK_EQ_INT(cnd_fxp_decode(avg, &t, &fp, &l, sum, 3), CND_ERANGE);
    CHECK(strstr(cnd_err_detail(), "forged its count") != NULL ||
          strstr(cnd_err_detail(), "out-of-range") != NULL);
    /* what the old decoding made of it: far outside the clip */
    uint64_t mod = 1ull << l.bits, s0 = sum[0] & m;
    double old = (double)((int64_t)s0 - (s0 >= mod / 2 ? (int64_t)mod : 0)) * 1.0 * 100 / 127.0;
    CHECK(fabs(old) > 10);
    /* a coordinate wrapped around the ring, count honest */
    CHECK(cnd_fxp_encode_seeded(v[2], NULL, &fp, &l, x, 100, seed) == 0);
    v[2][1] = (uint32_t)(mod / 2 - 1);
    s_ring_sum(sum, v, 3, l.len, l.bits);
    CHECK_EQ_INT(cnd_fxp_decode(avg, &t, &fp, &l, sum, 3), CND_ERANGE);
    CHECK(strstr(cnd_err_detail(), "coordinate 1") != NULL);
    /* count 0 and count below the survivors */
    CHECK(cnd_fxp_encode_seeded(v[2], NULL, &fp, &l, x, 100, seed) == 0);
    uint32_t z[32];
    memcpy(z, sum, sizeof z);
    s_ring_sum(sum, v, 3, l.len, l.bits);
    for (uint32_t j = 0; j < l.n_limbs; j++) sum[fp.dim + j] = 0;
    CHECK_EQ_INT(cnd_fxp_decode(avg, &t, &fp, &l, sum, 3), CND_ERANGE);
    CHECK(strstr(cnd_err_detail(), "weight 0") != NULL);
    sum[fp.dim] = 2;
    for (uint32_t i = 0; i < fp.dim; i++) sum[i] = 0;
    CHECK_EQ_INT(cnd_fxp_decode(avg, &t, &fp, &l, sum, 3), CND_ERANGE);
    CHECK(strstr(cnd_err_detail(), "outside [3, 300]") != NULL);
    /* a count limb beyond what three sites' limbs add up to (a "negative" limb) */
    s_ring_sum(sum, v, 3, l.len, l.bits);
    sum[fp.dim + l.n_limbs - 1] = m;
    CHECK_EQ_INT(cnd_fxp_decode(avg, &t, &fp, &l, sum, 3), CND_ERANGE);
    CHECK(strstr(cnd_err_detail(), "limb") != NULL);
    /* metrics: more correct than validated */
    s_ring_sum(sum, v, 3, l.len, l.bits);
    sum[fp.dim + l.n_limbs + l.m_limbs] = 5;
    CHECK_EQ_INT(cnd_fxp_decode(avg, &t, &fp, &l, sum, 3), CND_ERANGE);
    CHECK(strstr(cnd_err_detail(), "inconsistent metrics") != NULL);
    (void)z;
}

int main(void)
{
    CHECK(sodium_init() >= 0);
    test_layout();
    test_encode();
    test_unbiased();
    test_packing();
    test_weighted_round();
    test_bounded_influence();
    return check_result("test_secagg_encode");
}
