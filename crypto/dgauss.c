/*
 * dgauss.c: the exact discrete Gaussian sampler of dgauss.h (Canonne, Kamath, Steinke 2020).
 *
 * Invariants: every probability is a ratio of unsigned 128-bit integers num/den with den > 0;
 * Bernoulli(num/den) draws a uniform integer below den by rejection (no modulo bias); nothing
 * is computed in floating point. Bounds that keep the products in range: s2 <= 2^40, so
 * t <= 2^20 + 1, den = 2 s2 t^2 < 2^83; |Y| < 2^40, so (|Y| t - s2)^2 < 2^122; the loop counter
 * K of Algorithm 1 is refused past 2^40 (probability 1/K! of getting there).
 */
#include "dgauss.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 u128;

#define S_BUF 4096

struct cnd_dgauss {
    uint8_t key[crypto_stream_chacha20_ietf_KEYBYTES];
    uint64_t block;     /* next 64-byte keystream block */
    uint8_t buf[S_BUF]; /* keystream not yet used: buf[pos..S_BUF) */
    size_t pos;
};

cnd_dgauss_t *cnd_dgauss_new(const uint8_t *seed)
{
    cnd_dgauss_t *g = calloc(1, sizeof *g);
    if (!g) {
        (void)cnd_errf(CND_ENOMEM, "discrete Gaussian sampler: out of memory");
        return NULL;
    }
    if (seed)
        memcpy(g->key, seed, sizeof g->key);
    else
        randombytes_buf(g->key, sizeof g->key);
    g->pos = S_BUF;
    return g;
}

void cnd_dgauss_destroy(cnd_dgauss_t **g)
{
    if (!g || !*g) return;
    sodium_memzero(*g, sizeof **g);
    free(*g);
    *g = NULL;
}

/* The next n <= 16 keystream bytes. The 32-bit block counter of the IETF variant covers 256 GB
 * per nonce; the nonce carries the high bits of the block index so the stream never repeats. */
static void s_bytes(cnd_dgauss_t *g, uint8_t *out, size_t n)
{
    if (g->pos + n > S_BUF) {
        uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {0};
        uint64_t hi = g->block >> 32;
        memcpy(nonce, &hi, sizeof hi);
        memset(g->buf, 0, S_BUF);
        crypto_stream_chacha20_ietf_xor_ic(g->buf, g->buf, S_BUF, nonce, (uint32_t)g->block,
                                           g->key);
        g->block += S_BUF / 64;
        g->pos = 0;
    }
    memcpy(out, g->buf + g->pos, n);
    g->pos += n;
}

static u128 s_word(cnd_dgauss_t *g)
{
    uint8_t b[16];
    s_bytes(g, b, sizeof b);
    u128 w = 0;
    for (int i = 15; i >= 0; i--) w = (w << 8) | b[i];
    return w;
}

/* Uniform in [0, n) for n >= 1, by rejection on the smallest covering power of two. */
static u128 s_uniform_below(cnd_dgauss_t *g, u128 n)
{
    if (n <= 1) return 0;
    u128 m = n - 1;
    int bits = 0;
    while (m) {
        bits++;
        m >>= 1;
    }
    u128 mask = bits >= 128 ? ~(u128)0 : (((u128)1 << bits) - 1);
    for (;;) { /* 8 bytes suffice below 2^64 (most draws); else 16 */
        u128 u;
        if (bits <= 64) {
            uint8_t b[8];
            s_bytes(g, b, sizeof b);
            uint64_t w = 0;
            for (int i = 7; i >= 0; i--) w = (w << 8) | b[i];
            u = w;
        } else {
            u = s_word(g);
        }
        u &= mask;
        if (u < n) return u;
    }
}

/* Bernoulli(num / den), num <= den. */
static int s_bern(cnd_dgauss_t *g, u128 num, u128 den)
{
    return s_uniform_below(g, den) < num;
}

/* Bernoulli(exp(-num/den)) for num <= den (Algorithm 1, gamma in [0, 1]): K counts how many
 * Bernoulli(gamma / K) succeed in a row; the output is 1 when K ends odd. */
static int s_bern_exp_frac(cnd_dgauss_t *g, u128 num, u128 den)
{
    u128 k = 1;
    while (k < ((u128)1 << 40) && s_bern(g, num, den * k)) k++;
    return (int)(k & 1);
}

/* Bernoulli(exp(-num/den)) for any num >= 0 (Algorithm 1): floor(gamma) trials of exp(-1),
 * then the fractional part. */
static int s_bern_exp(cnd_dgauss_t *g, u128 num, u128 den)
{
    while (num > den) {
        if (!s_bern_exp_frac(g, 1, 1)) return 0;
        num -= den;
    }
    return s_bern_exp_frac(g, num, den);
}

/* Discrete Laplace of integer scale t >= 1 (Algorithm 2 with s = 1): P(x) ~ exp(-|x| / t). */
static int64_t s_dlaplace(cnd_dgauss_t *g, uint64_t t)
{
    for (;;) {
        uint64_t u = (uint64_t)s_uniform_below(g, t);
        if (!s_bern_exp(g, u, t)) continue;
        uint64_t v = 0;
        while (v < ((uint64_t)1 << 40) && s_bern_exp(g, 1, 1)) v++;
        u128 x = (u128)u + (u128)t * v;
        uint8_t sign;
        s_bytes(g, &sign, 1);
        sign &= 1;
        if (sign && x == 0) continue;
        if (x >= ((u128)1 << 40)) continue; /* out of the exact range; see the file comment */
        return sign ? -(int64_t)x : (int64_t)x;
    }
}

static uint64_t s_isqrt(uint64_t v)
{
    uint64_t r = 0;
    for (int b = 31; b >= 0; b--) {
        uint64_t c = r | ((uint64_t)1 << b);
        if (c * c <= v) r = c;
    }
    return r;
}

int cnd_dgauss_sample(cnd_dgauss_t *g, uint64_t s2, int64_t *x)
{
    if (s2 < 1 || s2 > CND_DGAUSS_S2_MAX)
        return cnd_errf(CND_EINVAL, "discrete Gaussian: variance %llu outside [1, 2^40]",
                        (unsigned long long)s2);
    uint64_t t = s_isqrt(s2) + 1;
    u128 den = (u128)2 * s2 * t * t;
    for (;;) {
        int64_t y = s_dlaplace(g, t);
        uint64_t ay = (uint64_t)(y < 0 ? -y : y);
        u128 a = (u128)ay * t, d = a > s2 ? a - s2 : s2 - a;
        if (s_bern_exp(g, d * d, den)) {
            *x = y;
            return 0;
        }
    }
}

int cnd_dgauss_add(cnd_dgauss_t *g, uint64_t s2, uint32_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int64_t z;
        int rc = cnd_dgauss_sample(g, s2, &z);
        if (rc) return rc;
        v[i] += (uint32_t)(uint64_t)z;
    }
    return 0;
}

double cnd_dgauss_uniform(cnd_dgauss_t *g)
{
    uint8_t b[8];
    s_bytes(g, b, sizeof b);
    uint64_t w = 0;
    for (int i = 7; i >= 0; i--) w = (w << 8) | b[i];
    return (double)(w >> 11) * 0x1p-53;
}
