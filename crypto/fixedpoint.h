/*
 * fixedpoint.h: turning a float model update into ring elements for secure aggregation, and
 * back from their sum; packing ring vectors at their bit width.
 *
 * Encoding (client): clip every coordinate to [-clip, clip]; if the L2 norm still exceeds l2_max,
 * scale the vector down to it; weight by a = min(w, W) / W for sample count w and cap W; map to
 * integers v_i = a * x_i * Q / clip with Q = 2^(q-1) - 1 by stochastic rounding (round up with
 * probability equal to the fraction, using libsodium randomness, so E[v_i] is exact); append the
 * capped count min(w, W) split into limbs, then the site's validation metrics as three more
 * limb groups (cnd_fxp_metrics_t): validated samples min(m, W), correct predictions among them,
 * and the loss sum in 1/256 units with the mean loss capped at CND_FXP_LOSS_MAX. Metrics thus
 * leave a site only inside the secure sum. Everything is stored modulo 2^b.
 *
 * Ring width (before the round, from public parameters only): the sum of n_max vectors must not
 * wrap. Coordinates sum to at most n_max * Q in absolute value, so b is the smallest width with
 * n_max * Q <= 2^(b-1) - 1 (the sum is read back as a centred residue). Count limbs have
 * limb_bits such that n_max * (2^limb_bits - 1) <= 2^b - 1, as many as W needs. If b would exceed
 * 32 cnd_fxp_layout fails with CND_ERANGE: the round must not start. Example: q = 8 and up to 256
 * clients give b = 16; 100 clients, q = 8: b = 15.
 *
 * Decoding (server): the weighted average sum_u w_u x_u / sum_u w_u is S_i * clip * W / (Q * sum
 * w), with S_i the centred sum of coordinate i and sum w read from the limbs exactly. Bounds
 * (one malicious site must not move the result beyond what a site within the rules could):
 * with s survivors, every limb sum must be at most s * (2^limb_bits - 1) (no limb wrapped),
 * s <= sum w <= s * W, |S_i| <= Q * sum w / W + s (each site's |v_i| <= ceil(a_u Q)), validated
 * <= s * W, correct <= validated, loss <= validated * 256 * CND_FXP_LOSS_MAX. Anything else is
 * refused (CND_ERANGE naming the check): the round fails, nothing is applied.
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
    uint64_t ddp_s2;     /* > 0: distributed DP (below), each site's noise variance; 0: off */
} cnd_fxp_params_t;

typedef struct {
    uint32_t bits;       /* ring width b: vectors are summed modulo 2^b */
    uint32_t limb_bits;  /* bits of a count carried by one limb */
    uint32_t n_limbs;    /* limbs of the sample count, right after the coordinates */
    uint32_t m_limbs;    /* limbs of each of "validated" and "correct" (cap W), after those */
    uint32_t loss_limbs; /* limbs of the loss sum (cap W * 256 * CND_FXP_LOSS_MAX), last */
    uint32_t len;        /* ring elements per vector: dim + n_limbs + 2 m_limbs + loss_limbs */
} cnd_fxp_layout_t;

#define CND_FXP_LOSS_MAX   16  /* mean validation loss counted at most this */
#define CND_FXP_LOSS_SCALE 256 /* loss sum units per unit of loss */

/* A site's validation metrics as it encodes them (all zero: none). */
typedef struct {
    uint64_t validated; /* validation samples evaluated */
    uint64_t correct;   /* of which predicted right, <= validated */
    double mean_loss;   /* mean loss over them, >= 0 */
} cnd_fxp_metrics_t;

/* What an aggregate decodes to besides the average. */
typedef struct {
    uint64_t weight;    /* total capped sample count */
    uint64_t validated; /* total validated samples (each site's capped at W) */
    uint64_t correct;   /* total correct predictions */
    uint64_t loss_q;    /* total loss in 1/CND_FXP_LOSS_SCALE units */
} cnd_fxp_totals_t;

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

/* Writes metrics m into the metric limbs of an encoded vector out[0..len) (encoding leaves them
 * zero). Counts above W are capped at W, correct at validated, the mean loss at
 * CND_FXP_LOSS_MAX. Returns 0 or CND_EINVAL (non-finite or negative loss). */
CND_MUST_USE int cnd_fxp_encode_metrics(uint32_t *out, const cnd_fxp_params_t *p,
                                        const cnd_fxp_layout_t *l, const cnd_fxp_metrics_t *m);

/* Decodes an aggregate sum[0..len) (any representative modulo 2^b) of `survivors` sites' vectors
 * into the weighted average avg[0..dim) and the totals. Returns 0 or CND_ERANGE when a bound of
 * the header is violated (a total weight of 0 or below the survivors, a wrapped limb, a
 * coordinate beyond what clipped inputs allow, inconsistent metrics): the detail names it. */
CND_MUST_USE int cnd_fxp_decode(float *avg, cnd_fxp_totals_t *tot, const cnd_fxp_params_t *p,
                                const cnd_fxp_layout_t *l, const uint32_t *sum, uint32_t survivors);

/*
 * Distributed DP (docs/privacy.md, "Distributed DP"; Kairouz, Liu, Steinke 2021): with ddp_s2 > 0
 * the coordinates are encoded differently; limbs and metrics stay as above.
 *   - clip is the L2 bound c of the whole update (coordinates are not clipped one by one,
 *     l2_max is unused); value_bits q sets the scale: an update of norm c becomes a vector of
 *     norm Q = 2^(q-1) - 1, so the granularity is gamma = c / Q;
 *   - conditional randomized rounding: every coordinate rounds up or down at random (unbiased),
 *     and the whole vector is drawn again while its norm exceeds
 *     cnd_fxp_ddp_l2(p) = cnd_dp_ddg_rounded_l2(Q, dim, beta = exp(-0.5)) (at most
 *     CND_FXP_DDP_TRIES draws; a first draw passes with probability >= 1 - beta), so that
 *     bound is the sensitivity the accountant uses;
 *   - then each coordinate gets N_Z(0, ddp_s2) (crypto/dgauss.h, exact, CSPRNG keyed);
 *   - the average is unweighted: sum * gamma / survivors (each site's capped count still goes
 *     into the count limbs, which are not noised);
 *   - ring width: n_max * floor(l2 bound) + 8 sqrt(n_max * ddp_s2) must be <= 2^(b-1) - 1 (a
 *     coordinate of the sum wraps around only with the probability that a Gaussian exceeds 8
 *     standard deviations, ~1e-15; a wrap is modular clipping, it costs accuracy, not privacy);
 *   - decoding checks no coordinate bound (the noise is unbounded) beyond the ring's.
 */
#define CND_FXP_DDP_TRIES 1000

/* The L2 bound of one site's rounded vector in integer units (the sensitivity). */
double cnd_fxp_ddp_l2(const cnd_fxp_params_t *p);

struct cnd_dgauss;
/* Encodes x[0..dim) as above, with rounding and noise from g (crypto/dgauss.h). Returns 0,
 * CND_EINVAL (a non-finite coordinate, or p without ddp_s2), or CND_ERANGE (no rounding within
 * the bound in CND_FXP_DDP_TRIES draws). rep->scale is the L2 scale applied, rep->clipped 1 when
 * the update was scaled down. */
CND_MUST_USE int cnd_fxp_encode_ddp(uint32_t *out, cnd_fxp_report_t *rep, const cnd_fxp_params_t *p,
                                    const cnd_fxp_layout_t *l, const float *x, uint64_t weight,
                                    struct cnd_dgauss *g);

/* Bytes needed for n elements of `bits` bits. */
size_t cnd_ring_packed_bytes(size_t n, unsigned bits);

/* Packs v[0..n) (each reduced modulo 2^bits here) into out[0..cnd_ring_packed_bytes). */
void cnd_ring_pack(uint8_t *out, const uint32_t *v, size_t n, unsigned bits);

/* Unpacks into out[0..n), or with _add adds each element to acc[i] modulo 2^32. in must hold
 * exactly cnd_ring_packed_bytes(n, bits) bytes. Return 0 or CND_EFORMAT (nonzero padding bits). */
CND_MUST_USE int cnd_ring_unpack(uint32_t *out, const uint8_t *in, size_t n, unsigned bits);
CND_MUST_USE int cnd_ring_unpack_add(uint32_t *acc, const uint8_t *in, size_t n, unsigned bits);

#endif
