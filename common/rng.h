/*
 * rng.h: the seeded, portable pseudo-random generator behind every non-secret random choice
 * (weight initialisation, shuffles, splits, Dirichlet partitions, dropout of simulated clients).
 *
 * xoshiro256** seeded through splitmix64: fast, well studied, identical on every platform, so
 * the same seed gives the same weights everywhere. It is NOT for secrets: masks, keys and
 * stochastic rounding of private updates use libsodium's CSPRNG in crypto/.
 */
#ifndef CND_RNG_H
#define CND_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4]; /* generator state; never all zero */
} cnd_rng_t;

void cnd_rng_seed(cnd_rng_t *r, uint64_t seed);
uint64_t cnd_rng_u64(cnd_rng_t *r);
/* Uniform in [0, n) without modulo bias; n > 0. */
uint64_t cnd_rng_below(cnd_rng_t *r, uint64_t n);
/* Uniform float in [0, 1) with 24 random bits; double with 53. */
float cnd_rng_float(cnd_rng_t *r);
double cnd_rng_double(cnd_rng_t *r);
/* Standard normal (Box-Muller, no cached second value so the stream is position-independent). */
double cnd_rng_normal(cnd_rng_t *r);
/* Gamma(shape, 1) by Marsaglia-Tsang; shape > 0. */
double cnd_rng_gamma(cnd_rng_t *r, double shape);
/* Fisher-Yates shuffle of n uint32 indices. */
void cnd_rng_shuffle_u32(cnd_rng_t *r, uint32_t *a, size_t n);

#endif
