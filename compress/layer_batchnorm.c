/*
 * layer_batchnorm.c: batch normalisation over (B, H, W) per channel, train and eval modes.
 *
 * Parameters: gamma (C) then beta (C); neither is weight-decayed. State: running mean (C) then
 * running variance (C), updated in training with PyTorch's rule (momentum 0.1 by default,
 * unbiased variance in the running estimate, biased in the normalisation). A dense layer's
 * output (F, 1, 1) normalises per feature, which makes this layer serve as BatchNorm1d too.
 * Before int8 export the layer is folded into the preceding conv or dense (compress/quant).
 * A relu6 that alone reads this layer's output is fused into it (fuse_relu == 6, model.c):
 * clamped in the same pass forward, its mask applied while reading dy backward.
 *
 * Training is memory-bound at the sizes of a MobileNet block (64 x 160 x 14 x 14 floats is 8 MB,
 * beyond L2): the statistics take one pass over the input (each plane's mean and squared
 * deviations while it is in L1, combined across planes), normalised values are not stored but
 * recomputed backward from the input, and channels are split across the pool's threads.
 */
#include "layer.h"
#include "error.h"
#include "pool.h"
#include "vecops.h"

#include <math.h>
#include <string.h>

static int s_shape(cnd_layer_t *l)
{
    if (!(l->p.bn.eps > 0.0f) || !(l->p.bn.momentum > 0.0f && l->p.bn.momentum <= 1.0f))
        return cnd_errf(CND_EINVAL, "batchnorm: eps must be > 0 and momentum in (0, 1]");
    l->out = l->in;
    l->n_weights = 0;
    l->n_params = 2 * (size_t)l->in.c;
    l->n_state = 2 * (size_t)l->in.c;
    return 0;
}

static void s_init(cnd_layer_t *l, float *w, float *state, cnd_rng_t *rng)
{
    int C = l->in.c;
    for (int c = 0; c < C; c++) {
        w[c] = 1.0f;
        w[C + c] = 0.0f;
        state[c] = 0.0f;
        state[C + c] = 1.0f;
    }
}

/* Sum of (x[i] - m)^2, in 16 fixed lanes like cnd_vsum (deterministic). */
static inline __attribute__((always_inline)) float s_sqdev(const float *x, size_t n, float m)
{
    const cnd_v4f mv = {m, m, m, m};
    cnd_v4f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        cnd_v4f d0 = cnd_v4_load(x + i) - mv, d1 = cnd_v4_load(x + i + 4) - mv;
        cnd_v4f d2 = cnd_v4_load(x + i + 8) - mv, d3 = cnd_v4_load(x + i + 12) - mv;
        a0 += d0 * d0;
        a1 += d1 * d1;
        a2 += d2 * d2;
        a3 += d3 * d3;
    }
    float t = cnd_v4_reduce(a0, a1, a2, a3);
    for (; i < n; i++) t += (x[i] - m) * (x[i] - m);
    return t;
}

/* Sum of d[i] * (x[i] - m), in fixed lanes. */
static inline __attribute__((always_inline)) float s_dotdev(const float *d, const float *x,
                                                            size_t n, float m)
{
    const cnd_v4f mv = {m, m, m, m};
    cnd_v4f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 += cnd_v4_load(d + i) * (cnd_v4_load(x + i) - mv);
        a1 += cnd_v4_load(d + i + 4) * (cnd_v4_load(x + i + 4) - mv);
        a2 += cnd_v4_load(d + i + 8) * (cnd_v4_load(x + i + 8) - mv);
        a3 += cnd_v4_load(d + i + 12) * (cnd_v4_load(x + i + 12) - mv);
    }
    float t = cnd_v4_reduce(a0, a1, a2, a3);
    for (; i < n; i++) t += d[i] * (x[i] - m);
    return t;
}

/* y = g * (x - mean) * invstd + bt, then the fused relu6. */
static inline __attribute__((always_inline)) void s_norm_plane(float *restrict y,
                                                               const float *restrict x, size_t n,
                                                               float mean, float invstd, float g,
                                                               float bt, int r6)
{
    float a = g * invstd;
    if (r6) /* a relu6 fused into this layer (model.c), clamped in the same pass */
        for (size_t i = 0; i < n; i++) {
            float v = a * (x[i] - mean) + bt;
            v = v > 0.0f ? v : 0.0f;
            y[i] = v < 6.0f ? v : 6.0f;
        }
    else
        for (size_t i = 0; i < n; i++) y[i] = a * (x[i] - mean) + bt;
}

typedef struct {
    cnd_layer_t *l;
    float *out, *din, *dw;
    const float *in, *w, *dout, *y;
    float *state;
    int B, train;
} s_job;

/* Channels are independent: each task takes a range of them, so results do not depend on the
 * thread count. Per plane the sums run in float lanes (cnd_vsum), across planes in double. */
static inline __attribute__((always_inline)) void s_forward_body(void *ctx, int task, int ntasks)
{
    const s_job *j = ctx;
    cnd_layer_t *l = j->l;
    int C = l->in.c, B = j->B;
    size_t HW = (size_t)l->in.h * l->in.w, N = (size_t)B * HW;
    const float *gamma = j->w, *beta = j->w + C;
    float *rmean = j->state, *rvar = j->state + C;
    long c0, c1;
    cnd_pool_range(C, ntasks, task, &c0, &c1);
    for (int c = (int)c0; c < (int)c1; c++) {
        float mean, invstd;
        if (j->train) {
            /* per plane its mean and squared deviations while it is in L1, combined across
             * planes in double (Chan, Golub and LeVeque): one pass over memory */
            double s = 0.0, ss = 0.0, sm2 = 0.0;
            for (int b = 0; b < B; b++) {
                const float *x = j->in + cnd_layer_plane(l, c, b, B);
                float mb = cnd_vsum(x, HW) / (float)HW;
                s += (double)mb;
                sm2 += (double)mb * (double)mb;
                ss += (double)s_sqdev(x, HW, mb);
            }
            double m = s / (double)B;
            /* the planes' means around the overall mean: HW * sum (mb - m)^2 */
            double between = (double)HW * (sm2 - (double)B * m * m);
            ss += between > 0.0 ? between : 0.0;
            double var = ss / (double)N;
            mean = (float)m;
            invstd = (float)(1.0 / sqrt(var + (double)l->p.bn.eps));
            float mom = l->p.bn.momentum;
            double unbiased = N > 1 ? ss / (double)(N - 1) : var;
            rmean[c] = (1.0f - mom) * rmean[c] + mom * mean;
            rvar[c] = (1.0f - mom) * rvar[c] + mom * (float)unbiased;
            l->saved2[c] = mean;
            l->saved2[C + c] = invstd;
        } else {
            mean = rmean[c];
            invstd = 1.0f / sqrtf(rvar[c] + l->p.bn.eps);
        }
        for (int b = 0; b < B; b++) {
            size_t at = cnd_layer_plane(l, c, b, B);
            s_norm_plane(j->out + at, j->in + at, HW, mean, invstd, gamma[c], beta[c],
                         l->fuse_relu == 6);
        }
    }
}

static int s_tasks(const cnd_layer_t *l)
{
    int T = cnd_pool_threads();
    return T < l->in.c ? T : l->in.c;
}

/* The task for this CPU (below): forward (bwd 0) or backward (bwd 1). */
static cnd_task_fn s_task(int bwd);

static void s_forward(cnd_layer_t *l, float *out, const float *in, const float *w, float *state,
                      float *work, int B, int train)
{
    // out and in are (B,C,H,W); gamma, beta, running mean, running var are (C)
    s_job j = {.l = l, .out = out, .in = in, .w = w, .state = state, .B = B, .train = train};
    cnd_pool_run(s_task(0), &j, s_tasks(l));
}

/* The fused relu6's mask (model.c): dy passes where 0 < y < 6; into d. */
static inline __attribute__((always_inline)) void
s_relu6_mask(float *restrict d, const float *restrict dy, const float *restrict y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        /* dy read unconditionally: a select, not a branch on the data, so the loop vectorises */
        float g = dy[i], v = y[i];
        d[i] = (v > 0.0f) & (v < 6.0f) ? g : 0.0f;
    }
}

static inline __attribute__((always_inline)) void s_backward_body(void *ctx, int task, int ntasks)
{
    const s_job *j = ctx;
    const cnd_layer_t *l = j->l;
    int C = l->in.c, B = j->B;
    size_t HW = (size_t)l->in.h * l->in.w, N = (size_t)B * HW;
    float *dgamma = j->dw, *dbeta = j->dw + C;
    int r6 = l->fuse_relu == 6;
    /* with a fused relu6, the masked dy of one plane goes to this task's work plane */
    float *mbuf = j->out + (size_t)task * HW;
    long c0, c1;
    cnd_pool_range(C, ntasks, task, &c0, &c1);
    for (int c = (int)c0; c < (int)c1; c++) {
        /* xhat = (x - mean) * invstd is recomputed from the input, not stored */
        float mean = l->saved2[c], invstd = l->saved2[C + c];
        double sdy = 0.0, sdyx = 0.0;
        for (int b = 0; b < B; b++) {
            size_t at = cnd_layer_plane(l, c, b, B);
            const float *d = j->dout + at;
            if (r6) {
                s_relu6_mask(mbuf, d, j->y + at, HW);
                d = mbuf;
            }
            sdy += cnd_vsum(d, HW);
            sdyx += s_dotdev(d, j->in + at, HW, mean);
        }
        sdyx *= invstd;
        dgamma[c] += (float)sdyx;
        dbeta[c] += (float)sdy;
        if (!j->din) continue;
        float k = j->w[c] * invstd / (float)N, fN = (float)N;
        float mdy = (float)sdy, mdyx = (float)sdyx * invstd;
        for (int b = 0; b < B; b++) {
            size_t at = cnd_layer_plane(l, c, b, B);
            const float *x = j->in + at;
            float *dx = j->din + at; /* d may be dx itself (the masked dy) */
            const float *d = j->dout + at;
            if (r6) {
                s_relu6_mask(dx, d, j->y + at, HW);
                d = dx;
            }
            for (size_t i = 0; i < HW; i++) dx[i] = k * (fN * d[i] - mdy - (x[i] - mean) * mdyx);
        }
    }
}

/* The passes as tasks: the portable copy, and the same code compiled for AVX2 (no FMA, so the
 * same bits), chosen at run time. */
static void s_forward_task(void *ctx, int task, int ntasks)
{
    s_forward_body(ctx, task, ntasks);
}

static void s_backward_task(void *ctx, int task, int ntasks)
{
    s_backward_body(ctx, task, ntasks);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) static void s_forward_task_avx2(void *ctx, int task, int ntasks)
{
    s_forward_body(ctx, task, ntasks);
}

__attribute__((target("avx2"))) static void s_backward_task_avx2(void *ctx, int task, int ntasks)
{
    s_backward_body(ctx, task, ntasks);
}
#endif

static cnd_task_fn s_task(int bwd)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) return bwd ? s_backward_task_avx2 : s_forward_task_avx2;
#endif
    return bwd ? s_backward_task : s_forward_task;
}

static void s_backward(cnd_layer_t *l, float *din, float *dw, const float *dout, const float *in,
                       const float *out, const float *w, float *work, int B)
{
    // din and dout are (B,C,H,W); dgamma, dbeta are (C); needs xhat and invstd from training
    s_job j = {.l = l,
               .din = din,
               .dw = dw,
               .out = work,
               .in = in,
               .dout = dout,
               .w = w,
               .y = out,
               .B = B};
    cnd_pool_run(s_task(1), &j, s_tasks(l));
}

static uint64_t s_macs(const cnd_layer_t *l)
{
    return 0; /* folded into the preceding layer for inference */
}

static cnd_layer_mem_t s_mem(const cnd_layer_t *l, int B)
{
    /* work: one plane per task for the fused relu6's masked gradient */
    /* saved2: the batch's mean and invstd per channel (xhat is recomputed backward) */
    return (cnd_layer_mem_t){.saved2 = 2 * (size_t)l->in.c,
                             .work = (size_t)cnd_pool_threads() * l->in.h * l->in.w};
}

const cnd_layer_ops_t cnd_layer_batchnorm_ops = {"batchnorm", s_shape, s_init, s_forward,
                                                 s_backward,  s_macs,  s_mem};
