/*
 * test_runtime_requant.c: the runtime's fixed-point requantization against an independent
 * wide-integer reference, over random and edge values (saturation, negative and large shifts,
 * zero points, clamps), plus the rounding rules stated in cnd_rt_requant.h and
 * docs/quantization.md, and the host's multiplier computation.
 *
 * The reference uses __int128 and floor division written out, not the bit tricks the runtime
 * uses: SRDHM(a, b) = floor((2ab + 2^31) / 2^32) (round half up of ab / 2^31) except
 * INT32_MIN^2 -> INT32_MAX; RDBP(x, n) = round half away from zero of x / 2^n.
 *
 * When the CPU has AVX-512 VNNI, the same reference also checks the vector epilogue of the VNNI
 * kernels (one 64-bit multiply and one shift per lane with constants precomputed per channel,
 * rt_internal.h rt_rq16_t) on random layers of 1..40 channels: every shift in [-31, 31],
 * multipliers from 0 to 2^31 - 1, zero points and clamps, accumulators over the whole int32
 * range and at the rounding edges.
 */
#include "check.h"
#include "cnd_rt_requant.h"
#include "quant.h"
#include "rng.h"
#include "rt_internal.h"

#include <limits.h>
#include <math.h>
#include <string.h>

typedef __int128 i128;

static i128 s_floordiv(i128 a, i128 b)
{
    i128 q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

static int32_t s_ref_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    return (int32_t)s_floordiv((i128)2 * a * b + ((i128)1 << 31), (i128)1 << 32);
}

static int32_t s_ref_rdbp(int32_t x, int n)
{
    if (n == 0) return x;
    i128 ax = x < 0 ? -(i128)x : (i128)x, d = (i128)1 << n;
    i128 q = ax / d, r = ax % d;
    if (2 * r >= d) q++;
    return (int32_t)(x < 0 ? -q : q);
}

static int8_t s_ref_requant(int32_t acc, int32_t mult, int32_t shift, int32_t zp, int32_t lo,
                            int32_t hi)
{
    i128 x = acc;
    if (shift < 0) x *= (i128)1 << -shift;
    if (x > INT32_MAX) x = INT32_MAX;
    if (x < INT32_MIN) x = INT32_MIN;
    i128 y = s_ref_rdbp(s_ref_srdhm((int32_t)x, mult), shift > 0 ? shift : 0);
    y += zp;
    if (y < lo) y = lo;
    if (y > hi) y = hi;
    return (int8_t)y;
}

/* The VNNI requantization epilogue against s_ref_requant; returns mismatches. */
static int s_check_vnni(cnd_rng_t *r)
{
    enum { MAXC = 40 };
    static rt_rq16_t rq[(MAXC + 15) / 16];
    int32_t bias[MAXC], mult[MAXC], shift[MAXC], acc[MAXC];
    int8_t got[MAXC];
    int bad = 0;
    for (int t = 0; t < 20000; t++) {
        cnd_rt_layer_t l;
        memset(&l, 0, sizeof l);
        l.out_c = (uint16_t)(1 + cnd_rng_below(r, MAXC));
        l.out_zp = (int32_t)cnd_rng_below(r, 256) - 128;
        l.act_min = (int8_t)((t & 1) ? l.out_zp : -128);
        l.act_max = (int8_t)((t & 2) ? 127 : 100);
        for (int c = 0; c < l.out_c; c++) {
            mult[c] = (int32_t)(cnd_rng_u64(r) >> 33);
            if (c % 3 == 0) mult[c] |= 1 << 30;
            if (c % 7 == 5) mult[c] = INT32_MAX;
            if (c % 11 == 4) mult[c] = 0;
            shift[c] = (t & 4) ? (int32_t)cnd_rng_below(r, 32) /* right shifts only */
                               : (int32_t)cnd_rng_below(r, 63) - 31;
            int kind = (int)cnd_rng_below(r, 4);
            int32_t a = (int32_t)(uint32_t)cnd_rng_u64(r);
            if (kind == 1) a >>= (int)cnd_rng_below(r, 31);
            if (kind == 2) { /* just around a rounding edge of x * mult / 2^(31 + n) */
                int n = shift[c] > 0 ? shift[c] : 0;
                int64_t edge = mult[c] ? (((int64_t)1 << (30 + n)) / (mult[c] | 1)) : 0;
                a = (int32_t)(edge * ((int64_t)cnd_rng_below(r, 7) - 3) +
                              (int64_t)cnd_rng_below(r, 5) - 2);
            }
            if (kind == 3)
                a = (t & 8) ? INT32_MAX - (int32_t)cnd_rng_below(r, 3)
                            : INT32_MIN + (int32_t)cnd_rng_below(r, 3);
            /* the kernels add bias_u8 to the sums; the loader proved that cannot overflow */
            bias[c] = (t & 16) ? 0 : (int32_t)cnd_rng_below(r, 1 << 21) - (1 << 20);
            if ((int64_t)a + bias[c] > INT32_MAX || (int64_t)a + bias[c] < INT32_MIN) bias[c] = 0;
            acc[c] = a;
            if (shift[c] < 0) l.lshift = 1;
        }
        l.bias_u8 = bias;
        l.mult = mult;
        l.shift = shift;
        cnd_rt_rq16_fill(rq, &l);
        l.rq = rq;
        if (cnd_rt_vnni_requant(got, acc, &l)) return -1;
        for (int c = 0; c < l.out_c; c++) {
            int8_t want =
                s_ref_requant(acc[c] + bias[c], mult[c], shift[c], l.out_zp, l.act_min, l.act_max);
            if (got[c] != want && bad++ < 5)
                fprintf(stderr,
                        "vnni requant: acc %d bias %d mult %d shift %d zp %d: %d, want %d\n",
                        acc[c], bias[c], mult[c], shift[c], l.out_zp, got[c], want);
        }
    }
    return bad;
}

int main(void)
{
    /* Rounding rules by example. */
    CHECK_EQ_INT(cnd_rt_rdbp(5, 1), 3);   /* 2.5 -> 3 */
    CHECK_EQ_INT(cnd_rt_rdbp(-5, 1), -3); /* -2.5 -> -3: half away from zero */
    CHECK_EQ_INT(cnd_rt_rdbp(-3, 1), -2); /* -1.5 -> -2 */
    CHECK_EQ_INT(cnd_rt_rdbp(-1, 2), 0);  /* -0.25 -> 0 */
    CHECK_EQ_INT(cnd_rt_rdbp(INT32_MIN, 31), -1);
    CHECK_EQ_INT(cnd_rt_rdbp(INT32_MAX, 31), 1);
    CHECK_EQ_INT(cnd_rt_srdhm(INT32_MIN, INT32_MIN), INT32_MAX);
    CHECK_EQ_INT(cnd_rt_srdhm(1 << 30, 1), 1);     /* 0.5 -> 1 (half up) */
    CHECK_EQ_INT(cnd_rt_srdhm(-(1 << 30), 1), 0);  /* -0.5 -> 0 (half up) */
    CHECK_EQ_INT(cnd_rt_srdhm(-(3 << 29), 2), -1); /* -1.5 -> -1 */
    CHECK_EQ_INT(cnd_rt_div_round(5, 2), 3);
    CHECK_EQ_INT(cnd_rt_div_round(-5, 2), -3);
    CHECK_EQ_INT(cnd_rt_div_round(-4, 3), -1);
    CHECK_EQ_INT(cnd_rt_nibble(0x8), -8);
    CHECK_EQ_INT(cnd_rt_nibble(0x7), 7);
    CHECK_EQ_INT(cnd_rt_nibble(0xf), -1);
    uint8_t row[2] = {0x9f, 0x07};
    CHECK_EQ_INT(cnd_rt_w4(row, 0), -1);
    CHECK_EQ_INT(cnd_rt_w4(row, 1), -7);
    CHECK_EQ_INT(cnd_rt_w4(row, 2), 7);

    /* Edge grid. */
    const int32_t accs[] = {0,
                            1,
                            -1,
                            2,
                            -2,
                            127,
                            -128,
                            255,
                            -256,
                            1 << 20,
                            -(1 << 20),
                            INT32_MAX,
                            INT32_MIN,
                            INT32_MAX - 1,
                            INT32_MIN + 1,
                            1 << 30,
                            -(1 << 30),
                            123456789,
                            -987654321};
    const int32_t mults[] = {
        0, 1, 1 << 30, (1 << 30) + 1, INT32_MAX, INT32_MAX - 1, 1518500250, 1073741824 + 12345};
    const int32_t shifts[] = {-31, -20, -8, -1, 0, 1, 2, 7, 15, 30, 31};
    const int32_t zps[] = {-128, -1, 0, 5, 127};
    long n = 0;
    for (size_t a = 0; a < sizeof accs / sizeof *accs; a++)
        for (size_t m = 0; m < sizeof mults / sizeof *mults; m++) {
            CHECK_EQ_INT(cnd_rt_srdhm(accs[a], mults[m]), s_ref_srdhm(accs[a], mults[m]));
            for (size_t s = 0; s < sizeof shifts / sizeof *shifts; s++)
                for (size_t z = 0; z < sizeof zps / sizeof *zps; z++) {
                    int32_t lo = (z & 1) ? zps[z] : -128;
                    int8_t got = cnd_rt_requant(accs[a], mults[m], shifts[s], zps[z], lo, 127);
                    int8_t want = s_ref_requant(accs[a], mults[m], shifts[s], zps[z], lo, 127);
                    if (got != want) {
                        fprintf(stderr, "acc %d mult %d shift %d zp %d: %d vs %d\n", accs[a],
                                mults[m], shifts[s], zps[z], got, want);
                        CHECK(got == want);
                    }
                    n++;
                }
        }
    for (int x = -70000; x <= 70000; x += 7)
        for (int sh = 0; sh <= 31; sh++) CHECK_EQ_INT(cnd_rt_rdbp(x, sh), s_ref_rdbp(x, sh));
    for (int64_t x = INT32_MIN; x <= INT32_MAX; x += 16777259)
        for (int sh = 0; sh <= 31; sh++)
            CHECK_EQ_INT(cnd_rt_rdbp((int32_t)x, sh), s_ref_rdbp((int32_t)x, sh));

    /* Random values, and the double rounding stays within 1 of exact rounding. */
    cnd_rng_t r;
    cnd_rng_seed(&r, 42);
    int mism = 0, far = 0;
    for (int i = 0; i < 300000; i++) {
        int32_t acc = (int32_t)(uint32_t)cnd_rng_u64(&r);
        if (i & 1) acc >>= (int)cnd_rng_below(&r, 31);
        int32_t mult = (int32_t)(cnd_rng_u64(&r) >> 33);
        if (i % 3 == 0) mult |= 1 << 30;
        int32_t shift = (int32_t)cnd_rng_below(&r, 63) - 31;
        int32_t zp = (int32_t)cnd_rng_below(&r, 256) - 128;
        int32_t lo = (i & 4) ? zp : -128;
        int8_t got = cnd_rt_requant(acc, mult, shift, zp, lo, 127);
        mism += got != s_ref_requant(acc, mult, shift, zp, lo, 127);
        if (shift >= 0 && mult > 0) {
            long double exact = (long double)acc * mult / 2147483648.0L / ldexpl(1.0L, shift);
            long double v = roundl(exact) + zp;
            if (v < lo) v = lo;
            if (v > 127) v = 127;
            if (fabsl(v - got) > 1.0L) far++;
        }
    }
    CHECK_EQ_INT(mism, 0);
    CHECK_EQ_INT(far, 0);

    if (cnd_rt_kernels_available(CND_RT_KERNELS_VNNI)) {
        CHECK_EQ_INT(s_check_vnni(&r), 0);
    } else {
        fprintf(stderr, "no AVX-512 VNNI: vector requantization not checked here\n");
    }

    /* Host multipliers reproduce the real multiplier. */
    const double reals[] = {1e-12,     3e-10, 1e-6, 0.001234, 0.25,   0.5,      0.7071,
                            0.9999999, 1.0,   1.5,  3.0,      1000.0, 12345.678};
    for (size_t i = 0; i < sizeof reals / sizeof *reals; i++) {
        int32_t mult, shift;
        cnd_quant_multiplier(reals[i], &mult, &shift);
        CHECK(mult >= 0);
        CHECK(shift >= -31 && shift <= 31);
        double back = (double)mult / 2147483648.0 * ldexp(1.0, -shift);
        CHECK(fabs(back - reals[i]) <= reals[i] * 1e-6 + 1e-18 * 0 + ldexp(1.0, -62));
        if (reals[i] >= 1e-9) CHECK(mult >= (1 << 30));
        /* Applying it to an accumulator gives round(acc * M) within 1. */
        for (int32_t acc = -100000; acc <= 100000; acc += 997) {
            double want = acc * reals[i];
            if (fabs(want) > 200) continue;
            int8_t got = cnd_rt_requant(acc, mult, shift, 0, -128, 127);
            double w = round(want);
            if (w > 127) w = 127;
            if (w < -128) w = -128;
            CHECK(fabs(got - w) <= 1.0);
        }
    }
    int32_t mult, shift;
    cnd_quant_multiplier(0.0, &mult, &shift);
    CHECK_EQ_INT(mult, 0);
    cnd_quant_multiplier(0.5, &mult, &shift);
    CHECK_EQ_INT(mult, 1 << 30);
    CHECK_EQ_INT(shift, 0);
    cnd_quant_multiplier(1.0 - 1e-12, &mult, &shift); /* rounds to 2^31: halved */
    CHECK_EQ_INT(mult, 1 << 30);
    CHECK_EQ_INT(shift, -1);
    (void)n;
    return check_result("test_runtime_requant");
}
