/*
 * layer_conv2d.c: 2-D convolution with square kernels, stride and zero padding.
 *
 * The output of a batch is one (OC, B*P) matrix (P = OH*OW pixels per sample), which is the
 * CBHW layout of layer.h: W (OC, C*K*K) times the im2col matrix (C*K*K, B*P). Rather than
 * building that column matrix for the whole batch (14 MB for a 32-channel 14x14 layer at batch
 * 64, written once and read twice, so memory-bound), each thread takes a chunk of samples
 * (pool.h) and walks it in small groups whose columns fit in the core's L2 cache: im2col of the
 * group, then its GEMM into the output's column block. The backward pass rebuilds the group's
 * columns the same way (cheap, in cache) for dW += dY * col^T, computes dcol = W^T * dY into
 * the same small buffer and scatters it back with col2im. A following relu is fused: applied
 * while adding the bias, and its gradient mask applied while reading dY.
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
        return cnd_errf(CND_EINVAL, "conv2d: kernel %d does not fit input %dx%d with pad %d", K, H,
                        W, P);
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

/* Bytes a group's columns and its output (or output gradient) may take together: about half
 * of a core's L2 cache. */
#define GROUP_BYTES (512u * 1024u)

/* Samples per cache-resident group (>= 1). */
static int s_group(const cnd_layer_t *l)
{
    size_t rows = (size_t)l->in.c * l->p.conv.k * l->p.conv.k + (size_t)l->p.conv.oc;
    size_t per = rows * l->out.h * l->out.w * 4;
    size_t g = GROUP_BYTES / (per ? per : 1);
    return g < 1 ? 1 : (int)g;
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

/* "Same" convolutions (stride 1, output size = input size) on channel-major input have a
 * faster im2col: in CBHW the B planes of one channel are one contiguous array, and the column
 * row of tap (ki, kj) is that array shifted by (ki-PAD)*W + (kj-PAD), except at plane edges,
 * where the shift would read a neighbouring row or sample and the padding must be zero. So a
 * row is one long copy plus a few zeroed edge rows and columns, not H short copies per sample. */
static int s_same_fast(const cnd_layer_t *l)
{
    return l->p.conv.stride == 1 && l->out.h == l->in.h && l->out.w == l->in.w &&
           (l->in_cbhw || l->in.c == 1);
}

/* A 1x1 convolution with stride 1 (then no padding: the output keeps the input's size) on
 * channel-major input, MobileNet's pointwise layers: its column matrix for samples [g0, g1) is
 * the input itself, C rows of the group's pixels with leading dimension B*H*W. So the GEMMs
 * read the activations (and backward writes the input gradient) in place, with no im2col or
 * col2im copy. */
static int s_pointwise(const cnd_layer_t *l)
{
    return l->p.conv.k == 1 && s_same_fast(l);
}

/* Zeroes, in n consecutive planes of a column row, the positions where tap (di, dj) falls in
 * the zero padding. A shift of a whole plane or more (padding at least the input size) zeroes
 * it all. */
static void s_zero_edges(float *row, int H, int W, int di, int dj, int n)
{
    size_t hw = (size_t)H * W;
    di = di > H ? H : di < -H ? -H : di;
    dj = dj > W ? W : dj < -W ? -W : dj;
    if (di != 0) { /* |di| whole rows at the top or bottom of each plane */
        size_t off = di < 0 ? 0 : (size_t)(H - di) * W, len = (size_t)(di < 0 ? -di : di) * W;
        for (int b = 0; b < n; b++) {
            float *z = row + (size_t)b * hw + off;
            for (size_t k = 0; k < len; k++) z[k] = 0.0f;
        }
    }
    if (dj != 0) { /* |dj| columns at the left or right of every row: planes are contiguous */
        int j0 = dj < 0 ? 0 : W - dj, j1 = dj < 0 ? -dj : W;
        size_t rows = (size_t)n * H;
        for (size_t r = 0; r < rows; r++)
            for (int j = j0; j < j1; j++) row[r * W + j] = 0.0f;
    }
}

/* col (C*K*K rows, leading dimension ld) receives the columns of samples [b0, b1), column 0
 * being sample b0's first output pixel. */
static void s_im2col(float *col, size_t ld, const float *in, const cnd_layer_t *l, int B, int b0,
                     int b1)
{
    int C = l->in.c, H = l->in.h, W = l->in.w, K = l->p.conv.k, S = l->p.conv.stride;
    int PAD = l->p.conv.pad, OH = l->out.h, OW = l->out.w;
    size_t P = (size_t)OH * OW;
    if (s_same_fast(l)) {
        long BHW = (long)B * H * W, lo = (long)b0 * (long)P, hi = (long)b1 * (long)P;
        for (int c = 0; c < C; c++) {
            const float *src = in + (size_t)c * (size_t)BHW; /* channel c of every sample */
            for (int ki = 0; ki < K; ki++)
                for (int kj = 0; kj < K; kj++) {
                    float *row = col + (size_t)((c * K + ki) * K + kj) * ld;
                    long off = (long)(ki - PAD) * W + (kj - PAD);
                    long a = lo, e = hi; /* copy where 0 <= p + off < BHW, lo <= p < hi */
                    if (a + off < 0) a = -off;
                    if (a > hi) a = hi; /* the shift passes the whole group */
                    if (e + off > BHW) e = BHW - off;
                    if (e < a) e = a;
                    memset(row, 0, (size_t)(a - lo) * sizeof(float));
                    memcpy(row + (a - lo), src + a + off, (size_t)(e - a) * sizeof(float));
                    memset(row + (e - lo), 0, (size_t)(hi - e) * sizeof(float));
                    s_zero_edges(row, H, W, ki - PAD, kj - PAD, b1 - b0);
                }
        }
        return;
    }
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                float *row = col + (size_t)((c * K + ki) * K + kj) * ld;
                int lo, hi;
                s_valid_cols(&lo, &hi, kj, S, PAD, W, OW);
                for (int b = b0; b < b1; b++) {
                    const float *src = in + cnd_layer_plane(l, c, b, B);
                    float *dst = row + (size_t)(b - b0) * P;
                    for (int oh = 0; oh < OH; oh++) {
                        int ih = oh * S - PAD + ki;
                        float *d = dst + (size_t)oh * OW;
                        if (ih < 0 || ih >= H) {
                            for (int ow = 0; ow < OW; ow++) d[ow] = 0.0f;
                            continue;
                        }
                        const float *sr = src + (size_t)ih * W;
                        int off = kj - PAD; /* ow >= lo keeps ow*S + off >= 0 */
                        for (int ow = 0; ow < lo; ow++) d[ow] = 0.0f;
                        if (S == 1)
                            for (int ow = lo; ow < hi; ow++) d[ow] = sr[ow + off];
                        else
                            for (int ow = lo; ow < hi; ow++) d[ow] = sr[ow * S + off];
                        for (int ow = hi; ow < OW; ow++) d[ow] = 0.0f;
                    }
                }
            }
}

/* Adds the columns dcol (leading dimension ld, column 0 = sample b0) back into din's planes of
 * samples [b0, b1). dcol is scratch: its padding positions are zeroed here so that the shifted
 * add never carries a padding gradient into a real pixel. A "same" convolution's centre tap
 * covers every pixel with no shift, so it is copied first and din needs no zeroing
 * (s_col2im_sets); otherwise the caller zeroes din's planes first. */
static int s_col2im_sets(const cnd_layer_t *l)
{
    return s_same_fast(l);
}

static void s_col2im(float *din, float *dcol, size_t ld, const cnd_layer_t *l, int B, int b0,
                     int b1)
{
    int C = l->in.c, H = l->in.h, W = l->in.w, K = l->p.conv.k, S = l->p.conv.stride;
    int PAD = l->p.conv.pad, OH = l->out.h, OW = l->out.w;
    size_t P = (size_t)OH * OW;
    if (s_same_fast(l)) { /* then K == 2 * PAD + 1: the centre tap (PAD, PAD) has no shift */
        long BHW = (long)B * H * W, lo = (long)b0 * (long)P, hi = (long)b1 * (long)P;
        for (int c = 0; c < C; c++) {
            float *dst = din + (size_t)c * (size_t)BHW;
            memcpy(dst + lo, dcol + (size_t)((c * K + PAD) * K + PAD) * ld,
                   (size_t)(hi - lo) * sizeof(float));
            for (int ki = 0; ki < K; ki++)
                for (int kj = 0; kj < K; kj++) {
                    if (ki == PAD && kj == PAD) continue;
                    float *row = dcol + (size_t)((c * K + ki) * K + kj) * ld;
                    long off = (long)(ki - PAD) * W + (kj - PAD);
                    s_zero_edges(row, H, W, ki - PAD, kj - PAD, b1 - b0);
                    long a = lo, e = hi; /* p with p + off inside this group's planes */
                    if (a + off < lo) a = lo - off;
                    if (e + off > hi) e = hi - off;
                    if (e <= a) continue; /* the shift passes the whole group */
                    float *d = dst + a + off;
                    const float *r = row + (a - lo);
                    for (long p = 0; p < e - a; p++) d[p] += r[p];
                }
        }
        return;
    }
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                const float *row = dcol + (size_t)((c * K + ki) * K + kj) * ld;
                int lo, hi;
                s_valid_cols(&lo, &hi, kj, S, PAD, W, OW);
                for (int b = b0; b < b1; b++) {
                    float *dst = din + cnd_layer_plane(l, c, b, B);
                    const float *src = row + (size_t)(b - b0) * P;
                    for (int oh = 0; oh < OH; oh++) {
                        int ih = oh * S - PAD + ki;
                        if (ih < 0 || ih >= H) continue;
                        float *d = dst + (size_t)ih * W;
                        const float *sr = src + (size_t)oh * OW;
                        int off = kj - PAD;
                        if (S == 1)
                            for (int ow = lo; ow < hi; ow++) d[ow + off] += sr[ow];
                        else
                            for (int ow = lo; ow < hi; ow++) d[ow * S + off] += sr[ow];
                    }
                }
            }
}

/* One task's share of a pass: samples [b0, b1) of the batch, walked in cache-sized groups. */
typedef struct {
    cnd_layer_t *l;
    float *din, *dw, *out, *work;
    const float *in, *dout, *w;
    uint8_t *codes; /* fused pooling: window codes of `out`, the pooled output */
    int B;
} s_job;

/* Per-task scratch in `work`: columns (CKK x G*P) | dY or dcol (max(OC, CKK) x G*P) | partial
 * gradients (n_params) | one sample's weight gradient (OC x CKK, DP-SGD's per-sample norms). */
static size_t s_task_floats(const cnd_layer_t *l)
{
    size_t CKK = (size_t)l->in.c * l->p.conv.k * l->p.conv.k, OC = (size_t)l->p.conv.oc;
    size_t GP = (size_t)s_group(l) * l->out.h * l->out.w;
    return CKK * GP + (CKK > OC ? CKK : OC) * GP + 2 * l->n_params;
}

/* Task `task`'s scratch in work (s_task_floats): returns its columns; *buf gets the dY/dcol
 * area, *part its partial gradients. */
static float *s_scratch(const cnd_layer_t *l, float *work, int task, float **buf, float **part)
{
    size_t CKK = (size_t)l->in.c * l->p.conv.k * l->p.conv.k, OC = (size_t)l->p.conv.oc;
    size_t GP = (size_t)s_group(l) * l->out.h * l->out.w;
    float *col = work + (size_t)task * s_task_floats(l);
    *buf = col + CKK * GP;
    *part = *buf + (CKK > OC ? CKK : OC) * GP;
    return col;
}

/* d[0..n) += bias, then the fused relu if the layer has one. */
static void s_bias_act(float *d, size_t n, float bias, const cnd_layer_t *l)
{
    if (l->fuse_relu)
        for (size_t p = 0; p < n; p++) {
            float v = d[p] + bias;
            d[p] = v > 0.0f ? v : 0.0f;
        }
    else
        for (size_t p = 0; p < n; p++) d[p] += bias;
}

/* A backward task's start: its partial gradients cleared and, unless col2im sets them, its
 * samples' input-gradient planes zeroed for col2im to accumulate into. */
static void s_backward_begin(const s_job *j, float *part, long b0, long b1)
{
    const cnd_layer_t *l = j->l;
    size_t HW = (size_t)l->in.h * l->in.w;
    memset(part, 0, l->n_params * sizeof(float));
    if (j->din && !s_col2im_sets(l))
        for (int c = 0; c < l->in.c; c++)
            for (long b = b0; b < b1; b++)
                memset(j->din + cnd_layer_plane(l, c, (int)b, j->B), 0, HW * sizeof(float));
}

static void s_forward_task(void *ctx, int task, int ntasks)
{
    const s_job *j = ctx;
    cnd_layer_t *l = j->l;
    int OC = l->p.conv.oc, CKK = l->in.c * l->p.conv.k * l->p.conv.k, G = s_group(l);
    size_t P = (size_t)l->out.h * l->out.w, BP = (size_t)j->B * P;
    float *col = j->work + (size_t)task * s_task_floats(l);
    const float *bias = j->w + l->n_weights;
    long b0, b1;
    cnd_pool_range(j->B, ntasks, task, &b0, &b1);
    for (long g0 = b0; g0 < b1; g0 += G) {
        long g1 = g0 + G < b1 ? g0 + G : b1;
        size_t c0 = (size_t)g0 * P, nc = (size_t)(g1 - g0) * P;
        const float *x = j->in + c0; /* (CKK, nc), leading dimension ldx */
        size_t ldx = BP;
        if (!s_pointwise(l)) {
            s_im2col(col, nc, j->in, l, j->B, (int)g0, (int)g1);
            x = col;
            ldx = nc;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, (int)nc, CKK, 1.0f, j->w, CKK, x,
                    (int)ldx, 0.0f, j->out + c0, (int)BP);
        for (int oc = 0; oc < OC; oc++) s_bias_act(j->out + (size_t)oc * BP + c0, nc, bias[oc], l);
    }
}

static void s_forward(cnd_layer_t *l, float *out, const float *in, const float *w, float *state,
                      float *work, int B, int train)
{
    // out is (OC,B,OH,OW), in is (B,C,H,W) or (C,B,H,W), weight is (OC,C,K,K), bias is (OC)
    s_job j = {.l = l, .out = out, .in = in, .w = w, .work = work, .B = B};
    cnd_pool_run(s_forward_task, &j, cnd_pool_threads());
}

/* DP-SGD (layer.h): the parameter gradient of a group one sample at a time, dW_b = dY_b col_b^T
 * (OC x CKK) and db_b = dY_b summed over pixels, into sample_grads[b] when the layer has that
 * buffer, else into the scratch after `part`; its squared norm into sample_norm2[b], and the
 * gradient into part. The same products as the group's one GEMM, in P-deep slices. dy is
 * (OC, nc) with leading dimension ldy, col (CKK, nc). */
static void s_sample_grads(const cnd_layer_t *l, float *part, const float *dy, size_t ldy,
                           const float *col, size_t nc, long g0, long g1)
{
    int OC = l->p.conv.oc, CKK = l->in.c * l->p.conv.k * l->p.conv.k;
    size_t P = (size_t)l->out.h * l->out.w;
    for (long b = g0; b < g1; b++) {
        size_t c = (size_t)(b - g0) * P;
        float *gw =
            l->sample_grads ? l->sample_grads + (size_t)b * l->n_params : part + l->n_params;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, CKK, (int)P, 1.0f, dy + c,
                    (int)ldy, col + c, (int)nc, 0.0f, gw, CKK);
        for (int oc = 0; oc < OC; oc++)
            gw[l->n_weights + oc] = cnd_vsum(dy + (size_t)oc * ldy + c, P);
        double s = 0;
        for (size_t i = 0; i < l->n_params; i++) s += (double)gw[i] * gw[i];
        for (size_t i = 0; i < l->n_weights; i++) part[i] += gw[i]; /* the bias has its own sum */
        l->sample_norm2[b] += s;
    }
}

static void s_backward_task(void *ctx, int task, int ntasks)
{
    const s_job *j = ctx;
    cnd_layer_t *l = j->l;
    int OC = l->p.conv.oc, CKK = l->in.c * l->p.conv.k * l->p.conv.k, G = s_group(l);
    size_t P = (size_t)l->out.h * l->out.w, BP = (size_t)j->B * P;
    float *buf, *part; /* buf: masked dY, then dcol */
    float *col = s_scratch(l, j->work, task, &buf, &part);
    float *dbias = part + l->n_weights;
    long b0, b1;
    cnd_pool_range(j->B, ntasks, task, &b0, &b1);
    s_backward_begin(j, part, b0, b1);
    for (long g0 = b0; g0 < b1; g0 += G) {
        long g1 = g0 + G < b1 ? g0 + G : b1;
        size_t c0 = (size_t)g0 * P, nc = (size_t)(g1 - g0) * P;
        const float *dy = j->dout + c0; /* (OC, nc) with leading dimension BP */
        size_t ldy = BP;
        if (l->fuse_relu) {
            for (int oc = 0; oc < OC; oc++)
                dbias[oc] +=
                    cnd_vrelu_mask_sum(buf + (size_t)oc * nc, j->dout + (size_t)oc * BP + c0,
                                       j->out + (size_t)oc * BP + c0, nc);
            dy = buf;
            ldy = nc;
        } else {
            for (int oc = 0; oc < OC; oc++) dbias[oc] += cnd_vsum(dy + (size_t)oc * BP, nc);
        }
        int pw = s_pointwise(l);
        if (pw && !l->sample_norm2) { /* the columns are the input (s_pointwise) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, CKK, (int)nc, 1.0f, dy,
                        (int)ldy, j->in + c0, (int)BP, 1.0f, part, CKK);
        } else {
            s_im2col(col, nc, j->in, l, j->B, (int)g0, (int)g1);
            if (l->sample_norm2)
                s_sample_grads(l, part, dy, ldy, col, nc, g0, g1);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, CKK, (int)nc, 1.0f, dy,
                            (int)ldy, col, (int)nc, 1.0f, part, CKK);
        }
        if (j->din && pw) { /* W^T (CKK, OC) * dY (OC, nc) is the group's input gradient */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, (int)nc, OC, 1.0f, j->w, CKK,
                        dy, (int)ldy, 0.0f, j->din + c0, (int)BP);
        } else if (j->din) {
            /* dcol overwrites col: W^T (CKK, OC) * dY (OC, nc). */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, (int)nc, OC, 1.0f, j->w, CKK,
                        dy, (int)ldy, 0.0f, col, (int)nc);
            s_col2im(j->din, col, nc, l, j->B, (int)g0, (int)g1);
        }
    }
}

/* Adds the per-task partial gradients (in task order: deterministic, pool.h) into dw. */
static void s_sum_parts(const cnd_layer_t *l, float *dw, const float *work)
{
    for (int t = 0; t < cnd_pool_threads(); t++) {
        float *buf, *part;
        s_scratch(l, (float *)work, t, &buf, &part);
        for (size_t i = 0; i < l->n_params; i++) dw[i] += part[i];
    }
}

static void s_backward(cnd_layer_t *l, float *din, float *dw, const float *dout, const float *in,
                       const float *out, const float *w, float *work, int B)
{
    // din is (B,C,H,W) or (C,B,H,W), dweight is (OC,C,K,K), dout is (OC,B,OH,OW)
    int T = cnd_pool_threads();
    s_job j = {.l = l,
               .din = din,
               .out = (float *)out,
               .work = work,
               .in = in,
               .dout = dout,
               .w = w,
               .B = B};
    cnd_pool_run(s_backward_task, &j, T);
    s_sum_parts(l, dw, work);
}

static uint64_t s_macs(const cnd_layer_t *l)
{
    return (uint64_t)l->n_weights * (uint64_t)l->out.h * (uint64_t)l->out.w;
}

static cnd_layer_mem_t s_mem(const cnd_layer_t *l, int B)
{
    return (cnd_layer_mem_t){.work = (size_t)cnd_pool_threads() * s_task_floats(l)};
}

/* The pooled outputs of samples [g0, g1) from their convolution output y (OC rows of
 * (g1-g0)*P, leading dimension ld), bias and relu applied first, as the unfused layers do. */
static void s_pool_group(const s_job *j, float *y, size_t ld, long g0, long g1)
{
    const cnd_layer_t *l = j->l;
    int OC = l->p.conv.oc, OH = l->out.h, OW = l->out.w, POW = OW / 2;
    size_t P = (size_t)OH * OW, PP = (size_t)(OH / 2) * POW;
    const float *bias = j->w + l->n_weights;
    for (int oc = 0; oc < OC; oc++) {
        float *d = y + (size_t)oc * ld;
        s_bias_act(d, (size_t)(g1 - g0) * P, bias[oc], l);
        for (long b = g0; b < g1; b++) {
            const float *plane = d + (size_t)(b - g0) * P;
            size_t at = ((size_t)oc * (size_t)j->B + (size_t)b) * PP; /* CBHW */
            for (int ph = 0; ph < OH / 2; ph++) {
                const float *r0 = plane + (size_t)(2 * ph) * OW;
                cnd_maxpool2_row(j->out + at + (size_t)ph * POW, j->codes + at + (size_t)ph * POW,
                                 r0, r0 + OW, POW);
            }
        }
    }
}

static void s_forward_pool_task(void *ctx, int task, int ntasks)
{
    const s_job *j = ctx;
    cnd_layer_t *l = j->l;
    int OC = l->p.conv.oc, CKK = l->in.c * l->p.conv.k * l->p.conv.k, G = s_group(l);
    size_t P = (size_t)l->out.h * l->out.w, GP = (size_t)G * P;
    float *col = j->work + (size_t)task * s_task_floats(l);
    float *y = col + (size_t)CKK * GP;
    long b0, b1;
    cnd_pool_range(j->B, ntasks, task, &b0, &b1);
    for (long g0 = b0; g0 < b1; g0 += G) {
        long g1 = g0 + G < b1 ? g0 + G : b1;
        size_t nc = (size_t)(g1 - g0) * P;
        s_im2col(col, nc, j->in, l, j->B, (int)g0, (int)g1);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, (int)nc, CKK, 1.0f, j->w, CKK,
                    col, (int)nc, 0.0f, y, (int)nc);
        s_pool_group(j, y, nc, g0, g1);
    }
}

void cnd_conv2d_forward_pool(cnd_layer_t *l, float *pout, uint8_t *codes, const float *in,
                             const float *w, float *work, int B)
{
    // pout is (OC,B,OH/2,OW/2), codes the same count, in is (B,C,H,W) or (C,B,H,W)
    s_job j = {.l = l, .out = pout, .codes = codes, .in = in, .w = w, .work = work, .B = B};
    cnd_pool_run(s_forward_pool_task, &j, cnd_pool_threads());
}

static void s_backward_pool_task(void *ctx, int task, int ntasks)
{
    const s_job *j = ctx;
    cnd_layer_t *l = j->l;
    int OC = l->p.conv.oc, CKK = l->in.c * l->p.conv.k * l->p.conv.k, G = s_group(l);
    int OH = l->out.h, OW = l->out.w, POW = OW / 2;
    size_t P = (size_t)OH * OW, PP = (size_t)(OH / 2) * POW;
    float *dy, *part;
    float *col = s_scratch(l, j->work, task, &dy, &part);
    float *dbias = part + l->n_weights;
    long b0, b1;
    cnd_pool_range(j->B, ntasks, task, &b0, &b1);
    s_backward_begin(j, part, b0, b1);
    for (long g0 = b0; g0 < b1; g0 += G) {
        long g1 = g0 + G < b1 ? g0 + G : b1;
        size_t nc = (size_t)(g1 - g0) * P;
        /* dY of the group: each pooled gradient at its window's maximum, where the relu let
         * the maximum through (the pooled output is the rectified maximum). */
        for (int oc = 0; oc < OC; oc++) {
            float *d = dy + (size_t)oc * nc;
            for (long b = g0; b < g1; b++) {
                size_t at = ((size_t)oc * (size_t)j->B + (size_t)b) * PP;
                for (int ph = 0; ph < OH / 2; ph++) {
                    float *r0 = d + (size_t)(b - g0) * P + (size_t)(2 * ph) * OW;
                    cnd_maxpool2_row_back(r0, r0 + OW, j->dout + at + (size_t)ph * POW,
                                          l->fuse_relu ? j->out + at + (size_t)ph * POW : NULL,
                                          j->codes + at + (size_t)ph * POW, POW);
                }
            }
            dbias[oc] += cnd_vsum(d, nc);
        }
        s_im2col(col, nc, j->in, l, j->B, (int)g0, (int)g1);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, CKK, (int)nc, 1.0f, dy, (int)nc,
                    col, (int)nc, 1.0f, part, CKK);
        if (j->din) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, (int)nc, OC, 1.0f, j->w, CKK,
                        dy, (int)nc, 0.0f, col, (int)nc);
            s_col2im(j->din, col, nc, l, j->B, (int)g0, (int)g1);
        }
    }
}

void cnd_conv2d_backward_pool(cnd_layer_t *l, float *din, float *dw, const float *dpool,
                              const float *in, const float *pout, const uint8_t *codes,
                              const float *w, float *work, int B)
{
    // din as in s_backward; dpool, pout and codes are (OC,B,OH/2,OW/2)
    s_job j = {.l = l,
               .din = din,
               .out = (float *)pout,
               .codes = (uint8_t *)codes,
               .work = work,
               .in = in,
               .dout = dpool,
               .w = w,
               .B = B};
    cnd_pool_run(s_backward_pool_task, &j, cnd_pool_threads());
    s_sum_parts(l, dw, work);
}

const cnd_layer_ops_t cnd_layer_conv2d_ops = {"conv2d",   s_shape, s_init, s_forward,
                                              s_backward, s_macs,  s_mem};
