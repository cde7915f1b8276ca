/*
 * train.h: the training loop and evaluation.
 *
 * The loop is generic over the loss: a callback gets the logits of a batch and the dataset
 * indices of its samples, writes dlogits and returns the loss. Plain training uses labels
 * (cnd_train_xent_loss); distillation plugs in a loss that looks up cached teacher logits by
 * sample index. Data passed here is already normalised.
 */
#ifndef CND_TRAIN_H
#define CND_TRAIN_H

#include "data.h"
#include "dpsgd.h"
#include "model.h"
#include "optim.h"

/* Loss callback: dlogits (B,K) and *correct from logits (B,K) of samples idx[0..B). */
typedef float (*cnd_loss_fn)(void *ctx, float *dlogits, const float *logits, const uint32_t *idx,
                             int B, int K, int *correct);

typedef struct {
    int epochs;             /* passes over the data */
    int batch;              /* samples per step */
    cnd_optim_cfg_t optim;  /* optimizer and base learning rate */
    cnd_sched_kind_t sched; /* learning-rate schedule over all steps */
    float warmup_frac;      /* fraction of steps spent in linear warm-up (0 = none) */
    uint64_t seed;          /* shuffling seed */
    int verbose;            /* print one summary line per epoch on stdout */
    cnd_loss_fn loss;       /* NULL = cross-entropy on the dataset's labels */
    void *loss_ctx;         /* passed to loss */
    unsigned augment;       /* CND_AUG_* flags (augment.h); 0 = none */
    int aug_shift;          /* largest shift in pixels (default 2) */
    const float *aug_bg;    /* per-channel normalised background value for shifted-in pixels */
    /* Optional hook on each batch after augmentation, before the forward pass (distillation
     * with augmentation runs the teacher on the same images here). Non-zero return stops. */
    int (*on_batch)(void *ctx, const float *xb, const uint32_t *idx, int B);
    void *batch_ctx;
    /* Optional hook after each epoch (e.g. QAT phase switches); non-zero return stops. */
    int (*on_epoch)(void *ctx, cnd_model_t *m, int epoch);
    void *epoch_ctx;
    /* Checkpoints (checkpoint.h): with ckpt_path set, one is written there after every epoch,
     * tagged with ckpt_config (the run's settings, "key=value;..."). With resume set, training
     * continues from it; without, an existing file is refused rather than overwritten. */
    const char *ckpt_path;
    const char *ckpt_config;
    int resume;
    /* DP-SGD (dpsgd.h) when dp.clip > 0: each step samples every record with probability
     * q = batch / n (Poisson; `batch` is then the expected batch size, processed in chunks of
     * at most `batch`), clips per-sample gradients to dp.clip and adds noise dp.noise * dp.clip;
     * an epoch is ceil(n / batch) steps. Refuses batchnorm and hooks. */
    cnd_dpsgd_cfg_t dp;
} cnd_train_cfg_t;

typedef struct {
    float loss;           /* mean training loss of the last epoch */
    float acc;            /* training accuracy of the last epoch */
    double seconds;       /* wall time of all epochs */
    double samples_per_s; /* training throughput over all epochs */
    int resumed_epochs;   /* epochs a checkpoint had already done (0 = fresh run) */
    long steps;           /* optimizer steps taken, resumed ones included */
    double dp_epsilon;    /* DP-SGD: epsilon at cfg->dp.delta after all steps (0 otherwise) */
    double dp_clipped;    /* DP-SGD: fraction of per-sample gradients clipped, last epoch */
    double dp_mean_norm;  /* DP-SGD: their mean norm before clipping, last epoch */
} cnd_train_result_t;

cnd_train_cfg_t cnd_train_defaults(void);

/* Trains m on ds. val (may be NULL) is evaluated after each epoch for the summary line.
 * Returns 0, CND_ENOMEM or CND_EINVAL (non-finite loss: the detail names the epoch/step; a
 * checkpoint of other settings, or one present without resume), or a checkpoint read/write
 * error (CND_EIO, CND_EFORMAT, CND_ECORRUPT). */
CND_MUST_USE int cnd_train(cnd_model_t *m, const cnd_dataset_t *ds, const cnd_dataset_t *val,
                           const cnd_train_cfg_t *cfg, cnd_train_result_t *res);

typedef struct {
    size_t n;   /* samples evaluated */
    float loss; /* mean cross-entropy */
    float acc;  /* top-1 accuracy */
    int n_classes;
    uint32_t per_class_total[256];
    uint32_t per_class_correct[256];
} cnd_eval_t;

/* Evaluates m (eval mode) on normalised ds in batches. Returns 0 or CND_ENOMEM /
 * CND_EINVAL (class count mismatch). */
CND_MUST_USE int cnd_evaluate(cnd_model_t *m, const cnd_dataset_t *ds, int batch, cnd_eval_t *out);

/* Runs the model over all of ds and stores logits (n x K) into a new buffer (caller frees). */
CND_MUST_USE int cnd_model_logits(cnd_model_t *m, const cnd_dataset_t *ds, int batch,
                                  float **logits);

/* Sets the training threads (1..64; 0 = one per core): the layer thread pool gets them and
 * OpenBLAS runs single-threaded inside each task. */
void cnd_set_threads(int threads);

/* "OpenBLAS <core> kernels, <n> threads", for logs and benchmarks. */
const char *cnd_blas_info(void);

#endif
