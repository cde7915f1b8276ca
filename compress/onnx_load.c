/*
 * onnx_load.c: an ONNX file into the checked graph of onnx_internal.h.
 *
 * The bytes are decoded by protobuf-c with the code generated from onnx.proto (the official
 * schema, kept beside this file); protobuf-c allocates no more than the message's own bytes
 * describe. Everything in the message is then untrusted: the opset must be 11-17 in the default
 * domain; every node's op must be one we run and every attribute one we understand, of the
 * right type and range; every initializer's declared element count must match the bytes it
 * holds (raw_data or typed fields) before its copy is allocated, and data stored outside the
 * file (data_location EXTERNAL) is refused; every name a node reads must come from the graph
 * input, an initializer or exactly one node; nodes are sorted topologically (Kahn) and a cycle
 * is refused naming a node on it. The protobuf message is freed before returning.
 */
#include "fileio.h"
#include "onnx.pb-c.h"
#include "onnx_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const cnd_onnx_op_names[OP_COUNT] = {"Conv",
                                                 "Gemm",
                                                 "MatMul",
                                                 "Add",
                                                 "Sub",
                                                 "Mul",
                                                 "Div",
                                                 "Relu",
                                                 "Clip",
                                                 "LeakyRelu",
                                                 "Sigmoid",
                                                 "HardSigmoid",
                                                 "HardSwish",
                                                 "Tanh",
                                                 "MaxPool",
                                                 "AveragePool",
                                                 "GlobalAveragePool",
                                                 "BatchNormalization",
                                                 "Flatten",
                                                 "Reshape",
                                                 "Transpose",
                                                 "Concat",
                                                 "Squeeze",
                                                 "Unsqueeze",
                                                 "Softmax",
                                                 "Identity",
                                                 "Dropout",
                                                 "Constant",
                                                 "Shape",
                                                 "Gather",
                                                 "Cast"};

int cnd_onnx_node_err(const cnd_onnx_t *g, const s_node_t *n, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cnd_errf(code, "%s: node '%s' (%s, opset %d): %s", g->path, n->name,
                    cnd_onnx_op_names[n->op], g->opset, msg);
}

/* ---- names -> value indices: open addressing over a power-of-two table ---- */

typedef struct {
    int *slot; /* value index + 1, 0 empty */
    size_t mask;
} s_names_t;

static uint64_t s_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int s_find(const cnd_onnx_t *g, const s_names_t *t, const char *name)
{
    for (size_t i = s_hash(name) & t->mask;; i = (i + 1) & t->mask) {
        if (!t->slot[i]) return -1;
        if (strcmp(g->v[t->slot[i] - 1].name, name) == 0) return t->slot[i] - 1;
    }
}

/* Adds a value named `name` (copied). Returns its index, -2 when the name exists, or -1 (out of
 * memory). */
static int s_add_value(cnd_onnx_t *g, s_names_t *t, const char *name)
{
    if (s_find(g, t, name) >= 0) return -2;
    if (g->n_v == g->cap_v) return -1; /* sized up front */
    s_value_t *v = &g->v[g->n_v];
    memset(v, 0, sizeof *v);
    v->name = strdup(name);
    if (!v->name) return -1;
    v->producer = -1;
    v->alias = -1;
    size_t i = s_hash(name) & t->mask;
    while (t->slot[i]) i = (i + 1) & t->mask;
    t->slot[i] = ++g->n_v;
    return g->n_v - 1;
}

/* ---- tensors ---- */

/* Element count of dims[0..nd), each in [0, CND_ONNX_VALUE_MAX], the product too; -1 if not. */
static int64_t s_count(const int64_t *dims, size_t nd)
{
    int64_t n = 1;
    for (size_t i = 0; i < nd; i++) {
        if (dims[i] < 0 || dims[i] > CND_ONNX_VALUE_MAX) return -1;
        n *= dims[i];
        if (n > CND_ONNX_VALUE_MAX) return -1;
    }
    return n;
}

/* Little-endian bytes to host values (the format's byte order). */
static void s_le_f32(float *d, const uint8_t *p, int64_t n)
{
    for (int64_t k = 0; k < n; k++, p += 4) {
        uint32_t u =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        memcpy(&d[k], &u, 4);
    }
}

static void s_le_i64(int64_t *d, const uint8_t *p, int64_t n, int width)
{
    for (int64_t k = 0; k < n; k++, p += width) {
        uint64_t u = 0;
        for (int b = width - 1; b >= 0; b--) u = u << 8 | p[b];
        if (width == 4)
            d[k] = (int32_t)(uint32_t)u;
        else if (width == 1)
            d[k] = (int64_t)(uint8_t)u;
        else
            d[k] = (int64_t)u;
    }
}

/* Copies tensor t (FLOAT, INT64, INT32 or BOOL) into value v as known static data. `what`
 * names it in errors ("initializer 'w'", "node 'c' attribute 'value'"). */
static int s_tensor(cnd_onnx_t *g, s_value_t *v, const Onnx__TensorProto *t, const char *what)
{
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return cnd_errf(CND_EFORMAT,
                        "%s: %s: data stored outside the file (data_location EXTERNAL) is refused; "
                        "save the model with its weights inside",
                        g->path, what);
    if (t->n_external_data)
        return cnd_errf(CND_EFORMAT, "%s: %s: external_data entries are refused", g->path, what);
    if (t->segment)
        return cnd_errf(CND_EFORMAT, "%s: %s: segmented tensors are refused", g->path, what);
    if (t->n_dims > CND_ONNX_MAX_RANK)
        return cnd_errf(CND_EFORMAT, "%s: %s: rank %zu over %d", g->path, what, t->n_dims,
                        CND_ONNX_MAX_RANK);
    int64_t n = s_count(t->dims, t->n_dims);
    if (n < 0)
        return cnd_errf(CND_EFORMAT, "%s: %s: dimensions negative or over %lld elements", g->path,
                        what, (long long)CND_ONNX_VALUE_MAX);
    int dt = t->has_data_type ? t->data_type : 0, width;
    size_t typed;
    switch (dt) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: width = 4, typed = t->n_float_data; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: width = 8, typed = t->n_int64_data; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: width = 4, typed = t->n_int32_data; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: width = 1, typed = t->n_int32_data; break;
    default:
        return cnd_errf(CND_EFORMAT,
                        "%s: %s: data type %d is not supported (float, int64, int32, "
                        "bool are)",
                        g->path, what, dt);
    }
    int raw = t->has_raw_data;
    size_t have = raw ? t->raw_data.len : typed;
    size_t want = raw ? (size_t)n * (size_t)width : (size_t)n;
    if (have != want)
        return cnd_errf(CND_EFORMAT, "%s: %s: %lld elements declared but %zu %s held", g->path,
                        what, (long long)n, have, raw ? "raw bytes" : "values");
    v->rank = (int)t->n_dims;
    for (size_t i = 0; i < t->n_dims; i++) v->dims[i] = t->dims[i];
    v->n = n;
    v->known = v->is_static = 1;
    g->static_elems += n;
    size_t alloc = (size_t)(n ? n : 1);
    if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
        if (!(v->f = malloc(alloc * sizeof(float)))) return CND_ENOMEM;
        if (raw)
            s_le_f32(v->f, t->raw_data.data, n);
        else if (n) /* float_data is NULL when empty */
            memcpy(v->f, t->float_data, (size_t)n * sizeof(float));
        return 0;
    }
    v->is_int = 1;
    if (!(v->i = malloc(alloc * sizeof(int64_t)))) return CND_ENOMEM;
    if (raw)
        s_le_i64(v->i, t->raw_data.data, n, width);
    else
        for (int64_t k = 0; k < n; k++)
            v->i[k] =
                dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? t->int64_data[k] : t->int32_data[k];
    return 0;
}

/* ---- ops and attributes ---- */

static int s_op_of(const char *type)
{
    for (int i = 0; i < OP_COUNT; i++)
        if (strcmp(type, cnd_onnx_op_names[i]) == 0) return i;
    return -1;
}

/* Attribute a of node n must have type `want`; else a refusal naming both. */
static int s_atype(const cnd_onnx_t *g, const s_node_t *n, const Onnx__AttributeProto *a, int want)
{
    int t = a->has_type ? (int)a->type : 0;
    if (t == want) return 0;
    return cnd_onnx_node_err(g, n, CND_EFORMAT, "attribute '%s' has type %d, expected %d", a->name,
                             t, want);
}

#define A_INT    ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT
#define A_INTS   ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS
#define A_FLOAT  ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT
#define A_FLOATS ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS
#define A_STRING ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING
#define A_TENSOR ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR

/* Copies ints attribute a into dst[max], refusing another count (exact > 0) or range. */
static int s_ints(const cnd_onnx_t *g, const s_node_t *n, const Onnx__AttributeProto *a,
                  int64_t *dst, int max, int exact, int64_t lo, int64_t hi, int *count)
{
    int rc = s_atype(g, n, a, A_INTS);
    if (rc) return rc;
    if ((int64_t)a->n_ints > max || (exact && (int)a->n_ints != exact))
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "attribute '%s' has %zu values, %s %d expected",
                                 a->name, a->n_ints, exact ? "exactly" : "at most",
                                 exact ? exact : max);
    for (size_t i = 0; i < a->n_ints; i++) {
        if (a->ints[i] < lo || a->ints[i] > hi)
            return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                     "attribute '%s' value %lld outside [%lld, %lld]", a->name,
                                     (long long)a->ints[i], (long long)lo, (long long)hi);
        dst[i] = a->ints[i];
    }
    if (count) *count = (int)a->n_ints;
    return 0;
}

static int s_int(const cnd_onnx_t *g, const s_node_t *n, const Onnx__AttributeProto *a, int64_t lo,
                 int64_t hi, int64_t *dst)
{
    int rc = s_atype(g, n, a, A_INT);
    if (rc) return rc;
    if (a->i < lo || a->i > hi)
        return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                 "attribute '%s' value %lld outside [%lld, %lld]", a->name,
                                 (long long)a->i, (long long)lo, (long long)hi);
    *dst = a->i;
    return 0;
}

static int s_float(const cnd_onnx_t *g, const s_node_t *n, const Onnx__AttributeProto *a,
                   float *dst)
{
    int rc = s_atype(g, n, a, A_FLOAT);
    if (rc) return rc;
    if (!(a->f == a->f) || a->f > 3.4e38f || a->f < -3.4e38f)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "attribute '%s' is not a finite number",
                                 a->name);
    *dst = a->f;
    return 0;
}

#define BIG 65536 /* largest kernel, stride, pad or dilation accepted */

/* Attributes of the pooling and convolution family. */
static int s_window_attr(const cnd_onnx_t *g, s_node_t *n, const Onnx__AttributeProto *a,
                         const char *nm)
{
    int64_t v = 0;
    int rc;
    if (strcmp(nm, "kernel_shape") == 0) {
        n->has_kernel = 1;
        return s_ints(g, n, a, n->kernel, 2, 2, 1, BIG, NULL);
    }
    if (strcmp(nm, "strides") == 0) return s_ints(g, n, a, n->strides, 2, 2, 1, BIG, NULL);
    if (strcmp(nm, "pads") == 0) return s_ints(g, n, a, n->pads, 4, 4, 0, BIG, NULL);
    if (strcmp(nm, "dilations") == 0 && n->op != OP_AVGPOOL)
        return s_ints(g, n, a, n->dil, 2, 2, 1, BIG, NULL);
    if (strcmp(nm, "auto_pad") == 0) {
        if ((rc = s_atype(g, n, a, A_STRING))) return rc;
        static const char *modes[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
        for (int m = 0; m < 4; m++)
            if (a->s.len == strlen(modes[m]) && memcmp(a->s.data, modes[m], a->s.len) == 0) {
                n->auto_pad = m;
                return 0;
            }
        return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                 "attribute 'auto_pad' is not one of NOTSET, "
                                 "SAME_UPPER, SAME_LOWER, VALID");
    }
    if (n->op == OP_CONV && strcmp(nm, "group") == 0) return s_int(g, n, a, 1, BIG, &n->group);
    if (n->op != OP_CONV && strcmp(nm, "ceil_mode") == 0) {
        if ((rc = s_int(g, n, a, 0, 1, &v))) return rc;
        n->ceil_mode = (int)v;
        return 0;
    }
    if (n->op == OP_AVGPOOL && strcmp(nm, "count_include_pad") == 0) {
        if ((rc = s_int(g, n, a, 0, 1, &v))) return rc;
        n->count_include_pad = (int)v;
        return 0;
    }
    if (n->op == OP_MAXPOOL && strcmp(nm, "storage_order") == 0) return s_int(g, n, a, 0, 0, &v);
    return 1; /* not one of these */
}

static int s_constant_attr(cnd_onnx_t *g, s_node_t *n, const Onnx__AttributeProto *a)
{
    if (n->n_out != 1 || n->out[0] < 0)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "needs one output");
    s_value_t *v = &g->v[n->out[0]];
    if (v->known) return cnd_onnx_node_err(g, n, CND_EFORMAT, "has more than one value attribute");
    int rc;
    char what[300];
    snprintf(what, sizeof what, "node '%.200s' attribute '%s'", n->name, a->name);
    if (strcmp(a->name, "value") == 0) {
        if ((rc = s_atype(g, n, a, A_TENSOR))) return rc;
        if (!a->t) return cnd_onnx_node_err(g, n, CND_EFORMAT, "attribute 'value' holds no tensor");
        return s_tensor(g, v, a->t, what);
    }
    int is_list = strcmp(a->name, "value_floats") == 0 || strcmp(a->name, "value_ints") == 0;
    int is_float = strcmp(a->name, "value_float") == 0 || strcmp(a->name, "value_floats") == 0;
    if (!is_list && strcmp(a->name, "value_float") != 0 && strcmp(a->name, "value_int") != 0)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "attribute '%s' is not supported", a->name);
    int want = is_float ? (is_list ? A_FLOATS : A_FLOAT) : (is_list ? A_INTS : A_INT);
    if ((rc = s_atype(g, n, a, want))) return rc;
    size_t cnt = is_list ? (is_float ? a->n_floats : a->n_ints) : 1;
    v->rank = is_list;
    v->dims[0] = (int64_t)cnt;
    v->n = (int64_t)cnt;
    v->known = v->is_static = 1;
    g->static_elems += (int64_t)cnt;
    v->is_int = !is_float;
    if (is_float) {
        if (!(v->f = malloc((cnt ? cnt : 1) * sizeof(float)))) return CND_ENOMEM;
        if (is_list && cnt)
            memcpy(v->f, a->floats, cnt * sizeof(float));
        else if (!is_list)
            v->f[0] = a->f;
    } else {
        if (!(v->i = malloc((cnt ? cnt : 1) * sizeof(int64_t)))) return CND_ENOMEM;
        if (is_list && cnt)
            memcpy(v->i, a->ints, cnt * sizeof(int64_t));
        else if (!is_list)
            v->i[0] = a->i;
    }
    return 0;
}

/* One attribute of node n; refuses names the op does not have in our opsets. */
static int s_attr(cnd_onnx_t *g, s_node_t *n, const Onnx__AttributeProto *a)
{
    const char *nm = a->name ? a->name : "";
    int64_t v = 0;
    int rc;
    if (a->ref_attr_name && a->ref_attr_name[0])
        return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                 "attribute '%s' refers to a function's "
                                 "attribute, which is refused in a main graph",
                                 nm);
    switch (n->op) {
    case OP_CONV:
    case OP_MAXPOOL:
    case OP_AVGPOOL:
        if ((rc = s_window_attr(g, n, a, nm)) <= 0) return rc;
        break;
    case OP_GEMM:
        if (strcmp(nm, "alpha") == 0) return s_float(g, n, a, &n->alpha);
        if (strcmp(nm, "beta") == 0) return s_float(g, n, a, &n->beta);
        if (strcmp(nm, "transA") == 0 || strcmp(nm, "transB") == 0) {
            if ((rc = s_int(g, n, a, 0, 1, &v))) return rc;
            *(nm[5] == 'A' ? &n->trans_a : &n->trans_b) = (int)v;
            return 0;
        }
        break;
    case OP_LEAKYRELU:
        if (strcmp(nm, "alpha") == 0) return s_float(g, n, a, &n->alpha);
        break;
    case OP_HARDSIGMOID:
        if (strcmp(nm, "alpha") == 0) return s_float(g, n, a, &n->alpha);
        if (strcmp(nm, "beta") == 0) return s_float(g, n, a, &n->beta);
        break;
    case OP_BATCHNORM:
        if (strcmp(nm, "epsilon") == 0) return s_float(g, n, a, &n->eps);
        if (strcmp(nm, "momentum") == 0) return s_float(g, n, a, &n->alpha); /* unused */
        if (strcmp(nm, "training_mode") == 0 && g->opset >= 14) return s_int(g, n, a, 0, 0, &v);
        break;
    case OP_FLATTEN:
    case OP_CONCAT:
    case OP_SOFTMAX:
    case OP_GATHER:
        if (strcmp(nm, "axis") == 0)
            return s_int(g, n, a, -CND_ONNX_MAX_RANK, CND_ONNX_MAX_RANK, &n->axis);
        break;
    case OP_RESHAPE:
        if (strcmp(nm, "allowzero") == 0 && g->opset >= 14) return s_int(g, n, a, 0, 0, &v);
        break;
    case OP_TRANSPOSE:
        if (strcmp(nm, "perm") == 0)
            return s_ints(g, n, a, n->perm, CND_ONNX_MAX_RANK, 0, 0, CND_ONNX_MAX_RANK - 1,
                          &n->n_perm);
        break;
    case OP_SQUEEZE:
    case OP_UNSQUEEZE:
        if (strcmp(nm, "axes") == 0 && g->opset < 13) {
            n->has_axes = 1;
            return s_ints(g, n, a, n->axes, CND_ONNX_MAX_RANK, 0, -CND_ONNX_MAX_RANK,
                          CND_ONNX_MAX_RANK, &n->n_axes);
        }
        break;
    case OP_DROPOUT:
        if (strcmp(nm, "seed") == 0) return s_int(g, n, a, INT64_MIN, INT64_MAX, &v);
        if (strcmp(nm, "ratio") == 0 && g->opset < 12) return s_float(g, n, a, &n->alpha);
        break;
    case OP_CONSTANT: return s_constant_attr(g, n, a);
    case OP_SHAPE:
        if (g->opset >= 15 && strcmp(nm, "start") == 0)
            return s_int(g, n, a, -8, 8, &n->shape_start);
        if (g->opset >= 15 && strcmp(nm, "end") == 0) return s_int(g, n, a, -8, 8, &n->shape_end);
        break;
    case OP_CAST:
        if (strcmp(nm, "to") == 0) {
            if ((rc = s_int(g, n, a, 1, 16, &v))) return rc;
            n->to = (int)v;
            return 0;
        }
        break;
    default: break;
    }
    return cnd_onnx_node_err(g, n, CND_EFORMAT, "attribute '%s' is not supported for this op", nm);
}

/* Defaults, then the node's attributes. */
static int s_node_attrs(cnd_onnx_t *g, s_node_t *n, const Onnx__NodeProto *p)
{
    n->strides[0] = n->strides[1] = 1;
    n->dil[0] = n->dil[1] = 1;
    n->group = 1;
    n->alpha = n->op == OP_LEAKYRELU ? 0.01f : n->op == OP_HARDSIGMOID ? 0.2f : 1.0f;
    n->beta = n->op == OP_HARDSIGMOID ? 0.5f : 1.0f;
    n->eps = 1e-5f;
    n->axis = n->op == OP_SOFTMAX ? (g->opset >= 13 ? -1 : 1) : n->op == OP_GATHER ? 0 : 1;
    n->shape_start = 0;
    n->shape_end = CND_ONNX_MAX_RANK + 1; /* "to the end" */
    n->to = -1;
    int seen_axis = 0;
    for (size_t i = 0; i < p->n_attribute; i++) {
        const Onnx__AttributeProto *a = p->attribute[i];
        if (n->op == OP_CONCAT && a->name && strcmp(a->name, "axis") == 0) seen_axis = 1;
        int rc = s_attr(g, n, a);
        if (rc) return rc;
    }
    if (n->op == OP_CONCAT && !seen_axis)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "attribute 'axis' is required");
    if (n->op == OP_CAST && n->to < 0)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "attribute 'to' is required");
    if (n->op == OP_CONSTANT && (n->out[0] < 0 || !g->v[n->out[0]].known))
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "has no value attribute");
    if ((n->op == OP_MAXPOOL || n->op == OP_AVGPOOL) && !n->has_kernel)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "attribute 'kernel_shape' is required");
    return 0;
}

/* ---- the model ---- */

static int s_opset(cnd_onnx_t *g, const Onnx__ModelProto *m)
{
    g->opset = -1;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        const char *d = o->domain ? o->domain : "";
        if (d[0] && strcmp(d, "ai.onnx") != 0) continue; /* nodes of other domains are refused */
        if (!o->has_version)
            return cnd_errf(CND_EFORMAT, "%s: opset import without a version", g->path);
        if (o->version < CND_ONNX_OPSET_MIN || o->version > CND_ONNX_OPSET_MAX)
            return cnd_errf(CND_EFORMAT, "%s: opset %lld is not supported (opsets %d-%d are)",
                            g->path, (long long)o->version, CND_ONNX_OPSET_MIN, CND_ONNX_OPSET_MAX);
        g->opset = (int)o->version;
    }
    if (g->opset < 0)
        return cnd_errf(CND_EFORMAT, "%s: the model imports no default-domain (ai.onnx) opset",
                        g->path);
    return 0;
}

/* The one graph input that is not an initializer: float, rank 2 or 4, static per-sample dims. */
static int s_input(cnd_onnx_t *g, const Onnx__GraphProto *gp, s_names_t *t)
{
    const Onnx__ValueInfoProto *in = NULL;
    for (size_t i = 0; i < gp->n_input; i++) {
        const char *nm = gp->input[i]->name ? gp->input[i]->name : "";
        int vi = s_find(g, t, nm);
        if (vi >= 0 && g->v[vi].is_static) continue; /* an initializer listed as input (IR < 4) */
        if (in)
            return cnd_errf(CND_EFORMAT,
                            "%s: the graph has several inputs ('%s', '%s'); one is "
                            "supported",
                            g->path, in->name, nm);
        in = gp->input[i];
    }
    if (!in) return cnd_errf(CND_EFORMAT, "%s: the graph has no input", g->path);
    const char *nm = in->name ? in->name : "";
    const Onnx__TypeProto *tp = in->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type ||
        !tp->tensor_type->has_elem_type ||
        tp->tensor_type->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return cnd_errf(CND_EFORMAT, "%s: input '%s' is not a float tensor", g->path, nm);
    const Onnx__TensorShapeProto *sh = tp->tensor_type->shape;
    if (!sh || (sh->n_dim != 2 && sh->n_dim != 4))
        return cnd_errf(CND_EFORMAT, "%s: input '%s' must have rank 2 (N, F) or 4 (N, C, H, W)",
                        g->path, nm);
    int64_t d[4] = {1, 1, 1, 1};
    g->decl_batch = -1;
    for (size_t i = 0; i < sh->n_dim; i++) {
        const Onnx__TensorShapeProto__Dimension *dm = sh->dim[i];
        int has = dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        if (i == 0) {
            if (has && dm->dim_value > 0) g->decl_batch = dm->dim_value;
            continue;
        }
        if (!has || dm->dim_value < 1 || dm->dim_value > 65536)
            return cnd_errf(CND_EFORMAT,
                            "%s: input '%s' dimension %zu must be a number in "
                            "[1, 65536]",
                            g->path, nm, i);
        d[i] = dm->dim_value;
    }
    if (d[1] * d[2] * d[3] > CND_ONNX_VALUE_MAX)
        return cnd_errf(CND_EFORMAT, "%s: input '%s' is too large", g->path, nm);
    g->in_rank = (int)sh->n_dim;
    g->in_shape = g->in_rank == 2 ? (cnd_shape_t){(int)d[1], 1, 1}
                                  : (cnd_shape_t){(int)d[1], (int)d[2], (int)d[3]};
    int vi = s_add_value(g, t, nm);
    if (vi < 0)
        return vi == -1 ? CND_ENOMEM
                        : cnd_errf(CND_EFORMAT,
                                   "%s: input '%s' is also an "
                                   "initializer",
                                   g->path, nm);
    g->v[vi].is_input = 1;
    g->input = vi;
    return 0;
}

/* Reads node p into n (op, inputs resolved later); creates its outputs' values. */
static int s_node(cnd_onnx_t *g, s_node_t *n, const Onnx__NodeProto *p, int idx, s_names_t *t,
                  char ***in_names)
{
    char nm[64];
    snprintf(nm, sizeof nm, "#%d", idx);
    n->name = strdup(p->name && p->name[0] ? p->name : nm);
    if (!n->name) return CND_ENOMEM;
    const char *type = p->op_type ? p->op_type : "";
    const char *dom = p->domain ? p->domain : "";
    int op = s_op_of(type);
    if (dom[0] && strcmp(dom, "ai.onnx") != 0)
        return cnd_errf(CND_EFORMAT, "%s: node '%s' (%s, opset %d): domain '%s' is not supported",
                        g->path, n->name, type, g->opset, dom);
    if (op < 0)
        return cnd_errf(CND_EFORMAT,
                        "%s: node '%s': op '%s' (opset %d) is not supported "
                        "(docs/onnx.md lists the ones that are)",
                        g->path, n->name, type, g->opset);
    n->op = (s_op_t)op;
    if (p->n_input > 1024 || p->n_output > 8 || p->n_output < 1)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "%zu inputs and %zu outputs", p->n_input,
                                 p->n_output);
    int max_out = n->op == OP_BATCHNORM ? 5 : n->op == OP_DROPOUT || n->op == OP_MAXPOOL ? 2 : 1;
    if ((int)p->n_output > max_out)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "%zu outputs, at most %d", p->n_output,
                                 max_out);
    if (!p->output[0] || !p->output[0][0])
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "the first output has no name");
    n->n_in = (int)p->n_input;
    n->n_out = (int)p->n_output;
    n->in = calloc((size_t)n->n_in + 1, sizeof(int));
    n->out = calloc((size_t)n->n_out, sizeof(int));
    if (!n->in || !n->out) return CND_ENOMEM;
    *in_names = p->input;
    for (int o = 0; o < n->n_out; o++) {
        const char *on = p->output[o] ? p->output[o] : "";
        if (!on[0]) {
            n->out[o] = -1;
            continue;
        }
        int vi = s_add_value(g, t, on);
        if (vi == -1) return CND_ENOMEM;
        if (vi == -2)
            return cnd_onnx_node_err(g, n, CND_EFORMAT, "output '%s' is already produced elsewhere",
                                     on);
        g->v[vi].producer = idx;
        n->out[o] = vi;
    }
    return s_node_attrs(g, n, p);
}

/* Kahn's algorithm over the node list: order[] gets the nodes in an order where every node
 * follows the producers of its inputs; a node left over sits on a cycle. */
static int s_toposort(cnd_onnx_t *g)
{
    int N = g->n_nodes, rc = CND_ENOMEM;
    int *indeg = calloc((size_t)N + 1, sizeof(int)), *order = malloc(((size_t)N + 1) * sizeof(int));
    int *start = calloc((size_t)N + 2, sizeof(int)), *succ = NULL;
    s_node_t *sorted = NULL;
    if (!indeg || !order || !start) goto done;
    size_t edges = 0;
    for (int k = 0; k < N; k++)
        for (int j = 0; j < g->nodes[k].n_in; j++) {
            int vi = g->nodes[k].in[j];
            if (vi >= 0 && g->v[vi].producer >= 0) {
                indeg[k]++;
                start[g->v[vi].producer + 1]++;
                edges++;
            }
        }
    for (int k = 0; k < N; k++) start[k + 1] += start[k];
    if (!(succ = malloc((edges + 1) * sizeof(int)))) goto done;
    int *fill = calloc((size_t)N + 1, sizeof(int));
    if (!fill) goto done;
    for (int k = 0; k < N; k++)
        for (int j = 0; j < g->nodes[k].n_in; j++) {
            int vi = g->nodes[k].in[j];
            if (vi >= 0 && g->v[vi].producer >= 0) {
                int p = g->v[vi].producer;
                succ[start[p] + fill[p]++] = k;
            }
        }
    free(fill);
    int head = 0, tail = 0;
    for (int k = 0; k < N; k++)
        if (!indeg[k]) order[tail++] = k;
    while (head < tail) {
        int k = order[head++];
        for (int e = start[k]; e < start[k + 1]; e++)
            if (--indeg[succ[e]] == 0) order[tail++] = succ[e];
    }
    if (tail < N) {
        for (int k = 0; k < N; k++)
            if (indeg[k]) {
                rc = cnd_onnx_node_err(g, &g->nodes[k], CND_EFORMAT,
                                       "the graph has a cycle through this node");
                goto done;
            }
    }
    if (!(sorted = malloc(((size_t)N + 1) * sizeof *sorted))) goto done;
    int *where = indeg; /* reuse: old index -> new */
    for (int k = 0; k < N; k++) {
        sorted[k] = g->nodes[order[k]];
        where[order[k]] = k;
    }
    for (int vi = 0; vi < g->n_v; vi++)
        if (g->v[vi].producer >= 0) g->v[vi].producer = where[g->v[vi].producer];
    free(g->nodes);
    g->nodes = sorted;
    rc = 0;
done:
    free(indeg);
    free(order);
    free(start);
    free(succ);
    return rc;
}

/* Every node input resolved to a value; the one graph output found. */
static int s_wire(cnd_onnx_t *g, const Onnx__GraphProto *gp, s_names_t *t, char ***names)
{
    for (int k = 0; k < g->n_nodes; k++) {
        s_node_t *n = &g->nodes[k];
        for (int j = 0; j < n->n_in; j++) {
            const char *nm = names[k][j] ? names[k][j] : "";
            if (!nm[0]) {
                n->in[j] = -1;
                continue;
            }
            int vi = s_find(g, t, nm);
            if (vi < 0)
                return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                         "input '%s' comes from no node, "
                                         "initializer or graph input (a missing initializer?)",
                                         nm);
            n->in[j] = vi;
        }
    }
    if (gp->n_output != 1)
        return cnd_errf(CND_EFORMAT,
                        "%s: the graph has %zu outputs; one (the logits) is "
                        "supported",
                        g->path, gp->n_output);
    const char *on = gp->output[0]->name ? gp->output[0]->name : "";
    g->output = s_find(g, t, on);
    if (g->output < 0)
        return cnd_errf(CND_EFORMAT, "%s: graph output '%s' is produced by nothing", g->path, on);
    return 0;
}

static int s_graph(cnd_onnx_t *g, const Onnx__ModelProto *m)
{
    const Onnx__GraphProto *gp = m->graph;
    if (!gp) return cnd_errf(CND_EFORMAT, "%s: the model holds no graph", g->path);
    if (gp->n_node > CND_ONNX_NODES_MAX)
        return cnd_errf(CND_EFORMAT, "%s: %zu nodes, over %d", g->path, gp->n_node,
                        CND_ONNX_NODES_MAX);
    if (gp->n_sparse_initializer)
        return cnd_errf(CND_EFORMAT, "%s: sparse initializers are refused", g->path);
    size_t outs = 0;
    for (size_t k = 0; k < gp->n_node; k++) outs += gp->node[k]->n_output;
    g->cap_v = (int)(outs + gp->n_initializer + 2);
    s_names_t t = {0};
    size_t tsz = 16;
    while (tsz < 2 * (size_t)g->cap_v) tsz <<= 1;
    t.mask = tsz - 1;
    char ***names = calloc(gp->n_node + 1, sizeof *names);
    t.slot = calloc(tsz, sizeof(int));
    g->v = calloc((size_t)g->cap_v, sizeof *g->v);
    g->nodes = calloc(gp->n_node + 1, sizeof *g->nodes);
    int rc = CND_ENOMEM;
    if (!names || !t.slot || !g->v || !g->nodes) goto done;
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *tp = gp->initializer[i];
        const char *nm = tp->name ? tp->name : "";
        int vi = s_add_value(g, &t, nm);
        if (vi == -1) goto done;
        char what[300];
        snprintf(what, sizeof what, "initializer '%.200s'", nm);
        if (vi == -2) {
            rc = cnd_errf(CND_EFORMAT, "%s: %s appears twice", g->path, what);
            goto done;
        }
        if ((rc = s_tensor(g, &g->v[vi], tp, what))) goto done;
    }
    if ((rc = s_input(g, gp, &t))) goto done;
    for (size_t k = 0; k < gp->n_node; k++) {
        g->n_nodes = (int)k + 1;
        if ((rc = s_node(g, &g->nodes[k], gp->node[k], (int)k, &t, &names[k]))) goto done;
    }
    if ((rc = s_wire(g, gp, &t, names))) goto done;
    rc = s_toposort(g);
done:
    free(names);
    free(t.slot);
    return rc;
}

int cnd_onnx_load_mem(cnd_onnx_t **out, const uint8_t *data, size_t len, const char *name)
{
    *out = NULL;
    cnd_onnx_t *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(name ? name : "model.onnx"))) {
        free(g);
        return CND_ENOMEM;
    }
    int rc;
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, data);
    if (!m) {
        rc = cnd_errf(CND_EFORMAT, "%s: not an ONNX model (the protobuf does not decode)", g->path);
        goto done;
    }
    if (m->n_functions || m->n_training_info) {
        rc = cnd_errf(CND_EFORMAT, "%s: model-local functions and training info are refused",
                      g->path);
        goto done;
    }
    if ((rc = s_opset(g, m)) || (rc = s_graph(g, m))) goto done;
    if ((rc = cnd_onnx_plan_shapes(g, 1))) goto done; /* shapes, classes: checked once here */
    if ((rc = cnd_onnx_plan_size(g, 1, &(size_t){0}))) goto done;
done:
    if (m) onnx__model_proto__free_unpacked(m, NULL);
    if (rc)
        cnd_onnx_destroy(&g);
    else
        *out = g;
    return rc;
}

int cnd_onnx_load(cnd_onnx_t **out, const char *path)
{
    *out = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = cnd_file_read(path, CND_ONNX_FILE_MAX, &buf, &len);
    if (rc) return rc;
    rc = cnd_onnx_load_mem(out, buf, len, path);
    free(buf);
    return rc;
}

void cnd_onnx_destroy(cnd_onnx_t **pg)
{
    if (!pg || !*pg) return;
    cnd_onnx_t *g = *pg;
    cnd_onnx_plan_free(g);
    for (int i = 0; i < g->n_v; i++) {
        free(g->v[i].name);
        free(g->v[i].f);
        free(g->v[i].i);
    }
    for (int k = 0; k < g->n_nodes; k++) {
        free(g->nodes[k].name);
        free(g->nodes[k].in);
        free(g->nodes[k].out);
        free(g->nodes[k].packed);
    }
    free(g->v);
    free(g->nodes);
    free(g->path);
    free(g);
    *pg = NULL;
}

cnd_shape_t cnd_onnx_input_shape(const cnd_onnx_t *g)
{
    return g->in_shape;
}

int cnd_onnx_classes(const cnd_onnx_t *g)
{
    return g->classes;
}

int cnd_onnx_opset(const cnd_onnx_t *g)
{
    return g->opset;
}

int cnd_onnx_node_count(const cnd_onnx_t *g)
{
    return g->n_nodes;
}
