/*
 * latency.h: a per-op cost model of the integer runtime's batch-1 latency on one device class,
 * fitted by least squares from measured latencies (`condenser bench` of generated models), and
 * the prediction `condenser predict` prints.
 *
 * A model is described by what its int8 artifact executes (batchnorm folded, a relu after a
 * conv2d or dense fused into its requantisation): per op type, the multiply-accumulates and
 * the values it reads or writes (cnd_latency_feature_name names them). The predicted latency is the
 * dot product of those features with the device's coefficients (microseconds per unit). The fit
 * minimises the squared relative error over the training measurements, with coefficients kept
 * non-negative (a feature whose least-squares weight comes out negative is dropped and the rest
 * refitted), and measures the median and largest relative error on held-out models.
 *
 * Cost file (text, one "key value" pair a line, '#' comments): "device NAME", "coef NAME
 * VALUE" for every feature, "heldout_median P", "heldout_max P" (relative errors), "train N",
 * "heldout N". The x86 host class's file is compiled in (compress/latency_x86.costs).
 */
#ifndef CND_LATENCY_H
#define CND_LATENCY_H

#include "model.h"

#define CND_LAT_NF 9 /* features */

typedef struct {
    char device[32];
    double coef[CND_LAT_NF]; /* microseconds per unit of each feature */
    double heldout_median;   /* relative error on held-out models (0.05 = 5%) */
    double heldout_max;
    int n_train, n_heldout; /* models the fit and its check used */
} cnd_latency_model_t;

/* Feature names, in order ("one" is the per-call constant). */
const char *cnd_latency_feature_name(int k);

/* The features of m as its int8 artifact runs (see above) into f[CND_LAT_NF]. Returns 0, or
 * CND_EINVAL when the integer runtime cannot run m (a graph; the detail names the node). */
CND_MUST_USE int cnd_latency_features(const cnd_model_t *m, double *f);

/* Predicted batch-1 latency in microseconds. */
double cnd_latency_predict(const cnd_latency_model_t *c, const double *f);

/* Parses a cost file's text (`what` names it in messages). Returns 0 or CND_EINVAL naming the
 * line at fault. */
CND_MUST_USE int cnd_latency_parse(cnd_latency_model_t *c, const char *text, const char *what);

/* The compiled-in cost model of a device class ("x86"), or NULL. */
const cnd_latency_model_t *cnd_latency_builtin(const char *device);

/* Fits c->coef from n measurements (features f[i], latency y[i] > 0 in microseconds) where
 * heldout[i] is 0, and sets the held-out errors from the others. Returns 0, or CND_EINVAL
 * (fewer training rows than features, a non-positive latency, a singular system). */
CND_MUST_USE int cnd_latency_fit(cnd_latency_model_t *c, const double (*f)[CND_LAT_NF],
                                 const double *y, const int *heldout, int n);

/* Writes c as a cost file's text into out[n]. */
void cnd_latency_format(const cnd_latency_model_t *c, char *out, size_t n);

#endif
