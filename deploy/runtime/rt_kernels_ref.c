/*
 * rt_kernels_ref.c: the scalar reference kernel of every operation.
 *
 * These define the runtime's results: each fast path must produce the same bits on every
 * input (tests/runtime/test_runtime_kernels.c checks it). They are written for clarity and
 * portability (C99, no platform assumptions, no floating point) and are what a Cortex-M runs.
 * Activations are HWC int8; dense and conv2d weights are rows of K int8 (or packed int4) per output
 * channel, conv2d rows in (kh, kw, c) order. Accumulation starts from the effective bias (bias -
 * z_in * sum w), so raw int8 inputs are multiplied directly and padding reads z_in.
 */
#include "rt_internal.h"

#include <string.h>

static int32_t s_dot(const int8_t *x, const cnd_rt_layer_t *l, uint32_t o)
{
    const uint8_t *row = l->w + (size_t)o * l->w_row;
    int32_t acc = l->bias[o];
    if (l->wbits == 8)
        for (uint32_t k = 0; k < l->K; k++) acc += (int32_t)x[k] * (int8_t)row[k];
    else
        for (uint32_t k = 0; k < l->K; k++) acc += (int32_t)x[k] * cnd_rt_w4(row, k);
    return acc;
}

static void s_dense(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l, int8_t *scratch)
{
    // out is (O), in is (K) flattened HWC, weight is (O, K)
    (void)scratch;
    for (uint32_t o = 0; o < l->out_c; o++)
        out[o] = cnd_rt_requant(s_dot(in, l, o), l->mult[o], l->shift[o], l->out_zp, l->act_min,
                                l->act_max);
}

void cnd_rt_conv_patch(int8_t *dst, const int8_t *in, const cnd_rt_layer_t *l, int oh, int ow)
{
    int C = l->in_c, H = l->in_h, W = l->in_w, K = l->k;
    int ih0 = oh * l->stride - l->pad, iw0 = ow * l->stride - l->pad;
    for (int i = 0; i < K; i++) {
        int ih = ih0 + i;
        if (ih >= 0 && ih < H && iw0 >= 0 && iw0 + K <= W) { /* whole kernel row inside */
            int8_t *d = dst + (size_t)i * K * C;
            const int8_t *s = in + ((size_t)ih * W + iw0) * C;
            size_t n = (size_t)K * C;
            if (n <= 16) /* short rows (one input channel): a call to memcpy costs more */
                for (size_t t = 0; t < n; t++) d[t] = s[t];
            else
                memcpy(d, s, n);
            continue;
        }
        for (int j = 0; j < K; j++) {
            int iw = iw0 + j;
            int8_t *d = dst + ((size_t)i * K + j) * C;
            int inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
            if (C == 1)
                d[0] = inside ? in[(size_t)ih * W + iw] : (int8_t)l->in_zp;
            else if (!inside)
                memset(d, (int8_t)l->in_zp, (size_t)C);
            else
                memcpy(d, in + ((size_t)ih * W + iw) * C, (size_t)C);
        }
    }
}

static void s_conv2d(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l, int8_t *scratch)
{
    // out is (OH, OW, OC), in is (H, W, C), weight is (OC, KH, KW, C)
    int8_t *patch = scratch;
    for (int oh = 0; oh < l->out_h; oh++)
        for (int ow = 0; ow < l->out_w; ow++) {
            cnd_rt_conv_patch(patch, in, l, oh, ow);
            int8_t *o = out + ((size_t)oh * l->out_w + ow) * l->out_c;
            for (uint32_t c = 0; c < l->out_c; c++)
                o[c] = cnd_rt_requant(s_dot(patch, l, c), l->mult[c], l->shift[c], l->out_zp,
                                      l->act_min, l->act_max);
        }
}

static void s_maxpool(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l, int8_t *scratch)
{
    // out is (OH, OW, C), in is (H, W, C)
    (void)scratch;
    int C = l->in_c, W = l->in_w, K = l->k, S = l->stride;
    for (int oh = 0; oh < l->out_h; oh++)
        for (int ow = 0; ow < l->out_w; ow++) {
            int8_t *o = out + ((size_t)oh * l->out_w + ow) * C;
            for (int c = 0; c < C; c++) {
                int8_t best = -128;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) {
                        int8_t v = in[((size_t)(oh * S + i) * W + (ow * S + j)) * C + c];
                        if (v > best) best = v;
                    }
                o[c] = best;
            }
        }
}

void cnd_rt_ref_avgpool(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l)
{
    // out is (OH, OW, C), in is (H, W, C); same scale and zero point
    int C = l->in_c, W = l->in_w, K = l->k, S = l->stride;
    for (int oh = 0; oh < l->out_h; oh++)
        for (int ow = 0; ow < l->out_w; ow++)
            for (int c = 0; c < C; c++) {
                int32_t sum = 0;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++)
                        sum += in[((size_t)(oh * S + i) * W + (ow * S + j)) * C + c];
                out[((size_t)oh * l->out_w + ow) * C + c] = (int8_t)cnd_rt_div_round(sum, K * K);
            }
}

void cnd_rt_ref_gap(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l)
{
    // out is (C), in is (H, W, C)
    int C = l->in_c;
    int32_t n = (int32_t)l->in_h * l->in_w;
    for (int c = 0; c < C; c++) {
        int32_t sum = 0;
        for (int32_t p = 0; p < n; p++) sum += in[(size_t)p * C + c];
        out[c] = (int8_t)cnd_rt_div_round(sum, n);
    }
}

void cnd_rt_ref_relu(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l)
{
    for (uint32_t i = 0; i < l->in_bytes; i++) {
        int8_t v = in[i];
        out[i] = v < l->act_min ? l->act_min : v > l->act_max ? l->act_max : v;
    }
}

void cnd_rt_ref_gconv(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l, int8_t *scratch)
{
    // out is (OH, OW, OC), in is (H, W, C), weight is (OC, KH, KW, C/G); output channel o reads
    // input channels [g * C/G, (g + 1) * C/G) of its group g = o / (OC/G). Direct: a depthwise
    // conv reads each input byte K*K times from cache; im2col would copy it that often.
    (void)scratch;
    int C = l->in_c, H = l->in_h, W = l->in_w, K = l->k, S = l->stride, P = l->pad;
    int cg = C / l->groups, og = l->out_c / l->groups;
    for (int oh = 0; oh < l->out_h; oh++)
        for (int ow = 0; ow < l->out_w; ow++) {
            int8_t *o = out + ((size_t)oh * l->out_w + ow) * l->out_c;
            for (int c = 0; c < l->out_c; c++) {
                const uint8_t *row = l->w + (size_t)c * l->w_row;
                int c0 = (c / og) * cg;
                int32_t acc = l->bias[c];
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) {
                        int ih = oh * S - P + i, iw = ow * S - P + j;
                        int inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
                        const int8_t *px = inside ? in + ((size_t)ih * W + iw) * C + c0 : NULL;
                        for (int t = 0; t < cg; t++) {
                            uint32_t k = (uint32_t)((i * K + j) * cg + t);
                            int32_t wv = l->wbits == 8 ? (int8_t)row[k] : cnd_rt_w4(row, k);
                            acc += (px ? (int32_t)px[t] : l->in_zp) * wv; /* padding: z_in */
                        }
                    }
                o[c] =
                    cnd_rt_requant(acc, l->mult[c], l->shift[c], l->out_zp, l->act_min, l->act_max);
            }
        }
}

void cnd_rt_ref_add(int8_t *out, const int8_t *a, const int8_t *b, const cnd_rt_layer_t *l)
{
    // out, a and b are (H, W, C)
    for (uint32_t i = 0; i < l->out_bytes; i++)
        out[i] = cnd_rt_add(a[i], b[i], l->in_zp, l->in2_zp, l->mult, l->shift, l->out_zp,
                            l->act_min, l->act_max);
}

void cnd_rt_ref_concat(int8_t *out, const int8_t *a, const int8_t *b, const cnd_rt_layer_t *l)
{
    // out is (H, W, C1 + C2), a is (H, W, C1), b is (H, W, C2)
    uint32_t n = (uint32_t)l->in_h * l->in_w, ca = l->in_c, cb = l->in2_c;
    for (uint32_t p = 0; p < n; p++) {
        int8_t *o = out + (size_t)p * (ca + cb);
        for (uint32_t c = 0; c < ca; c++)
            o[c] = cnd_rt_requant(a[(size_t)p * ca + c] - l->in_zp, l->mult[0], l->shift[0],
                                  l->out_zp, l->act_min, l->act_max);
        for (uint32_t c = 0; c < cb; c++)
            o[ca + c] = cnd_rt_requant(b[(size_t)p * cb + c] - l->in2_zp, l->mult[1], l->shift[1],
                                       l->out_zp, l->act_min, l->act_max);
    }
}

void cnd_rt_ref_lut(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l)
{
    for (uint32_t i = 0; i < l->out_bytes; i++) out[i] = (int8_t)l->w[in[i] + 128];
}

const rt_kernels_t cnd_rt_kernels_ref = {s_dense, s_conv2d,         s_maxpool,
                                         NULL,    cnd_rt_ref_gconv, cnd_rt_ref_add};
