/*
 * onnx_student.c: what an imported ONNX model needs around the engine: the input
 * preprocessing it expects (scale, per-channel mean and std, written into a .cnd as its
 * normalisation), teacher logits over a dataset, and the mapping of a graph onto the trainable
 * layers of a .cnd graph model (onnx_graph.h, docs/layers.md).
 *
 * The mapping walks the planned graph's computed nodes in topological order; each becomes one
 * layer with the same arithmetic, reading the layers that compute its inputs (the model input
 * is -1), so branches and merges keep their shape: Conv (square kernel, equal strides, one
 * symmetric pad, no dilation; groups give a grouped or depthwise conv2d) -> conv2d, Relu ->
 * relu, Clip(0, 6) -> relu6, HardSwish, or a HardSigmoid(1/6, 1/2) whose only reader is a Mul
 * by its input (PyTorch's opset-13 hardswish, and our export's) -> hardswish, Tanh -> tanh,
 * MaxPool/AveragePool (square, no padding) -> maxpool/avgpool, GlobalAveragePool -> gap,
 * Flatten or a Reshape to (N, -1) -> flatten, Gemm (alpha = beta = 1, no transA) or MatMul with
 * a constant (K, N) matrix -> dense, with an Add of a constant vector to its output (nothing
 * else reading that) as its bias, BatchNormalization -> batchnorm, an Add of two computed
 * tensors of one shape -> add, a Concat on channels of k computed tensors -> k - 1 concats;
 * Identity and Dropout vanish, and so do nodes the graph output does not depend on. The first node
 * that does not map is named in the refusal. Each layer's per-sample output size is checked against
 * the graph's, so a mapping that computed something else could not pass silently (and `import`
 * compares the logits before writing).
 */
#include "onnx_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- preprocessing ---- */

static int s_numbers(const char *v, double *out, int max, const char *key)
{
    int n = 0;
    const char *p = v;
    while (*p) {
        char *end;
        double num = strtod(p, &end);
        if (end == p)
            return cnd_errf(CND_EINVAL, "preprocessing: '%s=%s' is not a list of numbers", key, v);
        if (*end == '/') { /* a fraction such as 1/255 */
            const char *q = end + 1;
            double den = strtod(q, &end);
            if (end == q || den == 0.0)
                return cnd_errf(CND_EINVAL, "preprocessing: bad fraction in '%s=%s'", key, v);
            num /= den;
        }
        if (n == max)
            return cnd_errf(CND_EINVAL, "preprocessing: '%s' has over %d values", key, max);
        out[n++] = num;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return cnd_errf(CND_EINVAL, "preprocessing: '%s=%s': expected ',' at '%s'", key, v, p);
    }
    if (!n) return cnd_errf(CND_EINVAL, "preprocessing: '%s' has no value", key);
    return n;
}

int cnd_onnx_prep_parse(cnd_onnx_prep_t *p, const char *spec)
{
    memset(p, 0, sizeof *p);
    p->scale = 1.0;
    if (!spec) return 0;
    char buf[4096];
    if (strlen(spec) >= sizeof buf) return cnd_errf(CND_EINVAL, "preprocessing: too long");
    strcpy(buf, spec);
    for (char *save = NULL, *tok = strtok_r(buf, " ;", &save); tok;
         tok = strtok_r(NULL, " ;", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return cnd_errf(CND_EINVAL, "preprocessing: '%s' is not KEY=VALUE (scale, mean, std)",
                            tok);
        *eq = 0;
        const char *key = tok, *val = eq + 1;
        double one[1] = {0};
        int n;
        if (!strcmp(key, "scale")) {
            if ((n = s_numbers(val, one, 1, key)) < 0) return n;
            if (!(one[0] > 0.0) || one[0] > 1e6)
                return cnd_errf(CND_EINVAL, "preprocessing: scale must be in (0, 1e6]");
            p->scale = one[0];
        } else if (!strcmp(key, "mean")) {
            if ((n = s_numbers(val, p->mean, 256, key)) < 0) return n;
            p->n_mean = n;
        } else if (!strcmp(key, "std")) {
            if ((n = s_numbers(val, p->std, 256, key)) < 0) return n;
            for (int i = 0; i < n; i++)
                if (!(p->std[i] > 0.0))
                    return cnd_errf(CND_EINVAL, "preprocessing: std values must be > 0");
            p->n_std = n;
        } else {
            return cnd_errf(CND_EINVAL, "preprocessing: unknown key '%s' (scale, mean, std)", key);
        }
    }
    return 0;
}

int cnd_onnx_prep_norm(const cnd_onnx_prep_t *p, int C, float *mean, float *std)
{
    if ((p->n_mean > 1 && p->n_mean != C) || (p->n_std > 1 && p->n_std != C))
        return cnd_errf(CND_EINVAL,
                        "preprocessing: %d mean and %d std values for %d channels "
                        "(give 1 or %d)",
                        p->n_mean, p->n_std, C, C);
    for (int c = 0; c < C; c++) {
        double m = p->n_mean ? p->mean[p->n_mean > 1 ? c : 0] : 0.0;
        double s = p->n_std ? p->std[p->n_std > 1 ? c : 0] : 1.0;
        mean[c] = (float)(m / p->scale); /* (x*scale - m)/s = (x - m/scale)/(s/scale) */
        std[c] = (float)(s / p->scale);
    }
    return 0;
}

int cnd_onnx_logits(float **logits, cnd_onnx_t *g, const cnd_onnx_prep_t *p, const float *raw,
                    size_t n, cnd_shape_t shape, int batch)
{
    *logits = NULL;
    cnd_shape_t in = g->in_shape;
    size_t d = cnd_shape_size(in);
    if (cnd_shape_size(shape) != d)
        return cnd_errf(CND_EINVAL, "%s expects %dx%dx%d inputs, the data has %dx%dx%d", g->path,
                        in.c, in.h, in.w, shape.c, shape.h, shape.w);
    float mean[256], std[256];
    if (in.c > 256) return cnd_errf(CND_EINVAL, "%s: over 256 input channels", g->path);
    int rc = cnd_onnx_prep_norm(p, in.c, mean, std);
    if (rc) return rc;
    size_t K = (size_t)g->classes, hw = d / (size_t)in.c;
    float *out = malloc((n ? n : 1) * K * sizeof(float));
    float *x = malloc((size_t)batch * d * sizeof(float));
    if (!out || !x) {
        free(out);
        free(x);
        return CND_ENOMEM;
    }
    for (size_t s0 = 0; s0 < n; s0 += (size_t)batch) {
        int B = (int)(n - s0 < (size_t)batch ? n - s0 : (size_t)batch);
        for (int b = 0; b < B; b++)
            for (int c = 0; c < in.c; c++) {
                size_t o = ((size_t)b * in.c + c) * hw;
                const float *r = raw + (s0 + b) * d + (size_t)c * hw;
                for (size_t i = 0; i < hw; i++) x[o + i] = (r[i] - mean[c]) / std[c];
            }
        const float *lg;
        if ((rc = cnd_onnx_run(g, x, B, &lg))) break;
        memcpy(out + s0 * K, lg, (size_t)B * K * sizeof(float));
    }
    free(x);
    if (rc)
        free(out);
    else
        *logits = out;
    return rc;
}

int cnd_onnx_is_onnx(const char *path)
{
    size_t n = strlen(path);
    return n >= 5 && strcmp(path + n - 5, ".onnx") == 0;
}

int cnd_onnx_teacher_logits(float **logits, const char *path, const char *prep_spec,
                            const cnd_dataset_t *raw, int classes)
{
    *logits = NULL;
    cnd_onnx_prep_t prep;
    cnd_onnx_t *g = NULL;
    int rc;
    if ((rc = cnd_onnx_prep_parse(&prep, prep_spec)) || (rc = cnd_onnx_load(&g, path))) return rc;
    if (cnd_onnx_classes(g) != classes || cnd_onnx_classes(g) < raw->n_classes)
        rc = cnd_errf(CND_EINVAL, "teacher %s has %d outputs; the student %d, the data %d classes",
                      path, cnd_onnx_classes(g), classes, raw->n_classes);
    else
        rc = cnd_onnx_logits(logits, g, &prep, raw->x, raw->n, raw->shape, 256);
    cnd_onnx_destroy(&g);
    return rc;
}

/* ---- students ---- */

#define S_NONE (-2) /* node_of: a value no layer computes (yet) */

/* Layer slots: one beyond the model's limit, where the layer that would not fit is made before
 * s_push refuses it. */
#define S_SLOTS (CND_SPEC_MAX_LAYERS + 1)

typedef struct {
    cnd_layer_t l[S_SLOTS];               /* type, parameters and sources (n_src, src) */
    const float *w[S_SLOTS], *b[S_SLOTS]; /* weights, bias / beta */
    const float *m[S_SLOTS], *v[S_SLOTS]; /* bn running stats */
    int transpose[S_SLOTS];               /* dense weight given as (K, N) */
    int64_t size[S_SLOTS];                /* per-sample output size in the graph */
    int n;                                /* layers so far */
    int *node_of; /* per value: the layer computing it, -1 the model input, else S_NONE */
    int *readers; /* per value: live computed nodes reading it */
    char *live;   /* per node: its outputs reach the graph output (else it is left out) */
    int B;        /* the batch the graph was planned for */
} s_net_t;

static int s_refuse(const cnd_onnx_t *g, const s_node_t *n, const char *why)
{
    return cnd_onnx_node_err(g, n, CND_EPERM, "cannot be imported as a trainable student: %s", why);
}

static const float *s_const(const cnd_onnx_t *g, const s_node_t *n, int j)
{
    if (j >= n->n_in || n->in[j] < 0) return NULL;
    const s_value_t *v = &g->v[n->in[j]];
    return v->known && !v->is_int ? v->f : NULL;
}

/* The inputs of n computed at run time (value indices in rt[], at most 8); returns their
 * count. */
static int s_runtime_inputs(const cnd_onnx_t *g, const s_node_t *n, int rt[8])
{
    int k = 0;
    for (int j = 0; j < n->n_in; j++)
        if (n->in[j] >= 0 && !g->v[n->in[j]].known) {
            if (k < 8) rt[k] = n->in[j];
            k++;
        }
    return k;
}

static int s_refuse_hardsigmoid(const cnd_onnx_t *g, const s_node_t *n)
{
    return s_refuse(g, n,
                    "a HardSigmoid maps only as half of a hardswish: attributes alpha = 1/6 "
                    "and beta = 1/2, read only by a Mul with its own input");
}

/* Sets *src to the layer computing value vi for node n (-1: the model input). */
static int s_src(const cnd_onnx_t *g, const s_net_t *c, const s_node_t *n, int vi, int *src)
{
    *src = c->node_of[vi];
    if (*src != S_NONE) return 0;
    /* only a HardSigmoid left for its Mul computes no layer: it was not followed by one */
    int p = g->v[vi].producer;
    if (p >= 0 && g->nodes[p].op == OP_HARDSIGMOID) return s_refuse_hardsigmoid(g, &g->nodes[p]);
    return s_refuse(g, n, "it reads a value no trainable layer computes");
}

static int s_same_shape(const s_value_t *a, const s_value_t *b)
{
    if (a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i]) return 0;
    return 1;
}

/* A HardSigmoid with alpha 1/6 and beta 1/2 read only by a Mul by its own input is, with that
 * Mul, a hardswish (PyTorch's opset-13 export of nn.Hardswish, and ours). */
static int s_hardsigmoid_ok(const cnd_onnx_t *g, const s_net_t *c, const s_node_t *hs)
{
    return hs->op == OP_HARDSIGMOID && fabsf(hs->alpha - 1.0f / 6.0f) <= 1e-6f &&
           hs->beta == 0.5f && c->readers[hs->out[0]] == 1 && hs->out[0] != g->output;
}

static int s_map_conv(const cnd_onnx_t *g, const s_node_t *n, s_net_t *c, cnd_layer_t *l)
{
    int k = c->n;
    if (n->kernel[0] != n->kernel[1] || n->strides[0] != n->strides[1] || n->dil[0] != 1 ||
        n->dil[1] != 1 || n->pads[0] != n->pads[1] || n->pads[0] != n->pads[2] ||
        n->pads[0] != n->pads[3])
        return s_refuse(g, n,
                        "conv2d layers have square kernels, one stride, one symmetric "
                        "pad and no dilation (attributes kernel_shape, strides, pads, dilations)");
    if (!(c->w[k] = s_const(g, n, 1))) return s_refuse(g, n, "the weight is not a constant");
    c->b[k] = s_const(g, n, 2);
    if (n->n_in > 2 && n->in[2] >= 0 && !c->b[k])
        return s_refuse(g, n, "the bias is not a constant");
    l->type = n->group > 1 ? CND_L_GCONV : CND_L_CONV2D;
    l->p.conv.groups = n->group > 1 ? (int)n->group : 0;
    l->p.conv.oc = (int)g->v[n->in[1]].dims[0];
    l->p.conv.k = (int)n->kernel[0];
    l->p.conv.stride = (int)n->strides[0];
    l->p.conv.pad = (int)n->pads[0];
    return 1;
}

static int s_map_dense(const cnd_onnx_t *g, const s_node_t *n, s_net_t *c, cnd_layer_t *l)
{
    int k = c->n;
    const s_value_t *wv = &g->v[n->in[1]];
    if (!(c->w[k] = s_const(g, n, 1)) || wv->rank != 2)
        return s_refuse(g, n, "the weight must be a constant matrix");
    if (g->v[n->in[0]].rank != 2) return s_refuse(g, n, "the input must be (N, features)");
    if (n->op == OP_GEMM &&
        (n->alpha != 1.0f || n->trans_a || (n->n_in > 2 && n->in[2] >= 0 && n->beta != 1.0f)))
        return s_refuse(g, n,
                        "dense layers need alpha = beta = 1 and transA = 0 (attributes alpha, "
                        "beta, transA)");
    c->transpose[k] = n->op == OP_MATMUL || !n->trans_b;
    c->b[k] = NULL;
    if (n->op == OP_GEMM && n->n_in > 2 && n->in[2] >= 0) {
        const s_value_t *cv = &g->v[n->in[2]];
        int64_t N = g->v[n->out[0]].dims[1];
        if (!(c->b[k] = s_const(g, n, 2)) || cv->n != N)
            return s_refuse(g, n, "the bias must be a constant vector of the output size");
    }
    l->type = CND_L_DENSE;
    l->p.dense.out = (int)g->v[n->out[0]].dims[1];
    return 1;
}

static int s_map_clip(const cnd_onnx_t *g, const s_node_t *n, cnd_layer_t *l)
{
    if (n->clip_lo == 0.0f && n->clip_hi == 6.0f) {
        l->type = CND_L_RELU6;
        return 1;
    }
    if (n->clip_lo == 0.0f && n->clip_hi >= 3.4e38f) {
        l->type = CND_L_RELU;
        return 1;
    }
    char why[160];
    snprintf(why, sizeof why,
             "Clip to [%g, %g]: only [0, 6] (relu6) and [0, no max] (relu) are layers "
             "(inputs min, max)",
             n->clip_lo, n->clip_hi);
    return s_refuse(g, n, why);
}

static int s_map_bn(const cnd_onnx_t *g, const s_node_t *n, s_net_t *c, cnd_layer_t *l)
{
    int k = c->n;
    c->w[k] = s_const(g, n, 1);
    c->b[k] = s_const(g, n, 2);
    c->m[k] = s_const(g, n, 3);
    c->v[k] = s_const(g, n, 4);
    if (!c->w[k] || !c->b[k] || !c->m[k] || !c->v[k])
        return s_refuse(g, n, "scale, bias, mean and variance must be constants");
    l->type = CND_L_BATCHNORM;
    l->p.bn.eps = n->eps;
    l->p.bn.momentum = 0.1f;
    return 1;
}

/* Maps node n, which reads one computed tensor (its input 0), onto layer c->l[c->n]: returns
 * 1 when it adds a layer, 0 when it vanishes. */
static int s_map(const cnd_onnx_t *g, const s_node_t *n, s_net_t *c)
{
    cnd_layer_t *l = &c->l[c->n];
    switch (n->op) {
    case OP_IDENTITY:
    case OP_DROPOUT: return 0;
    case OP_CONV: return s_map_conv(g, n, c, l);
    case OP_RELU: l->type = CND_L_RELU; return 1;
    case OP_CLIP: return s_map_clip(g, n, l);
    case OP_HARDSWISH: l->type = CND_L_HARDSWISH; return 1;
    case OP_TANH: l->type = CND_L_TANH; return 1;
    case OP_MAXPOOL:
    case OP_AVGPOOL:
        if (n->kernel[0] != n->kernel[1] || n->strides[0] != n->strides[1] || n->dil[0] != 1 ||
            n->dil[1] != 1 || n->pads[0] || n->pads[1] || n->pads[2] || n->pads[3] || n->ceil_mode)
            return s_refuse(g, n,
                            "pooling layers have square windows, one stride, no padding, no "
                            "dilation and no ceil_mode (attributes kernel_shape, strides, pads, "
                            "dilations, ceil_mode)");
        l->type = n->op == OP_MAXPOOL ? CND_L_MAXPOOL : CND_L_AVGPOOL;
        l->p.pool.k = (int)n->kernel[0];
        l->p.pool.stride = (int)n->strides[0];
        return 1;
    case OP_GAP: l->type = CND_L_GAP; return 1;
    case OP_FLATTEN:
    case OP_RESHAPE: {
        const s_value_t *o = &g->v[n->out[0]];
        if (o->rank != 2 || o->dims[0] != c->B)
            return s_refuse(g, n, "only a flatten to (N, features) maps to a layer");
        l->type = CND_L_FLATTEN;
        return 1;
    }
    case OP_BATCHNORM: return s_map_bn(g, n, c, l);
    case OP_GEMM:
    case OP_MATMUL: return s_map_dense(g, n, c, l);
    default: return s_refuse(g, n, "no trainable layer computes this op");
    }
}

/* Appends the layer c->l[c->n] (its type and parameters set) reading layers a (and b when
 * n_src is 2) as the one computing node n's output. */
static int s_push(const cnd_onnx_t *g, const s_node_t *n, s_net_t *c, int n_src, int a, int b)
{
    if (c->n == CND_SPEC_MAX_LAYERS) return s_refuse(g, n, "more layers than a model holds");
    cnd_layer_t *l = &c->l[c->n];
    l->n_src = n_src;
    l->src[0] = a;
    l->src[1] = b;
    c->size[c->n] = g->v[n->out[0]].n / c->B;
    c->node_of[n->out[0]] = c->n++;
    return 0;
}

/* Add: of two computed tensors of one shape, a residual add; of a constant vector to a dense
 * layer's output that nothing else reads, that layer's bias (MatMul + Add). */
static int s_map_add(const cnd_onnx_t *g, const s_node_t *n, s_net_t *c, const int *rt, int nrt)
{
    int a, b, rc;
    if (nrt == 2) {
        if (!s_same_shape(&g->v[rt[0]], &g->v[rt[1]]))
            return s_refuse(g, n, "an add of two tensors of different shapes (broadcasting)");
        if ((rc = s_src(g, c, n, rt[0], &a)) || (rc = s_src(g, c, n, rt[1], &b))) return rc;
        c->l[c->n].type = CND_L_ADD;
        return s_push(g, n, c, 2, a, b);
    }
    if ((rc = s_src(g, c, n, rt[0], &a))) return rc;
    const s_value_t *bias = &g->v[n->in[n->in[0] == rt[0] ? 1 : 0]];
    if (a >= 0 && c->l[a].type == CND_L_DENSE && !c->b[a] && c->readers[rt[0]] == 1 &&
        rt[0] != g->output && !bias->is_int && bias->n == c->l[a].p.dense.out &&
        (bias->rank == 1 || (bias->rank == 2 && bias->dims[0] == 1))) {
        c->b[a] = bias->f;
        c->node_of[n->out[0]] = a;
        return 0;
    }
    return s_refuse(g, n,
                    "an add of a constant that is not the bias of a dense layer (MatMul or "
                    "Gemm without bias, read by nothing else)");
}

/* Concat on channels of computed tensors: one concat layer per input after the first (the
 * channels of a then b, then of that and c, ...). */
static int s_map_concat(const cnd_onnx_t *g, const s_node_t *n, s_net_t *c, int nrt)
{
    const s_value_t *x = &g->v[n->in[0]];
    int64_t axis = n->axis < 0 ? n->axis + x->rank : n->axis;
    if (axis != 1 || (x->rank != 2 && x->rank != 4))
        return s_refuse(g, n, "only a concat on channels (attribute axis = 1) maps to a layer");
    if (nrt != n->n_in) return s_refuse(g, n, "a concat with a constant input");
    int a, b, rc;
    if ((rc = s_src(g, c, n, n->in[0], &a))) return rc;
    c->node_of[n->out[0]] = a; /* a concat of one input is that input */
    int64_t size = g->v[n->in[0]].n / c->B;
    for (int j = 1; j < n->n_in; j++) {
        if ((rc = s_src(g, c, n, n->in[j], &b))) return rc;
        memset(&c->l[c->n], 0, sizeof c->l[c->n]);
        c->l[c->n].type = CND_L_CONCAT;
        if ((rc = s_push(g, n, c, 2, a, b))) return rc;
        size += g->v[n->in[j]].n / c->B; /* the partial concats have no value of their own */
        c->size[c->n - 1] = size;
        a = c->n - 1;
    }
    return 0;
}

/* Maps one computed node (see s_graph). */
static int s_node(const cnd_onnx_t *g, const s_node_t *n, s_net_t *c)
{
    int rt[8], nrt = s_runtime_inputs(g, n, rt), a, rc;
    if (n->op == OP_ADD && (nrt == 1 || nrt == 2)) return s_map_add(g, n, c, rt, nrt);
    if (n->op == OP_CONCAT) return s_map_concat(g, n, c, nrt);
    if (n->op == OP_HARDSIGMOID) {
        if (nrt != 1 || !s_hardsigmoid_ok(g, c, n)) return s_refuse_hardsigmoid(g, n);
        return 0; /* its Mul makes the layer; s_src names it when no Mul does */
    }
    if (n->op == OP_MUL && nrt == 2) {
        int x = -1;
        for (int j = 0; j < 2; j++) {
            int p = g->v[rt[j]].producer;
            if (p >= 0 && s_hardsigmoid_ok(g, c, &g->nodes[p]) && g->nodes[p].in[0] == rt[1 - j])
                x = rt[1 - j];
        }
        if (x < 0)
            return s_refuse(g, n,
                            "a product of two computed tensors maps to no layer (only x * "
                            "HardSigmoid(x), a hardswish)");
        if ((rc = s_src(g, c, n, x, &a))) return rc;
        c->l[c->n].type = CND_L_HARDSWISH;
        return s_push(g, n, c, 1, a, 0);
    }
    if (nrt != 1 || n->in[0] != rt[0])
        return s_refuse(g, n,
                        nrt > 1 ? "several computed inputs where a layer reads one"
                                : "its first input must be the computed tensor");
    if ((rc = s_src(g, c, n, rt[0], &a))) return rc;
    memset(&c->l[c->n], 0, sizeof c->l[c->n]);
    if ((rc = s_map(g, n, c)) < 0) return rc;
    if (rc == 0) {
        c->node_of[n->out[0]] = a;
        return 0;
    }
    return s_push(g, n, c, 1, a, 0);
}

/* Walks the computed nodes in topological order, each becoming a layer reading the layers that
 * compute its inputs (or vanishing, or merging into the layer before it). */
static int s_graph(const cnd_onnx_t *g, s_net_t *c)
{
    for (int i = 0; i < g->n_v; i++) c->node_of[i] = S_NONE;
    c->node_of[g->input] = -1;
    /* Nodes whose outputs nothing on the way to the graph output reads are left out: the
     * logits do not depend on them, and a model's every node must be read. `needed` reuses
     * readers as a flag until the readers are counted. */
    c->readers[g->output] = 1;
    for (int k = g->n_nodes - 1; k >= 0; k--) {
        const s_node_t *n = &g->nodes[k];
        for (int j = 0; j < n->n_out && !c->live[k]; j++)
            c->live[k] = n->out[j] >= 0 && c->readers[n->out[j]];
        for (int j = 0; c->live[k] && j < n->n_in; j++)
            if (n->in[j] >= 0) c->readers[n->in[j]] = 1;
    }
    memset(c->readers, 0, ((size_t)g->n_v + 1) * sizeof(int));
    for (int k = 0; k < g->n_nodes; k++) {
        const s_node_t *n = &g->nodes[k];
        if (n->folded || !c->live[k]) continue;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0 && !g->v[n->in[j]].known) c->readers[n->in[j]]++;
    }
    for (int k = 0; k < g->n_nodes; k++) {
        const s_node_t *n = &g->nodes[k];
        if (n->folded || !c->live[k]) continue;
        int rc = s_node(g, n, c);
        if (rc < 0) return rc;
    }
    int last = c->node_of[g->output];
    if (last < 0) return cnd_errf(CND_EPERM, "%s: the graph computes nothing trainable", g->path);
    if (last != c->n - 1)
        return cnd_errf(CND_EPERM, "%s: the graph output is not computed by its last layer",
                        g->path);
    return 0;
}

/* The spec of the mapped layers: node j is referred to by its canonical name n<j>. */
static int s_spec(const s_net_t *c, char **out)
{
    size_t cap = (size_t)c->n * 112 + 1, len = 0;
    char *spec = malloc(cap);
    if (!spec) return CND_ENOMEM;
    spec[0] = 0;
    for (int i = 0; i < c->n; i++) {
        const cnd_layer_t *l = &c->l[i];
        char tok[64], a[16], b[16];
        cnd_layer_spec(l, tok, sizeof tok);
        snprintf(a, sizeof a, l->src[0] < 0 ? "input" : "n%d", l->src[0]);
        snprintf(b, sizeof b, l->src[1] < 0 ? "input" : "n%d", l->src[1]);
        if (l->n_src == 2)
            len +=
                (size_t)snprintf(spec + len, cap - len, "%s%s(@%s,@%s)", i ? " " : "", tok, a, b);
        else if (l->src[0] != i - 1)
            len += (size_t)snprintf(spec + len, cap - len, "%s@%s %s", i ? " " : "", a, tok);
        else
            len += (size_t)snprintf(spec + len, cap - len, "%s%s", i ? " " : "", tok);
    }
    *out = spec;
    return 0;
}

/* Copies the graph's weights into the model's layer i. */
static void s_copy(cnd_model_t *m, const s_net_t *c, int i)
{
    cnd_layer_t *l = &m->layers[i];
    float *p = m->params + l->param_off;
    if (l->type == CND_L_DENSE) {
        size_t N = (size_t)l->p.dense.out, K = cnd_shape_size(l->in);
        for (size_t o = 0; o < N; o++)
            for (size_t k = 0; k < K; k++)
                p[o * K + k] = c->transpose[i] ? c->w[i][k * N + o] : c->w[i][o * K + k];
        for (size_t o = 0; o < N; o++) p[N * K + o] = c->b[i] ? c->b[i][o] : 0.0f;
    } else if (l->type == CND_L_CONV2D || l->type == CND_L_GCONV) {
        memcpy(p, c->w[i], l->n_weights * sizeof(float));
        for (int o = 0; o < l->p.conv.oc; o++) p[l->n_weights + o] = c->b[i] ? c->b[i][o] : 0.0f;
    } else if (l->type == CND_L_BATCHNORM) {
        size_t C = (size_t)l->in.c;
        memcpy(p, c->w[i], C * sizeof(float));
        memcpy(p + C, c->b[i], C * sizeof(float));
        memcpy(m->state + l->state_off, c->m[i], C * sizeof(float));
        memcpy(m->state + l->state_off + C, c->v[i], C * sizeof(float));
    }
}

/* Builds the model of the mapped layers and copies the weights, checking each layer's output
 * size against the graph's. */
static int s_build(cnd_model_t **out, const cnd_onnx_t *g, const s_net_t *c)
{
    char *spec = NULL;
    cnd_model_t *m = NULL;
    int rc = s_spec(c, &spec);
    if (rc) return rc;
    if ((rc = cnd_model_new(&m, spec, g->in_shape, 0))) {
        rc = cnd_errf(CND_EPERM, "%s: the layers '%s' do not build: %s", g->path, spec,
                      cnd_err_detail());
        goto done;
    }
    for (int i = 0; i < c->n; i++) {
        if ((int64_t)cnd_shape_size(m->layers[i].out) != c->size[i]) {
            rc =
                cnd_errf(CND_EPERM, "%s: layer %d (%s) gives %zu values per sample, the graph %lld",
                         g->path, i + 1, cnd_layer_ops(m->layers[i].type)->name,
                         cnd_shape_size(m->layers[i].out), (long long)c->size[i]);
            cnd_model_destroy(&m);
            goto done;
        }
        s_copy(m, c, i);
    }
    *out = m;
done:
    free(spec);
    return rc;
}

int cnd_onnx_to_model(cnd_model_t **out, cnd_onnx_t *g)
{
    *out = NULL;
    int rc = cnd_onnx_plan_shapes(g, 1);
    if (rc) return rc;
    size_t floats;
    if ((rc = cnd_onnx_plan_size(g, 1, &floats))) return rc;
    s_net_t *c = calloc(1, sizeof *c);
    if (!c) return CND_ENOMEM;
    c->B = 1;
    c->node_of = malloc(((size_t)g->n_v + 1) * sizeof(int));
    c->readers = calloc((size_t)g->n_v + 1, sizeof(int));
    c->live = calloc((size_t)g->n_nodes + 1, 1);
    if (!c->node_of || !c->readers || !c->live)
        rc = CND_ENOMEM;
    else if (!(rc = s_graph(g, c)))
        rc = s_build(out, g, c);
    free(c->node_of);
    free(c->readers);
    free(c->live);
    free(c);
    return rc;
}
