/*
 * onnx_ops.c: the kernels of the ONNX engine (onnx_graph.h), run over the plan's arena, and
 * constant folding of the shape and data-movement ops.
 *
 * Tensors are NCHW floats. The heavy ops use the thread pool (common/pool.h) the training core
 * uses: convolutions (the fast path is layer_conv2d.c's own forward, which splits the batch;
 * the direct path splits (sample, channel) planes), pooling (planes) and Gemm/MatMul (row
 * blocks, one single-threaded sgemm each). Element-wise ops are memory-bound and run on the
 * calling thread.
 */
#include "onnx_internal.h"
#include "pool.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- convolution ---- */

typedef struct {
    const cnd_onnx_t *g;
    const s_node_t *n;
    float *y;
    const float *x, *w, *bias;
    int B;
} s_conv_job;

static void s_conv_direct_task(void *ctx, int task, int ntasks)
{
    const s_conv_job *j = ctx;
    const s_node_t *n = j->n;
    const s_value_t *xv = &j->g->v[n->in[0]], *yv = &j->g->v[n->out[0]];
    int64_t C = xv->dims[1], H = xv->dims[2], W = xv->dims[3];
    int64_t OC = yv->dims[1], OH = yv->dims[2], OW = yv->dims[3];
    int64_t G = n->group, Cg = C / G, OCg = OC / G, KH = n->kernel[0], KW = n->kernel[1];
    int64_t SH = n->strides[0], SW = n->strides[1], DH = n->dil[0], DW = n->dil[1];
    int64_t PT = n->pads[0], PL = n->pads[1];
    long p0, p1;
    cnd_pool_range((long)(j->B * OC), ntasks, task, &p0, &p1);
    for (long p = p0; p < p1; p++) {
        int64_t b = p / OC, oc = p % OC, q = oc / OCg;
        float *y = j->y + (size_t)p * (size_t)(OH * OW);
        float bv = j->bias ? j->bias[oc] : 0.0f;
        for (int64_t i = 0; i < OH * OW; i++) y[i] = bv;
        for (int64_t ic = 0; ic < Cg; ic++) {
            const float *x = j->x + (size_t)((b * C + q * Cg + ic) * H * W);
            const float *wk = j->w + (size_t)((oc * Cg + ic) * KH * KW);
            for (int64_t kh = 0; kh < KH; kh++)
                for (int64_t kw = 0; kw < KW; kw++) {
                    float wv = wk[kh * KW + kw];
                    int64_t off = kw * DW - PL; /* iw = ow*SW + off */
                    int64_t lo = off >= 0 ? 0 : (-off + SW - 1) / SW;
                    int64_t hi = W - 1 - off < 0 ? 0 : (W - 1 - off) / SW + 1;
                    if (hi > OW) hi = OW;
                    for (int64_t oh = 0; oh < OH; oh++) {
                        int64_t ih = oh * SH - PT + kh * DH;
                        if (ih < 0 || ih >= H) continue;
                        const float *xr = x + ih * W + off;
                        float *yr = y + oh * OW;
                        if (SW == 1)
                            for (int64_t ow = lo; ow < hi; ow++) yr[ow] += wv * xr[ow];
                        else
                            for (int64_t ow = lo; ow < hi; ow++) yr[ow] += wv * xr[ow * SW];
                    }
                }
        }
        if (n->fuse_relu)
            for (int64_t i = 0; i < OH * OW; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
    }
}

void cnd_onnx_conv_direct(const cnd_onnx_t *g, const s_node_t *n, float *y, const float *x,
                          const float *w, const float *bias, int B)
{
    // y is (B,OC,OH,OW), x is (B,C,H,W), w is (OC,C/group,KH,KW), bias is (OC) or NULL
    s_conv_job j = {g, n, y, x, w, bias, B};
    int T = cnd_pool_threads();
    cnd_pool_run(s_conv_direct_task, &j, T > 1 ? 4 * T : 1);
}

/* Through layer_conv2d.c, one group at a time: the group's input channels gathered into
 * (B, Cg, H, W) when there are several groups, the CBHW output scattered back to NCHW. */
static void s_conv_fast(cnd_onnx_t *g, s_node_t *n, float *y, const float *x, int B)
{
    cnd_layer_t *l = &n->layer;
    const cnd_layer_ops_t *ops = cnd_layer_ops(CND_L_CONV2D);
    int64_t G = n->group, Cg = l->in.c, OCg = l->out.c;
    size_t HW = (size_t)l->in.h * l->in.w, P = (size_t)l->out.h * l->out.w;
    size_t lw = ops->mem(l, B).work;
    float *xin = g->work + lw, *yo = xin + (G > 1 ? (size_t)B * Cg * HW : 0);
    for (int64_t q = 0; q < G; q++) {
        const float *xq = x;
        if (G > 1) {
            for (int b = 0; b < B; b++)
                memcpy(xin + (size_t)b * Cg * HW, x + ((size_t)b * G + q) * Cg * HW,
                       (size_t)Cg * HW * sizeof(float));
            xq = xin;
        }
        const float *wq = n->packed + (size_t)q * (l->n_weights + (size_t)OCg);
        int direct = B == 1 && G == 1;
        ops->forward(l, direct ? y : yo, xq, wq, NULL, g->work, B, 0);
        if (direct) continue;
        for (int64_t o = 0; o < OCg; o++)
            for (int b = 0; b < B; b++)
                memcpy(y + (((size_t)b * G + q) * OCg + o) * P, yo + ((size_t)o * B + b) * P,
                       P * sizeof(float));
    }
}

/* 1x1 convolutions with stride 1 and no padding: y_b (OC, HW) = W (OC, C) x_b (C, HW), one
 * sgemm per sample, each task a range of samples. */
static void s_conv_pointwise_task(void *ctx, int task, int ntasks)
{
    const s_conv_job *j = ctx;
    const s_node_t *n = j->n;
    const s_value_t *xv = &j->g->v[n->in[0]], *yv = &j->g->v[n->out[0]];
    int C = (int)xv->dims[1], OC = (int)yv->dims[1], HW = (int)(xv->dims[2] * xv->dims[3]);
    long b0, b1;
    cnd_pool_range(j->B, ntasks, task, &b0, &b1);
    for (long b = b0; b < b1; b++) {
        float *y = j->y + (size_t)b * OC * HW;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, HW, C, 1.0f, j->w, C,
                    j->x + (size_t)b * C * HW, HW, 0.0f, y, HW);
        for (int oc = 0; oc < OC; oc++) {
            float bv = j->bias ? j->bias[oc] : 0.0f, *r = y + (size_t)oc * HW;
            if (n->fuse_relu)
                for (int i = 0; i < HW; i++) r[i] = r[i] + bv > 0.0f ? r[i] + bv : 0.0f;
            else
                for (int i = 0; i < HW; i++) r[i] += bv;
        }
    }
}

static void s_conv(cnd_onnx_t *g, s_node_t *n, int B)
{
    float *y = cnd_onnx_data(g, n->out[0]);
    const float *x = cnd_onnx_data(g, n->in[0]);
    const float *bias = n->n_in > 2 && n->in[2] >= 0 ? cnd_onnx_data(g, n->in[2]) : NULL;
    if (n->fast == 2) {
        s_conv_job j = {g, n, y, x, cnd_onnx_data(g, n->in[1]), bias, B};
        int T = cnd_pool_threads();
        cnd_pool_run(s_conv_pointwise_task, &j, B >= T ? T : 1);
        return;
    }
    if (n->fast) {
        s_conv_fast(g, n, y, x, B);
        return;
    }
    cnd_onnx_conv_direct(g, n, y, x, cnd_onnx_data(g, n->in[1]), bias, B);
}

/* ---- pooling ---- */

#define S_POOL2_MAX 4096 /* widest output row of the 2x2 max pooling fast path */

typedef struct {
    const cnd_onnx_t *g;
    const s_node_t *n;
    float *y;
    const float *x;
    long planes;
    int pool2; /* 2x2 max pooling with stride 2 and no padding (layer_pool.c's kernel) */
} s_pool_job;

static void s_pool_task(void *ctx, int task, int ntasks)
{
    const s_pool_job *j = ctx;
    const s_node_t *n = j->n;
    const s_value_t *xv = &j->g->v[n->in[0]], *yv = &j->g->v[n->out[0]];
    int64_t H = xv->dims[2], W = xv->dims[3], OH = yv->dims[2], OW = yv->dims[3];
    int64_t KH = n->kernel[0], KW = n->kernel[1], SH = n->strides[0], SW = n->strides[1];
    int64_t DH = n->dil[0], DW = n->dil[1], PT = n->pads[0], PL = n->pads[1];
    int64_t HP = H + n->pads[2], WP = W + n->pads[3]; /* end of the padded input */
    long p0, p1;
    cnd_pool_range(j->planes, ntasks, task, &p0, &p1);
    for (long p = p0; p < p1; p++) {
        const float *x = j->x + (size_t)p * (size_t)(H * W);
        float *y = j->y + (size_t)p * (size_t)(OH * OW);
        if (j->pool2) { /* 2x2, stride 2, no padding: the training core's row kernel */
            uint8_t code[S_POOL2_MAX];
            for (int64_t oh = 0; oh < OH; oh++)
                cnd_maxpool2_row(y + oh * OW, code, x + 2 * oh * W, x + (2 * oh + 1) * W, (int)OW);
            continue;
        }
        if (n->op == OP_GAP) {
            double s = 0.0;
            for (int64_t i = 0; i < H * W; i++) s += x[i];
            y[0] = (float)(s / (double)(H * W));
            continue;
        }
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t h0 = oh * SH - PT, w0 = ow * SW - PL;
                float m = -FLT_MAX;
                float s = 0.0f;
                int64_t cnt = 0, padded = 0;
                for (int64_t kh = 0; kh < KH; kh++) {
                    int64_t ih = h0 + kh * DH;
                    for (int64_t kw = 0; kw < KW; kw++) {
                        int64_t iw = w0 + kw * DW;
                        if (ih >= -PT && ih < HP && iw >= -PL && iw < WP) padded++;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        float v = x[ih * W + iw];
                        if (v > m) m = v;
                        s += v;
                        cnt++;
                    }
                }
                if (n->op == OP_MAXPOOL)
                    y[oh * OW + ow] = m;
                else
                    y[oh * OW + ow] = s / (float)(n->count_include_pad ? padded : (cnt ? cnt : 1));
            }
    }
}

static void s_pool(cnd_onnx_t *g, s_node_t *n, int B)
{
    const s_value_t *xv = &g->v[n->in[0]];
    s_pool_job j = {g,
                    n,
                    cnd_onnx_data(g, n->out[0]),
                    cnd_onnx_data(g, n->in[0]),
                    (long)(xv->dims[0] * xv->dims[1]),
                    0};
    const int64_t *k = n->kernel, *st = n->strides, *p = n->pads;
    j.pool2 = n->op == OP_MAXPOOL && k[0] == 2 && k[1] == 2 && st[0] == 2 && st[1] == 2 &&
              n->dil[0] == 1 && n->dil[1] == 1 && !p[0] && !p[1] && !p[2] && !p[3] &&
              g->v[n->out[0]].dims[2] == xv->dims[2] / 2 &&
              g->v[n->out[0]].dims[3] == xv->dims[3] / 2 && xv->dims[3] / 2 <= S_POOL2_MAX;
    int T = cnd_pool_threads();
    cnd_pool_run(s_pool_task, &j, T > 1 ? 4 * T : 1);
}

/* ---- Gemm and MatMul ---- */

typedef struct {
    float *y;
    const float *a, *b;
    int M, N, K, ta, tb;
    float alpha, beta;
} s_gemm_job;

static void s_gemm_task(void *ctx, int task, int ntasks)
{
    const s_gemm_job *j = ctx;
    long m0, m1;
    cnd_pool_range(j->M, ntasks, task, &m0, &m1);
    if (m1 <= m0) return;
    /* rows m0..m1 of A' (A is M x K, or K x M when transposed) */
    const float *a = j->ta ? j->a + m0 : j->a + (size_t)m0 * j->K;
    cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans,
                (int)(m1 - m0), j->N, j->K, j->alpha, a, j->ta ? j->M : j->K, j->b,
                j->tb ? j->K : j->N, j->beta, j->y + (size_t)m0 * j->N, j->N);
}

static void s_gemm_run(s_gemm_job *j)
{
    int T = cnd_pool_threads();
    cnd_pool_run(s_gemm_task, j, j->M >= 2 * T ? T : 1);
}

static void s_gemm(cnd_onnx_t *g, s_node_t *n)
{
    const s_value_t *av = &g->v[n->in[0]], *bv = &g->v[n->in[1]];
    float *y = cnd_onnx_data(g, n->out[0]);
    s_gemm_job j = {.y = y, .a = cnd_onnx_data(g, n->in[0]), .b = cnd_onnx_data(g, n->in[1])};
    if (n->op == OP_GEMM) {
        j.M = (int)av->dims[n->trans_a];
        j.K = (int)av->dims[!n->trans_a];
        j.N = (int)bv->dims[!n->trans_b];
        j.ta = n->trans_a;
        j.tb = n->trans_b;
        j.alpha = n->alpha;
        j.beta = 0.0f;
        if (n->n_in > 2 && n->in[2] >= 0) { /* y = beta * C broadcast, then += */
            const s_value_t *cv = &g->v[n->in[2]];
            const float *c = cnd_onnx_data(g, n->in[2]);
            int64_t cm = cv->rank == 2 ? cv->dims[0] : 1,
                    cn = cv->rank >= 1 ? cv->dims[cv->rank - 1] : 1;
            for (int m = 0; m < j.M; m++)
                for (int k = 0; k < j.N; k++)
                    y[(size_t)m * j.N + k] =
                        n->beta * c[(cm == 1 ? 0 : (size_t)m * cn) + (cn == 1 ? 0 : (size_t)k)];
            j.beta = 1.0f;
        }
        s_gemm_run(&j);
        return;
    }
    j.K = (int)av->dims[av->rank - 1];
    j.N = (int)bv->dims[bv->rank - 1];
    j.alpha = 1.0f;
    if (bv->rank == 2) { /* all leading dimensions of A as rows */
        j.M = (int)(av->n / j.K);
        s_gemm_run(&j);
        return;
    }
    int64_t M = av->dims[av->rank - 2], batches = av->n / (M * j.K);
    for (int64_t q = 0; q < batches; q++) {
        s_gemm_job jq = j;
        jq.M = (int)M;
        jq.a = j.a + (size_t)(q * M * j.K);
        jq.b = j.b + (size_t)(q * j.K * j.N);
        jq.y = y + (size_t)(q * M * j.N);
        s_gemm_run(&jq);
    }
}

/* ---- broadcasting binary ops (float at run time; int64 or float when folding) ---- */

/* Strides of a (rank ra, dims da) for the output's rank r, 0 where it broadcasts. */
static void s_bstrides(int64_t *st, const int64_t *da, int ra, const int64_t *d, int r)
{
    int64_t s = 1;
    for (int i = r - 1; i >= 0; i--) {
        int ia = i - (r - ra);
        int64_t di = ia >= 0 ? da[ia] : 1;
        st[i] = di == 1 && d[i] != 1 ? 0 : s;
        s *= di;
    }
}

static double s_apply(s_op_t op, double a, double b)
{
    switch (op) {
    case OP_ADD: return a + b;
    case OP_SUB: return a - b;
    case OP_MUL: return a * b;
    default: return a / b;
    }
}

static float s_applyf(s_op_t op, float a, float b)
{
    switch (op) {
    case OP_ADD: return a + b;
    case OP_SUB: return a - b;
    case OP_MUL: return a * b;
    default: return a / b;
    }
}

static int64_t s_applyi(s_op_t op, int64_t a, int64_t b)
{
    /* wrap-around arithmetic on shape values; a division by zero or overflow gives 0 */
    uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
    switch (op) {
    case OP_ADD: return (int64_t)(ua + ub);
    case OP_SUB: return (int64_t)(ua - ub);
    case OP_MUL: return (int64_t)(ua * ub);
    default: return b == 0 || (a == INT64_MIN && b == -1) ? 0 : a / b;
    }
}

static void s_binary(const cnd_onnx_t *g, const s_node_t *n, void *out, const void *pa,
                     const void *pb, int is_int)
{
    const s_value_t *av = &g->v[n->in[0]], *bv = &g->v[n->in[1]], *yv = &g->v[n->out[0]];
    int r = yv->rank;
    if (r == 0 || (!is_int && av->n == yv->n && bv->n == yv->n)) { /* same shape */
        for (int64_t i = 0; i < yv->n; i++) {
            if (is_int)
                ((int64_t *)out)[i] =
                    s_applyi(n->op, ((const int64_t *)pa)[i], ((const int64_t *)pb)[i]);
            else
                ((float *)out)[i] = s_applyf(n->op, ((const float *)pa)[i], ((const float *)pb)[i]);
        }
        return;
    }
    int64_t sa[CND_ONNX_MAX_RANK], sb[CND_ONNX_MAX_RANK], idx[CND_ONNX_MAX_RANK] = {0};
    s_bstrides(sa, av->dims, av->rank, yv->dims, r);
    s_bstrides(sb, bv->dims, bv->rank, yv->dims, r);
    int64_t L = yv->dims[r - 1], rows = L ? yv->n / L : 0, oa = 0, ob = 0;
    for (int64_t row = 0; row < rows; row++) {
        size_t o = (size_t)(row * L);
        if (is_int) {
            for (int64_t k = 0; k < L; k++)
                ((int64_t *)out)[o + k] = s_applyi(n->op, ((const int64_t *)pa)[oa + k * sa[r - 1]],
                                                   ((const int64_t *)pb)[ob + k * sb[r - 1]]);
        } else {
            float *y = (float *)out + o;
            const float *a = (const float *)pa + oa, *b = (const float *)pb + ob;
            int64_t xa = sa[r - 1], xb = sb[r - 1];
            if (n->op == OP_ADD && xa == 1 && xb == 0)
                for (int64_t k = 0; k < L; k++) y[k] = a[k] + b[0];
            else if (n->op == OP_MUL && xa == 1 && xb == 0)
                for (int64_t k = 0; k < L; k++) y[k] = a[k] * b[0];
            else
                for (int64_t k = 0; k < L; k++) y[k] = s_applyf(n->op, a[k * xa], b[k * xb]);
        }
        for (int i = r - 2; i >= 0; i--) { /* next row: odometer over dims[0..r-1) */
            idx[i]++;
            oa += sa[i];
            ob += sb[i];
            if (idx[i] < yv->dims[i]) break;
            oa -= sa[i] * idx[i];
            ob -= sb[i] * idx[i];
            idx[i] = 0;
        }
    }
    (void)s_apply;
}

/* ---- element-wise, normalisation, softmax ---- */

static void s_unary(cnd_onnx_t *g, s_node_t *n)
{
    const float *x = cnd_onnx_data(g, n->in[0]);
    float *y = cnd_onnx_data(g, n->out[0]);
    int64_t N = g->v[n->out[0]].n;
    float a = n->alpha, b = n->beta, lo = n->clip_lo, hi = n->clip_hi;
    switch (n->op) {
    case OP_RELU:
        for (int64_t i = 0; i < N; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case OP_CLIP:
        for (int64_t i = 0; i < N; i++) y[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
        break;
    case OP_LEAKYRELU:
        for (int64_t i = 0; i < N; i++) y[i] = x[i] >= 0.0f ? x[i] : a * x[i];
        break;
    case OP_SIGMOID:
        for (int64_t i = 0; i < N; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case OP_HARDSIGMOID:
        for (int64_t i = 0; i < N; i++) {
            float v = a * x[i] + b;
            y[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
        }
        break;
    case OP_HARDSWISH:
        for (int64_t i = 0; i < N; i++) {
            float v = x[i] / 6.0f + 0.5f;
            y[i] = x[i] * (v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v);
        }
        break;
    case OP_TANH:
        for (int64_t i = 0; i < N; i++) y[i] = tanhf(x[i]);
        break;
    default: break;
    }
}

static void s_batchnorm(cnd_onnx_t *g, s_node_t *n)
{
    // y and x are (B, C, ...); scale, bias, mean, var are (C)
    const s_value_t *xv = &g->v[n->in[0]];
    const float *x = cnd_onnx_data(g, n->in[0]), *sc = g->v[n->in[1]].f, *bi = g->v[n->in[2]].f;
    const float *mu = g->v[n->in[3]].f, *var = g->v[n->in[4]].f;
    float *y = cnd_onnx_data(g, n->out[0]);
    int64_t C = xv->dims[1], inner = xv->n / (xv->dims[0] * C);
    for (int64_t b = 0; b < xv->dims[0]; b++)
        for (int64_t c = 0; c < C; c++) {
            float s = sc[c] / sqrtf(var[c] + n->eps), t = bi[c] - mu[c] * s;
            size_t o = (size_t)((b * C + c) * inner);
            for (int64_t i = 0; i < inner; i++) y[o + i] = x[o + i] * s + t;
        }
}

static void s_softmax(cnd_onnx_t *g, s_node_t *n)
{
    const s_value_t *xv = &g->v[n->in[0]];
    const float *x = cnd_onnx_data(g, n->in[0]);
    float *y = cnd_onnx_data(g, n->out[0]);
    int a = (int)(n->axis < 0 ? n->axis + xv->rank : n->axis);
    int64_t outer = 1, len = 1, inner = 1;
    for (int i = 0; i < xv->rank; i++) {
        if (i < a)
            outer *= xv->dims[i];
        else if (i == a || g->opset < 13) /* before 13: everything from axis on, as 2-D */
            len *= xv->dims[i];
        else
            inner *= xv->dims[i];
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            const float *xs = x + o * len * inner + in;
            float *ys = y + o * len * inner + in;
            float m = -FLT_MAX;
            for (int64_t k = 0; k < len; k++) m = xs[k * inner] > m ? xs[k * inner] : m;
            double s = 0.0;
            for (int64_t k = 0; k < len; k++) s += ys[k * inner] = expf(xs[k * inner] - m);
            float inv = (float)(1.0 / s);
            for (int64_t k = 0; k < len; k++) ys[k * inner] *= inv;
        }
}

/* ---- data movement (any element size) ---- */

static void s_transpose(const cnd_onnx_t *g, const s_node_t *n, void *out, const void *in,
                        size_t es)
{
    const s_value_t *xv = &g->v[n->in[0]], *yv = &g->v[n->out[0]];
    int r = xv->rank;
    int64_t xs[CND_ONNX_MAX_RANK], st[CND_ONNX_MAX_RANK], idx[CND_ONNX_MAX_RANK] = {0}, s = 1;
    for (int i = r - 1; i >= 0; i--) {
        xs[i] = s;
        s *= xv->dims[i];
    }
    for (int i = 0; i < r; i++) st[i] = xs[n->perm[i]]; /* input stride of output axis i */
    int64_t off = 0;
    for (int64_t k = 0; k < yv->n; k++) {
        memcpy((char *)out + (size_t)k * es, (const char *)in + (size_t)off * es, es);
        for (int i = r - 1; i >= 0; i--) {
            idx[i]++;
            off += st[i];
            if (idx[i] < yv->dims[i]) break;
            off -= st[i] * idx[i];
            idx[i] = 0;
        }
    }
}

static void s_concat(cnd_onnx_t *g, const s_node_t *n, void *out, size_t es)
{
    const s_value_t *yv = &g->v[n->out[0]];
    int a = (int)(n->axis < 0 ? n->axis + yv->rank : n->axis);
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < a; i++) outer *= yv->dims[i];
    for (int i = a + 1; i < yv->rank; i++) inner *= yv->dims[i];
    size_t row = (size_t)(yv->dims[a] * inner) * es, pos = 0;
    for (int j = 0; j < n->n_in; j++) {
        const s_value_t *xv = &g->v[n->in[j]];
        const char *x = xv->known ? (xv->is_int ? (const char *)xv->i : (const char *)xv->f)
                                  : (const char *)cnd_onnx_data(g, n->in[j]);
        size_t len = (size_t)(xv->dims[a] * inner) * es;
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)out + (size_t)o * row + pos, x + (size_t)o * len, len);
        pos += len;
    }
}

static void s_gather(const cnd_onnx_t *g, const s_node_t *n, void *out, const void *in, size_t es)
{
    const s_value_t *xv = &g->v[n->in[0]], *iv = &g->v[n->in[1]];
    int a = (int)(n->axis < 0 ? n->axis + xv->rank : n->axis);
    int64_t outer = 1, inner = 1, D = xv->dims[a];
    for (int i = 0; i < a; i++) outer *= xv->dims[i];
    for (int i = a + 1; i < xv->rank; i++) inner *= xv->dims[i];
    size_t blk = (size_t)inner * es;
    char *o = out;
    for (int64_t p = 0; p < outer; p++)
        for (int64_t k = 0; k < iv->n; k++) {
            int64_t ix = iv->i[k] < 0 ? iv->i[k] + D : iv->i[k];
            memcpy(o, (const char *)in + (size_t)(p * D + ix) * blk, blk);
            o += blk;
        }
}

static int64_t s_to_int(double v, int to)
{
    if (to == 9) return v != 0.0;
    double lo = to == 6 ? -2147483648.0 : -9.2e18, hi = to == 6 ? 2147483647.0 : 9.2e18;
    if (!(v == v)) return 0;
    return (int64_t)(v < lo ? lo : v > hi ? hi : v);
}

int cnd_onnx_fold(cnd_onnx_t *g, s_node_t *n)
{
    s_value_t *y = &g->v[n->out[0]], *x = &g->v[n->in[0]];
    size_t cnt = (size_t)(y->n ? y->n : 1);
    if (y->is_int ? !(y->i = malloc(cnt * 8)) : !(y->f = malloc(cnt * 4))) return CND_ENOMEM;
    void *out = y->is_int ? (void *)y->i : (void *)y->f;
    const void *in = x->is_int ? (const void *)x->i : (const void *)x->f;
    size_t es = x->is_int ? 8 : 4;
    switch (n->op) {
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV: {
        const s_value_t *b = &g->v[n->in[1]];
        s_binary(g, n, out, in, b->is_int ? (const void *)b->i : (const void *)b->f, y->is_int);
        return 0;
    }
    case OP_TRANSPOSE: s_transpose(g, n, out, in, es); return 0;
    case OP_CONCAT: s_concat(g, n, out, es); return 0;
    case OP_GATHER: s_gather(g, n, out, in, es); return 0;
    case OP_CAST:
        for (int64_t k = 0; k < y->n; k++) {
            double v = x->is_int ? (double)x->i[k] : (double)x->f[k];
            if (y->is_int)
                y->i[k] = s_to_int(v, n->to);
            else
                y->f[k] = (float)v;
        }
        return 0;
    default: /* reshapes and identities: the same elements */
        memcpy(out, in, (size_t)y->n * es);
        return 0;
    }
}

void cnd_onnx_exec(cnd_onnx_t *g, s_node_t *n, int B)
{
    switch (n->op) {
    case OP_CONV: s_conv(g, n, B); break;
    case OP_MAXPOOL:
    case OP_AVGPOOL:
    case OP_GAP: s_pool(g, n, B); break;
    case OP_GEMM:
    case OP_MATMUL: s_gemm(g, n); break;
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV:
        s_binary(g, n, cnd_onnx_data(g, n->out[0]), cnd_onnx_data(g, n->in[0]),
                 cnd_onnx_data(g, n->in[1]), 0);
        break;
    case OP_BATCHNORM: s_batchnorm(g, n); break;
    case OP_SOFTMAX: s_softmax(g, n); break;
    case OP_TRANSPOSE:
        s_transpose(g, n, cnd_onnx_data(g, n->out[0]), cnd_onnx_data(g, n->in[0]), 4);
        break;
    case OP_CONCAT: s_concat(g, n, cnd_onnx_data(g, n->out[0]), 4); break;
    default: s_unary(g, n); break;
    }
}

int cnd_onnx_run(cnd_onnx_t *g, const float *x, int B, const float **logits)
{
    int rc;
    if (g->plan_B != B || g->plan_threads != cnd_pool_threads())
        if ((rc = cnd_onnx_plan(g, B))) return rc;
    g->x = x;
    for (int k = 0; k < g->n_nodes; k++) {
        s_node_t *n = &g->nodes[k];
        if (!n->folded && !n->is_alias) cnd_onnx_exec(g, n, B);
    }
    *logits = cnd_onnx_data(g, g->output);
    g->x = NULL;
    return 0;
}
