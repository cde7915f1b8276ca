/*
 * loss.h: losses over logits, each returning the mean loss over the batch and writing the
 * gradient with respect to the logits (already divided by B, so the model's backward pass sums
 * per-sample gradients into a batch mean).
 */
#ifndef CND_LOSS_H
#define CND_LOSS_H

#include <stdint.h>

/* Softmax cross-entropy. logits (B,K), labels (B) in [0,K). dlogits (B,K) may be NULL.
 * *correct (may be NULL) receives how many argmax predictions equal the label.
 * Returns the mean loss. */
float cnd_loss_xent(float *dlogits, const float *logits, const uint8_t *labels, int B, int K,
                    int *correct);

/* Numerically stable softmax of one row of K values at temperature T into p. */
void cnd_softmax(float *p, const float *z, int K, float T);

/* Index of the largest of K values (first on ties). */
int cnd_argmax(const float *z, int K);

#endif
