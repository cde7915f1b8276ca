/*
 * rt_kernels_x86.c: x86-64 fast paths for dense, conv2d, maxpool and fused conv2d + maxpool
 * (AVX2; AVX-512 VNNI).
 *
 * Each function is compiled for its instruction set with a target attribute, so the file builds
 * with plain flags and the CPU is checked at run time (cnd_rt_cpu_has). Results equal the
 * reference bit for bit: integer sums are exact in any order (the loader proved no int32
 * overflow is possible), and requantization is either the shared scalar cnd_rt_requant or a
 * vector form with the same arithmetic (s_requant_avx2; s_rq16, see rt_rq16_t).
 *
 * AVX2: int8 inputs and weights are sign-extended to int16 and multiplied with vpmaddwd
 * (exact; vpmaddubsw would saturate its int16 pair sums). Dense layers compute four output rows
 * per pass over the input. conv2d (and conv2d + maxpool, fused) is the direct convolution
 * below on an int16 padded copy of the input, with the VNNI weight packing sign-extended on
 * load, two pixels x 16 channels per tile.
 *
 * AVX-512 VNNI: vpdpbusd multiplies unsigned by signed bytes, so inputs are shifted by +128
 * (x ^ 0x80) and the loader's bias_u8 already subtracts 128 * sum w. Dense layers as above.
 * conv2d is a direct convolution on an unsigned, padded copy of the HWC input with weights the
 * loader repacked so that each 32-bit accumulator lane is one output channel: a tile of 4-8
 * pixels x 1-4 blocks of 16 channels stays in 16 registers, each group of 4 input bytes is
 * broadcast once per pixel and each weight vector loaded once per tile, with no im2col and no
 * horizontal reductions. Followed by a maxpool it runs fused: window maxima of the int32 sums
 * are requantized once (exact, requantization being monotone; rt_internal.h). int4 rows are
 * unpacked to int8 in scratch (the VNNI conv has them unpacked by the repacking).
 *
 * On other architectures this file only provides stubs that report nothing available.
 */
#include "rt_internal.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define T_AVX2 __attribute__((target("avx2")))
#define T_VNNI __attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512vnni")))

int cnd_rt_cpu_has(cnd_rt_kernels_t k)
{
    __builtin_cpu_init();
    switch (k) {
    case CND_RT_KERNELS_AVX2: return __builtin_cpu_supports("avx2") != 0;
    case CND_RT_KERNELS_VNNI:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512vnni");
    default: return k == CND_RT_KERNELS_REF;
    }
}

/* Unpacks an int4 row of K weights into K int8 values. */
T_AVX2 static void s_unpack4(int8_t *dst, const uint8_t *src, uint32_t K)
{
    const __m128i lo4 = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    uint32_t k = 0;
    for (; k + 32 <= K; k += 32) {
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(src + k / 2));
        __m128i lo = _mm_and_si128(b, lo4);
        __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), lo4);
        lo = _mm_sub_epi8(_mm_xor_si128(lo, eight), eight); /* sign-extend 4 -> 8 bits */
        hi = _mm_sub_epi8(_mm_xor_si128(hi, eight), eight);
        _mm_storeu_si128((__m128i *)(void *)(dst + k), _mm_unpacklo_epi8(lo, hi));
        _mm_storeu_si128((__m128i *)(void *)(dst + k + 16), _mm_unpackhi_epi8(lo, hi));
    }
    for (; k < K; k++) dst[k] = cnd_rt_w4(src, k);
}

/* Row o of the layer's weights as int8: in place for int8, unpacked into buf for int4. */
T_AVX2 static const int8_t *s_row(const cnd_rt_layer_t *l, uint32_t o, int8_t *buf)
{
    const uint8_t *r = l->w + (size_t)o * l->w_row;
    if (l->wbits == 8) return (const int8_t *)r;
    s_unpack4(buf, r, l->K);
    return buf;
}

T_AVX2 static int32_t s_hsum8(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Requantizes acc[0..n) (channels c0..c0+n) + bias into out[0..n), 8 lanes at a time, with
 * the arithmetic of cnd_rt_requant (cnd_rt_requant_h): saturating left shift, high multiply
 * with round half up computed as (a*b + 2^30) >> 31 on 64-bit products (exact: the loader
 * guarantees mult >= 0, so the INT32_MIN * INT32_MIN case cannot occur), rounding right shift
 * as floor plus (remainder > threshold), clamp, zero point, clamp. */
T_AVX2 static void s_requant_avx2(int8_t *out, const int32_t *acc, const cnd_rt_layer_t *l,
                                  const int32_t *bias, uint32_t c0, uint32_t n)
{
    const __m256i one = _mm256_set1_epi32(1), zero = _mm256_setzero_si256();
    const __m256i nudge = _mm256_set1_epi64x((int64_t)1 << 30);
    const __m256i lo256 = _mm256_set1_epi32(-256), hi255 = _mm256_set1_epi32(255);
    const __m256i zp = _mm256_set1_epi32(l->out_zp);
    const __m256i amin = _mm256_set1_epi32(l->act_min), amax = _mm256_set1_epi32(l->act_max);
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint32_t c = c0 + i;
        __m256i x = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(acc + i)),
                                     _mm256_loadu_si256((const __m256i *)(const void *)(bias + c)));
        __m256i sh = _mm256_loadu_si256((const __m256i *)(const void *)(l->shift + c));
        __m256i mult = _mm256_loadu_si256((const __m256i *)(const void *)(l->mult + c));
        __m256i ls = _mm256_max_epi32(_mm256_sub_epi32(zero, sh), zero);
        __m256i rs = _mm256_max_epi32(sh, zero);
        /* saturating left shift */
        __m256i y = _mm256_sllv_epi32(x, ls);
        __m256i ovf = _mm256_xor_si256(_mm256_cmpeq_epi32(_mm256_srav_epi32(y, ls), x),
                                       _mm256_set1_epi32(-1));
        __m256i sat = _mm256_xor_si256(_mm256_srai_epi32(x, 31), _mm256_set1_epi32(INT32_MAX));
        x = _mm256_blendv_epi8(y, sat, ovf);
        /* high multiply: even and odd lanes as 64-bit products */
        __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(x, mult), nudge);
        __m256i po = _mm256_add_epi64(
            _mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(mult, 32)), nudge);
        pe = _mm256_srli_epi64(pe, 31);
        po = _mm256_slli_epi64(_mm256_srli_epi64(po, 31), 32);
        x = _mm256_blend_epi32(pe, po, 0xAA);
        /* rounding right shift */
        __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, rs), one);
        __m256i rem = _mm256_and_si256(x, mask);
        __m256i thr = _mm256_sub_epi32(_mm256_srai_epi32(mask, 1), _mm256_srai_epi32(x, 31));
        x = _mm256_sub_epi32(_mm256_srav_epi32(x, rs), _mm256_cmpgt_epi32(rem, thr));
        x = _mm256_min_epi32(_mm256_max_epi32(x, lo256), hi255);
        x = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(x, zp), amin), amax);
        __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
        _mm_storel_epi64((__m128i *)(void *)(out + i), _mm_packs_epi16(p16, p16));
    }
    for (; i < n; i++) {
        uint32_t c = c0 + i;
        out[i] = cnd_rt_requant(acc[i] + bias[c], l->mult[c], l->shift[c], l->out_zp, l->act_min,
                                l->act_max);
    }
}

/* dst[j] = dot(x[j], w) for nx inputs of K int8 (nx <= 4), weights w of K int8. */
T_AVX2 static void s_dot_avx2(int32_t *dst, const int8_t *const *x, int nx, const int8_t *w,
                              uint32_t K)
{
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                      _mm256_setzero_si256()};
    uint32_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(w + k)));
        for (int j = 0; j < nx; j++) {
            __m256i xv =
                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(x[j] + k)));
            acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(xv, wv));
        }
    }
    for (int j = 0; j < nx; j++) {
        int32_t s = s_hsum8(acc[j]);
        for (uint32_t t = k; t < K; t++) s += (int32_t)x[j][t] * w[t];
        dst[j] = s;
    }
}

T_AVX2 static void s_dense_avx2(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                                int8_t *scratch)
{
    // out is (O), in is (K), weight is (O, K); four rows share each input load
    uint32_t K = l->K, O = l->out_c, o = 0;
    int32_t *sums = (int32_t *)(void *)(scratch + RT_PATCHES * (((size_t)K + 63) & ~(size_t)63));
    for (; o + 4 <= O; o += 4) {
        const int8_t *w[4];
        for (int r = 0; r < 4; r++)
            w[r] = s_row(l, o + (uint32_t)r, scratch + (size_t)r * ((K + 63) & ~63u));
        __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                          _mm256_setzero_si256()};
        uint32_t k = 0;
        for (; k + 16 <= K; k += 16) {
            __m256i xv =
                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(in + k)));
            for (int r = 0; r < 4; r++) {
                __m256i wv = _mm256_cvtepi8_epi16(
                    _mm_loadu_si128((const __m128i *)(const void *)(w[r] + k)));
                acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(xv, wv));
            }
        }
        for (int r = 0; r < 4; r++) {
            int32_t s = s_hsum8(acc[r]);
            for (uint32_t t = k; t < K; t++) s += (int32_t)in[t] * w[r][t];
            sums[o + (uint32_t)r] = s;
        }
    }
    for (; o < O; o++) {
        const int8_t *x[1] = {in};
        s_dot_avx2(&sums[o], x, 1, s_row(l, o, scratch), K);
    }
    s_requant_avx2(out, sums, l, l->bias, 0, O);
}

T_AVX2 static void s_maxpool_avx2(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                                  int8_t *scratch)
{
    // out is (OH, OW, C), in is (H, W, C)
    (void)scratch;
    int C = l->in_c, W = l->in_w, K = l->k, S = l->stride;
    for (int oh = 0; oh < l->out_h; oh++)
        for (int ow = 0; ow < l->out_w; ow++) {
            int8_t *o = out + ((size_t)oh * l->out_w + ow) * C;
            const int8_t *base = in + ((size_t)(oh * S) * W + ow * S) * C;
            int c = 0;
            for (; c + 32 <= C; c += 32) {
                __m256i m = _mm256_set1_epi8(-128);
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++)
                        m = _mm256_max_epi8(
                            m, _mm256_loadu_si256(
                                   (const __m256i *)(const void *)(base + ((size_t)i * W + j) * C +
                                                                   c)));
                _mm256_storeu_si256((__m256i *)(void *)(o + c), m);
            }
            for (; c < C; c++) {
                int8_t best = -128;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) {
                        int8_t v = base[((size_t)i * W + j) * C + c];
                        if (v > best) best = v;
                    }
                o[c] = best;
            }
        }
}

/* Sums of four zmm accumulators as one xmm [sum a, sum b, sum c, sum d]. */
T_VNNI static __m128i s_reduce4(__m512i a, __m512i b, __m512i c, __m512i d)
{
    __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    __m512i s = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
    __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* Per-layer requantization vectors, loaded once per kernel call: an int8 store may alias
 * anything, so the compiler would otherwise reload them from the layer after every output. */
typedef struct {
    __m512i thr;
    __m256i zp;
    __m128i amin, amax;
    int lshift;
} s_rqv_t;

T_VNNI static inline s_rqv_t s_rqv(const cnd_rt_layer_t *l)
{
    s_rqv_t v;
    v.thr = _mm512_set1_epi64(-((int64_t)1 << 30));
    v.zp = _mm256_set1_epi16((short)l->out_zp);
    v.amin = _mm_set1_epi8(l->act_min);
    v.amax = _mm_set1_epi8(l->act_max);
    v.lshift = l->lshift;
    return v;
}

/* Requantizes 16 accumulators (channels of block q) into int8 and stores the lanes in mask m:
 * cnd_rt_requant's arithmetic through the precomputed constants of rt_rq16_t (see
 * rt_internal.h for why the 64-bit form is exact). The saturating narrowings replace the clamp
 * to [-256, 255]: any value beyond int8 after adding the zero point ends at act_min or act_max
 * either way. */
T_VNNI static inline void s_rq16(int8_t *out, __m512i acc, const s_rqv_t *v, const rt_rq16_t *q,
                                 __mmask16 m)
{
    __m512i x = _mm512_add_epi32(acc, _mm512_loadu_si512((const void *)q->bias));
    if (v->lshift) { /* saturating left shift by ls (0 in lanes with shift >= 0) */
        __m512i ls = _mm512_loadu_si512((const void *)q->ls);
        __m512i y = _mm512_sllv_epi32(x, ls);
        __mmask16 ovf = _mm512_cmpneq_epi32_mask(_mm512_srav_epi32(y, ls), x);
        __m512i sat = _mm512_xor_si512(_mm512_srai_epi32(x, 31), _mm512_set1_epi32(INT32_MAX));
        x = _mm512_mask_blend_epi32(ovf, y, sat);
    }
    __m512i mult = _mm512_loadu_si512((const void *)q->mult);
    __m512i pe = _mm512_mul_epi32(x, mult);
    __m512i po = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(mult, 32));
    __m512i te = _mm512_add_epi64(pe, _mm512_loadu_si512((const void *)q->k1[0]));
    __m512i to = _mm512_add_epi64(po, _mm512_loadu_si512((const void *)q->k1[1]));
    te = _mm512_mask_sub_epi64(te, _mm512_cmplt_epi64_mask(pe, v->thr), te,
                               _mm512_loadu_si512((const void *)q->k2[0]));
    to = _mm512_mask_sub_epi64(to, _mm512_cmplt_epi64_mask(po, v->thr), to,
                               _mm512_loadu_si512((const void *)q->k2[1]));
    te = _mm512_srav_epi64(te, _mm512_loadu_si512((const void *)q->sh[0]));
    to = _mm512_srav_epi64(to, _mm512_loadu_si512((const void *)q->sh[1]));
    x = _mm512_mask_shuffle_epi32(te, 0xAAAA, to, _MM_PERM_CDAB); /* odd lanes from to */
    __m128i b = _mm256_cvtsepi16_epi8(_mm256_adds_epi16(_mm512_cvtsepi32_epi16(x), v->zp));
    _mm_mask_storeu_epi8(out, m, _mm_min_epi8(_mm_max_epi8(b, v->amin), v->amax));
}

/* Lane mask of the channels of block b that exist (out_c need not be a multiple of 16). */
static inline __mmask16 s_lanes(uint32_t oc, uint32_t b)
{
    uint32_t n = oc - 16 * b;
    return (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1);
}

/* out[c] = requant(acc[c] + bias_u8[c]) for all channels of l. */
T_VNNI static void s_requant_vnni(int8_t *out, const int32_t *acc, const cnd_rt_layer_t *l)
{
    s_rqv_t v = s_rqv(l);
    for (uint32_t b = 0; b < ((uint32_t)l->out_c + 15) / 16; b++) {
        __mmask16 m = s_lanes(l->out_c, b);
        s_rq16(out + 16 * b, _mm512_maskz_loadu_epi32(m, acc + 16 * b), &v, l->rq + b, m);
    }
}

/* int4 dense on VNNI without unpacking rows: 64 packed bytes hold 128 weights, low nibbles at
 * even and high nibbles at odd positions. (nibble & 0xF) ^ 8 = w + 8 in [0, 15] is the
 * unsigned operand of vpdpbusd (one vpternlogd per 64 bytes), the raw signed input the signed
 * one, deinterleaved once per call into even (xe) and odd (xo) positions of each 128-input
 * chunk, zero past K. Then sum (w + 8) x - 8 sum x = sum w x, exactly (|sum (w + 8) x| <=
 * 15 * 128 * 2^20 < 2^31); bias - bias_u8 converts to the unsigned-input bias that
 * s_requant_vnni adds. */
T_VNNI static void s_dense4_vnni(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                                 int8_t *scratch)
{
    // out is (O), in is (K), weight is (O, ceil(K/2)) packed int4
    uint32_t K = l->K, O = l->out_c, row = l->w_row, nfull = K / 128, nch = (K + 127) / 128;
    size_t stride = (K + 63) & ~(size_t)63;
    int8_t *xe = scratch, *xo = scratch + 64 * (size_t)nch; /* 128 nch <= 4 stride */
    int32_t *sums = (int32_t *)(void *)(scratch + RT_PATCHES * stride);
    const __m512i lo16 = _mm512_set1_epi16(0x00ff), ones = _mm512_set1_epi8(1);
    const __m512i fix = _mm512_set_epi64(7, 5, 3, 1, 6, 4, 2, 0);
    __m512i sx = _mm512_setzero_si512();
    for (uint32_t i = 0; i < nch; i++) {
        uint32_t v = K - 128 * i; /* valid inputs in this chunk (128 unless the last) */
        __mmask64 ma = v >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << v) - 1;
        __mmask64 mb = v >= 128 ? ~(__mmask64)0 : v > 64 ? ((__mmask64)1 << (v - 64)) - 1 : 0;
        __m512i a = _mm512_maskz_loadu_epi8(ma, in + 128 * (size_t)i);
        __m512i b = _mm512_maskz_loadu_epi8(mb, in + 128 * (size_t)i + 64);
        /* packus works per 128-bit lane: [a0 b0 a1 b1 ...] in 8-byte pieces, fixed by fix */
        __m512i e = _mm512_permutexvar_epi64(
            fix, _mm512_packus_epi16(_mm512_and_si512(a, lo16), _mm512_and_si512(b, lo16)));
        __m512i o = _mm512_permutexvar_epi64(
            fix, _mm512_packus_epi16(_mm512_srli_epi16(a, 8), _mm512_srli_epi16(b, 8)));
        _mm512_storeu_si512((void *)(xe + 64 * (size_t)i), e);
        _mm512_storeu_si512((void *)(xo + 64 * (size_t)i), o);
        sx = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(sx, ones, e), ones, o);
    }
    uint32_t sum8 = 8u * (uint32_t)_mm512_reduce_add_epi32(sx);
    const __m512i m0f = _mm512_set1_epi8(0x0f), m08 = _mm512_set1_epi8(0x08);
    uint32_t tb = (K - 128 * nfull + 1) / 2; /* packed bytes of the last, partial chunk */
    __mmask64 tail = ((__mmask64)1 << tb) - 1;
    for (uint32_t o = 0; o < O; o += 4) {
        const uint8_t *w[4];
        int nr = O - o < 4 ? (int)(O - o) : 4;
        for (int r = 0; r < 4; r++) w[r] = l->w + (size_t)(o + (uint32_t)(r < nr ? r : 0)) * row;
        __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                          _mm512_setzero_si512()};
        for (uint32_t i = 0; i < nch; i++) {
            __m512i e = _mm512_loadu_si512((const void *)(xe + 64 * (size_t)i));
            __m512i od = _mm512_loadu_si512((const void *)(xo + 64 * (size_t)i));
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                __m512i b = i < nfull ? _mm512_loadu_si512((const void *)(w[r] + 64 * (size_t)i))
                                      : _mm512_maskz_loadu_epi8(tail, w[r] + 64 * (size_t)i);
                __m512i lo = _mm512_ternarylogic_epi32(b, m0f, m08, 0x6a); /* (b & f) ^ 8 */
                __m512i hi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(b, 4), m0f, m08, 0x6a);
                acc[r] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc[r], lo, e), hi, od);
            }
        }
        uint32_t s4[4];
        _mm_storeu_si128((__m128i *)(void *)s4, s_reduce4(acc[0], acc[1], acc[2], acc[3]));
        for (int r = 0; r < nr; r++) {
            uint32_t c = o + (uint32_t)r; /* wrapping arithmetic; the result is in range */
            sums[c] = (int32_t)(s4[r] - sum8 + (uint32_t)l->bias[c] - (uint32_t)l->bias_u8[c]);
        }
    }
    s_requant_vnni(out, sums, l);
}

T_VNNI static void s_dense_vnni(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                                int8_t *scratch)
{
    // out is (O), in is (K), weight is (O, K); inputs as unsigned x ^ 0x80
    if (l->wbits == 4) {
        s_dense4_vnni(out, in, l, scratch);
        return;
    }
    uint32_t K = l->K, O = l->out_c;
    size_t stride = (K + 63) & ~(size_t)63;
    int32_t *sums = (int32_t *)(void *)(scratch + RT_PATCHES * stride);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    uint32_t kfull = K & ~63u, rem = K - kfull;
    __mmask64 tail = rem ? (((__mmask64)1 << rem) - 1) : 0;
    uint32_t o8 = O & ~7u;
    for (uint32_t o = 0; o < o8; o += 8) { /* eight rows per pass, accumulators named so */
        const int8_t *w = (const int8_t *)l->w + (size_t)o * K; /* they stay in registers */
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
                a7 = a0;
#define S_ROWS8(XV, LOAD)                                                                          \
    do {                                                                                           \
        a0 = _mm512_dpbusd_epi32(a0, XV, LOAD(0));                                                 \
        a1 = _mm512_dpbusd_epi32(a1, XV, LOAD(1));                                                 \
        a2 = _mm512_dpbusd_epi32(a2, XV, LOAD(2));                                                 \
        a3 = _mm512_dpbusd_epi32(a3, XV, LOAD(3));                                                 \
        a4 = _mm512_dpbusd_epi32(a4, XV, LOAD(4));                                                 \
        a5 = _mm512_dpbusd_epi32(a5, XV, LOAD(5));                                                 \
        a6 = _mm512_dpbusd_epi32(a6, XV, LOAD(6));                                                 \
        a7 = _mm512_dpbusd_epi32(a7, XV, LOAD(7));                                                 \
    } while (0)
        for (uint32_t k = 0; k < kfull; k += 64) {
            __m512i xv = _mm512_xor_si512(_mm512_loadu_si512((const void *)(in + k)), flip);
#define S_FULL(r) _mm512_loadu_si512((const void *)(w + (size_t)(r)*K + k))
            S_ROWS8(xv, S_FULL);
#undef S_FULL
        }
        if (rem) {
            __m512i xv = _mm512_xor_si512(_mm512_maskz_loadu_epi8(tail, in + kfull), flip);
#define S_TAIL(r) _mm512_maskz_loadu_epi8(tail, w + (size_t)(r)*K + kfull)
            S_ROWS8(xv, S_TAIL);
#undef S_TAIL
        }
#undef S_ROWS8
        _mm_storeu_si128((__m128i *)(void *)(sums + o), s_reduce4(a0, a1, a2, a3));
        _mm_storeu_si128((__m128i *)(void *)(sums + o + 4), s_reduce4(a4, a5, a6, a7));
    }
    for (uint32_t o = o8; o < O; o += 4) { /* the last rows, four per pass */
        const int8_t *w[4];
        int nr = O - o < 4 ? (int)(O - o) : 4;
        for (int r = 0; r < 4; r++)
            w[r] = s_row(l, o + (uint32_t)(r < nr ? r : 0), scratch + (size_t)r * stride);
        __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                          _mm512_setzero_si512()};
        for (uint32_t k = 0; k < kfull; k += 64) {
            __m512i xv = _mm512_xor_si512(_mm512_loadu_si512((const void *)(in + k)), flip);
            for (int r = 0; r < 4; r++)
                acc[r] =
                    _mm512_dpbusd_epi32(acc[r], xv, _mm512_loadu_si512((const void *)(w[r] + k)));
        }
        if (rem) {
            __m512i xv = _mm512_xor_si512(_mm512_maskz_loadu_epi8(tail, in + kfull), flip);
            for (int r = 0; r < 4; r++)
                acc[r] =
                    _mm512_dpbusd_epi32(acc[r], xv, _mm512_maskz_loadu_epi8(tail, w[r] + kfull));
        }
        int32_t s[4];
        _mm_storeu_si128((__m128i *)(void *)s, s_reduce4(acc[0], acc[1], acc[2], acc[3]));
        for (int r = 0; r < nr; r++) sums[o + (uint32_t)r] = s[r];
    }
    s_requant_vnni(out, sums, l);
}

/* dst[0..n) = v, with 64-byte stores (masked tail). */
T_VNNI static inline void s_fill(uint8_t *dst, __m512i v, size_t n)
{
    size_t i = 0;
    for (; i + 64 <= n; i += 64) _mm512_storeu_si512((void *)(dst + i), v);
    if (i < n) _mm512_mask_storeu_epi8(dst + i, ((__mmask64)1 << (n - i)) - 1, v);
}

/* dst[0..n) = src[0..n) ^ 0x80: int8 to the unsigned (x + 128) that vpdpbusd multiplies. */
T_VNNI static inline void s_flip_copy(uint8_t *dst, const int8_t *src, size_t n)
{
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        _mm512_storeu_si512((void *)(dst + i),
                            _mm512_xor_si512(_mm512_loadu_si512((const void *)(src + i)), flip));
    if (i < n) {
        __mmask64 m = ((__mmask64)1 << (n - i)) - 1;
        _mm512_mask_storeu_epi8(dst + i, m,
                                _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, src + i), flip));
    }
}

/* The conv input as unsigned bytes with its zero padding written out: (H + 2 pad) rows of
 * (W + 2 pad) * C bytes, padding = in_zp + 128 (real zero), then 64 zero bytes of slack that
 * the last groups of a row may read (their weights are zero). */
T_VNNI static void s_pad_input(uint8_t *dst, const int8_t *in, const cnd_rt_layer_t *l)
{
    size_t C = l->in_c, W = l->in_w, H = l->in_h, pad = l->pad;
    size_t row = (W + 2 * pad) * C, side = pad * C, inner = W * C;
    __m512i z = _mm512_set1_epi8((char)(uint8_t)(l->in_zp + 128));
    s_fill(dst, z, pad * row);
    for (size_t h = 0; h < H; h++) {
        uint8_t *d = dst + (pad + h) * row;
        if (side) {
            s_fill(d, z, side);
            s_fill(d + side + inner, z, side);
        }
        s_flip_copy(d + side, in + h * inner, inner);
    }
    s_fill(dst + (pad + H) * row, z, pad * row);
    s_fill(dst + (H + 2 * pad) * row, _mm512_setzero_si512(), 64);
}

/* Patch mode (cnd_rt_vnni_direct is false): the k rows of 4 * grow values that output pixel
 * (oh, ow) reads, values past k * C of a row zero. esz 1 (VNNI): unsigned bytes x ^ 0x80,
 * padding in_zp + 128; esz 2 (AVX2): int16 x, padding in_zp. */
static void s_conv_patch(uint8_t *dst, const int8_t *in, const cnd_rt_layer_t *l, uint32_t oh,
                         uint32_t ow, int esz)
{
    int C = l->in_c, H = l->in_h, W = l->in_w, k = l->k, rowlen = 4 * (int)l->grow;
    int ih0 = (int)(oh * l->stride) - l->pad, iw0 = (int)(ow * l->stride) - l->pad;
    for (int i = 0; i < k; i++) {
        uint8_t *d8 = dst + (size_t)i * rowlen * esz;
        int16_t *d16 = (int16_t *)(void *)d8;
        int ih = ih0 + i;
        for (int j = 0; j < k; j++) {
            int iw = iw0 + j;
            int inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
            const int8_t *s = in + ((size_t)ih * W + iw) * C;
            for (int c = 0; c < C; c++) {
                int v = inside ? s[c] : l->in_zp;
                if (esz == 1)
                    d8[j * C + c] = (uint8_t)(v + 128);
                else
                    d16[j * C + c] = (int16_t)v;
            }
        }
        for (int t = k * C; t < rowlen; t++) {
            if (esz == 1)
                d8[t] = 0;
            else
                d16[t] = 0;
        }
    }
}

/* One tile of the direct VNNI conv: acc[j * NB + b] = the sum, over every group g = (kh, r), of
 * the 4 unsigned input bytes at px[j] + kh * rowstep + 4 r (broadcast to all lanes) times the
 * 16 x 4 weights of block b (each lane one output channel: no horizontal reductions). NP
 * pixels share each weight load and NB blocks share each broadcast; NP * NB accumulators stay
 * in registers. NP and NB are constants at every call (the function is always inlined). */
#define S_ALWAYS_INLINE __attribute__((always_inline)) inline
T_VNNI static S_ALWAYS_INLINE void s_vnni_tile(__m512i *acc, const uint8_t *const *px, const int NP,
                                               const int NB, const int8_t *w, uint32_t k,
                                               uint32_t grow, size_t rowstep)
{
    const uint8_t *p[RT_VNNI_PATCHES];
#pragma GCC unroll 8
    for (int j = 0; j < NP; j++) p[j] = px[j];
#pragma GCC unroll 16
    for (int i = 0; i < NP * NB; i++) acc[i] = _mm512_setzero_si512();
    for (uint32_t kh = 0; kh < k; kh++) {
        for (uint32_t r = 0; r < grow; r++, w += NB * 64) {
#pragma GCC unroll 8
            for (int j = 0; j < NP; j++) {
                int32_t v;
                memcpy(&v, p[j] + 4 * r, 4);
                __m512i x = _mm512_set1_epi32(v);
#pragma GCC unroll 4
                for (int b = 0; b < NB; b++) /* weights as memory operands (L1-resident) */
                    acc[j * NB + b] = _mm512_dpbusd_epi32(
                        acc[j * NB + b], x, _mm512_loadu_si512((const void *)(w + b * 64)));
            }
        }
#pragma GCC unroll 8
        for (int j = 0; j < NP; j++) p[j] += rowstep;
    }
}

/* Geometry of one direct conv run (VNNI or AVX2): the conv itself (unfused: windows of one
 * pixel) or conv2d + maxpool (windows of kp x kp conv pixels at stride sp, max taken before
 * requantization). Window entries are visited in order (window by window in raster order,
 * each window's pixels in raster order) by an iterator that moves pointers instead of dividing
 * indices. Inputs are esz-byte values: unsigned bytes for VNNI, int16 for AVX2. */
typedef struct {
    const cnd_rt_layer_t *l;
    const int8_t *in;
    int8_t *out;
    const uint8_t *src;                 /* padded input copy (direct) or NULL (patch mode) */
    uint8_t *patches;                   /* patch mode: RT_VNNI_PATCHES buffers of patch_len bytes */
    size_t rowstep, patch_len, pixstep; /* bytes: input row, patch, input pixel * stride */
    uint32_t kp, sp, ph, pw, kk, total; /* window side, stride, windows per column and row */
    int esz;
} s_conv_geo_t;

/* Fills g for conv l (and maxpool p, or NULL) with esz-byte inputs at src (direct mode; the
 * caller writes the padded copy there) or patches in scratch. Always inlined: if g escaped,
 * every int8 output store would force its fields to be reloaded. */
static S_ALWAYS_INLINE void s_geo_init(s_conv_geo_t *g, int8_t *out, const int8_t *in,
                                       const cnd_rt_layer_t *l, const cnd_rt_layer_t *p,
                                       int8_t *scratch, int esz)
{
    g->l = l;
    g->in = in;
    g->out = out;
    g->esz = esz;
    g->kp = p ? p->k : 1;
    g->sp = p ? p->stride : 1;
    g->pw = p ? p->out_w : l->out_w;
    g->ph = p ? p->out_h : l->out_h;
    g->kk = g->kp * g->kp;
    g->total = g->ph * g->pw * g->kk;
    g->pixstep = (size_t)l->stride * l->in_c * (size_t)esz;
    if (cnd_rt_vnni_direct(l->k, l->in_c, l->in_h, l->in_w, l->pad)) {
        g->src = (const uint8_t *)scratch;
        g->rowstep = (size_t)(l->in_w + 2 * l->pad) * l->in_c * (size_t)esz;
        g->patches = NULL;
        g->patch_len = 0;
    } else {
        g->src = NULL;
        g->rowstep = 4 * (size_t)l->grow * (size_t)esz;
        g->patches = (uint8_t *)scratch;
        g->patch_len = ((size_t)l->k * g->rowstep + 63) & ~(size_t)63;
    }
}

typedef struct {
    uint32_t di, dj, wy, wx;  /* pixel in window, window */
    const uint8_t *row, *win; /* direct: start of the window row, of the window */
} s_conv_it_t;

static inline void s_it_start(s_conv_it_t *it, const s_conv_geo_t *g)
{
    it->di = it->dj = it->wy = it->wx = 0;
    it->row = it->win = g->src;
}

/* The input pointer of the current entry (patch mode: builds its patch into buffer j), then
 * steps to the next entry. */
static inline const uint8_t *s_it_next(s_conv_it_t *it, const s_conv_geo_t *g, int j)
{
    const uint8_t *ptr;
    if (g->src) {
        ptr = it->win + it->di * g->l->stride * g->rowstep + it->dj * g->pixstep;
    } else {
        uint8_t *d = g->patches + (size_t)j * g->patch_len;
        s_conv_patch(d, g->in, g->l, it->wy * g->sp + it->di, it->wx * g->sp + it->dj, g->esz);
        ptr = d;
    }
    if (++it->dj == g->kp) {
        it->dj = 0;
        if (++it->di == g->kp) {
            it->di = 0;
            if (++it->wx == g->pw) {
                it->wx = 0;
                it->wy++;
                it->row += g->sp * g->l->stride * g->rowstep;
                it->win = it->row;
            } else {
                it->win += g->sp * g->pixstep;
            }
        }
    }
    return ptr;
}

/* One pass over all windows for blocks [b0, b0 + NB), NP window entries per tile. */
T_VNNI static S_ALWAYS_INLINE void s_conv_pass(const s_conv_geo_t *g, uint32_t b0, const int NP,
                                               const int NB, const int8_t *w)
{
    const cnd_rt_layer_t *l = g->l;
    __m512i run[RT_VNNI_NB] = {_mm512_setzero_si512(), _mm512_setzero_si512(),
                               _mm512_setzero_si512(), _mm512_setzero_si512()};
    __mmask16 last = s_lanes(l->out_c, b0 + (uint32_t)NB - 1);
    const rt_rq16_t *rq = l->rq + b0;
    const s_rqv_t v = s_rqv(l);
    const uint32_t kk = g->kk, total = g->total, k = l->k, grow = l->grow;
    const size_t rowstep = g->rowstep, ostep = l->out_c;
    s_conv_it_t it;
    s_it_start(&it, g);
    uint32_t i = 0;                       /* epilogue: pixel index within the window */
    int8_t *o = g->out + 16 * (size_t)b0; /* epilogue: the window's output */
    for (uint32_t e0 = 0; e0 < total; e0 += (uint32_t)NP) {
        const uint8_t *px[RT_VNNI_PATCHES];
        int valid = total - e0 < (uint32_t)NP ? (int)(total - e0) : NP;
        for (int j = 0; j < NP; j++) px[j] = j < valid ? s_it_next(&it, g, j) : px[0];
        __m512i acc[RT_VNNI_PATCHES * RT_VNNI_NB];
        s_vnni_tile(acc, px, NP, NB, w, k, grow, rowstep);
#pragma GCC unroll 8
        for (int j = 0; j < NP; j++) {
            if (j >= valid) break;
#pragma GCC unroll 4
            for (int b = 0; b < NB; b++)
                run[b] = i ? _mm512_max_epi32(run[b], acc[j * NB + b]) : acc[j * NB + b];
            if (++i == kk) {
#pragma GCC unroll 4
                for (int b = 0; b < NB; b++)
                    s_rq16(o + 16 * b, run[b], &v, rq + b, b == NB - 1 ? last : (__mmask16)0xffff);
                i = 0;
                o += ostep;
            }
        }
    }
}

/* One function per tile shape, so that each gets its own register allocation (inlined into
 * one function they spilled); the geometry comes by value and cannot alias the outputs. */
#define S_PASS_FN(NP, NB)                                                                          \
    T_VNNI __attribute__((noinline)) static void s_conv_pass_##NP##_##NB(                          \
        s_conv_geo_t g, uint32_t b0, const int8_t *w)                                              \
    {                                                                                              \
        s_conv_pass(&g, b0, NP, NB, w);                                                            \
    }
S_PASS_FN(4, 4)
S_PASS_FN(4, 3)
S_PASS_FN(8, 2)
S_PASS_FN(8, 1)
#undef S_PASS_FN

/* conv2d (p == NULL) or conv2d + maxpool p, direct on an unsigned padded copy of the input
 * (or per-pixel patches, see cnd_rt_vnni_direct), weights as repacked at load. Blocks of up
 * to four 16-channel blocks per pass; 4 pixels per tile for 3-4 blocks, 8 for 1-2 (16
 * accumulators either way). */
T_VNNI static void s_conv_vnni_any(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                                   const cnd_rt_layer_t *p, int8_t *scratch)
{
    s_conv_geo_t g;
    s_geo_init(&g, out, in, l, p, scratch, 1);
    if (g.src) s_pad_input((uint8_t *)scratch, in, l);
    uint32_t B = ((uint32_t)l->out_c + 15) / 16, G = l->k * l->grow;
    for (uint32_t b0 = 0; b0 < B; b0 += RT_VNNI_NB) {
        const int8_t *w = l->wpack + (size_t)b0 * G * 64;
        switch (B - b0 < RT_VNNI_NB ? B - b0 : RT_VNNI_NB) {
        case 4: s_conv_pass_4_4(g, b0, w); break;
        case 3: s_conv_pass_4_3(g, b0, w); break;
        case 2: s_conv_pass_8_2(g, b0, w); break;
        default: s_conv_pass_8_1(g, b0, w); break;
        }
    }
}

T_VNNI static void s_conv_vnni(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                               int8_t *scratch)
{
    s_conv_vnni_any(out, in, l, NULL, scratch);
}

T_VNNI static void s_conv_pool_vnni(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                                    const cnd_rt_layer_t *p, int8_t *scratch)
{
    s_conv_vnni_any(out, in, l, p, scratch);
}

/* The conv input as int16 with its padding (in_zp) written out, rows of (W + 2 pad) * C values,
 * then 64 zero bytes of slack that the last groups of a row may read (their weights are 0). */
T_AVX2 static void s_pad_input16(int16_t *dst, const int8_t *in, const cnd_rt_layer_t *l)
{
    size_t C = l->in_c, W = l->in_w, H = l->in_h, pad = l->pad;
    size_t row = (W + 2 * pad) * C, side = pad * C, inner = W * C, n;
    int16_t z = (int16_t)l->in_zp;
    for (n = 0; n < pad * row; n++) dst[n] = z;
    for (size_t h = 0; h < H; h++) {
        int16_t *d = dst + (pad + h) * row;
        const int8_t *x = in + h * inner;
        for (n = 0; n < side; n++) d[n] = d[side + inner + n] = z;
        d += side;
        for (n = 0; n + 16 <= inner; n += 16)
            _mm256_storeu_si256(
                (__m256i *)(void *)(d + n),
                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(x + n))));
        for (; n < inner; n++) d[n] = x[n];
    }
    int16_t *b = dst + (pad + H) * row;
    for (n = 0; n < pad * row; n++) b[n] = z;
    memset(dst + (H + 2 * pad) * row, 0, 64);
}

/* One tile of the direct AVX2 conv for one 16-channel block, weights in the VNNI packing: per
 * group, the block's 64 bytes (16 channels x 4 weights) are sign-extended a quarter at a time
 * (channels 4q..4q+3: dword lanes alternate weights 0-1 and 2-3 of a channel) and vpmaddwd'd
 * with the group's 4 int16 inputs broadcast as a quadword, so acc[j * 4 + q] holds, per
 * channel, two partial sums (pairs 0-1 and 2-3) that s_avx2_sum16 adds. NP = 2 pixels: 8
 * accumulators, 4 weights, the input and a product fit the 16 ymm registers. */
T_AVX2 static S_ALWAYS_INLINE void s_avx2_tile(__m256i *acc, const uint8_t *const *px,
                                               const int8_t *w, size_t wstep, uint32_t k,
                                               uint32_t grow, size_t rowstep)
{
    const uint8_t *p0 = px[0], *p1 = px[1];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_si256();
    for (uint32_t kh = 0; kh < k; kh++, p0 += rowstep, p1 += rowstep)
        for (uint32_t r = 0; r < grow; r++, w += wstep) {
            __m256i wq[4];
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++)
                wq[q] = _mm256_cvtepi8_epi16(
                    _mm_loadu_si128((const __m128i *)(const void *)(w + 16 * q)));
            int64_t v0, v1;
            memcpy(&v0, p0 + 8 * r, 8);
            memcpy(&v1, p1 + 8 * r, 8);
            __m256i x0 = _mm256_set1_epi64x(v0), x1 = _mm256_set1_epi64x(v1);
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) {
                acc[q] = _mm256_add_epi32(acc[q], _mm256_madd_epi16(wq[q], x0));
                acc[4 + q] = _mm256_add_epi32(acc[4 + q], _mm256_madd_epi16(wq[q], x1));
            }
        }
}

/* The 16 channel sums of one pixel from its 4 pair-accumulators: lo = channels 0-7, hi 8-15. */
T_AVX2 static inline void s_avx2_sum16(__m256i *lo, __m256i *hi, const __m256i *a)
{
    /* hadd per 128-bit lane gives [c0 c1 c4 c5 | c2 c3 c6 c7]; vpermq 0xd8 restores order */
    *lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a[0], a[1]), 0xd8);
    *hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a[2], a[3]), 0xd8);
}

/* conv2d (p == NULL) or conv2d + maxpool p on AVX2, direct on an int16 padded copy of the
 * input (or int16 patches) with the weights repacked for VNNI; one 16-channel block per pass,
 * 2 window entries per tile, window maxima of the int32 sums requantized once. */
T_AVX2 static void s_conv_avx2_any(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                                   const cnd_rt_layer_t *p, int8_t *scratch)
{
    s_conv_geo_t g;
    s_geo_init(&g, out, in, l, p, scratch, 2);
    if (g.src) s_pad_input16((int16_t *)(void *)scratch, in, l);
    uint32_t B = ((uint32_t)l->out_c + 15) / 16, G = l->k * l->grow;
    for (uint32_t b = 0; b < B; b++) {
        uint32_t pass = b / RT_VNNI_NB, nb = B - pass * RT_VNNI_NB;
        if (nb > RT_VNNI_NB) nb = RT_VNNI_NB;
        const int8_t *w = l->wpack + ((size_t)pass * RT_VNNI_NB * G + b % RT_VNNI_NB) * 64;
        uint32_t nc = l->out_c - 16 * b < 16 ? l->out_c - 16 * b : 16;
        __m256i run_lo = _mm256_setzero_si256(), run_hi = run_lo;
        s_conv_it_t it;
        s_it_start(&it, &g);
        uint32_t i = 0;
        int8_t *o = out + 16 * (size_t)b;
        for (uint32_t e0 = 0; e0 < g.total; e0 += 2) {
            int valid = g.total - e0 < 2 ? 1 : 2;
            const uint8_t *px[2];
            px[0] = s_it_next(&it, &g, 0);
            px[1] = valid == 2 ? s_it_next(&it, &g, 1) : px[0];
            __m256i acc[8];
            s_avx2_tile(acc, px, w, (size_t)nb * 64, l->k, l->grow, g.rowstep);
            for (int j = 0; j < valid; j++) {
                __m256i lo, hi;
                s_avx2_sum16(&lo, &hi, acc + 4 * j);
                run_lo = i ? _mm256_max_epi32(run_lo, lo) : lo;
                run_hi = i ? _mm256_max_epi32(run_hi, hi) : hi;
                if (++i == g.kk) {
                    int32_t sums[16];
                    _mm256_storeu_si256((__m256i *)(void *)sums, run_lo);
                    _mm256_storeu_si256((__m256i *)(void *)(sums + 8), run_hi);
                    s_requant_avx2(o, sums, l, l->bias, 16 * b, nc);
                    i = 0;
                    o += l->out_c;
                }
            }
        }
    }
}

T_AVX2 static void s_conv_avx2(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                               int8_t *scratch)
{
    s_conv_avx2_any(out, in, l, NULL, scratch);
}

T_AVX2 static void s_conv_pool_avx2(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                                    const cnd_rt_layer_t *p, int8_t *scratch)
{
    s_conv_avx2_any(out, in, l, p, scratch);
}

int cnd_rt_vnni_requant(int8_t *out, const int32_t *acc, const cnd_rt_layer_t *l)
{
    if (!cnd_rt_cpu_has(CND_RT_KERNELS_VNNI)) return CND_RT_EINVAL;
    s_requant_vnni(out, acc, l);
    return 0;
}

/* Depthwise conv (one output channel per input channel): channels are contiguous in HWC, so 8
 * lanes run 8 channels of one output pixel; each tap adds x * w with the weights repacked at
 * load as int32 [kh][kw][c] (cnd_rt_layer_t.wt), padding taps add z_in * w as the reference
 * does. The sums (from 0; the bias is added in the requantization) stay in int32 by the
 * loader's bound and are those of the reference, so s_requant_avx2 gives its bits. Other
 * grouped convs run the reference. */
T_AVX2 static void s_gconv_avx2(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                                int8_t *scratch)
{
    // out is (OH, OW, C), in is (H, W, C), wt is (KH, KW, C)
    if (!cnd_rt_depthwise(l) || !l->wt) {
        cnd_rt_ref_gconv(out, in, l, scratch);
        return;
    }
    int32_t *acc = (int32_t *)(void *)scratch;
    uint32_t C = l->in_c;
    int H = l->in_h, W = l->in_w, K = l->k, S = l->stride, P = l->pad;
    const __m256i zin = _mm256_set1_epi32(l->in_zp);
    for (int oh = 0; oh < l->out_h; oh++)
        for (int ow = 0; ow < l->out_w; ow++) {
            memset(acc, 0, 4 * (size_t)C);
            for (int i = 0; i < K; i++)
                for (int j = 0; j < K; j++) {
                    int ih = oh * S - P + i, iw = ow * S - P + j;
                    int inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
                    const int8_t *px = inside ? in + ((size_t)ih * W + iw) * C : NULL;
                    const int32_t *w = l->wt + (size_t)(i * K + j) * C;
                    uint32_t c = 0;
                    for (; c + 8 <= C; c += 8) {
                        __m256i x = px ? _mm256_cvtepi8_epi32(_mm_loadl_epi64(
                                             (const __m128i *)(const void *)(px + c)))
                                       : zin;
                        __m256i wv = _mm256_loadu_si256((const __m256i *)(const void *)(w + c));
                        __m256i *ap = (__m256i *)(void *)(acc + c);
                        _mm256_storeu_si256(ap, _mm256_add_epi32(_mm256_loadu_si256(ap),
                                                                 _mm256_mullo_epi32(x, wv)));
                    }
                    for (; c < C; c++) acc[c] += (px ? (int32_t)px[c] : l->in_zp) * w[c];
                }
            s_requant_avx2(out + ((size_t)oh * l->out_w + ow) * C, acc, l, l->bias, 0, C);
        }
}

/* x * M for 8 lanes with one multiplier (mult >= 0, checked at load) and shift: the
 * saturating left shift, high multiply and rounding right shift of s_requant_avx2, i.e.
 * cnd_rt_mbqm lane by lane. */
T_AVX2 static __m256i s_mbqm8(__m256i x, int32_t mult, int32_t shift)
{
    const __m256i one = _mm256_set1_epi32(1), nudge = _mm256_set1_epi64x((int64_t)1 << 30);
    const __m256i ls = _mm256_set1_epi32(shift < 0 ? -shift : 0);
    const __m256i rs = _mm256_set1_epi32(shift > 0 ? shift : 0), m = _mm256_set1_epi32(mult);
    __m256i y = _mm256_sllv_epi32(x, ls);
    __m256i ovf =
        _mm256_xor_si256(_mm256_cmpeq_epi32(_mm256_srav_epi32(y, ls), x), _mm256_set1_epi32(-1));
    __m256i sat = _mm256_xor_si256(_mm256_srai_epi32(x, 31), _mm256_set1_epi32(INT32_MAX));
    x = _mm256_blendv_epi8(y, sat, ovf);
    __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(x, m), nudge);
    __m256i po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), m), nudge);
    pe = _mm256_srli_epi64(pe, 31);
    po = _mm256_slli_epi64(_mm256_srli_epi64(po, 31), 32);
    x = _mm256_blend_epi32(pe, po, 0xAA);
    __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, rs), one);
    __m256i rem = _mm256_and_si256(x, mask);
    __m256i thr = _mm256_sub_epi32(_mm256_srai_epi32(mask, 1), _mm256_srai_epi32(x, 31));
    return _mm256_sub_epi32(_mm256_srav_epi32(x, rs), _mm256_cmpgt_epi32(rem, thr));
}

/* Residual add, 8 elements at a time, with cnd_rt_add's arithmetic: inputs minus their zero
 * points times 2^20 (exact in int32), each through its multiplier, a saturating int32 sum, the
 * output multiplier, clamps. The tail runs cnd_rt_add itself. */
T_AVX2 static void s_add_avx2(int8_t *out, const int8_t *a, const int8_t *b,
                              const cnd_rt_layer_t *l)
{
    // out, a and b are (H, W, C)
    const __m256i za = _mm256_set1_epi32(l->in_zp), zb = _mm256_set1_epi32(l->in2_zp);
    const __m256i lo256 = _mm256_set1_epi32(-256), hi255 = _mm256_set1_epi32(255);
    const __m256i zo = _mm256_set1_epi32(l->out_zp), imax = _mm256_set1_epi32(INT32_MAX);
    const __m256i amin = _mm256_set1_epi32(l->act_min), amax = _mm256_set1_epi32(l->act_max);
    uint32_t i = 0, n = l->out_bytes;
    for (; i + 8 <= n; i += 8) {
        __m256i x = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(a + i)));
        __m256i y = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(b + i)));
        x = s_mbqm8(_mm256_slli_epi32(_mm256_sub_epi32(x, za), 20), l->mult[0], l->shift[0]);
        y = s_mbqm8(_mm256_slli_epi32(_mm256_sub_epi32(y, zb), 20), l->mult[1], l->shift[1]);
        __m256i s = _mm256_add_epi32(x, y); /* saturate: signs of x and y equal, s's differs */
        __m256i ovf = _mm256_srai_epi32(
            _mm256_andnot_si256(_mm256_xor_si256(x, y), _mm256_xor_si256(x, s)), 31);
        __m256i sat = _mm256_xor_si256(_mm256_srai_epi32(x, 31), imax);
        s = _mm256_blendv_epi8(s, sat, ovf);
        s = s_mbqm8(s, l->mult[2], l->shift[2]);
        s = _mm256_min_epi32(_mm256_max_epi32(s, lo256), hi255);
        s = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(s, zo), amin), amax);
        __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        _mm_storel_epi64((__m128i *)(void *)(out + i), _mm_packs_epi16(p16, p16));
    }
    for (; i < n; i++)
        out[i] = cnd_rt_add(a[i], b[i], l->in_zp, l->in2_zp, l->mult, l->shift, l->out_zp,
                            l->act_min, l->act_max);
}

static const rt_kernels_t s_avx2 = {s_dense_avx2,     s_conv_avx2,  s_maxpool_avx2,
                                    s_conv_pool_avx2, s_gconv_avx2, s_add_avx2};
static const rt_kernels_t s_vnni = {s_dense_vnni,     s_conv_vnni,  s_maxpool_avx2,
                                    s_conv_pool_vnni, s_gconv_avx2, s_add_avx2};

const rt_kernels_t *cnd_rt_kernels_x86(cnd_rt_kernels_t k)
{
    return k == CND_RT_KERNELS_AVX2 ? &s_avx2 : k == CND_RT_KERNELS_VNNI ? &s_vnni : NULL;
}

#else

int cnd_rt_cpu_has(cnd_rt_kernels_t k)
{
    return k == CND_RT_KERNELS_REF;
}

const rt_kernels_t *cnd_rt_kernels_x86(cnd_rt_kernels_t k)
{
    (void)k;
    return NULL;
}

int cnd_rt_vnni_requant(int8_t *out, const int32_t *acc, const cnd_rt_layer_t *l)
{
    (void)out;
    (void)acc;
    (void)l;
    return CND_RT_EINVAL;
}

#endif
