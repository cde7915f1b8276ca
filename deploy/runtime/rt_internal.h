/*
 * rt_internal.h: the runtime's in-arena structures and the kernel table, shared by the loader,
 * the driver and the kernels. Not installed for users; cnd_rt.h is the public API.
 *
 * A loaded model is: one cnd_rt_model struct, n_layers cnd_rt_layer structs, per-channel int32
 * constants (effective biases, multipliers, shifts), one activation area in which the loader
 * plans every layer's output by liveness (rt_load.c, "Arena plan": a buffer is reused as soon
 * as its last reader has run, so the area is the peak live memory, not the sum), and one
 * scratch buffer (the reference's conv patch, unpacked int4 weight
 * rows, the padded input copy of the direct conv kernels); all 64-byte aligned inside the
 * caller's arena.
 * Weights stay in the artifact; x86 builds add conv weights repacked for VNNI and per-block
 * requantization constants (rt_rq16_t).
 *
 * Execution plan: s_run (rt_run.c) walks the layers; when the kernel set has a fused
 * conv2d + maxpool kernel and a conv2d is directly followed by a non-overlapping maxpool
 * (stride >= window), both run as one step that requantizes only the window maxima. That is
 * exact because requantization is monotone non-decreasing in the accumulator (multipliers are
 * >= 0, checked at load): max(requant(a), requant(b)) = requant(max(a, b)). Runs with a tap
 * callback never fuse, so every layer's output stays observable.
 */
#ifndef CND_RT_INTERNAL_H
#define CND_RT_INTERNAL_H

#include "cnd_rt.h"
#include "cnd_rt_requant.h"

#define RT_CACHELINE 64
#define RT_PATCHES   4 /* dense rows per pass of the x86 kernels (their int4 row buffers) */

/* Builds with x86 fast paths reserve scratch for them (padded conv input copies, unpacked int4
 * rows, int32 sums) and arena for repacked conv weights and requantization constants; elsewhere
 * only the reference's single conv patch is reserved, so a microcontroller's arena holds nothing it
 * does not use. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RT_FAST_PATHS 1
#else
#define RT_FAST_PATHS 0
#endif

typedef struct cnd_rt_layer {
    uint8_t op;              /* cnd_rt_op_t */
    uint8_t wbits;           /* 8 or 4 (dense/conv2d) */
    int8_t act_min, act_max; /* output clamp (fused ReLU raises act_min to the zero point) */
    uint16_t in_c, in_h, in_w, out_c, out_h, out_w;
    uint8_t k, stride, pad;
    int32_t in_zp, out_zp;
    uint32_t K;             /* dense: inputs per output; conv2d: k*k*in_c (patch length) */
    uint32_t w_row;         /* bytes per output channel's weight row: K or (K+1)/2 */
    const uint8_t *w;       /* out_c rows, in the artifact */
    const int32_t *bias;    /* bias - in_zp * sum_k w: accumulate raw x * w on top */
    const int32_t *bias_u8; /* bias - (in_zp + 128) * sum_k w: for unsigned (x + 128) inputs */
    const int32_t *mult;    /* Q31 multipliers */
    const int32_t *shift;   /* n: M = mult * 2^(-31-n) */
    uint32_t in_bytes, out_bytes; /* activation sizes */
    /* x86 builds, conv2d only: weights repacked at load for the direct VNNI kernel (the AVX2
     * one reads them too, sign-extending to int16). Each kernel
     * row kh holds k*C contiguous input bytes (HWC), split into grow = ceil(k*C/4) groups of 4
     * (the last zero-padded); group g = kh * grow + r covers row bytes 4r..4r+3. Output
     * channels form blocks of 16, blocks form passes of up to RT_VNNI_NB; within pass p (nb
     * blocks) the bytes for group g, block b, channel j, byte t are at
     * p * RT_VNNI_NB * G * 64 + (g * nb + b) * 64 + j * 4 + t, holding
     * w[16 (p RT_VNNI_NB + b) + j][kh][4r + t] (zero past OC or k*C). G = k * grow. */
    const int8_t *wpack;
    uint32_t grow;  /* groups of 4 bytes per kernel row (see wpack) */
    uint8_t lshift; /* some channel has shift < 0 (a left shift before the multiply) */
    /* x86 builds, dense and conv2d: requantization constants per block of 16 channels. */
    const struct rt_rq16 *rq;
    /* Graph artifacts (format version 2; a version-1 chain fills them as a chain). */
    uint8_t n_src;     /* 1, or 2 for add and concat */
    int8_t src[2];     /* producing layer of each input, -1 for the model input */
    uint16_t groups;   /* gconv: channel groups (in_c and out_c divisible by it) */
    uint16_t in2_c;    /* add/concat: channels of the second input */
    int32_t in2_zp;    /* add/concat: zero point of the second input */
    uint8_t n_readers; /* layers reading this one's output (0 for the last) */
    uint32_t act_off;  /* this layer's output in the activation area (planned) */
    const int32_t *wt; /* x86 builds, depthwise gconv: weights as int32 [kh][kw][c] */
} cnd_rt_layer_t;

#define RT_VNNI_NB      4 /* 16-channel blocks per pass of the direct VNNI conv */
#define RT_VNNI_PATCHES 8 /* most pixels per tile of the direct convs (patch mode's buffers) */

/* The direct conv kernels read a copy of the whole padded input (scratch: unsigned bytes for
 * VNNI, int16 for AVX2); when the padding would make that copy large compared with the input
 * (tiny images, wide padding) they gather per-pixel patches instead. The loader sizes scratch
 * with the same rule. */
static inline int cnd_rt_vnni_direct(uint32_t k, uint32_t c, uint32_t h, uint32_t w, uint32_t pad)
{
    (void)k;
    uint64_t padded = (uint64_t)(h + 2 * pad) * (w + 2 * pad) * c;
    return padded <= 4 * (uint64_t)h * w * c + 4096;
}

/* Requantization constants of 16 output channels for the AVX-512 kernels, precomputed at load
 * from bias_u8, mult and shift (n = max(shift, 0), ls = max(-shift, 0)). With p = x * mult
 * (x = acc + bias after the saturating left shift by ls), the documented result
 * RDBP(SRDHM(x, mult), n) equals floor((p + k1 - (p < -2^30 ? k2 : 0)) / 2^sh) where
 * k1 = 2^30 + 2^(30+n) and k2 = 2^31 for n > 0 (k1 = 2^30, k2 = 0 for n = 0) and sh = 31 + n:
 * SRDHM is floor((p + 2^30) / 2^31), RDBP(y, n) is floor((y + 2^(n-1) - [y < 0]) / 2^n), and
 * y < 0 exactly when p < -2^30; nested floors of divisions by 2^31 and 2^n are one floor of a
 * division by 2^(31+n). |p| < 2^62, so the sums fit in int64. The 64-bit values are split in
 * even and odd channels, matching the lanes of _mm512_mul_epi32. */
typedef struct rt_rq16 {
    int32_t bias[16]; /* bias_u8: the VNNI kernels accumulate unsigned (x + 128) inputs */
    int32_t mult[16];
    int32_t ls[16];
    int32_t pad_[16];
    int64_t k1[2][8], k2[2][8], sh[2][8]; /* [0]: channels 0, 2, ..., 14; [1]: 1, 3, ..., 15 */
} rt_rq16_t;

typedef void (*rt_layer_fn)(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                            int8_t *scratch);
/* conv2d l followed by maxpool p in one pass (see "Execution plan" above). */
typedef void (*rt_fused_fn)(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                            const cnd_rt_layer_t *p, int8_t *scratch);

/* add and concat: out from inputs a (the layer's first input) and b (its second). */
typedef void (*rt_merge_fn)(int8_t *out, const int8_t *a, const int8_t *b, const cnd_rt_layer_t *l);

typedef struct {
    rt_layer_fn dense, conv2d, maxpool;
    rt_fused_fn conv2d_maxpool; /* NULL: run the two layers separately */
    rt_layer_fn gconv;          /* grouped and depthwise conv2d (direct, no im2col) */
    rt_merge_fn add;            /* residual add, both inputs requantized to the output scale */
} rt_kernels_t;

struct cnd_rt_model {
    const uint8_t *art; /* the artifact */
    uint32_t file_len, body_len;
    uint16_t c, h, w; /* input shape */
    int32_t in_zp;
    uint32_t in_scale_bits;
    const int8_t *lut;   /* c x 256 */
    const uint8_t *norm; /* f32 mean[c], f32 std[c] */
    uint32_t n_layers;
    cnd_rt_layer_t *layers;
    uint32_t n_classes;
    uint32_t out_scale_bits; /* the logits' scale (binary32 bits) */
    const uint8_t *labels;   /* LABL payload after its count, or NULL */
    uint32_t n_labels;
    const uint8_t *tests; /* TEST vectors */
    uint32_t n_tests, test_kind, test_in, test_out;
    const uint8_t *trailer;
    int8_t *act;               /* activation area: layer i's output at act + layers[i].act_off */
    uint32_t in_off;           /* where cnd_rt_run_u8 and raw self-tests put the quantized input */
    size_t act_bytes, act_sum; /* planned activation area; sum of all activations */
    int8_t *scratch;
    size_t arena_bytes;
    size_t weight_bytes;
    uint64_t macs;
    cnd_rt_kernels_t kset;
    const rt_kernels_t *kern;
};

/* Kernel sets: the reference always exists; the x86 ones return NULL when not compiled. */
extern const rt_kernels_t cnd_rt_kernels_ref;
const rt_kernels_t *cnd_rt_kernels_x86(cnd_rt_kernels_t k);
int cnd_rt_cpu_has(cnd_rt_kernels_t k);

/* Reference kernels that have no fast variant. */
void cnd_rt_ref_avgpool(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l);
void cnd_rt_ref_gap(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l);
void cnd_rt_ref_relu(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l);
void cnd_rt_ref_gconv(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l, int8_t *scratch);
void cnd_rt_ref_add(int8_t *out, const int8_t *a, const int8_t *b, const cnd_rt_layer_t *l);
void cnd_rt_ref_concat(int8_t *out, const int8_t *a, const int8_t *b, const cnd_rt_layer_t *l);
void cnd_rt_ref_lut(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l);

/* 1 if gconv layer l is depthwise with one output per input channel (the fast kernels' case). */
static inline int cnd_rt_depthwise(const cnd_rt_layer_t *l)
{
    return l->groups == l->in_c && l->out_c == l->in_c;
}

/* Gathers the K-byte patch for output pixel (oh, ow) of a conv layer into dst, using the input
 * zero point for padding. Shared by all kernel sets. */
void cnd_rt_conv_patch(int8_t *dst, const int8_t *in, const cnd_rt_layer_t *l, int oh, int ow);

/* Runs layers [0, n) of the model on x exactly as cnd_rt_run_i8 does (fusing where the kernel
 * set can) and returns the output of layer n - 1, which lives in the arena. For tests that
 * compare a fused step's output with the reference; n must be in [1, n_layers]. */
const int8_t *cnd_rt_run_prefix(cnd_rt_model_t *m, const int8_t *x, uint32_t n);

/* Fills the requantization constants of layer l's ceil(out_c / 16) blocks from its bias_u8,
 * mult and shift (channels past out_c zero). */
void cnd_rt_rq16_fill(rt_rq16_t *rq, const cnd_rt_layer_t *l);

/* Requantizes out[c] = requant(acc[c] + bias_u8[c]) for the out_c channels of l with the
 * AVX-512 epilogue the VNNI kernels use (l->rq and lshift must be set). For tests; returns
 * CND_RT_EINVAL when this build or CPU has no VNNI kernels. */
int cnd_rt_vnni_requant(int8_t *out, const int32_t *acc, const cnd_rt_layer_t *l);

/* 1 if layers i and i + 1 run as one fused conv2d + maxpool step with the current kernels. */
int cnd_rt_fuses(const cnd_rt_model_t *m, uint32_t i);

#endif
