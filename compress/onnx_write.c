/*
 * onnx_write.c: the pool and message builders of onnx_write.h. Tensors are written as
 * little-endian raw_data whatever the host, as the ONNX schema requires.
 */
#include "onnx_write.h"

#include "error.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_PROPS 8

void *cnd_onnxw_new(cnd_onnxw_t *e, size_t n)
{
    if (e->oom) return NULL;
    if (e->n == e->cap) {
        size_t c = e->cap ? 2 * e->cap : 256;
        void **q = realloc(e->p, c * sizeof *q);
        if (!q) {
            e->oom = 1;
            return NULL;
        }
        e->p = q;
        e->cap = c;
    }
    void *r = calloc(1, n ? n : 1);
    if (!r) {
        e->oom = 1;
        return NULL;
    }
    return e->p[e->n++] = r;
}

char *cnd_onnxw_str(cnd_onnxw_t *e, const char *s)
{
    char *r = cnd_onnxw_new(e, strlen(s) + 1);
    if (r) strcpy(r, s);
    return r;
}

int cnd_onnxw_begin(cnd_onnxw_t *e, size_t max_nodes, size_t max_inits)
{
    memset(e, 0, sizeof *e);
    Onnx__ModelProto *mp = cnd_onnxw_new(e, sizeof *mp);
    Onnx__GraphProto *g = cnd_onnxw_new(e, sizeof *g);
    Onnx__OperatorSetIdProto *op = cnd_onnxw_new(e, sizeof *op);
    Onnx__OperatorSetIdProto **ops = cnd_onnxw_new(e, sizeof *ops);
    if (!mp || !g || !op || !ops) return CND_ENOMEM;
    *mp = (Onnx__ModelProto)ONNX__MODEL_PROTO__INIT;
    *g = (Onnx__GraphProto)ONNX__GRAPH_PROTO__INIT;
    *op = (Onnx__OperatorSetIdProto)ONNX__OPERATOR_SET_ID_PROTO__INIT;
    e->mp = mp;
    e->g = g;
    e->cap_node = max_nodes;
    e->cap_init = max_inits;
    g->node = cnd_onnxw_new(e, sizeof *g->node * max_nodes);
    g->initializer = cnd_onnxw_new(e, sizeof *g->initializer * max_inits);
    g->input = cnd_onnxw_new(e, sizeof *g->input);
    g->output = cnd_onnxw_new(e, sizeof *g->output);
    mp->metadata_props = cnd_onnxw_new(e, sizeof *mp->metadata_props * S_MAX_PROPS);
    mp->has_ir_version = 1;
    mp->ir_version = 7; /* what opset 13 came with */
    mp->producer_name = cnd_onnxw_str(e, "condenser");
    mp->producer_version = cnd_onnxw_str(e, "0.1.0");
    op->domain = cnd_onnxw_str(e, "");
    op->has_version = 1;
    op->version = 13;
    ops[0] = op;
    mp->opset_import = ops;
    mp->n_opset_import = 1;
    mp->graph = g;
    g->name = cnd_onnxw_str(e, "condenser");
    return e->oom ? CND_ENOMEM : 0;
}

int cnd_onnxw_pack(cnd_onnxw_t *e, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (e->oom) return CND_ENOMEM;
    size_t n = onnx__model_proto__get_packed_size(e->mp);
    if (!(*out = malloc(n ? n : 1))) return CND_ENOMEM;
    *len = onnx__model_proto__pack(e->mp, *out);
    return 0;
}

void cnd_onnxw_end(cnd_onnxw_t *e)
{
    for (size_t i = 0; i < e->n; i++) free(e->p[i]);
    free(e->p);
    memset(e, 0, sizeof *e);
}

Onnx__TensorProto *cnd_onnxw_tensor(cnd_onnxw_t *e, const char *name, int type, const int64_t *dims,
                                    int nd, const void *data)
{
    size_t esize = type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? 8
                   : type == ONNX__TENSOR_PROTO__DATA_TYPE__INT8 ||
                           type == ONNX__TENSOR_PROTO__DATA_TYPE__UINT8
                       ? 1
                       : 4;
    Onnx__TensorProto *t = cnd_onnxw_new(e, sizeof *t);
    if (!t) return NULL;
    assert(e->g->n_initializer < e->cap_init);
    *t = (Onnx__TensorProto)ONNX__TENSOR_PROTO__INIT;
    t->name = cnd_onnxw_str(e, name);
    t->dims = cnd_onnxw_new(e, 8 * (size_t)nd);
    size_t n = 1;
    for (int i = 0; i < nd && t->dims; i++) n *= (size_t)(t->dims[i] = dims[i]);
    t->n_dims = (size_t)nd;
    t->has_data_type = 1;
    t->data_type = type;
    uint8_t *raw = cnd_onnxw_new(e, esize * n);
    if (!raw || !t->dims || !t->name) return NULL;
    const uint8_t *src = data;
    for (size_t i = 0; i < n; i++) { /* little-endian, whatever the host */
        uint64_t u = 0;
        if (esize == 8) {
            memcpy(&u, src + 8 * i, 8);
        } else if (esize == 4) {
            uint32_t v;
            memcpy(&v, src + 4 * i, 4);
            u = v;
        } else {
            u = src[i];
        }
        for (size_t b = 0; b < esize; b++) raw[esize * i + b] = (uint8_t)(u >> (8 * b));
    }
    t->has_raw_data = 1;
    t->raw_data.data = raw;
    t->raw_data.len = esize * n;
    e->g->initializer[e->g->n_initializer++] = t;
    return t;
}

void cnd_onnxw_i64(cnd_onnxw_t *e, const char *name, int64_t v)
{
    cnd_onnxw_tensor(e, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, NULL, 0, &v);
}

Onnx__NodeProto *cnd_onnxw_node(cnd_onnxw_t *e, const char *op, const char *name, const char **in,
                                int nin, const char *out)
{
    Onnx__NodeProto *n = cnd_onnxw_new(e, sizeof *n);
    if (!n) return NULL;
    assert(e->g->n_node < e->cap_node);
    *n = (Onnx__NodeProto)ONNX__NODE_PROTO__INIT;
    n->op_type = cnd_onnxw_str(e, op);
    n->name = cnd_onnxw_str(e, name);
    n->input = cnd_onnxw_new(e, sizeof(char *) * (size_t)nin);
    n->output = cnd_onnxw_new(e, sizeof(char *));
    n->attribute = cnd_onnxw_new(e, sizeof(Onnx__AttributeProto *) * 4);
    if (!n->input || !n->output || !n->attribute) return NULL;
    for (int i = 0; i < nin; i++) n->input[i] = cnd_onnxw_str(e, in[i]);
    n->n_input = (size_t)nin;
    n->output[0] = cnd_onnxw_str(e, out);
    n->n_output = 1;
    e->g->node[e->g->n_node++] = n;
    return n;
}

void cnd_onnxw_attr_ints(cnd_onnxw_t *e, Onnx__NodeProto *n, const char *name, int64_t v, int count)
{
    Onnx__AttributeProto *a = cnd_onnxw_new(e, sizeof *a);
    int64_t *ints = cnd_onnxw_new(e, 8 * (size_t)count);
    if (!a || !ints || !n) return;
    assert(n->n_attribute < 4);
    *a = (Onnx__AttributeProto)ONNX__ATTRIBUTE_PROTO__INIT;
    a->name = cnd_onnxw_str(e, name);
    a->has_type = 1;
    if (count == 0) { /* a single int */
        a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
        a->has_i = 1;
        a->i = v;
    } else {
        a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
        for (int i = 0; i < count; i++) ints[i] = v;
        a->ints = ints;
        a->n_ints = (size_t)count;
    }
    n->attribute[n->n_attribute++] = a;
}

void cnd_onnxw_attr_float(cnd_onnxw_t *e, Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a = cnd_onnxw_new(e, sizeof *a);
    if (!a || !n) return;
    assert(n->n_attribute < 4);
    *a = (Onnx__AttributeProto)ONNX__ATTRIBUTE_PROTO__INIT;
    a->name = cnd_onnxw_str(e, name);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1;
    a->f = v;
    n->attribute[n->n_attribute++] = a;
}

Onnx__ValueInfoProto *cnd_onnxw_vi(cnd_onnxw_t *e, const char *name, int type, const int64_t *dims,
                                   int nd)
{
    Onnx__ValueInfoProto *v = cnd_onnxw_new(e, sizeof *v);
    Onnx__TypeProto *t = cnd_onnxw_new(e, sizeof *t);
    Onnx__TypeProto__Tensor *tt = cnd_onnxw_new(e, sizeof *tt);
    Onnx__TensorShapeProto *sh = cnd_onnxw_new(e, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dd = cnd_onnxw_new(e, sizeof *dd * (size_t)nd);
    if (!v || !t || !tt || !sh || !dd) return NULL;
    *v = (Onnx__ValueInfoProto)ONNX__VALUE_INFO_PROTO__INIT;
    *t = (Onnx__TypeProto)ONNX__TYPE_PROTO__INIT;
    *tt = (Onnx__TypeProto__Tensor)ONNX__TYPE_PROTO__TENSOR__INIT;
    *sh = (Onnx__TensorShapeProto)ONNX__TENSOR_SHAPE_PROTO__INIT;
    v->name = cnd_onnxw_str(e, name);
    v->type = t;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = type;
    tt->shape = sh;
    sh->dim = dd;
    sh->n_dim = (size_t)nd;
    for (int i = 0; i < nd; i++) {
        Onnx__TensorShapeProto__Dimension *d = cnd_onnxw_new(e, sizeof *d);
        if (!d) return NULL;
        *d = (Onnx__TensorShapeProto__Dimension)ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
        if (i == 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = cnd_onnxw_str(e, "N");
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        dd[i] = d;
    }
    return v;
}

void cnd_onnxw_prop(cnd_onnxw_t *e, const char *key, const char *value)
{
    Onnx__StringStringEntryProto *p = cnd_onnxw_new(e, sizeof *p);
    if (!p || !e->mp->metadata_props) return;
    assert(e->mp->n_metadata_props < S_MAX_PROPS);
    *p = (Onnx__StringStringEntryProto)ONNX__STRING_STRING_ENTRY_PROTO__INIT;
    p->key = cnd_onnxw_str(e, key);
    p->value = cnd_onnxw_str(e, value);
    e->mp->metadata_props[e->mp->n_metadata_props++] = p;
}
