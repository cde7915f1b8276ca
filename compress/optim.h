/*
 * optim.h: optimizers (SGD with momentum and weight decay; Adam and AdamW) and learning-rate
 * schedules (constant, step, cosine with linear warm-up), over a model's flat parameter buffer.
 *
 * Weight decay applies only to weights (conv and dense kernels), never to biases or batchnorm
 * affine terms, as is usual practice; the decayed ranges come from the model's layers. The
 * optimizer state (momentum / first and second moments) is one or two flat buffers of
 * num_params floats.
 */
#ifndef CND_OPTIM_H
#define CND_OPTIM_H

#include "model.h"

typedef enum { CND_OPT_SGD, CND_OPT_ADAM, CND_OPT_ADAMW } cnd_optim_kind_t;
typedef enum { CND_SCHED_CONST, CND_SCHED_STEP, CND_SCHED_COSINE } cnd_sched_kind_t;

typedef struct {
    cnd_optim_kind_t kind;
    float lr;           /* base learning rate */
    float momentum;     /* SGD momentum (0 = plain SGD) */
    float beta1, beta2; /* Adam moment rates */
    float eps;          /* Adam denominator epsilon */
    float weight_decay; /* SGD/Adam: L2 added to the gradient; AdamW: decoupled decay */
    int nesterov;       /* SGD: Nesterov momentum */
} cnd_optim_cfg_t;

typedef struct {
    cnd_sched_kind_t kind;
    long total_steps;  /* cosine: steps until lr reaches min_lr */
    long warmup_steps; /* linear warm-up from 0 (cosine and step) */
    long step_size;    /* step: multiply by gamma every step_size steps */
    float gamma;       /* step: decay factor */
    float min_lr_frac; /* cosine: final lr as a fraction of the base lr */
} cnd_sched_cfg_t;

typedef struct {
    cnd_optim_cfg_t cfg;
    size_t n;       /* num_params */
    float *m, *v;   /* moment buffers (v only for Adam) */
    long t;         /* steps taken */
    uint8_t *decay; /* per-parameter 1 if decayed; NULL when weight_decay == 0 */
} cnd_optim_t;

/* Default configurations: SGD momentum 0.9; Adam beta (0.9, 0.999), eps 1e-8. */
cnd_optim_cfg_t cnd_optim_defaults(cnd_optim_kind_t kind, float lr);

/* Returns 0 or CND_ENOMEM. The optimizer is tied to m's parameter layout. */
CND_MUST_USE int cnd_optim_init(cnd_optim_t *o, const cnd_optim_cfg_t *cfg, const cnd_model_t *m);
void cnd_optim_free(cnd_optim_t *o);

/* One update of m->params from m->grads with learning rate lr. */
void cnd_optim_step(cnd_optim_t *o, cnd_model_t *m, float lr);

/* Learning rate at a 0-based step. */
float cnd_sched_lr(const cnd_sched_cfg_t *s, float base_lr, long step);

#endif
