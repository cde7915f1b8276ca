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
 */
#include "layer.h"
#include "error.h"

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

static void s_forward(cnd_layer_t *l, float *out, const float *in, const float *w, float *state,
                      float *work, int B, int train)
{
    // out and in are (B,C,H,W); gamma, beta, running mean, running var are (C)
    int C = l->in.c;
    size_t HW = (size_t)l->in.h * l->in.w, N = (size_t)B * HW;
    const float *gamma = w, *beta = w + C;
    float *rmean = state, *rvar = state + C;
    for (int c = 0; c < C; c++) {
        float mean, invstd;
        if (train) {
            double s = 0.0, ss = 0.0;
            for (int b = 0; b < B; b++) {
                const float *x = in + cnd_layer_plane(l, c, b, B);
                for (size_t i = 0; i < HW; i++) s += x[i];
            }
            double m = s / (double)N;
            for (int b = 0; b < B; b++) {
                const float *x = in + cnd_layer_plane(l, c, b, B);
                for (size_t i = 0; i < HW; i++) ss += ((double)x[i] - m) * ((double)x[i] - m);
            }
            double var = ss / (double)N;
            mean = (float)m;
            invstd = (float)(1.0 / sqrt(var + (double)l->p.bn.eps));
            float mom = l->p.bn.momentum;
            double unbiased = N > 1 ? ss / (double)(N - 1) : var;
            rmean[c] = (1.0f - mom) * rmean[c] + mom * mean;
            rvar[c] = (1.0f - mom) * rvar[c] + mom * (float)unbiased;
            l->saved2[c] = invstd;
        } else {
            mean = rmean[c];
            invstd = 1.0f / sqrtf(rvar[c] + l->p.bn.eps);
        }
        float g = gamma[c], bt = beta[c];
        for (int b = 0; b < B; b++) {
            const float *x = in + cnd_layer_plane(l, c, b, B);
            float *y = out + cnd_layer_plane(l, c, b, B);
            float *xh = train ? l->saved + cnd_layer_plane(l, c, b, B) : NULL;
            for (size_t i = 0; i < HW; i++) {
                float h = (x[i] - mean) * invstd;
                if (xh) xh[i] = h;
                y[i] = g * h + bt;
            }
            if (l->fuse_relu == 6) /* a relu6 fused into this layer (model.c) */
                for (size_t i = 0; i < HW; i++) {
                    float v = y[i] > 0.0f ? y[i] : 0.0f;
                    y[i] = v < 6.0f ? v : 6.0f;
                }
        }
    }
}

static void s_backward(cnd_layer_t *l, float *din, float *dw, const float *dout, const float *in,
                       const float *out, const float *w, float *work, int B)
{
    // din and dout are (B,C,H,W); dgamma, dbeta are (C); needs xhat and invstd from training
    int C = l->in.c;
    size_t HW = (size_t)l->in.h * l->in.w, N = (size_t)B * HW;
    const float *gamma = w;
    float *dgamma = dw, *dbeta = dw + C;
    int r6 = l->fuse_relu == 6; /* a fused relu6 (model.c): dy passes where 0 < out < 6 */
    for (int c = 0; c < C; c++) {
        double sdy = 0.0, sdyx = 0.0;
        for (int b = 0; b < B; b++) {
            const float *dy = dout + cnd_layer_plane(l, c, b, B);
            const float *xh = l->saved + cnd_layer_plane(l, c, b, B);
            const float *y = out + cnd_layer_plane(l, c, b, B);
            for (size_t i = 0; i < HW; i++) {
                float d = r6 ? ((y[i] > 0.0f) & (y[i] < 6.0f) ? dy[i] : 0.0f) : dy[i];
                sdy += d;
                sdyx += (double)d * xh[i];
            }
        }
        dgamma[c] += (float)sdyx;
        dbeta[c] += (float)sdy;
        if (!din) continue;
        float k = gamma[c] * l->saved2[c] / (float)N;
        float mdy = (float)sdy, mdyx = (float)sdyx;
        for (int b = 0; b < B; b++) {
            const float *dy = dout + cnd_layer_plane(l, c, b, B);
            const float *xh = l->saved + cnd_layer_plane(l, c, b, B);
            float *dx = din + cnd_layer_plane(l, c, b, B);
            const float *y = out + cnd_layer_plane(l, c, b, B);
            if (r6)
                for (size_t i = 0; i < HW; i++) {
                    float d = (y[i] > 0.0f) & (y[i] < 6.0f) ? dy[i] : 0.0f;
                    dx[i] = k * ((float)N * d - mdy - xh[i] * mdyx);
                }
            else
                for (size_t i = 0; i < HW; i++) dx[i] = k * ((float)N * dy[i] - mdy - xh[i] * mdyx);
        }
    }
}

static uint64_t s_macs(const cnd_layer_t *l)
{
    return 0; /* folded into the preceding layer for inference */
}

static cnd_layer_mem_t s_mem(const cnd_layer_t *l, int B)
{
    return (cnd_layer_mem_t){.saved = (size_t)B * cnd_shape_size(l->in), .saved2 = (size_t)l->in.c};
}

const cnd_layer_ops_t cnd_layer_batchnorm_ops = {"batchnorm", s_shape, s_init, s_forward,
                                                 s_backward,  s_macs,  s_mem};
