/*
 * rng.c: xoshiro256** (Blackman and Vigna) with splitmix64 seeding; see rng.h.
 */
#include "rng.h"

#include <math.h>

static uint64_t s_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t s_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void cnd_rng_seed(cnd_rng_t *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = s_splitmix(&seed);
}

uint64_t cnd_rng_u64(cnd_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = s_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s_rotl(s[3], 45);
    return result;
}

uint64_t cnd_rng_below(cnd_rng_t *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = cnd_rng_u64(r);
    while (x >= limit);
    return x % n;
}

float cnd_rng_float(cnd_rng_t *r)
{
    return (float)(cnd_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

double cnd_rng_double(cnd_rng_t *r)
{
    return (double)(cnd_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

double cnd_rng_normal(cnd_rng_t *r)
{
    double u1 = 1.0 - cnd_rng_double(r); /* (0, 1] so log is finite */
    double u2 = cnd_rng_double(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

double cnd_rng_gamma(cnd_rng_t *r, double shape)
{
    if (shape < 1.0) {
        /* Boost: Gamma(a) = Gamma(a+1) * U^(1/a). */
        double u = 1.0 - cnd_rng_double(r);
        return cnd_rng_gamma(r, shape + 1.0) * pow(u, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = cnd_rng_normal(r);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = 1.0 - cnd_rng_double(r);
        if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
        if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
    }
}

void cnd_rng_shuffle_u32(cnd_rng_t *r, uint32_t *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)cnd_rng_below(r, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}
