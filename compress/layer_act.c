/*
 * layer_act.c: the bounded activations of edge networks, relu6 (MobileNetV2) and hardswish
 * (MobileNetV3), forward beside backward. Both keep their input's layout and shape.
 *
 * relu6(x) = min(max(x, 0), 6): its gradient passes where 0 < x < 6, read from the output
 * (0 < y < 6 exactly there). hardswish(x) = x * relu6(x + 3) / 6: 0 below -3, x above 3,
 * and x (x + 3) / 6 between, with derivative (2x + 3) / 6 there; the backward pass reads the
 * input. At the kinks the gradient is PyTorch's: relu6 passes none at exactly 0 or 6, and
 * hardswish uses 0 for x < -3, (2x + 3) / 6 for -3 <= x <= 3 and 1 above, as
 * hardswish_backward does.
 */
#include "layer.h"

static int s_same_shape(cnd_layer_t *l)
{
    l->out = l->in;
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

static void s_relu6_forward(cnd_layer_t *l, float *out, const float *in, const float *w,
                            float *state, float *work, int B, int train)
{
    // out and in are (B, C*H*W) in any layout
    size_t n = (size_t)B * cnd_shape_size(l->in);
    for (size_t i = 0; i < n; i++) {
        float v = in[i] > 0.0f ? in[i] : 0.0f;
        out[i] = v < 6.0f ? v : 6.0f;
    }
}

static void s_relu6_backward(cnd_layer_t *l, float *din, float *dw, const float *dout,
                             const float *in, const float *out, const float *w, float *work, int B)
{
    if (!din) return;
    size_t n = (size_t)B * cnd_shape_size(l->in);
    /* & rather than &&: no branch on the data, so the loop vectorises */
    for (size_t i = 0; i < n; i++) {
        float g = dout[i], v = out[i]; /* dout read unconditionally: a select, not a branch */
        din[i] = (v > 0.0f) & (v < 6.0f) ? g : 0.0f;
    }
}

static void s_hswish_forward(cnd_layer_t *l, float *out, const float *in, const float *w,
                             float *state, float *work, int B, int train)
{
    size_t n = (size_t)B * cnd_shape_size(l->in);
    for (size_t i = 0; i < n; i++) {
        float x = in[i], r = x + 3.0f;
        r = r > 0.0f ? (r < 6.0f ? r : 6.0f) : 0.0f;
        out[i] = x * r / 6.0f;
    }
}

static void s_hswish_backward(cnd_layer_t *l, float *din, float *dw, const float *dout,
                              const float *in, const float *out, const float *w, float *work, int B)
{
    if (!din) return;
    size_t n = (size_t)B * cnd_shape_size(l->in);
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        float d = x < -3.0f ? 0.0f : x <= 3.0f ? (2.0f * x + 3.0f) / 6.0f : 1.0f;
        din[i] = dout[i] * d;
    }
}

const cnd_layer_ops_t cnd_layer_relu6_ops = {
    "relu6", s_same_shape, s_none_init, s_relu6_forward, s_relu6_backward, s_no_macs, s_no_mem};
const cnd_layer_ops_t cnd_layer_hardswish_ops = {"hardswish",      s_same_shape,      s_none_init,
                                                 s_hswish_forward, s_hswish_backward, s_no_macs,
                                                 s_no_mem};
