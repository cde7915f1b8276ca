/*
 * onnx_internal.h: the graph the ONNX loader builds and the planner and kernels share
 * (onnx_graph.h says who does what). Not for use outside compress/onnx_*.c.
 *
 * Values are tensors named in the file: the graph input, initializers, Constant outputs and
 * every node output. A value is either known before any input arrives (initializers,
 * constants, and whatever the planner folds from them; data in `f` or `i`) or computed at run
 * time in the arena (`off`). Nodes are stored in topological order after loading.
 */
#ifndef CND_ONNX_INTERNAL_H
#define CND_ONNX_INTERNAL_H

#include "onnx_graph.h"

typedef enum {
    OP_CONV,
    OP_GEMM,
    OP_MATMUL,
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_RELU,
    OP_CLIP,
    OP_LEAKYRELU,
    OP_SIGMOID,
    OP_HARDSIGMOID,
    OP_HARDSWISH,
    OP_TANH,
    OP_MAXPOOL,
    OP_AVGPOOL,
    OP_GAP,
    OP_BATCHNORM,
    OP_FLATTEN,
    OP_RESHAPE,
    OP_TRANSPOSE,
    OP_CONCAT,
    OP_SQUEEZE,
    OP_UNSQUEEZE,
    OP_SOFTMAX,
    OP_IDENTITY,
    OP_DROPOUT,
    OP_CONSTANT,
    OP_SHAPE,
    OP_GATHER,
    OP_CAST,
    OP_COUNT
} s_op_t;

/* The op types we run, indexed by s_op_t; with the opsets that introduced the version we
 * implement, for messages. */
extern const char *const cnd_onnx_op_names[OP_COUNT];

typedef struct {
    char *name;
    int is_int;                      /* element type int64 (else float32) */
    int rank;                        /* set by the plan (or load, for known values) */
    int64_t dims[CND_ONNX_MAX_RANK]; /* shape */
    int64_t n;                       /* elements */
    float *f;                        /* known float data, or NULL */
    int64_t *i;                      /* known int64 data, or NULL */
    int is_static;                   /* data from the file (initializer, Constant): kept */
    int producer;                    /* node index, -1 for the input and initializers */
    int is_input;                    /* the graph input */
    /* plan */
    int known;      /* data available at plan time */
    int alias;      /* value whose buffer this one shares (-1: none) */
    int last_use;   /* last node reading it (through aliases: of the buffer's owner) */
    size_t off;     /* offset in the arena, runtime values */
    int fused_away; /* the Relu folded into its Conv: shares the conv's output */
    int on_input;   /* the graph input or a view of it: the caller's buffer */
} s_value_t;

typedef struct {
    s_op_t op;
    char *name; /* node name or "#index" */
    int n_in, n_out;
    int *in, *out; /* value indices; -1 for an omitted optional input */
    /* attributes (only the op's own are set; defaults filled at load) */
    int64_t kernel[2], strides[2], pads[4], dil[2], group;
    int auto_pad; /* 0 NOTSET/VALID by pads, 1 SAME_UPPER, 2 SAME_LOWER, 3 VALID */
    int ceil_mode, count_include_pad, trans_a, trans_b, to;
    int has_kernel, has_axes;
    float alpha, beta, eps;
    int64_t axis;
    int64_t axes[CND_ONNX_MAX_RANK];
    int n_axes;
    int64_t perm[CND_ONNX_MAX_RANK];
    int n_perm;
    int64_t shape_start, shape_end; /* Shape (opset 15) */
    /* plan */
    int folded;        /* computed at plan time */
    int is_alias;      /* output shares the input's buffer */
    int fuse_relu;     /* Conv: the following Relu applied inside */
    float *packed;     /* Conv: per-group [W | bias] blocks; BatchNorm: scale then shift (C each) */
    cnd_layer_t layer; /* Conv fast path: the training layer of one group */
    int fast;          /* Conv: 1 through layer_conv2d.c, 2 pointwise sgemm, 0 direct */
    float clip_lo, clip_hi;
} s_node_t;

struct cnd_onnx {
    char *path;   /* for messages */
    int opset;    /* default domain */
    s_value_t *v; /* values */
    int n_v, cap_v;
    s_node_t *nodes; /* topological order */
    int n_nodes;
    int input, output;    /* value indices */
    int64_t decl_batch;   /* the input's dimension 0 in the file, or -1 when symbolic */
    int64_t static_elems; /* elements of the file's initializers and Constants */
    cnd_shape_t in_shape;
    int in_rank; /* 2 or 4 */
    int classes;
    /* plan */
    int plan_B, plan_threads; /* 0: no plan */
    size_t arena_floats, work_floats;
    float *arena, *work;
    const float *x; /* the input of the run in progress */
};

/* "FILE: node 'NAME' (OP, opset N): " prefix for a node's errors. */
int cnd_onnx_node_err(const cnd_onnx_t *g, const s_node_t *n, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* onnx_plan.c: shapes and folding for batch B (no arena) / allocation. */
int cnd_onnx_plan_shapes(cnd_onnx_t *g, int B);
void cnd_onnx_plan_free(cnd_onnx_t *g);

/* onnx_ops.c: runs one node (not folded, not an alias) over the arena. */
void cnd_onnx_exec(cnd_onnx_t *g, s_node_t *n, int B);
/* Folds a node whose inputs are known (onnx_ops.c): fills its outputs' data. Returns 0,
 * CND_EFORMAT or CND_ENOMEM. */
int cnd_onnx_fold(cnd_onnx_t *g, s_node_t *n);
/* Direct convolution (reference, and the path for depthwise/dilated/irregular convolutions). */
void cnd_onnx_conv_direct(const cnd_onnx_t *g, const s_node_t *n, float *y, const float *x,
                          const float *w, const float *bias, int B);

/* Data of a value during a run: known data, or its place in the arena. */
static inline float *cnd_onnx_data(const cnd_onnx_t *g, int vi)
{
    const s_value_t *v = &g->v[vi];
    return v->known ? v->f : v->on_input ? (float *)g->x : g->arena + v->off;
}

#endif
