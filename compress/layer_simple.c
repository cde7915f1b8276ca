/*
 * layer_simple.c: layers without parameters that only reshape or act elementwise: relu, tanh
 * and flatten.
 *
 * A relu fused into the preceding conv2d/dense (layer.h) is never called: the model skips
 * layers marked `alias`. Flatten turns a CBHW activation into NCHW (B, C*H*W) features, the
 * order PyTorch's Flatten gives, so dense weights mean the same thing in both.
 */
#include "layer.h"

#include <math.h>
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

static void s_none_init(cnd_layer_t *l, float *w, float *state, cnd_rng_t *rng) {}

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

/* tanh: bounded and smooth, the activation DP-SGD trains best with (Papernot et al. 2021,
 * "Tempered sigmoid activations"): clipped gradients lose less when activations cannot grow. */
static void s_tanh_forward(cnd_layer_t *l, float *out, const float *in, const float *w,
                           float *state, float *work, int B, int train)
{
    size_t n = (size_t)B * cnd_shape_size(l->in);
    for (size_t i = 0; i < n; i++) out[i] = tanhf(in[i]);
}

static void s_tanh_backward(cnd_layer_t *l, float *din, float *dw, const float *dout,
                            const float *in, const float *out, const float *w, float *work, int B)
{
    if (!din) return;
    size_t n = (size_t)B * cnd_shape_size(l->in);
    for (size_t i = 0; i < n; i++) din[i] = dout[i] * (1.0f - out[i] * out[i]);
}

static void s_flat_forward(cnd_layer_t *l, float *out, const float *in, const float *w,
                           float *state, float *work, int B, int train)
{
    // out is (B, C*H*W), in is (B,C,H,W) or (C,B,H,W)
    int C = l->in.c;
    size_t HW = (size_t)l->in.h * l->in.w, F = (size_t)C * HW;
    if (!l->in_cbhw || C == 1) {
        memcpy(out, in, (size_t)B * F * sizeof(float));
        return;
    }
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            memcpy(out + (size_t)b * F + (size_t)c * HW, in + cnd_layer_plane(l, c, b, B),
                   HW * sizeof(float));
}

static void s_flat_backward(cnd_layer_t *l, float *din, float *dw, const float *dout,
                            const float *in, const float *out, const float *w, float *work, int B)
{
    if (!din) return;
    int C = l->in.c;
    size_t HW = (size_t)l->in.h * l->in.w, F = (size_t)C * HW;
    if (!l->in_cbhw || C == 1) {
        memcpy(din, dout, (size_t)B * F * sizeof(float));
        return;
    }
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            memcpy(din + cnd_layer_plane(l, c, b, B), dout + (size_t)b * F + (size_t)c * HW,
                   HW * sizeof(float));
}

const cnd_layer_ops_t cnd_layer_relu_ops = {
    "relu", s_same_shape, s_none_init, s_relu_forward, s_relu_backward, s_no_macs, s_no_mem};
const cnd_layer_ops_t cnd_layer_tanh_ops = {
    "tanh", s_same_shape, s_none_init, s_tanh_forward, s_tanh_backward, s_no_macs, s_no_mem};
const cnd_layer_ops_t cnd_layer_flatten_ops = {
    "flatten", s_flat_shape, s_none_init, s_flat_forward, s_flat_backward, s_no_macs, s_no_mem};
