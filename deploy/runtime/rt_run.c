/*
 * rt_run.c: running a loaded model layer by layer, kernel selection, self-test, accessors.
 *
 * Each layer writes its output where the loader's arena plan put it (rt_load.c) and reads its
 * inputs from where their producers wrote them (graph artifacts read any earlier layer); flatten
 * is free (HWC is already flat), so it passes its input's pointer on. A conv2d directly followed by
 * a non-overlapping maxpool runs as one fused step when the kernel set has one (rt_internal.h,
 * "Execution plan"), except in tapped runs, which show every layer's output. The kernel set is a
 * table of function pointers chosen once at load (AUTO = the fastest the CPU has) and changeable
 * for tests and benchmarks.
 */
#include "rt_internal.h"

#include <string.h>

int cnd_rt_kernels_available(cnd_rt_kernels_t k)
{
    if (k == CND_RT_KERNELS_AUTO || k == CND_RT_KERNELS_REF) return 1;
    return cnd_rt_kernels_x86(k) != NULL && cnd_rt_cpu_has(k);
}

int cnd_rt_set_kernels(cnd_rt_model_t *m, cnd_rt_kernels_t k)
{
    if (!m) return CND_RT_EINVAL;
    if (k == CND_RT_KERNELS_AUTO) {
        k = cnd_rt_kernels_available(CND_RT_KERNELS_VNNI)   ? CND_RT_KERNELS_VNNI
            : cnd_rt_kernels_available(CND_RT_KERNELS_AVX2) ? CND_RT_KERNELS_AVX2
                                                            : CND_RT_KERNELS_REF;
    }
    if (k == CND_RT_KERNELS_REF) {
        m->kern = &cnd_rt_kernels_ref;
    } else {
        if (!cnd_rt_kernels_available(k)) return CND_RT_EINVAL;
        m->kern = cnd_rt_kernels_x86(k);
    }
    m->kset = k;
    return 0;
}

cnd_rt_kernels_t cnd_rt_get_kernels(const cnd_rt_model_t *m)
{
    return m->kset;
}

const char *cnd_rt_kernels_name(cnd_rt_kernels_t k)
{
    switch (k) {
    case CND_RT_KERNELS_AUTO: return "auto";
    case CND_RT_KERNELS_REF: return "ref";
    case CND_RT_KERNELS_AVX2: return "avx2";
    case CND_RT_KERNELS_VNNI: return "avx512vnni";
    }
    return "?";
}

void cnd_rt_quantize_input(const cnd_rt_model_t *m, int8_t *x, const uint8_t *raw)
{
    uint32_t C = m->c, n = (uint32_t)m->h * m->w;
    if (C == 1) {
        for (uint32_t i = 0; i < n; i++) x[i] = m->lut[raw[i]];
        return;
    }
    for (uint32_t p = 0; p < n; p++)
        for (uint32_t c = 0; c < C; c++) x[p * C + c] = m->lut[c * 256u + raw[p * C + c]];
}

int cnd_rt_fuses(const cnd_rt_model_t *m, uint32_t i)
{
    if (!RT_FAST_PATHS) return 0; /* only fast kernel sets fuse; keeps device code small */
    if (!m->kern->conv2d_maxpool || i + 1 >= m->n_layers) return 0;
    const cnd_rt_layer_t *l = &m->layers[i], *p = &m->layers[i + 1];
    return l->op == CND_RT_OP_CONV2D && p->op == CND_RT_OP_MAXPOOL && p->stride >= p->k &&
           p->src[0] == (int)i && l->n_readers == 1;
}

/* Runs layer l: out from its inputs a (and b for add/concat). */
static void s_layer(const cnd_rt_model_t *m, const cnd_rt_layer_t *l, int8_t *out, const int8_t *a,
                    const int8_t *b)
{
    switch (l->op) {
    case CND_RT_OP_DENSE: m->kern->dense(out, a, l, m->scratch); break;
    case CND_RT_OP_CONV2D: m->kern->conv2d(out, a, l, m->scratch); break;
    case CND_RT_OP_GCONV: m->kern->gconv(out, a, l, m->scratch); break;
    case CND_RT_OP_MAXPOOL: m->kern->maxpool(out, a, l, m->scratch); break;
    case CND_RT_OP_AVGPOOL: cnd_rt_ref_avgpool(out, a, l); break;
    case CND_RT_OP_GAP: cnd_rt_ref_gap(out, a, l); break;
    case CND_RT_OP_RELU: cnd_rt_ref_relu(out, a, l); break;
    case CND_RT_OP_ADD: m->kern->add(out, a, b, l); break;
    case CND_RT_OP_CONCAT: cnd_rt_ref_concat(out, a, b, l); break;
    case CND_RT_OP_LUT: cnd_rt_ref_lut(out, a, l); break;
    default: break; /* flatten: no work, its output is its input's bytes */
    }
}

/* Runs layers [0, n); returns the last output. With a tap every layer runs on its own. */
static const int8_t *s_run(cnd_rt_model_t *m, const int8_t *x, uint32_t n, cnd_rt_tap_fn tap,
                           void *ctx)
{
    const int8_t *t[CND_RT_MAX_LAYERS + 1]; /* t[0] the input, t[i + 1] layer i's output */
    t[0] = x;
    for (uint32_t i = 0; i < n; i++) {
        const cnd_rt_layer_t *l = &m->layers[i];
        int8_t *out = m->act + l->act_off;
        const int8_t *a = t[l->src[0] + 1], *b = l->n_src == 2 ? t[l->src[1] + 1] : NULL;
        if (!tap && i + 1 < n && cnd_rt_fuses(m, i)) {
            const cnd_rt_layer_t *p = &m->layers[i + 1];
            int8_t *pout = m->act + p->act_off;
            m->kern->conv2d_maxpool(pout, a, l, p, m->scratch);
            t[i + 1] = out; /* not written; nothing else reads it (cnd_rt_fuses) */
            t[i + 2] = pout;
            i++;
            continue;
        }
        if (l->op == CND_RT_OP_FLATTEN) out = (int8_t *)(uintptr_t)a;
        s_layer(m, l, out, a, b);
        if (tap) tap(ctx, (int)i, out, l->out_bytes);
        t[i + 1] = out;
    }
    return t[n];
}

const int8_t *cnd_rt_run_prefix(cnd_rt_model_t *m, const int8_t *x, uint32_t n)
{
    return s_run(m, x, n, NULL, NULL);
}

void cnd_rt_run_i8(cnd_rt_model_t *m, int8_t *logits, const int8_t *x)
{
    memcpy(logits, s_run(m, x, m->n_layers, NULL, NULL), m->n_classes);
}

void cnd_rt_run_i8_tap(cnd_rt_model_t *m, int8_t *logits, const int8_t *x, cnd_rt_tap_fn tap,
                       void *ctx)
{
    memcpy(logits, s_run(m, x, m->n_layers, tap, ctx), m->n_classes);
}

void cnd_rt_run_u8(cnd_rt_model_t *m, int8_t *logits, const uint8_t *raw)
{
    /* The input is quantised into its planned place in the arena. */
    cnd_rt_quantize_input(m, m->act + m->in_off, raw);
    memcpy(logits, s_run(m, m->act + m->in_off, m->n_layers, NULL, NULL), m->n_classes);
}

uint32_t cnd_rt_argmax(const cnd_rt_model_t *m, const int8_t *logits)
{
    uint32_t best = 0;
    for (uint32_t k = 1; k < m->n_classes; k++)
        if (logits[k] > logits[best]) best = k;
    return best;
}

int cnd_rt_selftest_vector(const cnd_rt_model_t *m, uint32_t i, const uint8_t **input,
                           const int8_t **expected, uint32_t *kind)
{
    if (i >= m->n_tests) return CND_RT_EINVAL;
    const uint8_t *v = m->tests + (size_t)i * (m->test_in + m->test_out);
    if (input) *input = v;
    if (expected) *expected = (const int8_t *)(v + m->test_in);
    if (kind) *kind = m->test_kind;
    return 0;
}

int cnd_rt_selftest(cnd_rt_model_t *m, uint32_t *failed)
{
    for (uint32_t i = 0; i < m->n_tests; i++) {
        const uint8_t *in;
        const int8_t *exp;
        uint32_t kind;
        (void)cnd_rt_selftest_vector(m, i, &in, &exp, &kind);
        const int8_t *x = (const int8_t *)in;
        if (kind == CND_RT_TEST_RAW_U8) {
            cnd_rt_quantize_input(m, m->act + m->in_off, in);
            x = m->act + m->in_off;
        }
        if (memcmp(s_run(m, x, m->n_layers, NULL, NULL), exp, m->n_classes)) {
            if (failed) *failed = i;
            return CND_RT_ESELFTEST;
        }
    }
    return 0;
}

void cnd_rt_get_info(const cnd_rt_model_t *m, cnd_rt_info_t *info)
{
    const cnd_rt_layer_t *last = &m->layers[m->n_layers - 1];
    memset(info, 0, sizeof *info);
    info->c = m->c;
    info->h = m->h;
    info->w = m->w;
    info->in_zp = m->in_zp;
    info->in_scale_bits = m->in_scale_bits;
    info->n_classes = m->n_classes;
    info->out_zp = last->out_zp;
    info->out_scale_bits = m->out_scale_bits;
    info->n_layers = m->n_layers;
    info->n_labels = m->n_labels;
    info->n_selftests = m->n_tests;
    info->sig_scheme =
        (uint32_t)m->trailer[CND_RT_T_SCHEME] | (uint32_t)m->trailer[CND_RT_T_SCHEME + 1] << 8;
    info->arena_bytes = m->arena_bytes;
    info->act_bytes = m->act_bytes;
    info->act_sum = m->act_sum;
    info->weight_bytes = m->weight_bytes;
    info->macs = m->macs;
    info->digest = m->art + m->body_len;
    info->norm = m->norm;
}

const char *cnd_rt_label(const cnd_rt_model_t *m, uint32_t i)
{
    if (i >= m->n_labels) return NULL;
    const uint8_t *p = m->labels;
    for (uint32_t j = 0; j < i; j++) p += p[0] + 2u;
    return (const char *)(p + 1);
}

void cnd_rt_signature(const cnd_rt_model_t *m, uint32_t *scheme, const uint8_t **sig,
                      uint32_t *sig_len, uint32_t *signed_len)
{
    const uint8_t *t = m->trailer;
    if (scheme) *scheme = (uint32_t)t[CND_RT_T_SCHEME] | (uint32_t)t[CND_RT_T_SCHEME + 1] << 8;
    if (sig) *sig = t + CND_RT_T_SIGDATA;
    if (sig_len)
        *sig_len = (uint32_t)t[CND_RT_T_SIGLEN] | (uint32_t)t[CND_RT_T_SIGLEN + 1] << 8 |
                   (uint32_t)t[CND_RT_T_SIGLEN + 2] << 16 | (uint32_t)t[CND_RT_T_SIGLEN + 3] << 24;
    if (signed_len) *signed_len = m->body_len + CND_RT_DIGEST_BYTES;
}

const char *cnd_rt_strerror(int code)
{
    switch (code) {
    case CND_RT_OK: return "ok";
    case CND_RT_ENOMEM: return "arena too small";
    case CND_RT_EINVAL: return "invalid argument";
    case CND_RT_EFORMAT: return "malformed artifact";
    case CND_RT_ECORRUPT: return "artifact digest mismatch";
    case CND_RT_ERANGE: return "artifact value out of range";
    case CND_RT_ETRUNC: return "truncated artifact";
    case CND_RT_ESELFTEST: return "self-test output mismatch";
    }
    return "unknown error";
}
