/*
 * rt_internal.h: the runtime's in-arena structures and the kernel table, shared by the loader,
 * the driver and the kernels. Not installed for users; cnd_rt.h is the public API.
 *
 * A loaded model is: one cnd_rt_model struct, n_layers cnd_rt_layer structs, per-channel int32
 * constants (effective biases, multipliers, shifts), two ping-pong activation buffers of the
 * largest activation, and one scratch buffer (conv patches, unpacked int4 weight rows); all
 * 64-byte aligned inside the caller's arena. Weights stay in the artifact.
 */
#ifndef CND_RT_INTERNAL_H
#define CND_RT_INTERNAL_H

#include "cnd_rt.h"
#include "cnd_rt_requant.h"

#define RT_CACHELINE 64
#define RT_PATCHES   4 /* conv patches gathered at once (fast paths reuse weight loads) */

/* Builds with x86 fast paths reserve scratch for them (several patches, unpacked int4 rows,
 * int32 sums); elsewhere only the reference's single conv patch is reserved, so a
 * microcontroller's arena holds nothing it does not use. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RT_FAST_PATHS 1
#else
#define RT_FAST_PATHS 0
#endif

typedef struct cnd_rt_layer {
    uint8_t op;             /* cnd_rt_op_t */
    uint8_t wbits;          /* 8 or 4 (dense/conv2d) */
    int8_t act_min, act_max;/* output clamp (fused ReLU raises act_min to the zero point) */
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
    /* x86 builds, conv2d only: weights repacked at load for the VNNI kernel, blocks of 16
     * output channels x 4 consecutive k: byte ((b * G + g) * 16 + j) * 4 + t holds
     * w[16 b + j][4 g + t] (zero past OC or K), G = ceil(K / 4). NULL elsewhere. */
    const int8_t *wpack;
} cnd_rt_layer_t;

#define RT_BC_TILE 8 /* pixels per pass of the packed-weight VNNI conv kernel */

typedef void (*rt_layer_fn)(int8_t *out, const int8_t *in, const cnd_rt_layer_t *l,
                            int8_t *scratch);

typedef struct {
    rt_layer_fn dense, conv2d, maxpool;
} rt_kernels_t;

struct cnd_rt_model {
    const uint8_t *art;       /* the artifact */
    uint32_t file_len, body_len;
    uint16_t c, h, w;         /* input shape */
    int32_t in_zp;
    uint32_t in_scale_bits;
    const int8_t *lut;        /* c x 256 */
    const uint8_t *norm;      /* f32 mean[c], f32 std[c] */
    uint32_t n_layers;
    cnd_rt_layer_t *layers;
    uint32_t n_classes;
    uint32_t out_scale_bits;  /* the logits' scale (binary32 bits) */
    const uint8_t *labels;    /* LABL payload after its count, or NULL */
    uint32_t n_labels;
    const uint8_t *tests;     /* TEST vectors */
    uint32_t n_tests, test_kind, test_in, test_out;
    const uint8_t *trailer;
    int8_t *buf[2];           /* ping-pong activations */
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

/* Gathers the K-byte patch for output pixel (oh, ow) of a conv layer into dst, using the input
 * zero point for padding. Shared by all kernel sets. */
void cnd_rt_conv_patch(int8_t *dst, const int8_t *in, const cnd_rt_layer_t *l, int oh, int ow);

#endif
