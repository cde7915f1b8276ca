/*
 * shamir.c: see shamir.h. Secrets are processed as 64-bit words holding eight field elements;
 * s_mul_pub multiplies all eight by one public constant with the classic shift-and-add ("xtime")
 * loop, branching only on the public constant's bits.
 */
#include "shamir.h"

#include <sodium.h>
#include <string.h>

#define S_WORDS (CND_SHAMIR_MAX_SECRET / 8)

uint8_t cnd_gf256_mul(uint8_t a, uint8_t b)
{
    uint8_t r = 0;
    for (int i = 0; i < 8; i++) {
        r ^= (uint8_t)(-(b & 1) & a);
        uint8_t hi = (uint8_t) - (a >> 7);
        a = (uint8_t)((a << 1) ^ (hi & 0x1b));
        b >>= 1;
    }
    return r;
}

/* a^254 = a^-1 for a != 0 (public values only). */
static uint8_t s_inv(uint8_t a)
{
    uint8_t r = 1, p = a;
    for (int e = 254; e; e >>= 1) {
        if (e & 1) r = cnd_gf256_mul(r, p);
        p = cnd_gf256_mul(p, p);
    }
    return r;
}

/* Eight field elements times the public constant c. */
static inline uint64_t s_mul_pub(uint64_t v, uint8_t c)
{
    uint64_t r = 0;
    for (; c; c >>= 1) {
        if (c & 1) r ^= v;
        uint64_t hi = (v >> 7) & 0x0101010101010101ull;
        v = ((v & 0x7f7f7f7f7f7f7f7full) << 1) ^ (hi * 0x1b);
    }
    return r;
}

static void s_load(uint64_t *w, const uint8_t *p, size_t len)
{
    uint8_t tmp[CND_SHAMIR_MAX_SECRET] = {0};
    memcpy(tmp, p, len);
    for (size_t i = 0; i < (len + 7) / 8; i++) memcpy(&w[i], tmp + 8 * i, 8);
    sodium_memzero(tmp, sizeof tmp);
}

static void s_store(uint8_t *p, const uint64_t *w, size_t len)
{
    uint8_t tmp[CND_SHAMIR_MAX_SECRET];
    for (size_t i = 0; i < (len + 7) / 8; i++) memcpy(tmp + 8 * i, &w[i], 8);
    memcpy(p, tmp, len);
    sodium_memzero(tmp, sizeof tmp);
}

static int s_check_points(const uint8_t *xs, unsigned k)
{
    uint8_t seen[256] = {0};
    for (unsigned j = 0; j < k; j++) {
        if (xs[j] == 0) return cnd_errf(CND_EINVAL, "shamir: evaluation point 0 is the secret");
        if (seen[xs[j]]++) return cnd_errf(CND_EINVAL, "shamir: duplicate point %u", xs[j]);
    }
    return 0;
}

int cnd_shamir_split_with(uint8_t *shares, const uint8_t *secret, size_t len, unsigned t,
                          const uint8_t *xs, unsigned k, const uint8_t *coeffs)
{
    if (len == 0 || len > CND_SHAMIR_MAX_SECRET)
        return cnd_errf(CND_EINVAL, "shamir: secret length %zu outside [1, %d]", len,
                        CND_SHAMIR_MAX_SECRET);
    if (t < 1 || t > k || k > CND_SHAMIR_MAX_SHARES)
        return cnd_errf(CND_EINVAL, "shamir: need 1 <= t (%u) <= k (%u) <= %d", t, k,
                        CND_SHAMIR_MAX_SHARES);
    int rc = s_check_points(xs, k);
    if (rc) return rc;
    size_t nw = (len + 7) / 8;
    uint64_t c[S_WORDS], y[S_WORDS];
    for (unsigned j = 0; j < k; j++) {
        /* Horner: y = ((c_{t-1} x + c_{t-2}) x + ...) x + secret */
        memset(y, 0, sizeof y);
        for (unsigned i = t - 1; i >= 1; i--) {
            s_load(c, coeffs + (size_t)(i - 1) * len, len);
            for (size_t w = 0; w < nw; w++) y[w] = s_mul_pub(y[w], xs[j]) ^ c[w];
        }
        s_load(c, secret, len);
        for (size_t w = 0; w < nw; w++) y[w] = (t > 1 ? s_mul_pub(y[w], xs[j]) : 0) ^ c[w];
        s_store(shares + (size_t)j * len, y, len);
    }
    sodium_memzero(c, sizeof c);
    sodium_memzero(y, sizeof y);
    return 0;
}

int cnd_shamir_split(uint8_t *shares, const uint8_t *secret, size_t len, unsigned t,
                     const uint8_t *xs, unsigned k)
{
    if (sodium_init() < 0) return cnd_errf(CND_ECRYPTO, "libsodium failed to initialise");
    if (len == 0 || len > CND_SHAMIR_MAX_SECRET || t < 1 || t > CND_SHAMIR_MAX_SHARES)
        return cnd_shamir_split_with(shares, secret, len, t, xs, k, NULL);
    uint8_t coeffs[(CND_SHAMIR_MAX_SHARES - 1) * CND_SHAMIR_MAX_SECRET];
    size_t n = (size_t)(t - 1) * len;
    randombytes_buf(coeffs, n);
    int rc = cnd_shamir_split_with(shares, secret, len, t, xs, k, coeffs);
    sodium_memzero(coeffs, n);
    return rc;
}

int cnd_shamir_combine(uint8_t *secret, size_t len, const uint8_t *shares, const uint8_t *xs,
                       unsigned m)
{
    if (len == 0 || len > CND_SHAMIR_MAX_SECRET)
        return cnd_errf(CND_EINVAL, "shamir: secret length %zu outside [1, %d]", len,
                        CND_SHAMIR_MAX_SECRET);
    if (m == 0 || m > CND_SHAMIR_MAX_SHARES) return cnd_errf(CND_EINVAL, "shamir: %u shares", m);
    int rc = s_check_points(xs, m);
    if (rc) return rc;
    size_t nw = (len + 7) / 8;
    uint64_t acc[S_WORDS] = {0}, y[S_WORDS];
    for (unsigned j = 0; j < m; j++) {
        /* Lagrange basis at 0: prod_{i != j} x_i / (x_i - x_j); subtraction is XOR. */
        uint8_t num = 1, den = 1;
        for (unsigned i = 0; i < m; i++) {
            if (i == j) continue;
            num = cnd_gf256_mul(num, xs[i]);
            den = cnd_gf256_mul(den, xs[i] ^ xs[j]);
        }
        uint8_t lambda = cnd_gf256_mul(num, s_inv(den));
        s_load(y, shares + (size_t)j * len, len);
        for (size_t w = 0; w < nw; w++) acc[w] ^= s_mul_pub(y[w], lambda);
    }
    s_store(secret, acc, len);
    sodium_memzero(acc, sizeof acc);
    sodium_memzero(y, sizeof y);
    return 0;
}
