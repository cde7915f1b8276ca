/*
 * layer_pool.c: max pooling, average pooling and global average pooling.
 *
 * Windows are square, without padding; an output covers input rows [oh*S, oh*S+K). Pooling
 * works plane by plane, so it is the same code for NCHW and CBHW inputs (layer.h). Max
 * pooling records the flat input index of each maximum so the backward pass routes the
 * gradient without recomputing (first maximum wins on ties, as in PyTorch).
 */
#include "layer.h"
#include "error.h"
#include "pool.h"

#include <float.h>
#include <string.h>

static int s_pool_shape(cnd_layer_t *l)
{
    int K = l->p.pool.k, S = l->p.pool.stride;
    if (K <= 0 || S <= 0) return cnd_errf(CND_EINVAL, "pool: window and stride must be positive");
    if (l->in.h < K || l->in.w < K)
        return cnd_errf(CND_EINVAL, "pool: window %d larger than input %dx%d", K, l->in.h,
                        l->in.w);
    l->out = (cnd_shape_t){l->in.c, (l->in.h - K) / S + 1, (l->in.w - K) / S + 1};
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

/* One task's share: planes [p0, p1) of the B*C planes (pool.h). */
typedef struct {
    cnd_layer_t *l;
    float *out, *din;
    const float *in, *dout;
    int B;
} s_job;

static void s_max_forward_task(void *ctx, int task, int ntasks)
{
    // out is (B,C,OH,OW), in is (B,C,H,W); argmax is (B,C,OH,OW) flat indices into in
    const s_job *job = ctx;
    cnd_layer_t *l = job->l;
    const float *in = job->in;
    float *out = job->out;
    int H = l->in.h, W = l->in.w, K = l->p.pool.k, S = l->p.pool.stride;
    int OH = l->out.h, OW = l->out.w;
    long p0, p1;
    cnd_pool_range((long)job->B * l->in.c, ntasks, task, &p0, &p1);
    for (size_t pl = (size_t)p0; pl < (size_t)p1; pl++) {
        const float *src = in + pl * H * W;
        float *dst = out + pl * OH * OW;
        int32_t *am = l->argmax + pl * OH * OW;
        if (K == 2 && S == 2) { /* the common case, without the inner window loops */
            for (int oh = 0; oh < OH; oh++) {
                const float *r0 = src + (size_t)(2 * oh) * W, *r1 = r0 + W;
                int32_t base = (int32_t)(pl * H * W) + 2 * oh * W;
                for (int ow = 0; ow < OW; ow++) {
                    float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
                    int32_t i = base + 2 * ow;
                    float best = a;
                    if (b > best) best = b, i = base + 2 * ow + 1;
                    if (c > best) best = c, i = base + W + 2 * ow;
                    if (d > best) best = d, i = base + W + 2 * ow + 1;
                    dst[oh * OW + ow] = best;
                    am[oh * OW + ow] = i;
                }
            }
            continue;
        }
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float best = -FLT_MAX;
                int bi = (oh * S) * W + ow * S;
                for (int i = 0; i < K; i++) {
                    const float *r = src + (size_t)(oh * S + i) * W + ow * S;
                    for (int j = 0; j < K; j++)
                        if (r[j] > best) {
                            best = r[j];
                            bi = (oh * S + i) * W + ow * S + j;
                        }
                }
                dst[oh * OW + ow] = best;
                am[oh * OW + ow] = (int32_t)(pl * H * W + (size_t)bi);
            }
    }
}

static void s_max_forward(cnd_layer_t *l, float *out, const float *in, const float *w,
                          float *state, float *work, int B, int train)
{
    s_job j = {.l = l, .out = out, .in = in, .B = B};
    cnd_pool_run(s_max_forward_task, &j, cnd_pool_threads());
}

static void s_max_backward_task(void *ctx, int task, int ntasks)
{
    /* Each output plane's maxima lie in the same input plane, so planes split cleanly. */
    const s_job *j = ctx;
    const cnd_layer_t *l = j->l;
    size_t hw = (size_t)l->in.h * l->in.w, ohw = (size_t)l->out.h * l->out.w;
    long p0, p1;
    cnd_pool_range((long)j->B * l->in.c, ntasks, task, &p0, &p1);
    int H = l->in.h, W = l->in.w, OW = l->out.w;
    if (l->p.pool.k == 2 && l->p.pool.stride == 2 && H % 2 == 0 && W % 2 == 0) {
        /* Windows tile the plane exactly: write every input once, no memset pass. */
        for (size_t pl = (size_t)p0; pl < (size_t)p1; pl++) {
            float *d = j->din + pl * hw;
            const float *g = j->dout + pl * ohw;
            const int32_t *am = l->argmax + pl * ohw;
            int32_t base = (int32_t)(pl * hw);
            int OH = l->out.h;
            for (int oh = 0; oh < OH; oh++) {
                float *r0 = d + (size_t)(2 * oh) * W, *r1 = r0 + W;
                const float *gr = g + (size_t)oh * OW;
                const int32_t *ar = am + (size_t)oh * OW;
                int32_t row0 = base + 2 * oh * W;
                for (int ow = 0; ow < OW; ow++) {
                    int32_t a = ar[ow] - row0 - 2 * ow; /* 0, 1, W or W+1 */
                    float v = gr[ow];
                    r0[2 * ow] = a == 0 ? v : 0.0f;
                    r0[2 * ow + 1] = a == 1 ? v : 0.0f;
                    r1[2 * ow] = a == W ? v : 0.0f;
                    r1[2 * ow + 1] = a == W + 1 ? v : 0.0f;
                }
            }
        }
        return;
    }
    memset(j->din + (size_t)p0 * hw, 0, (size_t)(p1 - p0) * hw * sizeof(float));
    for (size_t i = (size_t)p0 * ohw; i < (size_t)p1 * ohw; i++)
        j->din[l->argmax[i]] += j->dout[i];
}

static void s_max_backward(cnd_layer_t *l, float *din, float *dw, const float *dout,
                           const float *in, const float *out, const float *w, float *work, int B)
{
    if (!din) return;
    s_job j = {.l = l, .din = din, .dout = dout, .B = B};
    cnd_pool_run(s_max_backward_task, &j, cnd_pool_threads());
}

static cnd_layer_mem_t s_max_mem(const cnd_layer_t *l, int B)
{
    return (cnd_layer_mem_t){.argmax = (size_t)B * cnd_shape_size(l->out)};
}

static void s_avg_forward(cnd_layer_t *l, float *out, const float *in, const float *w,
                          float *state, float *work, int B, int train)
{
    // out is (B,C,OH,OW), in is (B,C,H,W)
    int H = l->in.h, W = l->in.w, K = l->p.pool.k, S = l->p.pool.stride;
    int OH = l->out.h, OW = l->out.w;
    float inv = 1.0f / (float)(K * K);
    size_t planes = (size_t)B * l->in.c;
    for (size_t pl = 0; pl < planes; pl++) {
        const float *src = in + pl * H * W;
        float *dst = out + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float acc = 0.0f;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) acc += src[(oh * S + i) * W + ow * S + j];
                dst[oh * OW + ow] = acc * inv;
            }
    }
}

static void s_avg_backward(cnd_layer_t *l, float *din, float *dw, const float *dout,
                           const float *in, const float *out, const float *w, float *work, int B)
{
    if (!din) return;
    int H = l->in.h, W = l->in.w, K = l->p.pool.k, S = l->p.pool.stride;
    int OH = l->out.h, OW = l->out.w;
    float inv = 1.0f / (float)(K * K);
    size_t planes = (size_t)B * l->in.c;
    memset(din, 0, planes * H * W * sizeof(float));
    for (size_t pl = 0; pl < planes; pl++) {
        float *dst = din + pl * H * W;
        const float *src = dout + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float g = src[oh * OW + ow] * inv;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) dst[(oh * S + i) * W + ow * S + j] += g;
            }
    }
}

static cnd_layer_mem_t s_no_mem(const cnd_layer_t *l, int B)
{
    return (cnd_layer_mem_t){0};
}

static int s_gap_shape(cnd_layer_t *l)
{
    l->out = (cnd_shape_t){l->in.c, 1, 1};
    l->n_params = l->n_weights = l->n_state = 0;
    return 0;
}

static void s_gap_forward(cnd_layer_t *l, float *out, const float *in, const float *w,
                          float *state, float *work, int B, int train)
{
    // out is (B,C), in is (B,C,H,W) or (C,B,H,W)
    int C = l->in.c;
    size_t HW = (size_t)l->in.h * l->in.w;
    float inv = 1.0f / (float)HW;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            const float *s = in + cnd_layer_plane(l, c, b, B);
            float acc = 0.0f;
            for (size_t i = 0; i < HW; i++) acc += s[i];
            out[(size_t)b * C + c] = acc * inv;
        }
}

static void s_gap_backward(cnd_layer_t *l, float *din, float *dw, const float *dout,
                           const float *in, const float *out, const float *w, float *work, int B)
{
    if (!din) return;
    int C = l->in.c;
    size_t HW = (size_t)l->in.h * l->in.w;
    float inv = 1.0f / (float)HW;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            float g = dout[(size_t)b * C + c] * inv;
            float *d = din + cnd_layer_plane(l, c, b, B);
            for (size_t i = 0; i < HW; i++) d[i] = g;
        }
}

const cnd_layer_ops_t cnd_layer_maxpool_ops = {"maxpool", s_pool_shape, s_none_init,
                                               s_max_forward, s_max_backward, s_no_macs,
                                               s_max_mem};
const cnd_layer_ops_t cnd_layer_avgpool_ops = {"avgpool", s_pool_shape, s_none_init,
                                               s_avg_forward, s_avg_backward, s_no_macs,
                                               s_no_mem};
const cnd_layer_ops_t cnd_layer_gap_ops = {"gap", s_gap_shape, s_none_init, s_gap_forward,
                                           s_gap_backward, s_no_macs, s_no_mem};
