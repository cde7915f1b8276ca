/*
 * layer_simple.c: layers without parameters that only reshape or gate: relu and flatten.
 */
#include "layer.h"

#include <string.h>

static int s_same_shape(cnd_layer_t *l)
{
    l->out = l->in;
    l->n_params = l->n_weights = l->n_state = 0;
    return 0;
}

static int s_flat_shape(cnd_layer_t *l)
{
    l->out = (cnd_shape_t){(int)cnd_shape_size(l->in), 1, 1};
    l->n_params = l->n_weights = l->n_state = 0;
    return 0;
}

static void s_none_init(cnd_layer_t *l, float *w, float *state, cnd_rng_t *rng)
{
}

static uint64_t s_no_macs(const cnd_layer_t *l)
{
    return 0;
}

static cnd_layer_mem_t s_no_mem(const cnd_layer_t *l, int B)
{
    return (cnd_layer_mem_t){0};
}

static void s_relu_forward(cnd_layer_t *l, float *out, const float *in, const float *w,
                           float *state, float *work, int B, int train)
{
    size_t n = (size_t)B * cnd_shape_size(l->in);
    for (size_t i = 0; i < n; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

static void s_relu_backward(cnd_layer_t *l, float *din, float *dw, const float *dout,
                            const float *in, const float *out, const float *w, float *work, int B)
{
    if (!din) return;
    size_t n = (size_t)B * cnd_shape_size(l->in);
    for (size_t i = 0; i < n; i++) din[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

static void s_copy_forward(cnd_layer_t *l, float *out, const float *in, const float *w,
                           float *state, float *work, int B, int train)
{
    memcpy(out, in, (size_t)B * cnd_shape_size(l->in) * sizeof(float));
}

static void s_copy_backward(cnd_layer_t *l, float *din, float *dw, const float *dout,
                            const float *in, const float *out, const float *w, float *work, int B)
{
    if (din) memcpy(din, dout, (size_t)B * cnd_shape_size(l->in) * sizeof(float));
}

const cnd_layer_ops_t cnd_layer_relu_ops = {"relu", s_same_shape, s_none_init, s_relu_forward,
                                            s_relu_backward, s_no_macs, s_no_mem};
const cnd_layer_ops_t cnd_layer_flatten_ops = {"flatten", s_flat_shape, s_none_init,
                                               s_copy_forward, s_copy_backward, s_no_macs,
                                               s_no_mem};
