/*
 * spec.h: parsing a one-line architecture spec into layer descriptions.
 *
 *   conv2d(32,3,pad=1) relu maxpool(2) conv2d(64,3,pad=1) relu maxpool(2) flatten dense(128)
 *   relu dense(10)
 *
 * Tokens are separated by spaces. Keywords: dense(N), conv2d(OC,K[,stride=S][,pad=P]), relu,
 * maxpool(K[,stride=S]), avgpool(K[,stride=S]), gap, flatten, batchnorm[(eps=E,momentum=M)]
 * (alias bn). Errors name the 1-based character position and what was expected there.
 */
#ifndef CND_SPEC_H
#define CND_SPEC_H

#include "layer.h"

#define CND_SPEC_MAX_LAYERS 64

/* Parses `spec` into at most `max` layers (type and parameters only; shapes are set when the
 * model is built). Returns the layer count (> 0) or CND_EINVAL with a positioned detail. */
int cnd_spec_parse(const char *spec, cnd_layer_t *layers, int max);

#endif
