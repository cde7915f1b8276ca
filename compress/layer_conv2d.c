/*
 * layer_conv2d.c: 2-D convolution with square kernels, stride and zero padding.
 *
 * The whole batch goes through one sgemm: im2col lays the input out as a (C*K*K, B*P) matrix
 * (P = OH*OW output pixels per sample), and W (OC, C*K*K) times it gives (OC, B*P), which is
 * the output in CBHW layout (see layer.h) with no further copy. One large GEMM keeps both cores
 * busy where B small per-sample GEMMs would not. The column matrix is kept for the backward
 * pass (dW = dY * col^T) so it needs no second im2col; dcol = W^T * dY goes back to the input
 * through col2im. A following relu is fused: applied while adding the bias, and its gradient
 * mask applied while reading dY. With several threads the batch is split into one chunk of
 * samples per thread, each running im2col, its GEMMs (single-threaded sgemm on a column block)
 * and col2im end to end (pool.h).
 *
 * Parameters: W (OC, C, K, K) then bias (OC), PyTorch's Conv2d layout.
 */
#include "layer.h"
#include "error.h"
#include "pool.h"
#include "vecops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

static int s_shape(cnd_layer_t *l)
{
    int C = l->in.c, H = l->in.h, W = l->in.w;
    int K = l->p.conv.k, S = l->p.conv.stride, P = l->p.conv.pad;
    if (l->p.conv.oc <= 0 || K <= 0 || S <= 0 || P < 0)
        return cnd_errf(CND_EINVAL, "conv2d: channels, kernel and stride must be positive");
    if (H + 2 * P < K || W + 2 * P < K)
        return cnd_errf(CND_EINVAL, "conv2d: kernel %d does not fit input %dx%d with pad %d", K,
                        H, W, P);
    l->out = (cnd_shape_t){l->p.conv.oc, (H + 2 * P - K) / S + 1, (W + 2 * P - K) / S + 1};
    l->n_weights = (size_t)l->p.conv.oc * (size_t)C * (size_t)K * (size_t)K;
    l->n_params = l->n_weights + (size_t)l->p.conv.oc;
    l->n_state = 0;
    return 0;
}

static void s_init(cnd_layer_t *l, float *w, float *state, cnd_rng_t *rng)
{
    size_t fan_in = (size_t)l->in.c * (size_t)l->p.conv.k * (size_t)l->p.conv.k;
    float sd = sqrtf(2.0f / (float)fan_in);
    for (size_t i = 0; i < l->n_weights; i++) w[i] = sd * (float)cnd_rng_normal(rng);
    memset(w + l->n_weights, 0, (size_t)l->p.conv.oc * sizeof(float));
}

/* Valid output columns [*lo, *hi) for kernel column kj: 0 <= ow*S - PAD + kj < W. */
static void s_valid_cols(int *lo, int *hi, int kj, int S, int PAD, int W, int OW)
{
    int a = PAD - kj, b = W + PAD - kj; /* need a <= ow*S < b */
    int l0 = a <= 0 ? 0 : (a + S - 1) / S;
    int h0 = b <= 0 ? 0 : (b + S - 1) / S;
    if (h0 > OW) h0 = OW;
    if (l0 > h0) l0 = h0;
    *lo = l0;
    *hi = h0;
}

/* col is (C*K*K, B*P); row r = (c,ki,kj); column b*P + oh*OW + ow; fills samples [b0, b1). */
static void s_im2col(float *col, const float *in, const cnd_layer_t *l, int B, int b0, int b1)
{
    int C = l->in.c, H = l->in.h, W = l->in.w, K = l->p.conv.k, S = l->p.conv.stride;
    int PAD = l->p.conv.pad, OH = l->out.h, OW = l->out.w;
    size_t P = (size_t)OH * OW, BP = (size_t)B * P;
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                float *row = col + ((size_t)(c * K + ki) * K + kj) * BP;
                int lo, hi;
                s_valid_cols(&lo, &hi, kj, S, PAD, W, OW);
                for (int b = b0; b < b1; b++) {
                    const float *src = in + cnd_layer_plane(l, c, b, B);
                    float *dst = row + (size_t)b * P;
                    for (int oh = 0; oh < OH; oh++) {
                        int ih = oh * S - PAD + ki;
                        float *d = dst + (size_t)oh * OW;
                        if (ih < 0 || ih >= H) {
                            for (int ow = 0; ow < OW; ow++) d[ow] = 0.0f;
                            continue;
                        }
                        const float *s = src + (size_t)ih * W;
                        int off = kj - PAD; /* ow >= lo keeps ow*S + off >= 0 */
                        for (int ow = 0; ow < lo; ow++) d[ow] = 0.0f;
                        if (S == 1)
                            for (int ow = lo; ow < hi; ow++) d[ow] = s[ow + off];
                        else
                            for (int ow = lo; ow < hi; ow++) d[ow] = s[ow * S + off];
                        for (int ow = hi; ow < OW; ow++) d[ow] = 0.0f;
                    }
                }
            }
}

/* din = col2im(dcol (C*K*K, B*P)) for samples [b0, b1), overwriting those planes of din. */
static void s_col2im(float *din, const float *dcol, const cnd_layer_t *l, int B, int b0, int b1)
{
    int C = l->in.c, H = l->in.h, W = l->in.w, K = l->p.conv.k, S = l->p.conv.stride;
    int PAD = l->p.conv.pad, OH = l->out.h, OW = l->out.w;
    size_t P = (size_t)OH * OW, BP = (size_t)B * P;
    for (int c = 0; c < C; c++) {
        for (int b = b0; b < b1; b++) memset(din + cnd_layer_plane(l, c, b, B), 0,
                                             (size_t)H * W * sizeof(float));
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                const float *row = dcol + ((size_t)(c * K + ki) * K + kj) * BP;
                int lo, hi;
                s_valid_cols(&lo, &hi, kj, S, PAD, W, OW);
                for (int b = b0; b < b1; b++) {
                    float *dst = din + cnd_layer_plane(l, c, b, B);
                    const float *src = row + (size_t)b * P;
                    for (int oh = 0; oh < OH; oh++) {
                        int ih = oh * S - PAD + ki;
                        if (ih < 0 || ih >= H) continue;
                        float *d = dst + (size_t)ih * W;
                        const float *s = src + (size_t)oh * OW;
                        int off = kj - PAD;
                        if (S == 1)
                            for (int ow = lo; ow < hi; ow++) d[ow + off] += s[ow];
                        else
                            for (int ow = lo; ow < hi; ow++) d[ow * S + off] += s[ow];
                    }
                }
            }
    }
}

/* One task's share of a pass: samples [b0, b1) of the batch (pool.h). */
typedef struct {
    cnd_layer_t *l;
    float *din, *dw, *out, *work;
    const float *in, *dout, *w;
    int B;
} s_job;

static void s_forward_task(void *ctx, int task, int ntasks)
{
    const s_job *j = ctx;
    cnd_layer_t *l = j->l;
    int OC = l->p.conv.oc, CKK = l->in.c * l->p.conv.k * l->p.conv.k;
    size_t P = (size_t)l->out.h * l->out.w, BP = (size_t)j->B * P;
    long b0, b1;
    cnd_pool_range(j->B, ntasks, task, &b0, &b1);
    if (b1 == b0) return;
    size_t c0 = (size_t)b0 * P, nc = (size_t)(b1 - b0) * P;
    s_im2col(l->saved, j->in, l, j->B, (int)b0, (int)b1);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, (int)nc, CKK, 1.0f, j->w, CKK,
                l->saved + c0, (int)BP, 0.0f, j->out + c0, (int)BP);
    const float *bias = j->w + l->n_weights;
    for (int oc = 0; oc < OC; oc++) {
        float *d = j->out + (size_t)oc * BP + c0, bv = bias[oc];
        if (l->fuse_relu)
            for (size_t p = 0; p < nc; p++) {
                float v = d[p] + bv;
                d[p] = v > 0.0f ? v : 0.0f;
            }
        else
            for (size_t p = 0; p < nc; p++) d[p] += bv;
    }
}

static void s_forward(cnd_layer_t *l, float *out, const float *in, const float *w, float *state,
                      float *work, int B, int train)
{
    // out is (OC,B,OH,OW), in is (B,C,H,W) or (C,B,H,W), weight is (OC,C,K,K), bias is (OC)
    s_job j = {.l = l, .out = out, .in = in, .w = w, .B = B};
    cnd_pool_run(s_forward_task, &j, cnd_pool_threads());
}

/* Work layout in backward: dcol (CKK, B*P) | relu-masked dY (OC, B*P) | per-task partial
 * gradients (ntasks x n_params), combined in task order for determinism. */
static void s_backward_task(void *ctx, int task, int ntasks)
{
    const s_job *j = ctx;
    cnd_layer_t *l = j->l;
    int OC = l->p.conv.oc, CKK = l->in.c * l->p.conv.k * l->p.conv.k;
    size_t P = (size_t)l->out.h * l->out.w, BP = (size_t)j->B * P;
    float *dcol = j->work, *mask = j->work + (size_t)CKK * BP;
    float *part = mask + (size_t)OC * BP + (size_t)task * l->n_params;
    long b0, b1;
    cnd_pool_range(j->B, ntasks, task, &b0, &b1);
    memset(part, 0, l->n_params * sizeof(float));
    if (b1 == b0) return;
    size_t c0 = (size_t)b0 * P, nc = (size_t)(b1 - b0) * P;
    const float *dy = j->dout;
    float *dbias = part + l->n_weights;
    if (l->fuse_relu) {
        for (int oc = 0; oc < OC; oc++) {
            size_t o = (size_t)oc * BP + c0;
            dbias[oc] = cnd_vrelu_mask_sum(mask + o, j->dout + o, j->out + o, nc);
        }
        dy = mask;
    } else {
        for (int oc = 0; oc < OC; oc++) dbias[oc] = cnd_vsum(dy + (size_t)oc * BP + c0, nc);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, CKK, (int)nc, 1.0f, dy + c0,
                (int)BP, l->saved + c0, (int)BP, 0.0f, part, CKK);
    if (j->din) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, (int)nc, OC, 1.0f, j->w, CKK,
                    dy + c0, (int)BP, 0.0f, dcol + c0, (int)BP);
        s_col2im(j->din, dcol, l, j->B, (int)b0, (int)b1);
    }
}

static void s_backward(cnd_layer_t *l, float *din, float *dw, const float *dout, const float *in,
                       const float *out, const float *w, float *work, int B)
{
    // din is (B,C,H,W) or (C,B,H,W), dweight is (OC,C,K,K), dout is (OC,B,OH,OW)
    int T = cnd_pool_threads();
    s_job j = {.l = l, .din = din, .out = (float *)out, .work = work, .dout = dout, .w = w,
               .B = B};
    cnd_pool_run(s_backward_task, &j, T);
    size_t CKK = (size_t)l->in.c * l->p.conv.k * l->p.conv.k;
    size_t BP = (size_t)B * l->out.h * l->out.w;
    const float *part = work + (CKK + (size_t)l->p.conv.oc) * BP;
    for (int t = 0; t < T; t++)
        for (size_t i = 0; i < l->n_params; i++) dw[i] += part[(size_t)t * l->n_params + i];
}

static uint64_t s_macs(const cnd_layer_t *l)
{
    return (uint64_t)l->n_weights * (uint64_t)l->out.h * (uint64_t)l->out.w;
}

static cnd_layer_mem_t s_mem(const cnd_layer_t *l, int B)
{
    size_t CKK = (size_t)l->in.c * l->p.conv.k * l->p.conv.k;
    size_t BP = (size_t)B * l->out.h * l->out.w;
    size_t parts = (size_t)cnd_pool_threads() * l->n_params;
    return (cnd_layer_mem_t){.saved = CKK * BP,
                             .work = (CKK + (size_t)l->p.conv.oc) * BP + parts};
}

const cnd_layer_ops_t cnd_layer_conv2d_ops = {"conv2d", s_shape, s_init, s_forward, s_backward,
                                              s_macs, s_mem};
