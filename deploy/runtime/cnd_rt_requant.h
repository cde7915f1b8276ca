/*
 * cnd_rt_requant.h: the fixed-point requantization every integer kernel ends with, and the
 * int4 nibble decoding, as inline functions shared by the reference and fast kernels (so all of
 * them round identically) and by the host-side quantizer.
 *
 * Arithmetic (gemmlowp / TFLite int8, REFERENCES.md "Integer-only quantization"):
 *   M = s_in * s_w[c] / s_out = M0 * 2^-n, M0 = mult / 2^31 in [0.5, 1), n = shift in [-31, 31]
 *   x   = acc << max(-n, 0)                      saturated to int32 (TFLite leaves it unchecked)
 *   x   = SaturatingRoundingDoublingHighMul(x, mult)   = round-half-up(x * mult / 2^31),
 *                                                        INT32_MIN * INT32_MIN -> INT32_MAX
 *   x   = RoundingDivideByPOT(x, max(n, 0))             = round-half-away-from-zero(x / 2^n)
 *   out = clamp(x + z_out, act_min, act_max)      (x is clamped to [-256, 255] first so the
 *                                                   addition cannot overflow; same result)
 * The composition rounds twice, exactly as TFLite does; it is within 1 of round(acc * M).
 */
#ifndef CND_RT_REQUANT_H
#define CND_RT_REQUANT_H

#include <stdint.h>

static inline int32_t cnd_rt_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

static inline int32_t cnd_rt_rdbp(int32_t x, int n)
{
    if (n <= 0) return x;
    int32_t mask = (int32_t)(((int64_t)1 << n) - 1);
    int32_t rem = x & mask;
    int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    /* x >> n on a negative int is implementation-defined in C99, and a division by a
     * variable power of two costs an idiv: x - rem is an exact multiple of 2^n, so shift its
     * magnitude instead. */
    int64_t v = (int64_t)x - (int64_t)rem;
    int32_t q = (int32_t)(v >= 0 ? (v >> n) : -((-v) >> n));
    return q + (rem > thr ? 1 : 0);
}

/* acc * M as the first three lines above: saturating left shift, SRDHM, RDBP. */
static inline int32_t cnd_rt_mbqm(int32_t acc, int32_t mult, int32_t shift)
{
    int32_t x = acc;
    if (shift < 0) {
        int64_t w = (int64_t)acc * ((int64_t)1 << -shift);
        x = w > INT32_MAX ? INT32_MAX : w < INT32_MIN ? INT32_MIN : (int32_t)w;
    }
    x = cnd_rt_srdhm(x, mult);
    return cnd_rt_rdbp(x, shift > 0 ? shift : 0);
}

static inline int8_t cnd_rt_requant(int32_t acc, int32_t mult, int32_t shift, int32_t zp,
                                    int32_t act_min, int32_t act_max)
{
    int32_t x = cnd_rt_mbqm(acc, mult, shift);
    if (x > 255) x = 255;
    if (x < -256) x = -256;
    x += zp;
    if (x < act_min) x = act_min;
    if (x > act_max) x = act_max;
    return (int8_t)x;
}

/* Residual add of a and b (zero points za, zb) to the output (TFLite's int8 add): both inputs
 * are scaled by 2^20 (exact: |x - z| <= 255), brought to a common scale by their multipliers
 * (mult[0], shift[0]) and (mult[1], shift[1]), summed (saturated to int32) and requantized by
 * (mult[2], shift[2]). m[j] = s_j / (2 max(s_a, s_b)) for the inputs and
 * 2 max(s_a, s_b) / (2^20 s_out) for the output, so the sum carries 20 bits of fraction. */
static inline int8_t cnd_rt_add(int32_t a, int32_t b, int32_t za, int32_t zb, const int32_t *mult,
                                const int32_t *shift, int32_t zo, int32_t act_min, int32_t act_max)
{
    int64_t s = (int64_t)cnd_rt_mbqm((a - za) * (1 << 20), mult[0], shift[0]) +
                cnd_rt_mbqm((b - zb) * (1 << 20), mult[1], shift[1]);
    int32_t x = s > INT32_MAX ? INT32_MAX : s < INT32_MIN ? INT32_MIN : (int32_t)s;
    return cnd_rt_requant(x, mult[2], shift[2], zo, act_min, act_max);
}

/* Signed 4-bit value in the low nibble of b (two's complement, -8..7). */
static inline int8_t cnd_rt_nibble(uint8_t b)
{
    int v = b & 15;
    return (int8_t)(v >= 8 ? v - 16 : v);
}

/* Weight k of a packed int4 row: even k in the low nibble, odd k in the high nibble. */
static inline int8_t cnd_rt_w4(const uint8_t *row, uint32_t k)
{
    uint8_t b = row[k >> 1];
    return cnd_rt_nibble((k & 1) ? (uint8_t)(b >> 4) : b);
}

/* Rounded division of a (possibly negative) sum by a positive count, half away from zero. */
static inline int32_t cnd_rt_div_round(int32_t sum, int32_t n)
{
    return sum >= 0 ? (sum + n / 2) / n : -((-sum + n / 2) / n);
}

#endif
