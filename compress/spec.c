/*
 * spec.c: recursive-descent parser for architecture specs (see spec.h). Hand-written because
 * the grammar is a dozen lines and the errors must point at a column.
 */
#include "spec.h"
#include "error.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s; /* whole spec */
    size_t i;      /* cursor */
} s_parser;

static int s_fail(const s_parser *p, const char *expected)
{
    const char *at = p->s + p->i;
    if (!*at)
        return cnd_errf(CND_EINVAL, "spec position %zu: expected %s, found end of spec", p->i + 1,
                        expected);
    int n = 0;
    while (at[n] && !isspace((unsigned char)at[n]) && n < 12) n++;
    return cnd_errf(CND_EINVAL, "spec position %zu: expected %s, found '%.*s'", p->i + 1, expected,
                    n, at);
}

static void s_ws(s_parser *p)
{
    while (isspace((unsigned char)p->s[p->i])) p->i++;
}

/* One argument: either a number, or key=number. */
typedef struct {
    char key[16];                /* "" for positional */
    double val;                  /* value */
    size_t pos;                  /* 0-based position, for messages */
    char ref[CND_SPEC_NAME_MAX]; /* "@NAME" argument (add, concat): NAME; "" for a number */
} s_arg;

/* Reads an identifier ([A-Za-z_][A-Za-z0-9_]*) into out (truncated to n-1 characters) and
 * returns its full length. */
static size_t s_ident(s_parser *p, char *out, size_t n)
{
    size_t k = 0, len = 0;
    if (isalpha((unsigned char)p->s[p->i]) || p->s[p->i] == '_')
        while (isalnum((unsigned char)p->s[p->i]) || p->s[p->i] == '_') {
            if (k + 1 < n) out[k++] = p->s[p->i];
            p->i++;
            len++;
        }
    out[k] = 0;
    return len;
}

static int s_args(s_parser *p, s_arg *args, int max, int *n)
{
    *n = 0;
    if (p->s[p->i] != '(') return 0;
    p->i++;
    for (;;) {
        s_ws(p);
        if (*n == max) return s_fail(p, "')' (too many arguments)");
        s_arg *a = &args[(*n)++];
        memset(a, 0, sizeof *a);
        a->pos = p->i;
        if (p->s[p->i] == '@') {
            p->i++;
            size_t at = p->i, len = s_ident(p, a->ref, sizeof a->ref);
            if (len == 0) return s_fail(p, "a node name after '@'");
            if (len >= sizeof a->ref)
                return cnd_errf(CND_EINVAL,
                                "spec position %zu: node names have at most %d "
                                "characters",
                                at + 1, CND_SPEC_NAME_MAX - 1);
            s_ws(p);
            if (p->s[p->i] == ',') {
                p->i++;
                continue;
            }
            if (p->s[p->i] == ')') {
                p->i++;
                return 0;
            }
            return s_fail(p, "',' or ')'");
        }
        if (isalpha((unsigned char)p->s[p->i])) {
            size_t k = 0;
            while (isalnum((unsigned char)p->s[p->i]) || p->s[p->i] == '_') {
                if (k + 1 < sizeof a->key) a->key[k++] = p->s[p->i];
                p->i++;
            }
            if (p->s[p->i] != '=') return s_fail(p, "'=' after argument name");
            p->i++;
        }
        const char *start = p->s + p->i;
        char *end;
        errno = 0;
        a->val = strtod(start, &end);
        if (end == start || errno) return s_fail(p, "a number");
        p->i += (size_t)(end - start);
        s_ws(p);
        if (p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->s[p->i] == ')') {
            p->i++;
            return 0;
        }
        return s_fail(p, "',' or ')'");
    }
}

static int s_int_arg(const s_parser *p, const s_arg *a, const char *what, int lo, int hi, int *out)
{
    /* range first (NaN fails it too): casting a double no int holds is undefined behaviour */
    if (!(a->val >= lo && a->val <= hi) || a->val != (double)(int)a->val)
        return cnd_errf(CND_EINVAL, "spec position %zu: %s must be an integer in [%d, %d]",
                        a->pos + 1, what, lo, hi);
    *out = (int)a->val;
    return 0;
}

/* One layer keyword with its arguments into l (type and parameters). Returns 0 or CND_EINVAL.
 * One idea over 120 lines: one branch per layer keyword, each a few argument checks. */
static int s_layer(const s_parser *p, const char *name, size_t start, const s_arg *a, int na,
                   cnd_layer_t *l)
{
    int rc, npos = 0;
    for (int i = 0; i < na; i++) {
        npos += a[i].key[0] == 0;
        if (a[i].ref[0])
            return cnd_errf(CND_EINVAL, "spec position %zu: only add and concat take @NAME",
                            a[i].pos + 1);
    }
    if (!strcmp(name, "dense")) {
        l->type = CND_L_DENSE;
        if (na != 1 || npos != 1)
            return cnd_errf(CND_EINVAL,
                            "spec position %zu: dense takes one argument: "
                            "dense(OUTPUTS)",
                            start + 1);
        return s_int_arg(p, &a[0], "dense outputs", 1, 1 << 20, &l->p.dense.out);
    }
    if (!strcmp(name, "conv2d") || !strcmp(name, "conv")) {
        l->type = CND_L_CONV2D;
        l->p.conv.stride = 1;
        if (npos != 2 || (na > 2 && (a[0].key[0] || a[1].key[0])))
            return cnd_errf(CND_EINVAL,
                            "spec position %zu: conv2d takes "
                            "conv2d(CHANNELS,KERNEL[,stride=S][,pad=P][,groups=G])",
                            start + 1);
        if ((rc = s_int_arg(p, &a[0], "conv2d channels", 1, 1 << 16, &l->p.conv.oc)) ||
            (rc = s_int_arg(p, &a[1], "conv2d kernel", 1, 64, &l->p.conv.k)))
            return rc;
        int groups = 1;
        for (int i = 2; i < na; i++) {
            if (!strcmp(a[i].key, "stride"))
                rc = s_int_arg(p, &a[i], "stride", 1, 64, &l->p.conv.stride);
            else if (!strcmp(a[i].key, "pad"))
                rc = s_int_arg(p, &a[i], "pad", 0, 64, &l->p.conv.pad);
            else if (!strcmp(a[i].key, "groups"))
                rc = s_int_arg(p, &a[i], "groups", 1, 1 << 16, &groups);
            else
                rc = cnd_errf(CND_EINVAL,
                              "spec position %zu: conv2d has no argument '%s' "
                              "(expected stride=, pad= or groups=)",
                              a[i].pos + 1, a[i].key);
            if (rc) return rc;
        }
        if (groups > 1) {
            l->type = CND_L_GCONV;
            l->p.conv.groups = groups;
        }
        return 0;
    }
    if (!strcmp(name, "dwconv")) { /* depthwise: groups = channels = the input's */
        l->type = CND_L_GCONV;
        l->p.conv.stride = 1;
        if (npos != 1 || a[0].key[0])
            return cnd_errf(CND_EINVAL,
                            "spec position %zu: dwconv takes dwconv(KERNEL[,stride=S][,pad=P])",
                            start + 1);
        if ((rc = s_int_arg(p, &a[0], "dwconv kernel", 1, 64, &l->p.conv.k))) return rc;
        for (int i = 1; i < na; i++) {
            if (!strcmp(a[i].key, "stride"))
                rc = s_int_arg(p, &a[i], "stride", 1, 64, &l->p.conv.stride);
            else if (!strcmp(a[i].key, "pad"))
                rc = s_int_arg(p, &a[i], "pad", 0, 64, &l->p.conv.pad);
            else
                rc = cnd_errf(CND_EINVAL,
                              "spec position %zu: dwconv has no argument '%s' "
                              "(expected stride= or pad=)",
                              a[i].pos + 1, a[i].key);
            if (rc) return rc;
        }
        return 0;
    }
    if (!strcmp(name, "maxpool") || !strcmp(name, "avgpool")) {
        l->type = name[0] == 'm' ? CND_L_MAXPOOL : CND_L_AVGPOOL;
        if (npos != 1 || a[0].key[0])
            return cnd_errf(CND_EINVAL, "spec position %zu: %s takes %s(WINDOW[,stride=S])",
                            start + 1, name, name);
        if ((rc = s_int_arg(p, &a[0], "pool window", 1, 64, &l->p.pool.k))) return rc;
        l->p.pool.stride = l->p.pool.k;
        for (int i = 1; i < na; i++) {
            if (strcmp(a[i].key, "stride"))
                return cnd_errf(CND_EINVAL,
                                "spec position %zu: %s has no argument '%s' "
                                "(expected stride=)",
                                a[i].pos + 1, name, a[i].key);
            if ((rc = s_int_arg(p, &a[i], "stride", 1, 64, &l->p.pool.stride))) return rc;
        }
        return 0;
    }
    if (!strcmp(name, "batchnorm") || !strcmp(name, "bn")) {
        l->type = CND_L_BATCHNORM;
        l->p.bn.eps = 1e-5f;
        l->p.bn.momentum = 0.1f;
        for (int i = 0; i < na; i++) {
            if (!strcmp(a[i].key, "eps") && a[i].val > 0 && a[i].val < 1)
                l->p.bn.eps = (float)a[i].val;
            else if (!strcmp(a[i].key, "momentum") && a[i].val > 0 && a[i].val <= 1)
                l->p.bn.momentum = (float)a[i].val;
            else
                return cnd_errf(CND_EINVAL,
                                "spec position %zu: batchnorm takes "
                                "eps=E (0<E<1) and momentum=M (0<M<=1)",
                                a[i].pos + 1);
        }
        return 0;
    }
    static const struct {
        const char *name;
        cnd_layer_type_t type;
    } plain[] = {{"relu", CND_L_RELU}, {"gap", CND_L_GAP},     {"flatten", CND_L_FLATTEN},
                 {"tanh", CND_L_TANH}, {"relu6", CND_L_RELU6}, {"hardswish", CND_L_HARDSWISH}};
    for (size_t k = 0; k < sizeof plain / sizeof plain[0]; k++)
        if (!strcmp(name, plain[k].name)) {
            l->type = plain[k].type;
            if (na)
                return cnd_errf(CND_EINVAL, "spec position %zu: %s takes no arguments", start + 1,
                                name);
            return 0;
        }
    return cnd_errf(CND_EINVAL,
                    "spec position %zu: unknown layer '%s' (expected dense, conv2d, dwconv, relu, "
                    "relu6, hardswish, tanh, maxpool, avgpool, gap, flatten, batchnorm, add, "
                    "concat, mbconv or resblock)",
                    start + 1, name);
}

/* The graph being built: nodes so far, the cursor (the node the next layer reads) and, when the
 * input shape is known, every node's shape. */
typedef struct {
    s_parser p;
    cnd_layer_t *layers;
    int n, max;
    int cur;        /* -1: the model input */
    cnd_shape_t in; /* model input; c == 0 when unknown (no blocks then) */
    int in_known;
} s_graph;

static cnd_shape_t s_out(const s_graph *g, int node)
{
    return node < 0 ? g->in : g->layers[node].out;
}

/* Appends node `proto` reading src0 (and src1 when >= -1 and the node is a merge); computes
 * its shape when the input shape is known. Returns the node's index or CND_EINVAL. */
static int s_emit(s_graph *g, size_t start, cnd_layer_t proto, int src0, int src1)
{
    if (g->n == g->max)
        return cnd_errf(CND_EINVAL, "spec position %zu: more than %d layers", start + 1, g->max);
    cnd_layer_t *l = &g->layers[g->n];
    *l = proto;
    l->n_src = proto.type == CND_L_ADD || proto.type == CND_L_CONCAT ? 2 : 1;
    l->src[0] = src0;
    l->src[1] = l->n_src == 2 ? src1 : -1;
    if (g->in_known) {
        l->in = s_out(g, src0);
        if (l->n_src == 2) l->in2 = s_out(g, src1);
        int rc = cnd_layer_ops(l->type)->shape(l);
        if (rc)
            return cnd_err_wrap(rc, "layer %d (%s) with input %dx%dx%d", g->n + 1,
                                cnd_layer_ops(l->type)->name, l->in.c, l->in.h, l->in.w);
    }
    g->cur = g->n;
    return g->n++;
}

static cnd_layer_t s_conv(int oc, int k, int stride, int pad, int groups)
{
    cnd_layer_t l;
    memset(&l, 0, sizeof l);
    l.type = groups > 1 ? CND_L_GCONV : CND_L_CONV2D;
    l.p.conv.oc = oc;
    l.p.conv.k = k;
    l.p.conv.stride = stride;
    l.p.conv.pad = pad;
    l.p.conv.groups = groups > 1 ? groups : 0;
    return l;
}

static cnd_layer_t s_kind(cnd_layer_type_t t)
{
    cnd_layer_t l;
    memset(&l, 0, sizeof l);
    l.type = t;
    if (t == CND_L_BATCHNORM) {
        l.p.bn.eps = 1e-5f;
        l.p.bn.momentum = 0.1f;
    }
    return l;
}

/* Emits a chain of nodes, each reading the previous; stops at the first error. */
#define S_EMIT(g, start, proto)                                                                    \
    do {                                                                                           \
        int rc_ = s_emit((g), (start), (proto), (g)->cur, -2);                                     \
        if (rc_ < 0) return rc_;                                                                   \
    } while (0)

/* mbconv(EXPAND, OUT, STRIDE): MobileNetV2's inverted residual on C input channels. */
static int s_mbconv(s_graph *g, size_t start, int e, int out, int stride)
{
    int x = g->cur, C = s_out(g, x).c;
    if (C > (1 << 16) / e)
        return cnd_errf(CND_EINVAL, "spec position %zu: mbconv expands %d channels %d times",
                        start + 1, C, e);
    int hid = C * e;
    if (e != 1) {
        S_EMIT(g, start, s_conv(hid, 1, 1, 0, 1));
        S_EMIT(g, start, s_kind(CND_L_BATCHNORM));
        S_EMIT(g, start, s_kind(CND_L_RELU6));
    }
    S_EMIT(g, start, s_conv(hid, 3, stride, 1, hid));
    S_EMIT(g, start, s_kind(CND_L_BATCHNORM));
    S_EMIT(g, start, s_kind(CND_L_RELU6));
    S_EMIT(g, start, s_conv(out, 1, 1, 0, 1));
    S_EMIT(g, start, s_kind(CND_L_BATCHNORM));
    if (stride == 1 && C == out) {
        int rc = s_emit(g, start, s_kind(CND_L_ADD), g->cur, x);
        if (rc < 0) return rc;
    }
    return 0;
}

/* resblock(OUT, STRIDE): ResNet's basic block; a 1x1 projection shortcut when the shape
 * changes. */
static int s_resblock(s_graph *g, size_t start, int out, int stride)
{
    int x = g->cur, C = s_out(g, x).c;
    S_EMIT(g, start, s_conv(out, 3, stride, 1, 1));
    S_EMIT(g, start, s_kind(CND_L_BATCHNORM));
    S_EMIT(g, start, s_kind(CND_L_RELU));
    S_EMIT(g, start, s_conv(out, 3, 1, 1, 1));
    S_EMIT(g, start, s_kind(CND_L_BATCHNORM));
    int main_out = g->cur, sc = x;
    if (stride != 1 || C != out) {
        g->cur = x;
        S_EMIT(g, start, s_conv(out, 1, stride, 0, 1));
        S_EMIT(g, start, s_kind(CND_L_BATCHNORM));
        sc = g->cur;
    }
    int rc = s_emit(g, start, s_kind(CND_L_ADD), main_out, sc);
    if (rc < 0) return rc;
    S_EMIT(g, start, s_kind(CND_L_RELU));
    return 0;
}

/* Node index of NAME among the nodes so far, -1 for "input"; CND_EINVAL if none. */
static int s_resolve(const s_graph *g, const char *name, size_t pos, int *node)
{
    if (!strcmp(name, "input")) {
        *node = -1;
        return 0;
    }
    for (int i = 0; i < g->n; i++)
        if (!strcmp(g->layers[i].name, name)) {
            *node = i;
            return 0;
        }
    /* n<i>: the name a canonical spec gives an unnamed node it refers to */
    char *end;
    if (name[0] == 'n' && isdigit((unsigned char)name[1])) {
        long i = strtol(name + 1, &end, 10);
        if (!*end && i >= 0 && i < g->n && !g->layers[i].name[0]) {
            *node = (int)i;
            return 0;
        }
    }
    return cnd_errf(CND_EINVAL, "spec position %zu: no earlier node is named '%s'", pos + 1, name);
}

/* Gives node `node` the name NAME (from position pos), if NAME is free. */
static int s_name(s_graph *g, int node, const char *name, size_t pos)
{
    if (name[0] == 'n' && isdigit((unsigned char)name[1])) {
        char own[16];
        snprintf(own, sizeof own, "n%d", node);
        if (strcmp(own, name))
            return cnd_errf(CND_EINVAL,
                            "spec position %zu: names n<number> are reserved for node <number> "
                            "(this node is n%d)",
                            pos + 1, node);
        return 0; /* the canonical name: nothing to store */
    }
    int taken = !strcmp(name, "input");
    for (int i = 0; i < g->n && !taken; i++) taken = !strcmp(g->layers[i].name, name);
    if (taken)
        return cnd_errf(CND_EINVAL, "spec position %zu: the name '%s' is already taken", pos + 1,
                        name);
    snprintf(g->layers[node].name, sizeof g->layers[node].name, "%s", name);
    return 0;
}

int cnd_spec_parse_graph(const char *spec, cnd_shape_t in, cnd_layer_t *layers, int max)
{
    s_graph g = {.p = {spec, 0},
                 .layers = layers,
                 .max = max,
                 .cur = -1,
                 .in = in,
                 .in_known = in.c > 0 && in.h > 0 && in.w > 0};
    s_parser *p = &g.p;
    for (;;) {
        s_ws(p);
        if (!spec[p->i]) break;
        size_t start = p->i;
        char name[16], node_name[CND_SPEC_NAME_MAX] = "";
        size_t name_pos = 0;
        if (spec[p->i] == '@') { /* the next layer reads NAME */
            p->i++;
            size_t len = s_ident(p, name, sizeof name);
            if (len == 0) return s_fail(p, "a node name after '@'");
            int rc = len >= sizeof name ? s_fail(p, "a shorter node name")
                                        : s_resolve(&g, name, start + 1, &g.cur);
            if (rc) return rc;
            if (spec[p->i] && !isspace((unsigned char)spec[p->i]))
                return s_fail(p, "a space after the node name");
            continue;
        }
        size_t k = s_ident(p, name, sizeof name);
        if (k && spec[p->i] == '=') { /* NAME=LAYER */
            if (k >= sizeof node_name)
                return cnd_errf(CND_EINVAL,
                                "spec position %zu: node names have at most %d "
                                "characters",
                                start + 1, CND_SPEC_NAME_MAX - 1);
            snprintf(node_name, sizeof node_name, "%s", name);
            name_pos = start;
            p->i++;
            start = p->i;
            k = s_ident(p, name, sizeof name);
        }
        if (k == 0)
            return s_fail(p, "a layer name (dense, conv2d, relu, tanh, maxpool, avgpool, gap, "
                             "flatten, batchnorm, ...)");
        if (g.n == max)
            return cnd_errf(CND_EINVAL, "spec position %zu: more than %d layers", start + 1, max);
        s_arg a[5];
        int na = 0, rc = s_args(p, a, 5, &na);
        if (rc) return rc;
        if (spec[p->i] && !isspace((unsigned char)spec[p->i]))
            return s_fail(p, "a space or '(' after the layer name");
        if (!strcmp(name, "add") || !strcmp(name, "concat")) {
            int r[2], nr = 0;
            for (int i = 0; i < na; i++) {
                if (!a[i].ref[0] || nr == 2)
                    return cnd_errf(CND_EINVAL,
                                    "spec position %zu: %s takes %s(@NAME) or "
                                    "%s(@NAME,@NAME)",
                                    start + 1, name, name, name);
                if ((rc = s_resolve(&g, a[i].ref, a[i].pos, &r[nr++]))) return rc;
            }
            if (nr == 0)
                return cnd_errf(CND_EINVAL,
                                "spec position %zu: %s takes %s(@NAME) or "
                                "%s(@NAME,@NAME)",
                                start + 1, name, name, name);
            cnd_layer_t l = s_kind(name[0] == 'a' ? CND_L_ADD : CND_L_CONCAT);
            rc = s_emit(&g, start, l, nr == 2 ? r[0] : g.cur, nr == 2 ? r[1] : r[0]);
            if (rc < 0) return rc;
        } else if (!strcmp(name, "mbconv") || !strcmp(name, "resblock")) {
            int mb = name[0] == 'm', npmax = mb ? 3 : 2, v[3] = {1, 1, 1}, nv = 0;
            static const char *what[2][3] = {{"resblock channels", "stride", ""},
                                             {"mbconv expansion", "mbconv channels", "stride"}};
            const char *usage = mb ? "mbconv takes mbconv(EXPAND,OUT[,STRIDE])"
                                   : "resblock takes resblock(OUT[,STRIDE])";
            for (int i = 0; i < na; i++) {
                int slot = a[i].key[0] ? npmax - 1 : nv++;
                if (a[i].ref[0] || (a[i].key[0] && strcmp(a[i].key, "stride")) || slot >= npmax)
                    return cnd_errf(CND_EINVAL, "spec position %zu: %s", a[i].pos + 1, usage);
                int hi = slot == npmax - 1 ? 8 : mb && slot == 0 ? 16 : 1 << 16;
                if ((rc = s_int_arg(p, &a[i], what[mb][slot], 1, hi, &v[slot]))) return rc;
            }
            if (nv < npmax - 1)
                return cnd_errf(CND_EINVAL, "spec position %zu: %s", start + 1, usage);
            if (!g.in_known)
                return cnd_errf(CND_EINVAL, "spec position %zu: %s needs the model's input shape",
                                start + 1, name);
            rc = mb ? s_mbconv(&g, start, v[0], v[1], v[2]) : s_resblock(&g, start, v[0], v[1]);
            if (rc) return rc;
        } else {
            cnd_layer_t l;
            memset(&l, 0, sizeof l);
            if ((rc = s_layer(p, name, start, a, na, &l))) return rc;
            rc = s_emit(&g, start, l, g.cur, -2);
            if (rc < 0) return rc;
        }
        if (node_name[0] && (rc = s_name(&g, g.n - 1, node_name, name_pos))) return rc;
    }
    if (g.n == 0)
        return cnd_errf(CND_EINVAL, "spec position 1: expected a layer, found empty spec");
    return g.n;
}

int cnd_spec_parse(const char *spec, cnd_layer_t *layers, int max)
{
    return cnd_spec_parse_graph(spec, (cnd_shape_t){0, 0, 0}, layers, max);
}
