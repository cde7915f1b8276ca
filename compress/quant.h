/*
 * quant.h: int8 / int4 quantization of float models: batchnorm folding, quantization points,
 * observers and calibration (min/max, percentile, MSE, auto), fake quantization with
 * straight-through gradients (QAT), and the integer model handed to the artifact writer.
 *
 * Scheme (TFLite / CMSIS-NN int8 compatible, REFERENCES.md "Integer-only quantization"):
 *   - weights symmetric per output channel, int8 in [-127, 127] or int4 in [-7, 7];
 *   - activations asymmetric per tensor, int8 in [-128, 127], real = s * (q - z), with the
 *     range always widened to contain 0 so that zero (padding, ReLU) is exact;
 *   - int32 bias with scale s_in * s_w[c]; requantization by a Q31 multiplier and a shift
 *     (deploy/runtime/cnd_rt_requant.h);
 *   - rounding: float -> int conversions (weights, biases, inputs, fake quantization) round half
 *     away from zero (C's lround); the integer requantization rounds as gemmlowp does.
 *
 * Quantization points: the tensors that get their own scale and zero point are the model
 * input and the output of every dense/conv2d (grouped or not), add, concat and hardswish node,
 * taken after a relu or relu6 that is the producer's only reader and directly follows it (which
 * is then fused into the requantization clamp). Pooling, flatten and stand-alone relu/relu6
 * keep their input's parameters. Batchnorm must be the only reader of a dense or conv2d node
 * (grouped or not) and is folded into it before anything else. Graph models (model.h) follow
 * the same rules node by node: a node's input parameters are those of the node it reads.
 *
 * Integer layouts differ from the float model's: activations are HWC, conv weights OHWI, and a
 * dense layer fed by a C x H x W tensor gets its weight columns permuted from CHW to HWC order.
 */
#ifndef CND_QUANT_H
#define CND_QUANT_H

#include "data.h"
#include "model.h"
#include "train.h"

#include <stdint.h>

#define CND_QUANT_MAX_POINTS (CND_SPEC_MAX_LAYERS + 1)
#define CND_QUANT_BINS       2048

typedef enum {
    CND_QM_MINMAX,
    CND_QM_PERCENTILE,
    CND_QM_MSE,
    CND_QM_AUTO,
} cnd_qmethod_t;

/* Parses "minmax" | "percentile" | "mse" | "auto". */
int cnd_quant_method_parse(const char *s, cnd_qmethod_t *out);
const char *cnd_quant_method_name(cnd_qmethod_t m);

/* ---- scalar helpers ------------------------------------------------------------------------ */

/* Scale and zero point for an int8 tensor whose real values lie in [lo, hi] (widened to hold
 * 0; a degenerate range gets scale 1e-8-safe minimum). */
void cnd_quant_params(float lo, float hi, float *scale, int32_t *zp);

/* Q31 multiplier and shift n with M = mult * 2^(-31-n) ~= real_multiplier (>= 0). Multipliers
 * too small for n <= 31 become 0 (the output is then the zero point). */
void cnd_quant_multiplier(double real_multiplier, int32_t *mult, int32_t *shift);

/* q = clamp(round(x / s) + z, qmin, qmax). */
static inline int32_t cnd_quant_q(float x, float s, int32_t z, int32_t qmin, int32_t qmax)
{
    float r = x / s;
    long q;
    if (r > 1e9f)
        q = 1000000000L;
    else if (r < -1e9f)
        q = -1000000000L;
    else if (r != r)
        q = 0; /* NaN */
    else {
        /* round half away from zero, exactly: the fraction r - trunc(r) is exact in float
         * (r + 0.5f would round 0.49999997f up) */
        q = (long)r;
        float f = r - (float)q;
        q += f >= 0.5f ? 1 : f <= -0.5f ? -1 : 0;
    }
    q += z;
    return (int32_t)(q < qmin ? qmin : q > qmax ? qmax : q);
}

/* Fake-quantizes n values in place with (s, z) to [-128, 127]; when mask is not NULL, sets
 * mask[i] = 1 where x lay inside the representable range (the straight-through gradient
 * passes there) and 0 where it was clipped. */
void cnd_quant_fake(float *x, size_t n, float s, int32_t z, uint8_t *mask);

/* Per-channel symmetric weight scales for `rows` rows of `cols` weights with qmax = 127 (int8)
 * or 7 (int4): max |w| / qmax, or with mse=1 the clipping that minimises the row's squared
 * quantization error (searched over 100 candidates). */
void cnd_quant_weight_scales(float *scales, const float *w, int rows, int cols, int qmax, int mse);

/* ---- batchnorm folding --------------------------------------------------------------------- */

/* A copy of m with every batchnorm folded into the dense/conv2d layer before it (eval-mode
 * running statistics). Returns CND_EINVAL naming the layer when a batchnorm has no such layer
 * in front of it. Models without batchnorm are simply cloned. */
CND_MUST_USE int cnd_quant_fold_bn(cnd_model_t **out, const cnd_model_t *m);

/* ---- quantization plan --------------------------------------------------------------------- */

typedef struct {
    float lo, hi; /* real range of a quantization point */
} cnd_qrange_t;

typedef struct {
    int n_points;                            /* quantization points; point 0 is the input */
    int point_layer[CND_QUANT_MAX_POINTS];   /* float layer producing the point (-1 = input) */
    int point_of_layer[CND_SPEC_MAX_LAYERS]; /* point whose parameters layer i's output has;
                                              * -1 for a dense/conv2d whose ReLU is fused */
    int fused_relu[CND_SPEC_MAX_LAYERS];     /* node i has the relu (1) or relu6 (6) i+1
                                              * folded in (dense, conv2d, add, concat) */
    int fq_at[CND_SPEC_MAX_LAYERS];          /* fake-quantize layer i's output (new point, or
                                              * avgpool/gap re-rounding with the input's params) */
    int wbits[CND_SPEC_MAX_LAYERS];          /* weighted layer i's weight bits, 8 or 4, when
                                              * nonzero (a mixed artifact); 0: the bits the
                                              * caller passes for every layer */
    float cap[CND_QUANT_MAX_POINTS];         /* > 0: the point's range is clamped to [-cap, cap]
                                              * (values that only reach a tanh, which is flat
                                              * beyond it); 0: no clamp */
} cnd_qplan_t;

/* |x| beyond which tanh differs from +-1 by less than half an int8 step of [-1, 1]. */
#define CND_QUANT_TANH_CAP 4.0f

/* Whether the values of layer i reach nothing but a tanh, through layers that keep them on
 * their grid and keep order (relu, maxpool, flatten): then clamping them to
 * +-CND_QUANT_TANH_CAP changes the tanh's output by less than half an int8 step of [-1, 1]. */
int cnd_quant_feeds_tanh(const cnd_model_t *m, int i);

/* The weight bits of layer i: the plan's own for it, else wbits. */
static inline int cnd_quant_layer_wbits(const cnd_qplan_t *plan, int i, int wbits)
{
    return plan->wbits[i] ? plan->wbits[i] : wbits;
}

/* Clamps r to the plan's cap of point p, if it has one. */
void cnd_quant_cap_range(cnd_qrange_t *r, const cnd_qplan_t *plan, int p);

/* Works out the quantization points of a folded model; CND_EINVAL if it holds a batchnorm. */
CND_MUST_USE int cnd_quant_plan(cnd_qplan_t *plan, const cnd_model_t *m);

/* ---- observers and calibration ------------------------------------------------------------- */

typedef struct {
    float min, max;              /* observed extremes */
    double hist[CND_QUANT_BINS]; /* counts over [min, max] (second pass) */
    uint64_t n;                  /* values seen */
} cnd_observer_t;

/* Ranges of every quantization point of a folded model from `n` normalised samples of x.
 * Methods: minmax, percentile (0.01% / 99.99% of the histogram), mse (clipping that minimises
 * the quantization error of the histogram), auto (per tensor, the candidate of the three that
 * gives the smallest error of the model's logits, chosen greedily from input to output;
 * `chosen` (may be NULL) receives the method picked per point). Weight scales are chosen in
 * auto mode too (max |w| vs MSE clipping per layer, *w_mse receives 1 where MSE won; for other
 * methods w_mse is 1 for every layer when wbits == 4, else 0). */
CND_MUST_USE int cnd_quant_calibrate(cnd_qrange_t *ranges, cnd_qmethod_t *chosen, int *w_mse,
                                     cnd_model_t *m, const cnd_qplan_t *plan, const float *x,
                                     size_t n, cnd_qmethod_t method, int wbits);

/* The calibration samples of a run seeded with `seed`: the first min(n, ds->n) samples of a
 * shuffle seeded with seed ^ 0xca11b, copied into a new dataset (caller destroys). `condenser
 * quantize` and a federated job's public calibration set (`job create --calib-data`) both draw
 * them this way, so either run is reproducible. Returns 0 or CND_ENOMEM. */
CND_MUST_USE int cnd_quant_calib_sample(cnd_dataset_t **out, const cnd_dataset_t *ds, size_t n,
                                        uint64_t seed);

/* ---- fake quantization inside the float model (calibration checks and QAT) ----------------- */

typedef struct cnd_fq cnd_fq_t;

/* Per-layer weight bits under a budget: one row per weighted layer. */
typedef struct {
    int layer;             /* float layer index */
    size_t bytes8, bytes4; /* its packed weight bytes at 8 and at 4 bits */
    double err4;           /* mean squared logit error added by this layer alone at 4 bits
                            * (every other layer at 8, activations quantized) */
    int bits;              /* chosen: 8 or 4 */
} cnd_qbits_row_t;

/* Chooses 8 or 4 weight bits per weighted layer of folded model m so that the packed weights
 * take at most max_weight_bytes: each layer's sensitivity is the logit error (against the float
 * model, on up to 256 of the n samples x) that putting it alone at 4 bits adds, with the
 * activation ranges given; layers then go to 4 bits in order of error per byte saved until the
 * budget holds. Writes the choice into plan->wbits and w_mse (1, MSE clipping, for the layers
 * at 4 bits; the others keep theirs),
 * and rows[] (room for m->n_layers). CND_ERANGE naming the smallest reachable size when even
 * every layer at 4 bits does not fit. */
CND_MUST_USE int cnd_quant_mixed_bits(cnd_qplan_t *plan, cnd_qbits_row_t *rows, int *n_rows,
                                      cnd_model_t *m, const cnd_qrange_t *ranges, int *w_mse,
                                      const float *x, size_t n, size_t max_weight_bytes);

/* Installs fake quantization on m (sets m->hooks): weights per channel with wbits (and MSE
 * clipping per layer where w_mse[i]), activations at the plan's points with `ranges`. With
 * observe = 1, training forwards update each point's range by an exponential moving average
 * (momentum 0.01) of the batch min/max (QAT observers). npoints_active limits fake
 * quantization to points < npoints_active (the rest stay float); pass plan->n_points for all. */
CND_MUST_USE int cnd_fq_new(cnd_fq_t **out, cnd_model_t *m, const cnd_qplan_t *plan,
                            const cnd_qrange_t *ranges, const int *w_mse, int wbits, int observe,
                            int npoints_active);
/* The current ranges (observers included) into ranges[plan->n_points]. */
void cnd_fq_ranges(const cnd_fq_t *fq, cnd_qrange_t *ranges);
/* Per-channel weight scales fake quantization uses for layer i with the model's current
 * weights: clip ratio (1, or the MSE-optimal ratio found at install) x max |w| / qmax. */
void cnd_fq_weight_scales(const cnd_fq_t *fq, int layer, float *scales);
/* Removes the hooks from the model and frees; accepts NULL. */
void cnd_fq_destroy(cnd_fq_t **fq);

/* ---- quantization-aware training ----------------------------------------------------------- */

typedef struct {
    int epochs;       /* passes over the training data */
    int batch;        /* samples per step */
    float lr;         /* Adam learning rate (cosine schedule to 0) */
    uint64_t seed;    /* shuffling */
    int verbose;      /* one line per epoch on stdout */
    cnd_loss_fn loss; /* NULL = cross-entropy on labels; a distillation loss plugs in
                       * here exactly as for cnd_train (train.h) */
    void *loss_ctx;
    const cnd_optim_cfg_t *optim; /* NULL: Adam at lr; else this optimizer (its own lr) */
    /* DP-SGD (dpsgd.h, train.h) when dp.clip > 0: the per-sample gradients go through the
     * fake-quantized forward (straight-through), and the observers stay off (the ranges are
     * the calibrated ones throughout: an observer's batch min/max would leave the records'
     * values in the artifact without noise). */
    cnd_dpsgd_cfg_t dp;
    cnd_train_result_t *result; /* NULL, or receives the run's result (steps, dp_epsilon) */
} cnd_qat_cfg_t;

/* Fine-tunes folded model m with fake quantization (weights per channel at wbits, activations
 * at every point, observers on unless under DP-SGD) on normalised `train` (val may be NULL).
 * ranges holds the calibrated ranges on entry and the observers' final ranges on return;
 * w_scales[i] receives a new array of per-channel weight scales for each dense/conv2d layer i
 * (NULL elsewhere; free with cnd_quant_free_scales) for cnd_qmodel_build. */
CND_MUST_USE int cnd_quant_qat(cnd_model_t *m, const cnd_qplan_t *plan, cnd_qrange_t *ranges,
                               const int *w_mse, float **w_scales, int wbits,
                               const cnd_dataset_t *train, const cnd_dataset_t *val,
                               const cnd_qat_cfg_t *cfg);
void cnd_quant_free_scales(float **w_scales, int n_layers);

/* ---- the integer model --------------------------------------------------------------------- */

typedef struct {
    int op;                  /* cnd_rt_op_t */
    int relu;                /* dense/conv2d: ReLU fused */
    int wbits;               /* 8 or 4 for dense/conv2d */
    int in_c, in_h, in_w;    /* input shape */
    int out_c, out_h, out_w; /* output shape */
    int k, stride, pad;
    int32_t in_zp, out_zp;
    float in_scale, out_scale;
    int32_t act_min, act_max; /* output clamp */
    int K;                    /* weights per output channel */
    int8_t *w;                /* out_c x K values in runtime order (unpacked for int4) */
    float *w_scale;           /* out_c */
    int32_t *bias;            /* out_c, scale in_scale * w_scale[c] */
    int32_t *mult, *shift;    /* out_c requantization */
    int src;                  /* float layer whose output this layer's output approximates
                               * (the ReLU when one is fused) */
    int n_src;                /* 1, or 2 for add and concat */
    int srcq[2];              /* integer layer producing each input, -1 = the model input */
    int groups;               /* gconv: channel groups */
} cnd_qlayer_t;

typedef struct {
    cnd_shape_t in; /* input C x H x W */
    float in_scale;
    int32_t in_zp;
    float *norm_mean, *norm_std; /* in.c */
    int8_t *lut;                 /* in.c x 256: raw uint8 -> int8 input */
    int n_layers;
    cnd_qlayer_t *layers;
    int n_classes;
    char **labels; /* n_classes strings or NULL */
    int n_meta;
    cnd_meta_kv_t meta[CND_META_MAX];
    int n_tests;      /* embedded self-test vectors */
    int test_kind;    /* CND_RT_TEST_RAW_U8 or CND_RT_TEST_I8 */
    uint8_t *test_in; /* n_tests x C*H*W */
    int8_t *test_out; /* n_tests x n_classes */
} cnd_qmodel_t;

/* Builds the integer model of folded float model m with activation ranges per point and
 * weight bit width (8 or 4); w_mse[layer] selects MSE-clipped weight scales (NULL: none);
 * w_scales[layer] (when w_scales and the entry are not NULL) gives the per-channel scales to
 * use instead, e.g. those QAT trained with (cnd_fq_weight_scales).
 * Copies m's normalisation, metadata and labels (from the "labels" metadata key). No
 * self-tests yet (cnd_artifact_add_selftests). */
CND_MUST_USE int cnd_qmodel_build(cnd_qmodel_t **out, const cnd_model_t *m, const cnd_qplan_t *plan,
                                  const cnd_qrange_t *ranges, const int *w_mse,
                                  float *const *w_scales, int wbits);
void cnd_qmodel_destroy(cnd_qmodel_t **q);

/* Sets metadata key k to v in q (replacing an existing value); a new key beyond the artifact's
 * CND_RT_META_MAX entries is dropped silently. CND_ENOMEM on allocation failure. */
CND_MUST_USE int cnd_qmodel_meta_set(cnd_qmodel_t *q, const char *k, const char *v);

/* Quantizes raw input samples to the int8 HWC input (through the LUT when every value is an
 * integer in 0..255, else from the normalised float). x_raw is n x (C,H,W) raw values. */
void cnd_qmodel_input(const cnd_qmodel_t *q, int8_t *x, const float *x_raw);

/* 1 if every raw value of the n samples is an integer in 0..255 (so the LUT path applies). */
int cnd_quant_raw_is_u8(const float *x_raw, size_t count);

#endif
