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
 * materialised. That general path serves grouped convolutions and depthwise ones with a channel
 * multiplier. Plain depthwise layers (one input and one output channel per group, kernels up to
 * CND_DW_MAX_K), MobileNet's, take the phase-plane path further down instead: each plane is
 * copied into a small zero-padded buffer so that every tap is one long vector loop.
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

/* Kernels up to this size take the depthwise fast path (below). */
#define CND_DW_MAX_K    7
#define CND_DW_MAX_TAPS (CND_DW_MAX_K * CND_DW_MAX_K)

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
    float *work;                    /* the depthwise path's per-task phase planes */
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

/*
 * Depthwise fast path (one input and one output channel per group, the MobileNet case).
 *
 * The rows of a MobileNet's maps are short (28, 14, 7 pixels), so a per-row, per-tap loop
 * spends its time on loop overhead and valid-column bounds, not on arithmetic. Instead each
 * input plane is copied once into zero-padded "phase planes": with stride S, padded pixel
 * (r, c) goes to phase plane (r % S, c % S) at row r / S, column c / S, rows RS floats apart.
 * Output pixel (oh, ow) then reads tap (ki, kj) at index i + off(ki, kj) of one phase plane,
 * where i = oh * RS + ow and off = (ki / S) * RS + kj / S: every tap is the same contiguous,
 * unconditional loop over the flattened index i, across rows and the padding alike. Columns
 * ow >= OW of the flattened output are computed and dropped (at most (K - 1) / S + 1 per row).
 * The loops run two 8-float vectors per step (GCC vector extensions: two SSE registers each, or
 * one AVX2 register in the copy compiled for AVX2, chosen at run time). Both copies do the same
 * operations in the same order (AVX2 without FMA), so they give the same bits by construction.
 *
 * Backward, the output gradient is written into the same flattened layout with zeros in the
 * dropped columns and around it, so the weight gradient of a tap is one dot product over i,
 * and the input gradient of phase plane p at index q is the sum over p's taps of
 * f(tap) * g[q - off(tap)], again one contiguous loop; it is then gathered back to (H, W).
 */
typedef float s_v8 __attribute__((vector_size(32)));

typedef struct {
    int S, RS;       /* stride; floats between rows of a phase plane */
    size_t plane;    /* floats per phase plane, a multiple of 16 with slack for the taps' reads */
    size_t n, nv;    /* flattened output length OH * RS; rounded up to 16 (two vectors) */
    size_t front;    /* zeros before the flattened gradient (the largest tap offset, rounded) */
    size_t gsize;    /* floats of the flattened gradient buffer with its front */
    size_t per_task; /* work floats per task */
} s_dw_geom;

static int s_is_depthwise(const cnd_layer_t *l)
{
    return l->p.conv.groups == l->in.c && l->p.conv.oc == l->in.c;
}

/* The fast path takes depthwise layers with kernels up to CND_DW_MAX_K. */
static int s_dw_fast(const cnd_layer_t *l)
{
    return s_is_depthwise(l) && l->p.conv.k <= CND_DW_MAX_K;
}

static s_dw_geom s_dw_geometry(const cnd_layer_t *l)
{
    s_dw_geom g;
    int S = l->p.conv.stride, K = l->p.conv.k;
    int PH = l->in.h + 2 * l->p.conv.pad, PW = l->in.w + 2 * l->p.conv.pad;
    g.S = S;
    g.RS = (PW + S - 1) / S;
    /* the reads of i < nv reach nv - 1 + maxoff < n + 16 + maxoff <= (ceil(PH/S) + 1) * RS + 16 */
    size_t rows = (size_t)((PH + S - 1) / S + 1);
    g.plane = (rows * (size_t)g.RS + 16 + 15) / 16 * 16;
    g.n = (size_t)l->out.h * (size_t)g.RS;
    g.nv = (g.n + 15) / 16 * 16;
    g.front = ((size_t)((K - 1) / S) * (size_t)g.RS + (size_t)((K - 1) / S) + 7) / 8 * 8;
    g.gsize = g.front + g.plane;
    g.per_task = 2 * (size_t)S * (size_t)S * g.plane + g.gsize;
    return g;
}

/* Unaligned 8-float loads and stores (GCC lets a vector of floats alias floats). */
typedef float s_v8u __attribute__((vector_size(32), aligned(4)));
#define S_V8_LOAD(p)     (*(const s_v8u *)(const void *)(p))
#define S_V8_STORE(p, v) (*(s_v8u *)(void *)(p) = (v))

/* Where tap (ki, kj) reads: its phase plane's first float plus its offset. */
static inline __attribute__((always_inline)) size_t s_dw_tap(const s_dw_geom *g, int ki, int kj)
{
    int S = g->S;
    return (size_t)((ki % S) * S + kj % S) * g->plane + (size_t)(ki / S) * (size_t)g->RS +
           (size_t)(kj / S);
}

/* Copies plane x (H, W) into the phase planes ph, whose padding is already zero. */
static inline __attribute__((always_inline)) void
s_dw_scatter(float *restrict ph, const float *restrict x, const cnd_layer_t *l, const s_dw_geom *g)
{
    int H = l->in.h, W = l->in.w, P = l->p.conv.pad, S = g->S;
    for (int h = 0; h < H; h++) {
        int r = h + P;
        float *row = ph + (size_t)(r % S) * (size_t)S * g->plane + (size_t)(r / S) * g->RS;
        if (S == 1) {
            memcpy(row + P, x + (size_t)h * W, (size_t)W * sizeof(float));
            continue;
        }
        /* padded columns c = w + P of phase p are p, p + S, ...: one strided copy each */
        const float *xr = x + (size_t)h * W;
        for (int p = 0; p < S; p++) {
            float *dst = row + (size_t)p * g->plane;
            int w = p - P, m = 0;
            for (; w < 0; w += S) m++;
            for (; w < W; w += S) dst[m++] = xr[w];
        }
    }
}

/* One channel's forward: out (B, OH, OW) of in planes (B of them) with filter f (K, K). */
static inline __attribute__((always_inline)) void s_dw_fwd_channel(const s_job *j, int c, float *ph,
                                                                   float *t, const s_dw_geom *g)
{
    const cnd_layer_t *l = j->l;
    int K = l->p.conv.k, KK = K * K, OH = l->out.h, OW = l->out.w;
    const float *f = j->w + (size_t)c * KK;
    float bias = j->w[l->n_weights + c];
    size_t off[CND_DW_MAX_TAPS];
    for (int ki = 0; ki < K; ki++)
        for (int kj = 0; kj < K; kj++) off[ki * K + kj] = s_dw_tap(g, ki, kj);
    for (int b = 0; b < j->B; b++) {
        s_dw_scatter(ph, j->in + cnd_layer_plane(l, c, b, j->B), l, g);
        for (size_t i = 0; i < g->nv; i += 16) { /* two vectors: two independent sums */
            s_v8 v0 = {bias, bias, bias, bias, bias, bias, bias, bias}, v1 = v0;
            for (int k = 0; k < KK; k++) {
                v0 += f[k] * S_V8_LOAD(ph + off[k] + i);
                v1 += f[k] * S_V8_LOAD(ph + off[k] + i + 8);
            }
            S_V8_STORE(t + i, v0);
            S_V8_STORE(t + i + 8, v1);
        }
        float *o = j->out + ((size_t)c * (size_t)j->B + (size_t)b) * OH * OW; /* CBHW */
        for (int oh = 0; oh < OH; oh++) {
            const float *tr = t + (size_t)oh * g->RS;
            float *orow = o + (size_t)oh * OW;
            if (l->fuse_relu)
                for (int ow = 0; ow < OW; ow++) orow[ow] = tr[ow] > 0.0f ? tr[ow] : 0.0f;
            else
                memcpy(orow, tr, (size_t)OW * sizeof(float));
        }
    }
}

static inline __attribute__((always_inline)) void s_dw_fwd_body(void *ctx, int task, int ntasks)
{
    const s_job *j = ctx;
    s_dw_geom g = s_dw_geometry(j->l);
    int SS = g.S * g.S;
    float *ph = j->work + (size_t)task * g.per_task, *t = ph + (size_t)SS * g.plane;
    memset(ph, 0, (size_t)SS * g.plane * sizeof(float));
    long c0, c1;
    cnd_pool_range(j->l->in.c, ntasks, task, &c0, &c1);
    for (long c = c0; c < c1; c++) s_dw_fwd_channel(j, (int)c, ph, t, &g);
}

/* Sum of a[i] * b[i] for i < nv (a multiple of 16), in 16 fixed lanes. */
static inline __attribute__((always_inline)) float s_v8_dot(const float *a, const float *b,
                                                            size_t nv)
{
    s_v8 acc = {0}, acc1 = {0};
    for (size_t i = 0; i < nv; i += 16) {
        acc += S_V8_LOAD(a + i) * S_V8_LOAD(b + i);
        acc1 += S_V8_LOAD(a + i + 8) * S_V8_LOAD(b + i + 8);
    }
    acc += acc1;
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Sum of a[i] for i < nv (a multiple of 8), in 8 fixed lanes. */
static inline __attribute__((always_inline)) float s_v8_sum(const float *a, size_t nv)
{
    s_v8 acc = {0};
    for (size_t i = 0; i < nv; i += 8) acc += S_V8_LOAD(a + i);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* One channel's backward: df (K, K) and the bias gradient (+=), din planes (=) if wanted. */
static inline __attribute__((always_inline)) void
s_dw_bwd_channel(const s_job *j, int c, float *ph, float *dph, float *gbuf, const s_dw_geom *g)
{
    const cnd_layer_t *l = j->l;
    int K = l->p.conv.k, KK = K * K, OH = l->out.h, OW = l->out.w, S = g->S;
    int H = l->in.h, W = l->in.w, P = l->p.conv.pad;
    const float *f = j->w + (size_t)c * KK;
    float *df = j->dw + (size_t)c * KK, *gt = gbuf + g->front;
    size_t off[CND_DW_MAX_TAPS];
    for (int ki = 0; ki < K; ki++)
        for (int kj = 0; kj < K; kj++) off[ki * K + kj] = s_dw_tap(g, ki, kj);
    float db = 0.0f;
    for (int b = 0; b < j->B; b++) {
        size_t at = ((size_t)c * (size_t)j->B + (size_t)b) * OH * OW;
        for (int oh = 0; oh < OH; oh++) { /* the flattened gradient; other columns stay 0 */
            const float *gr = j->dout + at + (size_t)oh * OW, *yr = j->y + at + (size_t)oh * OW;
            float *dst = gt + (size_t)oh * g->RS;
            if (l->fuse_relu)
                for (int ow = 0; ow < OW; ow++) {
                    float gv = gr[ow]; /* read unconditionally: a select, not a branch */
                    dst[ow] = yr[ow] > 0.0f ? gv : 0.0f;
                }
            else
                memcpy(dst, gr, (size_t)OW * sizeof(float));
        }
        db += s_v8_sum(gt, g->nv);
        size_t pl = cnd_layer_plane(l, c, b, j->B);
        s_dw_scatter(ph, j->in + pl, l, g);
        for (int k = 0; k < KK; k++) df[k] += s_v8_dot(gt, ph + off[k], g->nv);
        if (!j->din) continue;
        for (int p = 0; p < S * S; p++) { /* dph plane p: its taps' transposed convolution */
            float *d = dph + (size_t)p * g->plane, pf[CND_DW_MAX_TAPS];
            const float *src[CND_DW_MAX_TAPS];
            int np = 0;
            for (int k = 0; k < KK; k++)
                if (off[k] / g->plane == (size_t)p) {
                    pf[np] = f[k];
                    src[np++] = gt - (off[k] - (size_t)p * g->plane);
                }
            for (size_t q = 0; q < g->plane; q += 16) {
                s_v8 v0 = {0}, v1 = {0};
                for (int k = 0; k < np; k++) {
                    v0 += pf[k] * S_V8_LOAD(src[k] + q);
                    v1 += pf[k] * S_V8_LOAD(src[k] + q + 8);
                }
                S_V8_STORE(d + q, v0);
                S_V8_STORE(d + q + 8, v1);
            }
        }
        float *dx = j->din + pl;
        for (int h = 0; h < H; h++) {
            int r = h + P;
            const float *row =
                dph + (size_t)(r % S) * (size_t)S * g->plane + (size_t)(r / S) * g->RS;
            if (S == 1) {
                memcpy(dx + (size_t)h * W, row + P, (size_t)W * sizeof(float));
                continue;
            }
            float *dr = dx + (size_t)h * W;
            for (int p = 0; p < S; p++) {
                const float *src = row + (size_t)p * g->plane;
                int w = p - P, m = 0;
                for (; w < 0; w += S) m++;
                for (; w < W; w += S) dr[w] = src[m++];
            }
        }
    }
    j->dw[l->n_weights + c] += db;
}

static inline __attribute__((always_inline)) void s_dw_bwd_body(void *ctx, int task, int ntasks)
{
    const s_job *j = ctx;
    s_dw_geom g = s_dw_geometry(j->l);
    int SS = g.S * g.S;
    float *ph = j->work + (size_t)task * g.per_task, *dph = ph + (size_t)SS * g.plane;
    float *gbuf = dph + (size_t)SS * g.plane;
    memset(ph, 0, (size_t)SS * g.plane * sizeof(float));
    memset(gbuf, 0, g.gsize * sizeof(float));
    long c0, c1;
    cnd_pool_range(j->l->in.c, ntasks, task, &c0, &c1);
    for (long c = c0; c < c1; c++) s_dw_bwd_channel(j, (int)c, ph, dph, gbuf, &g);
}

static void s_dw_fwd_task(void *ctx, int task, int ntasks)
{
    s_dw_fwd_body(ctx, task, ntasks);
}

static void s_dw_bwd_task(void *ctx, int task, int ntasks)
{
    s_dw_bwd_body(ctx, task, ntasks);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same code compiled for AVX2 (no FMA: the bits stay those of the portable copy). */
__attribute__((target("avx2"))) static void s_dw_fwd_task_avx2(void *ctx, int task, int ntasks)
{
    s_dw_fwd_body(ctx, task, ntasks);
}

__attribute__((target("avx2"))) static void s_dw_bwd_task_avx2(void *ctx, int task, int ntasks)
{
    s_dw_bwd_body(ctx, task, ntasks);
}

static int s_have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
}
#endif

/* The depthwise task for this CPU: forward (bwd 0) or backward (bwd 1). */
static cnd_task_fn s_dw_task(int bwd)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (s_have_avx2()) return bwd ? s_dw_bwd_task_avx2 : s_dw_fwd_task_avx2;
#endif
    return bwd ? s_dw_bwd_task : s_dw_fwd_task;
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
    s_job j = {.l = l, .out = out, .in = in, .w = w, .work = work, .B = B};
    int T = cnd_pool_threads();
    if (s_dw_fast(l)) {
        cnd_pool_run(s_dw_task(0), &j, T < l->in.c ? T : l->in.c);
        return;
    }
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
               .work = work,
               .B = B};
    int T = cnd_pool_threads();
    if (s_dw_fast(l)) {
        cnd_pool_run(s_dw_task(1), &j, T < l->in.c ? T : l->in.c);
        return;
    }
    cnd_pool_run(s_backward_task, &j, T < l->p.conv.groups ? T : l->p.conv.groups);
}

static uint64_t s_macs(const cnd_layer_t *l)
{
    return (uint64_t)l->n_weights * (uint64_t)l->out.h * (uint64_t)l->out.w;
}

static cnd_layer_mem_t s_mem(const cnd_layer_t *l, int B)
{
    size_t per_task = (size_t)l->out.h * l->out.w;
    if (s_dw_fast(l) && s_dw_geometry(l).per_task > per_task) per_task = s_dw_geometry(l).per_task;
    return (cnd_layer_mem_t){.work = (size_t)cnd_pool_threads() * per_task};
}

const cnd_layer_ops_t cnd_layer_gconv_ops = {"conv2d",   s_shape, s_init, s_forward,
                                             s_backward, s_macs,  s_mem};
