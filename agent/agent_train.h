/*
 * agent_train.h: what a site computes in a round, on its own data, and what of it may leave.
 *
 * Per job (cnd_agent_data_prepare): load the site's data, split off a validation set (seeded,
 * so a restarted agent gets the same split), run the teacher once over the training part and
 * keep its logits, and keep a copy of the training inputs normalised with the student's
 * statistics (fixed for the job: they come with the initial student).
 *
 * Per round (cnd_agent_local_round): copy the global student, distill for the job's local
 * epochs (Adam, constant rate, batches shuffled with a round-dependent seed; in a DP job DP-SGD
 * with momentum 0.9 over Poisson samples, proto/job_dp.h), and return
 *   - the update: (local - global) over the parameters AND the batchnorm running statistics,
 *     one flat vector of num_params + num_state floats, to be clipped, encoded with the sample
 *     count and masked (crypto/fixedpoint.h, crypto/secagg.h) before it leaves;
 *   - aggregate metrics only: loss and accuracy of the local model on the validation split,
 *     the number of training samples, the training time.
 * Nothing else derived from a record is returned. A failure (data that does not fit the job,
 * a diverging step) returns an error and no update.
 */
#ifndef CND_AGENT_TRAIN_H
#define CND_AGENT_TRAIN_H

#include "job.h"
#include "data.h"
#include "model.h"

typedef struct {
    cnd_dataset_t *train;   /* raw training part */
    cnd_dataset_t *val;     /* raw validation part (may have n == 0) */
    cnd_dataset_t *train_n; /* train normalised with the student's statistics */
    cnd_dataset_t *val_n;   /* val likewise */
    float *teacher_logits;  /* train->n x classes */
    int classes;
    int n_missing;        /* classes of the job this site has no sample of */
    uint8_t missing[256]; /* their indices */
} cnd_agent_data_t;

/* Loads data_spec ("train" split), checks it against the job (input shape), maps its labels by
 * name onto the job's class map (refusing labels the job does not know; d->missing lists the
 * job's classes the data lacks, for the caller to warn about), splits it
 * (val_frac, seed), computes the teacher's logits and normalises with `student`'s statistics.
 * The teacher is `teacher`, or when it is NULL the site-local ONNX model at onnx_path with its
 * preprocessing spec onnx_prep (cnd_onnx_teacher_logits). Returns 0 or an error naming what
 * does not fit. d is emptied first. */
CND_MUST_USE int cnd_agent_data_prepare(cnd_agent_data_t *d, const char *data_spec, double val_frac,
                                        uint64_t seed, cnd_model_t *teacher, const char *onnx_path,
                                        const char *onnx_prep, const cnd_model_t *student,
                                        const cnd_job_spec_t *job);
void cnd_agent_data_free(cnd_agent_data_t *d);

/* Bytes of memory the prepared data takes (for the [limits] memory check). */
size_t cnd_agent_data_bytes(const cnd_agent_data_t *d);

typedef struct {
    float *update; /* num_params + num_state floats (owned; free()) */
    size_t dim;
    float val_loss, val_acc; /* of the local model on the validation split (0 if none) */
    uint64_t samples;        /* training samples */
    uint32_t train_ms;
    float train_loss; /* mean distillation loss of the last local epoch */
} cnd_agent_update_t;

void cnd_agent_update_free(cnd_agent_update_t *u);

/* One local round from `global` (unchanged). qat trains with fake quantization using the
 * quantizer the global model carries (compress/quant_fed.h); the validation metrics are
 * then those of the fake-quantized model. Returns 0 with *out filled, or an error (nothing
 * returned). */
CND_MUST_USE int cnd_agent_local_round(cnd_agent_update_t *out, const cnd_model_t *global,
                                       const cnd_agent_data_t *d, const cnd_job_spec_t *job,
                                       int qat, uint64_t seed);

#endif
