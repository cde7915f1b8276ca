/*
 * layer_dense.c: fully connected layer, out = in * W^T + b, on OpenBLAS sgemm.
 *
 * W is (O, F) row-major followed by b (O) in the parameter buffer, the layout PyTorch's
 * nn.Linear uses, so weights move between the two without transposes. The input must be NCHW
 * (B, F) features; the model builder refuses a dense layer straight after a multi-channel
 * spatial layer (flatten or gap first). A following relu is fused (layer.h).
 */
#include "layer.h"
#include "error.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

static int s_shape(cnd_layer_t *l)
{
    size_t F = cnd_shape_size(l->in);
    if (l->p.dense.out <= 0) return cnd_errf(CND_EINVAL, "dense: output size must be positive");
    l->out = (cnd_shape_t){l->p.dense.out, 1, 1};
    l->n_weights = (size_t)l->p.dense.out * F;
    l->n_params = l->n_weights + (size_t)l->p.dense.out;
    l->n_state = 0;
    return 0;
}

static void s_init(cnd_layer_t *l, float *w, float *state, cnd_rng_t *rng)
{
    size_t F = cnd_shape_size(l->in);
    float sd = sqrtf(2.0f / (float)F); /* He-normal, fan-in */
    for (size_t i = 0; i < l->n_weights; i++) w[i] = sd * (float)cnd_rng_normal(rng);
    memset(w + l->n_weights, 0, (size_t)l->p.dense.out * sizeof(float));
}

static void s_forward(cnd_layer_t *l, float *out, const float *in, const float *w, float *state,
                      float *work, int B, int train)
{
    // out is (B,O), in is (B,F), weight is (O,F), bias is (O)
    int O = l->p.dense.out, F = (int)cnd_shape_size(l->in);
    const float *bias = w + l->n_weights;
    for (int b = 0; b < B; b++) memcpy(out + (size_t)b * O, bias, (size_t)O * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, O, F, 1.0f, in, F, w, F, 1.0f, out,
                O);
    if (l->fuse_relu)
        for (size_t i = 0; i < (size_t)B * O; i++) out[i] = out[i] > 0.0f ? out[i] : 0.0f;
}

static void s_backward(cnd_layer_t *l, float *din, float *dw, const float *dout, const float *in,
                       const float *out, const float *w, float *work, int B)
{
    // din is (B,F), dweight is (O,F), dbias is (O), dout is (B,O), in is (B,F)
    int O = l->p.dense.out, F = (int)cnd_shape_size(l->in);
    float *dbias = dw + l->n_weights;
    if (l->fuse_relu) { /* gradient mask of the fused relu, by the rectified output */
        for (size_t i = 0; i < (size_t)B * O; i++) work[i] = out[i] > 0.0f ? dout[i] : 0.0f;
        dout = work;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, F, B, 1.0f, dout, O, in, F, 1.0f, dw,
                F);
    for (int b = 0; b < B; b++) {
        const float *d = dout + (size_t)b * O;
        for (int o = 0; o < O; o++) dbias[o] += d[o];
    }
    if (din)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, F, O, 1.0f, dout, O, w, F,
                    0.0f, din, F);
}

static uint64_t s_macs(const cnd_layer_t *l)
{
    return (uint64_t)l->n_weights;
}

static cnd_layer_mem_t s_mem(const cnd_layer_t *l, int B)
{
    return (cnd_layer_mem_t){.work = l->fuse_relu ? (size_t)B * (size_t)l->p.dense.out : 0};
}

const cnd_layer_ops_t cnd_layer_dense_ops = {"dense", s_shape, s_init, s_forward, s_backward,
                                             s_macs, s_mem};
