/*
 * prune.c: structured pruning (see prune.h): the channel analysis of a model's graph, the
 * importance scores, the selection, and the narrower model with the kept parameters.
 *
 * Invariant of the analysis: every segment of a node's map is a whole space in its original
 * channel order, so an index into a node's output is (segment, channel, position in hw), and a
 * pruned node's output is the original's with the removed channels left out, in order. That is
 * what lets cnd_prune_apply copy parameters by index lists alone.
 */
#include "prune.h"
#include "loss.h"
#include "modelfile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cnd_prune_destroy(cnd_prune_plan_t **pp)
{
    if (!pp || !*pp) return;
    cnd_prune_plan_t *p = *pp;
    for (int s = 0; s < p->n_spaces && p->sp; s++) {
        free(p->sp[s].score);
        free(p->sp[s].keep);
    }
    free(p->sp);
    free(p->out);
    free(p);
    *pp = NULL;
}

int cnd_prune_group(const cnd_prune_plan_t *p, int s)
{
    while (p->sp[s].parent != s) s = p->sp[s].parent;
    return s;
}

/* A new space of `size` channels made by node `node`; its index, or -1 out of memory. */
static int s_new_space(cnd_prune_plan_t *p, int size, int node, int frozen)
{
    cnd_prune_space_t *sp = &p->sp[p->n_spaces];
    sp->size = size;
    sp->frozen = frozen;
    sp->parent = p->n_spaces;
    sp->node = node;
    sp->n_keep = size;
    sp->score = calloc((size_t)size, sizeof(double));
    sp->keep = malloc((size_t)size);
    if (!sp->score || !sp->keep) {
        free(sp->score);
        free(sp->keep);
        return -1;
    }
    memset(sp->keep, 1, (size_t)size);
    return p->n_spaces++;
}

static void s_union(cnd_prune_plan_t *p, int a, int b)
{
    a = cnd_prune_group(p, a);
    b = cnd_prune_group(p, b);
    if (a == b) return;
    if (b < a) {
        int t = a;
        a = b;
        b = t;
    }
    p->sp[b].parent = a;
    p->sp[a].frozen |= p->sp[b].frozen;
}

static void s_freeze_map(cnd_prune_plan_t *p, const cnd_prune_map_t *mp)
{
    for (int k = 0; k < mp->n_seg; k++) p->sp[cnd_prune_group(p, mp->seg[k].space)].frozen = 1;
}

static int s_flat(const cnd_prune_map_t *mp)
{
    for (int k = 0; k < mp->n_seg; k++)
        if (mp->seg[k].hw != 1) return 1;
    return 0;
}

/* A residual add: its two inputs must be the same spaces, segment by segment. */
static int s_couple(cnd_prune_plan_t *p, const cnd_prune_map_t *a, const cnd_prune_map_t *b, int i,
                    const char *tok)
{
    int ok = a->n_seg == b->n_seg;
    for (int k = 0; ok && k < a->n_seg; k++)
        ok = a->seg[k].hw == b->seg[k].hw &&
             p->sp[a->seg[k].space].size == p->sp[b->seg[k].space].size;
    if (!ok)
        return cnd_errf(CND_EINVAL,
                        "layer %d (%s) cannot be pruned: its two inputs are made of different "
                        "channel groups (a concat on one side only, or concats split differently), "
                        "so their channels cannot be removed in pairs",
                        i + 1, tok);
    for (int k = 0; k < a->n_seg; k++) s_union(p, a->seg[k].space, b->seg[k].space);
    return 0;
}

/* Node i's output map from its inputs' (one idea: a case per layer kind). */
static int s_node_map(cnd_prune_plan_t *p, const cnd_model_t *m, int i, const cnd_prune_map_t *in0)
{
    const cnd_layer_t *l = &m->layers[i];
    cnd_prune_map_t *o = &p->out[i];
    char tok[96];
    cnd_layer_spec(l, tok, sizeof tok);
    switch (l->type) {
    case CND_L_CONV2D:
    case CND_L_DENSE: {
        if (l->type == CND_L_CONV2D && s_flat(in0))
            return cnd_errf(CND_EINVAL,
                            "layer %d (%s) cannot be pruned: it reads flattened features", i + 1,
                            tok);
        int s = s_new_space(p, l->out.c, i, 0);
        if (s < 0) return CND_ENOMEM;
        o->n_seg = 1;
        o->seg[0] = (cnd_prune_seg_t){s, 1};
        return 0;
    }
    case CND_L_GCONV: {
        if (s_flat(in0))
            return cnd_errf(CND_EINVAL,
                            "layer %d (%s) cannot be pruned: it reads flattened features", i + 1,
                            tok);
        if (l->p.conv.groups == l->in.c && l->p.conv.oc == l->in.c) { /* depthwise: 1:1 */
            *o = *in0;
            return 0;
        }
        s_freeze_map(p, in0); /* the groups would have to shrink together: left whole */
        int s = s_new_space(p, l->out.c, i, 1);
        if (s < 0) return CND_ENOMEM;
        o->n_seg = 1;
        o->seg[0] = (cnd_prune_seg_t){s, 1};
        return 0;
    }
    case CND_L_FLATTEN:
        *o = *in0;
        for (int k = 0; k < o->n_seg; k++) o->seg[k].hw *= l->in.h * l->in.w;
        return 0;
    case CND_L_ADD: {
        const cnd_prune_map_t *in1 = l->src[1] < 0 ? &p->out[p->n_nodes] : &p->out[l->src[1]];
        *o = *in0;
        return s_couple(p, in0, in1, i, tok);
    }
    case CND_L_CONCAT: {
        const cnd_prune_map_t *in1 = l->src[1] < 0 ? &p->out[p->n_nodes] : &p->out[l->src[1]];
        if (s_flat(in0) || s_flat(in1))
            return cnd_errf(CND_EINVAL,
                            "layer %d (%s) cannot be pruned: it concatenates flattened features",
                            i + 1, tok);
        if (in0->n_seg + in1->n_seg > CND_PRUNE_MAX_SEG)
            return cnd_errf(CND_EINVAL,
                            "layer %d (%s) cannot be pruned: its channels come from more than %d "
                            "concatenated layers",
                            i + 1, tok, CND_PRUNE_MAX_SEG);
        *o = *in0;
        for (int k = 0; k < in1->n_seg; k++) o->seg[o->n_seg++] = in1->seg[k];
        return 0;
    }
    default: /* relu, relu6, hardswish, tanh, pools, gap, batchnorm keep their channels */
        *o = *in0;
        return 0;
    }
}

int cnd_prune_analyze(cnd_prune_plan_t **out, const cnd_model_t *m)
{
    *out = NULL;
    int n = m->n_layers, rc = CND_ENOMEM;
    cnd_prune_plan_t *p = calloc(1, sizeof *p);
    if (!p) return CND_ENOMEM;
    p->n_nodes = n;
    p->out = calloc((size_t)n + 1, sizeof *p->out); /* out[n]: the model input */
    p->sp = calloc((size_t)n + 1, sizeof *p->sp);
    if (!p->out || !p->sp) goto fail;
    int s0 = s_new_space(p, m->in.c, -1, 1);
    if (s0 < 0) goto fail;
    p->out[n].n_seg = 1;
    p->out[n].seg[0] = (cnd_prune_seg_t){s0, 1};
    for (int i = 0; i < n; i++) {
        int src = m->layers[i].src[0];
        if ((rc = s_node_map(p, m, i, src < 0 ? &p->out[n] : &p->out[src]))) goto fail;
    }
    s_freeze_map(p, &p->out[n - 1]);      /* the class scores */
    for (int s = 0; s < p->n_spaces; s++) /* frozen flags gathered on the roots */
        if (p->sp[s].frozen) p->sp[cnd_prune_group(p, s)].frozen = 1;
    *out = p;
    return 0;
fail:
    cnd_prune_destroy(&p);
    return rc;
}

/* Old indices of the kept entries of map mp, each channel spanning seg.hw * unit values;
 * returns their count (idx may be NULL to count only). */
static size_t s_kept_index(const cnd_prune_plan_t *p, const cnd_prune_map_t *mp, int unit,
                           size_t *idx)
{
    size_t n = 0, off = 0;
    for (int k = 0; k < mp->n_seg; k++) {
        const cnd_prune_space_t *r = &p->sp[cnd_prune_group(p, mp->seg[k].space)];
        size_t w = (size_t)mp->seg[k].hw * (size_t)unit;
        for (int c = 0; c < r->size; c++, off += w)
            if (r->keep[c])
                for (size_t q = 0; q < w; q++, n++)
                    if (idx) idx[n] = off + q;
    }
    return n;
}

void cnd_prune_node_keep(const cnd_prune_plan_t *p, const cnd_model_t *m, int i, uint8_t *keep)
{
    const cnd_prune_map_t *mp = &p->out[i];
    size_t off = 0;
    (void)m;
    for (int k = 0; k < mp->n_seg; k++) {
        const cnd_prune_space_t *r = &p->sp[cnd_prune_group(p, mp->seg[k].space)];
        size_t w = (size_t)mp->seg[k].hw;
        for (int c = 0; c < r->size; c++, off += w) memset(keep + off, r->keep[c], w);
    }
}

/* The importance of each output filter of producer node i (conv2d, dense), added into its
 * space's root scores. g: the summed gradients (Taylor), or NULL for norms. */
static void s_score_node(cnd_prune_plan_t *p, const cnd_model_t *m, int i, cnd_prune_score_t kind,
                         const float *g)
{
    const cnd_layer_t *l = &m->layers[i];
    cnd_prune_space_t *r = &p->sp[cnd_prune_group(p, p->out[i].seg[0].space)];
    int OC = l->out.c;
    size_t row = l->n_weights / (size_t)OC;
    const float *w = m->params + l->param_off;
    for (int o = 0; o < OC; o++) {
        double s = 0.0;
        for (size_t j = 0; j < row; j++) {
            double v = w[(size_t)o * row + j];
            if (kind == CND_PRUNE_L1)
                s += fabs(v);
            else if (kind == CND_PRUNE_L2)
                s += v * v;
            else
                s += fabs(v * g[l->param_off + (size_t)o * row + j]);
        }
        if (kind == CND_PRUNE_TAYLOR)
            s += fabs((double)w[l->n_weights + o] * g[l->param_off + l->n_weights + o]);
        r->score[o] += kind == CND_PRUNE_L2 ? sqrt(s) : s;
    }
}

/* Cross-entropy gradients of a copy of m, summed over all of calib, into *g (num_params). */
static int s_taylor_grads(float **g, const cnd_model_t *m, const cnd_dataset_t *calib, int batch)
{
    *g = NULL;
    if (!calib || !calib->n)
        return cnd_errf(CND_EINVAL, "the Taylor score needs calibration data (--data)");
    if (calib->n_classes > m->n_classes || cnd_shape_size(calib->shape) != cnd_shape_size(m->in))
        return cnd_errf(CND_EINVAL, "calibration data %s does not fit the model", calib->name);
    cnd_model_t *c = NULL;
    int rc = cnd_model_clone(&c, m), K = m->n_classes;
    if (rc) return rc;
    float *dl = malloc((size_t)batch * (size_t)K * sizeof(float));
    if (!dl) {
        cnd_model_destroy(&c);
        return CND_ENOMEM;
    }
    cnd_model_zero_grad(c);
    size_t D = cnd_shape_size(m->in);
    for (size_t b0 = 0; b0 < calib->n && !rc; b0 += (size_t)batch) {
        int B = (int)(calib->n - b0 < (size_t)batch ? calib->n - b0 : (size_t)batch);
        const float *lg;
        if ((rc = cnd_model_forward(c, calib->x + b0 * D, B, 1, &lg))) break;
        int correct;
        cnd_loss_xent(dl, lg, calib->y + b0, B, K, &correct);
        cnd_model_backward(c, dl);
    }
    free(dl);
    if (!rc) {
        *g = c->grads;
        c->grads = NULL;
    }
    cnd_model_destroy(&c);
    return rc;
}

int cnd_prune_score(cnd_prune_plan_t *p, const cnd_model_t *m, cnd_prune_score_t kind,
                    const cnd_dataset_t *calib, int batch)
{
    float *g = NULL;
    int rc;
    if (kind == CND_PRUNE_TAYLOR && (rc = s_taylor_grads(&g, m, calib, batch))) return rc;
    for (int s = 0; s < p->n_spaces; s++)
        if (p->sp[s].parent == s) memset(p->sp[s].score, 0, (size_t)p->sp[s].size * sizeof(double));
    for (int i = 0; i < m->n_layers; i++) {
        cnd_layer_type_t t = m->layers[i].type;
        if (t == CND_L_CONV2D || t == CND_L_DENSE) s_score_node(p, m, i, kind, g);
    }
    free(g);
    return 0;
}

void cnd_prune_select(cnd_prune_plan_t *p, double ratio)
{
    for (int s = 0; s < p->n_spaces; s++) {
        cnd_prune_space_t *r = &p->sp[s];
        if (r->parent != s) continue;
        int n = r->frozen ? r->size : (int)lround((double)r->size * (1.0 - ratio));
        if (n < 1) n = 1;
        if (n > r->size) n = r->size;
        memset(r->keep, 0, (size_t)r->size);
        for (int k = 0; k < n; k++) { /* the best not yet kept; sizes are small */
            int best = -1;
            for (int c = 0; c < r->size; c++)
                if (!r->keep[c] && (best < 0 || r->score[c] > r->score[best])) best = c;
            r->keep[best] = 1;
        }
        r->n_keep = n;
    }
}

/* Node i of the pruned model as a spec token, with the graph notation of model.c's canonical
 * spec (n<j> names a referenced unnamed node j). */
static void s_token(const cnd_model_t *m, const cnd_layer_t *l, int i, const char *named, char *out,
                    size_t n)
{
    char tok[96], a[24], b[24], nm[32] = "";
    cnd_layer_spec(l, tok, sizeof tok);
    if (named[i]) {
        if (l->name[0])
            snprintf(nm, sizeof nm, "%s=", l->name);
        else
            snprintf(nm, sizeof nm, "n%d=", i);
    }
    for (int k = 0; k < l->n_src; k++) {
        int j = l->src[k];
        char *d = k ? b : a;
        if (j < 0)
            snprintf(d, sizeof a, "input");
        else if (m->layers[j].name[0])
            snprintf(d, sizeof a, "%s", m->layers[j].name);
        else
            snprintf(d, sizeof a, "n%d", j);
    }
    if (l->n_src == 2 && l->src[0] == i - 1)
        snprintf(out, n, "%s%s(@%s)", nm, tok, b);
    else if (l->n_src == 2)
        snprintf(out, n, "%s%s(@%s,@%s)", nm, tok, a, b);
    else if (l->src[0] != i - 1)
        snprintf(out, n, "@%s %s%s", a, nm, tok);
    else
        snprintf(out, n, "%s%s", nm, tok);
}

/* The pruned architecture: each conv2d and dense as wide as its kept channels, a depthwise
 * conv2d as its input. *spec is owned by the caller. */
static int s_pruned_spec(char **spec, const cnd_prune_plan_t *p, const cnd_model_t *m)
{
    int n = m->n_layers;
    char named[CND_SPEC_MAX_LAYERS] = {0}, tok[192];
    for (int i = 0; i < n; i++) {
        const cnd_layer_t *l = &m->layers[i];
        named[i] |= l->name[0] != 0;
        if (l->src[0] >= 0 && l->src[0] != i - 1) named[l->src[0]] = 1;
        if (l->n_src == 2 && l->src[1] >= 0) named[l->src[1]] = 1;
    }
    size_t cap = 256, len = 0;
    char *s = malloc(cap);
    if (!s) return CND_ENOMEM;
    s[0] = 0;
    for (int i = 0; i < n; i++) {
        cnd_layer_t l = m->layers[i];
        int kept = (int)s_kept_index(p, &p->out[i], 1, NULL);
        if (l.type == CND_L_CONV2D) l.p.conv.oc = kept;
        if (l.type == CND_L_DENSE) l.p.dense.out = kept;
        if (l.type == CND_L_GCONV && l.p.conv.groups == l.in.c && l.p.conv.oc == l.in.c)
            l.p.conv.oc = l.p.conv.groups = kept;
        s_token(m, &l, i, named, tok, sizeof tok);
        size_t tl = strlen(tok);
        if (len + tl + 2 > cap) {
            char *t = realloc(s, cap = 2 * (cap + tl));
            if (!t) {
                free(s);
                return CND_ENOMEM;
            }
            s = t;
        }
        if (i) s[len++] = ' ';
        memcpy(s + len, tok, tl + 1);
        len += tl;
    }
    *spec = s;
    return 0;
}

/* Copies node i's kept parameters and state from m into pm, given the old index lists of its
 * kept inputs (ki, nki of them) and outputs (ko, nko). */
static int s_copy_layer(cnd_model_t *pm, const cnd_model_t *m, int i, const size_t *ki, size_t nki,
                        const size_t *ko, size_t nko)
{
    const cnd_layer_t *l = &m->layers[i], *nl = &pm->layers[i];
    const float *w = m->params + l->param_off;
    float *nw = pm->params + nl->param_off;
    if (l->type == CND_L_DENSE || l->type == CND_L_CONV2D) {
        size_t C = l->type == CND_L_DENSE ? cnd_shape_size(l->in) : (size_t)l->in.c;
        size_t KK = l->type == CND_L_DENSE ? 1 : (size_t)l->p.conv.k * (size_t)l->p.conv.k;
        if (nl->n_weights != nko * nki * KK || nl->n_params != nl->n_weights + nko) return -1;
        for (size_t r = 0; r < nko; r++) {
            for (size_t c = 0; c < nki; c++)
                memcpy(nw + (r * nki + c) * KK, w + (ko[r] * C + ki[c]) * KK, KK * sizeof(float));
            nw[nl->n_weights + r] = w[l->n_weights + ko[r]];
        }
    } else if (l->type == CND_L_GCONV && nl->n_params != l->n_params) { /* depthwise */
        size_t KK = (size_t)l->p.conv.k * (size_t)l->p.conv.k;
        if (nl->n_weights != nko * KK) return -1;
        for (size_t r = 0; r < nko; r++) {
            memcpy(nw + r * KK, w + ko[r] * KK, KK * sizeof(float));
            nw[nl->n_weights + r] = w[l->n_weights + ko[r]];
        }
    } else if (l->type == CND_L_BATCHNORM) {
        size_t C = (size_t)l->in.c;
        const float *st = m->state + l->state_off;
        float *nst = pm->state + nl->state_off;
        if (nl->n_params != 2 * nko || nl->n_state != 2 * nko) return -1;
        for (size_t r = 0; r < nko; r++) {
            nw[r] = w[ko[r]];
            nw[nko + r] = w[C + ko[r]];
            nst[r] = st[ko[r]];
            nst[nko + r] = st[C + ko[r]];
        }
    } else { /* parameter-free, or a grouped conv2d left whole */
        if (nl->n_params != l->n_params || nl->n_state != l->n_state) return -1;
        memcpy(nw, w, l->n_params * sizeof(float));
        memcpy(pm->state + nl->state_off, m->state + l->state_off, l->n_state * sizeof(float));
    }
    return 0;
}

int cnd_prune_apply(cnd_model_t **out, const cnd_prune_plan_t *p, const cnd_model_t *m)
{
    *out = NULL;
    char *spec = NULL;
    cnd_model_t *pm = NULL;
    size_t maxn = cnd_shape_size(m->in);
    for (int i = 0; i < m->n_layers; i++)
        if (cnd_shape_size(m->layers[i].out) > maxn) maxn = cnd_shape_size(m->layers[i].out);
    size_t *ki = malloc(maxn * sizeof *ki), *ko = malloc(maxn * sizeof *ko);
    int rc = ki && ko ? s_pruned_spec(&spec, p, m) : CND_ENOMEM;
    if (!rc) rc = cnd_model_new(&pm, spec, m->in, 1);
    if (rc) goto done;
    if (pm->n_layers != m->n_layers) {
        rc = cnd_errf(CND_EINVAL, "pruned spec \"%s\" has %d layers, not %d", spec, pm->n_layers,
                      m->n_layers);
        goto done;
    }
    for (int i = 0; i < m->n_layers && !rc; i++) {
        const cnd_layer_t *l = &m->layers[i];
        const cnd_prune_map_t *in0 = l->src[0] < 0 ? &p->out[p->n_nodes] : &p->out[l->src[0]];
        int unit = l->type == CND_L_DENSE ? l->in.h * l->in.w : 1;
        size_t nki = s_kept_index(p, in0, unit, ki);
        size_t nko = s_kept_index(p, &p->out[i], 1, ko);
        if (s_copy_layer(pm, m, i, ki, nki, ko, nko))
            rc = cnd_errf(CND_EINVAL, "pruned layer %d does not match its plan (%s)", i + 1, spec);
    }
    memcpy(pm->norm_mean, m->norm_mean, (size_t)m->in.c * sizeof(float));
    memcpy(pm->norm_std, m->norm_std, (size_t)m->in.c * sizeof(float));
    for (int i = 0; i < m->n_meta && !rc; i++) /* the original's accuracy is not the pruned's */
        if (strcmp(m->meta[i].key, "test_accuracy"))
            rc = cnd_model_meta_set(pm, m->meta[i].key, m->meta[i].val);
done:
    if (!rc)
        *out = pm;
    else
        cnd_model_destroy(&pm);
    free(spec);
    free(ki);
    free(ko);
    return rc;
}

size_t cnd_prune_model_bytes(const cnd_model_t *m)
{
    uint8_t *d = NULL;
    size_t len = 0;
    if (cnd_model_serialize(m, &d, &len)) return 0;
    free(d);
    return len;
}

/* MACs or bytes of the model p selects at `ratio`; UINT64_MAX on an error (detail set). */
static uint64_t s_measure(cnd_prune_plan_t *p, const cnd_model_t *m, double ratio, int by_bytes)
{
    cnd_model_t *pm = NULL;
    cnd_prune_select(p, ratio);
    if (cnd_prune_apply(&pm, p, m)) return UINT64_MAX;
    uint64_t v = by_bytes ? (uint64_t)cnd_prune_model_bytes(pm) : cnd_model_macs(pm);
    cnd_model_destroy(&pm);
    return v ? v : UINT64_MAX;
}

int cnd_prune_select_target(cnd_prune_plan_t *p, const cnd_model_t *m, uint64_t target,
                            int by_bytes, double *ratio)
{
    const char *what = by_bytes ? "bytes" : "MACs";
    double lo = 0.0, hi = 0.9999; /* hi: one channel per group */
    uint64_t v = s_measure(p, m, hi, by_bytes);
    if (v == UINT64_MAX) return CND_EINVAL;
    if (v > target)
        return cnd_errf(CND_EINVAL,
                        "cannot prune to %llu %s: keeping one channel per layer still gives "
                        "%llu",
                        (unsigned long long)target, what, (unsigned long long)v);
    if ((v = s_measure(p, m, lo, by_bytes)) == UINT64_MAX) return CND_EINVAL;
    if (v <= target) hi = lo; /* already small enough: nothing to remove */
    while (hi - lo > 1e-4) {  /* invariant: hi meets the target, lo does not */
        double mid = 0.5 * (lo + hi);
        if ((v = s_measure(p, m, mid, by_bytes)) == UINT64_MAX) return CND_EINVAL;
        if (v <= target)
            hi = mid;
        else
            lo = mid;
    }
    cnd_prune_select(p, hi);
    *ratio = hi;
    return 0;
}
