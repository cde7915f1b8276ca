/*
 * onnx_export.c: a float .cnd model as an ONNX graph (opset 13), written with the protobuf-c
 * code generated from onnx.proto, so what we write is what the official schema describes.
 *
 * One node per layer: conv2d -> Conv (+ bias), relu -> Relu, maxpool/avgpool -> MaxPool /
 * AveragePool, gap -> GlobalAveragePool, flatten -> Flatten, dense -> Gemm (transB = 1, the
 * PyTorch layout the .cnd keeps; a Flatten first when the input is still 4-D), batchnorm ->
 * BatchNormalization (running statistics). The input is "input" (N, C, H, W) or (N, F) with a
 * symbolic batch, the output "logits" (N, classes). Like the .cnd network, the graph expects
 * normalised inputs; the normalisation (x - mean) / std is kept in the model's metadata_props
 * (condenser.norm_mean, condenser.norm_std) and printed by `condenser export`. Weights are raw
 * little-endian float32 (raw_data).
 *
 * Every allocation of the message tree goes into one list freed at the end, so no path leaks.
 */
#include "fileio.h"
#include "onnx.pb-c.h"
#include "onnx_graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    void **p;
    size_t n, cap;
    int oom;
} s_pool_t;

static void *s_new(s_pool_t *a, size_t n)
{
    if (a->oom) return NULL;
    if (a->n == a->cap) {
        size_t c = a->cap ? 2 * a->cap : 256;
        void **q = realloc(a->p, c * sizeof *q);
        if (!q) {
            a->oom = 1;
            return NULL;
        }
        a->p = q;
        a->cap = c;
    }
    void *r = calloc(1, n ? n : 1);
    if (!r) {
        a->oom = 1;
        return NULL;
    }
    return a->p[a->n++] = r;
}

static char *s_str(s_pool_t *a, const char *s)
{
    char *r = s_new(a, strlen(s) + 1);
    if (r) strcpy(r, s);
    return r;
}

typedef struct {
    s_pool_t a;
    Onnx__GraphProto *g;
    size_t cap_node, cap_init;
} s_ex_t;

static Onnx__TensorProto *s_tensor(s_ex_t *e, const char *name, const int64_t *dims, int nd,
                                   const float *data)
{
    Onnx__TensorProto *t = s_new(&e->a, sizeof *t);
    if (!t) return NULL;
    *t = (Onnx__TensorProto)ONNX__TENSOR_PROTO__INIT;
    t->name = s_str(&e->a, name);
    t->dims = s_new(&e->a, 8 * (size_t)nd);
    size_t n = 1;
    for (int i = 0; i < nd && t->dims; i++) n *= (size_t)(t->dims[i] = dims[i]);
    t->n_dims = (size_t)nd;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    uint8_t *raw = s_new(&e->a, 4 * n);
    if (!raw || !t->dims || !t->name) return NULL;
    for (size_t i = 0; i < n; i++) { /* little-endian, whatever the host */
        uint32_t u;
        memcpy(&u, &data[i], 4);
        for (int b = 0; b < 4; b++) raw[4 * i + (size_t)b] = (uint8_t)(u >> (8 * b));
    }
    t->has_raw_data = 1;
    t->raw_data.data = raw;
    t->raw_data.len = 4 * n;
    e->g->initializer[e->g->n_initializer++] = t;
    return t;
}

static Onnx__NodeProto *s_node(s_ex_t *e, const char *op, const char *name, const char **in,
                               int nin, const char *out)
{
    Onnx__NodeProto *n = s_new(&e->a, sizeof *n);
    if (!n) return NULL;
    *n = (Onnx__NodeProto)ONNX__NODE_PROTO__INIT;
    n->op_type = s_str(&e->a, op);
    n->name = s_str(&e->a, name);
    n->input = s_new(&e->a, sizeof(char *) * (size_t)nin);
    n->output = s_new(&e->a, sizeof(char *));
    n->attribute = s_new(&e->a, sizeof(Onnx__AttributeProto *) * 4);
    if (!n->input || !n->output || !n->attribute) return NULL;
    for (int i = 0; i < nin; i++) n->input[i] = s_str(&e->a, in[i]);
    n->n_input = (size_t)nin;
    n->output[0] = s_str(&e->a, out);
    n->n_output = 1;
    e->g->node[e->g->n_node++] = n;
    return n;
}

static void s_attr_ints(s_ex_t *e, Onnx__NodeProto *n, const char *name, int64_t v, int count)
{
    Onnx__AttributeProto *a = s_new(&e->a, sizeof *a);
    int64_t *ints = s_new(&e->a, 8 * (size_t)count);
    if (!a || !ints) return;
    *a = (Onnx__AttributeProto)ONNX__ATTRIBUTE_PROTO__INIT;
    a->name = s_str(&e->a, name);
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

static void s_attr_float(s_ex_t *e, Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a = s_new(&e->a, sizeof *a);
    if (!a) return;
    *a = (Onnx__AttributeProto)ONNX__ATTRIBUTE_PROTO__INIT;
    a->name = s_str(&e->a, name);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1;
    a->f = v;
    n->attribute[n->n_attribute++] = a;
}

static Onnx__ValueInfoProto *s_vi(s_ex_t *e, const char *name, const int64_t *dims, int nd)
{
    Onnx__ValueInfoProto *v = s_new(&e->a, sizeof *v);
    Onnx__TypeProto *t = s_new(&e->a, sizeof *t);
    Onnx__TypeProto__Tensor *tt = s_new(&e->a, sizeof *tt);
    Onnx__TensorShapeProto *sh = s_new(&e->a, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dd = s_new(&e->a, sizeof *dd * (size_t)nd);
    if (!v || !t || !tt || !sh || !dd) return NULL;
    *v = (Onnx__ValueInfoProto)ONNX__VALUE_INFO_PROTO__INIT;
    *t = (Onnx__TypeProto)ONNX__TYPE_PROTO__INIT;
    *tt = (Onnx__TypeProto__Tensor)ONNX__TYPE_PROTO__TENSOR__INIT;
    *sh = (Onnx__TensorShapeProto)ONNX__TENSOR_SHAPE_PROTO__INIT;
    v->name = s_str(&e->a, name);
    v->type = t;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sh;
    sh->dim = dd;
    sh->n_dim = (size_t)nd;
    for (int i = 0; i < nd; i++) {
        Onnx__TensorShapeProto__Dimension *d = s_new(&e->a, sizeof *d);
        if (!d) return NULL;
        *d = (Onnx__TensorShapeProto__Dimension)ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
        if (i == 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = s_str(&e->a, "N");
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        dd[i] = d;
    }
    return v;
}

/* Layer i's node(s), reading *cur (a value name, updated) of rank *rank. */
static void s_layer(s_ex_t *e, const cnd_model_t *m, int i, char *cur, int *rank)
{
    const cnd_layer_t *l = &m->layers[i];
    const float *w = m->params + l->param_off;
    char nm[64], out[64], wn[64], bn[64];
    snprintf(nm, sizeof nm, "layer%d", i + 1);
    snprintf(out, sizeof out, "t%d", i + 1);
    snprintf(wn, sizeof wn, "layer%d.weight", i + 1);
    snprintf(bn, sizeof bn, "layer%d.bias", i + 1);
    Onnx__NodeProto *n = NULL;
    const char *in1[1] = {cur};
    switch (l->type) {
    case CND_L_CONV2D: {
        int64_t wd[4] = {l->p.conv.oc, l->in.c, l->p.conv.k, l->p.conv.k}, bd[1] = {l->p.conv.oc};
        s_tensor(e, wn, wd, 4, w);
        s_tensor(e, bn, bd, 1, w + l->n_weights);
        n = s_node(e, "Conv", nm, (const char *[]){cur, wn, bn}, 3, out);
        if (!n) return;
        s_attr_ints(e, n, "kernel_shape", l->p.conv.k, 2);
        s_attr_ints(e, n, "strides", l->p.conv.stride, 2);
        s_attr_ints(e, n, "pads", l->p.conv.pad, 4);
        break;
    }
    case CND_L_DENSE: {
        if (*rank != 2) { /* Gemm takes (N, F) */
            char fl[64];
            snprintf(fl, sizeof fl, "t%d_flat", i + 1);
            Onnx__NodeProto *f = s_node(e, "Flatten", "flatten_before_dense", in1, 1, fl);
            if (f) s_attr_ints(e, f, "axis", 1, 0);
            strcpy(cur, fl);
            *rank = 2;
        }
        int64_t F = (int64_t)cnd_shape_size(l->in);
        int64_t wd[2] = {l->p.dense.out, F}, bd[1] = {l->p.dense.out};
        s_tensor(e, wn, wd, 2, w);
        s_tensor(e, bn, bd, 1, w + l->n_weights);
        n = s_node(e, "Gemm", nm, (const char *[]){cur, wn, bn}, 3, out);
        if (n) s_attr_ints(e, n, "transB", 1, 0);
        break;
    }
    case CND_L_RELU: n = s_node(e, "Relu", nm, in1, 1, out); break;
    case CND_L_TANH: n = s_node(e, "Tanh", nm, in1, 1, out); break;
    case CND_L_MAXPOOL:
    case CND_L_AVGPOOL:
        n = s_node(e, l->type == CND_L_MAXPOOL ? "MaxPool" : "AveragePool", nm, in1, 1, out);
        if (!n) return;
        s_attr_ints(e, n, "kernel_shape", l->p.pool.k, 2);
        s_attr_ints(e, n, "strides", l->p.pool.stride, 2);
        break;
    case CND_L_GAP: n = s_node(e, "GlobalAveragePool", nm, in1, 1, out); break;
    case CND_L_FLATTEN:
        n = s_node(e, "Flatten", nm, in1, 1, out);
        if (n) s_attr_ints(e, n, "axis", 1, 0);
        *rank = 2;
        break;
    case CND_L_BATCHNORM: {
        int64_t cd[1] = {l->in.c};
        char mn[64], vn[64];
        snprintf(mn, sizeof mn, "layer%d.running_mean", i + 1);
        snprintf(vn, sizeof vn, "layer%d.running_var", i + 1);
        const float *st = m->state + l->state_off;
        s_tensor(e, wn, cd, 1, w);
        s_tensor(e, bn, cd, 1, w + l->in.c);
        s_tensor(e, mn, cd, 1, st);
        s_tensor(e, vn, cd, 1, st + l->in.c);
        n = s_node(e, "BatchNormalization", nm, (const char *[]){cur, wn, bn, mn, vn}, 5, out);
        if (n) s_attr_float(e, n, "epsilon", l->p.bn.eps);
        break;
    }
    default: return;
    }
    strcpy(cur, out);
}

/* "v1,v2,..." of n floats into buf. */
static void s_list(char *buf, size_t cap, const float *v, int n)
{
    size_t w = 0;
    buf[0] = 0;
    for (int i = 0; i < n && w + 20 < cap; i++)
        w += (size_t)snprintf(buf + w, cap - w, "%s%.9g", i ? "," : "", (double)v[i]);
}

int cnd_onnx_export(const cnd_model_t *m, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    s_ex_t e = {0};
    int rc = CND_ENOMEM;
    Onnx__ModelProto *mp = s_new(&e.a, sizeof *mp);
    Onnx__GraphProto *g = s_new(&e.a, sizeof *g);
    Onnx__OperatorSetIdProto *op = s_new(&e.a, sizeof *op);
    Onnx__OperatorSetIdProto **ops = s_new(&e.a, sizeof *ops);
    Onnx__StringStringEntryProto **props = s_new(&e.a, 2 * sizeof *props);
    if (!mp || !g || !op || !ops || !props) goto done;
    *mp = (Onnx__ModelProto)ONNX__MODEL_PROTO__INIT;
    *g = (Onnx__GraphProto)ONNX__GRAPH_PROTO__INIT;
    *op = (Onnx__OperatorSetIdProto)ONNX__OPERATOR_SET_ID_PROTO__INIT;
    e.g = g;
    g->node = s_new(&e.a, sizeof *g->node * (size_t)(2 * m->n_layers + 1));
    g->initializer = s_new(&e.a, sizeof *g->initializer * (size_t)(4 * m->n_layers + 1));
    g->input = s_new(&e.a, sizeof *g->input);
    g->output = s_new(&e.a, sizeof *g->output);
    if (!g->node || !g->initializer || !g->input || !g->output) goto done;
    mp->has_ir_version = 1;
    mp->ir_version = 7; /* what opset 13 came with */
    mp->producer_name = s_str(&e.a, "condenser");
    mp->producer_version = s_str(&e.a, "0.1.0");
    op->domain = s_str(&e.a, "");
    op->has_version = 1;
    op->version = 13;
    ops[0] = op;
    mp->opset_import = ops;
    mp->n_opset_import = 1;
    mp->graph = g;
    g->name = s_str(&e.a, "condenser");
    int spatial = m->in.h > 1 || m->in.w > 1 || m->layers[0].type == CND_L_CONV2D;
    int rank = spatial ? 4 : 2;
    int64_t dims[4] = {-1, m->in.c, m->in.h, m->in.w};
    if (!spatial) dims[1] = (int64_t)cnd_shape_size(m->in);
    g->input[0] = s_vi(&e, "input", dims, rank);
    g->n_input = 1;
    char cur[64] = "input";
    for (int i = 0; i < m->n_layers; i++) s_layer(&e, m, i, cur, &rank);
    if (e.a.oom) goto done;
    /* the last node writes the graph output */
    Onnx__NodeProto *last = g->node[g->n_node - 1];
    last->output[0] = s_str(&e.a, "logits");
    g->output[0] = s_vi(&e, "logits", (int64_t[]){-1, m->n_classes}, 2);
    g->n_output = 1;
    static const char *keys[2] = {"condenser.norm_mean", "condenser.norm_std"};
    for (int k = 0; k < 2; k++) {
        char buf[8192];
        s_list(buf, sizeof buf, k ? m->norm_std : m->norm_mean, m->in.c);
        Onnx__StringStringEntryProto *p = s_new(&e.a, sizeof *p);
        if (!p) goto done;
        *p = (Onnx__StringStringEntryProto)ONNX__STRING_STRING_ENTRY_PROTO__INIT;
        p->key = s_str(&e.a, keys[k]);
        p->value = s_str(&e.a, buf);
        props[k] = p;
    }
    mp->metadata_props = props;
    mp->n_metadata_props = 2;
    if (e.a.oom || !g->input[0] || !g->output[0]) goto done;
    size_t n = onnx__model_proto__get_packed_size(mp);
    if (!(*out = malloc(n ? n : 1))) goto done;
    *len = onnx__model_proto__pack(mp, *out);
    rc = 0;
done:
    for (size_t i = 0; i < e.a.n; i++) free(e.a.p[i]);
    free(e.a.p);
    return rc;
}
