/*
 * onnx_plan.c: shapes, constant folding, fusions and activation buffers for a batch size.
 *
 * One walk over the nodes in topological order gives every value its shape for B samples and
 * checks each node's inputs against its op (ranks, channel counts, windows that fit). A node
 * whose inputs are all known before any input arrives is folded when it is a shape or data-
 * movement op (Constant, Shape, Gather, Cast, Concat, Reshape, Flatten, Squeeze, Unsqueeze,
 * Transpose, Identity, Dropout, Add/Sub/Mul/Div), so the Shape -> Gather -> Concat -> Reshape
 * chains of PyTorch exports become constants for the run's batch size. Every other node runs;
 * its int64 inputs must be known (axes, shapes, indices), its float inputs may be either.
 *
 * Buffers: ops that only reinterpret their input (Reshape, Flatten, Squeeze, Unsqueeze,
 * Identity, Dropout, float Cast) alias it, and a Relu whose input is a Conv's output read by
 * nobody else is applied inside the convolution and aliases it too. Each remaining value gets a
 * block of the arena from a free list when it is produced and returns it after its last reader
 * (through aliases), smallest fitting block first. Every size is checked before it is added;
 * the arena is allocated only after the whole plan fits CND_ONNX_ARENA_MAX.
 */
#include "onnx_internal.h"
#include "pool.h"

#include <stdlib.h>
#include <string.h>

/* Elements folding may create per plan: twice what the file's constants hold, plus 2^20 for
 * shape arithmetic, so a small file cannot grow into gigabytes by concatenating a constant with
 * itself. */
static int64_t s_fold_budget(const cnd_onnx_t *g)
{
    return 2 * g->static_elems + ((int64_t)1 << 20);
}

static int s_rank_err(const cnd_onnx_t *g, const s_node_t *n, int j, const char *want)
{
    return cnd_onnx_node_err(g, n, CND_EFORMAT, "input %d has rank %d, %s expected", j,
                             g->v[n->in[j]].rank, want);
}

/* Sets value vi's shape (rank r, dims d), checking the element count. */
static int s_set(cnd_onnx_t *g, const s_node_t *n, int vi, int r, const int64_t *d)
{
    if (vi < 0) return 0;
    s_value_t *v = &g->v[vi];
    int64_t cnt = 1;
    if (r > CND_ONNX_MAX_RANK) return cnd_onnx_node_err(g, n, CND_EFORMAT, "output rank %d", r);
    for (int i = 0; i < r; i++) {
        if (d[i] < 0 || d[i] > CND_ONNX_VALUE_MAX)
            return cnd_onnx_node_err(g, n, CND_EFORMAT, "output dimension %lld", (long long)d[i]);
        cnt *= d[i];
        if (cnt > CND_ONNX_VALUE_MAX)
            return cnd_onnx_node_err(g, n, CND_ERANGE, "output '%s' would hold over %lld elements",
                                     v->name, (long long)CND_ONNX_VALUE_MAX);
    }
    v->rank = r;
    memcpy(v->dims, d, (size_t)r * sizeof *d);
    v->n = cnt;
    return 0;
}

/* Input j must be present (and known when `known`, int64 when `is_int` is 1, float when 0). */
static int s_need(const cnd_onnx_t *g, const s_node_t *n, int j, int known, int is_int)
{
    if (j >= n->n_in || n->in[j] < 0)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "input %d is missing", j);
    const s_value_t *v = &g->v[n->in[j]];
    if (known && !v->known)
        return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                 "input %d ('%s') must be a constant "
                                 "(an initializer or computed from constants)",
                                 j, v->name);
    if (is_int >= 0 && v->is_int != is_int)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "input %d ('%s') must be %s", j, v->name,
                                 is_int ? "int64" : "float");
    return 0;
}

static int64_t s_ceil_div(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

/* Output spatial sizes of a Conv/Pool node on an H x W input, resolving auto_pad into pads. */
static int s_window(cnd_onnx_t *g, s_node_t *n, const int64_t *hw, int64_t *out)
{
    for (int a = 0; a < 2; a++) {
        int64_t k = n->kernel[a], s = n->strides[a], d = n->dil[a], ext = (k - 1) * d + 1;
        if (n->auto_pad == 1 || n->auto_pad == 2) {
            int64_t o = s_ceil_div(hw[a], s), tot = (o - 1) * s + ext - hw[a];
            if (tot < 0) tot = 0;
            n->pads[a] = n->auto_pad == 1 ? tot / 2 : tot - tot / 2;
            n->pads[a + 2] = tot - n->pads[a];
        } else if (n->auto_pad == 3) {
            n->pads[a] = n->pads[a + 2] = 0;
        }
        int64_t span = hw[a] + n->pads[a] + n->pads[a + 2] - ext;
        if (span < 0)
            return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                     "window %lld (dilation %lld) larger than "
                                     "the padded input %lld",
                                     (long long)k, (long long)d,
                                     (long long)(hw[a] + n->pads[a] + n->pads[a + 2]));
        out[a] = (n->ceil_mode ? s_ceil_div(span, s) : span / s) + 1;
        if (n->ceil_mode && (out[a] - 1) * s >= hw[a] + n->pads[a]) out[a]--;
        if (n->pads[a] >= ext || n->pads[a + 2] >= ext)
            if (n->op != OP_CONV)
                return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                         "attribute 'pads' (%lld, %lld) must "
                                         "be smaller than the window",
                                         (long long)n->pads[a], (long long)n->pads[a + 2]);
    }
    return 0;
}

static int s_conv(cnd_onnx_t *g, s_node_t *n)
{
    int rc;
    if ((rc = s_need(g, n, 0, 0, 0)) || (rc = s_need(g, n, 1, 0, 0))) return rc;
    const s_value_t *x = &g->v[n->in[0]], *w = &g->v[n->in[1]];
    if (x->rank != 4) return s_rank_err(g, n, 0, "4 (N, C, H, W)");
    if (w->rank != 4) return s_rank_err(g, n, 1, "4 (OC, C/group, KH, KW)");
    int64_t C = x->dims[1], OC = w->dims[0], G = n->group;
    if (C % G || OC % G || w->dims[1] * G != C || OC < 1)
        return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                 "weight (%lld, %lld, ...) does not fit %lld "
                                 "input channels in %lld groups (attribute 'group')",
                                 (long long)OC, (long long)w->dims[1], (long long)C, (long long)G);
    if (n->has_kernel && (n->kernel[0] != w->dims[2] || n->kernel[1] != w->dims[3]))
        return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                 "attribute 'kernel_shape' differs from the "
                                 "weight's");
    n->kernel[0] = w->dims[2];
    n->kernel[1] = w->dims[3];
    if (n->kernel[0] < 1 || n->kernel[1] < 1)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "empty kernel");
    if (n->n_in > 2 && n->in[2] >= 0) {
        if ((rc = s_need(g, n, 2, 0, 0))) return rc;
        if (g->v[n->in[2]].n != OC)
            return cnd_onnx_node_err(g, n, CND_EFORMAT, "bias has %lld values for %lld channels",
                                     (long long)g->v[n->in[2]].n, (long long)OC);
    }
    int64_t o[4] = {x->dims[0], OC, 0, 0};
    if ((rc = s_window(g, n, x->dims + 2, o + 2))) return rc;
    return s_set(g, n, n->out[0], 4, o);
}

static int s_pool(cnd_onnx_t *g, s_node_t *n)
{
    int rc;
    if ((rc = s_need(g, n, 0, 0, 0))) return rc;
    const s_value_t *x = &g->v[n->in[0]];
    if (x->rank != 4) return s_rank_err(g, n, 0, "4 (N, C, H, W)");
    if (n->n_out > 1 && n->out[1] >= 0)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "the Indices output is not supported");
    int64_t o[4] = {x->dims[0], x->dims[1], 1, 1};
    if (n->op != OP_GAP && (rc = s_window(g, n, x->dims + 2, o + 2))) return rc;
    return s_set(g, n, n->out[0], 4, o);
}

/* Numpy broadcasting of inputs 0 and 1. */
static int s_broadcast(cnd_onnx_t *g, s_node_t *n)
{
    int rc;
    if ((rc = s_need(g, n, 0, 0, -1)) || (rc = s_need(g, n, 1, 0, -1))) return rc;
    const s_value_t *a = &g->v[n->in[0]], *b = &g->v[n->in[1]];
    if (a->is_int != b->is_int)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "inputs mix int64 and float");
    int r = a->rank > b->rank ? a->rank : b->rank;
    int64_t d[CND_ONNX_MAX_RANK];
    for (int i = 0; i < r; i++) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                     "shapes do not broadcast (dimension %d: "
                                     "%lld and %lld)",
                                     i, (long long)da, (long long)db);
        d[i] = da == 1 ? db : da;
    }
    if ((rc = s_set(g, n, n->out[0], r, d))) return rc;
    g->v[n->out[0]].is_int = a->is_int;
    return 0;
}

static int s_gemm(cnd_onnx_t *g, s_node_t *n)
{
    int rc;
    if ((rc = s_need(g, n, 0, 0, 0)) || (rc = s_need(g, n, 1, 0, 0))) return rc;
    const s_value_t *a = &g->v[n->in[0]], *b = &g->v[n->in[1]];
    if (n->op == OP_GEMM) {
        if (a->rank != 2) return s_rank_err(g, n, 0, "2");
        if (b->rank != 2) return s_rank_err(g, n, 1, "2");
        int64_t M = a->dims[n->trans_a], K = a->dims[!n->trans_a];
        int64_t K2 = b->dims[n->trans_b], N = b->dims[!n->trans_b];
        if (K != K2)
            return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                     "A has %lld columns, B %lld rows "
                                     "(attributes transA %d, transB %d)",
                                     (long long)K, (long long)K2, n->trans_a, n->trans_b);
        if (n->n_in > 2 && n->in[2] >= 0) {
            if ((rc = s_need(g, n, 2, 0, 0))) return rc;
            const s_value_t *c = &g->v[n->in[2]];
            int64_t cm = c->rank == 2 ? c->dims[0] : 1,
                    cn = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
            if (c->rank > 2 || (cm != 1 && cm != M) || (cn != 1 && cn != N))
                return cnd_onnx_node_err(g, n, CND_EFORMAT, "C does not broadcast to (%lld, %lld)",
                                         (long long)M, (long long)N);
        }
        return s_set(g, n, n->out[0], 2, (int64_t[]){M, N});
    }
    /* MatMul: A (..., M, K) x B (K, N), or equal leading dimensions on both sides. */
    if (a->rank < 2) return s_rank_err(g, n, 0, "2 or more");
    if (b->rank < 2) return s_rank_err(g, n, 1, "2 or more");
    int64_t K = a->dims[a->rank - 1];
    if (b->dims[b->rank - 2] != K)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "inner dimensions %lld and %lld differ",
                                 (long long)K, (long long)b->dims[b->rank - 2]);
    if (b->rank > 2 && (b->rank != a->rank || memcmp(a->dims, b->dims, (size_t)(a->rank - 2) * 8)))
        return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                 "batched MatMul needs equal leading "
                                 "dimensions or a 2-D second input");
    int64_t d[CND_ONNX_MAX_RANK];
    memcpy(d, a->dims, sizeof d);
    d[a->rank - 1] = b->dims[b->rank - 1];
    return s_set(g, n, n->out[0], a->rank, d);
}

static int s_batchnorm(cnd_onnx_t *g, s_node_t *n)
{
    int rc;
    if ((rc = s_need(g, n, 0, 0, 0))) return rc;
    const s_value_t *x = &g->v[n->in[0]];
    if (x->rank < 2) return s_rank_err(g, n, 0, "2 or more");
    for (int j = 1; j <= 4; j++) {
        if ((rc = s_need(g, n, j, 1, 0))) return rc;
        if (g->v[n->in[j]].n != x->dims[1])
            return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                     "input %d has %lld values for %lld "
                                     "channels",
                                     j, (long long)g->v[n->in[j]].n, (long long)x->dims[1]);
    }
    for (int o = 1; o < n->n_out; o++)
        if (n->out[o] >= 0)
            return cnd_onnx_node_err(g, n, CND_EFORMAT, "training outputs are not supported");
    return s_set(g, n, n->out[0], x->rank, x->dims);
}

/* Normalises axis a for rank r (negative counts from the end); -1 when out of range. */
static int s_axis(int64_t a, int r)
{
    if (a < 0) a += r;
    return a < 0 || a >= r ? -1 : (int)a;
}

static int s_reshape(cnd_onnx_t *g, s_node_t *n)
{
    int rc;
    if ((rc = s_need(g, n, 0, 0, -1)) || (rc = s_need(g, n, 1, 1, 1))) return rc;
    const s_value_t *x = &g->v[n->in[0]], *s = &g->v[n->in[1]];
    if (s->rank != 1 || s->n > CND_ONNX_MAX_RANK)
        return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                 "the shape input must be 1-D with at most %d "
                                 "values",
                                 CND_ONNX_MAX_RANK);
    int r = (int)s->n, infer = -1;
    int64_t d[CND_ONNX_MAX_RANK], known = 1, B = g->v[g->input].dims[0];
    for (int i = 0; i < r; i++) {
        d[i] = s->i[i];
        /* the batch size the file was exported with, on a batched value: the run's batch */
        if (i == 0 && g->decl_batch > 0 && d[0] == g->decl_batch && !x->known && x->rank > 0 &&
            x->dims[0] == B)
            d[0] = B;
        if (d[i] == 0) {
            if (i >= x->rank) return cnd_onnx_node_err(g, n, CND_EFORMAT, "0 past the rank");
            d[i] = x->dims[i];
        }
        if (d[i] == -1) {
            if (infer >= 0)
                return cnd_onnx_node_err(g, n, CND_EFORMAT, "the shape has two -1 values");
            infer = i;
            continue;
        }
        if (d[i] < 0 || d[i] > CND_ONNX_VALUE_MAX)
            return cnd_onnx_node_err(g, n, CND_EFORMAT, "shape value %lld", (long long)d[i]);
        known *= d[i];
        if (known > CND_ONNX_VALUE_MAX) return cnd_onnx_node_err(g, n, CND_ERANGE, "too large");
    }
    if (infer >= 0 && known > 0 && x->n % known == 0) d[infer] = x->n / known;
    if (infer >= 0 ? known == 0 || x->n % known : known != x->n)
        return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                 "cannot reshape %lld elements to the shape "
                                 "given",
                                 (long long)x->n);
    return s_set(g, n, n->out[0], r, d);
}

static int s_axes_list(cnd_onnx_t *g, s_node_t *n, int64_t *axes, int *na)
{
    if (g->opset < 13) {
        memcpy(axes, n->axes, sizeof n->axes);
        *na = n->n_axes;
        return n->has_axes;
    }
    if (n->n_in < 2 || n->in[1] < 0) return 0;
    int rc = s_need(g, n, 1, 1, 1);
    if (rc) return rc;
    const s_value_t *a = &g->v[n->in[1]];
    if (a->n > CND_ONNX_MAX_RANK)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "input 'axes' has %lld values",
                                 (long long)a->n);
    *na = (int)a->n;
    memcpy(axes, a->i, (size_t)a->n * sizeof *axes);
    return 1;
}

static int s_squeeze(cnd_onnx_t *g, s_node_t *n)
{
    int rc, na = 0;
    int64_t axes[CND_ONNX_MAX_RANK], d[CND_ONNX_MAX_RANK];
    if ((rc = s_need(g, n, 0, 0, -1))) return rc;
    const s_value_t *x = &g->v[n->in[0]];
    int has = s_axes_list(g, n, axes, &na);
    if (has < 0) return has;
    int r = n->op == OP_UNSQUEEZE ? x->rank + na : x->rank;
    if (n->op == OP_UNSQUEEZE && !has)
        return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                 "axes are required (attribute before opset "
                                 "13, input from 13)");
    if (r > CND_ONNX_MAX_RANK)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "rank over %d", CND_ONNX_MAX_RANK);
    int mark[CND_ONNX_MAX_RANK] = {0};
    for (int i = 0; i < na; i++) {
        int a = s_axis(axes[i], r);
        if (a < 0 || mark[a])
            return cnd_onnx_node_err(g, n, CND_EFORMAT, "axis %lld out of range or repeated",
                                     (long long)axes[i]);
        if (n->op == OP_SQUEEZE && x->dims[a] != 1)
            return cnd_onnx_node_err(g, n, CND_EFORMAT, "axis %d has size %lld, not 1", a,
                                     (long long)x->dims[a]);
        mark[a] = 1;
    }
    int k = 0;
    if (n->op == OP_UNSQUEEZE) {
        for (int i = 0, j = 0; i < r; i++) d[k++] = mark[i] ? 1 : x->dims[j++];
    } else {
        for (int i = 0; i < x->rank; i++)
            if (!(has ? mark[i] : x->dims[i] == 1)) d[k++] = x->dims[i];
    }
    if ((rc = s_set(g, n, n->out[0], k, d))) return rc;
    g->v[n->out[0]].is_int = x->is_int;
    return 0;
}

static int s_transpose(cnd_onnx_t *g, s_node_t *n)
{
    int rc;
    if ((rc = s_need(g, n, 0, 0, -1))) return rc;
    const s_value_t *x = &g->v[n->in[0]];
    int64_t d[CND_ONNX_MAX_RANK];
    if (!n->n_perm) {
        n->n_perm = x->rank;
        for (int i = 0; i < x->rank; i++) n->perm[i] = x->rank - 1 - i;
    }
    if (n->n_perm != x->rank)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "attribute 'perm' has %d values for rank %d",
                                 n->n_perm, x->rank);
    int seen[CND_ONNX_MAX_RANK] = {0};
    for (int i = 0; i < x->rank; i++) {
        if (n->perm[i] >= x->rank || seen[n->perm[i]]++)
            return cnd_onnx_node_err(g, n, CND_EFORMAT, "attribute 'perm' is not a permutation");
        d[i] = x->dims[n->perm[i]];
    }
    if ((rc = s_set(g, n, n->out[0], x->rank, d))) return rc;
    g->v[n->out[0]].is_int = x->is_int;
    return 0;
}

static int s_concat(cnd_onnx_t *g, s_node_t *n)
{
    int rc;
    if (n->n_in < 1) return cnd_onnx_node_err(g, n, CND_EFORMAT, "no inputs");
    if ((rc = s_need(g, n, 0, 0, -1))) return rc;
    const s_value_t *x = &g->v[n->in[0]];
    int a = s_axis(n->axis, x->rank);
    if (a < 0) return cnd_onnx_node_err(g, n, CND_EFORMAT, "attribute 'axis' out of range");
    int64_t d[CND_ONNX_MAX_RANK];
    memcpy(d, x->dims, sizeof d);
    d[a] = 0;
    for (int j = 0; j < n->n_in; j++) {
        if ((rc = s_need(g, n, j, 0, x->is_int))) return rc;
        const s_value_t *y = &g->v[n->in[j]];
        if (y->rank != x->rank) return s_rank_err(g, n, j, "the first input's");
        for (int i = 0; i < x->rank; i++)
            if (i != a && y->dims[i] != x->dims[i])
                return cnd_onnx_node_err(g, n, CND_EFORMAT, "input %d dimension %d differs", j, i);
        d[a] += y->dims[a];
        if (d[a] > CND_ONNX_VALUE_MAX) return cnd_onnx_node_err(g, n, CND_ERANGE, "too large");
    }
    if ((rc = s_set(g, n, n->out[0], x->rank, d))) return rc;
    g->v[n->out[0]].is_int = x->is_int;
    return 0;
}

static int s_gather(cnd_onnx_t *g, s_node_t *n)
{
    int rc;
    if ((rc = s_need(g, n, 0, 1, -1)) || (rc = s_need(g, n, 1, 1, 1))) return rc;
    const s_value_t *x = &g->v[n->in[0]], *ix = &g->v[n->in[1]];
    int a = s_axis(n->axis, x->rank);
    if (a < 0) return cnd_onnx_node_err(g, n, CND_EFORMAT, "attribute 'axis' out of range");
    if (x->rank - 1 + ix->rank > CND_ONNX_MAX_RANK)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "output rank over %d", CND_ONNX_MAX_RANK);
    for (int64_t k = 0; k < ix->n; k++)
        if (ix->i[k] < -x->dims[a] || ix->i[k] >= x->dims[a])
            return cnd_onnx_node_err(g, n, CND_EFORMAT, "index %lld out of range",
                                     (long long)ix->i[k]);
    int64_t d[CND_ONNX_MAX_RANK];
    int r = 0;
    for (int i = 0; i < a; i++) d[r++] = x->dims[i];
    for (int i = 0; i < ix->rank; i++) d[r++] = ix->dims[i];
    for (int i = a + 1; i < x->rank; i++) d[r++] = x->dims[i];
    if ((rc = s_set(g, n, n->out[0], r, d))) return rc;
    g->v[n->out[0]].is_int = x->is_int;
    return 0;
}

/* Same shape as input 0 (unary ops, Softmax, Identity, Dropout, Cast, Clip). */
static int s_same(cnd_onnx_t *g, s_node_t *n)
{
    int rc, is_int = n->op == OP_IDENTITY || n->op == OP_DROPOUT || n->op == OP_CAST ? -1 : 0;
    if ((rc = s_need(g, n, 0, 0, is_int))) return rc;
    const s_value_t *x = &g->v[n->in[0]];
    if (n->op == OP_SOFTMAX && s_axis(n->axis, x->rank) < 0)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "attribute 'axis' out of range");
    if (n->op == OP_DROPOUT) {
        if (n->n_out > 1 && n->out[1] >= 0)
            return cnd_onnx_node_err(g, n, CND_EFORMAT, "the mask output is not supported");
        if (n->n_in > 2 && n->in[2] >= 0) { /* training_mode */
            const s_value_t *t = &g->v[n->in[2]];
            if (!t->known || !t->is_int || t->n != 1 || t->i[0])
                return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                         "training_mode must be a constant "
                                         "false (inference only)");
        }
    }
    if (n->op == OP_CLIP) {
        n->clip_lo = -3.4e38f;
        n->clip_hi = 3.4e38f;
        for (int j = 1; j < 3 && j < n->n_in; j++) {
            if (n->in[j] < 0) continue;
            if ((rc = s_need(g, n, j, 1, 0))) return rc;
            if (g->v[n->in[j]].n != 1)
                return cnd_onnx_node_err(g, n, CND_EFORMAT, "input %d must be a scalar", j);
            *(j == 1 ? &n->clip_lo : &n->clip_hi) = g->v[n->in[j]].f[0];
        }
    }
    int out_int = x->is_int;
    if (n->op == OP_CAST) {
        int to = n->to;
        if (to != 1 && to != 7 && to != 6 && to != 9)
            return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                     "attribute 'to' = %d: casts to float, "
                                     "int64, int32 and bool are supported",
                                     to);
        out_int = to != 1;
        if (out_int && !x->known)
            return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                     "casting a computed tensor to integers "
                                     "is not supported");
    }
    if ((rc = s_set(g, n, n->out[0], x->rank, x->dims))) return rc;
    g->v[n->out[0]].is_int = out_int;
    return 0;
}

static int s_flatten(cnd_onnx_t *g, s_node_t *n)
{
    int rc;
    if ((rc = s_need(g, n, 0, 0, -1))) return rc;
    const s_value_t *x = &g->v[n->in[0]];
    int64_t a = n->axis < 0 ? n->axis + x->rank : n->axis;
    if (a < 0 || a > x->rank)
        return cnd_onnx_node_err(g, n, CND_EFORMAT, "attribute 'axis' out of range");
    int64_t d[2] = {1, 1};
    for (int i = 0; i < x->rank; i++) d[i >= a] *= x->dims[i];
    if ((rc = s_set(g, n, n->out[0], 2, d))) return rc;
    g->v[n->out[0]].is_int = x->is_int;
    return 0;
}

static int s_shape_op(cnd_onnx_t *g, s_node_t *n)
{
    int rc;
    if ((rc = s_need(g, n, 0, 0, -1))) return rc;
    const s_value_t *x = &g->v[n->in[0]];
    int64_t r = x->rank, lo = n->shape_start, hi = n->shape_end;
    if (lo < 0) lo += r;
    if (hi < 0) hi += r;
    lo = lo < 0 ? 0 : lo > r ? r : lo;
    hi = hi < 0 ? 0 : hi > r ? r : hi;
    if (hi < lo) hi = lo;
    if ((rc = s_set(g, n, n->out[0], 1, (int64_t[]){hi - lo}))) return rc;
    s_value_t *o = &g->v[n->out[0]];
    o->is_int = 1;
    if (!(o->i = malloc(8 * CND_ONNX_MAX_RANK))) return CND_ENOMEM;
    memcpy(o->i, x->dims + lo, (size_t)(hi - lo) * 8);
    o->known = 1;
    return 0;
}

static int s_infer(cnd_onnx_t *g, s_node_t *n)
{
    switch (n->op) {
    case OP_CONV: return s_conv(g, n);
    case OP_MAXPOOL:
    case OP_AVGPOOL:
    case OP_GAP: return s_pool(g, n);
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV: return s_broadcast(g, n);
    case OP_GEMM:
    case OP_MATMUL: return s_gemm(g, n);
    case OP_BATCHNORM: return s_batchnorm(g, n);
    case OP_RESHAPE: return s_reshape(g, n);
    case OP_SQUEEZE:
    case OP_UNSQUEEZE: return s_squeeze(g, n);
    case OP_TRANSPOSE: return s_transpose(g, n);
    case OP_CONCAT: return s_concat(g, n);
    case OP_GATHER: return s_gather(g, n);
    case OP_FLATTEN: return s_flatten(g, n);
    case OP_SHAPE: return s_shape_op(g, n);
    case OP_CONSTANT: return 0;
    default: return s_same(g, n);
    }
}

/* Ops folded when all their inputs are known. */
static int s_foldable(s_op_t op)
{
    switch (op) {
    case OP_GATHER:
    case OP_CAST:
    case OP_CONCAT:
    case OP_UNSQUEEZE:
    case OP_SQUEEZE:
    case OP_RESHAPE:
    case OP_FLATTEN:
    case OP_IDENTITY:
    case OP_DROPOUT:
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV:
    case OP_TRANSPOSE: return 1;
    default: return 0;
    }
}

/* Ops whose output is their input's bytes. */
static int s_is_view(s_op_t op)
{
    return op == OP_RESHAPE || op == OP_FLATTEN || op == OP_SQUEEZE || op == OP_UNSQUEEZE ||
           op == OP_IDENTITY || op == OP_DROPOUT || op == OP_CAST;
}

/* Forget a previous plan's shapes and folded data; keep what the file holds. */
static void s_reset(cnd_onnx_t *g)
{
    for (int i = 0; i < g->n_v; i++) {
        s_value_t *v = &g->v[i];
        v->alias = -1;
        v->last_use = -1;
        v->fused_away = 0;
        if (v->is_static) continue;
        free(v->f);
        free(v->i);
        v->f = NULL;
        v->i = NULL;
        v->known = 0;
        v->is_int = 0;
        v->rank = 0;
        v->n = 0;
    }
    for (int k = 0; k < g->n_nodes; k++) {
        g->nodes[k].folded = g->nodes[k].op == OP_CONSTANT;
        g->nodes[k].is_alias = 0;
        g->nodes[k].fuse_relu = 0;
        g->nodes[k].fast = 0;
    }
}

int cnd_onnx_plan_shapes(cnd_onnx_t *g, int B)
{
    cnd_onnx_plan_free(g);
    s_reset(g);
    s_value_t *in = &g->v[g->input];
    in->rank = g->in_rank;
    int64_t d[4] = {B, g->in_shape.c, g->in_shape.h, g->in_shape.w};
    memcpy(in->dims, d, sizeof d);
    in->n = (int64_t)B * (int64_t)cnd_shape_size(g->in_shape);
    int64_t folded = 0;
    for (int k = 0; k < g->n_nodes; k++) {
        s_node_t *n = &g->nodes[k];
        int rc = s_infer(g, n);
        if (rc) return rc;
        if (n->op == OP_CONSTANT || n->op == OP_SHAPE) {
            n->folded = 1;
            continue;
        }
        int all = 1;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0 && !g->v[n->in[j]].known) all = 0;
        if (all && s_foldable(n->op)) {
            folded += g->v[n->out[0]].n;
            if (folded > s_fold_budget(g))
                return cnd_onnx_node_err(g, n, CND_ERANGE,
                                         "folding constants would create over %lld elements "
                                         "(twice the file's constants)",
                                         (long long)s_fold_budget(g));
            if ((rc = cnd_onnx_fold(g, n))) return rc;
            n->folded = 1;
            g->v[n->out[0]].known = 1;
            continue;
        }
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j] >= 0 && g->v[n->out[j]].is_int)
                return cnd_onnx_node_err(g, n, CND_EFORMAT,
                                         "computes integers at run time "
                                         "(only shapes known before the input are supported)");
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0 && g->v[n->in[j]].is_int && !g->v[n->in[j]].known)
                return cnd_onnx_node_err(g, n, CND_EFORMAT, "reads integers computed at run time");
    }
    s_value_t *o = &g->v[g->output];
    if (o->known || o->is_int || o->rank < 2 || o->dims[0] != B || o->n / B < 1 || o->n / B > 65536)
        return cnd_errf(CND_EFORMAT,
                        "%s: graph output '%s' must be computed from the input as "
                        "(N, classes) floats",
                        g->path, o->name);
    g->classes = (int)(o->n / B);
    return 0;
}

/* ---- buffers ---- */

static int s_root(const cnd_onnx_t *g, int vi)
{
    while (g->v[vi].alias >= 0) vi = g->v[vi].alias;
    return vi;
}

/* Conv fast path (layer_conv2d.c): square kernel, equal strides, one symmetric pad, no
 * dilation, one group or more than one input channel per group (depthwise convolutions run
 * direct: a GEMM with one input channel per group is all overhead). */
static void s_conv_setup(cnd_onnx_t *g, s_node_t *n)
{
    const s_value_t *x = &g->v[n->in[0]], *w = &g->v[n->in[1]];
    int64_t C = x->dims[1], OC = w->dims[0], G = n->group, Cg = C / G;
    int64_t p = n->pads[0];
    if (G == 1 && n->kernel[0] == 1 && n->kernel[1] == 1 && n->strides[0] == 1 &&
        n->strides[1] == 1 && !n->pads[0] && !n->pads[1] && !n->pads[2] && !n->pads[3]) {
        n->fast = 2; /* pointwise: one sgemm per sample, straight into NCHW */
        return;
    }
    n->fast = n->kernel[0] == n->kernel[1] && n->strides[0] == n->strides[1] && n->pads[1] == p &&
              n->pads[2] == p && n->pads[3] == p && n->dil[0] == 1 && n->dil[1] == 1 &&
              (Cg > 1 || G == 1) && x->dims[2] <= 65536;
    if (!n->fast) return;
    memset(&n->layer, 0, sizeof n->layer);
    n->layer.type = CND_L_CONV2D;
    n->layer.p.conv.oc = (int)(OC / G);
    n->layer.p.conv.k = (int)n->kernel[0];
    n->layer.p.conv.stride = (int)n->strides[0];
    n->layer.p.conv.pad = (int)p;
    n->layer.in = (cnd_shape_t){(int)Cg, (int)x->dims[2], (int)x->dims[3]};
    n->layer.fuse_relu = n->fuse_relu;
    if (cnd_layer_ops(CND_L_CONV2D)->shape(&n->layer)) n->fast = 0;
}

/* Scratch floats node n needs during its run. */
static size_t s_work(cnd_onnx_t *g, s_node_t *n, int B)
{
    if (n->op != OP_CONV || n->fast != 1) return 0;
    const s_value_t *x = &g->v[n->in[0]];
    size_t in_g = n->group > 1 ? (size_t)B * cnd_shape_size(n->layer.in) : 0;
    size_t out_g = (size_t)B * cnd_shape_size(n->layer.out);
    (void)x;
    return cnd_layer_ops(CND_L_CONV2D)->mem(&n->layer, B).work + in_g + out_g;
}

/* Packs Conv weights per group as [W_g | bias_g] (the training layer's layout). */
static int s_pack(cnd_onnx_t *g, s_node_t *n)
{
    free(n->packed);
    n->packed = NULL;
    if (n->op == OP_CONV && n->fast == 2) return 0;
    if (n->op != OP_CONV || !n->fast || !g->v[n->in[1]].known) {
        n->fast = n->fast && g->v[n->in[1]].known &&
                  (n->n_in < 3 || n->in[2] < 0 || g->v[n->in[2]].known);
        if (n->op != OP_CONV || !n->fast) return 0;
    }
    if (n->n_in > 2 && n->in[2] >= 0 && !g->v[n->in[2]].known) {
        n->fast = 0;
        return 0;
    }
    size_t nw = n->layer.n_weights, ocg = (size_t)n->layer.p.conv.oc;
    int64_t G = n->group;
    if (!(n->packed = malloc((size_t)G * (nw + ocg) * sizeof(float)))) return CND_ENOMEM;
    const float *w = g->v[n->in[1]].f;
    const float *b = n->n_in > 2 && n->in[2] >= 0 ? g->v[n->in[2]].f : NULL;
    for (int64_t q = 0; q < G; q++) {
        float *d = n->packed + (size_t)q * (nw + ocg);
        memcpy(d, w + (size_t)q * nw, nw * sizeof(float));
        for (size_t o = 0; o < ocg; o++) d[nw + o] = b ? b[(size_t)q * ocg + o] : 0.0f;
    }
    return 0;
}

/* Aliases, fusions, last uses, then blocks. */
static int s_buffers(cnd_onnx_t *g, int B)
{
    int N = g->n_nodes, rc = CND_ENOMEM;
    int *readers = calloc((size_t)g->n_v + 1, sizeof(int));
    size_t *bsize = calloc((size_t)g->n_v + 1, sizeof(size_t)), *boff = NULL;
    int *bfree = calloc((size_t)g->n_v + 1, sizeof(int)), *vblock = NULL;
    if (!readers || !bsize || !bfree) goto done;
    if (!(boff = calloc((size_t)g->n_v + 1, sizeof(size_t)))) goto done;
    if (!(vblock = malloc(((size_t)g->n_v + 1) * sizeof(int)))) goto done;
    for (int k = 0; k < N; k++)
        for (int j = 0; j < g->nodes[k].n_in; j++)
            if (g->nodes[k].in[j] >= 0) readers[g->nodes[k].in[j]]++;
    for (int k = 0; k < N; k++) {
        s_node_t *n = &g->nodes[k];
        if (n->folded) continue;
        if (s_is_view(n->op) && !g->v[n->in[0]].known) {
            n->is_alias = 1;
            g->v[n->out[0]].alias = n->in[0];
        } else if (n->op == OP_RELU && !g->v[n->in[0]].known) {
            int pv = n->in[0], p = g->v[pv].producer;
            if (p >= 0 && g->nodes[p].op == OP_CONV && readers[pv] == 1 && pv != g->output &&
                g->v[pv].alias < 0) {
                g->nodes[p].fuse_relu = 1;
                n->is_alias = 1;
                g->v[n->out[0]].alias = pv;
                g->v[n->out[0]].fused_away = 1;
            }
        }
    }
    for (int k = 0; k < N; k++) {
        s_node_t *n = &g->nodes[k];
        if (n->folded) continue;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0 && !g->v[n->in[j]].known) g->v[s_root(g, n->in[j])].last_use = k;
        if (n->op == OP_CONV) {
            s_conv_setup(g, n);
            if ((rc = s_pack(g, n))) goto done;
        }
        size_t w = s_work(g, n, B);
        if (w > g->work_floats) g->work_floats = w;
    }
    g->v[s_root(g, g->output)].last_use = N;
    /* Greedy blocks: nb blocks, each free or holding one live root. */
    int nb = 0;
    for (int vi = 0; vi < g->n_v; vi++) vblock[vi] = -1;
    size_t total = 0;
    for (int k = 0; k < N; k++) {
        s_node_t *n = &g->nodes[k];
        if (n->folded || n->is_alias) continue;
        for (int o = 0; o < n->n_out; o++) {
            int vi = n->out[o];
            if (vi < 0) continue;
            size_t need = (size_t)g->v[vi].n, best = (size_t)-1;
            int pick = -1;
            for (int b = 0; b < nb; b++)
                if (bfree[b] && bsize[b] >= need && bsize[b] < best) best = bsize[b], pick = b;
            if (pick < 0) {
                for (int b = 0; b < nb; b++) /* grow the largest free block */
                    if (bfree[b] && (pick < 0 || bsize[b] > bsize[pick])) pick = b;
                if (pick < 0) pick = nb++;
                total += need - bsize[pick];
                bsize[pick] = need;
                if (total > CND_ONNX_ARENA_MAX) {
                    rc = cnd_onnx_node_err(g, n, CND_ERANGE,
                                           "activations for %d samples need over "
                                           "%zu floats",
                                           B, (size_t)CND_ONNX_ARENA_MAX);
                    goto done;
                }
            }
            bfree[pick] = 0;
            vblock[vi] = pick;
            if (g->v[vi].last_use < 0) g->v[vi].last_use = k; /* never read: free after */
        }
        for (int vi_k = 0; vi_k < n->n_in + n->n_out; vi_k++) {
            int vi = vi_k < n->n_in ? n->in[vi_k] : n->out[vi_k - n->n_in];
            if (vi < 0 || g->v[vi].known) continue;
            int r = s_root(g, vi);
            if (g->v[r].last_use == k && vblock[r] >= 0 && r != g->input) bfree[vblock[r]] = 1;
        }
    }
    size_t off = 0;
    for (int b = 0; b < nb; b++) {
        boff[b] = off;
        off += bsize[b];
    }
    g->arena_floats = off;
    for (int vi = 0; vi < g->n_v; vi++) {
        int r = s_root(g, vi);
        g->v[vi].on_input = r == g->input;
        if (vblock[r] >= 0) g->v[vi].off = boff[vblock[r]];
    }
    rc = 0;
done:
    free(readers);
    free(bsize);
    free(boff);
    free(bfree);
    free(vblock);
    return rc;
}

int cnd_onnx_plan_size(cnd_onnx_t *g, int B, size_t *floats)
{
    if (B < 1 || B > 65536) return cnd_errf(CND_EINVAL, "batch %d out of range", B);
    int rc = cnd_onnx_plan_shapes(g, B);
    if (!rc) rc = s_buffers(g, B);
    if (rc) return rc;
    *floats = g->arena_floats + g->work_floats;
    if (*floats > CND_ONNX_ARENA_MAX)
        return cnd_errf(CND_ERANGE, "%s: %d samples need %zu floats of activations and scratch",
                        g->path, B, *floats);
    return 0;
}

int cnd_onnx_plan(cnd_onnx_t *g, int B)
{
    size_t floats;
    int rc = cnd_onnx_plan_size(g, B, &floats);
    if (rc) return rc;
    g->arena = malloc((g->arena_floats ? g->arena_floats : 1) * sizeof(float));
    g->work = malloc((g->work_floats ? g->work_floats : 1) * sizeof(float));
    if (!g->arena || !g->work) {
        cnd_onnx_plan_free(g);
        return CND_ENOMEM;
    }
    g->plan_B = B;
    g->plan_threads = cnd_pool_threads();
    return 0;
}

void cnd_onnx_plan_free(cnd_onnx_t *g)
{
    free(g->arena);
    free(g->work);
    g->arena = g->work = NULL;
    g->plan_B = 0;
    g->arena_floats = g->work_floats = 0;
}
