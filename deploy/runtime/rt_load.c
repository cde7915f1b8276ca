/*
 * rt_load.c: validating a `.cndq` artifact and building a model in the caller's arena.
 *
 * Everything in an artifact is untrusted. s_parse() reads the whole artifact without writing
 * anywhere and checks, in this order: the header (magic, version, lengths; a short buffer is
 * CND_RT_ETRUNC, a longer one or a declared size over CND_RT_MAX_FILE is refused), the SHA-256
 * digest (CND_RT_ECORRUPT), the signature trailer's framing, the section sequence, and then
 * every field of every section: shapes chain from layer to layer, zero points and scales chain,
 * offsets and lengths stay inside DATA, requantization parameters are in range, and for every
 * output channel the worst-case accumulator (over all possible int8 inputs, for the reference
 * and for the unsigned-input VNNI formulation) fits in int32, so no kernel can overflow on any
 * accepted artifact. Only after all of that succeeds does cnd_rt_load() write the arena.
 */
#include "rt_internal.h"
#include "cnd_rt_sha256.h"

#include <string.h>

static uint16_t s_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t s_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int32_t s_i32(const uint8_t *p)
{
    uint32_t u = s_u32(p);
    return u <= 0x7fffffffu ? (int32_t)u : (int32_t)(u - 0x80000000u) - 0x7fffffff - 1;
}

static size_t s_align(size_t n)
{
    return (n + (RT_CACHELINE - 1)) & ~(size_t)(RT_CACHELINE - 1);
}

static int s_fail(cnd_rt_diag_t *d, int code, uint32_t off, int layer, const char *what)
{
    if (d) {
        d->code = code;
        d->offset = off;
        d->layer = layer;
        d->what = what;
    }
    return code;
}

static int s_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++) acc |= p[i];
    return acc == 0;
}

/* An activation's shape and quantization, as layers chain them. */
typedef struct {
    uint32_t c, h, w;
    int32_t zp;
    uint32_t scale;
} s_act_t;

typedef struct {
    uint32_t version; /* 1 (chain) or 2 (graph) */
    uint32_t body_len, file_len;
    uint32_t off[CND_RT_NSECTIONS], len[CND_RT_NSECTIONS]; /* payload offset/length */
    uint16_t c, h, w;
    int32_t in_zp;
    uint32_t n_layers, n_classes, n_labels, n_tests;
    size_t scratch, consts, weight_bytes, arena;
    uint64_t macs;
    /* the graph: tensor t = 0 is the input, t = i + 1 layer i's output */
    s_act_t act[CND_RT_MAX_LAYERS + 1];
    int8_t src[CND_RT_MAX_LAYERS][2]; /* producing layer of each input, -1 = input */
    uint8_t n_src[CND_RT_MAX_LAYERS];
    uint8_t readers[CND_RT_MAX_LAYERS + 1]; /* readers of each tensor */
    uint8_t op[CND_RT_MAX_LAYERS];
    uint16_t pk[CND_RT_MAX_LAYERS];          /* pool window k and stride, for fusion */
    uint32_t act_off[CND_RT_MAX_LAYERS + 1]; /* planned offset of each tensor */
    size_t act_bytes, act_sum;               /* planned area; sum of all tensors */
} s_parse_t;

enum { S_INPT, S_LABL, S_LAYR, S_DATA, S_TEST, S_META };

/* Scratch of the direct conv kernels (rt_kernels_x86.c): the whole input with its padding
 * written out, as int16 for AVX2 (unsigned bytes for VNNI need half), and 64 bytes of slack
 * that the last groups of a row may read, when that is at most 4x the input plus 4 KiB;
 * otherwise per-pixel patches of k rows of 4 * grow int16 values for RT_VNNI_PATCHES pixels
 * (cnd_rt_vnni_direct decides the same way). */
static size_t s_vnni_scratch(uint32_t k, uint32_t c, uint32_t h, uint32_t w, uint32_t pad)
{
    size_t grow = ((size_t)k * c + 3) / 4;
    if (cnd_rt_vnni_direct(k, c, h, w, pad))
        return s_align(2 * (size_t)(h + 2 * pad) * (w + 2 * pad) * c + 64);
    return RT_VNNI_PATCHES * s_align(2 * (size_t)k * grow * 4) + 64;
}

/* One layer entry's fields, decoded (rt_format.h names the offsets). */
typedef struct {
    uint32_t eoff; /* the entry's offset in the artifact */
    int li;        /* its index */
    uint8_t op, flags, wbits, nsrc;
    int src[2];      /* producing layer of each input, -1 = model input */
    uint32_t groups; /* gconv */
    uint32_t ic, ih, iw, oc, oh, ow, k, st, pad;
    int32_t amin, amax, izp, ozp;
    uint32_t isc, osc, woff, wlen, boff, moff, soff;
    int weighted; /* dense or conv2d */
    uint32_t K;   /* inputs per output of a weighted layer */
} s_layer_t;

static void s_layer_decode(s_layer_t *l, const uint8_t *a, uint32_t eoff, int li)
{
    const uint8_t *e = a + eoff;
    l->eoff = eoff;
    l->li = li;
    l->op = e[CND_RT_L_OP];
    l->flags = e[CND_RT_L_FLAGS];
    l->wbits = e[CND_RT_L_WBITS];
    l->ic = s_u16(e + CND_RT_L_IN_C);
    l->ih = s_u16(e + CND_RT_L_IN_C + 2);
    l->iw = s_u16(e + CND_RT_L_IN_C + 4);
    l->oc = s_u16(e + CND_RT_L_OUT_C);
    l->oh = s_u16(e + CND_RT_L_OUT_C + 2);
    l->ow = s_u16(e + CND_RT_L_OUT_C + 4);
    l->k = e[CND_RT_L_K];
    l->st = e[CND_RT_L_STRIDE];
    l->pad = e[CND_RT_L_PAD];
    l->amin = (int8_t)e[CND_RT_L_ACT_MIN];
    l->amax = (int8_t)e[CND_RT_L_ACT_MAX];
    l->izp = s_i32(e + CND_RT_L_IN_ZP);
    l->ozp = s_i32(e + CND_RT_L_OUT_ZP);
    l->isc = s_u32(e + CND_RT_L_IN_SCALE);
    l->osc = s_u32(e + CND_RT_L_OUT_SCALE);
    l->woff = s_u32(e + CND_RT_L_W_OFF);
    l->wlen = s_u32(e + CND_RT_L_W_LEN);
    l->boff = s_u32(e + CND_RT_L_BIAS_OFF);
    l->moff = s_u32(e + CND_RT_L_MULT_OFF);
    l->soff = s_u32(e + CND_RT_L_SHIFT_OFF);
    l->nsrc = e[CND_RT_L_NSRC];
    l->groups = s_u16(e + CND_RT_L_GROUPS);
    l->src[0] = (int)e[CND_RT_L_SRC] - 1;
    l->src[1] = (int)e[CND_RT_L_SRC + 1] - 1;
    l->weighted = l->op == CND_RT_OP_DENSE || l->op == CND_RT_OP_CONV2D || l->op == CND_RT_OP_GCONV;
    l->K = 0;
}

/* Version 2's graph fields: the input count fits the operation, every input is an earlier layer
 * (so there are no cycles nor forward references), groups only on gconv. Version 1 entries hold
 * zeros there and read the layer before. Fills l->src. */
static int s_check_graph(s_layer_t *l, const uint8_t *e, uint32_t version, cnd_rt_diag_t *d)
{
    uint32_t eoff = l->eoff;
    int li = l->li;
    if (version == CND_RT_VERSION_CHAIN) {
        if (e[CND_RT_L_NSRC] || e[CND_RT_L_GROUPS] || e[CND_RT_L_GROUPS + 1] ||
            !s_zero(e + CND_RT_L_SRC, 4))
            return s_fail(d, CND_RT_EFORMAT, eoff, li, "layer: reserved bytes are not zero");
        if (l->op > CND_RT_OP_MAX_V1)
            return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_OP, li,
                          "layer: operation needs artifact version 2");
        l->nsrc = 1;
        l->src[0] = li - 1;
        l->src[1] = -1;
        return 0;
    }
    int two = l->op == CND_RT_OP_ADD || l->op == CND_RT_OP_CONCAT;
    if (l->nsrc != (two ? 2 : 1))
        return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_NSRC, li,
                      "layer: input count does not fit the operation");
    if (e[CND_RT_L_SRC + 2] || e[CND_RT_L_SRC + 3] || (!two && e[CND_RT_L_SRC + 1]))
        return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_SRC, li,
                      "layer: unused input bytes are not zero");
    for (int j = 0; j < l->nsrc; j++)
        if (l->src[j] >= li)
            return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_SRC + (uint32_t)j, li,
                          "layer: reads itself or a later layer (cycle or forward reference)");
    if (!two) l->src[1] = -1;
    if ((l->op == CND_RT_OP_GCONV) != (l->groups != 0))
        return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_GROUPS, li,
                      "layer: groups set on other than a gconv, or missing on one");
    return 0;
}

/* What every layer must satisfy: reserved bytes, flags, chaining to the previous output, the
 * output's shape and quantization, no weights where there are none. */
static int s_check_common(const s_layer_t *l, const uint8_t *e, const s_act_t *cur,
                          cnd_rt_diag_t *d)
{
    uint32_t eoff = l->eoff;
    int li = l->li;
    if (e[19]) return s_fail(d, CND_RT_EFORMAT, eoff, li, "layer: reserved bytes are not zero");
    if (l->flags & ~CND_RT_L_FLAG_RELU)
        return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_FLAGS, li, "layer: unknown flags");
    if (l->ic != cur->c || l->ih != cur->h || l->iw != cur->w)
        return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_IN_C, li,
                      "layer: input shape differs from the previous output");
    if (l->izp != cur->zp || l->isc != cur->scale)
        return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_IN_ZP, li,
                      "layer: input zero point or scale differs from the previous output");
    if (!l->oc || !l->oh || !l->ow || l->oc > 65535 || l->oh > CND_RT_MAX_DIM ||
        l->ow > CND_RT_MAX_DIM)
        return s_fail(d, CND_RT_ERANGE, eoff + CND_RT_L_OUT_C, li, "layer: output shape");
    if ((uint64_t)l->oc * l->oh * l->ow > CND_RT_MAX_ACT)
        return s_fail(d, CND_RT_ERANGE, eoff + CND_RT_L_OUT_C, li,
                      "layer: output tensor too large");
    if (l->ozp < -128 || l->ozp > 127)
        return s_fail(d, CND_RT_ERANGE, eoff + CND_RT_L_OUT_ZP, li,
                      "layer: output zero point outside [-128, 127]");
    if (l->amin > l->amax)
        return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_ACT_MIN, li,
                      "layer: act_min above act_max");
    int aux = l->op == CND_RT_OP_ADD || l->op == CND_RT_OP_CONCAT || l->op == CND_RT_OP_LUT;
    if (!l->weighted &&
        (l->wbits || l->flags || l->boff || (!aux && (l->woff || l->wlen || l->moff || l->soff))))
        return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_WBITS, li,
                      "layer: weights or flags on a layer without weights");
    if (l->op != CND_RT_OP_CONV2D && l->op != CND_RT_OP_GCONV && l->pad)
        return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_PAD, li, "layer: padding not allowed");
    return 0;
}

/* The operation's own shape rules (l->K set for weighted layers), and that layers without
 * weights keep their input's quantization. */
static int s_check_op(s_layer_t *l, cnd_rt_diag_t *d)
{
    uint32_t eoff = l->eoff, ic = l->ic, ih = l->ih, iw = l->iw, oc = l->oc, oh = l->oh, ow = l->ow,
             k = l->k, st = l->st, pad = l->pad;
    int li = l->li;
    switch (l->op) {
    case CND_RT_OP_DENSE:
        if (oh != 1 || ow != 1 || k || st)
            return s_fail(d, CND_RT_EFORMAT, eoff, li, "dense: output must be Cx1x1, no kernel");
        l->K = ic * ih * iw;
        break;
    case CND_RT_OP_CONV2D:
        if (!k || !st || pad >= k || ih + 2 * pad < k || iw + 2 * pad < k)
            return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_K, li,
                          "conv2d: kernel, stride or padding invalid for its input");
        if (oh != (ih + 2 * pad - k) / st + 1 || ow != (iw + 2 * pad - k) / st + 1)
            return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_OUT_C, li,
                          "conv2d: output size does not follow from input, kernel, stride, pad");
        l->K = k * k * ic;
        break;
    case CND_RT_OP_GCONV:
        if (!k || !st || pad >= k || ih + 2 * pad < k || iw + 2 * pad < k)
            return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_K, li,
                          "gconv: kernel, stride or padding invalid for its input");
        if (oh != (ih + 2 * pad - k) / st + 1 || ow != (iw + 2 * pad - k) / st + 1)
            return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_OUT_C, li,
                          "gconv: output size does not follow from input, kernel, stride, pad");
        if (ic % l->groups || oc % l->groups)
            return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_GROUPS, li,
                          "gconv: groups do not divide the input and output channels");
        l->K = k * k * (ic / l->groups);
        break;
    case CND_RT_OP_ADD:
    case CND_RT_OP_CONCAT:
    case CND_RT_OP_LUT:
        if (k || st)
            return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_K, li, "layer: no kernel expected");
        if (oh != ih || ow != iw || (l->op != CND_RT_OP_CONCAT && oc != ic))
            return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_OUT_C, li,
                          "layer: output shape does not follow from the input");
        break;
    case CND_RT_OP_MAXPOOL:
    case CND_RT_OP_AVGPOOL:
        if (!k || !st || ih < k || iw < k)
            return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_K, li,
                          "pool: window or stride invalid for its input");
        if (oc != ic || oh != (ih - k) / st + 1 || ow != (iw - k) / st + 1)
            return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_OUT_C, li,
                          "pool: output size does not follow from input, window, stride");
        break;
    case CND_RT_OP_GAP:
        if (k || st || oc != ic || oh != 1 || ow != 1)
            return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_OUT_C, li,
                          "gap: output must be Cx1x1");
        if (ih * iw > 65536)
            return s_fail(d, CND_RT_ERANGE, eoff + CND_RT_L_IN_C, li,
                          "gap: more than 65536 pixels per channel");
        break;
    case CND_RT_OP_FLATTEN:
        if (k || st || oc != ic * ih * iw || oh != 1 || ow != 1)
            return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_OUT_C, li,
                          "flatten: output must be (C*H*W)x1x1");
        break;
    case CND_RT_OP_RELU:
        if (k || st || oc != ic || oh != ih || ow != iw)
            return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_OUT_C, li,
                          "relu: output shape must equal input shape");
        break;
    default: return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_OP, li, "layer: unknown operation");
    }
    int requant = l->op == CND_RT_OP_ADD || l->op == CND_RT_OP_CONCAT || l->op == CND_RT_OP_LUT;
    if (!l->weighted && !requant && (l->ozp != l->izp || l->osc != l->isc))
        return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_OUT_ZP, li,
                      "layer: must keep its input's zero point and scale");
    if (!l->weighted && l->op != CND_RT_OP_RELU && l->op != CND_RT_OP_ADD &&
        l->op != CND_RT_OP_CONCAT && (l->amin != -128 || l->amax != 127))
        return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_ACT_MIN, li,
                      "layer: clamp must be [-128, 127]");
    return 0;
}

/* A weighted layer's arrays in DATA: bit width, lengths, bounds and alignment, then per output
 * channel the requantization constants and that no input can overflow the int32 accumulator
 * (with the input zero point folded into the bias, for int8 and for uint8 kernels). */
static int s_check_weights(const s_parse_t *p, const uint8_t *a, const s_layer_t *l,
                           cnd_rt_diag_t *d)
{
    const uint8_t *data = a + p->off[S_DATA];
    uint64_t dlen = p->len[S_DATA];
    uint32_t eoff = l->eoff, K = l->K, oc = l->oc, woff = l->woff, wlen = l->wlen, boff = l->boff,
             moff = l->moff, soff = l->soff;
    int li = l->li;
    if (l->wbits != 8 && l->wbits != 4)
        return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_WBITS, li,
                      "layer: weight bits must be 8 or 4");
    if (K == 0 || K > (1u << 20))
        return s_fail(d, CND_RT_ERANGE, eoff, li, "layer: more than 2^20 inputs per output");
    uint32_t row = l->wbits == 8 ? K : (K + 1) / 2;
    if ((uint64_t)wlen != (uint64_t)row * oc)
        return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_W_LEN, li,
                      "layer: weight length does not match the shape");
    if ((uint64_t)woff + wlen > dlen || (uint64_t)boff + 4u * oc > dlen ||
        (uint64_t)moff + 4u * oc > dlen || (uint64_t)soff + oc > dlen)
        return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_W_OFF, li,
                      "layer: weights, biases or requantization data outside DATA");
    if ((boff | moff) & 3)
        return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_BIAS_OFF, li,
                      "layer: int32 arrays must be 4-byte aligned in DATA");
    for (uint32_t c = 0; c < oc; c++) {
        uint32_t at = p->off[S_DATA];
        int32_t mult = s_i32(data + moff + 4 * c);
        int32_t shift = (int8_t)data[soff + c];
        if (mult < 0)
            return s_fail(d, CND_RT_ERANGE, at + moff + 4 * c, li,
                          "layer: negative requantization multiplier");
        if (shift < -31 || shift > 31)
            return s_fail(d, CND_RT_ERANGE, at + soff + c, li,
                          "layer: requantization shift outside [-31, 31]");
        const uint8_t *wr = data + woff + (size_t)c * row;
        int64_t sum = 0, sabs = 0;
        for (uint32_t j = 0; j < K; j++) {
            int32_t v = l->wbits == 8 ? (int8_t)wr[j] : cnd_rt_w4(wr, j);
            sum += v;
            sabs += v < 0 ? -v : v;
        }
        if (l->wbits == 4 && (K & 1) && (wr[row - 1] >> 4))
            return s_fail(d, CND_RT_EFORMAT, at + woff + c * row + row - 1, li,
                          "layer: int4 row padding nibble is not zero");
        int64_t b = s_i32(data + boff + 4 * c);
        int64_t beff = b - (int64_t)l->izp * sum, bu8 = b - ((int64_t)l->izp + 128) * sum;
        int64_t lim = 0x7fffffff;
        if ((b < 0 ? -b : b) + 255 * sabs > lim || (beff < 0 ? -beff : beff) + 128 * sabs > lim ||
            (bu8 < 0 ? -bu8 : bu8) + 255 * sabs > lim)
            return s_fail(d, CND_RT_ERANGE, at + boff + 4 * c, li,
                          "layer: bias and weights allow an int32 accumulator overflow");
    }
    return 0;
}

/* add and concat: multipliers and shifts (3 or 2) inside DATA, multipliers >= 0, shifts in
 * [-31, 31]; lut: its 256-byte table inside DATA. Nothing else. */
static int s_check_aux(const s_parse_t *p, const uint8_t *a, const s_layer_t *l, cnd_rt_diag_t *d)
{
    const uint8_t *data = a + p->off[S_DATA];
    uint64_t dlen = p->len[S_DATA];
    uint32_t eoff = l->eoff, at = p->off[S_DATA];
    int li = l->li;
    if (l->op == CND_RT_OP_LUT) {
        if (l->wlen != 256 || (uint64_t)l->woff + 256 > dlen || l->moff || l->soff)
            return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_W_OFF, li,
                          "lut: table must be 256 bytes inside DATA, nothing else");
        return 0;
    }
    uint32_t n = l->op == CND_RT_OP_ADD ? 3 : 2;
    if (l->woff || l->wlen || (uint64_t)l->moff + 4u * n > dlen || (uint64_t)l->soff + n > dlen ||
        (l->moff & 3))
        return s_fail(d, CND_RT_EFORMAT, eoff + CND_RT_L_MULT_OFF, li,
                      "add/concat: requantization data outside DATA or misaligned");
    for (uint32_t j = 0; j < n; j++) {
        int32_t mult = s_i32(data + l->moff + 4 * j), shift = (int8_t)data[l->soff + j];
        if (mult < 0)
            return s_fail(d, CND_RT_ERANGE, at + l->moff + 4 * j, li,
                          "add/concat: negative requantization multiplier");
        if (shift < -31 || shift > 31)
            return s_fail(d, CND_RT_ERANGE, at + l->soff + j, li,
                          "add/concat: requantization shift outside [-31, 31]");
    }
    return 0;
}

/* What a checked layer adds to the arena: constants, and the scratch of the kernels that will
 * run it (the reference's, or the fast paths'). */
static void s_layer_costs(s_parse_t *p, const s_layer_t *l)
{
    uint32_t K = l->K, oc = l->oc, k = l->k, ic = l->ic;
    if (l->op == CND_RT_OP_ADD || l->op == CND_RT_OP_CONCAT) {
        p->consts += 2 * s_align(4 * 3);
        return;
    }
    if (!l->weighted) return;
    p->macs += (uint64_t)K * oc * l->oh * l->ow;
    p->weight_bytes += l->wlen;
    p->consts += 4 * s_align(4 * (size_t)oc);
    /* the reference needs one conv patch and nothing for dense layers or gconv */
    size_t scr = l->op == CND_RT_OP_CONV2D ? s_align(K) : 0;
    if (RT_FAST_PATHS && l->op == CND_RT_OP_GCONV) {
        if (l->groups == ic && oc == ic) { /* depthwise: int32 weights [kh][kw][c], sums */
            p->consts += s_align(4 * (size_t)k * k * oc);
            scr = s_align(4 * (size_t)oc);
        }
    } else if (RT_FAST_PATHS) {
        size_t blocks = ((size_t)oc + 15) / 16;
        p->consts += blocks * sizeof(rt_rq16_t); /* requantization constants */
        if (l->op == CND_RT_OP_CONV2D) { /* the direct conv kernels' input copy or patches */
            size_t grow = ((size_t)k * ic + 3) / 4;
            scr = s_vnni_scratch(k, ic, l->ih, l->iw, l->pad);
            p->consts += s_align(blocks * 16 * k * grow * 4); /* repacked weights */
        } else { /* dense (AVX2 and VNNI): [4 int4 row buffers][int32 sums] */
            scr = RT_PATCHES * s_align(K) + RT_PATCHES * s_align(4 * (size_t)oc);
        }
    }
    if (scr > p->scratch) p->scratch = scr;
}

/* A two-input layer's second input: add needs the first input's shape, concat its height and
 * width and the channels it adds up to. */
static int s_check_second(const s_layer_t *l, const s_act_t *b, cnd_rt_diag_t *d)
{
    if (b->h != l->ih || b->w != l->iw ||
        (l->op == CND_RT_OP_ADD ? b->c != l->ic : l->oc != l->ic + b->c))
        return s_fail(d, CND_RT_EFORMAT, l->eoff + CND_RT_L_SRC + 1, l->li,
                      "add/concat: the second input's shape does not fit");
    return 0;
}

/* Validates the layer entry at `eoff` (index li): its graph fields, its fields against the
 * outputs it reads, then its weights or requantization data; records its output. */
static int s_check_layer(s_parse_t *p, const uint8_t *a, uint32_t eoff, int li, cnd_rt_diag_t *d)
{
    s_layer_t l;
    s_layer_decode(&l, a, eoff, li);
    int rc = s_check_graph(&l, a + eoff, p->version, d);
    if (!rc) rc = s_check_common(&l, a + eoff, &p->act[l.src[0] + 1], d);
    if (!rc && l.nsrc == 2) rc = s_check_second(&l, &p->act[l.src[1] + 1], d);
    if (!rc) rc = s_check_op(&l, d);
    if (!rc && l.weighted) rc = s_check_weights(p, a, &l, d);
    if (!rc && !l.weighted &&
        (l.op == CND_RT_OP_ADD || l.op == CND_RT_OP_CONCAT || l.op == CND_RT_OP_LUT))
        rc = s_check_aux(p, a, &l, d);
    if (rc) return rc;
    s_layer_costs(p, &l);
    p->act[li + 1] = (s_act_t){l.oc, l.oh, l.ow, l.ozp, l.osc};
    p->op[li] = l.op;
    p->pk[li] = (uint16_t)(l.k | l.st << 8);
    p->n_src[li] = l.nsrc;
    for (int j = 0; j < l.nsrc; j++) {
        p->src[li][j] = (int8_t)l.src[j];
        p->readers[l.src[j] + 1]++;
    }
    if (l.nsrc == 1) p->src[li][1] = -1;
    return 0;
}

/* Arena plan: every activation gets an offset in one area, reused once its last reader has run.
 * Times: the input is produced at 0, layer i at i + 1; a tensor lives from its production to its
 * last reader (the logits to the end). A flatten's output is its input's bytes, so it extends
 * that tensor's life instead of having its own. Where a fast kernel set may run conv2d + maxpool
 * as one step (rt_internal.h), the conv's input must outlive the pool's output being written,
 * so it lives one step longer. Tensors are placed in production order at the lowest 64-byte
 * aligned offset that overlaps no placed tensor alive at the same time (first fit); the area is
 * the highest end. Two tensors alive at one time never share bytes, so no kernel reads what it
 * writes. */
static void s_plan(s_parse_t *p)
{
    uint32_t n = p->n_layers, root[CND_RT_MAX_LAYERS + 1], last[CND_RT_MAX_LAYERS + 1];
    size_t size[CND_RT_MAX_LAYERS + 1];
    root[0] = 0;
    for (uint32_t t = 0; t <= n; t++) {
        last[t] = t;
        size[t] = s_align((size_t)p->act[t].c * p->act[t].h * p->act[t].w);
    }
    for (uint32_t i = 0; i < n; i++) {
        root[i + 1] = p->op[i] == CND_RT_OP_FLATTEN ? root[p->src[i][0] + 1] : i + 1;
        for (int j = 0; j < p->n_src[i]; j++) {
            uint32_t r = root[p->src[i][j] + 1];
            if (last[r] < i + 1) last[r] = i + 1;
        }
    }
    last[root[n]] = n + 1; /* the logits are read after the run */
    for (uint32_t i = 0; RT_FAST_PATHS && i + 1 < n; i++)
        if (p->op[i] == CND_RT_OP_CONV2D && p->op[i + 1] == CND_RT_OP_MAXPOOL &&
            p->src[i + 1][0] == (int)i && p->readers[i + 1] == 1) {
            uint32_t r = root[p->src[i][0] + 1];
            if (last[r] < i + 2) last[r] = i + 2;
        }
    p->act_bytes = p->act_sum = 0;
    for (uint32_t t = 0; t <= n; t++) {
        if (root[t] != t) continue;
        p->act_sum += size[t];
        size_t off = 0;
        for (int moved = 1; moved;) { /* raise off past every live conflict until none is left */
            moved = 0;
            for (uint32_t u = 0; u < t; u++) {
                if (root[u] != u || last[u] < t) continue; /* dead when t is produced */
                size_t uo = p->act_off[u];
                if (off < uo + size[u] && uo < off + size[t]) {
                    off = uo + size[u];
                    moved = 1;
                }
            }
        }
        p->act_off[t] = (uint32_t)off;
        if (off + size[t] > p->act_bytes) p->act_bytes = off + size[t];
    }
    for (uint32_t t = 0; t <= n; t++) p->act_off[t] = p->act_off[root[t]];
}

/* Header, body digest and signature trailer (the trailer's signature itself is checked by
 * whoever holds the key, not here). */
static int s_parse_header(s_parse_t *p, const uint8_t *a, size_t len, cnd_rt_diag_t *d)
{
    if (!a) return s_fail(d, CND_RT_EINVAL, 0, -1, "artifact pointer is NULL");
    if (len < CND_RT_HEADER_BYTES)
        return s_fail(d, CND_RT_ETRUNC, (uint32_t)len, -1, "header: fewer than 64 bytes");
    if (memcmp(a, CND_RT_MAGIC, 4))
        return s_fail(d, CND_RT_EFORMAT, 0, -1, "header: magic is not CNDQ");
    p->version = s_u16(a + CND_RT_H_VERSION);
    if (p->version != CND_RT_VERSION_CHAIN && p->version != CND_RT_VERSION)
        return s_fail(d, CND_RT_EFORMAT, CND_RT_H_VERSION, -1, "header: unsupported version");
    if (s_u16(a + CND_RT_H_HDRLEN) != CND_RT_HEADER_BYTES)
        return s_fail(d, CND_RT_EFORMAT, CND_RT_H_HDRLEN, -1, "header: header length is not 64");
    p->body_len = s_u32(a + CND_RT_H_BODYLEN);
    p->file_len = s_u32(a + CND_RT_H_FILELEN);
    if (p->file_len > CND_RT_MAX_FILE)
        return s_fail(d, CND_RT_ERANGE, CND_RT_H_FILELEN, -1,
                      "header: artifact larger than the runtime accepts (64 MiB)");
    if (p->body_len < CND_RT_HEADER_BYTES || p->body_len % CND_RT_ALIGN ||
        (uint64_t)p->file_len != (uint64_t)p->body_len + CND_RT_DIGEST_BYTES + CND_RT_TRAILER_BYTES)
        return s_fail(d, CND_RT_EFORMAT, CND_RT_H_BODYLEN, -1,
                      "header: body and file lengths are inconsistent");
    if (len < p->file_len)
        return s_fail(d, CND_RT_ETRUNC, (uint32_t)len, -1,
                      "artifact is shorter than its header says (truncated)");
    if (len > p->file_len)
        return s_fail(d, CND_RT_EFORMAT, p->file_len, -1,
                      "artifact has bytes after its declared end");
    if (s_u32(a + CND_RT_H_FLAGS))
        return s_fail(d, CND_RT_EFORMAT, CND_RT_H_FLAGS, -1, "header: unknown flags");
    if (s_u16(a + CND_RT_H_NSECT) != CND_RT_NSECTIONS || !s_zero(a + 22, 42))
        return s_fail(d, CND_RT_EFORMAT, CND_RT_H_NSECT, -1,
                      "header: section count or reserved bytes wrong");
    uint8_t dg[32];
    cnd_rt_sha256(dg, a, p->body_len);
    uint8_t diff = 0;
    for (int i = 0; i < 32; i++) diff |= (uint8_t)(dg[i] ^ a[p->body_len + i]);
    if (diff)
        return s_fail(d, CND_RT_ECORRUPT, p->body_len, -1,
                      "digest: SHA-256 of the body does not match (corrupted)");
    const uint8_t *t = a + p->body_len + CND_RT_DIGEST_BYTES;
    uint32_t toff = p->body_len + CND_RT_DIGEST_BYTES, siglen = s_u32(t + CND_RT_T_SIGLEN);
    if (memcmp(t, CND_RT_TRAILER_MAGIC, 4) || s_u16(t + 4) != CND_RT_TRAILER_VERSION)
        return s_fail(d, CND_RT_EFORMAT, toff, -1, "trailer: bad magic or version");
    if (siglen > CND_RT_SIG_MAX || s_u32(t + 12) ||
        !s_zero(t + CND_RT_T_SIGDATA + siglen, CND_RT_SIG_MAX - siglen) ||
        (s_u16(t + CND_RT_T_SCHEME) == 0 && siglen))
        return s_fail(d, CND_RT_EFORMAT, toff + CND_RT_T_SIGLEN, -1,
                      "trailer: signature length or padding invalid");
    return 0;
}

/* The six sections in their order, each with zero reserved bytes and padding. */
static int s_parse_sections(s_parse_t *p, const uint8_t *a, cnd_rt_diag_t *d)
{
    static const uint32_t tags[CND_RT_NSECTIONS] = {CND_RT_TAG_INPT, CND_RT_TAG_LABL,
                                                    CND_RT_TAG_LAYR, CND_RT_TAG_DATA,
                                                    CND_RT_TAG_TEST, CND_RT_TAG_META};
    uint32_t pos = CND_RT_HEADER_BYTES;
    for (int s = 0; s < CND_RT_NSECTIONS; s++) {
        if ((uint64_t)pos + CND_RT_SECTION_HDR > p->body_len)
            return s_fail(d, CND_RT_EFORMAT, pos, -1, "sections: body ends before all sections");
        if (s_u32(a + pos) != tags[s])
            return s_fail(d, CND_RT_EFORMAT, pos, -1,
                          "sections: expected INPT LABL LAYR DATA TEST META in this order");
        uint32_t n = s_u32(a + pos + 4);
        if (!s_zero(a + pos + 8, 8))
            return s_fail(d, CND_RT_EFORMAT, pos + 8, -1, "section: reserved bytes not zero");
        uint64_t end = (uint64_t)pos + CND_RT_SECTION_HDR + n;
        uint64_t padded = (end + CND_RT_ALIGN - 1) & ~(uint64_t)(CND_RT_ALIGN - 1);
        if (padded > p->body_len)
            return s_fail(d, CND_RT_EFORMAT, pos + 4, -1, "section: length runs past the body");
        if (!s_zero(a + end, (size_t)(padded - end)))
            return s_fail(d, CND_RT_EFORMAT, (uint32_t)end, -1, "section: padding not zero");
        p->off[s] = pos + CND_RT_SECTION_HDR;
        p->len[s] = n;
        pos = (uint32_t)padded;
    }
    if (pos != p->body_len)
        return s_fail(d, CND_RT_EFORMAT, pos, -1, "sections: bytes after the last section");
    return 0;
}

/* INPT: the input's shape, layout and zero point. */
static int s_parse_inpt(s_parse_t *p, const uint8_t *a, cnd_rt_diag_t *d)
{
    const uint8_t *in = a + p->off[S_INPT];
    uint32_t ilen = p->len[S_INPT];
    if (ilen < CND_RT_INPT_FIXED)
        return s_fail(d, CND_RT_EFORMAT, p->off[S_INPT], -1, "INPT: too short");
    p->c = s_u16(in);
    p->h = s_u16(in + 2);
    p->w = s_u16(in + 4);
    p->in_zp = s_i32(in + 8);
    if (!p->c || !p->h || !p->w || p->c > CND_RT_MAX_DIM || p->h > CND_RT_MAX_DIM ||
        p->w > CND_RT_MAX_DIM || (uint64_t)p->c * p->h * p->w > CND_RT_MAX_ACT)
        return s_fail(d, CND_RT_ERANGE, p->off[S_INPT], -1, "INPT: input shape out of range");
    if (in[6] || in[7])
        return s_fail(d, CND_RT_EFORMAT, p->off[S_INPT] + 6, -1, "INPT: layout must be HWC (0)");
    if (p->in_zp < -128 || p->in_zp > 127)
        return s_fail(d, CND_RT_ERANGE, p->off[S_INPT] + 8, -1, "INPT: zero point out of range");
    if ((uint64_t)ilen != CND_RT_INPT_FIXED + 264u * p->c)
        return s_fail(d, CND_RT_EFORMAT, p->off[S_INPT] - 12, -1,
                      "INPT: length does not match the channel count");
    p->act[0] = (s_act_t){p->c, p->h, p->w, p->in_zp, s_u32(in + 12)};
    return 0;
}

/* LAYR: the layer count and every layer, chained from the input to Cx1x1 logits. */
static int s_parse_layr(s_parse_t *p, const uint8_t *a, cnd_rt_diag_t *d)
{
    const uint8_t *ly = a + p->off[S_LAYR];
    if (p->len[S_LAYR] < 16)
        return s_fail(d, CND_RT_EFORMAT, p->off[S_LAYR], -1, "LAYR: too short");
    p->n_layers = s_u32(ly);
    if (p->n_layers < 1 || p->n_layers > CND_RT_MAX_LAYERS || !s_zero(ly + 4, 12))
        return s_fail(d, CND_RT_ERANGE, p->off[S_LAYR], -1, "LAYR: layer count not in 1..64");
    if ((uint64_t)p->len[S_LAYR] != 16u + (uint64_t)CND_RT_LAYER_BYTES * p->n_layers)
        return s_fail(d, CND_RT_EFORMAT, p->off[S_LAYR] - 12, -1,
                      "LAYR: length does not match the layer count");
    for (uint32_t i = 0; i < p->n_layers; i++) {
        int rc = s_check_layer(p, a, p->off[S_LAYR] + 16 + i * CND_RT_LAYER_BYTES, (int)i, d);
        if (rc) return rc;
    }
    for (uint32_t i = 0; i + 1 < p->n_layers; i++)
        if (!p->readers[i + 1])
            return s_fail(d, CND_RT_EFORMAT, p->off[S_LAYR] + 16 + i * CND_RT_LAYER_BYTES, (int)i,
                          "LAYR: a layer's output is never read");
    const s_act_t *out = &p->act[p->n_layers];
    if (out->h != 1 || out->w != 1)
        return s_fail(d, CND_RT_EFORMAT, p->off[S_LAYR], (int)p->n_layers - 1,
                      "LAYR: the last layer must output Cx1x1 logits");
    p->n_classes = out->c;
    s_plan(p);
    return 0;
}

/* LABL: none, or one printable NUL-terminated label per class. */
static int s_parse_labl(s_parse_t *p, const uint8_t *a, cnd_rt_diag_t *d)
{
    const uint8_t *lb = a + p->off[S_LABL];
    uint32_t llen = p->len[S_LABL];
    if (llen < 4) return s_fail(d, CND_RT_EFORMAT, p->off[S_LABL], -1, "LABL: too short");
    p->n_labels = s_u32(lb);
    if (p->n_labels && p->n_labels != p->n_classes)
        return s_fail(d, CND_RT_EFORMAT, p->off[S_LABL], -1,
                      "LABL: label count is neither 0 nor the class count");
    uint32_t q = 4;
    for (uint32_t i = 0; i < p->n_labels; i++) {
        if (q >= llen) return s_fail(d, CND_RT_EFORMAT, p->off[S_LABL] + q, -1, "LABL: truncated");
        uint32_t n = lb[q];
        if (n < 1 || n > CND_RT_LABEL_MAX || (uint64_t)q + 2 + n > llen)
            return s_fail(d, CND_RT_EFORMAT, p->off[S_LABL] + q, -1, "LABL: bad label length");
        for (uint32_t j = 0; j < n; j++)
            if (lb[q + 1 + j] < 0x20 || lb[q + 1 + j] == 0x7f)
                return s_fail(d, CND_RT_EFORMAT, p->off[S_LABL] + q + 1 + j, -1,
                              "LABL: control character in a label");
        if (lb[q + 1 + n])
            return s_fail(d, CND_RT_EFORMAT, p->off[S_LABL] + q + 1 + n, -1,
                          "LABL: label not NUL-terminated");
        q += n + 2;
    }
    if (q != llen) return s_fail(d, CND_RT_EFORMAT, p->off[S_LABL] + q, -1, "LABL: trailing bytes");
    return 0;
}

/* TEST: the self-test vectors' count, kind and sizes. */
static int s_parse_test(s_parse_t *p, const uint8_t *a, cnd_rt_diag_t *d)
{
    const uint8_t *ts = a + p->off[S_TEST];
    if (p->len[S_TEST] < 16)
        return s_fail(d, CND_RT_EFORMAT, p->off[S_TEST], -1, "TEST: too short");
    p->n_tests = s_u32(ts);
    uint32_t kind = s_u32(ts + 4), tin = s_u32(ts + 8), tout = s_u32(ts + 12);
    if (p->n_tests > CND_RT_TEST_MAX || kind > CND_RT_TEST_I8)
        return s_fail(d, CND_RT_EFORMAT, p->off[S_TEST], -1, "TEST: count or kind invalid");
    if ((uint64_t)tin != (uint64_t)p->c * p->h * p->w || tout != p->n_classes)
        return s_fail(d, CND_RT_EFORMAT, p->off[S_TEST] + 8, -1,
                      "TEST: vector sizes do not match the model");
    if ((uint64_t)p->len[S_TEST] != 16u + (uint64_t)p->n_tests * (tin + tout))
        return s_fail(d, CND_RT_EFORMAT, p->off[S_TEST] - 12, -1,
                      "TEST: length does not match the vector count");
    return 0;
}

/* META: key/value entries with bounded lengths, nothing after them. */
static int s_parse_meta(const s_parse_t *p, const uint8_t *a, cnd_rt_diag_t *d)
{
    const uint8_t *mt = a + p->off[S_META];
    uint32_t mlen = p->len[S_META];
    if (mlen < 4) return s_fail(d, CND_RT_EFORMAT, p->off[S_META], -1, "META: too short");
    uint32_t nm = s_u32(mt);
    if (nm > CND_RT_META_MAX)
        return s_fail(d, CND_RT_ERANGE, p->off[S_META], -1, "META: too many entries");
    uint32_t q = 4;
    for (uint32_t i = 0; i < 2 * nm; i++) {
        if ((uint64_t)q + 2 > mlen)
            return s_fail(d, CND_RT_EFORMAT, p->off[S_META] + q, -1, "META: truncated");
        uint32_t n = s_u16(mt + q);
        if ((i % 2 == 0 && (n < 1 || n > 64)) || n > 1024 || (uint64_t)q + 2 + n > mlen)
            return s_fail(d, CND_RT_EFORMAT, p->off[S_META] + q, -1, "META: bad entry length");
        q += 2 + n;
    }
    if (q != mlen) return s_fail(d, CND_RT_EFORMAT, p->off[S_META] + q, -1, "META: trailing bytes");
    return 0;
}

/* Validates the whole artifact into *p, in file order except that LAYR comes before LABL and
 * TEST, which are checked against the class count it yields; then the arena it needs. */
static int s_parse(s_parse_t *p, const uint8_t *a, size_t len, cnd_rt_diag_t *d)
{
    memset(p, 0, sizeof *p);
    int rc = s_parse_header(p, a, len, d);
    if (!rc) rc = s_parse_sections(p, a, d);
    if (!rc) rc = s_parse_inpt(p, a, d);
    if (!rc) rc = s_parse_layr(p, a, d);
    if (!rc) rc = s_parse_labl(p, a, d);
    if (!rc) rc = s_parse_test(p, a, d);
    if (!rc) rc = s_parse_meta(p, a, d);
    if (rc) return rc;
    p->arena = (RT_CACHELINE - 1) + s_align(sizeof(struct cnd_rt_model)) +
               s_align(p->n_layers * sizeof(cnd_rt_layer_t)) + p->consts + p->act_bytes +
               s_align(p->scratch);
    return 0;
}

int cnd_rt_arena_size(size_t *out, const uint8_t *art, size_t len, cnd_rt_diag_t *diag)
{
    s_parse_t p;
    if (!out) return s_fail(diag, CND_RT_EINVAL, 0, -1, "output pointer is NULL");
    int rc = s_parse(&p, art, len, diag);
    if (rc) return rc;
    *out = p.arena;
    return 0;
}

static int32_t *s_consts(uint8_t **cur, uint32_t n)
{
    int32_t *r = (int32_t *)(void *)*cur;
    *cur += s_align(4 * (size_t)n);
    return r;
}

void cnd_rt_rq16_fill(rt_rq16_t *rq, const cnd_rt_layer_t *l)
{
#if !RT_FAST_PATHS
    (void)rq; /* no kernel uses the constants: nothing to fill (and no code on devices) */
    (void)l;
#else
    uint32_t B = ((uint32_t)l->out_c + 15) / 16;
    memset(rq, 0, B * sizeof(rt_rq16_t));
    for (uint32_t b = 0; b < B; b++)
        for (uint32_t j = 0; j < 16 && 16 * b + j < l->out_c; j++) {
            uint32_t c = 16 * b + j;
            int32_t sh = l->shift[c], n = sh > 0 ? sh : 0;
            rq[b].bias[j] = l->bias_u8[c];
            rq[b].mult[j] = l->mult[c];
            rq[b].ls[j] = sh < 0 ? -sh : 0;
            rq[b].k1[j & 1][j >> 1] = ((int64_t)1 << 30) + (n ? (int64_t)1 << (30 + n) : 0);
            rq[b].k2[j & 1][j >> 1] = n ? (int64_t)1 << 31 : 0;
            rq[b].sh[j & 1][j >> 1] = 31 + n;
        }
#endif
}

static const rt_rq16_t *s_rq_build(uint8_t **cur, const cnd_rt_layer_t *l)
{
    rt_rq16_t *rq = (rt_rq16_t *)(void *)*cur;
    *cur += (((size_t)l->out_c + 15) / 16) * sizeof(rt_rq16_t);
    cnd_rt_rq16_fill(rq, l);
    return rq;
}

/* conv2d weights in the direct VNNI kernel's order (see cnd_rt_layer_t.wpack). */
static const int8_t *s_pack_conv(uint8_t **cur, cnd_rt_layer_t *l)
{
    uint32_t kc = (uint32_t)l->k * l->in_c, grow = (kc + 3) / 4, G = l->k * grow;
    uint32_t B = ((uint32_t)l->out_c + 15) / 16;
    int8_t *pk = (int8_t *)*cur;
    *cur += s_align((size_t)B * 16 * G * 4);
    l->grow = grow;
    for (uint32_t b = 0; b < B; b++) {
        uint32_t pass = b / RT_VNNI_NB, pb = b % RT_VNNI_NB;
        uint32_t nb = B - pass * RT_VNNI_NB < RT_VNNI_NB ? B - pass * RT_VNNI_NB : RT_VNNI_NB;
        int8_t *dst = pk + (size_t)pass * RT_VNNI_NB * G * 64;
        for (uint32_t g = 0; g < G; g++)
            for (uint32_t j = 0; j < 16; j++)
                for (uint32_t t = 0; t < 4; t++) {
                    uint32_t oc = 16 * b + j, kh = g / grow, r = 4 * (g % grow) + t;
                    int8_t v = 0;
                    if (oc < l->out_c && r < kc) {
                        const uint8_t *wr = l->w + (size_t)oc * l->w_row;
                        uint32_t kk = kh * kc + r;
                        v = l->wbits == 8 ? (int8_t)wr[kk] : cnd_rt_w4(wr, kk);
                    }
                    dst[((size_t)g * nb + pb) * 64 + j * 4 + t] = v;
                }
    }
    return pk;
}

/* Depthwise gconv weights as int32 [kh][kw][c] for the AVX2 kernel (x86 builds). */
static const int32_t *s_pack_dw(uint8_t **cur, const cnd_rt_layer_t *l)
{
    int32_t *wt = (int32_t *)(void *)*cur;
    uint32_t kk = (uint32_t)l->k * l->k;
    *cur += s_align(4 * (size_t)kk * l->out_c);
    for (uint32_t c = 0; c < l->out_c; c++) {
        const uint8_t *wr = l->w + (size_t)c * l->w_row;
        for (uint32_t j = 0; j < kk; j++)
            wt[(size_t)j * l->out_c + c] = l->wbits == 8 ? (int8_t)wr[j] : cnd_rt_w4(wr, j);
    }
    return wt;
}

/* A weighted layer's constants: effective biases for int8 and uint8 inputs, multipliers,
 * shifts, and on x86 the fast kernels' repacked weights and requantization blocks. */
static void s_weights_load(cnd_rt_layer_t *l, const uint8_t *e, const uint8_t *data, uint8_t **cur)
{
    l->K = l->op == CND_RT_OP_DENSE   ? l->in_bytes
           : l->op == CND_RT_OP_GCONV ? (uint32_t)l->k * l->k * (l->in_c / l->groups)
                                      : (uint32_t)l->k * l->k * l->in_c;
    l->w_row = l->wbits == 8 ? l->K : (l->K + 1) / 2;
    l->w = data + s_u32(e + CND_RT_L_W_OFF);
    int32_t *bias = s_consts(cur, l->out_c), *bu8 = s_consts(cur, l->out_c);
    int32_t *mult = s_consts(cur, l->out_c), *shift = s_consts(cur, l->out_c);
    uint32_t boff = s_u32(e + CND_RT_L_BIAS_OFF), moff = s_u32(e + CND_RT_L_MULT_OFF);
    uint32_t soff = s_u32(e + CND_RT_L_SHIFT_OFF);
    for (uint32_t c = 0; c < l->out_c; c++) {
        const uint8_t *wr = l->w + (size_t)c * l->w_row;
        int64_t sum = 0;
        for (uint32_t j = 0; j < l->K; j++) sum += l->wbits == 8 ? (int8_t)wr[j] : cnd_rt_w4(wr, j);
        int64_t b = s_i32(data + boff + 4 * c);
        bias[c] = (int32_t)(b - (int64_t)l->in_zp * sum);
        bu8[c] = (int32_t)(b - ((int64_t)l->in_zp + 128) * sum);
        mult[c] = s_i32(data + moff + 4 * c);
        shift[c] = (int8_t)data[soff + c];
    }
    l->bias = bias;
    l->bias_u8 = bu8;
    l->mult = mult;
    l->shift = shift;
    if (!RT_FAST_PATHS) return;
    for (uint32_t c = 0; c < l->out_c; c++)
        if (shift[c] < 0) l->lshift = 1;
    if (l->op == CND_RT_OP_GCONV) {
        if (cnd_rt_depthwise(l)) l->wt = s_pack_dw(cur, l);
        return;
    }
    l->rq = s_rq_build(cur, l);
    if (l->op == CND_RT_OP_CONV2D) l->wpack = s_pack_conv(cur, l);
}

/* Layer i's run-time form from its checked entry e. */
static void s_layer_load(cnd_rt_layer_t *l, const uint8_t *e, const uint8_t *data, uint8_t **cur,
                         const s_parse_t *p, uint32_t i)
{
    memset(l, 0, sizeof *l);
    l->op = e[CND_RT_L_OP];
    l->wbits = e[CND_RT_L_WBITS];
    l->act_min = (int8_t)e[CND_RT_L_ACT_MIN];
    l->act_max = (int8_t)e[CND_RT_L_ACT_MAX];
    l->in_c = s_u16(e + CND_RT_L_IN_C);
    l->in_h = s_u16(e + CND_RT_L_IN_C + 2);
    l->in_w = s_u16(e + CND_RT_L_IN_C + 4);
    l->out_c = s_u16(e + CND_RT_L_OUT_C);
    l->out_h = s_u16(e + CND_RT_L_OUT_C + 2);
    l->out_w = s_u16(e + CND_RT_L_OUT_C + 4);
    l->k = e[CND_RT_L_K];
    l->stride = e[CND_RT_L_STRIDE];
    l->pad = e[CND_RT_L_PAD];
    l->in_zp = s_i32(e + CND_RT_L_IN_ZP);
    l->out_zp = s_i32(e + CND_RT_L_OUT_ZP);
    l->in_bytes = (uint32_t)l->in_c * l->in_h * l->in_w;
    l->out_bytes = (uint32_t)l->out_c * l->out_h * l->out_w;
    l->groups = s_u16(e + CND_RT_L_GROUPS);
    l->n_src = p->n_src[i];
    l->src[0] = p->src[i][0];
    l->src[1] = p->src[i][1];
    l->n_readers = p->readers[i + 1];
    l->act_off = p->act_off[i + 1];
    if (l->n_src == 2) {
        const s_act_t *b = &p->act[l->src[1] + 1];
        l->in2_c = (uint16_t)b->c;
        l->in2_zp = b->zp;
    }
    if (l->op == CND_RT_OP_LUT) l->w = data + s_u32(e + CND_RT_L_W_OFF);
    if (l->op == CND_RT_OP_ADD || l->op == CND_RT_OP_CONCAT) {
        uint32_t n = l->op == CND_RT_OP_ADD ? 3 : 2, moff = s_u32(e + CND_RT_L_MULT_OFF),
                 soff = s_u32(e + CND_RT_L_SHIFT_OFF);
        int32_t *mult = s_consts(cur, 3), *shift = s_consts(cur, 3);
        for (uint32_t j = 0; j < n; j++) {
            mult[j] = s_i32(data + moff + 4 * j);
            shift[j] = (int8_t)data[soff + j];
        }
        l->mult = mult;
        l->shift = shift;
    }
    if (l->op == CND_RT_OP_DENSE || l->op == CND_RT_OP_CONV2D || l->op == CND_RT_OP_GCONV)
        s_weights_load(l, e, data, cur);
}

int cnd_rt_load(cnd_rt_model_t **out, const uint8_t *art, size_t len, void *arena, size_t arena_len,
                cnd_rt_diag_t *diag)
{
    s_parse_t p;
    if (!out || !arena) return s_fail(diag, CND_RT_EINVAL, 0, -1, "output or arena is NULL");
    int rc = s_parse(&p, art, len, diag);
    if (rc) return rc;
    if (arena_len < p.arena)
        return s_fail(diag, CND_RT_ENOMEM, 0, -1, "arena smaller than cnd_rt_arena_size");

    uintptr_t base = ((uintptr_t)arena + (RT_CACHELINE - 1)) & ~(uintptr_t)(RT_CACHELINE - 1);
    uint8_t *cur = (uint8_t *)arena + (base - (uintptr_t)arena);
    cnd_rt_model_t *m = (cnd_rt_model_t *)(void *)cur;
    cur += s_align(sizeof *m);
    memset(m, 0, sizeof *m);
    m->art = art;
    m->file_len = p.file_len;
    m->body_len = p.body_len;
    m->c = p.c;
    m->h = p.h;
    m->w = p.w;
    m->in_zp = p.in_zp;
    const uint8_t *in = art + p.off[S_INPT];
    m->in_scale_bits = s_u32(in + 12);
    m->lut = (const int8_t *)(in + CND_RT_INPT_FIXED + 8u * p.c);
    m->norm = in + CND_RT_INPT_FIXED;
    m->n_layers = p.n_layers;
    m->layers = (cnd_rt_layer_t *)(void *)cur;
    cur += s_align(p.n_layers * sizeof(cnd_rt_layer_t));
    const uint8_t *data = art + p.off[S_DATA];
    for (uint32_t i = 0; i < p.n_layers; i++)
        s_layer_load(&m->layers[i], art + p.off[S_LAYR] + 16 + i * CND_RT_LAYER_BYTES, data, &cur,
                     &p, i);
    m->n_classes = p.n_classes;
    m->out_scale_bits = s_u32(art + p.off[S_LAYR] + 16 + (p.n_layers - 1) * CND_RT_LAYER_BYTES +
                              CND_RT_L_OUT_SCALE);
    m->n_labels = p.n_labels;
    m->labels = p.n_labels ? art + p.off[S_LABL] + 4 : NULL;
    const uint8_t *ts = art + p.off[S_TEST];
    m->n_tests = p.n_tests;
    m->test_kind = s_u32(ts + 4);
    m->test_in = s_u32(ts + 8);
    m->test_out = s_u32(ts + 12);
    m->tests = ts + 16;
    m->trailer = art + p.body_len + CND_RT_DIGEST_BYTES;
    m->act = (int8_t *)cur;
    m->in_off = p.act_off[0];
    m->act_bytes = p.act_bytes;
    m->act_sum = p.act_sum;
    cur += p.act_bytes;
    m->scratch = (int8_t *)cur;
    m->arena_bytes = p.arena;
    m->weight_bytes = p.weight_bytes;
    m->macs = p.macs;
    rc = cnd_rt_set_kernels(m, CND_RT_KERNELS_AUTO);
    (void)rc; /* AUTO always succeeds: the reference is always there */
    *out = m;
    return 0;
}
