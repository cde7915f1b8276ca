/*
 * onnx_export.c: a float .cnd model as an ONNX graph (opset 13), written with the protobuf-c
 * code generated from onnx.proto, so what we write is what the official schema describes.
 *
 * One node per layer: conv2d -> Conv (+ bias; grouped and depthwise with attribute group),
 * relu -> Relu, relu6 -> Clip(0, 6), hardswish -> HardSigmoid(1/6, 1/2) then Mul (opset 13 has
 * no HardSwish; x * clip(x/6 + 1/2, 0, 1) is the same function), maxpool/avgpool -> MaxPool /
 * AveragePool, gap -> GlobalAveragePool, flatten -> Flatten, dense -> Gemm (transB = 1, the
 * PyTorch layout the .cnd keeps; a Flatten first when the input is still 4-D), batchnorm ->
 * BatchNormalization (running statistics), add -> Add, concat -> Concat (axis 1). Graph models
 * keep their graph: node i's output is value "t<i+1>" and its inputs are the values of the
 * nodes it reads (model.h). The input is "input" (N, C, H, W) or (N, F) with a
 * symbolic batch, the output "logits" (N, classes). Like the .cnd network, the graph expects
 * normalised inputs; the normalisation (x - mean) / std is kept in the model's metadata_props
 * (condenser.norm_mean, condenser.norm_std) and printed by `condenser export`. Weights are raw
 * little-endian float32 (raw_data).
 *
 * The message tree is built with onnx_write.h, whose pool frees every allocation on every path. A
 * layer kind without an ONNX form is refused naming it (there is none today; a new kind must
 * add its case).
 */
#include "error.h"
#include "onnx_graph.h"
#include "onnx_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_FLOAT ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT

static void s_tensor(cnd_onnxw_t *e, const char *name, const int64_t *dims, int nd,
                     const float *data)
{
    cnd_onnxw_tensor(e, name, S_FLOAT, dims, nd, data);
}

/* Layer i's node(s), reading value cur of rank *rank (set to its output's rank); cur2 is a
 * merge's second input. */
static int s_layer(cnd_onnxw_t *e, const cnd_model_t *m, int i, char *cur, const char *cur2,
                   int *rank)
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
    case CND_L_CONV2D:
    case CND_L_GCONV: {
        int G = l->type == CND_L_GCONV ? l->p.conv.groups : 1;
        int64_t wd[4] = {l->p.conv.oc, l->in.c / G, l->p.conv.k, l->p.conv.k};
        int64_t bd[1] = {l->p.conv.oc};
        s_tensor(e, wn, wd, 4, w);
        s_tensor(e, bn, bd, 1, w + l->n_weights);
        n = cnd_onnxw_node(e, "Conv", nm, (const char *[]){cur, wn, bn}, 3, out);
        if (!n) return CND_ENOMEM;
        cnd_onnxw_attr_ints(e, n, "kernel_shape", l->p.conv.k, 2);
        cnd_onnxw_attr_ints(e, n, "strides", l->p.conv.stride, 2);
        cnd_onnxw_attr_ints(e, n, "pads", l->p.conv.pad, 4);
        if (G > 1) cnd_onnxw_attr_ints(e, n, "group", G, 0);
        break;
    }
    case CND_L_RELU6: { /* Clip's bounds are inputs since opset 11 */
        snprintf(wn, sizeof wn, "layer%d.min", i + 1);
        snprintf(bn, sizeof bn, "layer%d.max", i + 1);
        const float lo = 0.0f, hi = 6.0f;
        s_tensor(e, wn, NULL, 0, &lo);
        s_tensor(e, bn, NULL, 0, &hi);
        n = cnd_onnxw_node(e, "Clip", nm, (const char *[]){cur, wn, bn}, 3, out);
        break;
    }
    case CND_L_HARDSWISH: {
        char hs[64];
        snprintf(hs, sizeof hs, "t%d_gate", i + 1);
        Onnx__NodeProto *g = cnd_onnxw_node(e, "HardSigmoid", "hardsigmoid", in1, 1, hs);
        if (!g) return CND_ENOMEM;
        cnd_onnxw_attr_float(e, g, "alpha", 1.0f / 6.0f);
        cnd_onnxw_attr_float(e, g, "beta", 0.5f);
        n = cnd_onnxw_node(e, "Mul", nm, (const char *[]){cur, hs}, 2, out);
        break;
    }
    case CND_L_ADD:
    case CND_L_CONCAT:
        n = cnd_onnxw_node(e, l->type == CND_L_ADD ? "Add" : "Concat", nm,
                           (const char *[]){cur, cur2}, 2, out);
        if (n && l->type == CND_L_CONCAT) cnd_onnxw_attr_ints(e, n, "axis", 1, 0);
        break;
    case CND_L_DENSE: {
        if (*rank != 2) { /* Gemm takes (N, F) */
            char fl[64];
            snprintf(fl, sizeof fl, "t%d_flat", i + 1);
            Onnx__NodeProto *f = cnd_onnxw_node(e, "Flatten", "flatten_before_dense", in1, 1, fl);
            if (f) cnd_onnxw_attr_ints(e, f, "axis", 1, 0);
            strcpy(cur, fl);
            *rank = 2;
        }
        int64_t F = (int64_t)cnd_shape_size(l->in);
        int64_t wd[2] = {l->p.dense.out, F}, bd[1] = {l->p.dense.out};
        s_tensor(e, wn, wd, 2, w);
        s_tensor(e, bn, bd, 1, w + l->n_weights);
        n = cnd_onnxw_node(e, "Gemm", nm, (const char *[]){cur, wn, bn}, 3, out);
        if (n) cnd_onnxw_attr_ints(e, n, "transB", 1, 0);
        break;
    }
    case CND_L_RELU: n = cnd_onnxw_node(e, "Relu", nm, in1, 1, out); break;
    case CND_L_TANH: n = cnd_onnxw_node(e, "Tanh", nm, in1, 1, out); break;
    case CND_L_MAXPOOL:
    case CND_L_AVGPOOL:
        n = cnd_onnxw_node(e, l->type == CND_L_MAXPOOL ? "MaxPool" : "AveragePool", nm, in1, 1,
                           out);
        if (!n) return CND_ENOMEM;
        cnd_onnxw_attr_ints(e, n, "kernel_shape", l->p.pool.k, 2);
        cnd_onnxw_attr_ints(e, n, "strides", l->p.pool.stride, 2);
        break;
    case CND_L_GAP: n = cnd_onnxw_node(e, "GlobalAveragePool", nm, in1, 1, out); break;
    case CND_L_FLATTEN:
        n = cnd_onnxw_node(e, "Flatten", nm, in1, 1, out);
        if (n) cnd_onnxw_attr_ints(e, n, "axis", 1, 0);
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
        n = cnd_onnxw_node(e, "BatchNormalization", nm, (const char *[]){cur, wn, bn, mn, vn}, 5,
                           out);
        if (n) cnd_onnxw_attr_float(e, n, "epsilon", l->p.bn.eps);
        break;
    }
    default:
        return cnd_errf(CND_EINVAL, "layer %d: kind %d (%s) has no ONNX form", i + 1, (int)l->type,
                        l->type < CND_L_COUNT ? cnd_layer_ops(l->type)->name : "unknown");
    }
    strcpy(cur, out);
    return 0;
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
    cnd_onnxw_t e;
    int rc = cnd_onnxw_begin(&e, (size_t)(2 * m->n_layers + 1), (size_t)(4 * m->n_layers + 1));
    if (rc) goto done;
    Onnx__GraphProto *g = e.g;
    int spatial = m->in.h > 1 || m->in.w > 1;
    for (int i = 0; i < m->n_layers; i++) /* a convolution of the input needs (N, C, H, W) */
        spatial |= m->layers[i].src[0] < 0 &&
                   (m->layers[i].type == CND_L_CONV2D || m->layers[i].type == CND_L_GCONV);
    int rank = spatial ? 4 : 2;
    int64_t dims[4] = {-1, m->in.c, m->in.h, m->in.w};
    if (!spatial) dims[1] = (int64_t)cnd_shape_size(m->in);
    g->input[0] = cnd_onnxw_vi(&e, "input", S_FLOAT, dims, rank);
    g->n_input = 1;
    /* each node reads the values of the nodes it reads, of their ranks */
    int *ranks = malloc((size_t)m->n_layers * sizeof *ranks);
    if (!ranks) {
        rc = CND_ENOMEM;
        goto done;
    }
    for (int i = 0; i < m->n_layers && !rc; i++) {
        const cnd_layer_t *l = &m->layers[i];
        char cur[64] = "input", cur2[64] = "input";
        int r = l->src[0] < 0 ? rank : ranks[l->src[0]];
        if (l->src[0] >= 0) snprintf(cur, sizeof cur, "t%d", l->src[0] + 1);
        if (l->n_src == 2 && l->src[1] >= 0) snprintf(cur2, sizeof cur2, "t%d", l->src[1] + 1);
        if (l->n_src == 2 && r != (l->src[1] < 0 ? rank : ranks[l->src[1]])) {
            rc = cnd_errf(CND_EINVAL,
                          "layer %d (%s) merges a feature vector with a spatial map: no ONNX "
                          "form without a reshape",
                          i + 1, cnd_layer_ops(l->type)->name);
            break;
        }
        rc = s_layer(&e, m, i, cur, cur2, &r);
        ranks[i] = r;
    }
    free(ranks);
    if (rc || (rc = e.oom ? CND_ENOMEM : 0)) goto done;
    /* the last node writes the graph output */
    Onnx__NodeProto *last = g->node[g->n_node - 1];
    last->output[0] = cnd_onnxw_str(&e, "logits");
    g->output[0] = cnd_onnxw_vi(&e, "logits", S_FLOAT, (int64_t[]){-1, m->n_classes}, 2);
    g->n_output = 1;
    static const char *keys[2] = {"condenser.norm_mean", "condenser.norm_std"};
    for (int k = 0; k < 2; k++) {
        char buf[8192];
        s_list(buf, sizeof buf, k ? m->norm_std : m->norm_mean, m->in.c);
        cnd_onnxw_prop(&e, keys[k], buf);
    }
    if (!g->input[0] || !g->output[0]) e.oom = 1;
    rc = cnd_onnxw_pack(&e, out, len);
done:
    cnd_onnxw_end(&e);
    return rc;
}
