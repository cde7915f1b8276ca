/*
 * model.h: a float32 network: its layers, its parameters, and the buffers a forward and
 * backward pass need.
 *
 * A model is a directed acyclic graph of nodes in spec order (docs/layers.md): node i reads
 * the model input or earlier nodes (layer.h's src), residual `add` and `concat` read two. A
 * plain spec is a chain, node i reading node i - 1, and runs exactly as before graphs existed.
 * The last node's output is the class scores; every other node must be read by a later one.
 *
 * Memory: `params`, `grads` hold num_params floats each, contiguous, layer after layer
 * (weights then biases); `state` holds num_state persistent non-trainable floats (batchnorm
 * running statistics). A federated update is the difference of two `params` vectors. Activation
 * buffers are sized for a batch capacity that grows on demand (cnd_model_reserve).
 *
 * The model also carries what a deployment needs to use it correctly: the input shape, the
 * per-channel input normalisation (x - mean) / std applied to raw data, and free-form metadata
 * (dataset, accuracy, creation time, labels), all saved in the model file (modelfile.h).
 */
#ifndef CND_MODEL_H
#define CND_MODEL_H

#include "error.h"
#include "layer.h"
#include "spec.h"

#include <stddef.h>
#include <stdint.h>

#define CND_META_MAX 64

typedef struct {
    char *key, *val; /* owned NUL-terminated strings */
} cnd_meta_kv_t;

/* Optional callbacks run inside the float forward and backward passes, so that compress/quant
 * can simulate quantization (calibration checks, quantization-aware training) without its own
 * copy of the network code. NULL (the default) means plain float. Not copied by clone; whoever
 * installs them removes them. `weights` may substitute a layer's weights (it is called for the
 * same layer in forward and backward and must return the same values both times); `act_forward`
 * may rewrite layer i's output in place; `act_backward` may rewrite the gradient with respect
 * to layer i's output just before layer i's backward pass. */
typedef struct cnd_model_hooks {
    void *ctx;
    const float *(*input)(void *ctx, const float *x, int B);
    const float *(*weights)(void *ctx, int layer, const float *w);
    void (*act_forward)(void *ctx, int layer, float *out, int B, int train);
    void (*act_backward)(void *ctx, int layer, float *dout, int B);
} cnd_model_hooks_t;

typedef struct cnd_model {
    char *spec;            /* architecture spec, canonical form (cnd_layer_spec tokens) */
    cnd_shape_t in;        /* per-sample input shape */
    int n_layers;          /* <= CND_SPEC_MAX_LAYERS; the nodes of the graph, in order */
    int graph;             /* 1 if a node reads other than the node before it, has two inputs,
                              or is named; the backward pass then walks the graph */
    cnd_layer_t *layers;   /* n_layers entries */
    int n_classes;         /* size of the last layer's output */
    int first_param_layer; /* index of the first layer with parameters (backward stops there) */
    size_t num_params;     /* trainable floats */
    float *params, *grads; /* num_params each */
    size_t num_state;      /* persistent non-trainable floats */
    float *state;          /* num_state */
    float *norm_mean;      /* in.c entries: input normalisation (x - mean) / std */
    float *norm_std;       /* in.c entries, > 0 */
    int n_meta;            /* metadata entries */
    cnd_meta_kv_t meta[CND_META_MAX];
    /* Work buffers for a batch capacity of cap_B samples. */
    int cap_B;
    int cap_T;                      /* thread count the work buffers were sized for */
    float **acts;                   /* acts[i] is layer i's output (cap_B x out size) */
    float *dbuf[2];                 /* ping-pong activation gradients (cap_B x max act size) */
    float **gpool;                  /* graph models: gradient buffers (cap_B x max act size) */
    int n_gpool;                    /* their count: the most gradients the backward pass holds */
    float *work;                    /* shared scratch */
    const float *last_in;           /* input of the last training forward (caller keeps it alive) */
    int last_B;                     /* batch size of the last training forward */
    double *prof;                   /* NULL, or 2 x n_layers seconds spent in forward / backward */
    int prof_cpu;                   /* prof counts process CPU time instead of wall time */
    const cnd_model_hooks_t *hooks; /* fake-quantization callbacks, or NULL (see above) */
    int no_fuse;                    /* 1: run conv2d and a following maxpool separately (layer.h) */
    int last_fused;                 /* the last forward ran fused conv+pool passes */
} cnd_model_t;

/* Builds a model from `spec` for inputs of shape `in`, initialises weights from `seed`
 * (He-normal; same seed gives the same bits), normalisation mean 0 / std 1, no metadata.
 * Returns 0 and an owned model, or CND_EINVAL (spec or shape error with detail) / CND_ENOMEM. */
CND_MUST_USE int cnd_model_new(cnd_model_t **out, const char *spec, cnd_shape_t in, uint64_t seed);

/* Checks spec for inputs of shape `in` as cnd_model_new does, without allocating parameters:
 * on success *num_params and *num_state are the floats cnd_model_new would allocate, so a
 * loader can compare them with what a file holds first. Returns 0, CND_EINVAL (with the same
 * detail as cnd_model_new) or CND_ENOMEM. */
CND_MUST_USE int cnd_model_plan(const char *spec, cnd_shape_t in, size_t *num_params,
                                size_t *num_state);

/* Frees the model; accepts NULL and *m == NULL; nulls *m. */
void cnd_model_destroy(cnd_model_t **m);

/* Deep copy (parameters, state, normalisation, metadata; not work buffers). */
CND_MUST_USE int cnd_model_clone(cnd_model_t **out, const cnd_model_t *m);

/* Ensures activation buffers for B samples. Returns 0 or CND_ENOMEM. */
CND_MUST_USE int cnd_model_reserve(cnd_model_t *m, int B);

/* Forward pass over B normalised samples x (B x in size). In training mode batchnorm uses
 * batch statistics and everything needed by backward is kept; `x` must stay valid until
 * cnd_model_backward. Sets *logits to an internal (B x n_classes) buffer valid until the next
 * forward. Returns 0 or CND_ENOMEM. */
CND_MUST_USE int cnd_model_forward(cnd_model_t *m, const float *x, int B, int train,
                                   const float **logits);

/* Copies layer i's output activation of the last forward pass (B samples) into dst in NCHW
 * order, whatever its internal layout (layer.h). Returns 0 or CND_EINVAL. */
CND_MUST_USE int cnd_model_act_nchw(const cnd_model_t *m, int i, int B, float *dst);

/* Backward pass from dlogits (last_B x n_classes); accumulates into grads. */
void cnd_model_backward(cnd_model_t *m, const float *dlogits);

void cnd_model_zero_grad(cnd_model_t *m);

/* Multiply-accumulates per sample over all layers. */
uint64_t cnd_model_macs(const cnd_model_t *m);

/* Metadata: set replaces an existing key; returns 0, CND_ERANGE (table full) or CND_ENOMEM.
 * get returns the value or NULL. */
CND_MUST_USE int cnd_model_meta_set(cnd_model_t *m, const char *key, const char *val);
const char *cnd_model_meta_get(const cnd_model_t *m, const char *key);

/* Starts per-layer timing (allocates m->prof): wall time, or process CPU time when cpu is set.
 * Returns 0 or CND_ENOMEM. */
CND_MUST_USE int cnd_model_profile_begin(cnd_model_t *m, int cpu);
/* Prints the per-layer forward/backward time table to stderr. */
void cnd_model_profile_print(const cnd_model_t *m);

/* 0 when the model is a chain of the layers every part of Condenser handles (dense, conv2d
 * without groups, relu, tanh, pools, gap, flatten, batchnorm): the model quantization, the
 * integer runtime, ONNX export, DP-SGD and federated jobs support. Otherwise 1, and `what`
 * (when not NULL) names the first node beyond that, e.g. "layer 7 (add)" or "a graph (layer 3
 * reads layer 1)". Commands that do not handle graphs yet refuse with it. */
int cnd_model_is_graph(const cnd_model_t *m, char *what, size_t n);

/* 0 for a model cnd_model_is_graph calls plain; otherwise CND_EINVAL with the detail "WHAT
 * does not handle graph models or their layers yet: <the node> (docs/layers.md)". */
CND_MUST_USE int cnd_model_refuse_graph(const cnd_model_t *m, const char *what);

/* cnd_model_is_graph on a spec, for inputs of shape `in` (CND_EINVAL when it does not parse,
 * with the detail set). */
int cnd_model_spec_is_graph(const char *spec, cnd_shape_t in, char *what, size_t n);

/* Applies the model's normalisation in place to n raw samples. */
void cnd_model_normalize(const cnd_model_t *m, float *x, size_t n);

#endif
