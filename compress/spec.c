/*
 * spec.c: recursive-descent parser for architecture specs (see spec.h). Hand-written because
 * the grammar is a dozen lines and the errors must point at a column.
 */
#include "spec.h"
#include "error.h"

#include <ctype.h>
#include <errno.h>
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
    char key[16]; /* "" for positional */
    double val;   /* value */
    size_t pos;   /* 0-based position, for messages */
} s_arg;

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

int cnd_spec_parse(const char *spec, cnd_layer_t *layers, int max)
{
    s_parser p = {spec, 0};
    int n = 0;
    for (;;) {
        s_ws(&p);
        if (!spec[p.i]) break;
        size_t start = p.i;
        char name[16];
        size_t k = 0;
        while (isalnum((unsigned char)spec[p.i]) || spec[p.i] == '_') {
            if (k + 1 < sizeof name) name[k++] = spec[p.i];
            p.i++;
        }
        name[k] = 0;
        if (k == 0)
            return s_fail(&p, "a layer name (dense, conv2d, relu, tanh, maxpool, avgpool, gap, "
                              "flatten, batchnorm)");
        if (n == max)
            return cnd_errf(CND_EINVAL, "spec position %zu: more than %d layers", start + 1, max);
        cnd_layer_t *l = &layers[n];
        memset(l, 0, sizeof *l);
        s_arg a[4];
        int na = 0, rc = s_args(&p, a, 4, &na);
        if (rc) return rc;
        if (spec[p.i] && !isspace((unsigned char)spec[p.i]))
            return s_fail(&p, "a space or '(' after the layer name");
        int npos = 0;
        for (int i = 0; i < na; i++) npos += a[i].key[0] == 0;
        if (!strcmp(name, "dense")) {
            l->type = CND_L_DENSE;
            if (na != 1 || npos != 1)
                return cnd_errf(CND_EINVAL,
                                "spec position %zu: dense takes one argument: "
                                "dense(OUTPUTS)",
                                start + 1);
            if ((rc = s_int_arg(&p, &a[0], "dense outputs", 1, 1 << 20, &l->p.dense.out)))
                return rc;
        } else if (!strcmp(name, "conv2d") || !strcmp(name, "conv")) {
            l->type = CND_L_CONV2D;
            l->p.conv.stride = 1;
            if (npos != 2 || (na > 2 && (a[0].key[0] || a[1].key[0])))
                return cnd_errf(CND_EINVAL,
                                "spec position %zu: conv2d takes "
                                "conv2d(CHANNELS,KERNEL[,stride=S][,pad=P])",
                                start + 1);
            if ((rc = s_int_arg(&p, &a[0], "conv2d channels", 1, 1 << 16, &l->p.conv.oc)) ||
                (rc = s_int_arg(&p, &a[1], "conv2d kernel", 1, 64, &l->p.conv.k)))
                return rc;
            for (int i = 2; i < na; i++) {
                if (!strcmp(a[i].key, "stride"))
                    rc = s_int_arg(&p, &a[i], "stride", 1, 64, &l->p.conv.stride);
                else if (!strcmp(a[i].key, "pad"))
                    rc = s_int_arg(&p, &a[i], "pad", 0, 64, &l->p.conv.pad);
                else
                    rc = cnd_errf(CND_EINVAL,
                                  "spec position %zu: conv2d has no argument '%s' "
                                  "(expected stride= or pad=)",
                                  a[i].pos + 1, a[i].key);
                if (rc) return rc;
            }
        } else if (!strcmp(name, "maxpool") || !strcmp(name, "avgpool")) {
            l->type = name[0] == 'm' ? CND_L_MAXPOOL : CND_L_AVGPOOL;
            if (npos != 1 || a[0].key[0])
                return cnd_errf(CND_EINVAL, "spec position %zu: %s takes %s(WINDOW[,stride=S])",
                                start + 1, name, name);
            if ((rc = s_int_arg(&p, &a[0], "pool window", 1, 64, &l->p.pool.k))) return rc;
            l->p.pool.stride = l->p.pool.k;
            for (int i = 1; i < na; i++) {
                if (strcmp(a[i].key, "stride"))
                    return cnd_errf(CND_EINVAL,
                                    "spec position %zu: %s has no argument '%s' "
                                    "(expected stride=)",
                                    a[i].pos + 1, name, a[i].key);
                if ((rc = s_int_arg(&p, &a[i], "stride", 1, 64, &l->p.pool.stride))) return rc;
            }
        } else if (!strcmp(name, "batchnorm") || !strcmp(name, "bn")) {
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
        } else if (!strcmp(name, "relu") || !strcmp(name, "gap") || !strcmp(name, "flatten") ||
                   !strcmp(name, "tanh")) {
            l->type = name[0] == 'r'   ? CND_L_RELU
                      : name[0] == 'g' ? CND_L_GAP
                      : name[0] == 't' ? CND_L_TANH
                                       : CND_L_FLATTEN;
            if (na)
                return cnd_errf(CND_EINVAL, "spec position %zu: %s takes no arguments", start + 1,
                                name);
        } else {
            return cnd_errf(CND_EINVAL,
                            "spec position %zu: unknown layer '%s' (expected dense, "
                            "conv2d, relu, tanh, maxpool, avgpool, gap, flatten or batchnorm)",
                            start + 1, name);
        }
        n++;
    }
    if (n == 0) return cnd_errf(CND_EINVAL, "spec position 1: expected a layer, found empty spec");
    return n;
}
