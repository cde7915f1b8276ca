/*
 * fixedpoint.c: see fixedpoint.h. Stochastic rounding draws one 32-bit uniform per coordinate
 * from a ChaCha20 stream (libsodium) keyed by a fresh random seed, produced in chunks so that no
 * buffer the size of the model is needed. Packing has byte-aligned fast paths for 8, 16 and 32
 * bits and a generic 64-bit bit-buffer path for the other widths; both give identical bytes.
 */
#include "fixedpoint.h"
#include "bytes.h"

#include <math.h>
#include <sodium.h>
#include <string.h>

#define S_CHUNK 4096 /* coordinates per block of rounding randomness */

static unsigned s_bitlen(uint64_t v)
{
    unsigned n = 0;
    while (v) {
        n++;
        v >>= 1;
    }
    return n;
}

int cnd_fxp_layout(cnd_fxp_layout_t *out, const cnd_fxp_params_t *p)
{
    memset(out, 0, sizeof *out);
    if (p->dim == 0) return cnd_errf(CND_EINVAL, "fixed point: dimension is 0");
    if (p->n_max == 0) return cnd_errf(CND_EINVAL, "fixed point: n_max is 0");
    if (p->value_bits < 2 || p->value_bits > 24)
        return cnd_errf(CND_EINVAL, "fixed point: value_bits %u outside [2, 24]", p->value_bits);
    if (!(p->clip > 0) || !isfinite(p->clip))
        return cnd_errf(CND_EINVAL, "fixed point: clip must be a positive finite number");
    if (!(p->l2_max >= 0) || !isfinite(p->l2_max))
        return cnd_errf(CND_EINVAL, "fixed point: l2_max must be >= 0 and finite");
    if (p->weight_cap == 0) return cnd_errf(CND_EINVAL, "fixed point: weight_cap is 0");
    uint64_t q = ((uint64_t)1 << (p->value_bits - 1)) - 1;
    uint64_t need = (uint64_t)p->n_max * q;
    unsigned b = 1 + s_bitlen(need);
    if (b > CND_RING_MAX_BITS)
        return cnd_errf(CND_ERANGE,
                        "fixed point: %u clients of %u-bit values need a %u-bit ring; at most %d "
                        "bits are supported (lower value_bits or the number of clients)",
                        p->n_max, p->value_bits, b, CND_RING_MAX_BITS);
    uint64_t ring_max = ((uint64_t)1 << b) - 1;
    unsigned lb = 0;
    while (lb < 32 && (uint64_t)p->n_max * (((uint64_t)1 << (lb + 1)) - 1) <= ring_max) lb++;
    if (lb == 0) return cnd_errf(CND_ERANGE, "fixed point: no room for the sample count");
    unsigned wbits = s_bitlen(p->weight_cap);
    uint32_t limbs = (wbits + lb - 1) / lb;
    if (p->dim > UINT32_MAX - limbs) return cnd_errf(CND_ERANGE, "fixed point: too many values");
    out->bits = b;
    out->limb_bits = lb;
    out->n_limbs = limbs;
    out->len = p->dim + limbs;
    return 0;
}

int cnd_fxp_encode_seeded(uint32_t *out, cnd_fxp_report_t *rep, const cnd_fxp_params_t *p,
                          const cnd_fxp_layout_t *l, const float *x, uint64_t weight,
                          const uint8_t rseed[32])
{
    cnd_fxp_report_t r = {0, 0, 1, 0};
    const double c = p->clip;
    double ss = 0;
    for (uint32_t i = 0; i < p->dim; i++) {
        if (!isfinite(x[i]))
            return cnd_errf(CND_EINVAL, "update coordinate %u is not a finite number", i);
        double v = x[i];
        if (v > c || v < -c) {
            r.clipped++;
            v = v > c ? c : -c;
        }
        ss += v * v;
    }
    r.norm = sqrt(ss);
    if (p->l2_max > 0 && r.norm > p->l2_max) r.scale = p->l2_max / r.norm;
    r.weight = weight < p->weight_cap ? weight : p->weight_cap;
    const double qmax = (double)(((uint32_t)1 << (p->value_bits - 1)) - 1);
    const double f = r.scale * ((double)r.weight / p->weight_cap) * qmax / c;
    const uint32_t mask = l->bits == 32 ? 0xffffffffu : (((uint32_t)1 << l->bits) - 1);
    static const uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES];
    uint8_t rnd[S_CHUNK * 4];
    for (uint32_t i0 = 0; i0 < p->dim; i0 += S_CHUNK) {
        uint32_t n = p->dim - i0 < S_CHUNK ? p->dim - i0 : S_CHUNK;
        memset(rnd, 0, (size_t)n * 4);
        crypto_stream_chacha20_ietf_xor_ic(rnd, rnd, (size_t)n * 4, nonce, i0 / 16, rseed);
        for (uint32_t j = 0; j < n; j++) {
            double v = x[i0 + j];
            v = v > c ? c : v < -c ? -c : v;
            double t = v * f;
            double fl = floor(t);
            uint32_t u;
            memcpy(&u, rnd + 4 * j, 4);
            /* round up with probability t - fl: u / 2^32 < t - fl */
            int64_t q = (int64_t)fl + ((double)u < (t - fl) * 4294967296.0);
            if (q > (int64_t)qmax) q = (int64_t)qmax;
            if (q < -(int64_t)qmax) q = -(int64_t)qmax;
            out[i0 + j] = (uint32_t)q & mask;
        }
    }
    sodium_memzero(rnd, sizeof rnd);
    uint64_t w = r.weight;
    uint32_t lmask = (uint32_t)(((uint64_t)1 << l->limb_bits) - 1);
    for (uint32_t j = 0; j < l->n_limbs; j++) {
        out[p->dim + j] = (uint32_t)(w & lmask);
        w >>= l->limb_bits;
    }
    if (rep) *rep = r;
    return 0;
}

int cnd_fxp_encode(uint32_t *out, cnd_fxp_report_t *rep, const cnd_fxp_params_t *p,
                   const cnd_fxp_layout_t *l, const float *x, uint64_t weight)
{
    if (sodium_init() < 0) return cnd_errf(CND_ECRYPTO, "libsodium failed to initialise");
    uint8_t seed[32];
    randombytes_buf(seed, sizeof seed);
    int rc = cnd_fxp_encode_seeded(out, rep, p, l, x, weight, seed);
    sodium_memzero(seed, sizeof seed);
    return rc;
}

int cnd_fxp_decode(float *avg, uint64_t *total_weight, const cnd_fxp_params_t *p,
                   const cnd_fxp_layout_t *l, const uint32_t *sum)
{
    const uint64_t mod = (uint64_t)1 << l->bits, mask = mod - 1;
    uint64_t tw = 0;
    for (uint32_t j = 0; j < l->n_limbs; j++)
        tw += ((uint64_t)sum[p->dim + j] & mask) << (j * l->limb_bits);
    *total_weight = tw;
    if (tw == 0) return cnd_errf(CND_ERANGE, "aggregate has total weight 0: nothing to average");
    const double qmax = (double)(((uint32_t)1 << (p->value_bits - 1)) - 1);
    const double k = (double)p->clip * p->weight_cap / (qmax * (double)tw);
    for (uint32_t i = 0; i < p->dim; i++) {
        uint64_t s = sum[i] & mask;
        int64_t v = s >= mod / 2 ? (int64_t)s - (int64_t)mod : (int64_t)s;
        avg[i] = (float)((double)v * k);
    }
    return 0;
}

size_t cnd_ring_packed_bytes(size_t n, unsigned bits)
{
    return (n / 8) * bits + ((n % 8) * bits + 7) / 8;
}

void cnd_ring_pack(uint8_t *out, const uint32_t *v, size_t n, unsigned bits)
{
    if (bits == 16) {
        for (size_t i = 0; i < n; i++) {
            out[2 * i] = (uint8_t)v[i];
            out[2 * i + 1] = (uint8_t)(v[i] >> 8);
        }
        return;
    }
    if (bits == 8) {
        for (size_t i = 0; i < n; i++) out[i] = (uint8_t)v[i];
        return;
    }
    if (bits == 32) {
        for (size_t i = 0; i < n; i++) cnd_st_le32(out + 4 * i, v[i]);
        return;
    }
    /* Other widths: a 64-bit bit buffer flushed 32 bits at a time (have < 32 before each add,
     * bits <= 31, so nothing overflows). */
    const uint64_t mask = ((uint64_t)1 << bits) - 1;
    uint64_t acc = 0;
    unsigned have = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        acc |= ((uint64_t)v[i] & mask) << have;
        have += bits;
        if (have >= 32) {
            cnd_st_le32(out + o, (uint32_t)acc);
            o += 4;
            acc >>= 32;
            have -= 32;
        }
    }
    for (; have > 0; have = have > 8 ? have - 8 : 0) {
        out[o++] = (uint8_t)acc;
        acc >>= 8;
    }
}

static inline uint64_t s_le64(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#else
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--) v = v << 8 | p[k];
    return v;
#endif
}

static int s_unpack(uint32_t *dst, const uint8_t *in, size_t n, unsigned bits, int add)
{
    /* Check the padding first, so a refused vector leaves the accumulator untouched. */
    size_t nbytes = cnd_ring_packed_bytes(n, bits);
    unsigned pad = (unsigned)(nbytes * 8 - (n % 8) * bits - (n / 8) * 8 * bits);
    if (pad && (in[nbytes - 1] >> (8 - pad)) != 0)
        return cnd_errf(CND_EFORMAT, "packed vector: padding bits of the last byte are not zero");
    if (bits == 16) {
        if (add)
            for (size_t i = 0; i < n; i++) dst[i] += (uint32_t)(in[2 * i] | in[2 * i + 1] << 8);
        else
            for (size_t i = 0; i < n; i++) dst[i] = (uint32_t)(in[2 * i] | in[2 * i + 1] << 8);
        return 0;
    }
    if (bits == 8) {
        if (add)
            for (size_t i = 0; i < n; i++) dst[i] += in[i];
        else
            for (size_t i = 0; i < n; i++) dst[i] = in[i];
        return 0;
    }
    if (bits == 32) {
        for (size_t i = 0; i < n; i++) {
            const uint8_t *p = in + 4 * i;
            uint32_t v =
                (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            dst[i] = add ? dst[i] + v : v;
        }
        return 0;
    }
    /* Other widths: while 8 bytes can be read at the element's first byte, one unaligned 64-bit
     * little-endian load and a shift give the element (bit offset <= 7, bits <= 31); the last
     * few elements go through a bit buffer. */
    const uint64_t mask = ((uint64_t)1 << bits) - 1;
    size_t i = 0;
    for (; i < n; i++) {
        size_t bit = i * bits, byte = bit >> 3;
        if (byte + 8 > nbytes) break;
        uint32_t v = (uint32_t)((s_le64(in + byte) >> (bit & 7)) & mask);
        dst[i] = add ? dst[i] + v : v;
    }
    size_t bit0 = i * bits;
    size_t o = bit0 >> 3;
    unsigned skip = (unsigned)(bit0 & 7), have = 0;
    uint64_t acc = 0;
    if (skip && i < n) {
        acc = (uint64_t)in[o++] >> skip;
        have = 8 - skip;
    }
    for (; i < n; i++) {
        while (have < bits) {
            acc |= (uint64_t)in[o++] << have;
            have += 8;
        }
        uint32_t v = (uint32_t)(acc & mask);
        dst[i] = add ? dst[i] + v : v;
        acc >>= bits;
        have -= bits;
    }
    return 0;
}

int cnd_ring_unpack(uint32_t *out, const uint8_t *in, size_t n, unsigned bits)
{
    return s_unpack(out, in, n, bits, 0);
}

int cnd_ring_unpack_add(uint32_t *acc, const uint8_t *in, size_t n, unsigned bits)
{
    return s_unpack(acc, in, n, bits, 1);
}
