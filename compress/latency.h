/*
 * latency.h: a per-kernel cost model of the integer runtime's batch-1 latency on one device
 * class, fitted by least squares from measured latencies of generated models
 * (bench/latency_fit.sh), and the prediction `condenser predict` prints.
 *
 * A model is described by what its int8 artifact executes, worked out as the quantizer does it
 * (batchnorm folded, a relu or relu6 after a conv2d, dense, add or concat fused into its
 * requantisation: quant.h) and per kernel the runtime picks (deploy/runtime): the features are
 * the work of each kernel in its own unit. Two kernel sets exist, so there are two groups of
 * features, both computed for every model; a device class uses one group (`kernels` in its cost
 * file) plus the shared features:
 *   - x86 (the AVX2 / AVX-512 VNNI fast paths): conv2d is a direct convolution whose work is in
 *     blocks of 16 output channels and groups of 4 input bytes per kernel row (a 1x1 conv over
 *     one input channel does 64 multiply-adds per pixel whatever its 1-16 outputs), on a padded
 *     copy of its input; a conv2d followed by a non-overlapping maxpool runs fused (only window
 *     maxima are requantized, the pool layer costs nothing), with a cost per pixel and pass of 64
 *     channels; dense works in 64-byte chunks of 4 rows; depthwise conv in vectors of 8
 *     channels and the remaining channels one by one; maxpool and add are vectorised.
 *   - ref (the scalar reference kernels, what 32-bit ARM and microcontrollers run): conv2d is a
 *     patch gather (im2col of one pixel: a cost per pixel, per byte, and per value gathered
 *     singly where the window overlaps the padding) and one dot product per
 *     output channel; dense and conv layers whose weights exceed a 32 KiB L1 cache cost more
 *     per MAC; depthwise and
 *     grouped convs are direct scalar loops; every op scalar.
 * Shared: grouped (not depthwise) conv, avgpool and gap, relu/relu6 and table (hardswish, tanh)
 * layers and concat run the reference kernels everywhere. Every class has a constant per call
 * ("one") and one per executed layer ("layers"). int4 weights are costed as int8.
 *
 * The predicted latency is the dot product of the features with the class's coefficients
 * (microseconds per unit). The fit minimises the squared relative error over the training
 * measurements, with coefficients kept non-negative (a feature whose least-squares weight comes
 * out negative is dropped and the rest refitted), and measures the median and largest relative
 * error on held-out models.
 *
 * Cost file (text, one "key value" pair a line, '#' comments): "device NAME", "kernels x86|ref",
 * "coef NAME VALUE" for every feature of that kernel set (and none other), "heldout_median P",
 * "heldout_max P" (relative errors), "train N", "heldout N". The x86 host class
 * (latency_x86.costs) and the ARM class measured under qemu-user (latency_arm-a7-qemu.costs) are
 * compiled in.
 */
#ifndef CND_LATENCY_H
#define CND_LATENCY_H

#include "model.h"

#define CND_LAT_NF 31 /* features, both kernel sets (cnd_latency_feature_name) */

typedef enum { CND_LAT_KERNELS_X86 = 0, CND_LAT_KERNELS_REF = 1 } cnd_latency_kernels_t;

typedef struct {
    char device[32];
    cnd_latency_kernels_t kernels; /* which group of features the class uses */
    double coef[CND_LAT_NF];       /* microseconds per unit of each feature; 0 outside the group */
    double heldout_median;         /* relative error on held-out models (0.05 = 5%) */
    double heldout_max;
    int n_train, n_heldout; /* models the fit and its check used */
} cnd_latency_model_t;

/* Feature names, in order ("one" is the per-call constant), or "" past the end. */
const char *cnd_latency_feature_name(int k);

/* 1 if feature k is used by classes running kernel set ks. */
int cnd_latency_feature_used(int k, cnd_latency_kernels_t ks);

/* The features of m as its int8 artifact runs (see above) into f[CND_LAT_NF], chains and graphs
 * alike. Returns 0, or CND_EINVAL when the quantizer cannot plan m for the integer runtime
 * (too many layers, a batchnorm with nothing to fold into; the detail says which). */
CND_MUST_USE int cnd_latency_features(const cnd_model_t *m, double *f);

/* Predicted batch-1 latency in microseconds. */
double cnd_latency_predict(const cnd_latency_model_t *c, const double *f);

/* Parses a cost file's text (`what` names it in messages). Returns 0 or CND_EINVAL naming the
 * line at fault. */
CND_MUST_USE int cnd_latency_parse(cnd_latency_model_t *c, const char *text, const char *what);

/* The compiled-in cost model of a device class ("x86", "arm-a7-qemu"), or NULL. */
const cnd_latency_model_t *cnd_latency_builtin(const char *device);

/* The names of the compiled-in classes, comma-separated, for messages. */
const char *cnd_latency_builtin_names(void);

/* Fits c->coef for kernel set c->kernels from n measurements (features f[i], latency y[i] > 0
 * in microseconds) where heldout[i] is 0, and sets the held-out errors from the others.
 * Returns 0, or CND_EINVAL (fewer training rows than the set's features, a non-positive latency,
 * a singular system). */
CND_MUST_USE int cnd_latency_fit(cnd_latency_model_t *c, const double (*f)[CND_LAT_NF],
                                 const double *y, const int *heldout, int n);

/* Writes c as a cost file's text into out[n]. */
void cnd_latency_format(const cnd_latency_model_t *c, char *out, size_t n);

#endif
