/*
 * augment.h: on-the-fly data augmentation of a normalised batch: random shifts and horizontal
 * flips of image samples. Used by training (labels) and by distillation, where the teacher then
 * scores the very same augmented images ("consistent teaching": the student matches the
 * teacher's function on inputs the labelled set does not contain), so the comparison between
 * the two stays fair: both see the same augmented stream.
 */
#ifndef CND_AUGMENT_H
#define CND_AUGMENT_H

#include "layer.h"
#include "rng.h"

#define CND_AUG_SHIFT 0x1 /* translate by up to max_shift pixels in x and y, filling with bg */
#define CND_AUG_FLIP  0x2 /* mirror left-right with probability 1/2 */

/* Parses "none", "shift", "flip", "shift+flip" (or "flip+shift"). Returns 0 or CND_EINVAL. */
int cnd_augment_parse(const char *s, unsigned *flags);

/* Augments B samples of shape s in place. bg[c] is the value of an empty pixel of channel c
 * (the normalised value of raw 0). work must hold one sample (C*H*W floats). */
void cnd_augment_batch(float *x, float *work, int B, cnd_shape_t s, const float *bg, unsigned flags,
                       int max_shift, cnd_rng_t *rng);

#endif
