/*
 * layer_conv2d.c: 2-D convolution with square kernels, stride and zero padding.
 *
 * The whole batch goes through one sgemm: im2col lays the input out as a (C*K*K, B*P) matrix
 * (P = OH*OW output pixels per sample), W (OC, C*K*K) times it gives (OC, B*P), and a cheap
 * copy puts each sample's (OC, P) block back into NCHW. One large GEMM keeps both cores busy
 * where B small per-sample GEMMs would not. The column matrix is kept for the backward pass
 * (dW = dY * col^T), which then needs no second im2col; dcol = W^T * dY goes back to the input
 * through col2im.
 *
 * Parameters: W (OC, C, K, K) then bias (OC), PyTorch's Conv2d layout.
 */
#include "layer.h"
#include "error.h"

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

/* col is (C*K*K, B*P); in is (B,C,H,W). Row r = (c,ki,kj); column b*P + oh*OW + ow. */
static void s_im2col(float *col, const float *in, const cnd_layer_t *l, int B)
{
    int C = l->in.c, H = l->in.h, W = l->in.w, K = l->p.conv.k, S = l->p.conv.stride;
    int PAD = l->p.conv.pad, OH = l->out.h, OW = l->out.w;
    size_t P = (size_t)OH * OW, BP = (size_t)B * P;
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                float *row = col + ((size_t)(c * K + ki) * K + kj) * BP;
                for (int b = 0; b < B; b++) {
                    const float *src = in + ((size_t)b * C + c) * H * W;
                    float *dst = row + (size_t)b * P;
                    for (int oh = 0; oh < OH; oh++) {
                        int ih = oh * S - PAD + ki;
                        float *d = dst + (size_t)oh * OW;
                        if (ih < 0 || ih >= H) {
                            memset(d, 0, (size_t)OW * sizeof(float));
                            continue;
                        }
                        const float *s = src + (size_t)ih * W;
                        if (S == 1) {
                            /* valid ow: 0 <= ow - PAD + kj < W */
                            int lo = PAD - kj, hi = W + PAD - kj; /* [lo, hi) */
                            if (lo < 0) lo = 0;
                            if (hi > OW) hi = OW;
                            for (int ow = 0; ow < lo; ow++) d[ow] = 0.0f;
                            if (hi > lo)
                                memcpy(d + lo, s + lo - PAD + kj, (size_t)(hi - lo) * sizeof(float));
                            for (int ow = hi > lo ? hi : lo; ow < OW; ow++) d[ow] = 0.0f;
                        } else {
                            for (int ow = 0; ow < OW; ow++) {
                                int iw = ow * S - PAD + kj;
                                d[ow] = (iw >= 0 && iw < W) ? s[iw] : 0.0f;
                            }
                        }
                    }
                }
            }
}

/* din (B,C,H,W) = col2im(dcol (C*K*K, B*P)); din is overwritten. */
static void s_col2im(float *din, const float *dcol, const cnd_layer_t *l, int B)
{
    int C = l->in.c, H = l->in.h, W = l->in.w, K = l->p.conv.k, S = l->p.conv.stride;
    int PAD = l->p.conv.pad, OH = l->out.h, OW = l->out.w;
    size_t P = (size_t)OH * OW, BP = (size_t)B * P;
    memset(din, 0, (size_t)B * C * H * W * sizeof(float));
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                const float *row = dcol + ((size_t)(c * K + ki) * K + kj) * BP;
                for (int b = 0; b < B; b++) {
                    float *dst = din + ((size_t)b * C + c) * H * W;
                    const float *src = row + (size_t)b * P;
                    for (int oh = 0; oh < OH; oh++) {
                        int ih = oh * S - PAD + ki;
                        if (ih < 0 || ih >= H) continue;
                        float *d = dst + (size_t)ih * W;
                        const float *s = src + (size_t)oh * OW;
                        for (int ow = 0; ow < OW; ow++) {
                            int iw = ow * S - PAD + kj;
                            if (iw >= 0 && iw < W) d[iw] += s[ow];
                        }
                    }
                }
            }
}

static void s_forward(cnd_layer_t *l, float *out, const float *in, const float *w, float *state,
                      float *work, int B, int train)
{
    // out is (B,OC,OH,OW), in is (B,C,H,W), weight is (OC,C,K,K), bias is (OC)
    int OC = l->p.conv.oc;
    int CKK = l->in.c * l->p.conv.k * l->p.conv.k;
    size_t P = (size_t)l->out.h * l->out.w, BP = (size_t)B * P;
    float *col = l->saved;
    float *tmp = work; /* (OC, B*P) */
    s_im2col(col, in, l, B);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, (int)BP, CKK, 1.0f, w, CKK, col,
                (int)BP, 0.0f, tmp, (int)BP);
    const float *bias = w + l->n_weights;
    for (int b = 0; b < B; b++)
        for (int oc = 0; oc < OC; oc++) {
            float *d = out + ((size_t)b * OC + oc) * P;
            const float *s = tmp + (size_t)oc * BP + (size_t)b * P;
            float bv = bias[oc];
            for (size_t p = 0; p < P; p++) d[p] = s[p] + bv;
        }
}

static void s_backward(cnd_layer_t *l, float *din, float *dw, const float *dout, const float *in,
                       const float *out, const float *w, float *work, int B)
{
    // din is (B,C,H,W), dweight is (OC,C,K,K), dout is (B,OC,OH,OW)
    int OC = l->p.conv.oc;
    int CKK = l->in.c * l->p.conv.k * l->p.conv.k;
    size_t P = (size_t)l->out.h * l->out.w, BP = (size_t)B * P;
    float *dtmp = work;             /* (OC, B*P) */
    float *dcol = work + (size_t)OC * BP; /* (CKK, B*P) */
    float *dbias = dw + l->n_weights;
    for (int oc = 0; oc < OC; oc++) {
        float acc = 0.0f;
        for (int b = 0; b < B; b++) {
            const float *s = dout + ((size_t)b * OC + oc) * P;
            float *d = dtmp + (size_t)oc * BP + (size_t)b * P;
            for (size_t p = 0; p < P; p++) {
                d[p] = s[p];
                acc += s[p];
            }
        }
        dbias[oc] += acc;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, CKK, (int)BP, 1.0f, dtmp, (int)BP,
                l->saved, (int)BP, 1.0f, dw, CKK);
    if (din) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, (int)BP, OC, 1.0f, w, CKK, dtmp,
                    (int)BP, 0.0f, dcol, (int)BP);
        s_col2im(din, dcol, l, B);
    }
}

static uint64_t s_macs(const cnd_layer_t *l)
{
    return (uint64_t)l->n_weights * (uint64_t)l->out.h * (uint64_t)l->out.w;
}

static cnd_layer_mem_t s_mem(const cnd_layer_t *l, int B)
{
    size_t CKK = (size_t)l->in.c * l->p.conv.k * l->p.conv.k;
    size_t BP = (size_t)B * l->out.h * l->out.w;
    return (cnd_layer_mem_t){.saved = CKK * BP, .work = ((size_t)l->p.conv.oc + CKK) * BP};
}

const cnd_layer_ops_t cnd_layer_conv2d_ops = {"conv2d", s_shape, s_init, s_forward, s_backward,
                                              s_macs, s_mem};
