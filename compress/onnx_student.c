/*
 * onnx_student.c: what an imported ONNX model needs around the engine: the input
 * preprocessing it expects (scale, per-channel mean and std, written into a .cnd as its
 * normalisation), teacher logits over a dataset, and the mapping of a chain graph onto the
 * trainable layers of a .cnd (onnx_graph.h).
 *
 * The mapping walks the planned graph's computed nodes in order; each must read the previous
 * one's output (a chain) and map to one layer with the same arithmetic: Conv (one group,
 * square kernel, equal strides, one symmetric pad, no dilation) -> conv2d, Relu -> relu,
 * MaxPool/AveragePool (square, no padding) -> maxpool/avgpool, GlobalAveragePool -> gap,
 * Flatten or a Reshape to (N, -1) -> flatten, Gemm (alpha = beta = 1, no transA) or MatMul with
 * a constant (K, N) matrix, and an Add of a constant bias right after it -> dense,
 * BatchNormalization -> batchnorm; Identity and Dropout vanish. The first node that does not
 * map is named in the refusal. Each layer's per-sample output size is checked against the
 * graph's, so a mapping that computed something else could not pass silently.
 */
#include "onnx_internal.h"

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

typedef struct {
    cnd_layer_t l[CND_SPEC_MAX_LAYERS];
    const float *w[CND_SPEC_MAX_LAYERS], *b[CND_SPEC_MAX_LAYERS]; /* weights, bias / beta */
    const float *m[CND_SPEC_MAX_LAYERS], *v[CND_SPEC_MAX_LAYERS]; /* bn running stats */
    int transpose[CND_SPEC_MAX_LAYERS];                           /* dense weight given as (K, N) */
    int64_t size[CND_SPEC_MAX_LAYERS]; /* per-sample output size in the graph */
    int n;
} s_chain_t;

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

/* Maps node n onto c->l[c->n] (returns 1 when it adds a layer, 0 when it vanishes). */
static int s_map(const cnd_onnx_t *g, const s_node_t *n, s_chain_t *c, int B)
{
    cnd_layer_t *l = &c->l[c->n];
    memset(l, 0, sizeof *l);
    int k = c->n;
    switch (n->op) {
    case OP_IDENTITY:
    case OP_DROPOUT: return 0;
    case OP_CONV:
        if (n->group != 1)
            return s_refuse(g, n, "grouped or depthwise convolution (attribute 'group')");
        if (n->kernel[0] != n->kernel[1] || n->strides[0] != n->strides[1] || n->dil[0] != 1 ||
            n->dil[1] != 1 || n->pads[0] != n->pads[1] || n->pads[0] != n->pads[2] ||
            n->pads[0] != n->pads[3])
            return s_refuse(
                g, n,
                "conv2d layers have square kernels, one stride, one symmetric "
                "pad and no dilation (attributes kernel_shape, strides, pads, dilations)");
        if (!(c->w[k] = s_const(g, n, 1))) return s_refuse(g, n, "the weight is not a constant");
        c->b[k] = s_const(g, n, 2);
        if (n->n_in > 2 && n->in[2] >= 0 && !c->b[k])
            return s_refuse(g, n, "the bias is not a constant");
        l->type = CND_L_CONV2D;
        l->p.conv.oc = (int)g->v[n->in[1]].dims[0];
        l->p.conv.k = (int)n->kernel[0];
        l->p.conv.stride = (int)n->strides[0];
        l->p.conv.pad = (int)n->pads[0];
        return 1;
    case OP_RELU: l->type = CND_L_RELU; return 1;
    case OP_MAXPOOL:
    case OP_AVGPOOL:
        if (n->kernel[0] != n->kernel[1] || n->strides[0] != n->strides[1] || n->dil[0] != 1 ||
            n->dil[1] != 1 || n->pads[0] || n->pads[1] || n->pads[2] || n->pads[3] || n->ceil_mode)
            return s_refuse(g, n,
                            "pooling layers have square windows, one stride, no padding, no "
                            "dilation and no ceil_mode");
        l->type = n->op == OP_MAXPOOL ? CND_L_MAXPOOL : CND_L_AVGPOOL;
        l->p.pool.k = (int)n->kernel[0];
        l->p.pool.stride = (int)n->strides[0];
        return 1;
    case OP_GAP: l->type = CND_L_GAP; return 1;
    case OP_FLATTEN:
    case OP_RESHAPE: {
        const s_value_t *o = &g->v[n->out[0]];
        if (o->rank != 2 || o->dims[0] != B)
            return s_refuse(g, n, "only a flatten to (N, features) maps to a layer");
        l->type = CND_L_FLATTEN;
        return 1;
    }
    case OP_BATCHNORM:
        c->w[k] = s_const(g, n, 1);
        c->b[k] = s_const(g, n, 2);
        c->m[k] = s_const(g, n, 3);
        c->v[k] = s_const(g, n, 4);
        l->type = CND_L_BATCHNORM;
        l->p.bn.eps = n->eps;
        l->p.bn.momentum = 0.1f;
        return 1;
    case OP_GEMM:
    case OP_MATMUL: {
        const s_value_t *wv = &g->v[n->in[1]];
        if (!(c->w[k] = s_const(g, n, 1)) || wv->rank != 2)
            return s_refuse(g, n, "the weight must be a constant matrix");
        if (g->v[n->in[0]].rank != 2) return s_refuse(g, n, "the input must be (N, features)");
        if (n->op == OP_GEMM &&
            (n->alpha != 1.0f || n->trans_a || (n->n_in > 2 && n->in[2] >= 0 && n->beta != 1.0f)))
            return s_refuse(g, n, "dense layers need alpha = beta = 1 and transA = 0");
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
    default: return s_refuse(g, n, "no trainable layer computes this op");
    }
}

/* Walks the chain of computed nodes from the input to the output. */
static int s_chain(const cnd_onnx_t *g, s_chain_t *c, int B)
{
    int cur = g->input;
    for (int k = 0; k < g->n_nodes; k++) {
        const s_node_t *n = &g->nodes[k];
        if (n->folded) continue;
        int runtime_in = 0, reads_cur = 0;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0 && !g->v[n->in[j]].known) {
                runtime_in++;
                reads_cur |= n->in[j] == cur;
            }
        /* an Add of a constant vector right after a MatMul is its bias */
        if (n->op == OP_ADD && runtime_in == 1 && reads_cur && c->n > 0 &&
            c->l[c->n - 1].type == CND_L_DENSE && !c->b[c->n - 1]) {
            const s_value_t *b = &g->v[n->in[n->in[0] == cur ? 1 : 0]];
            if (b->n == c->l[c->n - 1].p.dense.out && !b->is_int) {
                c->b[c->n - 1] = b->f;
                cur = n->out[0];
                continue;
            }
        }
        if (runtime_in != 1 || !reads_cur)
            return s_refuse(g, n,
                            "the graph is not a chain of layers (branches, residual "
                            "connections or several computed inputs)");
        if (c->n == CND_SPEC_MAX_LAYERS) return s_refuse(g, n, "more layers than a model holds");
        int rc = s_map(g, n, c, B);
        if (rc < 0) return rc;
        if (rc) c->size[c->n++] = g->v[n->out[0]].n / B;
        cur = n->out[0];
    }
    if (cur != g->output)
        return cnd_errf(CND_EPERM, "%s: the graph output is not the end of the layer chain",
                        g->path);
    if (!c->n) return cnd_errf(CND_EPERM, "%s: the graph computes nothing trainable", g->path);
    return 0;
}

/* Copies the graph's weights into the model's layer i. */
static void s_copy(cnd_model_t *m, const s_chain_t *c, int i)
{
    cnd_layer_t *l = &m->layers[i];
    float *p = m->params + l->param_off;
    if (l->type == CND_L_DENSE) {
        size_t N = (size_t)l->p.dense.out, K = cnd_shape_size(l->in);
        for (size_t o = 0; o < N; o++)
            for (size_t k = 0; k < K; k++)
                p[o * K + k] = c->transpose[i] ? c->w[i][k * N + o] : c->w[i][o * K + k];
        for (size_t o = 0; o < N; o++) p[N * K + o] = c->b[i] ? c->b[i][o] : 0.0f;
    } else if (l->type == CND_L_CONV2D) {
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

int cnd_onnx_to_model(cnd_model_t **out, cnd_onnx_t *g)
{
    *out = NULL;
    int rc = cnd_onnx_plan_shapes(g, 1);
    if (rc) return rc;
    size_t floats;
    if ((rc = cnd_onnx_plan_size(g, 1, &floats))) return rc; /* marks the fused relus */
    s_chain_t *c = calloc(1, sizeof *c);
    char *spec = calloc(CND_SPEC_MAX_LAYERS, 64);
    if (!c || !spec) {
        rc = CND_ENOMEM;
        goto done;
    }
    if ((rc = s_chain(g, c, 1))) goto done;
    size_t len = 0;
    for (int i = 0; i < c->n; i++) {
        char tok[64];
        cnd_layer_spec(&c->l[i], tok, sizeof tok);
        len += (size_t)snprintf(spec + len, (size_t)CND_SPEC_MAX_LAYERS * 64 - len, "%s%s",
                                i ? " " : "", tok);
    }
    cnd_model_t *m = NULL;
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
    free(c);
    free(spec);
    return rc;
}
