/*
 * cnd_rt_format.h: the byte layout of a `.cndq` integer model artifact, versions 1 and 2.
 *
 * Version 2 (graph models) differs from version 1 only inside LAYR entries: each entry names the
 * layers it reads (by index, earlier layers only), and the operations gconv, add, concat and lut
 * exist. A writer emits version 1 whenever the model is a chain of version-1 operations, so such
 * artifacts keep their bytes; the runtime loads both.
 *
 * This header is the single definition of the format: the runtime's loader (rt_load.c) and the
 * host's writer (compress/artifact.c) both use these constants, and docs/quantization.md walks
 * through it byte by byte. All integers are little-endian; every section starts at a multiple
 * of 16 bytes from the start of the file; padding and reserved bytes are zero and checked.
 *
 *   [0, body_len)                 header (64 bytes) then the sections INPT LABL LAYR DATA TEST
 *                                 META, each once and in this order
 *   [body_len, body_len + 32)     SHA-256 of bytes [0, body_len)
 *   [body_len + 32, file_len)     signature trailer (256 bytes), NOT covered by the digest;
 *                                 a signature covers bytes [0, body_len + 32), i.e. the body
 *                                 and its digest
 *
 * The runtime never writes into the artifact and never copies weights: the model it loads
 * points into the caller's buffer (flash on a microcontroller), and only activations and a few
 * per-channel constants live in the caller's arena.
 */
#ifndef CND_RT_FORMAT_H
#define CND_RT_FORMAT_H

#define CND_RT_MAGIC           "CNDQ"
#define CND_RT_VERSION         2 /* the newest version written and read */
#define CND_RT_VERSION_CHAIN   1 /* chains of the operations up to RELU */
#define CND_RT_HEADER_BYTES    64
#define CND_RT_SECTION_HDR     16 /* u32 tag, u32 payload length, 8 reserved bytes */
#define CND_RT_ALIGN           16 /* sections start and end on this boundary */
#define CND_RT_DIGEST_BYTES    32
#define CND_RT_TRAILER_BYTES   256
#define CND_RT_TRAILER_MAGIC   "CNDS"
#define CND_RT_TRAILER_VERSION 1
#define CND_RT_SIG_MAX         240         /* signature data bytes available in the trailer */
#define CND_RT_MAX_FILE        (64u << 20) /* 64 MiB: larger artifacts are refused */

/* Header field offsets. */
#define CND_RT_H_MAGIC   0  /* 4 bytes "CNDQ" */
#define CND_RT_H_VERSION 4  /* u16 = CND_RT_VERSION */
#define CND_RT_H_HDRLEN  6  /* u16 = 64 */
#define CND_RT_H_BODYLEN 8  /* u32: header + sections, multiple of 16 */
#define CND_RT_H_FILELEN 12 /* u32: body_len + 32 + 256 */
#define CND_RT_H_FLAGS   16 /* u32: 0 in version 1 */
#define CND_RT_H_NSECT   20 /* u16: 6 in version 1 */
/* bytes 22..63 reserved, zero */

/* Section tags: four ASCII bytes read as a little-endian u32. */
#define CND_RT_TAG(a, b, c, d)                                                                     \
    ((unsigned long)(a) | (unsigned long)(b) << 8 | (unsigned long)(c) << 16 |                     \
     (unsigned long)(d) << 24)
#define CND_RT_TAG_INPT  CND_RT_TAG('I', 'N', 'P', 'T')
#define CND_RT_TAG_LABL  CND_RT_TAG('L', 'A', 'B', 'L')
#define CND_RT_TAG_LAYR  CND_RT_TAG('L', 'A', 'Y', 'R')
#define CND_RT_TAG_DATA  CND_RT_TAG('D', 'A', 'T', 'A')
#define CND_RT_TAG_TEST  CND_RT_TAG('T', 'E', 'S', 'T')
#define CND_RT_TAG_META  CND_RT_TAG('M', 'E', 'T', 'A')
#define CND_RT_NSECTIONS 6

/* INPT payload: u16 C, u16 H, u16 W, u8 layout (0 = HWC), u8 0, i32 zero point, u32 scale
 * (f32 bits), f32 mean[C], f32 std[C], i8 lut[C][256]. Length 16 + 8C + 256C. */
#define CND_RT_INPT_FIXED 16
#define CND_RT_MAX_DIM    4096       /* any of C, H, W of any tensor */
#define CND_RT_MAX_ACT    (1u << 24) /* elements of any activation tensor */

/* LABL payload: u32 n (0 or n_classes), then n x { u8 len (1..63), len bytes, u8 0 }. */
#define CND_RT_LABEL_MAX 63

/* LAYR payload: u32 n_layers (1..64), 12 reserved bytes, then n_layers 64-byte entries. */
#define CND_RT_MAX_LAYERS  64
#define CND_RT_LAYER_BYTES 64
#define CND_RT_L_OP        0  /* u8 cnd_rt_op_t */
#define CND_RT_L_NSRC      3  /* v2: u8 inputs (1, or 2 for add/concat); v1: 0 */
#define CND_RT_L_FLAGS     1  /* u8: bit 0 = ReLU fused into the requantization clamp */
#define CND_RT_L_WBITS     2  /* u8: 8 or 4 for dense/conv2d, else 0 */
#define CND_RT_L_IN_C      4  /* u16 x3: input C, H, W */
#define CND_RT_L_OUT_C     10 /* u16 x3: output C, H, W */
#define CND_RT_L_K         16 /* u8 kernel or window */
#define CND_RT_L_STRIDE    17 /* u8 */
#define CND_RT_L_PAD       18 /* u8 zero padding (conv2d; value = input zero point) */
#define CND_RT_L_ACT_MIN   20 /* i8 output clamp low */
#define CND_RT_L_ACT_MAX   21 /* i8 output clamp high */
#define CND_RT_L_GROUPS    22 /* v2: u16 channel groups of a gconv, else 0; v1: 0 */
#define CND_RT_L_IN_ZP     24 /* i32 */
#define CND_RT_L_OUT_ZP    28 /* i32 */
#define CND_RT_L_IN_SCALE  32 /* u32 f32 bits (informational) */
#define CND_RT_L_OUT_SCALE 36 /* u32 f32 bits (informational) */
#define CND_RT_L_W_OFF     40 /* u32 offset in DATA payload */
#define CND_RT_L_W_LEN     44 /* u32 */
#define CND_RT_L_BIAS_OFF  48 /* u32: i32 bias[out_c], scale in_scale * w_scale[c] */
#define CND_RT_L_MULT_OFF  52 /* u32: i32 Q31 multiplier[out_c], in [0, 2^31) */
#define CND_RT_L_SHIFT_OFF 56 /* u32: i8 shift[out_c] n in [-31, 31], M = M0 * 2^-n */
#define CND_RT_L_SRC                                                                               \
    60 /* v2: u8 x2, input j's producer + 1 (0 = the model input; a                                \
        * layer reads only earlier layers); unused second one 0;                                   \
        * bytes 62..63 zero. v1: all four zero. */
#define CND_RT_L_FLAG_RELU 1u

typedef enum {
    CND_RT_OP_DENSE = 1,   /* out[o] = requant(sum_k (x[k] - zin) w[o][k] + b[o]) */
    CND_RT_OP_CONV2D = 2,  /* weights OHWI, activations HWC */
    CND_RT_OP_MAXPOOL = 3, /* keeps scale and zero point */
    CND_RT_OP_AVGPOOL = 4, /* keeps scale and zero point; rounds half away from zero */
    CND_RT_OP_GAP = 5,     /* global average pool, as AVGPOOL over the whole plane */
    CND_RT_OP_FLATTEN = 6, /* HWC order is already flat: no work */
    CND_RT_OP_RELU = 7,    /* clamp(x, act_min, act_max) on its own (not after dense/conv) */
    /* version 2 */
    CND_RT_OP_GCONV = 8,   /* grouped conv2d: out channel o reads the in_c/G channels of group
                            * o / (out_c/G); weights (out_c, k, k, in_c/G); depthwise: G = in_c */
    CND_RT_OP_ADD = 9,     /* out = zo + R2(R0((a - za) 2^20) + R1((b - zb) 2^20)), Rj the
                            * multiplier j of 3 in MULT/SHIFT (cnd_rt_requant.h, cnd_rt_add) */
    CND_RT_OP_CONCAT = 10, /* channels of a then of b, each requantized to the output:
                            * zo + Rj(x - zj) with multiplier j of 2 */
    CND_RT_OP_LUT = 11,    /* out[i] = table[in[i] + 128]: 256 i8 at W_OFF (hardswish, relu6
                            * with a new scale); W_LEN = 256 */
} cnd_rt_op_t;
#define CND_RT_OP_MAX_V1 CND_RT_OP_RELU
#define CND_RT_ADD_SHIFT 20 /* add: inputs scaled by 2^20 before their multipliers */

/* TEST payload: u32 n (0..64), u32 kind (0 = raw u8 HWC through the LUT, 1 = i8 HWC),
 * u32 in_bytes (C*H*W), u32 out_bytes (n_classes), then n x { input, expected i8 logits }. */
#define CND_RT_TEST_MAX    64
#define CND_RT_TEST_RAW_U8 0
#define CND_RT_TEST_I8     1

/* META payload: u32 n (<= 64), then n x { u16 klen (1..64), key, u16 vlen (<= 1024), value }. */
#define CND_RT_META_MAX 64

/* Trailer: "CNDS", u16 version 1, u16 scheme (0 = unsigned; others defined by crypto/),
 * u32 sig_len (<= 240), u32 0, then 240 bytes of signature data (sig_len used, rest zero). */
#define CND_RT_T_SCHEME  6
#define CND_RT_T_SIGLEN  8
#define CND_RT_T_SIGDATA 16

#endif
