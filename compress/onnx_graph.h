/*
 * onnx_graph.h: ONNX models read with protobuf-c from the official schema (onnx.proto), checked,
 * and run in float32 as teachers; graphs whose nodes map onto trainable layers become students.
 *
 * Three steps, each with its own file:
 *   onnx_load.c   bytes -> graph: the ModelProto is decoded by the code protoc-c generates from
 *                 onnx.proto; opsets, every node's op and attributes, initializers (sizes checked
 *                 against the bytes they hold before anything is allocated for them) and the
 *                 graph's wiring are validated; nodes are sorted topologically (a cycle or a
 *                 name nobody produces is refused). Nothing of the protobuf message is kept.
 *   onnx_plan.c   graph + batch size -> plan: every value's shape for B samples, constant
 *                 folding (Constant, Shape, Gather, Cast, Concat, Unsqueeze, ... on values known
 *                 before any input arrives), fusions (a Relu after a Conv) and one arena of
 *                 activation buffers reused as soon as a value is dead. Sizes are checked before
 *                 the arena is allocated.
 *   onnx_ops.c    the kernels, run in topological order over the arena. Convolutions with square
 *                 kernels, equal strides and symmetric padding (all of PyTorch's usual ones)
 *                 run through the training core's im2col + sgemm (layer_conv2d.c), per group;
 *                 depthwise, dilated and other convolutions through a direct kernel, which is
 *                 also the reference the fast path is tested against.
 * Then onnx_student.c maps a graph onto the layers of a .cnd graph model (cnd_onnx_to_model).
 *
 * Tensors are float32 NCHW between nodes; int64 appears only in values known at plan time
 * (shapes, axes, indices). The batch is dimension 0 of the one graph input; a Reshape whose
 * target starts with the batch size the file was exported with keeps the batch of the run.
 *
 * Every refusal names the file, and where it concerns a node, the node's name, op type, the
 * attribute or input at fault and the model's opset (cnd_err_detail()).
 */
#ifndef CND_ONNX_GRAPH_H
#define CND_ONNX_GRAPH_H

#include "data.h"
#include "error.h"
#include "layer.h"
#include "model.h"

#include <stddef.h>
#include <stdint.h>

#define CND_ONNX_MAX_RANK  6
#define CND_ONNX_OPSET_MIN 11
#define CND_ONNX_OPSET_MAX 17
#define CND_ONNX_FILE_MAX  ((size_t)1 << 30) /* bytes of a model file */
#define CND_ONNX_NODES_MAX 100000
#define CND_ONNX_VALUE_MAX ((int64_t)1 << 26) /* elements of one value for one sample batch */
#define CND_ONNX_ARENA_MAX ((size_t)1 << 29)  /* floats of activations in one plan (2 GiB) */

typedef struct cnd_onnx cnd_onnx_t;

/* Reads and checks an ONNX model file (at most CND_ONNX_FILE_MAX bytes). Returns 0 and an owned
 * graph, or CND_EIO (unreadable), CND_EFORMAT (not a model we can run: bad protobuf, opset, op,
 * attribute, initializer, wiring), CND_ENOMEM; the detail names what was wrong. */
CND_MUST_USE int cnd_onnx_load(cnd_onnx_t **out, const char *path);

/* The same from bytes; `name` is used in messages. */
CND_MUST_USE int cnd_onnx_load_mem(cnd_onnx_t **out, const uint8_t *data, size_t len,
                                   const char *name);

/* Frees the graph and its plan; accepts NULL and *g == NULL; nulls *g. */
void cnd_onnx_destroy(cnd_onnx_t **g);

/* Per-sample input shape (C, H, W; (F, 1, 1) for a rank-2 input), and the number of classes
 * (output features) of a plan for one sample. Valid after a successful load. */
cnd_shape_t cnd_onnx_input_shape(const cnd_onnx_t *g);
int cnd_onnx_classes(const cnd_onnx_t *g);
/* The default-domain opset the model imports. */
int cnd_onnx_opset(const cnd_onnx_t *g);
/* Node count, and the op type of each (for listings). */
int cnd_onnx_node_count(const cnd_onnx_t *g);

/* Plans the graph for batches of B samples (shapes, folding, buffers; allocates the arena).
 * Returns 0, CND_EFORMAT (a shape that does not fit, naming the node), CND_ERANGE (activations
 * over CND_ONNX_ARENA_MAX) or CND_ENOMEM. cnd_onnx_run plans by itself when needed. */
CND_MUST_USE int cnd_onnx_plan(cnd_onnx_t *g, int B);

/* Floats of activation memory the plan for B samples needs, without allocating it (for the
 * fuzz target and --json info). Returns 0 or the codes of cnd_onnx_plan. */
CND_MUST_USE int cnd_onnx_plan_size(cnd_onnx_t *g, int B, size_t *floats);

/* Runs B samples x (B x input size, already preprocessed as the model expects) and sets *logits
 * to an internal B x classes buffer valid until the next run. Returns 0 or a plan error. */
CND_MUST_USE int cnd_onnx_run(cnd_onnx_t *g, const float *x, int B, const float **logits);

/* Input preprocessing an imported model expects: x_model = (x_raw * scale - mean[c]) / std[c].
 * Parsed from "scale=1/255 mean=0.5,0.5,0.5 std=0.25" (space- or semicolon-separated; one value
 * for mean or std applies to every channel). */
typedef struct {
    double scale;      /* > 0 */
    int n_mean, n_std; /* values given (0, 1 or C) */
    double mean[256];  /* per channel */
    double std[256];   /* per channel, > 0 */
} cnd_onnx_prep_t;

/* Parses `spec` (NULL or "" means scale 1, mean 0, std 1). Returns 0 or CND_EINVAL naming the
 * token. */
CND_MUST_USE int cnd_onnx_prep_parse(cnd_onnx_prep_t *p, const char *spec);
/* The same as a .cnd normalisation (x_raw - mean') / std' for C channels: mean' = mean / scale,
 * std' = std / scale. Returns 0 or CND_EINVAL (a count that is neither 1 nor C). */
CND_MUST_USE int cnd_onnx_prep_norm(const cnd_onnx_prep_t *p, int C, float *mean, float *std);

/* Teacher logits for n raw samples (n x input size): preprocessing p is applied to a batch-
 * sized copy, the graph run batch by batch. *logits is n x classes, caller frees. Returns 0,
 * CND_EINVAL (shapes or classes do not match, named) or a run error. */
CND_MUST_USE int cnd_onnx_logits(float **logits, cnd_onnx_t *g, const cnd_onnx_prep_t *p,
                                 const float *raw, size_t n, cnd_shape_t shape, int batch);

/* True when `path` names an ONNX model (ends in .onnx), as the commands taking a teacher decide. */
int cnd_onnx_is_onnx(const char *path);

/* A teacher's logits over the raw samples of `raw`, once (distill, quantize --teacher): loads the
 * ONNX model at `path`, parses `prep_spec` (cnd_onnx_prep_parse) and checks that the model has
 * `classes` outputs and at least the data's classes. *logits is raw->n x classes, caller frees.
 * Returns 0, CND_EINVAL (naming the mismatch), or a load or run error. */
CND_MUST_USE int cnd_onnx_teacher_logits(float **logits, const char *path, const char *prep_spec,
                                         const cnd_dataset_t *raw, int classes);

/* An ONNX teacher received from elsewhere (`job create --teacher X.onnx` at the coordinator, the
 * shipped teacher at a site), checked whole before it is stored or used (onnx_teacher.c). */
#define CND_ONNX_TEACHER_BATCH 256 /* samples per run when teacher logits are computed */
typedef struct {
    cnd_shape_t in;            /* per-sample input (C, H, W) */
    int classes;               /* outputs */
    int opset, nodes;          /* for messages */
    size_t mem_bytes;          /* the graph (about the file's size) plus the activations and
                                  scratch of a CND_ONNX_TEACHER_BATCH run */
    float mean[256], std[256]; /* the preprocessing as a .cnd normalisation, in.c channels */
} cnd_onnx_teacher_info_t;

/* Loads the model from `data` (`name` in messages) as cnd_onnx_load_mem does, parses prep_spec
 * and checks that it fits the model's channels, plans a CND_ONNX_TEACHER_BATCH run (refused
 * when the graph and that run would need over max_bytes: sizes are computed before anything is
 * allocated for activations), and runs one sample of zeros through it: the logits must be
 * finite. Returns 0 with *info filled, CND_EFORMAT (not a model we run, named), CND_EINVAL (the
 * spec, or 1 or over 256 classes or input channels), CND_ERANGE (max_bytes) or CND_ENOMEM. */
CND_MUST_USE int cnd_onnx_teacher_check(cnd_onnx_teacher_info_t *info, const uint8_t *data,
                                        size_t len, const char *name, const char *prep_spec,
                                        size_t max_bytes);

/* A graph whose computed nodes map onto layers the trainer knows (Conv with any groups, Relu,
 * Clip(0, 6), HardSwish or HardSigmoid(1/6, 1/2) times its input, Tanh, MaxPool, AveragePool,
 * GlobalAveragePool, Flatten, Gemm/MatMul(+Add), BatchNormalization, an Add of two computed
 * tensors, a Concat on channels, with Identity/Dropout skipped) as a .cnd graph model with the
 * same wiring and weights (onnx_student.c). Returns 0 and an owned model, CND_EPERM (naming the
 * first node and op that cannot be trained, and why) or CND_ENOMEM. */
CND_MUST_USE int cnd_onnx_to_model(cnd_model_t **out, cnd_onnx_t *g);

/* The float model m as an ONNX graph (opset 13; onnx_export.c says how each layer maps). The
 * graph expects normalised inputs as the .cnd network does; the normalisation is in its
 * metadata_props. *out is owned by the caller. Returns 0 or CND_ENOMEM. */
CND_MUST_USE int cnd_onnx_export(const cnd_model_t *m, uint8_t **out, size_t *len);

/* An integer artifact (its bytes, already validated by the runtime loader) as an int8 ONNX graph
 * (opset 13; onnx_export_q.c): QDQ operators around our integer weights, scales and zero points,
 * or with `exact` integer operators and the runtime's own requantization, giving its bits. The
 * input is raw uint8 (N, C, H, W) mapped by the artifact's LUT. *out is owned by the caller.
 * Returns 0, CND_EINVAL (an op without an ONNX form, named), CND_EFORMAT or CND_ENOMEM. */
CND_MUST_USE int cnd_onnx_export_q(const uint8_t *art, size_t len, int exact, uint8_t **out,
                                   size_t *olen);

#endif
