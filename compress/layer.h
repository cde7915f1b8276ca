/*
 * layer.h: the layers a model is made of, each with its forward and backward pass side by side.
 *
 * Tensors are float32 NCHW. A layer sees per-sample shapes (cnd_shape_t, C x H x W) and a batch
 * size B given at call time; dense layers treat any input as flat features (C*H*W).
 *
 * Parameters, their gradients and the optimizer state live in three contiguous buffers owned
 * by the model (see model.h); a layer only knows its offset and count in them, so a weight
 * update or a federated update is one flat loop over `num_params` floats. Non-trainable state
 * that must persist (batchnorm running statistics) lives in a separate contiguous `state`
 * buffer the same way.
 *
 * Memory layout of activations: the model input is NCHW. Spatial layers keep their activations
 * channel-major, "CBHW" (all of channel 0 for the whole batch, then channel 1, ...), because
 * that is the layout a batched im2col + sgemm convolution produces and consumes directly: no
 * transposes around each GEMM, and batchnorm statistics run over contiguous memory. `in_cbhw`
 * records the layout of a layer's input; conv2d always outputs CBHW; relu, pools and batchnorm
 * keep their input's layout; flatten, gap and dense output NCHW (B, F). With C == 1 the two
 * layouts are the same bytes. cnd_model_act_nchw() returns any activation in NCHW.
 *
 * Fusion: a relu right after conv2d or dense is fused into it (`fuse_relu`); the relu layer
 * then has `alias` set, owns no buffer and shares its input's (already rectified) activation.
 * In a training pass without hooks, a 2x2 maxpool after a conv2d (and its relu) is computed
 * inside the convolution too (`fuse_pool`, `pool_fused`): the full-size convolution output,
 * the largest activation of a CNN, then never leaves the cache; that pass leaves the conv's
 * own activation unwritten (cnd_model_act_nchw refuses it).
 * A flatten of an NCHW input is also an alias: the bytes do not change. Alias layers are never
 * run; their output pointer is their input pointer (for layer 0, the caller's input).
 *
 * Conventions (after llm.c): outputs first, then inputs, then weights, then dimensions; the
 * first comment of each kernel gives the shapes; backward passes accumulate (+=) into
 * parameter gradients, and the model's zero_grad clears them; backward writes (=) the input
 * gradient `din`, which may be NULL when nobody needs it (the first layer).
 */
#ifndef CND_LAYER_H
#define CND_LAYER_H

#include "rng.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int c, h, w; /* channels, height, width of one sample; features are (F, 1, 1) */
} cnd_shape_t;

static inline size_t cnd_shape_size(cnd_shape_t s)
{
    return (size_t)s.c * (size_t)s.h * (size_t)s.w;
}

typedef enum {
    CND_L_DENSE,
    CND_L_CONV2D,
    CND_L_RELU,
    CND_L_MAXPOOL,
    CND_L_AVGPOOL,
    CND_L_GAP,
    CND_L_FLATTEN,
    CND_L_BATCHNORM,
    CND_L_TANH,
    /* Added with graph models (docs/layers.md); appended so the values above never change. */
    CND_L_GCONV,     /* grouped conv2d, groups > 1 (depthwise when groups == channels) */
    CND_L_RELU6,     /* min(max(x, 0), 6) */
    CND_L_HARDSWISH, /* x * relu6(x + 3) / 6 */
    CND_L_ADD,       /* two inputs of one shape, added (residual) */
    CND_L_CONCAT,    /* two inputs of one height and width, channels of the first then the second */
    CND_L_COUNT
} cnd_layer_type_t;

typedef struct cnd_layer {
    cnd_layer_type_t type;
    union {
        struct {
            int out; /* output features */
        } dense;
        struct {
            int oc, k, stride, pad; /* output channels, square kernel size, stride, zero pad */
            int groups; /* gconv: channel groups (>= 2; in.c and oc divisible by it); conv2d: 0 */
        } conv;
        struct {
            int k, stride; /* window and stride (stride defaults to k) */
        } pool;
        struct {
            float eps, momentum; /* variance epsilon; running-stat update rate (PyTorch style) */
        } bn;
    } p;
    cnd_shape_t in, out; /* per-sample input and output shapes */
    int in_cbhw;         /* 1 if the input activation is stored CBHW, 0 if NCHW */
    /* The graph (model.h): which nodes this one reads. A sequential model has n_src 1 and
     * src[0] == its own index - 1 everywhere; -1 is the model input. */
    int n_src;        /* 1, or 2 for add and concat */
    int src[2];       /* producing node of each input, -1 for the model input */
    cnd_shape_t in2;  /* add/concat: shape of the second input */
    int in2_cbhw;     /* add/concat: layout of the second input */
    int out_cbhw;     /* layout of this node's output (set by the model) */
    char name[16];    /* the spec's NAME= for this node, "" when it has none */
    int fuse_relu;    /* conv2d/dense: apply relu to the output (the next layer aliases);
                         batchnorm: 6 when a relu6 is fused the same way (model.c) */
    int fuse_pool;    /* conv2d: index of a following 2x2 maxpool it computes in training */
    int pool_fused;   /* maxpool: computed by the conv2d before it in training */
    int alias;        /* fused relu or identity flatten: no computation, no buffer */
    size_t param_off; /* first parameter in the model's params/grads buffers */
    size_t n_params;  /* trainable parameter count (weights then bias) */
    size_t n_weights; /* of which weights (decayed); the rest are biases/affine terms */
    size_t state_off; /* first float in the model's state buffer (bn running stats) */
    size_t n_state;   /* non-trainable persistent floats */
    /* Per-layer saved tensors for the backward pass, sized for the model's batch capacity. */
    float *saved;    /* conv: im2col columns (CKK x B*P); bn: xhat (B x C x H x W) */
    float *saved2;   /* bn: per-channel inverse std for the last batch (C) */
    int32_t *argmax; /* maxpool: where each maximum came from (layer_pool.c) */
    /* DP-SGD (dpsgd.h): NULL, or B doubles into which the dense and conv2d backward passes add
     * each sample's squared L2 norm of its own gradient of this layer's parameters. */
    double *sample_norm2;
    /* DP-SGD: NULL, or B x n_params floats where conv2d's backward also stores each sample's own
     * parameter gradient (weights then bias) when sample_norm2 is set. */
    float *sample_grads;
} cnd_layer_t;

/* What the model needs from the layer for a given batch capacity. */
typedef struct {
    size_t saved, saved2, argmax; /* element counts of the per-layer saved buffers */
    size_t work;                  /* floats of shared scratch needed during forward/backward */
} cnd_layer_mem_t;

typedef struct {
    const char *name; /* spec keyword, e.g. "conv2d" */
    /* Sets l->out, n_params, n_weights, n_state from l->in and l->p; returns 0 or CND_EINVAL
     * with a detail when the input shape does not fit (e.g. kernel larger than input). */
    int (*shape)(cnd_layer_t *l);
    /* He-normal weights, zero biases, unit/zero batchnorm affine and running stats. */
    void (*init)(cnd_layer_t *l, float *w, float *state, cnd_rng_t *rng);
    /* out (B, out) from in (B, in); `train` selects batch statistics and saves for backward.
     * NULL for the two-input nodes add and concat, which run through cnd_merge_forward. */
    void (*forward)(cnd_layer_t *l, float *out, const float *in, const float *w, float *state,
                    float *work, int B, int train);
    /* din (B, in) (may be NULL) and dw (+=) from dout (B, out) and the saved forward data. */
    void (*backward)(cnd_layer_t *l, float *din, float *dw, const float *dout, const float *in,
                     const float *out, const float *w, float *work, int B);
    /* Multiply-accumulates per sample. */
    uint64_t (*macs)(const cnd_layer_t *l);
    cnd_layer_mem_t (*mem)(const cnd_layer_t *l, int B);
} cnd_layer_ops_t;

/* Offset in floats of the (c, b) plane of a layer's input of B samples, in its layout. */
static inline size_t cnd_layer_plane(const cnd_layer_t *l, int c, int b, int B)
{
    size_t hw = (size_t)l->in.h * (size_t)l->in.w;
    return (l->in_cbhw ? (size_t)c * (size_t)B + (size_t)b
                       : (size_t)b * (size_t)l->in.c + (size_t)c) *
           hw;
}

/* 2x2 max pooling with stride 2, one row of windows (layer_pool.c), shared with conv2d's
 * fused path. Forward: dst[ow] is the max of r0[2ow], r0[2ow+1], r1[2ow], r1[2ow+1], and
 * code[ow] the position (0..3, in that order) of the first input equal to it. Backward: each
 * window's gradient g[ow] goes to its coded input of rows d0/d1, zeros to the other three
 * (every input is written); with `gate` non-NULL, only where gate[ow] > 0 (a relu before the
 * pool, judged by the pooled output). */
void cnd_maxpool2_row(float *dst, uint8_t *code, const float *r0, const float *r1, int OW);
void cnd_maxpool2_row_back(float *d0, float *d1, const float *g, const float *gate,
                           const uint8_t *code, int OW);

/* conv2d [relu] maxpool(2) in one pass over cache-sized groups, for training (model.c): the
 * convolution's output never goes to memory, only the pooled output `pout` (the maxpool
 * layer's activation) and its window codes. The backward pass takes the pooled gradient. */
void cnd_conv2d_forward_pool(cnd_layer_t *l, float *pout, uint8_t *codes, const float *in,
                             const float *w, float *work, int B);
void cnd_conv2d_backward_pool(cnd_layer_t *l, float *din, float *dw, const float *dpool,
                              const float *in, const float *pout, const uint8_t *codes,
                              const float *w, float *work, int B);

/* add and concat (layer_merge.c): out from the two inputs a (shape l->in, layout in_cbhw) and
 * b (l->in2, in2_cbhw); out is in the layout of a. Backward writes (=) da and db, either of
 * which may be NULL. */
void cnd_merge_forward(const cnd_layer_t *l, float *out, const float *a, const float *b, int B);
void cnd_merge_backward(const cnd_layer_t *l, float *da, float *db, const float *dout, int B);

/* The ops table for a layer type. */
const cnd_layer_ops_t *cnd_layer_ops(cnd_layer_type_t t);

/* Writes the layer as its spec token ("conv2d(32,3,pad=1)") into out. */
void cnd_layer_spec(const cnd_layer_t *l, char *out, size_t n);

#endif
