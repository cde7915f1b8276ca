/*
 * fixedpoint.h: turning a float model update into ring elements for secure aggregation, and
 * back from their sum; packing ring vectors at their bit width.
 *
 * Encoding (client): clip every coordinate to [-clip, clip]; if the L2 norm still exceeds l2_max,
 * scale the vector down to it; weight by a = min(w, W) / W for sample count w and cap W; map to
 * integers v_i = a * x_i * Q / clip with Q = 2^(q-1) - 1 by stochastic rounding (round up with
 * probability equal to the fraction, using libsodium randomness, so E[v_i] is exact); append the
 * capped count min(w, W) split into limbs. Everything is stored modulo 2^b.
 *
 * Ring width (before the round, from public parameters only): the sum of n_max vectors must not
 * wrap. Coordinates sum to at most n_max * Q in absolute value, so b is the smallest width with
 * n_max * Q <= 2^(b-1) - 1 (the sum is read back as a centred residue). Count limbs have
 * limb_bits such that n_max * (2^limb_bits - 1) <= 2^b - 1, as many as W needs. If b would exceed
 * 32 cnd_fxp_layout fails with CND_ERANGE: the round must not start. Example: q = 8 and up to 256
 * clients give b = 16; 100 clients, q = 8: b = 15.
 *
 * Decoding (server): the weighted average sum_u w_u x_u / sum_u w_u is S_i * clip * W / (Q * sum
 * w), with S_i the centred sum of coordinate i and sum w read from the limbs exactly.
 *
 * Packing: element i occupies bits [i*b, (i+1)*b) of a little-endian bit string; unused bits of
 * the last byte are zero (unpacking refuses anything else, so the encoding is canonical). Masked
 * vectors travel this way: 2 bytes per value at b = 16, never 8.
 */
#ifndef CND_FIXEDPOINT_H
#define CND_FIXEDPOINT_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

#define CND_RING_MAX_BITS 32

typedef struct {
    uint32_t dim;        /* coordinates in the update (model parameters), >= 1 */
    uint32_t n_max;      /* most clients whose vectors are summed, >= 1 */
    uint32_t value_bits; /* q: coordinates become integers in [-(2^(q-1)-1), 2^(q-1)-1]; 2..24 */
    float clip;          /* per-coordinate bound (> 0, finite) */
    float l2_max;        /* L2 bound applied after clipping; 0 = none */
    uint32_t weight_cap; /* W: sample counts above this count as W; >= 1 */
} cnd_fxp_params_t;

typedef struct {
    uint32_t bits;      /* ring width b: vectors are summed modulo 2^b */
    uint32_t limb_bits; /* bits of the count carried by one limb */
    uint32_t n_limbs;   /* ring elements after the coordinates carrying the count */
    uint32_t len;       /* ring elements per vector: dim + n_limbs */
} cnd_fxp_layout_t;

/* What encoding did to one update (for the agent's egress log and metrics). */
typedef struct {
    uint32_t clipped; /* coordinates that were clipped to +-clip */
    double norm;      /* L2 norm after coordinate clipping, before L2 scaling */
    double scale;     /* L2 scale factor applied (1 when none) */
    uint64_t weight;  /* count actually encoded: min(w, W) */
} cnd_fxp_report_t;

/* Checks p and chooses the ring width. Returns 0, CND_EINVAL (a parameter is out of range; the
 * detail names it) or CND_ERANGE (the sum would need more than 32 bits; the detail says how
 * many). */
CND_MUST_USE int cnd_fxp_layout(cnd_fxp_layout_t *out, const cnd_fxp_params_t *p);

/* Encodes x[0..dim) with sample count `weight` into out[0..len). Rounding randomness comes from
 * libsodium. Returns 0, CND_EINVAL (a non-finite coordinate; the detail names it) or
 * CND_ECRYPTO. rep may be NULL. */
CND_MUST_USE int cnd_fxp_encode(uint32_t *out, cnd_fxp_report_t *rep, const cnd_fxp_params_t *p,
                                const cnd_fxp_layout_t *l, const float *x, uint64_t weight);

/* Same with the rounding stream seeded by rseed (reproducible tests and simulations). */
CND_MUST_USE int cnd_fxp_encode_seeded(uint32_t *out, cnd_fxp_report_t *rep,
                                       const cnd_fxp_params_t *p, const cnd_fxp_layout_t *l,
                                       const float *x, uint64_t weight, const uint8_t rseed[32]);

/* Decodes an aggregate sum[0..len) (any representative modulo 2^b) into the weighted average
 * avg[0..dim) and the total weight. Returns 0 or CND_ERANGE when the total weight is 0. */
CND_MUST_USE int cnd_fxp_decode(float *avg, uint64_t *total_weight, const cnd_fxp_params_t *p,
                                const cnd_fxp_layout_t *l, const uint32_t *sum);

/* Bytes needed for n elements of `bits` bits. */
size_t cnd_ring_packed_bytes(size_t n, unsigned bits);

/* Packs v[0..n) (each reduced modulo 2^bits here) into out[0..cnd_ring_packed_bytes). */
void cnd_ring_pack(uint8_t *out, const uint32_t *v, size_t n, unsigned bits);

/* Unpacks into out[0..n), or with _add adds each element to acc[i] modulo 2^32. in must hold
 * exactly cnd_ring_packed_bytes(n, bits) bytes. Return 0 or CND_EFORMAT (nonzero padding bits). */
CND_MUST_USE int cnd_ring_unpack(uint32_t *out, const uint8_t *in, size_t n, unsigned bits);
CND_MUST_USE int cnd_ring_unpack_add(uint32_t *acc, const uint8_t *in, size_t n, unsigned bits);

#endif
