/*
 * model.c: building a model from a spec, running it forward and backward (see model.h).
 */
#include "model.h"
#include "clock.h"
#include "pool.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const cnd_layer_ops_t cnd_layer_dense_ops, cnd_layer_conv2d_ops, cnd_layer_relu_ops,
    cnd_layer_maxpool_ops, cnd_layer_avgpool_ops, cnd_layer_gap_ops, cnd_layer_flatten_ops,
    cnd_layer_batchnorm_ops, cnd_layer_tanh_ops, cnd_layer_gconv_ops, cnd_layer_relu6_ops,
    cnd_layer_hardswish_ops, cnd_layer_add_ops, cnd_layer_concat_ops;

const cnd_layer_ops_t *cnd_layer_ops(cnd_layer_type_t t)
{
    static const cnd_layer_ops_t *table[CND_L_COUNT] = {
        [CND_L_DENSE] = &cnd_layer_dense_ops,     [CND_L_CONV2D] = &cnd_layer_conv2d_ops,
        [CND_L_RELU] = &cnd_layer_relu_ops,       [CND_L_MAXPOOL] = &cnd_layer_maxpool_ops,
        [CND_L_AVGPOOL] = &cnd_layer_avgpool_ops, [CND_L_GAP] = &cnd_layer_gap_ops,
        [CND_L_FLATTEN] = &cnd_layer_flatten_ops, [CND_L_BATCHNORM] = &cnd_layer_batchnorm_ops,
        [CND_L_TANH] = &cnd_layer_tanh_ops,       [CND_L_GCONV] = &cnd_layer_gconv_ops,
        [CND_L_RELU6] = &cnd_layer_relu6_ops,     [CND_L_HARDSWISH] = &cnd_layer_hardswish_ops,
        [CND_L_ADD] = &cnd_layer_add_ops,         [CND_L_CONCAT] = &cnd_layer_concat_ops,
    };
    return (unsigned)t < CND_L_COUNT ? table[t] : NULL;
}

void cnd_layer_spec(const cnd_layer_t *l, char *out, size_t n)
{
    switch (l->type) {
    case CND_L_DENSE: snprintf(out, n, "dense(%d)", l->p.dense.out); break;
    case CND_L_CONV2D:
    case CND_L_GCONV: {
        int w = snprintf(out, n, "conv2d(%d,%d", l->p.conv.oc, l->p.conv.k);
        if (l->p.conv.stride != 1 && w > 0 && (size_t)w < n)
            w += snprintf(out + w, n - (size_t)w, ",stride=%d", l->p.conv.stride);
        if (l->p.conv.pad && w > 0 && (size_t)w < n)
            w += snprintf(out + w, n - (size_t)w, ",pad=%d", l->p.conv.pad);
        if (l->type == CND_L_GCONV && w > 0 && (size_t)w < n)
            w += snprintf(out + w, n - (size_t)w, ",groups=%d", l->p.conv.groups);
        if (w > 0 && (size_t)w < n) snprintf(out + w, n - (size_t)w, ")");
        break;
    }
    case CND_L_MAXPOOL:
    case CND_L_AVGPOOL:
        if (l->p.pool.stride == l->p.pool.k)
            snprintf(out, n, "%s(%d)", cnd_layer_ops(l->type)->name, l->p.pool.k);
        else
            snprintf(out, n, "%s(%d,stride=%d)", cnd_layer_ops(l->type)->name, l->p.pool.k,
                     l->p.pool.stride);
        break;
    case CND_L_BATCHNORM:
        if (l->p.bn.eps == 1e-5f && l->p.bn.momentum == 0.1f)
            snprintf(out, n, "batchnorm");
        else
            snprintf(out, n, "batchnorm(eps=%g,momentum=%g)", l->p.bn.eps, l->p.bn.momentum);
        break;
    default: snprintf(out, n, "%s", cnd_layer_ops(l->type)->name); break;
    }
}

/* Profiling clock: wall time, or process CPU time with CND_PROFILE=cpu (m->prof_cpu). */
static double s_prof_clock(const cnd_model_t *m)
{
    return m->prof_cpu ? cnd_cputime() : cnd_now();
}

static void s_free_work(cnd_model_t *m)
{
    if (m->acts)
        for (int i = 0; i < m->n_layers; i++)
            if (!m->layers[i].alias) free(m->acts[i]);
    free(m->acts);
    m->acts = NULL;
    for (int i = 0; i < m->n_layers; i++) {
        free(m->layers[i].saved);
        free(m->layers[i].saved2);
        free(m->layers[i].argmax);
        m->layers[i].saved = m->layers[i].saved2 = NULL;
        m->layers[i].argmax = NULL;
    }
    for (int i = 0; i < m->n_gpool; i++) free(m->gpool[i]);
    free(m->gpool);
    m->gpool = NULL;
    m->n_gpool = 0;
    free(m->dbuf[0]);
    free(m->dbuf[1]);
    free(m->work);
    m->dbuf[0] = m->dbuf[1] = m->work = NULL;
    m->cap_B = 0;
}

void cnd_model_destroy(cnd_model_t **pm)
{
    if (!pm || !*pm) return;
    cnd_model_t *m = *pm;
    if (m->layers) s_free_work(m);
    free(m->layers);
    free(m->spec);
    free(m->params);
    free(m->grads);
    free(m->state);
    free(m->norm_mean);
    free(m->norm_std);
    free(m->prof);
    for (int i = 0; i < m->n_meta; i++) {
        free(m->meta[i].key);
        free(m->meta[i].val);
    }
    free(m);
    *pm = NULL;
}

/* Node j's output as seen by node i: the model input for j < 0. */
static cnd_shape_t s_src_shape(const cnd_model_t *m, int j)
{
    return j < 0 ? m->in : m->layers[j].out;
}

/* Parses spec, sets every layer's shape, offsets, layouts and fusion flags, and the model's
 * parameter and state counts; allocates nothing but the layer table. A sequential spec gives
 * every node src[0] == i - 1, and then exactly the plan of a plain chain of layers. */
static int s_plan(cnd_model_t *m, const char *spec, cnd_shape_t in)
{
    cnd_layer_t *tmp = malloc(CND_SPEC_MAX_LAYERS * sizeof *tmp);
    int readers[CND_SPEC_MAX_LAYERS] = {0};
    if (!tmp) return CND_ENOMEM;
    if (in.c <= 0 || in.h <= 0 || in.w <= 0 || cnd_shape_size(in) > (1u << 26)) {
        free(tmp);
        return cnd_errf(CND_EINVAL, "input shape %dx%dx%d is not valid", in.c, in.h, in.w);
    }
    int n = cnd_spec_parse_graph(spec, in, tmp, CND_SPEC_MAX_LAYERS);
    if (n < 0) {
        free(tmp);
        return n;
    }
    m->in = in;
    m->n_layers = n;
    m->layers = calloc((size_t)n, sizeof *m->layers);
    if (!m->layers) {
        free(tmp);
        return CND_ENOMEM;
    }
    memcpy(m->layers, tmp, (size_t)n * sizeof *tmp);
    free(tmp);
    size_t np = 0, ns = 0;
    m->graph = 0;
    for (int i = 0; i < n; i++) {
        cnd_layer_t *l = &m->layers[i];
        l->in = s_src_shape(m, l->src[0]);
        if (l->n_src == 2) l->in2 = s_src_shape(m, l->src[1]);
        for (int k = 0; k < l->n_src; k++)
            if (l->src[k] >= 0) readers[l->src[k]]++;
        if (l->n_src != 1 || l->src[0] != i - 1 || l->name[0]) m->graph = 1;
        cnd_shape_t cur = l->in;
        int rc = cnd_layer_ops(l->type)->shape(l);
        if (rc)
            return cnd_err_wrap(rc, "layer %d (%s) with input %dx%dx%d", i + 1,
                                cnd_layer_ops(l->type)->name, cur.c, cur.h, cur.w);
        if (l->out.c <= 0 || l->out.h <= 0 || l->out.w <= 0)
            return cnd_errf(CND_EINVAL, "layer %d (%s) produces an empty output", i + 1,
                            cnd_layer_ops(l->type)->name);
        l->param_off = np;
        l->state_off = ns;
        if (l->n_params > ((size_t)1 << 31) - np)
            return cnd_errf(CND_EINVAL, "model has more than 2^31 parameters");
        np += l->n_params;
        ns += l->n_state;
    }
    for (int i = 0; i + 1 < n; i++)
        if (!readers[i])
            return cnd_errf(CND_EINVAL,
                            "layer %d (%s) is never read: every node but the last must feed "
                            "a later one",
                            i + 1, cnd_layer_ops(m->layers[i].type)->name);
    cnd_shape_t cur = m->layers[n - 1].out;
    if (cur.h != 1 || cur.w != 1)
        return cnd_errf(CND_EINVAL,
                        "the last layer outputs %dx%dx%d; end with flatten/gap and "
                        "a dense layer so the model produces class scores",
                        cur.c, cur.h, cur.w);
    /* Layouts (layer.h): the input is NCHW, which is also CBHW when it has one channel. */
    int in_cbhw = in.c == 1 && (size_t)in.h * in.w > 1;
    for (int i = 0; i < n; i++) {
        cnd_layer_t *l = &m->layers[i];
        l->in_cbhw = l->src[0] < 0 ? in_cbhw : m->layers[l->src[0]].out_cbhw;
        if (l->n_src == 2) l->in2_cbhw = l->src[1] < 0 ? in_cbhw : m->layers[l->src[1]].out_cbhw;
        if (l->type == CND_L_DENSE && l->in_cbhw && l->in.c > 1)
            return cnd_errf(CND_EINVAL,
                            "layer %d (dense) follows a %dx%dx%d spatial output: put "
                            "flatten or gap before it",
                            i + 1, l->in.c, l->in.h, l->in.w);
        if (l->type == CND_L_CONV2D || l->type == CND_L_GCONV)
            l->out_cbhw = 1;
        else if (l->type == CND_L_DENSE || l->type == CND_L_FLATTEN || l->type == CND_L_GAP)
            l->out_cbhw = 0;
        else
            l->out_cbhw = l->in_cbhw;
        if (l->type == CND_L_FLATTEN && (!l->in_cbhw || l->in.c == 1))
            l->alias = 1; /* flattening NCHW is the identity on the bytes */
        /* A relu right after a conv2d/dense that only it reads rectifies that output in place;
         * another reader of the conv would see rectified values. */
        if ((l->type == CND_L_CONV2D || l->type == CND_L_GCONV || l->type == CND_L_DENSE) &&
            i + 1 < n && m->layers[i + 1].type == CND_L_RELU && m->layers[i + 1].src[0] == i &&
            readers[i] == 1) {
            l->fuse_relu = 1;
            m->layers[i + 1].alias = 1;
        }
        /* likewise a relu6 after a batchnorm (layer_batchnorm.c); relu6 exists only since
         * graphs, so no earlier model changes */
        if (l->type == CND_L_BATCHNORM && i + 1 < n && m->layers[i + 1].type == CND_L_RELU6 &&
            m->layers[i + 1].src[0] == i && readers[i] == 1) {
            l->fuse_relu = 6;
            m->layers[i + 1].alias = 1;
        }
        /* conv2d [relu] maxpool(2) over an even output: the pool runs inside the conv in
         * training (layer.h); sequential models only (the graph backward pass keeps every
         * node's output) */
        int p = i + 1 + l->fuse_relu;
        if (!m->graph && l->type == CND_L_CONV2D && p < n && m->layers[p].type == CND_L_MAXPOOL &&
            m->layers[p].p.pool.k == 2 && m->layers[p].p.pool.stride == 2 && l->out.h % 2 == 0 &&
            l->out.w % 2 == 0) {
            l->fuse_pool = p;
            m->layers[p].pool_fused = 1;
        }
    }
    m->first_param_layer = n;
    for (int i = n - 1; i >= 0; i--)
        if (m->layers[i].n_params) m->first_param_layer = i;
    if (m->layers[n - 1].out_cbhw && cur.c > 1)
        return cnd_errf(CND_EINVAL, "the last layer keeps a spatial layout; end with flatten, "
                                    "gap or dense");
    m->n_classes = cur.c;
    m->num_params = np;
    m->num_state = ns;
    return 0;
}

/* Node j's name in a canonical spec: its own, "input" for the model input, else n<j>. */
static void s_node_name(const cnd_model_t *m, int j, char *out, size_t n)
{
    if (j < 0)
        snprintf(out, n, "input");
    else if (m->layers[j].name[0])
        snprintf(out, n, "%s", m->layers[j].name);
    else
        snprintf(out, n, "n%d", j);
}

/* Node i's canonical spec text, with the graph notation: "@SRC " when it does not read the node
 * before it, "NAME=" when it is named or read from further on, "add(@A[,@B])". */
static void s_node_token(const cnd_model_t *m, int i, const char *named, char *out, size_t n)
{
    const cnd_layer_t *l = &m->layers[i];
    char tok[96], a[24], b[24], nm[32] = "";
    cnd_layer_spec(l, tok, sizeof tok);
    if (named[i]) {
        s_node_name(m, i, a, sizeof a);
        snprintf(nm, sizeof nm, "%s=", a);
    }
    s_node_name(m, l->src[0], a, sizeof a);
    if (l->n_src == 2) {
        s_node_name(m, l->src[1], b, sizeof b);
        if (l->src[0] == i - 1)
            snprintf(out, n, "%s%s(@%s)", nm, tok, b);
        else
            snprintf(out, n, "%s%s(@%s,@%s)", nm, tok, a, b);
    } else if (l->src[0] != i - 1) {
        snprintf(out, n, "@%s %s%s", a, nm, tok);
    } else {
        snprintf(out, n, "%s%s", nm, tok);
    }
}

static int s_build(cnd_model_t *m, const char *spec, cnd_shape_t in)
{
    int rc = s_plan(m, spec, in);
    if (rc) return rc;
    size_t np = m->num_params, ns = m->num_state, speclen = 0;
    char tok[160], named[CND_SPEC_MAX_LAYERS] = {0};
    int n = m->n_layers;
    for (int i = 0; i < n; i++) { /* nodes a canonical spec must name */
        const cnd_layer_t *l = &m->layers[i];
        named[i] |= l->name[0] != 0;
        if (l->src[0] >= 0 && l->src[0] != i - 1) named[l->src[0]] = 1;
        if (l->n_src == 2 && l->src[1] >= 0) named[l->src[1]] = 1;
    }
    for (int i = 0; i < n; i++) {
        s_node_token(m, i, named, tok, sizeof tok);
        speclen += strlen(tok) + 1;
    }
    m->spec = malloc(speclen + 1);
    m->params = calloc(np ? np : 1, sizeof(float));
    m->grads = calloc(np ? np : 1, sizeof(float));
    m->state = calloc(ns ? ns : 1, sizeof(float));
    m->norm_mean = calloc((size_t)in.c, sizeof(float));
    m->norm_std = malloc((size_t)in.c * sizeof(float));
    if (!m->spec || !m->params || !m->grads || !m->state || !m->norm_mean || !m->norm_std)
        return CND_ENOMEM;
    for (int c = 0; c < in.c; c++) m->norm_std[c] = 1.0f;
    m->spec[0] = 0;
    for (int i = 0; i < n; i++) {
        s_node_token(m, i, named, tok, sizeof tok);
        if (i) strcat(m->spec, " ");
        strcat(m->spec, tok);
    }
    return 0;
}

int cnd_model_plan(const char *spec, cnd_shape_t in, size_t *num_params, size_t *num_state)
{
    *num_params = *num_state = 0;
    cnd_model_t *m = calloc(1, sizeof *m);
    if (!m) return CND_ENOMEM;
    int rc = s_plan(m, spec, in);
    if (!rc) {
        *num_params = m->num_params;
        *num_state = m->num_state;
    }
    cnd_model_destroy(&m);
    return rc;
}

int cnd_model_new(cnd_model_t **out, const char *spec, cnd_shape_t in, uint64_t seed)
{
    *out = NULL;
    cnd_model_t *m = calloc(1, sizeof *m);
    if (!m) return CND_ENOMEM;
    int rc = s_build(m, spec, in);
    if (rc) {
        cnd_model_destroy(&m);
        return rc;
    }
    cnd_rng_t rng;
    cnd_rng_seed(&rng, seed);
    for (int i = 0; i < m->n_layers; i++) {
        cnd_layer_t *l = &m->layers[i];
        cnd_layer_ops(l->type)->init(l, m->params + l->param_off, m->state + l->state_off, &rng);
    }
    *out = m;
    return 0;
}

int cnd_model_clone(cnd_model_t **out, const cnd_model_t *src)
{
    *out = NULL;
    cnd_model_t *m = calloc(1, sizeof *m);
    if (!m) return CND_ENOMEM;
    int rc = s_build(m, src->spec, src->in);
    if (rc) goto fail;
    memcpy(m->params, src->params, src->num_params * sizeof(float));
    memcpy(m->state, src->state, src->num_state * sizeof(float));
    memcpy(m->norm_mean, src->norm_mean, (size_t)src->in.c * sizeof(float));
    memcpy(m->norm_std, src->norm_std, (size_t)src->in.c * sizeof(float));
    for (int i = 0; i < src->n_meta; i++)
        if ((rc = cnd_model_meta_set(m, src->meta[i].key, src->meta[i].val))) goto fail;
    *out = m;
    return 0;
fail:
    cnd_model_destroy(&m);
    return rc;
}

/* The most node gradients a graph backward pass holds at once: node j's gradient lives from
 * the backward step of its last reader (the first to run) to its own, so while node t runs,
 * the nodes j <= t read by a node >= t hold one each. */
static int s_graph_live(const cnd_model_t *m)
{
    int n = m->n_layers, best = 1;
    int last[CND_SPEC_MAX_LAYERS];
    for (int j = 0; j < n; j++) last[j] = j;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < m->layers[i].n_src; k++)
            if (m->layers[i].src[k] >= 0 && last[m->layers[i].src[k]] < i)
                last[m->layers[i].src[k]] = i;
    for (int t = 0; t < n; t++) {
        int c = 0;
        for (int j = 0; j <= t; j++) c += last[j] >= t;
        if (c > best) best = c;
    }
    return best;
}

int cnd_model_reserve(cnd_model_t *m, int B)
{
    /* Per-task partial gradients are sized by the thread count (pool.h). */
    int T = cnd_pool_threads();
    if (B <= m->cap_B && T == m->cap_T) return 0;
    if (B < m->cap_B) B = m->cap_B;
    s_free_work(m);
    m->acts = calloc((size_t)m->n_layers, sizeof *m->acts);
    if (!m->acts) return CND_ENOMEM;
    size_t maxact = cnd_shape_size(m->in), work = 0;
    for (int i = 0; i < m->n_layers; i++) {
        cnd_layer_t *l = &m->layers[i];
        size_t osz = cnd_shape_size(l->out);
        if (osz > maxact) maxact = osz;
        /* An alias layer's output is its input, set at each forward. */
        m->acts[i] = l->alias ? NULL : malloc((size_t)B * osz * sizeof(float));
        cnd_layer_mem_t mem = cnd_layer_ops(l->type)->mem(l, B);
        if (mem.saved) l->saved = malloc(mem.saved * sizeof(float));
        if (mem.saved2) l->saved2 = malloc(mem.saved2 * sizeof(float));
        if (mem.argmax) l->argmax = malloc(mem.argmax * sizeof(int32_t));
        if ((!l->alias && !m->acts[i]) || (mem.saved && !l->saved) || (mem.saved2 && !l->saved2) ||
            (mem.argmax && !l->argmax)) {
            s_free_work(m);
            return cnd_errf(CND_ENOMEM, "cannot allocate buffers for batch %d", B);
        }
        if (mem.work > work) work = mem.work;
    }
    m->dbuf[0] = malloc((size_t)B * maxact * sizeof(float));
    m->dbuf[1] = malloc((size_t)B * maxact * sizeof(float));
    m->work = malloc((work ? work : 1) * sizeof(float));
    int dg_ok = 1;
    if (m->graph) { /* the gradient buffers the graph backward pass needs at once */
        int live = s_graph_live(m);
        m->gpool = calloc((size_t)live, sizeof *m->gpool);
        dg_ok = m->gpool != NULL;
        for (int i = 0; dg_ok && i < live; i++) {
            dg_ok = (m->gpool[i] = malloc((size_t)B * maxact * sizeof(float))) != NULL;
            m->n_gpool += dg_ok;
        }
    }
    if (!m->dbuf[0] || !m->dbuf[1] || !m->work || !dg_ok) {
        s_free_work(m);
        return cnd_errf(CND_ENOMEM, "cannot allocate buffers for batch %d", B);
    }
    m->cap_B = B;
    m->cap_T = T;
    return 0;
}

int cnd_model_forward(cnd_model_t *m, const float *x, int B, int train, const float **logits)
{
    int rc = cnd_model_reserve(m, B);
    if (rc) return rc;
    const cnd_model_hooks_t *h = m->hooks;
    if (h && h->input) x = h->input(h->ctx, x, B);
    /* Fused conv+pool passes write only the pool's output; not with hooks, which see (and may
     * rewrite) every layer's activation. */
    int fuse = train && !h && !m->no_fuse;
    for (int i = 0; i < m->n_layers; i++) {
        cnd_layer_t *l = &m->layers[i];
        const float *in = l->src[0] < 0 ? x : m->acts[l->src[0]];
        double t0 = m->prof ? s_prof_clock(m) : 0.0;
        const float *w = m->params + l->param_off;
        if (h && h->weights && l->n_weights && !l->alias) w = h->weights(h->ctx, i, w);
        if (l->alias) /* shares its input's bytes; never written through */
            m->acts[i] = (float *)in;
        else if (l->n_src == 2)
            cnd_merge_forward(l, m->acts[i], in, l->src[1] < 0 ? x : m->acts[l->src[1]], B);
        else if (fuse && l->pool_fused)
            ; /* computed with the conv before it */
        else if (fuse && l->fuse_pool)
            cnd_conv2d_forward_pool(l, m->acts[l->fuse_pool],
                                    (uint8_t *)m->layers[l->fuse_pool].argmax, in, w, m->work, B);
        else
            cnd_layer_ops(l->type)->forward(l, m->acts[i], in, w, m->state + l->state_off, m->work,
                                            B, train);
        /* a hook may rewrite an alias layer's output too: it is its input's buffer, in place */
        if (h && h->act_forward) h->act_forward(h->ctx, i, m->acts[i], B, train);
        if (m->prof) m->prof[2 * i] += s_prof_clock(m) - t0;
    }
    m->last_fused = fuse;
    m->last_in = train ? x : NULL;
    m->last_B = train ? B : 0;
    *logits = m->acts[m->n_layers - 1];
    return 0;
}

/* dst[0..n) += src[0..n) */
static void s_add_into(float *dst, const float *src, size_t n)
{
    for (size_t k = 0; k < n; k++) dst[k] += src[k];
}

/* The backward pass of a graph model. Node i's output gradient g[i] is complete once every
 * reader of i (all later nodes) has run, so one reverse walk suffices. Gradients live in
 * buffers of a small pool (s_graph_live), taken when a node's first reader writes its gradient
 * and given back once the node has run: recently used, so cache-warm, and the memory of the
 * widest point of the graph rather than of all its nodes. The first reader to reach a node
 * writes its buffer (layers write din with =), later readers write to a scratch buffer and add
 * it in: a node read twice (a residual's input) gets the sum. An alias node (fused relu,
 * identity flatten) hands its buffer to its source. Gradients are computed only towards nodes
 * with a parameter at or before them. */
static void s_backward_graph(cnd_model_t *m, const float *dlogits)
{
    int n = m->n_layers, B = m->last_B, nfree = m->n_gpool;
    const cnd_model_hooks_t *h = m->hooks;
    float *g[CND_SPEC_MAX_LAYERS] = {0}, *freel[CND_SPEC_MAX_LAYERS];
    char needs[CND_SPEC_MAX_LAYERS] = {0};
    memcpy(freel, m->gpool, (size_t)nfree * sizeof *freel);
    for (int i = 0; i < n; i++) { /* needs[i]: node i or a node it depends on has parameters */
        const cnd_layer_t *l = &m->layers[i];
        needs[i] = l->n_params > 0;
        for (int k = 0; k < l->n_src; k++)
            if (l->src[k] >= 0) needs[i] |= needs[l->src[k]];
    }
    assert(nfree > 0);
    g[n - 1] = freel[--nfree];
    memcpy(g[n - 1], dlogits, (size_t)B * m->n_classes * sizeof(float));
    for (int i = n - 1; i >= 0; i--) {
        cnd_layer_t *l = &m->layers[i];
        float *dout = g[i];
        if (!dout) continue;
        g[i] = NULL;
        if (!needs[i]) {
            freel[nfree++] = dout;
            continue;
        }
        size_t nin = (size_t)B * cnd_shape_size(l->in);
        if (h && h->act_backward) h->act_backward(h->ctx, i, dout, B);
        int s0 = l->src[0], s1 = l->n_src == 2 ? l->src[1] : -1;
        if (l->alias) { /* the gradient passes unchanged to the source */
            if (s0 >= 0 && !g[s0]) {
                g[s0] = dout;
                continue;
            }
            if (s0 >= 0) s_add_into(g[s0], dout, nin);
            freel[nfree++] = dout;
            continue;
        }
        /* where each input's gradient goes: its node's buffer, or a scratch to add in */
        float *d0 = NULL, *d1 = NULL;
        int add0 = 0, add1 = 0;
        if (s0 >= 0 && needs[s0]) {
            add0 = g[s0] != NULL;
            if (!add0) {
                assert(nfree > 0);
                g[s0] = freel[--nfree];
            }
            d0 = add0 ? m->dbuf[0] : g[s0];
        }
        if (s1 >= 0 && needs[s1]) {
            add1 = g[s1] != NULL;
            if (!add1) {
                assert(nfree > 0);
                g[s1] = freel[--nfree];
            }
            d1 = add1 ? m->dbuf[1] : g[s1];
        }
        double t0 = m->prof ? s_prof_clock(m) : 0.0;
        if (l->n_src == 2) {
            cnd_merge_backward(l, d0, d1, dout, B);
        } else {
            const float *w = m->params + l->param_off;
            if (h && h->weights && l->n_weights) w = h->weights(h->ctx, i, w);
            cnd_layer_ops(l->type)->backward(l, d0, m->grads + l->param_off, dout,
                                             s0 < 0 ? m->last_in : m->acts[s0], m->acts[i], w,
                                             m->work, B);
        }
        if (add0) s_add_into(g[s0], d0, nin);
        if (add1) s_add_into(g[s1], d1, (size_t)B * cnd_shape_size(l->in2));
        freel[nfree++] = dout;
        if (m->prof) m->prof[2 * i + 1] += s_prof_clock(m) - t0;
    }
}

void cnd_model_backward(cnd_model_t *m, const float *dlogits)
{
    if (m->graph) {
        s_backward_graph(m, dlogits);
        return;
    }
    const float *dout = dlogits;
    int B = m->last_B;
    const cnd_model_hooks_t *h = m->hooks;
    if (h && h->act_backward) { /* the hook edits gradients in place: copy the caller's */
        memcpy(m->dbuf[1], dlogits, (size_t)B * m->n_classes * sizeof(float));
        dout = m->dbuf[1];
    }
    for (int i = m->n_layers - 1; i >= m->first_param_layer; i--) {
        cnd_layer_t *l = &m->layers[i];
        /* before skipping an alias: a fused relu's fake-quantization mask applies here */
        if (h && h->act_backward) h->act_backward(h->ctx, i, (float *)(uintptr_t)dout, B);
        if (l->alias) continue; /* identity, or a relu whose mask layer i-1 applies */
        if (m->last_fused && l->pool_fused) continue; /* its conv takes the pooled gradient */
        const float *in = i ? m->acts[i - 1] : m->last_in;
        /* The input gradient is only needed if a layer before this one has parameters. */
        float *din =
            i > m->first_param_layer ? (dout == m->dbuf[0] ? m->dbuf[1] : m->dbuf[0]) : NULL;
        const float *w = m->params + l->param_off;
        if (h && h->weights && l->n_weights) w = h->weights(h->ctx, i, w);
        double t0 = m->prof ? s_prof_clock(m) : 0.0;
        if (m->last_fused && l->fuse_pool)
            cnd_conv2d_backward_pool(
                l, din, m->grads + l->param_off, dout, in, m->acts[l->fuse_pool],
                (const uint8_t *)m->layers[l->fuse_pool].argmax, w, m->work, B);
        else
            cnd_layer_ops(l->type)->backward(l, din, m->grads + l->param_off, dout, in, m->acts[i],
                                             w, m->work, B);
        if (m->prof) m->prof[2 * i + 1] += s_prof_clock(m) - t0;
        dout = din;
    }
}

void cnd_model_zero_grad(cnd_model_t *m)
{
    memset(m->grads, 0, m->num_params * sizeof(float));
}

uint64_t cnd_model_macs(const cnd_model_t *m)
{
    uint64_t t = 0;
    for (int i = 0; i < m->n_layers; i++)
        t += cnd_layer_ops(m->layers[i].type)->macs(&m->layers[i]);
    return t;
}

int cnd_model_meta_set(cnd_model_t *m, const char *key, const char *val)
{
    for (int i = 0; i < m->n_meta; i++)
        if (!strcmp(m->meta[i].key, key)) {
            char *v = strdup(val);
            if (!v) return CND_ENOMEM;
            free(m->meta[i].val);
            m->meta[i].val = v;
            return 0;
        }
    if (m->n_meta == CND_META_MAX)
        return cnd_errf(CND_ERANGE, "model metadata is full (%d entries)", CND_META_MAX);
    char *k = strdup(key), *v = strdup(val);
    if (!k || !v) {
        free(k);
        free(v);
        return CND_ENOMEM;
    }
    m->meta[m->n_meta].key = k;
    m->meta[m->n_meta].val = v;
    m->n_meta++;
    return 0;
}

const char *cnd_model_meta_get(const cnd_model_t *m, const char *key)
{
    if (!m) return NULL;
    for (int i = 0; i < m->n_meta; i++)
        if (!strcmp(m->meta[i].key, key)) return m->meta[i].val;
    return NULL;
}

void cnd_model_normalize(const cnd_model_t *m, float *x, size_t n)
{
    size_t hw = (size_t)m->in.h * m->in.w;
    for (size_t s = 0; s < n; s++)
        for (int c = 0; c < m->in.c; c++) {
            float mu = m->norm_mean[c], inv = 1.0f / m->norm_std[c];
            float *p = x + (s * (size_t)m->in.c + (size_t)c) * hw;
            for (size_t i = 0; i < hw; i++) p[i] = (p[i] - mu) * inv;
        }
}

int cnd_model_act_nchw(const cnd_model_t *m, int i, int B, float *dst)
{
    if (i < 0 || i >= m->n_layers || B > m->cap_B || !m->acts)
        return cnd_errf(CND_EINVAL, "no activation %d for batch %d", i, B);
    const cnd_layer_t *l = &m->layers[i];
    int conv = l->alias && l->type == CND_L_RELU && l->src[0] >= 0 ? l->src[0] : i; /* a fused
                                                            relu's bytes are its conv's */
    if (m->last_fused && m->layers[conv].fuse_pool)
        return cnd_errf(CND_EINVAL,
                        "activation %d was not kept by the last (fused) training "
                        "pass; run an inference pass to read it",
                        i);
    cnd_shape_t o = l->out;
    size_t hw = (size_t)o.h * o.w;
    int cbhw = l->out_cbhw;
    if (!cbhw || o.c == 1) {
        memcpy(dst, m->acts[i], (size_t)B * cnd_shape_size(o) * sizeof(float));
        return 0;
    }
    for (int b = 0; b < B; b++)
        for (int c = 0; c < o.c; c++)
            memcpy(dst + ((size_t)b * o.c + c) * hw, m->acts[i] + ((size_t)c * B + b) * hw,
                   hw * sizeof(float));
    return 0;
}

int cnd_model_profile_begin(cnd_model_t *m, int cpu)
{
    m->prof_cpu = cpu;
    free(m->prof);
    m->prof = calloc(2 * (size_t)m->n_layers, sizeof(double));
    return m->prof ? 0 : CND_ENOMEM;
}

void cnd_model_profile_print(const cnd_model_t *m)
{
    if (!m->prof) return;
    double tot = 0;
    for (int i = 0; i < 2 * m->n_layers; i++) tot += m->prof[i];
    fprintf(stderr, "per-layer %s time (forward / backward, seconds; %.2f s in layers):\n",
            m->prof_cpu ? "CPU" : "wall", tot);
    for (int i = 0; i < m->n_layers; i++) {
        char tok[96];
        cnd_layer_spec(&m->layers[i], tok, sizeof tok);
        fprintf(stderr, "  %2d %-24s %8.3f %8.3f  %5.1f%%%s\n", i, tok, m->prof[2 * i],
                m->prof[2 * i + 1],
                tot > 0 ? 100.0 * (m->prof[2 * i] + m->prof[2 * i + 1]) / tot : 0,
                m->layers[i].alias || m->layers[i].pool_fused ? "  (fused)" : "");
    }
}

int cnd_model_is_graph(const cnd_model_t *m, char *what, size_t n)
{
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        if (l->type == CND_L_GCONV || l->type == CND_L_RELU6 || l->type == CND_L_HARDSWISH ||
            l->type == CND_L_ADD || l->type == CND_L_CONCAT) {
            char tok[96];
            cnd_layer_spec(l, tok, sizeof tok);
            if (what) snprintf(what, n, "layer %d (%s)", i + 1, tok);
            return 1;
        }
        if (l->n_src != 1 || l->src[0] != i - 1 || l->name[0]) {
            if (what)
                snprintf(what, n, "a graph (layer %d reads %s%s)", i + 1,
                         l->src[0] < 0 ? "the input" : "another layer",
                         l->name[0] ? " or is named" : "");
            return 1;
        }
    }
    return 0;
}

int cnd_model_spec_is_graph(const char *spec, cnd_shape_t in, char *what, size_t n)
{
    cnd_model_t *m = calloc(1, sizeof *m);
    if (!m) return CND_ENOMEM;
    int rc = s_plan(m, spec, in);
    if (!rc) rc = cnd_model_is_graph(m, what, n);
    cnd_model_destroy(&m);
    return rc;
}

int cnd_model_refuse_graph(const cnd_model_t *m, const char *what)
{
    char node[128];
    if (!cnd_model_is_graph(m, node, sizeof node)) return 0;
    return cnd_errf(CND_EINVAL,
                    "%s does not handle graph models or their layers yet: the model has %s "
                    "(docs/layers.md lists what graph models can do)",
                    what, node);
}
