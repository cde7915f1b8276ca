/*
 * fixedpoint.c: see fixedpoint.h. Stochastic rounding draws one 32-bit uniform per coordinate
 * from a ChaCha20 stream (libsodium) keyed by a fresh random seed, produced in chunks so that no
 * buffer the size of the model is needed. Packing has byte-aligned fast paths for 8, 16 and 32
 * bits and a generic 64-bit bit-buffer path for the other widths; both give identical bytes.
 */
#include "fixedpoint.h"
#include "bytes.h"
#include "dgauss.h"
#include "dp_accountant.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
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
    if (p->ddp_s2) { /* distributed DP (fixedpoint.h): rounded vectors plus 8 noise sigmas */
        if (p->ddp_s2 > ((uint64_t)1 << 40))
            return cnd_errf(CND_EINVAL, "fixed point: noise variance %llu above 2^40",
                            (unsigned long long)p->ddp_s2);
        double nd = (double)p->n_max;
        need = (uint64_t)(nd * floor(cnd_fxp_ddp_l2(p)) + ceil(8 * sqrt(nd * (double)p->ddp_s2)));
    }
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
    uint32_t limbs = (s_bitlen(p->weight_cap) + lb - 1) / lb;
    uint64_t loss_cap = (uint64_t)p->weight_cap * CND_FXP_LOSS_SCALE * CND_FXP_LOSS_MAX;
    uint32_t loss_limbs = (s_bitlen(loss_cap) + lb - 1) / lb;
    uint32_t extra = limbs * 3 + loss_limbs;
    if (p->dim > UINT32_MAX - extra) return cnd_errf(CND_ERANGE, "fixed point: too many values");
    out->bits = b;
    out->limb_bits = lb;
    out->n_limbs = limbs;
    out->m_limbs = limbs;
    out->loss_limbs = loss_limbs;
    out->len = p->dim + extra;
    return 0;
}

static void s_put_limbs(uint32_t *out, const cnd_fxp_layout_t *l, uint32_t n, uint64_t v)
{
    uint32_t lmask = (uint32_t)(((uint64_t)1 << l->limb_bits) - 1);
    for (uint32_t j = 0; j < n; j++) {
        out[j] = (uint32_t)(v & lmask);
        v >>= l->limb_bits;
    }
}

/* Reads a limb group of an aggregate of s sites; CND_ERANGE when a limb sum exceeds what s
 * sites' limbs can add up to (some site wrapped a limb around the ring). */
static int s_get_limbs(uint64_t *v, const uint32_t *sum, const cnd_fxp_layout_t *l, uint32_t n,
                       uint32_t s, const char *what)
{
    const uint64_t mask = ((uint64_t)1 << l->bits) - 1;
    const uint64_t lmax = (uint64_t)s * ((((uint64_t)1) << l->limb_bits) - 1);
    *v = 0;
    for (uint32_t j = 0; j < n; j++) {
        uint64_t x = (uint64_t)sum[j] & mask;
        if (x > lmax)
            return cnd_errf(CND_ERANGE,
                            "aggregate refused: %s limb %u sums to %llu, more than %u sites can "
                            "send (%llu); a site sent an out-of-range value",
                            what, j, (unsigned long long)x, s, (unsigned long long)lmax);
        *v += x << (j * l->limb_bits);
    }
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
    s_put_limbs(out + p->dim, l, l->n_limbs, r.weight);
    for (uint32_t j = p->dim + l->n_limbs; j < l->len; j++) out[j] = 0; /* metrics: none */
    if (rep) *rep = r;
    return 0;
}

int cnd_fxp_encode_metrics(uint32_t *out, const cnd_fxp_params_t *p, const cnd_fxp_layout_t *l,
                           const cnd_fxp_metrics_t *m)
{
    if (!isfinite(m->mean_loss) || m->mean_loss < 0)
        return cnd_errf(CND_EINVAL, "metrics: the validation loss is negative or not finite");
    uint64_t n = m->validated < p->weight_cap ? m->validated : p->weight_cap;
    uint64_t c = m->correct < m->validated ? m->correct : m->validated;
    if (m->validated > n) /* capped: keep the accuracy, not the count */
        c = (uint64_t)((double)c * (double)n / (double)m->validated + 0.5);
    double ml = m->mean_loss < CND_FXP_LOSS_MAX ? m->mean_loss : CND_FXP_LOSS_MAX;
    uint64_t lq = (uint64_t)(ml * CND_FXP_LOSS_SCALE * (double)n + 0.5);
    uint64_t lcap = n * CND_FXP_LOSS_SCALE * CND_FXP_LOSS_MAX;
    uint32_t *g = out + p->dim + l->n_limbs;
    s_put_limbs(g, l, l->m_limbs, n);
    s_put_limbs(g + l->m_limbs, l, l->m_limbs, c);
    s_put_limbs(g + 2 * l->m_limbs, l, l->loss_limbs, lq < lcap ? lq : lcap);
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

/* The totals of an aggregate of s sites and their bounds (fixedpoint.h). */
static int s_totals(cnd_fxp_totals_t *t, const cnd_fxp_params_t *p, const cnd_fxp_layout_t *l,
                    const uint32_t *sum, uint32_t s)
{
    const uint32_t *g = sum + p->dim;
    int rc = s_get_limbs(&t->weight, g, l, l->n_limbs, s, "sample count");
    if (!rc) rc = s_get_limbs(&t->validated, g + l->n_limbs, l, l->m_limbs, s, "validated");
    if (!rc)
        rc = s_get_limbs(&t->correct, g + l->n_limbs + l->m_limbs, l, l->m_limbs, s, "correct");
    if (!rc)
        rc = s_get_limbs(&t->loss_q, g + l->n_limbs + 2 * l->m_limbs, l, l->loss_limbs, s, "loss");
    if (rc) return rc;
    uint64_t wmax = (uint64_t)s * p->weight_cap;
    if (t->weight == 0)
        return cnd_errf(CND_ERANGE, "aggregate has total weight 0: nothing to average");
    if (t->weight < s || t->weight > wmax)
        return cnd_errf(CND_ERANGE,
                        "aggregate refused: total sample count %llu outside [%u, %llu] for %u "
                        "sites (each counts 1..%u); a site forged its count",
                        (unsigned long long)t->weight, s, (unsigned long long)wmax, s,
                        p->weight_cap);
    if (t->validated > wmax || t->correct > t->validated ||
        t->loss_q > t->validated * CND_FXP_LOSS_SCALE * CND_FXP_LOSS_MAX)
        return cnd_errf(CND_ERANGE,
                        "aggregate refused: inconsistent metrics (%llu validated, %llu correct, "
                        "loss sum %llu) for %u sites",
                        (unsigned long long)t->validated, (unsigned long long)t->correct,
                        (unsigned long long)t->loss_q, s);
    return 0;
}

int cnd_fxp_decode(float *avg, cnd_fxp_totals_t *tot, const cnd_fxp_params_t *p,
                   const cnd_fxp_layout_t *l, const uint32_t *sum, uint32_t survivors)
{
    memset(tot, 0, sizeof *tot);
    if (survivors == 0 || survivors > p->n_max)
        return cnd_errf(CND_ERANGE, "aggregate of %u sites; 1..%u expected", survivors, p->n_max);
    int rc = s_totals(tot, p, l, sum, survivors);
    if (rc) return rc;
    const uint64_t mod = (uint64_t)1 << l->bits, mask = mod - 1;
    const double qmax = (double)(((uint32_t)1 << (p->value_bits - 1)) - 1);
    double k = (double)p->clip * p->weight_cap / (qmax * (double)tot->weight);
    /* Each site's |v_i| <= ceil(a_u Q) <= a_u Q + 1, so |S_i| <= Q sum w / W + s. */
    double smax = qmax * (double)tot->weight / p->weight_cap + survivors;
    if (p->ddp_s2) { /* unweighted, noisy: only the ring bounds a coordinate */
        k = (double)p->clip / (qmax * survivors);
        smax = (double)(mod / 2);
    }
    for (uint32_t i = 0; i < p->dim; i++) {
        uint64_t s = sum[i] & mask;
        int64_t v = s >= mod / 2 ? (int64_t)s - (int64_t)mod : (int64_t)s;
        if ((double)(v < 0 ? -v : v) > smax)
            return cnd_errf(CND_ERANGE,
                            "aggregate refused: coordinate %u sums to %lld, beyond the %.0f that "
                            "%u sites' clipped updates allow (a site sent an out-of-range value)",
                            i, (long long)v, smax, survivors);
        double a = (double)v * k;
        avg[i] = (float)(a > p->clip ? p->clip : a < -p->clip ? -p->clip : a);
    }
    return 0;
}

double cnd_fxp_ddp_l2(const cnd_fxp_params_t *p)
{
    double q = (double)(((uint32_t)1 << (p->value_bits - 1)) - 1);
    return cnd_dp_ddg_rounded_l2(q, p->dim, exp(-0.5));
}

/* Conditional randomized rounding of y = x f into r (fixedpoint.h): 0, or CND_ERANGE. */
static int s_round_ddp(int64_t *r, const float *x, uint32_t dim, double f, double bound,
                       cnd_dgauss_t *g)
{
    const double b2 = bound * bound;
    for (int t = 0; t < CND_FXP_DDP_TRIES; t++) {
        double ss = 0;
        for (uint32_t i = 0; i < dim; i++) {
            double y = (double)x[i] * f, fl = floor(y);
            r[i] = (int64_t)fl + (cnd_dgauss_uniform(g) < y - fl);
            ss += (double)r[i] * (double)r[i];
        }
        if (ss <= b2) return 0;
    }
    return cnd_errf(CND_ERANGE,
                    "distributed DP: no randomized rounding within the L2 bound %.1f in %d "
                    "draws",
                    bound, CND_FXP_DDP_TRIES);
}

int cnd_fxp_encode_ddp(uint32_t *out, cnd_fxp_report_t *rep, const cnd_fxp_params_t *p,
                       const cnd_fxp_layout_t *l, const float *x, uint64_t weight,
                       struct cnd_dgauss *g)
{
    if (!p->ddp_s2) return cnd_errf(CND_EINVAL, "distributed DP: no noise variance");
    cnd_fxp_report_t r = {0, 0, 1, 0};
    double ss = 0;
    for (uint32_t i = 0; i < p->dim; i++) {
        if (!isfinite(x[i]))
            return cnd_errf(CND_EINVAL, "update coordinate %u is not a finite number", i);
        ss += (double)x[i] * (double)x[i];
    }
    r.norm = sqrt(ss);
    if (r.norm > p->clip) {
        r.scale = p->clip / r.norm;
        r.clipped = 1;
    }
    r.weight = weight < p->weight_cap ? weight : p->weight_cap;
    const double qmax = (double)(((uint32_t)1 << (p->value_bits - 1)) - 1);
    int64_t *v = malloc((size_t)p->dim * sizeof *v);
    if (!v) return cnd_errf(CND_ENOMEM, "distributed DP: out of memory");
    int rc = s_round_ddp(v, x, p->dim, r.scale * qmax / p->clip, cnd_fxp_ddp_l2(p), g);
    const uint32_t mask = l->bits == 32 ? 0xffffffffu : (((uint32_t)1 << l->bits) - 1);
    for (uint32_t i = 0; !rc && i < p->dim; i++) {
        int64_t z;
        rc = cnd_dgauss_sample(g, p->ddp_s2, &z);
        out[i] = (uint32_t)(uint64_t)(v[i] + z) & mask;
    }
    sodium_memzero(v, (size_t)p->dim * sizeof *v);
    free(v);
    if (rc) return rc;
    s_put_limbs(out + p->dim, l, l->n_limbs, r.weight);
    for (uint32_t j = p->dim + l->n_limbs; j < l->len; j++) out[j] = 0; /* metrics: none */
    if (rep) *rep = r;
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
