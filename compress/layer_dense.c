/*
 * layer_dense.c: fully connected layer, out = in * W^T + b, on OpenBLAS sgemm.
 *
 * W is (O, F) row-major followed by b (O) in the parameter buffer, the layout PyTorch's
 * nn.Linear uses, so weights move between the two without transposes. The input must be NCHW
 * (B, F) features; the model builder refuses a dense layer straight after a multi-channel
 * spatial layer (flatten or gap first). A following relu is fused (layer.h). With several
 * threads (pool.h) each takes a block of rows of the batch, except for the weight gradient,
 * where each takes a block of output features (see s_backward_w_task).
 */
#include "layer.h"
#include "error.h"
#include "pool.h"

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

typedef struct {
    cnd_layer_t *l;
    float *din, *dw, *out, *work;
    const float *in, *dout, *w;
    int B;
} s_job;

static void s_forward_task(void *ctx, int task, int ntasks)
{
    const s_job *j = ctx;
    int O = j->l->p.dense.out, F = (int)cnd_shape_size(j->l->in);
    long b0, b1;
    cnd_pool_range(j->B, ntasks, task, &b0, &b1);
    if (b1 == b0) return;
    const float *bias = j->w + j->l->n_weights;
    float *out = j->out + (size_t)b0 * O;
    for (long b = b0; b < b1; b++) memcpy(j->out + (size_t)b * O, bias, (size_t)O * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(b1 - b0), O, F, 1.0f,
                j->in + (size_t)b0 * F, F, j->w, F, 1.0f, out, O);
    if (j->l->fuse_relu)
        for (size_t i = 0; i < (size_t)(b1 - b0) * O; i++) out[i] = out[i] > 0.0f ? out[i] : 0.0f;
}

static void s_forward(cnd_layer_t *l, float *out, const float *in, const float *w, float *state,
                      float *work, int B, int train)
{
    // out is (B,O), in is (B,F), weight is (O,F), bias is (O)
    s_job j = {.l = l, .out = out, .in = in, .w = w, .B = B};
    cnd_pool_run(s_forward_task, &j, cnd_pool_threads());
}

/* Backward in two passes over the threads. First each task takes a block of output features:
 * it masks their columns of dY by the fused relu (into `work`, (B, O)) and adds their rows of
 * dW = dY^T X and of db straight into the gradients, over the whole batch, so no partial sums
 * need reducing. Then each takes a block of batch rows for din = dY W, which needs every
 * column of the masked dY. */
static void s_backward_w_task(void *ctx, int task, int ntasks)
{
    const s_job *j = ctx;
    const cnd_layer_t *l = j->l;
    int O = l->p.dense.out, F = (int)cnd_shape_size(l->in), B = j->B;
    long o0, o1;
    cnd_pool_range(O, ntasks, task, &o0, &o1);
    if (o1 == o0) return;
    const float *dy = j->dout;
    if (l->fuse_relu) { /* gradient mask of the fused relu, by the rectified output */
        for (int b = 0; b < B; b++) {
            float *m = j->work + (size_t)b * O;
            const float *o = j->out + (size_t)b * O, *d = j->dout + (size_t)b * O;
            for (long k = o0; k < o1; k++) m[k] = o[k] > 0.0f ? d[k] : 0.0f;
        }
        dy = j->work;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(o1 - o0), F, B, 1.0f, dy + o0, O,
                j->in, F, 1.0f, j->dw + (size_t)o0 * F, F);
    float *dbias = j->dw + l->n_weights;
    for (int b = 0; b < B; b++)
        for (long k = o0; k < o1; k++) dbias[k] += dy[(size_t)b * O + k];
}

static void s_backward_x_task(void *ctx, int task, int ntasks)
{
    const s_job *j = ctx;
    const cnd_layer_t *l = j->l;
    int O = l->p.dense.out, F = (int)cnd_shape_size(l->in);
    long b0, b1;
    cnd_pool_range(j->B, ntasks, task, &b0, &b1);
    if (b1 == b0) return;
    const float *dy = (l->fuse_relu ? j->work : j->dout) + (size_t)b0 * O;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(b1 - b0), F, O, 1.0f, dy, O, j->w,
                F, 0.0f, j->din + (size_t)b0 * F, F);
}

/* DP-SGD (layer.h): sample b's weight gradient is the outer product dy_b x_b^T and its bias
 * gradient dy_b, so its squared norm is |dy_b|^2 (|x_b|^2 + 1), without forming either. dy is
 * the relu-masked gradient the weight pass left in `work` when the relu is fused. */
static void s_sample_norms(cnd_layer_t *l, const float *dout, const float *in, const float *work,
                           int B)
{
    int O = l->p.dense.out, F = (int)cnd_shape_size(l->in);
    const float *dy = l->fuse_relu ? work : dout;
    for (int b = 0; b < B; b++) {
        double gy = 0, gx = 1.0;
        for (int k = 0; k < O; k++) gy += (double)dy[(size_t)b * O + k] * dy[(size_t)b * O + k];
        for (int k = 0; k < F; k++) gx += (double)in[(size_t)b * F + k] * in[(size_t)b * F + k];
        l->sample_norm2[b] += gy * gx;
    }
}

static void s_backward(cnd_layer_t *l, float *din, float *dw, const float *dout, const float *in,
                       const float *out, const float *w, float *work, int B)
{
    // din is (B,F), dweight is (O,F), dbias is (O), dout is (B,O), in is (B,F)
    s_job j = {.l = l,
               .din = din,
               .dw = dw,
               .out = (float *)out,
               .work = work,
               .in = in,
               .dout = dout,
               .w = w,
               .B = B};
    cnd_pool_run(s_backward_w_task, &j, cnd_pool_threads());
    if (l->sample_norm2) s_sample_norms(l, dout, in, work, B);
    if (din) cnd_pool_run(s_backward_x_task, &j, cnd_pool_threads());
}

static uint64_t s_macs(const cnd_layer_t *l)
{
    return (uint64_t)l->n_weights;
}

static cnd_layer_mem_t s_mem(const cnd_layer_t *l, int B)
{
    return (cnd_layer_mem_t){.work = (size_t)B * (size_t)l->p.dense.out};
}

const cnd_layer_ops_t cnd_layer_dense_ops = {"dense",    s_shape, s_init, s_forward,
                                             s_backward, s_macs,  s_mem};
