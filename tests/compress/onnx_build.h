/*
 * onnx_build.h: builds small ONNX models in tests with the protobuf-c code generated from the
 * official schema (compress/onnx.proto), so hostile variants (external data, cycles, sizes that
 * lie) can be written without an ONNX library. Used by test_onnx.c, which also writes the fuzz
 * target's seed corpus from them (test_onnx --write-corpus DIR).
 *
 *   ob_t b; ob_init(&b, 13, "x", 1, 1, 4, 4);          // opset, input name and (N, C, H, W)
 *   ob_init_f(&b, "w", dims, 4, data);                  // a float initializer
 *   Onnx__NodeProto *n = ob_node(&b, "Conv", "c1", ins, 2, outs, 1);
 *   ob_ints(n, "pads", (int64_t[]){1, 1, 1, 1}, 4);
 *   uint8_t *bytes; size_t len = ob_pack(&b, "y", &bytes);   // graph output "y"; free(bytes)
 *   ob_free(&b);
 *
 * Every allocation goes into b's list and is released by ob_free.
 */
#ifndef CND_ONNX_BUILD_H
#define CND_ONNX_BUILD_H

#include "onnx.pb-c.h"

#include <stdlib.h>
#include <string.h>

#define OB_MAX 256

typedef struct {
    Onnx__ModelProto m;
    Onnx__GraphProto g;
    Onnx__OperatorSetIdProto op;
    Onnx__OperatorSetIdProto *ops[1];
    Onnx__NodeProto *nodes[OB_MAX];
    Onnx__TensorProto *inits[OB_MAX];
    Onnx__ValueInfoProto *ins[1], *outs[1];
    void *allocs[8 * OB_MAX];
    int n_allocs;
} ob_t;

static inline void *ob_alloc(ob_t *b, size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p || b->n_allocs == 8 * OB_MAX) abort();
    b->allocs[b->n_allocs++] = p;
    return p;
}

static inline char *ob_str(ob_t *b, const char *s)
{
    char *p = ob_alloc(b, strlen(s) + 1);
    strcpy(p, s);
    return p;
}

/* A value info for a float tensor of rank nd (dims[0] < 0: a symbolic batch "N"). */
static inline Onnx__ValueInfoProto *ob_vi(ob_t *b, const char *name, const int64_t *dims, int nd)
{
    Onnx__ValueInfoProto *v = ob_alloc(b, sizeof *v);
    Onnx__TypeProto *t = ob_alloc(b, sizeof *t);
    Onnx__TypeProto__Tensor *tt = ob_alloc(b, sizeof *tt);
    Onnx__TensorShapeProto *sh = ob_alloc(b, sizeof *sh);
    *v = (Onnx__ValueInfoProto)ONNX__VALUE_INFO_PROTO__INIT;
    *t = (Onnx__TypeProto)ONNX__TYPE_PROTO__INIT;
    *tt = (Onnx__TypeProto__Tensor)ONNX__TYPE_PROTO__TENSOR__INIT;
    *sh = (Onnx__TensorShapeProto)ONNX__TENSOR_SHAPE_PROTO__INIT;
    v->name = ob_str(b, name);
    v->type = t;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sh;
    sh->n_dim = (size_t)nd;
    sh->dim = ob_alloc(b, sizeof *sh->dim * (size_t)nd);
    for (int i = 0; i < nd; i++) {
        Onnx__TensorShapeProto__Dimension *d = ob_alloc(b, sizeof *d);
        *d = (Onnx__TensorShapeProto__Dimension)ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
        if (dims[i] < 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = ob_str(b, "N");
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        sh->dim[i] = d;
    }
    return v;
}

static inline void ob_init(ob_t *b, int opset, const char *in, int64_t n, int64_t c, int64_t h,
                           int64_t w)
{
    memset(b, 0, sizeof *b);
    b->m = (Onnx__ModelProto)ONNX__MODEL_PROTO__INIT;
    b->g = (Onnx__GraphProto)ONNX__GRAPH_PROTO__INIT;
    b->op = (Onnx__OperatorSetIdProto)ONNX__OPERATOR_SET_ID_PROTO__INIT;
    b->m.has_ir_version = 1;
    b->m.ir_version = 8;
    b->op.domain = ob_str(b, "");
    b->op.has_version = 1;
    b->op.version = opset;
    b->ops[0] = &b->op;
    b->m.n_opset_import = 1;
    b->m.opset_import = b->ops;
    b->m.graph = &b->g;
    b->g.node = b->nodes;
    b->g.initializer = b->inits;
    int64_t d[4] = {n, c, h, w};
    b->ins[0] = h ? ob_vi(b, in, d, 4) : ob_vi(b, in, d, 2);
    b->g.n_input = 1;
    b->g.input = b->ins;
}

/* A float initializer (data may be NULL: zeros). */
static inline Onnx__TensorProto *ob_init_f(ob_t *b, const char *name, const int64_t *dims, int nd,
                                           const float *data)
{
    Onnx__TensorProto *t = ob_alloc(b, sizeof *t);
    *t = (Onnx__TensorProto)ONNX__TENSOR_PROTO__INIT;
    t->name = ob_str(b, name);
    t->n_dims = (size_t)nd;
    t->dims = ob_alloc(b, 8 * (size_t)nd);
    memcpy(t->dims, dims, 8 * (size_t)nd);
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)dims[i];
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->n_float_data = n;
    t->float_data = ob_alloc(b, n * sizeof(float));
    if (data) memcpy(t->float_data, data, n * sizeof(float));
    b->inits[b->g.n_initializer++] = t;
    return t;
}

static inline Onnx__TensorProto *ob_init_i(ob_t *b, const char *name, const int64_t *vals, int n)
{
    Onnx__TensorProto *t = ob_alloc(b, sizeof *t);
    *t = (Onnx__TensorProto)ONNX__TENSOR_PROTO__INIT;
    t->name = ob_str(b, name);
    t->n_dims = 1;
    t->dims = ob_alloc(b, 8);
    t->dims[0] = n;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    t->n_int64_data = (size_t)n;
    t->int64_data = ob_alloc(b, 8 * (size_t)n);
    memcpy(t->int64_data, vals, 8 * (size_t)n);
    b->inits[b->g.n_initializer++] = t;
    return t;
}

static inline Onnx__NodeProto *ob_node(ob_t *b, const char *op, const char *name,
                                       const char *const *in, int nin, const char *const *out,
                                       int nout)
{
    Onnx__NodeProto *n = ob_alloc(b, sizeof *n);
    *n = (Onnx__NodeProto)ONNX__NODE_PROTO__INIT;
    n->op_type = ob_str(b, op);
    n->name = ob_str(b, name);
    n->n_input = (size_t)nin;
    n->input = ob_alloc(b, sizeof(char *) * (size_t)nin);
    for (int i = 0; i < nin; i++) n->input[i] = ob_str(b, in[i]);
    n->n_output = (size_t)nout;
    n->output = ob_alloc(b, sizeof(char *) * (size_t)nout);
    for (int i = 0; i < nout; i++) n->output[i] = ob_str(b, out[i]);
    n->attribute = ob_alloc(b, sizeof(Onnx__AttributeProto *) * 8);
    b->nodes[b->g.n_node++] = n;
    return n;
}

static inline Onnx__AttributeProto *ob_attr(ob_t *b, Onnx__NodeProto *n, const char *name,
                                            Onnx__AttributeProto__AttributeType type)
{
    Onnx__AttributeProto *a = ob_alloc(b, sizeof *a);
    *a = (Onnx__AttributeProto)ONNX__ATTRIBUTE_PROTO__INIT;
    a->name = ob_str(b, name);
    a->has_type = 1;
    a->type = type;
    n->attribute[n->n_attribute++] = a;
    return a;
}

static inline void ob_ints(ob_t *b, Onnx__NodeProto *n, const char *name, const int64_t *v, int k)
{
    Onnx__AttributeProto *a = ob_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = (size_t)k;
    a->ints = ob_alloc(b, 8 * (size_t)k);
    memcpy(a->ints, v, 8 * (size_t)k);
}

static inline void ob_int(ob_t *b, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = ob_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
}

static inline void ob_float(ob_t *b, Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a = ob_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
}

/* Packs the model with graph output `out` (dims unknown). Returns the length; *bytes is owned
 * by the caller. */
static inline size_t ob_pack(ob_t *b, const char *out, uint8_t **bytes)
{
    b->outs[0] = ob_vi(b, out, (int64_t[]){-1, 1}, 2);
    b->g.n_output = 1;
    b->g.output = b->outs;
    size_t len = onnx__model_proto__get_packed_size(&b->m);
    *bytes = malloc(len + 1);
    if (!*bytes) abort();
    onnx__model_proto__pack(&b->m, *bytes);
    return len;
}

static inline void ob_free(ob_t *b)
{
    for (int i = 0; i < b->n_allocs; i++) free(b->allocs[i]);
    b->n_allocs = 0;
}

#endif
