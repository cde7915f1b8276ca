/*
 * layer_merge.c: the two-input nodes of a graph model, add (a residual connection) and concat
 * (channels of the first input, then the second's).
 *
 * The inputs come from different nodes, so their layouts (layer.h) may differ: a conv2d output
 * is CBHW, the model input NCHW. Both are read plane by plane through their own layout and the
 * output takes the first input's layout; when both layouts agree, add is one flat loop and a
 * CBHW concat is two copies (all of a's channels, then all of b's).
 *
 * The model runs these through cnd_merge_forward / cnd_merge_backward (layer.h), not the ops
 * table's forward and backward, which take one input.
 */
#include "layer.h"
#include "error.h"

#include <string.h>

static size_t s_plane(int cbhw, int C, int c, int b, int B, size_t hw)
{
    return (cbhw ? (size_t)c * (size_t)B + (size_t)b : (size_t)b * (size_t)C + (size_t)c) * hw;
}

static int s_add_shape(cnd_layer_t *l)
{
    if (l->in.c != l->in2.c || l->in.h != l->in2.h || l->in.w != l->in2.w)
        return cnd_errf(CND_EINVAL, "add: inputs %dx%dx%d and %dx%dx%d differ in shape", l->in.c,
                        l->in.h, l->in.w, l->in2.c, l->in2.h, l->in2.w);
    l->out = l->in;
    l->n_params = l->n_weights = l->n_state = 0;
    return 0;
}

static int s_concat_shape(cnd_layer_t *l)
{
    if (l->in.h != l->in2.h || l->in.w != l->in2.w)
        return cnd_errf(CND_EINVAL,
                        "concat: inputs %dx%dx%d and %dx%dx%d differ in height or width", l->in.c,
                        l->in.h, l->in.w, l->in2.c, l->in2.h, l->in2.w);
    if (l->in.c > (1 << 20) - l->in2.c)
        return cnd_errf(CND_EINVAL, "concat: more than 2^20 channels");
    l->out = (cnd_shape_t){l->in.c + l->in2.c, l->in.h, l->in.w};
    l->n_params = l->n_weights = l->n_state = 0;
    return 0;
}

void cnd_merge_forward(const cnd_layer_t *l, float *out, const float *a, const float *b, int B)
{
    // out is (B,C,H,W) or (C,B,H,W) as a; a is l->in, b is l->in2
    size_t hw = (size_t)l->in.h * l->in.w;
    int same = l->in_cbhw == l->in2_cbhw || B == 1; /* one sample: one layout */
    if (l->type == CND_L_ADD) {
        size_t n = (size_t)B * cnd_shape_size(l->in);
        if (same || l->in.c == 1) {
            for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
            return;
        }
        for (int c = 0; c < l->in.c; c++)
            for (int s = 0; s < B; s++) {
                float *o = out + s_plane(l->in_cbhw, l->in.c, c, s, B, hw);
                const float *x = a + s_plane(l->in_cbhw, l->in.c, c, s, B, hw);
                const float *y = b + s_plane(l->in2_cbhw, l->in.c, c, s, B, hw);
                for (size_t i = 0; i < hw; i++) o[i] = x[i] + y[i];
            }
        return;
    }
    int C = l->out.c;
    if (l->in_cbhw && (same || l->in2.c == 1)) {
        memcpy(out, a, (size_t)B * cnd_shape_size(l->in) * sizeof(float));
        memcpy(out + (size_t)B * cnd_shape_size(l->in), b,
               (size_t)B * cnd_shape_size(l->in2) * sizeof(float));
        return;
    }
    for (int s = 0; s < B; s++) {
        for (int c = 0; c < l->in.c; c++)
            memcpy(out + s_plane(l->in_cbhw, C, c, s, B, hw),
                   a + s_plane(l->in_cbhw, l->in.c, c, s, B, hw), hw * sizeof(float));
        for (int c = 0; c < l->in2.c; c++)
            memcpy(out + s_plane(l->in_cbhw, C, l->in.c + c, s, B, hw),
                   b + s_plane(l->in2_cbhw, l->in2.c, c, s, B, hw), hw * sizeof(float));
    }
}

void cnd_merge_backward(const cnd_layer_t *l, float *da, float *db, const float *dout, int B)
{
    size_t hw = (size_t)l->in.h * l->in.w;
    int same = l->in_cbhw == l->in2_cbhw || B == 1;
    if (l->type == CND_L_ADD) {
        size_t n = (size_t)B * cnd_shape_size(l->in);
        if (da) memcpy(da, dout, n * sizeof(float));
        if (!db) return;
        if (same || l->in.c == 1) {
            memcpy(db, dout, n * sizeof(float));
            return;
        }
        for (int c = 0; c < l->in.c; c++)
            for (int s = 0; s < B; s++)
                memcpy(db + s_plane(l->in2_cbhw, l->in.c, c, s, B, hw),
                       dout + s_plane(l->in_cbhw, l->in.c, c, s, B, hw), hw * sizeof(float));
        return;
    }
    int C = l->out.c;
    if (l->in_cbhw && (same || l->in2.c == 1)) {
        size_t na = (size_t)B * cnd_shape_size(l->in);
        if (da) memcpy(da, dout, na * sizeof(float));
        if (db) memcpy(db, dout + na, (size_t)B * cnd_shape_size(l->in2) * sizeof(float));
        return;
    }
    for (int s = 0; s < B; s++) {
        for (int c = 0; da && c < l->in.c; c++)
            memcpy(da + s_plane(l->in_cbhw, l->in.c, c, s, B, hw),
                   dout + s_plane(l->in_cbhw, C, c, s, B, hw), hw * sizeof(float));
        for (int c = 0; db && c < l->in2.c; c++)
            memcpy(db + s_plane(l->in2_cbhw, l->in2.c, c, s, B, hw),
                   dout + s_plane(l->in_cbhw, C, l->in.c + c, s, B, hw), hw * sizeof(float));
    }
}

static void s_none_init(cnd_layer_t *l, float *w, float *state, cnd_rng_t *rng) {}

static uint64_t s_add_macs(const cnd_layer_t *l)
{
    return 0;
}

static cnd_layer_mem_t s_no_mem(const cnd_layer_t *l, int B)
{
    return (cnd_layer_mem_t){0};
}

const cnd_layer_ops_t cnd_layer_add_ops = {"add", s_add_shape, s_none_init, NULL,
                                           NULL,  s_add_macs,  s_no_mem};
const cnd_layer_ops_t cnd_layer_concat_ops = {"concat", s_concat_shape, s_none_init, NULL,
                                              NULL,     s_add_macs,     s_no_mem};
