/*
 * dpsgd.h: differentially private SGD (Abadi et al. 2016) for the training loop (train.c).
 *
 * One step: Poisson sampling includes each of the N records with probability q (so batches
 * vary in size around B = qN); each included record's gradient is clipped to L2 norm C over all
 * parameters; the clipped gradients are summed, Gaussian noise N(0, (sigma C)^2) is added to
 * every coordinate, and the sum is divided by the expected batch size qN (not the drawn one,
 * which would depend on the data). The accountant (common/dp_accountant.h) turns (q, sigma,
 * steps, delta) into epsilon.
 *
 * Per-sample norms: the dense and conv2d backward passes add each sample's squared gradient
 * norm into layer->sample_norm2 (layer.h): a dense sample's is |dy|^2 (|x|^2 + 1), without
 * forming its gradient; a conv sample's comes from its own slice of the layer's weight GEMM,
 * and that gradient is kept (layer->sample_grads) while all of the batch's fit in 128 MB. Then
 * each sample is scaled by min(1, C / |g_b|): kept gradients are summed with those weights (one
 * GEMV); for the other layers the gradient with respect to the layer's output, kept from the
 * first pass, is scaled and only the weight gradient computed again (the "book-keeping" order
 * of Bu et al. 2023). Forward once, backward once, plus at most the weight gradients again.
 *
 * Randomness: the sampling and the noise come from OpenSSL's CSPRNG (RAND_bytes), never from
 * the seeded generator, so knowing the run's --seed does not reveal them; a DP run is therefore
 * not bit-reproducible. Models with batchnorm (a sample's gradient depends on the others in its
 * batch) are refused.
 *
 * Quantization-aware training (quant_fq.c hooks, model.h): both passes call the hooks as the
 * model's own backward does, so the per-sample gradients are those of the fake-quantized
 * forward with the straight-through estimator: weight gradients from the fake-quantized
 * inputs, input gradients through the fake-quantized weights, zero where an activation was
 * clipped. A sample's fake quantization must not depend on the other samples of its batch:
 * fixed ranges, observers off (they move the ranges with each batch's min/max, unnoised;
 * quant_qat.c turns them off under DP).
 */
#ifndef CND_DPSGD_H
#define CND_DPSGD_H

#include "error.h"
#include "model.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double noise; /* sigma: noise standard deviation over the clip norm, > 0 */
    double clip;  /* C: per-sample L2 bound of the gradient; 0 = DP-SGD off */
    double delta; /* for the epsilon training reports (common/dp_accountant.h) */
} cnd_dpsgd_cfg_t;

typedef struct {
    long samples;    /* per-sample gradients seen */
    long clipped;    /* of which longer than the clip (scaled down) */
    double norm_sum; /* sum of their norms before clipping */
} cnd_dpsgd_stats_t;

typedef struct cnd_dpsgd cnd_dpsgd_t;

/* Whether m can be trained with DP-SGD: 0, or CND_EINVAL with a detail naming the layer at
 * fault (batchnorm) or the graph. */
CND_MUST_USE int cnd_dpsgd_check_model(const cnd_model_t *m);

/* Checks that m can be trained with DP-SGD (no batchnorm) and allocates the state
 * for batches up to cap_B samples. Sets m->no_fuse (layer.h: the conv's own output gradient is
 * needed). Returns 0 and an owned object, CND_EINVAL with a detail naming the layer at fault,
 * or CND_ENOMEM. */
CND_MUST_USE int cnd_dpsgd_new(cnd_dpsgd_t **out, cnd_model_t *m, int cap_B);

/* As cnd_dpsgd_new, keeping per-sample conv2d gradients only while they fit in keep_floats
 * floats (cnd_dpsgd_new: 2^25); 0 recomputes every weight gradient instead. Same results. */
CND_MUST_USE int cnd_dpsgd_new_keep(cnd_dpsgd_t **out, cnd_model_t *m, int cap_B,
                                    size_t keep_floats);

/* Frees; accepts NULL and *d == NULL; nulls *d. */
void cnd_dpsgd_destroy(cnd_dpsgd_t **d);

/* After a training forward pass of B <= cap_B samples, with dlogits (B x K) the gradient of
 * each sample's own loss (not divided by B): adds the sum of the per-sample parameter
 * gradients, each clipped to L2 norm clip, into the step's sum, and counts them in the stats.
 * m->grads is used as scratch. */
void cnd_dpsgd_accumulate(cnd_dpsgd_t *d, cnd_model_t *m, const float *dlogits, int B, double clip);

/* Ends a step: m->grads = (sum + N(0, (noise clip)^2) per coordinate) / expected_batch; clears
 * the sum. Returns 0, or CND_ECRYPTO when the CSPRNG fails. */
CND_MUST_USE int cnd_dpsgd_finish(cnd_dpsgd_t *d, cnd_model_t *m, double noise, double clip,
                                  double expected_batch);

/* Statistics since the last call; resets them. */
cnd_dpsgd_stats_t cnd_dpsgd_take_stats(cnd_dpsgd_t *d);

/* Poisson sampling: writes into idx (room for n) the indices in [0, n) of the records a step
 * includes, each independently with probability q, in increasing order; *count gets how many.
 * Gaps between inclusions are drawn geometrically from the CSPRNG. Returns 0 or CND_ECRYPTO. */
CND_MUST_USE int cnd_dpsgd_poisson(cnd_dpsgd_t *d, uint32_t *idx, size_t *count, size_t n,
                                   double q);

#endif
