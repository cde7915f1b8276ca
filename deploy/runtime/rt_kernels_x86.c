/*
 * rt_kernels_x86.c: x86-64 fast paths for dense, conv2d and maxpool (AVX2; AVX-512 VNNI).
 *
 * Each function is compiled for its instruction set with a target attribute, so the file builds
 * with plain flags and the CPU is checked at run time (cnd_rt_cpu_has). Results equal the
 * reference bit for bit: integer sums are exact in any order (the loader proved no int32
 * overflow is possible), and requantization is the shared scalar cnd_rt_requant.
 *
 * AVX2: int8 inputs and weights are sign-extended to int16 and multiplied with vpmaddwd
 * (exact; vpmaddubsw would saturate its int16 pair sums). AVX-512 VNNI: vpdpbusd multiplies
 * unsigned by signed bytes, so inputs are shifted by +128 (x ^ 0x80) and the loader's bias_u8
 * already subtracts 128 * sum w. Dense layers compute four output rows per pass over the input
 * (AVX2 and VNNI) and reduce them together. conv2d: AVX2 gathers four im2col patches that share
 * each weight row; VNNI uses the weights the loader repacked into 16-channel blocks, so each
 * accumulator lane is one output channel and no reduction is needed. int4 rows are unpacked to
 * int8 in scratch (the VNNI conv has them unpacked by the repacking).
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
        for (int r = 0; r < 4; r++) w[r] = s_row(l, o + (uint32_t)r, scratch + (size_t)r * ((K + 63) & ~63u));
        __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                          _mm256_setzero_si256()};
        uint32_t k = 0;
        for (; k + 16 <= K; k += 16) {
            __m256i xv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(in + k)));
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

T_AVX2 static void s_conv_avx2(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                               int8_t *scratch)
{
    // out is (OH, OW, OC), in is (H, W, C), weight is (OC, KH, KW, C)
    uint32_t K = l->K, OC = l->out_c, P = (uint32_t)l->out_h * l->out_w;
    size_t stride = (K + 63) & ~(size_t)63;
    int8_t *wbuf = scratch + RT_PATCHES * stride;
    int32_t *sums = (int32_t *)(void *)(wbuf + (l->wbits == 4 ? RT_PATCHES * stride : 0));
    for (uint32_t p0 = 0; p0 < P; p0 += RT_PATCHES) {
        int np = P - p0 < RT_PATCHES ? (int)(P - p0) : RT_PATCHES;
        const int8_t *x[RT_PATCHES];
        for (int j = 0; j < np; j++) {
            uint32_t p = p0 + (uint32_t)j;
            cnd_rt_conv_patch(scratch + (size_t)j * stride, in, l, (int)(p / l->out_w),
                              (int)(p % l->out_w));
            x[j] = scratch + (size_t)j * stride;
        }
        for (uint32_t c = 0; c < OC; c++) {
            int32_t s[RT_PATCHES];
            s_dot_avx2(s, x, np, s_row(l, c, wbuf), K);
            for (int j = 0; j < np; j++) sums[(size_t)j * OC + c] = s[j];
        }
        for (int j = 0; j < np; j++)
            s_requant_avx2(out + (size_t)(p0 + (uint32_t)j) * OC, sums + (size_t)j * OC, l,
                           l->bias, 0, OC);
    }
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
                        m = _mm256_max_epi8(m, _mm256_loadu_si256((const __m256i *)(const void *)(
                                                   base + ((size_t)i * W + j) * C + c)));
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

T_VNNI static void s_dense_vnni(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                                int8_t *scratch)
{
    // out is (O), in is (K), weight is (O, K); inputs as unsigned x ^ 0x80
    uint32_t K = l->K, O = l->out_c;
    size_t stride = (K + 63) & ~(size_t)63;
    int32_t *sums = (int32_t *)(void *)(scratch + RT_PATCHES * stride);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    uint32_t kfull = K & ~63u, rem = K - kfull;
    __mmask64 tail = rem ? (((__mmask64)1 << rem) - 1) : 0;
    for (uint32_t o = 0; o < O; o += 4) {
        const int8_t *w[4];
        int nr = O - o < 4 ? (int)(O - o) : 4;
        for (int r = 0; r < 4; r++)
            w[r] = s_row(l, o + (uint32_t)(r < nr ? r : 0), scratch + (size_t)r * stride);
        __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                          _mm512_setzero_si512()};
        for (uint32_t k = 0; k < kfull; k += 64) {
            __m512i xv = _mm512_xor_si512(_mm512_loadu_si512((const void *)(in + k)), flip);
            for (int r = 0; r < 4; r++)
                acc[r] = _mm512_dpbusd_epi32(acc[r], xv, _mm512_loadu_si512((const void *)(w[r] + k)));
        }
        if (rem) {
            __m512i xv = _mm512_xor_si512(_mm512_maskz_loadu_epi8(tail, in + kfull), flip);
            for (int r = 0; r < 4; r++)
                acc[r] = _mm512_dpbusd_epi32(acc[r], xv, _mm512_maskz_loadu_epi8(tail, w[r] + kfull));
        }
        int32_t s[4];
        _mm_storeu_si128((__m128i *)(void *)s, s_reduce4(acc[0], acc[1], acc[2], acc[3]));
        for (int r = 0; r < nr; r++) sums[o + (uint32_t)r] = s[r];
    }
    s_requant_avx2(out, sums, l, l->bias_u8, 0, O);
}

/* AVX-512 version of s_requant_avx2 for the 16 channels c0.. of one accumulator vector; n <= 16
 * lanes are stored. Same arithmetic, bit for bit. */
T_VNNI static void s_requant16(int8_t *out, __m512i acc, const cnd_rt_layer_t *l,
                               const int32_t *bias, uint32_t c0, uint32_t n)
{
    __mmask16 m = (__mmask16)(n >= 16 ? 0xffffu : ((1u << n) - 1));
    const __m512i one = _mm512_set1_epi32(1), zero = _mm512_setzero_si512();
    const __m512i nudge = _mm512_set1_epi64((int64_t)1 << 30);
    __m512i x = _mm512_add_epi32(acc, _mm512_maskz_loadu_epi32(m, bias + c0));
    __m512i sh = _mm512_maskz_loadu_epi32(m, l->shift + c0);
    __m512i mult = _mm512_maskz_loadu_epi32(m, l->mult + c0);
    __m512i ls = _mm512_max_epi32(_mm512_sub_epi32(zero, sh), zero);
    __m512i rs = _mm512_max_epi32(sh, zero);
    __m512i y = _mm512_sllv_epi32(x, ls);
    __mmask16 ovf = _mm512_cmpneq_epi32_mask(_mm512_srav_epi32(y, ls), x);
    __m512i sat = _mm512_xor_si512(_mm512_srai_epi32(x, 31), _mm512_set1_epi32(INT32_MAX));
    x = _mm512_mask_blend_epi32(ovf, y, sat);
    __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(x, mult), nudge);
    __m512i po = _mm512_add_epi64(
        _mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(mult, 32)), nudge);
    pe = _mm512_srli_epi64(pe, 31);
    po = _mm512_slli_epi64(_mm512_srli_epi64(po, 31), 32);
    x = _mm512_mask_blend_epi32(0xAAAA, pe, po);
    __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, rs), one);
    __m512i rem = _mm512_and_si512(x, mask);
    __m512i thr = _mm512_sub_epi32(_mm512_srai_epi32(mask, 1), _mm512_srai_epi32(x, 31));
    __mmask16 up = _mm512_cmpgt_epi32_mask(rem, thr);
    x = _mm512_mask_add_epi32(_mm512_srav_epi32(x, rs), up, _mm512_srav_epi32(x, rs), one);
    x = _mm512_min_epi32(_mm512_max_epi32(x, _mm512_set1_epi32(-256)), _mm512_set1_epi32(255));
    x = _mm512_add_epi32(x, _mm512_set1_epi32(l->out_zp));
    x = _mm512_min_epi32(_mm512_max_epi32(x, _mm512_set1_epi32(l->act_min)),
                         _mm512_set1_epi32(l->act_max));
    _mm_mask_storeu_epi8(out, m, _mm512_cvtsepi32_epi8(x));
}

/* conv2d on weights repacked at load (l->wpack): each 32-bit lane of a zmm accumulates one of 16
 * output channels, vpdpbusd multiplies four broadcast input bytes by that channel's four
 * weights, so no horizontal reductions are needed; RT_BC_TILE pixels share each weight load and
 * the 16 sums go straight to s_requant16. */
T_VNNI static void s_conv_vnni(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                               int8_t *scratch)
{
    // out is (OH, OW, OC), in is (H, W, C), packed weight is (OC/16, K/4, 16, 4)
    uint32_t K = l->K, OC = l->out_c, P = (uint32_t)l->out_h * l->out_w;
    uint32_t G = (K + 3) / 4, NB = (OC + 15) / 16;
    size_t stride = (K + 63) & ~(size_t)63;
    for (uint32_t p0 = 0; p0 < P; p0 += RT_BC_TILE) {
        int np = P - p0 < RT_BC_TILE ? (int)(P - p0) : RT_BC_TILE;
        const int8_t *x[RT_BC_TILE];
        for (int j = 0; j < RT_BC_TILE; j++) {
            int8_t *d = scratch + (size_t)j * stride;
            if (j < np) {
                uint32_t p = p0 + (uint32_t)j;
                cnd_rt_conv_patch(d, in, l, (int)(p / l->out_w), (int)(p % l->out_w));
            }
            x[j] = j < np ? d : scratch;
        }
        for (uint32_t b = 0; b < NB; b++) {
            const int8_t *wp = l->wpack + (size_t)b * G * 64;
            __m512i acc[RT_BC_TILE];
            for (int j = 0; j < RT_BC_TILE; j++) acc[j] = _mm512_setzero_si512();
            for (uint32_t g = 0; g < G; g++) {
                __m512i wv = _mm512_loadu_si512((const void *)(wp + (size_t)g * 64));
                for (int j = 0; j < RT_BC_TILE; j++) {
                    uint32_t v; /* four input bytes, made unsigned (x + 128) */
                    memcpy(&v, x[j] + 4 * g, 4);
                    acc[j] = _mm512_dpbusd_epi32(acc[j], _mm512_set1_epi32((int)(v ^ 0x80808080u)), wv);
                }
            }
            uint32_t nc = OC - 16 * b < 16 ? OC - 16 * b : 16;
            for (int j = 0; j < np; j++)
                s_requant16(out + (size_t)(p0 + (uint32_t)j) * OC + 16 * b, acc[j], l, l->bias_u8,
                            16 * b, nc);
        }
    }
}

static const rt_kernels_t s_avx2 = {s_dense_avx2, s_conv_avx2, s_maxpool_avx2};
static const rt_kernels_t s_vnni = {s_dense_vnni, s_conv_vnni, s_maxpool_avx2};

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

#endif
