/*
 * distill.h: knowledge distillation (Hinton, Vinyals, Dean 2015).
 *
 *   loss = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)
 *   dloss/dz_s = alpha * T * (p_s^T - p_t^T) + (1 - alpha) * (p_s - onehot(y))
 *
 * The teacher runs forward only, once: its logits for a fixed dataset are computed up front
 * and looked up by sample index during training (no augmentation, so they never change). The
 * loss plugs into the training loop (train.h) as its loss callback, so the same loop trains
 * with labels, with a teacher, or with a teacher and fake quantisation.
 */
#ifndef CND_DISTILL_H
#define CND_DISTILL_H

#include "data.h"
#include "model.h"

#define CND_DISTILL_DEFAULT_T     2.0f
#define CND_DISTILL_DEFAULT_ALPHA 0.5f

typedef struct {
    const float *teacher_logits; /* n x K logits of the teacher, by sample index; or NULL when
                                    the teacher scores each (augmented) batch (see below) */
    const uint8_t *labels;       /* n labels */
    int K;                       /* classes */
    float T;                     /* temperature > 0 */
    float alpha;                 /* weight of the soft term in [0, 1] */
    /* Per-batch teacher (set up by cnd_distill_online_init): */
    cnd_model_t *teacher; /* borrowed */
    float *tx;            /* batch in the teacher's normalisation */
    float *batch_logits;  /* teacher logits of the current batch (B x K) */
    float *scale, *shift; /* per channel: x_teacher = x_student * scale + shift */
    int cap;              /* batch capacity of tx and batch_logits */
} cnd_distill_t;

/* Loss callback for cnd_train_cfg_t.loss (ctx is a cnd_distill_t). Returns the mean loss over
 * the batch, writes dlogits (already divided by B) and counts correct predictions. */
float cnd_distill_loss(void *ctx, float *dlogits, const float *logits, const uint32_t *idx, int B,
                       int K, int *correct);

/* Prepares d to run `teacher` on every training batch (for augmented data, where cached
 * logits would be stale): the student's normalisation (s_mean, s_std) is mapped onto the
 * teacher's. Returns 0, CND_EINVAL or CND_ENOMEM. Free with cnd_distill_online_free. */
CND_MUST_USE int cnd_distill_online_init(cnd_distill_t *d, cnd_model_t *teacher,
                                         const float *s_mean, const float *s_std, int batch);
void cnd_distill_online_free(cnd_distill_t *d);
/* Batch hook for cnd_train_cfg_t.on_batch (ctx is a cnd_distill_t set up as above). */
int cnd_distill_on_batch(void *ctx, const float *xb, const uint32_t *idx, int B);

/* Teacher logits for all of `raw` (unnormalised samples): normalises a copy with the teacher's
 * own statistics and runs the teacher in eval mode. *logits is n x K, caller frees. Returns 0,
 * CND_EINVAL (shape or class mismatch, named) or CND_ENOMEM. */
CND_MUST_USE int cnd_distill_teacher_logits(float **logits, cnd_model_t *teacher,
                                            const cnd_dataset_t *raw);

#endif
