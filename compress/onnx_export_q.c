/*
 * onnx_export_q.c: an integer artifact (.cndq) as an int8 ONNX graph (opset 13), in one of two
 * forms (docs/onnx.md, "Integer export"):
 *
 * - QDQ (default): integer weights and biases behind DequantizeLinear (per output channel,
 *   axis 0), float Conv / Gemm / pooling, and QuantizeLinear + DequantizeLinear with the
 *   artifact's scale and zero point at every quantization point. Runtimes fuse this into their
 *   own integer kernels (onnxruntime: QLinearConv and friends), which requantize with a float
 *   multiplier and round half to even, so logits are within one quantization step of ours.
 * - exact (`--qlinear`): integer operators only where the value matters. ConvInteger and
 *   MatMulInteger give the int32 accumulator, and the runtime's requantization
 *   (cnd_rt_requant: saturating left shift, SRDHM, RDBP, clamps) is spelled out in int64
 *   Mul / Add / Div / Where / Abs / Neg / Max / Min. ONNX integer Div truncates toward zero
 *   (C semantics, as onnxruntime implements it), which is what the runtime's SRDHM does after its
 *   nudge; RDBP is `sign(x) * ((|x| + 2^(n-1)) / 2^n)`. Average pooling sums with a depthwise
 *   float Conv of ones (integer sums below 2^24, exact) and divides half away from zero as the
 *   runtime does. The logits are the runtime's bits. QLinearConv / QLinearMatMul are not used:
 *   their float requantization cannot express these roundings.
 *
 * Both forms take the raw uint8 pixels the runtime takes (cnd_rt_run_u8), NCHW, and map them
 * through the artifact's LUT with a Gather, so the input quantization is the artifact's own. The
 * QDQ form outputs float logits (dequantized), the exact form the int8 logits.
 *
 * Layout: the runtime is HWC, ONNX NCHW. Conv weights go from OHWI to OIHW; dense columns from
 * the HWC order of their input to the CHW order an ONNX Flatten produces (the shape that was
 * flattened is tracked through flatten and relu layers). int4 weights are unpacked to int8
 * values in [-7, 7].
 *
 * Graph artifacts (version 2): every layer reads the values its LAYR entry names (the output
 * name, layout and zero point of each value are kept in s_q_t.v); grouped convolutions use the
 * `group` attribute; add and concat requantize each input as cnd_rt_add and the runtime's
 * concat do (exact) or work on dequantized floats (QDQ); lut is a Gather.
 *
 * The artifact is validated by the runtime loader before this runs (cmd_export.c), so offsets
 * and sources are trusted; an op this file does not know is refused naming it.
 */
#include "cnd_rt_format.h"
#include "cnd_rt_requant.h"
#include "error.h"
#include "onnx_graph.h"
#include "onnx_write.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_F32 ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT
#define S_I8  ONNX__TENSOR_PROTO__DATA_TYPE__INT8
#define S_U8  ONNX__TENSOR_PROTO__DATA_TYPE__UINT8
#define S_I32 ONNX__TENSOR_PROTO__DATA_TYPE__INT32
#define S_I64 ONNX__TENSOR_PROTO__DATA_TYPE__INT64

/* One LAYR entry, decoded. */
typedef struct {
    int op, relu, wbits, groups, nsrc, src[2]; /* src: producer + 1, 0 = the input */
    int ic, ih, iw, oc, oh, ow;
    int k, stride, pad, act_min, act_max;
    int32_t in_zp, out_zp;
    float in_s, out_s;
    const uint8_t *w, *bias, *mult, *shift; /* into DATA */
} s_layer_t;

/* A value of the graph: its name, layout and quantization. */
typedef struct {
    char name[64];
    int rank, fc, fh, fw, zp;
    float s;
} s_val_t;

typedef struct {
    cnd_onnxw_t e;
    int exact;
    char cur[64];                     /* the value the next layer reads */
    int rank;                         /* its rank: 4 (N, C, H, W) or 2 (N, F) */
    int fc, fh, fw;                   /* the (C, H, W) whose CHW flattening the rank-2 value is */
    char nm[96];                      /* scratch for names */
    s_val_t v[CND_RT_MAX_LAYERS + 1]; /* 0 = the quantized input, i = layer i's output */
} s_q_t;

static uint32_t s_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int s_u16(const uint8_t *p)
{
    return p[0] | p[1] << 8;
}

static float s_f32(const uint8_t *p)
{
    uint32_t u = s_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* "l<i>_<what>" in q->nm. */
static const char *s_n(s_q_t *q, int i, const char *what)
{
    snprintf(q->nm, sizeof q->nm, "l%d_%s", i, what);
    return q->nm;
}

/* A node with a generated output name "l<i>_<what>", which becomes q->cur. */
static Onnx__NodeProto *s_op(s_q_t *q, int i, const char *op, const char *what, const char **in,
                             int nin)
{
    char out[96];
    snprintf(out, sizeof out, "l%d_%s", i, what);
    Onnx__NodeProto *n = cnd_onnxw_node(&q->e, op, out, in, nin, out);
    strcpy(q->cur, out);
    return n;
}

/* Unary and binary steps on q->cur. */
static Onnx__NodeProto *s_op1(s_q_t *q, int i, const char *op, const char *what)
{
    char a[64];
    strcpy(a, q->cur);
    return s_op(q, i, op, what, (const char *[]){a}, 1);
}

static Onnx__NodeProto *s_op2(s_q_t *q, int i, const char *op, const char *what, const char *b)
{
    char a[64], bb[96];
    strcpy(a, q->cur);
    snprintf(bb, sizeof bb, "%s", b);
    return s_op(q, i, op, what, (const char *[]){a, bb}, 2);
}

static void s_cast(s_q_t *q, int i, const char *what, int to)
{
    cnd_onnxw_attr_ints(&q->e, s_op1(q, i, "Cast", what), "to", to, 0);
}

/* Per-channel int64 constant "l<i>_<what>" shaped for the layer's output. */
static const char *s_pc64(s_q_t *q, int i, const char *what, const int64_t *v, int oc, int conv)
{
    int64_t d4[4] = {1, oc, 1, 1}, d1[1] = {oc};
    cnd_onnxw_tensor(&q->e, s_n(q, i, what), S_I64, conv ? d4 : d1, conv ? 4 : 1, v);
    return s_n(q, i, what);
}

static void s_sc64(s_q_t *q, int i, const char *what, int64_t v)
{
    cnd_onnxw_i64(&q->e, s_n(q, i, what), v);
}

/* Shared scalar constants of the exact form. */
static void s_exact_consts(s_q_t *q)
{
    cnd_onnxw_i64(&q->e, "c_zero", 0);
    cnd_onnxw_i64(&q->e, "c_nudge_pos", (int64_t)1 << 30);
    cnd_onnxw_i64(&q->e, "c_nudge_neg", 1 - ((int64_t)1 << 30));
    cnd_onnxw_i64(&q->e, "c_2p31", (int64_t)1 << 31);
    cnd_onnxw_i64(&q->e, "c_i32_min", INT32_MIN);
    cnd_onnxw_i64(&q->e, "c_i32_max", INT32_MAX);
    int32_t c128 = 128;
    cnd_onnxw_tensor(&q->e, "c_128_i32", S_I32, NULL, 0, &c128);
}

/* r = x / n rounded half away from zero (cnd_rt_div_round) on the int64 q->cur, then int8. */
static void s_div_round(s_q_t *q, int i, int64_t n)
{
    char x[64], a[96], b[96];
    strcpy(x, q->cur);
    s_sc64(q, i, "half_n", n / 2);
    s_sc64(q, i, "n", n);
    s_op1(q, i, "Abs", "abs");
    s_op2(q, i, "Add", "abs_half", s_n(q, i, "half_n"));
    s_op2(q, i, "Div", "quot", s_n(q, i, "n"));
    strcpy(a, q->cur);
    s_op1(q, i, "Neg", "quot_neg");
    strcpy(b, q->cur);
    s_op(q, i, "Less", "is_neg", (const char *[]){x, "c_zero"}, 2);
    char c[64];
    strcpy(c, q->cur);
    s_op(q, i, "Where", "rounded", (const char *[]){c, b, a}, 3);
    s_cast(q, i, "out", S_I8);
}

/* "<pre><what>" in buf. */
static const char *s_t(char *buf, size_t n, const char *pre, const char *what)
{
    snprintf(buf, n, "%s%s", pre, what);
    return buf;
}

/* cnd_rt_mbqm of the int64 q->cur by the multipliers and shifts of `oc` channels (per channel
 * when oc > 1, shaped for a conv's NCHW output when conv), names of layer i prefixed by pre:
 * saturating left shift, SRDHM, RDBP. */
static int s_mbqm(s_q_t *q, int i, const char *pre, const uint8_t *mult_le, const uint8_t *shift,
                  int oc, int conv)
{
    int any_left = 0, any_right = 0;
    int64_t *v = calloc((size_t)oc * 4, sizeof *v);
    if (!v) return CND_ENOMEM;
    int64_t *mult = v, *lpow = v + oc, *half = v + 2 * oc, *pw = v + 3 * oc;
    for (int o = 0; o < oc; o++) {
        int sh = (int8_t)shift[o];
        mult[o] = (int32_t)s_u32(mult_le + 4 * o);
        lpow[o] = (int64_t)1 << (sh < 0 ? -sh : 0);
        half[o] = sh > 0 ? (int64_t)1 << (sh - 1) : 0;
        pw[o] = (int64_t)1 << (sh > 0 ? sh : 0);
        any_left |= sh < 0;
        any_right |= sh > 0;
    }
    char t[64], t2[64];
    if (any_left) { /* x = sat32(acc << -shift) */
        s_op2(q, i, "Mul", s_t(t, sizeof t, pre, "shl"),
              s_pc64(q, i, s_t(t2, sizeof t2, pre, "lpow"), lpow, oc, conv));
        s_op2(q, i, "Max", s_t(t, sizeof t, pre, "sat_lo"), "c_i32_min");
        s_op2(q, i, "Min", s_t(t, sizeof t, pre, "sat_hi"), "c_i32_max");
    }
    /* SRDHM: (x * mult + (x * mult >= 0 ? 2^30 : 1 - 2^30)) / 2^31, truncating */
    s_op2(q, i, "Mul", s_t(t, sizeof t, pre, "prod"),
          s_pc64(q, i, s_t(t2, sizeof t2, pre, "mult"), mult, oc, conv));
    char p[64], c[64];
    strcpy(p, q->cur);
    s_op(q, i, "Less", s_t(t, sizeof t, pre, "prod_neg"), (const char *[]){p, "c_zero"}, 2);
    strcpy(c, q->cur);
    s_op(q, i, "Where", s_t(t, sizeof t, pre, "nudge"),
         (const char *[]){c, "c_nudge_neg", "c_nudge_pos"}, 3);
    char nd[64];
    strcpy(nd, q->cur);
    s_op(q, i, "Add", s_t(t, sizeof t, pre, "nudged"), (const char *[]){p, nd}, 2);
    s_op2(q, i, "Div", s_t(t, sizeof t, pre, "srdhm"), "c_2p31");
    if (any_right) { /* RDBP: sign(y) * ((|y| + 2^(n-1)) / 2^n) */
        char y[64], a[64], b[64];
        strcpy(y, q->cur);
        s_op1(q, i, "Abs", s_t(t, sizeof t, pre, "y_abs"));
        s_op2(q, i, "Add", s_t(t, sizeof t, pre, "y_half"),
              s_pc64(q, i, s_t(t2, sizeof t2, pre, "half"), half, oc, conv));
        s_op2(q, i, "Div", s_t(t, sizeof t, pre, "y_quot"),
              s_pc64(q, i, s_t(t2, sizeof t2, pre, "pow"), pw, oc, conv));
        strcpy(a, q->cur);
        s_op1(q, i, "Neg", s_t(t, sizeof t, pre, "y_quot_neg"));
        strcpy(b, q->cur);
        s_op(q, i, "Less", s_t(t, sizeof t, pre, "y_neg"), (const char *[]){y, "c_zero"}, 2);
        strcpy(c, q->cur);
        s_op(q, i, "Where", s_t(t, sizeof t, pre, "rdbp"), (const char *[]){c, b, a}, 3);
    }
    free(v);
    return 0;
}

/* The end of cnd_rt_requant on the int64 mbqm result q->cur: clamp(clamp(x, -256, 255) + z,
 * act_min, act_max) = clamp(x + z, lo, hi) (the intervals always overlap since z is in
 * [-128, 127]), then int8. */
static void s_requant_end(s_q_t *q, int i, const char *pre, int32_t zp, int act_min, int act_max)
{
    int64_t lo = act_min > -256 + zp ? act_min : -256 + zp;
    int64_t hi = act_max < 255 + zp ? act_max : 255 + zp;
    char t[64], zn[64], lon[64], hin[64];
    s_sc64(q, i, s_t(zn, sizeof zn, pre, "zp"), zp);
    s_sc64(q, i, s_t(lon, sizeof lon, pre, "lo"), lo);
    s_sc64(q, i, s_t(hin, sizeof hin, pre, "hi"), hi);
    s_op2(q, i, "Add", s_t(t, sizeof t, pre, "plus_zp"), s_n(q, i, zn));
    s_op2(q, i, "Max", s_t(t, sizeof t, pre, "clamp_lo"), s_n(q, i, lon));
    s_op2(q, i, "Min", s_t(t, sizeof t, pre, "clamp_hi"), s_n(q, i, hin));
    s_cast(q, i, s_t(t, sizeof t, pre, "out"), S_I8);
}

/* The runtime's requantization (cnd_rt_requant) of the int64 accumulator q->cur, per output
 * channel, to int8. */
static int s_requant(s_q_t *q, int i, const s_layer_t *L, int conv)
{
    int rc = s_mbqm(q, i, "", L->mult, L->shift, L->oc, conv);
    if (rc) return rc;
    s_requant_end(q, i, "", L->out_zp, L->act_min, L->act_max);
    return 0;
}

/* Weight o, k of layer L (int8 or unpacked int4). */
static int8_t s_w(const s_layer_t *L, int o, int k, int K)
{
    if (L->wbits == 8) return (int8_t)L->w[(size_t)o * (size_t)K + (size_t)k];
    return cnd_rt_w4(L->w + (size_t)o * (size_t)((K + 1) / 2), (uint32_t)k);
}

/* Layer L's weights in ONNX order into w (oc x K int8): conv OIHW (I the channels of a group),
 * dense (O, K) with CHW columns of the flattened (fc, fh, fw). */
static void s_weights(int8_t *w, const s_layer_t *L, const s_q_t *q)
{
    if (L->op != CND_RT_OP_DENSE) { /* conv2d, gconv: C input channels per group */
        int C = L->ic / L->groups, k = L->k, K = k * k * C;
        for (int o = 0; o < L->oc; o++)
            for (int c = 0; c < C; c++)
                for (int y = 0; y < k; y++)
                    for (int x = 0; x < k; x++)
                        w[(((size_t)o * C + c) * k + y) * k + x] =
                            s_w(L, o, (y * k + x) * C + c, K);
        return;
    }
    int C = q->fc, H = q->fh, W = q->fw, K = C * H * W;
    for (int o = 0; o < L->oc; o++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < H * W; p++)
                w[(size_t)o * K + (size_t)c * H * W + p] = s_w(L, o, p * C + c, K);
}

/* The int8 value q->cur as uint8 (x + 128) for ConvInteger / MatMulInteger. */
static void s_to_u8(s_q_t *q, int i)
{
    s_cast(q, i, "x_i32", S_I32);
    s_op2(q, i, "Add", "x_plus128", "c_128_i32");
    s_cast(q, i, "x_u8", S_U8);
}

/* Before a dense: flatten a rank-4 value, remembering its (C, H, W). */
static void s_flatten(s_q_t *q, int i, const s_layer_t *L)
{
    if (q->rank == 4) {
        q->fc = L->ic;
        q->fh = L->ih;
        q->fw = L->iw;
        cnd_onnxw_attr_ints(&q->e, s_op1(q, i, "Flatten", "flat"), "axis", 1, 0);
        q->rank = 2;
    }
}

/* conv2d or dense, exact form. */
static int s_weighted_exact(s_q_t *q, int i, const s_layer_t *L, const int8_t *w8)
{
    int conv = L->op != CND_RT_OP_DENSE;
    size_t K = conv ? (size_t)L->k * L->k * (L->ic / L->groups) : (size_t)q->fc * q->fh * q->fw;
    uint8_t *wu = malloc((size_t)L->oc * K);
    int64_t *b = malloc(sizeof *b * (size_t)L->oc);
    if (!wu || !b) {
        free(wu);
        free(b);
        return CND_ENOMEM;
    }
    for (int o = 0; o < L->oc; o++) {
        b[o] = (int32_t)s_u32(L->bias + 4 * o);
        for (size_t k = 0; k < K; k++) /* dense: (K, O) for MatMulInteger */
            wu[conv ? o * K + k : k * (size_t)L->oc + (size_t)o] = (uint8_t)(w8[o * K + k] + 128);
    }
    int64_t wd4[4] = {L->oc, L->ic / L->groups, L->k, L->k}, wd2[2] = {(int64_t)K, L->oc};
    cnd_onnxw_tensor(&q->e, s_n(q, i, "w_u8"), S_U8, conv ? wd4 : wd2, conv ? 4 : 2, wu);
    uint8_t xz = (uint8_t)(L->in_zp + 128), wz = 128;
    cnd_onnxw_tensor(&q->e, s_n(q, i, "x_zp"), S_U8, NULL, 0, &xz);
    cnd_onnxw_tensor(&q->e, s_n(q, i, "w_zp"), S_U8, NULL, 0, &wz);
    s_to_u8(q, i);
    char x[64], wn[96], xzn[96], wzn[96];
    strcpy(x, q->cur);
    snprintf(wn, sizeof wn, "l%d_w_u8", i);
    snprintf(xzn, sizeof xzn, "l%d_x_zp", i);
    snprintf(wzn, sizeof wzn, "l%d_w_zp", i);
    Onnx__NodeProto *n = s_op(q, i, conv ? "ConvInteger" : "MatMulInteger", "acc32",
                              (const char *[]){x, wn, xzn, wzn}, 4);
    if (conv) { /* ConvInteger pads with x_zero_point, the runtime with z_in: both add 0 */
        cnd_onnxw_attr_ints(&q->e, n, "kernel_shape", L->k, 2);
        cnd_onnxw_attr_ints(&q->e, n, "strides", L->stride, 2);
        cnd_onnxw_attr_ints(&q->e, n, "pads", L->pad, 4);
        if (L->groups > 1) cnd_onnxw_attr_ints(&q->e, n, "group", L->groups, 0);
    }
    s_cast(q, i, "acc", S_I64);
    s_op2(q, i, "Add", "acc_bias", s_pc64(q, i, "bias", b, L->oc, conv));
    free(wu);
    free(b);
    return s_requant(q, i, L, conv);
}

/* Quantize and dequantize q->cur with (s, z): a QDQ quantization point. */
static void s_qdq(s_q_t *q, int i, float s, int32_t z)
{
    int8_t z8 = (int8_t)z;
    cnd_onnxw_tensor(&q->e, s_n(q, i, "y_scale"), S_F32, NULL, 0, &s);
    cnd_onnxw_tensor(&q->e, s_n(q, i, "y_zp"), S_I8, NULL, 0, &z8);
    char sn[96], zn[96], x[64];
    snprintf(sn, sizeof sn, "l%d_y_scale", i);
    snprintf(zn, sizeof zn, "l%d_y_zp", i);
    strcpy(x, q->cur);
    s_op(q, i, "QuantizeLinear", "q", (const char *[]){x, sn, zn}, 3);
    strcpy(x, q->cur);
    s_op(q, i, "DequantizeLinear", "dq", (const char *[]){x, sn, zn}, 3);
}

/* QDQ form: a clamp to [act_min, act_max] that a Relu does not already give (a fused relu6),
 * as a Clip of the dequantized grid values (exact). */
static void s_qdq_clamp(s_q_t *q, int i, const s_layer_t *L)
{
    int lo = L->act_min > -128 && !L->relu ? L->act_min : -128, hi = L->act_max;
    if (lo == -128 && hi == 127) return;
    float flo = (float)(lo - L->out_zp) * L->out_s, fhi = (float)(hi - L->out_zp) * L->out_s;
    cnd_onnxw_tensor(&q->e, s_n(q, i, "clamp_lo"), S_F32, NULL, 0, &flo);
    cnd_onnxw_tensor(&q->e, s_n(q, i, "clamp_hi"), S_F32, NULL, 0, &fhi);
    char x[64], a[96], b[96];
    strcpy(x, q->cur);
    snprintf(a, sizeof a, "l%d_clamp_lo", i);
    snprintf(b, sizeof b, "l%d_clamp_hi", i);
    s_op(q, i, "Clip", "clamped", (const char *[]){x, a, b}, 3);
}

/* conv2d or dense, QDQ form: w_s[c] = M[c] s_out / s_in with M = mult 2^-31 2^-shift. */
static int s_weighted_qdq(s_q_t *q, int i, const s_layer_t *L, const int8_t *w8)
{
    int conv = L->op != CND_RT_OP_DENSE, oc = L->oc;
    size_t K = conv ? (size_t)L->k * L->k * (L->ic / L->groups) : (size_t)q->fc * q->fh * q->fw;
    float *fs = malloc(sizeof *fs * 2 * (size_t)oc);
    int32_t *iz = calloc((size_t)oc * 2, sizeof *iz); /* bias and zero points (zeros) */
    if (!fs || !iz) {
        free(fs);
        free(iz);
        return CND_ENOMEM;
    }
    for (int o = 0; o < oc; o++) {
        double m = ldexp((double)(int32_t)s_u32(L->mult + 4 * o), -31 - (int8_t)L->shift[o]);
        fs[o] = (float)(m * L->out_s / L->in_s);
        fs[oc + o] = (float)(m * L->out_s); /* bias scale s_in w_s */
        iz[o] = (int32_t)s_u32(L->bias + 4 * o);
    }
    int64_t wd4[4] = {oc, L->ic / L->groups, L->k, L->k}, wd2[2] = {oc, (int64_t)K}, d1[1] = {oc};
    cnd_onnxw_tensor(&q->e, s_n(q, i, "w"), S_I8, conv ? wd4 : wd2, conv ? 4 : 2, w8);
    cnd_onnxw_tensor(&q->e, s_n(q, i, "w_scale"), S_F32, d1, 1, fs);
    cnd_onnxw_tensor(&q->e, s_n(q, i, "w_zp"), S_I8, d1, 1, (const int8_t *)(iz + oc));
    cnd_onnxw_tensor(&q->e, s_n(q, i, "b"), S_I32, d1, 1, iz);
    cnd_onnxw_tensor(&q->e, s_n(q, i, "b_scale"), S_F32, d1, 1, fs + oc);
    cnd_onnxw_tensor(&q->e, s_n(q, i, "b_zp"), S_I32, d1, 1, iz + oc);
    free(fs);
    free(iz);
    char x[64], a[3][96], wf[96], bf[96];
    strcpy(x, q->cur);
    static const char *wk[2][3] = {{"w", "w_scale", "w_zp"}, {"b", "b_scale", "b_zp"}};
    for (int t = 0; t < 2; t++) {
        for (int j = 0; j < 3; j++) snprintf(a[j], sizeof a[j], "l%d_%s", i, wk[t][j]);
        Onnx__NodeProto *n = s_op(q, i, "DequantizeLinear", t ? "b_float" : "w_float",
                                  (const char *[]){a[0], a[1], a[2]}, 3);
        cnd_onnxw_attr_ints(&q->e, n, "axis", 0, 0);
        strcpy(t ? bf : wf, q->cur);
    }
    Onnx__NodeProto *n = s_op(q, i, conv ? "Conv" : "Gemm", "y", (const char *[]){x, wf, bf}, 3);
    if (conv) {
        cnd_onnxw_attr_ints(&q->e, n, "kernel_shape", L->k, 2);
        cnd_onnxw_attr_ints(&q->e, n, "strides", L->stride, 2);
        cnd_onnxw_attr_ints(&q->e, n, "pads", L->pad, 4);
        if (L->groups > 1) cnd_onnxw_attr_ints(&q->e, n, "group", L->groups, 0);
    } else {
        cnd_onnxw_attr_ints(&q->e, n, "transB", 1, 0);
    }
    if (L->relu) s_op1(q, i, "Relu", "relu");
    s_qdq(q, i, L->out_s, L->out_zp);
    s_qdq_clamp(q, i, L);
    return 0;
}

static int s_weighted(s_q_t *q, int i, const s_layer_t *L)
{
    if (L->op == CND_RT_OP_DENSE) s_flatten(q, i, L);
    if (q->rank == 2 && L->op == CND_RT_OP_DENSE && q->fc * q->fh * q->fw != L->ic * L->ih * L->iw)
        return cnd_errf(CND_EINVAL, "layer %d: dense input does not match its flattened shape", i);
    size_t K = L->op != CND_RT_OP_DENSE ? (size_t)L->k * L->k * (L->ic / L->groups)
                                        : (size_t)q->fc * q->fh * q->fw;
    int8_t *w8 = malloc((size_t)L->oc * K);
    if (!w8) return CND_ENOMEM;
    s_weights(w8, L, q);
    int rc = q->exact ? s_weighted_exact(q, i, L, w8) : s_weighted_qdq(q, i, L, w8);
    free(w8);
    if (L->op == CND_RT_OP_DENSE) q->fc = L->oc, q->fh = q->fw = 1;
    return rc;
}

/* avgpool / gap. */
static int s_average(s_q_t *q, int i, const s_layer_t *L)
{
    int gap = L->op == CND_RT_OP_GAP;
    if (!q->exact) {
        Onnx__NodeProto *n = s_op1(q, i, gap ? "GlobalAveragePool" : "AveragePool", "avg");
        if (!gap) {
            cnd_onnxw_attr_ints(&q->e, n, "kernel_shape", L->k, 2);
            cnd_onnxw_attr_ints(&q->e, n, "strides", L->stride, 2);
        }
        s_qdq(q, i, L->out_s, L->out_zp);
        return 0;
    }
    if (gap) {
        int64_t axes[2] = {2, 3}, d[1] = {2};
        cnd_onnxw_tensor(&q->e, s_n(q, i, "axes"), S_I64, d, 1, axes);
        s_cast(q, i, "x_i64", S_I64);
        Onnx__NodeProto *n = s_op2(q, i, "ReduceSum", "sum", s_n(q, i, "axes"));
        cnd_onnxw_attr_ints(&q->e, n, "keepdims", 1, 0);
        s_div_round(q, i, (int64_t)L->ih * L->iw);
        return 0;
    }
    /* window sums: a depthwise float Conv of ones; |sum| <= 128 k^2 < 2^24 is exact */
    size_t n1 = (size_t)L->ic * L->k * L->k;
    float *ones = malloc(sizeof *ones * n1);
    if (!ones) return CND_ENOMEM;
    for (size_t t = 0; t < n1; t++) ones[t] = 1.0f;
    int64_t d[4] = {L->ic, 1, L->k, L->k};
    cnd_onnxw_tensor(&q->e, s_n(q, i, "ones"), S_F32, d, 4, ones);
    free(ones);
    s_cast(q, i, "x_f32", S_F32);
    Onnx__NodeProto *n = s_op2(q, i, "Conv", "sum_f32", s_n(q, i, "ones"));
    cnd_onnxw_attr_ints(&q->e, n, "kernel_shape", L->k, 2);
    cnd_onnxw_attr_ints(&q->e, n, "strides", L->stride, 2);
    cnd_onnxw_attr_ints(&q->e, n, "group", L->ic, 0);
    s_cast(q, i, "sum", S_I64);
    s_div_round(q, i, (int64_t)L->k * L->k);
    return 0;
}

/* A stand-alone relu: clamp to [act_min, act_max] (same scale and zero point). */
static void s_relu(s_q_t *q, int i, const s_layer_t *L)
{
    if (q->exact) {
        int8_t lo = (int8_t)L->act_min, hi = (int8_t)L->act_max;
        cnd_onnxw_tensor(&q->e, s_n(q, i, "lo"), S_I8, NULL, 0, &lo);
        cnd_onnxw_tensor(&q->e, s_n(q, i, "hi"), S_I8, NULL, 0, &hi);
    } else { /* grid values clamped to grid values: no requantization */
        float lo = (float)(L->act_min - L->in_zp) * L->in_s;
        float hi = (float)(L->act_max - L->in_zp) * L->in_s;
        cnd_onnxw_tensor(&q->e, s_n(q, i, "lo"), S_F32, NULL, 0, &lo);
        cnd_onnxw_tensor(&q->e, s_n(q, i, "hi"), S_F32, NULL, 0, &hi);
    }
    char x[64], lo[96], hi[96];
    strcpy(x, q->cur);
    snprintf(lo, sizeof lo, "l%d_lo", i);
    snprintf(hi, sizeof hi, "l%d_hi", i);
    s_op(q, i, "Clip", "clip", (const char *[]){x, lo, hi}, 3);
}

/* A table from input codes to output codes (tanh, hardswish): Gather at x + 128. The QDQ form
 * quantizes its float input with the input's own scale and zero point first (exact: it holds
 * grid values) and dequantizes the table's output. */
static void s_lut(s_q_t *q, int i, const s_layer_t *L)
{
    int64_t d[1] = {256};
    cnd_onnxw_tensor(&q->e, s_n(q, i, "table"), S_I8, d, 1, L->w);
    s_sc64(q, i, "off", 128);
    if (!q->exact) {
        int8_t z8 = (int8_t)L->in_zp;
        float sc = L->in_s;
        cnd_onnxw_tensor(&q->e, s_n(q, i, "x_scale"), S_F32, NULL, 0, &sc);
        cnd_onnxw_tensor(&q->e, s_n(q, i, "x_zp"), S_I8, NULL, 0, &z8);
        char x[64], sn[96], zn[96];
        strcpy(x, q->cur);
        snprintf(sn, sizeof sn, "l%d_x_scale", i);
        snprintf(zn, sizeof zn, "l%d_x_zp", i);
        s_op(q, i, "QuantizeLinear", "x_q", (const char *[]){x, sn, zn}, 3);
    }
    s_cast(q, i, "x_i64", S_I64);
    s_op2(q, i, "Add", "index", s_n(q, i, "off"));
    char x[64], t[96];
    strcpy(x, q->cur);
    snprintf(t, sizeof t, "l%d_table", i);
    s_op(q, i, "Gather", "out", (const char *[]){t, x}, 2);
    if (!q->exact) {
        int8_t z8 = (int8_t)L->out_zp;
        float sc = L->out_s;
        cnd_onnxw_tensor(&q->e, s_n(q, i, "y_scale"), S_F32, NULL, 0, &sc);
        cnd_onnxw_tensor(&q->e, s_n(q, i, "y_zp"), S_I8, NULL, 0, &z8);
        char sn[96], zn[96];
        strcpy(x, q->cur);
        snprintf(sn, sizeof sn, "l%d_y_scale", i);
        snprintf(zn, sizeof zn, "l%d_y_zp", i);
        s_op(q, i, "DequantizeLinear", "dq", (const char *[]){x, sn, zn}, 3);
    }
}

/* Value v's int64 (x - z) in the exact form, from the int8 value named x, as q->cur. */
static void s_centred(s_q_t *q, int i, const char *pre, const char *x, int32_t z)
{
    char t[64], zn[64];
    strcpy(q->cur, x);
    s_cast(q, i, s_t(t, sizeof t, pre, "i64"), S_I64);
    s_sc64(q, i, s_t(zn, sizeof zn, pre, "z"), z);
    s_op2(q, i, "Sub", s_t(t, sizeof t, pre, "centred"), s_n(q, i, zn));
}

/* Residual add (cnd_rt_add): exact, zo + R2(sat32(R0((a - za) 2^20) + R1((b - zb) 2^20)));
 * QDQ, the float sum quantized to the output. */
static int s_add(s_q_t *q, int i, const s_layer_t *L)
{
    const char *a = q->v[L->src[0]].name, *b = q->v[L->src[1]].name;
    if (!q->exact) {
        s_op(q, i, "Add", "sum", (const char *[]){a, b}, 2);
        s_qdq(q, i, L->out_s, L->out_zp);
        s_qdq_clamp(q, i, L);
        return 0;
    }
    char r[2][64];
    s_sc64(q, i, "p20", (int64_t)1 << CND_RT_ADD_SHIFT);
    for (int j = 0; j < 2; j++) {
        const char *pre = j ? "b_" : "a_";
        char t[64];
        s_centred(q, i, pre, j ? b : a, j ? q->v[L->src[1]].zp : L->in_zp);
        s_op2(q, i, "Mul", s_t(t, sizeof t, pre, "scaled"), s_n(q, i, "p20"));
        int rc = s_mbqm(q, i, pre, L->mult + 4 * j, L->shift + j, 1, 0);
        if (rc) return rc;
        strcpy(r[j], q->cur);
    }
    s_op(q, i, "Add", "sum", (const char *[]){r[0], r[1]}, 2);
    s_op2(q, i, "Max", "sum_lo", "c_i32_min");
    s_op2(q, i, "Min", "sum_hi", "c_i32_max");
    int rc = s_mbqm(q, i, "o_", L->mult + 8, L->shift + 2, 1, 0);
    if (rc) return rc;
    s_requant_end(q, i, "o_", L->out_zp, L->act_min, L->act_max);
    return 0;
}

/* Channel concatenation, each input requantized to the output (zo + Rj(x - zj)); QDQ: the
 * float values concatenated and quantized to the output. */
static int s_concat(s_q_t *q, int i, const s_layer_t *L)
{
    char in[2][64];
    for (int j = 0; j < 2; j++) {
        const char *x = q->v[L->src[j]].name;
        if (!q->exact) {
            snprintf(in[j], sizeof in[j], "%s", x);
            continue;
        }
        const char *pre = j ? "b_" : "a_";
        s_centred(q, i, pre, x, j ? q->v[L->src[1]].zp : L->in_zp);
        int rc = s_mbqm(q, i, pre, L->mult + 4 * j, L->shift + j, 1, 0);
        if (rc) return rc;
        s_requant_end(q, i, pre, L->out_zp, L->act_min, L->act_max);
        strcpy(in[j], q->cur);
    }
    Onnx__NodeProto *n = s_op(q, i, "Concat", "cat", (const char *[]){in[0], in[1]}, 2);
    cnd_onnxw_attr_ints(&q->e, n, "axis", 1, 0);
    if (q->rank == 2) q->fc = L->oc; /* (N, F1 + F2) features without planes */
    if (!q->exact) {
        s_qdq(q, i, L->out_s, L->out_zp);
        s_qdq_clamp(q, i, L);
    }
    return 0;
}

static int s_layer(s_q_t *q, int i, const s_layer_t *L)
{
    switch (L->op) {
    case CND_RT_OP_DENSE:
    case CND_RT_OP_CONV2D:
    case CND_RT_OP_GCONV: return s_weighted(q, i, L);
    case CND_RT_OP_ADD: return s_add(q, i, L);
    case CND_RT_OP_CONCAT: return s_concat(q, i, L);
    case CND_RT_OP_MAXPOOL: { /* exact in either form: the maximum of grid values */
        Onnx__NodeProto *n = s_op1(q, i, "MaxPool", "max");
        cnd_onnxw_attr_ints(&q->e, n, "kernel_shape", L->k, 2);
        cnd_onnxw_attr_ints(&q->e, n, "strides", L->stride, 2);
        return 0;
    }
    case CND_RT_OP_AVGPOOL:
    case CND_RT_OP_GAP: return s_average(q, i, L);
    case CND_RT_OP_FLATTEN: s_flatten(q, i, L); return 0;
    case CND_RT_OP_RELU: s_relu(q, i, L); return 0;
    case CND_RT_OP_LUT: s_lut(q, i, L); return 0;
    default: return cnd_errf(CND_EINVAL, "layer %d: artifact op %d has no ONNX form", i, L->op);
    }
}

/* Section `tag`'s payload in the (validated) artifact. */
static const uint8_t *s_section(const uint8_t *a, size_t len, uint32_t tag, uint32_t *plen)
{
    size_t off = CND_RT_HEADER_BYTES, body = s_u32(a + CND_RT_H_BODYLEN);
    while (off + CND_RT_SECTION_HDR <= body && body <= len) {
        uint32_t t = s_u32(a + off), n = s_u32(a + off + 4);
        if (t == tag) {
            *plen = n;
            return a + off + CND_RT_SECTION_HDR;
        }
        off += CND_RT_SECTION_HDR + (((size_t)n + CND_RT_ALIGN - 1) & ~(size_t)(CND_RT_ALIGN - 1));
    }
    return NULL;
}

static void s_decode(s_layer_t *L, const uint8_t *e, const uint8_t *data)
{
    L->op = e[CND_RT_L_OP];
    L->relu = (e[CND_RT_L_FLAGS] & CND_RT_L_FLAG_RELU) != 0;
    L->wbits = e[CND_RT_L_WBITS];
    L->groups = s_u16(e + CND_RT_L_GROUPS) ? s_u16(e + CND_RT_L_GROUPS) : 1;
    L->nsrc = e[CND_RT_L_NSRC] ? e[CND_RT_L_NSRC] : 1; /* version 1: 0, the layer before */
    L->src[0] = e[CND_RT_L_NSRC] ? e[CND_RT_L_SRC] : -1;
    L->src[1] = e[CND_RT_L_SRC + 1];
    L->ic = s_u16(e + CND_RT_L_IN_C), L->ih = s_u16(e + CND_RT_L_IN_C + 2);
    L->iw = s_u16(e + CND_RT_L_IN_C + 4);
    L->oc = s_u16(e + CND_RT_L_OUT_C), L->oh = s_u16(e + CND_RT_L_OUT_C + 2);
    L->ow = s_u16(e + CND_RT_L_OUT_C + 4);
    L->k = e[CND_RT_L_K], L->stride = e[CND_RT_L_STRIDE], L->pad = e[CND_RT_L_PAD];
    L->act_min = (int8_t)e[CND_RT_L_ACT_MIN], L->act_max = (int8_t)e[CND_RT_L_ACT_MAX];
    L->in_zp = (int32_t)s_u32(e + CND_RT_L_IN_ZP), L->out_zp = (int32_t)s_u32(e + CND_RT_L_OUT_ZP);
    L->in_s = s_f32(e + CND_RT_L_IN_SCALE), L->out_s = s_f32(e + CND_RT_L_OUT_SCALE);
    L->w = data + s_u32(e + CND_RT_L_W_OFF);
    L->bias = data + s_u32(e + CND_RT_L_BIAS_OFF);
    L->mult = data + s_u32(e + CND_RT_L_MULT_OFF);
    L->shift = data + s_u32(e + CND_RT_L_SHIFT_OFF);
}

/* input (raw uint8, NCHW or (N, C)) -> int8 through the LUT (Gather at c * 256 + raw), then,
 * in the QDQ form, dequantized. */
static void s_input(s_q_t *q, const uint8_t *inpt, int C, int rank)
{
    int64_t *off = malloc(sizeof *off * (size_t)C);
    if (!off) {
        q->e.oom = 1;
        return;
    }
    for (int c = 0; c < C; c++) off[c] = 256 * (int64_t)c;
    int64_t d4[4] = {1, C, 1, 1}, d2[2] = {1, C}, dl[1] = {256 * (int64_t)C};
    cnd_onnxw_tensor(&q->e, "in_chan_offset", S_I64, rank == 4 ? d4 : d2, rank, off);
    free(off);
    cnd_onnxw_tensor(&q->e, "in_lut", S_I8, dl, 1, inpt + CND_RT_INPT_FIXED + 8 * (size_t)C);
    strcpy(q->cur, "input");
    s_cast(q, 0, "raw_i64", S_I64);
    s_op2(q, 0, "Add", "lut_index", "in_chan_offset");
    char x[64];
    strcpy(x, q->cur);
    s_op(q, 0, "Gather", "x_i8", (const char *[]){"in_lut", x}, 2);
    if (!q->exact) {
        float s = s_f32(inpt + 12);
        int8_t z = (int8_t)(int32_t)s_u32(inpt + 8);
        cnd_onnxw_tensor(&q->e, "in_scale", S_F32, NULL, 0, &s);
        cnd_onnxw_tensor(&q->e, "in_zp", S_I8, NULL, 0, &z);
        strcpy(x, q->cur);
        s_op(q, 0, "DequantizeLinear", "x", (const char *[]){x, "in_scale", "in_zp"}, 3);
    }
}

/* Records q->cur and its layout as value v (v = 0: the input, v = i: layer i's output). */
static void s_keep(s_q_t *q, int v, int32_t zp, float sc)
{
    snprintf(q->v[v].name, sizeof q->v[v].name, "%s", q->cur);
    q->v[v].rank = q->rank, q->v[v].fc = q->fc, q->v[v].fh = q->fh, q->v[v].fw = q->fw;
    q->v[v].zp = zp;
    q->v[v].s = sc;
}

int cnd_onnx_export_q(const uint8_t *art, size_t len, int exact, uint8_t **out, size_t *olen)
{
    *out = NULL;
    *olen = 0;
    uint32_t ni = 0, nl = 0, nd = 0;
    const uint8_t *inpt = s_section(art, len, CND_RT_TAG_INPT, &ni);
    const uint8_t *layr = s_section(art, len, CND_RT_TAG_LAYR, &nl);
    const uint8_t *data = s_section(art, len, CND_RT_TAG_DATA, &nd);
    if (!inpt || !layr || !data)
        return cnd_errf(CND_EFORMAT, "artifact: missing INPT, LAYR or DATA section");
    int C = s_u16(inpt), H = s_u16(inpt + 2), W = s_u16(inpt + 4);
    int n_layers = (int)s_u32(layr);
    s_q_t q;
    memset(&q, 0, sizeof q);
    q.exact = exact;
    int rc = cnd_onnxw_begin(&q.e, 40 * (size_t)n_layers + 16, 24 * (size_t)n_layers + 16);
    if (rc) goto done;
    const uint8_t *e0 = layr + 16;
    int first_dense = e0[CND_RT_L_OP] == CND_RT_OP_DENSE;
    q.rank = H == 1 && W == 1 && first_dense ? 2 : 4;
    q.fc = C, q.fh = H, q.fw = W;
    int64_t dims[4] = {-1, C, H, W};
    q.e.g->input[0] = cnd_onnxw_vi(&q.e, "input", S_U8, dims, q.rank);
    q.e.g->n_input = 1;
    if (exact) s_exact_consts(&q);
    s_input(&q, inpt, C, q.rank);
    s_keep(&q, 0, (int32_t)s_u32(inpt + 8), s_f32(inpt + 12));
    int classes = 0;
    for (int i = 1; i <= n_layers && !rc; i++) {
        s_layer_t L;
        s_decode(&L, e0 + (size_t)(i - 1) * CND_RT_LAYER_BYTES, data);
        if (L.src[0] < 0) L.src[0] = i - 1;
        int from = L.src[0]; /* the loader checked: an earlier layer or the input */
        strcpy(q.cur, q.v[from].name);
        q.rank = q.v[from].rank, q.fc = q.v[from].fc, q.fh = q.v[from].fh, q.fw = q.v[from].fw;
        /* the runtime keeps HWC order through a flatten, ONNX CHW: two flattened values line
         * up only when neither had a plane (a dense layer's output, a gap's) */
        const s_val_t *v0 = &q.v[L.src[0]], *v1 = &q.v[L.src[L.nsrc - 1]];
        if (L.nsrc == 2 && (v0->rank != 4 || v1->rank != 4) &&
            (v0->fh * v0->fw != 1 || v1->fh * v1->fw != 1))
            rc = cnd_errf(CND_EINVAL,
                          "layer %d: add/concat of flattened feature maps (their element "
                          "order differs between the runtime and ONNX)",
                          i);
        else
            rc = s_layer(&q, i, &L);
        s_keep(&q, i, L.out_zp, L.out_s);
        classes = L.oc * L.oh * L.ow;
    }
    if (rc) goto done;
    if (q.rank == 4)
        cnd_onnxw_attr_ints(&q.e, s_op1(&q, n_layers + 1, "Flatten", "flat"), "axis", 1, 0);
    if (q.e.oom) goto oom;
    Onnx__NodeProto *last = q.e.g->node[q.e.g->n_node - 1];
    last->output[0] = cnd_onnxw_str(&q.e, "logits");
    q.e.g->output[0] =
        cnd_onnxw_vi(&q.e, "logits", exact ? S_I8 : S_F32, (int64_t[]){-1, classes}, 2);
    q.e.g->n_output = 1;
    const uint8_t *le = e0 + (size_t)(n_layers - 1) * CND_RT_LAYER_BYTES;
    char buf[64];
    cnd_onnxw_prop(&q.e, "condenser.int8_form", exact ? "exact" : "qdq");
    cnd_onnxw_prop(&q.e, "condenser.input", "raw uint8 NCHW, mapped by the artifact's LUT");
    snprintf(buf, sizeof buf, "%.9g", (double)s_f32(le + CND_RT_L_OUT_SCALE));
    cnd_onnxw_prop(&q.e, "condenser.output_scale", buf);
    snprintf(buf, sizeof buf, "%d", (int)(int32_t)s_u32(le + CND_RT_L_OUT_ZP));
    cnd_onnxw_prop(&q.e, "condenser.output_zero_point", buf);
    if (!q.e.g->input[0] || !q.e.g->output[0]) goto oom;
    rc = cnd_onnxw_pack(&q.e, out, olen);
    goto done;
oom:
    rc = CND_ENOMEM;
done:
    cnd_onnxw_end(&q.e);
    return rc;
}
