/*
 * layer_pool.c: max pooling, average pooling and global average pooling.
 *
 * Windows are square, without padding; an output covers input rows [oh*S, oh*S+K). Pooling
 * works plane by plane, so it is the same code for NCHW and CBHW inputs (layer.h). Max
 * pooling records where each maximum came from (a flat input index, or for 2x2 windows that
 * tile the plane a one-byte code) so the backward pass routes the gradient without
 * recomputing (first maximum wins on ties, as in PyTorch).
 */
#include "layer.h"
#include "error.h"
#include "pool.h"

#include <float.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static int s_pool_shape(cnd_layer_t *l)
{
    int K = l->p.pool.k, S = l->p.pool.stride;
    if (K <= 0 || S <= 0) return cnd_errf(CND_EINVAL, "pool: window and stride must be positive");
    if (l->in.h < K || l->in.w < K)
        return cnd_errf(CND_EINVAL, "pool: window %d larger than input %dx%d", K, l->in.h, l->in.w);
    l->out = (cnd_shape_t){l->in.c, (l->in.h - K) / S + 1, (l->in.w - K) / S + 1};
    l->n_params = l->n_weights = l->n_state = 0;
    return 0;
}

static void s_none_init(cnd_layer_t *l, float *w, float *state, cnd_rng_t *rng) {}

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

/* 2x2 windows with stride 2 over even planes tile the input exactly; these get a vector path
 * that records, per output, which of its four inputs won as one byte (0 top-left, 1 top-right,
 * 2 bottom-left, 3 bottom-right) instead of a flat index: a quarter of the memory traffic. */
static int s_tiles2(const cnd_layer_t *l)
{
    return l->p.pool.k == 2 && l->p.pool.stride == 2 && l->in.h % 2 == 0 && l->in.w % 2 == 0;
}

void cnd_maxpool2_row(float *dst, uint8_t *code, const float *r0, const float *r1, int OW)
{
    int ow = 0;
#if defined(__SSE2__)
    const __m128i k1 = _mm_set1_epi32(1), k2 = _mm_set1_epi32(2), k3 = _mm_set1_epi32(3);
    /* The last step overlaps the one before when OW is not a multiple of 4: windows are
     * recomputed with the same result, so no scalar tail is needed once OW >= 4. */
    for (int next = 0; OW >= 4 && next < OW; next = ow + 4) {
        ow = next + 4 <= OW ? next : OW - 4;
        __m128 x0 = _mm_loadu_ps(r0 + 2 * ow), x1 = _mm_loadu_ps(r0 + 2 * ow + 4);
        __m128 y0 = _mm_loadu_ps(r1 + 2 * ow), y1 = _mm_loadu_ps(r1 + 2 * ow + 4);
        __m128 a = _mm_shuffle_ps(x0, x1, _MM_SHUFFLE(2, 0, 2, 0));
        __m128 b = _mm_shuffle_ps(x0, x1, _MM_SHUFFLE(3, 1, 3, 1));
        __m128 c = _mm_shuffle_ps(y0, y1, _MM_SHUFFLE(2, 0, 2, 0));
        __m128 d = _mm_shuffle_ps(y0, y1, _MM_SHUFFLE(3, 1, 3, 1));
        __m128 m = _mm_max_ps(_mm_max_ps(a, b), _mm_max_ps(c, d));
        __m128i ea = _mm_castps_si128(_mm_cmpeq_ps(a, m));
        __m128i eb = _mm_castps_si128(_mm_cmpeq_ps(b, m));
        __m128i ec = _mm_castps_si128(_mm_cmpeq_ps(c, m));
        /* code = ea ? 0 : eb ? 1 : ec ? 2 : 3, built from the last choice back */
        __m128i k = _mm_or_si128(_mm_and_si128(ec, k2), _mm_andnot_si128(ec, k3));
        k = _mm_or_si128(_mm_and_si128(eb, k1), _mm_andnot_si128(eb, k));
        k = _mm_andnot_si128(ea, k);
        _mm_storeu_ps(dst + ow, m);
        k = _mm_packs_epi32(k, k);
        k = _mm_packus_epi16(k, k);
        int32_t four = _mm_cvtsi128_si32(k);
        memcpy(code + ow, &four, 4);
    }
    if (OW >= 4) return;
#endif
    for (; ow < OW; ow++) {
        float best = r0[2 * ow];
        uint8_t k = 0;
        if (r0[2 * ow + 1] > best) best = r0[2 * ow + 1], k = 1;
        if (r1[2 * ow] > best) best = r1[2 * ow], k = 2;
        if (r1[2 * ow + 1] > best) best = r1[2 * ow + 1], k = 3;
        dst[ow] = best;
        code[ow] = k;
    }
}

void cnd_maxpool2_row_back(float *d0, float *d1, const float *g, const float *gate,
                           const uint8_t *code, int OW)
{
    int ow = 0;
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128();
    const __m128i k1 = _mm_set1_epi32(1), k2 = _mm_set1_epi32(2), k3 = _mm_set1_epi32(3);
    for (int next = 0; OW >= 4 && next < OW; next = ow + 4) { /* overlapping, as above */
        ow = next + 4 <= OW ? next : OW - 4;
        int32_t four;
        memcpy(&four, code + ow, 4);
        __m128i k = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(four), zero), zero);
        __m128 v = _mm_loadu_ps(g + ow);
        if (gate) v = _mm_and_ps(v, _mm_cmpgt_ps(_mm_loadu_ps(gate + ow), _mm_setzero_ps()));
        __m128 a = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(k, zero)), v);
        __m128 b = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(k, k1)), v);
        __m128 c = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(k, k2)), v);
        __m128 d = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(k, k3)), v);
        _mm_storeu_ps(d0 + 2 * ow, _mm_unpacklo_ps(a, b));
        _mm_storeu_ps(d0 + 2 * ow + 4, _mm_unpackhi_ps(a, b));
        _mm_storeu_ps(d1 + 2 * ow, _mm_unpacklo_ps(c, d));
        _mm_storeu_ps(d1 + 2 * ow + 4, _mm_unpackhi_ps(c, d));
    }
    if (OW >= 4) return;
#endif
    for (; ow < OW; ow++) {
        float v = !gate || gate[ow] > 0.0f ? g[ow] : 0.0f;
        int k = code[ow];
        d0[2 * ow] = k == 0 ? v : 0.0f;
        d0[2 * ow + 1] = k == 1 ? v : 0.0f;
        d1[2 * ow] = k == 2 ? v : 0.0f;
        d1[2 * ow + 1] = k == 3 ? v : 0.0f;
    }
}

static void s_max_forward_task(void *ctx, int task, int ntasks)
{
    // out is (B,C,OH,OW), in is (B,C,H,W); argmax is (B,C,OH,OW): flat indices into in, or
    // window codes (bytes) when s_tiles2()
    const s_job *job = ctx;
    cnd_layer_t *l = job->l;
    const float *in = job->in;
    float *out = job->out;
    int H = l->in.h, W = l->in.w, K = l->p.pool.k, S = l->p.pool.stride;
    int OH = l->out.h, OW = l->out.w;
    long p0, p1;
    cnd_pool_range((long)job->B * l->in.c, ntasks, task, &p0, &p1);
    if (s_tiles2(l)) {
        size_t ohw = (size_t)OH * OW;
        uint8_t *codes = (uint8_t *)l->argmax;
        for (size_t pl = (size_t)p0; pl < (size_t)p1; pl++)
            for (int oh = 0; oh < OH; oh++) {
                const float *r0 = in + pl * H * W + (size_t)(2 * oh) * W;
                cnd_maxpool2_row(out + pl * ohw + (size_t)oh * OW,
                                 codes + pl * ohw + (size_t)oh * OW, r0, r0 + W, OW);
            }
        return;
    }
    for (size_t pl = (size_t)p0; pl < (size_t)p1; pl++) {
        const float *src = in + pl * H * W;
        float *dst = out + pl * OH * OW;
        int32_t *am = l->argmax + pl * OH * OW;
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

static void s_max_forward(cnd_layer_t *l, float *out, const float *in, const float *w, float *state,
                          float *work, int B, int train)
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
    if (s_tiles2(l)) {
        int W = l->in.w, OH = l->out.h, OW = l->out.w;
        const uint8_t *codes = (const uint8_t *)l->argmax;
        for (size_t pl = (size_t)p0; pl < (size_t)p1; pl++)
            for (int oh = 0; oh < OH; oh++) {
                float *r0 = j->din + pl * hw + (size_t)(2 * oh) * W;
                cnd_maxpool2_row_back(r0, r0 + W, j->dout + pl * ohw + (size_t)oh * OW, NULL,
                                      codes + pl * ohw + (size_t)oh * OW, OW);
            }
        return;
    }
    memset(j->din + (size_t)p0 * hw, 0, (size_t)(p1 - p0) * hw * sizeof(float));
    for (size_t i = (size_t)p0 * ohw; i < (size_t)p1 * ohw; i++) j->din[l->argmax[i]] += j->dout[i];
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

static void s_avg_forward(cnd_layer_t *l, float *out, const float *in, const float *w, float *state,
                          float *work, int B, int train)
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

static void s_gap_forward(cnd_layer_t *l, float *out, const float *in, const float *w, float *state,
                          float *work, int B, int train)
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

const cnd_layer_ops_t cnd_layer_maxpool_ops = {
    "maxpool", s_pool_shape, s_none_init, s_max_forward, s_max_backward, s_no_macs, s_max_mem};
const cnd_layer_ops_t cnd_layer_avgpool_ops = {
    "avgpool", s_pool_shape, s_none_init, s_avg_forward, s_avg_backward, s_no_macs, s_no_mem};
const cnd_layer_ops_t cnd_layer_gap_ops = {"gap",          s_gap_shape, s_none_init, s_gap_forward,
                                           s_gap_backward, s_no_macs,   s_no_mem};
