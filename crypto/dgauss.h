/*
 * dgauss.h: exact sampling of the discrete Gaussian N_Z(0, s2), the integer noise each site adds
 * to its update in distributed differential privacy (docs/privacy.md, "Distributed DP").
 *
 * N_Z(0, s2) gives the integer x probability proportional to exp(-x^2 / (2 s2)). The sampler is
 * Canonne, Kamath, Steinke 2020 ("The Discrete Gaussian for Differential Privacy", Algorithms 1
 * to 3), done in exact integer arithmetic (no floating point anywhere, so no Mironov-2012 style
 * leak through rounding): Bernoulli(exp(-n/d)) for rationals by the alternating-series trick,
 * a discrete Laplace of integer scale t = floor(sqrt(s2)) + 1 by rejection, and the discrete
 * Gaussian by rejection from that Laplace with acceptance exp(-(|Y| t - s2)^2 / (2 s2 t^2)).
 * The variance s2 is an integer (the caller rounds a real variance up, which only adds noise);
 * 1 <= s2 <= CND_DGAUSS_S2_MAX keeps every product inside 128-bit integers. (Candidates of
 * |Y| >= 2^40 are rejected to stay in range; that happens with probability below exp(-2^19).)
 *
 * Randomness: a ChaCha20 keystream (libsodium crypto_stream_chacha20_ietf) keyed by 32 bytes
 * from libsodium's CSPRNG (randombytes_buf), or by a given seed for reproducible tests. The
 * keystream is consumed through a buffer that is wiped when the sampler is destroyed.
 *
 * Usage:
 *     cnd_dgauss_t *g = cnd_dgauss_new(NULL);        // fresh CSPRNG key
 *     cnd_dgauss_add(g, 1000, v, n);                 // v[i] += N_Z(0, 1000) mod 2^32
 *     cnd_dgauss_destroy(&g);
 */
#ifndef CND_DGAUSS_H
#define CND_DGAUSS_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

#define CND_DGAUSS_S2_MAX     ((uint64_t)1 << 40) /* largest variance (standard deviation 2^20) */
#define CND_DGAUSS_SEED_BYTES 32

typedef struct cnd_dgauss cnd_dgauss_t;

/* A sampler keyed by seed (32 bytes), or by fresh CSPRNG bytes when seed is NULL. Returns it, or
 * NULL when out of memory (detail set). Owned by the caller: cnd_dgauss_destroy. */
cnd_dgauss_t *cnd_dgauss_new(const uint8_t *seed);
/* Wipes and frees *g, sets it NULL; NULL and *g == NULL are fine. */
void cnd_dgauss_destroy(cnd_dgauss_t **g);

/* One draw of N_Z(0, s2) into *x. Returns 0, or CND_EINVAL for s2 outside [1, S2_MAX]. */
CND_MUST_USE int cnd_dgauss_sample(cnd_dgauss_t *g, uint64_t s2, int64_t *x);

/* v[i] += a fresh draw of N_Z(0, s2), modulo 2^32, for i < n. Returns as cnd_dgauss_sample. */
CND_MUST_USE int cnd_dgauss_add(cnd_dgauss_t *g, uint64_t s2, uint32_t *v, size_t n);

/* A uniform double in [0, 1) with 53 random bits, from the same stream (randomized rounding). */
double cnd_dgauss_uniform(cnd_dgauss_t *g);

#endif
