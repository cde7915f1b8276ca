/*
 * fuzz_model.h: runs a model that a fuzz target managed to build (from a model file, a
 * checkpoint or a spec) the way `condenser train` and `eval` would: a training forward pass
 * (with its fused conv+pool kernels), a backward pass, and an inference forward pass, at batch
 * 1 (what `--batch 1` runs) and at batch 3. Models too large to run in a few milliseconds are
 * skipped: their size is a cost, not a bug, and the loaders already proved them well formed.
 */
#ifndef CND_FUZZ_MODEL_H
#define CND_FUZZ_MODEL_H

#include "model.h"
#include "pool.h"

#include <stdlib.h>

#define FUZZ_MODEL_MAX_MACS   (2u << 20) /* per sample */
#define FUZZ_MODEL_MAX_ACT    (1u << 18) /* floats of all activations of one sample */
#define FUZZ_MODEL_MAX_PARAMS (1u << 20)

static inline int fuzz_model_small(const cnd_model_t *m)
{
    if (m->num_params > FUZZ_MODEL_MAX_PARAMS || cnd_model_macs(m) > FUZZ_MODEL_MAX_MACS) return 0;
    size_t act = cnd_shape_size(m->in);
    for (int i = 0; i < m->n_layers; i++) {
        size_t s = cnd_shape_size(m->layers[i].out);
        if (s > FUZZ_MODEL_MAX_ACT || act > FUZZ_MODEL_MAX_ACT - s) return 0;
        act += s;
    }
    return 1;
}

/* Forward (train), backward, forward (inference) at batches 1 and 3 on a fixed input. Aborts if
 * the model produces no logits: a model that loaded must run. */
static inline void fuzz_model_run(cnd_model_t *m)
{
    if (!fuzz_model_small(m)) return;
    (void)cnd_pool_set_threads(1);
    size_t d = cnd_shape_size(m->in);
    float *x = malloc(3 * d * sizeof(float));
    float *dl = malloc(3 * (size_t)m->n_classes * sizeof(float));
    if (!x || !dl) abort();
    for (size_t i = 0; i < 3 * d; i++) x[i] = (float)((i * 37) % 11) - 5.0f;
    for (size_t i = 0; i < 3 * (size_t)m->n_classes; i++) dl[i] = (i % 2) ? 0.25f : -0.5f;
    for (int B = 1; B <= 3; B += 2) {
        const float *logits = NULL;
        if (cnd_model_forward(m, x, B, 1, &logits) != 0) break; /* out of memory */
        if (!logits) abort();
        fuzz_note("model ran");
        cnd_model_zero_grad(m);
        cnd_model_backward(m, dl);
        if (cnd_model_forward(m, x, B, 0, &logits) != 0) break;
        if (!logits) abort();
    }
    free(x);
    free(dl);
}

#endif
