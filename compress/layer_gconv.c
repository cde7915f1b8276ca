/*
 * layer_gconv.c: grouped 2-D convolution (groups >= 2), of which depthwise convolution
 * (groups == input channels) is the case edge networks use most.
 *
 * Output channel oc reads only the input channels of its group g = oc / (OC/G), CG = C/G of
 * them. A depthwise convolution does K*K multiply-adds per output pixel over one input plane:
 * it is memory-bound, and an im2col copy would move K*K times more bytes than the convolution
 * itself reads. So this is a direct convolution: for each output plane and each tap (ki, kj),
 * one shifted input row is multiplied by the tap's weight and added into the output row, over
 * the columns where the tap falls inside the input (s_valid_cols); the padding is never
 * materialised. With stride 1 the inner loop is a contiguous axpy the compiler vectorises.
 *
 * Threads split the groups: a group's output channels, their weights and its input channels'
 * gradients belong to one task, so there are no partial sums to combine and the result does
 * not depend on the thread count. A following relu is fused as for conv2d (layer.h).
 *
 * Layouts: the input is NCHW or CBHW (in_cbhw), the output is CBHW, as conv2d's.
 * Parameters: W (OC, C/G, K, K) then bias (OC), PyTorch's Conv2d(groups=G) layout.
 */
#include "layer.h"
#include "error.h"
#include "pool.h"
#include "vecops.h"

#include <math.h>
#include <string.h>

static int s_shape(cnd_layer_t *l)
{
    int C = l->in.c, H = l->in.h, W = l->in.w;
    int K = l->p.conv.k, S = l->p.conv.stride, P = l->p.conv.pad;
    /* 0 stands for "the input's channel count" (dwconv in a spec) */
    if (l->p.conv.groups == 0) l->p.conv.groups = C;
    if (l->p.conv.oc == 0) l->p.conv.oc = C;
    int G = l->p.conv.groups, OC = l->p.conv.oc;
    if (OC <= 0 || K <= 0 || S <= 0 || P < 0 || G < 2)
        return cnd_errf(CND_EINVAL,
                        "grouped conv2d: channels, kernel and stride must be positive and "
                        "groups at least 2");
    if (C % G || OC % G)
        return cnd_errf(CND_EINVAL,
                        "grouped conv2d: groups=%d must divide the %d input and %d output "
                        "channels",
                        G, C, OC);
    if (H + 2 * P < K || W + 2 * P < K)
        return cnd_errf(CND_EINVAL,
                        "grouped conv2d: kernel %d does not fit input %dx%d with pad %d", K, H, W,
                        P);
    l->out = (cnd_shape_t){OC, (H + 2 * P - K) / S + 1, (W + 2 * P - K) / S + 1};
    l->n_weights = (size_t)OC * (size_t)(C / G) * (size_t)K * (size_t)K;
    l->n_params = l->n_weights + (size_t)OC;
    l->n_state = 0;
    return 0;
}

static void s_init(cnd_layer_t *l, float *w, float *state, cnd_rng_t *rng)
{
    size_t fan_in = (size_t)(l->in.c / l->p.conv.groups) * (size_t)l->p.conv.k * l->p.conv.k;
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

typedef struct {
    cnd_layer_t *l;
    float *out, *din, *dw;
    const float *in, *dout, *w, *y; /* y: the forward output (fused relu mask) */
    int B;
} s_job;

/* o (OH, OW) += conv of one input plane x (H, W) with one K x K filter f. */
static void s_plane_fwd(float *o, const float *x, const float *f, const cnd_layer_t *l)
{
    int H = l->in.h, W = l->in.w, K = l->p.conv.k, S = l->p.conv.stride, PAD = l->p.conv.pad;
    int OH = l->out.h, OW = l->out.w;
    for (int ki = 0; ki < K; ki++)
        for (int kj = 0; kj < K; kj++) {
            float wv = f[ki * K + kj];
            int lo, hi, off = kj - PAD;
            s_valid_cols(&lo, &hi, kj, S, PAD, W, OW);
            for (int oh = 0; oh < OH; oh++) {
                int ih = oh * S - PAD + ki;
                if (ih < 0 || ih >= H) continue;
                const float *xr = x + (size_t)ih * W;
                float *orow = o + (size_t)oh * OW;
                if (S == 1)
                    for (int ow = lo; ow < hi; ow++) orow[ow] += wv * xr[ow + off];
                else
                    for (int ow = lo; ow < hi; ow++) orow[ow] += wv * xr[ow * S + off];
            }
        }
}

/* The backward of s_plane_fwd for one (input plane, filter) pair: df (K x K) += the
 * correlation of g with x, dx (H, W) += the transposed convolution of g with f (dx NULL: not
 * needed). */
static void s_plane_bwd(float *dx, float *df, const float *g, const float *x, const float *f,
                        const cnd_layer_t *l)
{
    int H = l->in.h, W = l->in.w, K = l->p.conv.k, S = l->p.conv.stride, PAD = l->p.conv.pad;
    int OH = l->out.h, OW = l->out.w;
    for (int ki = 0; ki < K; ki++)
        for (int kj = 0; kj < K; kj++) {
            float wv = f[ki * K + kj], acc = 0.0f;
            int lo, hi, off = kj - PAD;
            s_valid_cols(&lo, &hi, kj, S, PAD, W, OW);
            for (int oh = 0; oh < OH; oh++) {
                int ih = oh * S - PAD + ki;
                if (ih < 0 || ih >= H) continue;
                const float *xr = x + (size_t)ih * W;
                const float *gr = g + (size_t)oh * OW;
                float *dr = dx ? dx + (size_t)ih * W : NULL;
                if (S == 1) {
                    acc += cnd_vdot(gr + lo, xr + lo + off, (size_t)(hi - lo));
                    if (dr)
                        for (int ow = lo; ow < hi; ow++) dr[ow + off] += wv * gr[ow];
                } else {
                    for (int ow = lo; ow < hi; ow++) acc += gr[ow] * xr[ow * S + off];
                    if (dr)
                        for (int ow = lo; ow < hi; ow++) dr[ow * S + off] += wv * gr[ow];
                }
            }
            df[ki * K + kj] += acc;
        }
}

static void s_forward_task(void *ctx, int task, int ntasks)
{
    const s_job *j = ctx;
    const cnd_layer_t *l = j->l;
    int G = l->p.conv.groups, OC = l->p.conv.oc, CG = l->in.c / G, OG = OC / G;
    size_t KK = (size_t)l->p.conv.k * l->p.conv.k, P = (size_t)l->out.h * l->out.w;
    const float *bias = j->w + l->n_weights;
    long g0, g1;
    cnd_pool_range(G, ntasks, task, &g0, &g1);
    for (long oc = g0 * OG; oc < g1 * OG; oc++) {
        int g = (int)oc / OG;
        for (int b = 0; b < j->B; b++) {
            float *o = j->out + ((size_t)oc * (size_t)j->B + (size_t)b) * P; /* CBHW */
            for (size_t p = 0; p < P; p++) o[p] = bias[oc];
            for (int ci = 0; ci < CG; ci++)
                s_plane_fwd(o, j->in + cnd_layer_plane(l, g * CG + ci, b, j->B),
                            j->w + ((size_t)oc * CG + (size_t)ci) * KK, l);
            if (l->fuse_relu)
                for (size_t p = 0; p < P; p++) o[p] = o[p] > 0.0f ? o[p] : 0.0f;
        }
    }
}

static void s_forward(cnd_layer_t *l, float *out, const float *in, const float *w, float *state,
                      float *work, int B, int train)
{
    // out is (OC,B,OH,OW), in is (B,C,H,W) or (C,B,H,W), weight is (OC,C/G,K,K), bias is (OC)
    s_job j = {.l = l, .out = out, .in = in, .w = w, .B = B};
    int T = cnd_pool_threads();
    cnd_pool_run(s_forward_task, &j, T < l->p.conv.groups ? T : l->p.conv.groups);
}

/* work holds, per task, one output plane of masked gradient (the fused relu's). */
static void s_backward_task(void *ctx, int task, int ntasks)
{
    const s_job *j = ctx;
    const cnd_layer_t *l = j->l;
    int G = l->p.conv.groups, OC = l->p.conv.oc, CG = l->in.c / G, OG = OC / G;
    size_t KK = (size_t)l->p.conv.k * l->p.conv.k, P = (size_t)l->out.h * l->out.w;
    size_t HW = (size_t)l->in.h * l->in.w;
    float *gbuf = j->out + (size_t)task * P; /* j->out is the work area here */
    long g0, g1;
    cnd_pool_range(G, ntasks, task, &g0, &g1);
    if (j->din)
        for (long c = g0 * CG; c < g1 * CG; c++)
            for (int b = 0; b < j->B; b++)
                memset(j->din + cnd_layer_plane(l, (int)c, b, j->B), 0, HW * sizeof(float));
    for (long oc = g0 * OG; oc < g1 * OG; oc++) {
        int g = (int)oc / OG;
        float *dbias = j->dw + l->n_weights + oc;
        for (int b = 0; b < j->B; b++) {
            size_t at = ((size_t)oc * (size_t)j->B + (size_t)b) * P;
            const float *gp = j->dout + at;
            if (l->fuse_relu) {
                for (size_t p = 0; p < P; p++) gbuf[p] = j->y[at + p] > 0.0f ? gp[p] : 0.0f;
                gp = gbuf;
            }
            float s = 0.0f;
            for (size_t p = 0; p < P; p++) s += gp[p];
            *dbias += s;
            for (int ci = 0; ci < CG; ci++) {
                size_t pl = cnd_layer_plane(l, g * CG + ci, b, j->B);
                size_t fo = ((size_t)oc * CG + (size_t)ci) * KK;
                s_plane_bwd(j->din ? j->din + pl : NULL, j->dw + fo, gp, j->in + pl, j->w + fo, l);
            }
        }
    }
}

static void s_backward(cnd_layer_t *l, float *din, float *dw, const float *dout, const float *in,
                       const float *out, const float *w, float *work, int B)
{
    // din is (B,C,H,W) or (C,B,H,W), dweight is (OC,C/G,K,K), dout is (OC,B,OH,OW)
    s_job j = {.l = l,
               .din = din,
               .dw = dw,
               .out = work,
               .in = in,
               .dout = dout,
               .w = w,
               .y = out,
               .B = B};
    int T = cnd_pool_threads();
    cnd_pool_run(s_backward_task, &j, T < l->p.conv.groups ? T : l->p.conv.groups);
}

static uint64_t s_macs(const cnd_layer_t *l)
{
    return (uint64_t)l->n_weights * (uint64_t)l->out.h * (uint64_t)l->out.w;
}

static cnd_layer_mem_t s_mem(const cnd_layer_t *l, int B)
{
    return (cnd_layer_mem_t){.work = (size_t)cnd_pool_threads() * l->out.h * l->out.w};
}

const cnd_layer_ops_t cnd_layer_gconv_ops = {"conv2d",   s_shape, s_init, s_forward,
                                             s_backward, s_macs,  s_mem};
