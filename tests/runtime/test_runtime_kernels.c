/*
 * test_runtime_kernels.c: every runtime kernel against an independent wide-integer model of
 * the layer (int64 sums straight from the quantized model's fields, no effective-bias tricks),
 * and every fast kernel set (AVX2, AVX-512 VNNI, when the CPU has them) against the scalar
 * reference bit for bit, on every layer output of random models: odd sizes (tails of 16 and
 * 64 bytes, channel counts not multiple of 4), strides, padding, int8 and int4 weights,
 * extreme weights, negative shifts, extreme zero points, and inputs at -128 / 127.
 *
 * Untapped runs fuse conv2d + maxpool where the kernel set can (rt_internal.h, "Execution
 * plan"), so each fast set also runs every prefix of the model untapped (cnd_rt_run_prefix)
 * and compares its last output with the reference's layer output: fused steps, the direct VNNI
 * conv on its padded copy and its patch mode, 1 to 5 channel blocks, pooling windows that span
 * tiles, pools with stride above the window, conv outputs the pool leaves unused.
 */
#include "check.h"
#include "cnd_rt_requant.h"
#include "quant_testutil.h"
#include "rt_internal.h"

#include <stdio.h>

typedef struct {
    int n;
    int8_t *out[CND_RT_MAX_LAYERS];
    size_t len[CND_RT_MAX_LAYERS];
} s_trace_t;

static void s_tap(void *ctx, int layer, const int8_t *out, size_t n)
{
    s_trace_t *t = ctx;
    t->out[layer] = malloc(n);
    memcpy(t->out[layer], out, n);
    t->len[layer] = n;
    t->n = layer + 1;
}

static void s_trace_free(s_trace_t *t)
{
    for (int i = 0; i < t->n; i++) free(t->out[i]);
    t->n = 0;
}

/* acc * M by the documented arithmetic, in wide integers, before the zero point. */
static int32_t s_wide_mbqm(int64_t acc, int32_t mult, int32_t sh)
{
    __int128 x = acc;
    if (sh < 0) x *= (__int128)1 << -sh;
    if (x > INT32_MAX) x = INT32_MAX;
    if (x < INT32_MIN) x = INT32_MIN;
    int32_t y = cnd_rt_srdhm((int32_t)x, mult);
    return cnd_rt_rdbp(y, sh > 0 ? sh : 0);
}

static int8_t s_wide_requant(int64_t acc, const cnd_qlayer_t *l, int c)
{
    /* the documented arithmetic, in wide integers */
    int64_t y = s_wide_mbqm(acc, l->mult[c], l->shift[c]);
    if (y > 255) y = 255;
    if (y < -256) y = -256;
    int64_t v = y + l->out_zp;
    if (v < l->act_min) v = l->act_min;
    if (v > l->act_max) v = l->act_max;
    return (int8_t)v;
}

/* Grouped conv2d, add, concat and lut (graph artifacts) from inputs x and x2 (zero point z2). */
static int s_check_graph_op(const cnd_qlayer_t *l, const int8_t *x, const int8_t *x2, int32_t z2,
                            const int8_t *got)
{
    int bad = 0, C = l->in_c, H = l->in_h, W = l->in_w, n = C * H * W;
    if (l->op == CND_RT_OP_GCONV) {
        int cg = C / l->groups, og = l->out_c / l->groups;
        for (int oh = 0; oh < l->out_h; oh++)
            for (int ow = 0; ow < l->out_w; ow++)
                for (int o = 0; o < l->out_c; o++) {
                    int64_t acc = l->bias[o];
                    for (int i = 0; i < l->k; i++)
                        for (int j = 0; j < l->k; j++) {
                            int ih = oh * l->stride - l->pad + i, iw = ow * l->stride - l->pad + j;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue; /* real 0 */
                            for (int c = 0; c < cg; c++)
                                acc += ((int64_t)x[((size_t)ih * W + iw) * C + (o / og) * cg + c] -
                                        l->in_zp) *
                                       l->w[(size_t)o * l->K + ((size_t)i * l->k + j) * cg + c];
                        }
                    bad += s_wide_requant(acc, l, o) !=
                           got[((size_t)oh * l->out_w + ow) * l->out_c + o];
                }
    } else if (l->op == CND_RT_OP_ADD) {
        for (int i = 0; i < n; i++) {
            int64_t sum = (int64_t)s_wide_mbqm(((int64_t)x[i] - l->in_zp) * (1 << 20), l->mult[0],
                                               l->shift[0]) +
                          s_wide_mbqm(((int64_t)x2[i] - z2) * (1 << 20), l->mult[1], l->shift[1]);
            if (sum > INT32_MAX) sum = INT32_MAX;
            if (sum < INT32_MIN) sum = INT32_MIN;
            bad += s_wide_requant(sum,
                                  &(cnd_qlayer_t){.mult = l->mult + 2,
                                                  .shift = l->shift + 2,
                                                  .out_zp = l->out_zp,
                                                  .act_min = l->act_min,
                                                  .act_max = l->act_max},
                                  0) != got[i];
        }
    } else if (l->op == CND_RT_OP_CONCAT) {
        int c2 = l->out_c - C;
        for (int p = 0; p < H * W; p++)
            for (int c = 0; c < l->out_c; c++) {
                int64_t v =
                    c < C ? (int64_t)x[p * C + c] - l->in_zp : (int64_t)x2[p * c2 + c - C] - z2;
                bad += s_wide_requant(v, l, c < C ? 0 : 1) != got[p * l->out_c + c];
            }
    } else { /* lut */
        for (int i = 0; i < n; i++) bad += l->w[x[i] + 128] != got[i];
    }
    return bad;
}

/* Recomputes layer l from its input x (HWC; x2 and z2: the second input of add/concat) and
 * compares with got. Returns mismatches. */
static int s_check_layer(const cnd_qlayer_t *l, const int8_t *x, const int8_t *x2, int32_t z2,
                         const int8_t *got)
{
    int bad = 0, C = l->in_c, H = l->in_h, W = l->in_w;
    switch (l->op) {
    case CND_RT_OP_GCONV:
    case CND_RT_OP_ADD:
    case CND_RT_OP_CONCAT:
    case CND_RT_OP_LUT: return s_check_graph_op(l, x, x2, z2, got);
    case CND_RT_OP_DENSE:
        for (int o = 0; o < l->out_c; o++) {
            int64_t acc = l->bias[o];
            for (int k = 0; k < l->K; k++)
                acc += ((int64_t)x[k] - l->in_zp) * l->w[(size_t)o * l->K + k];
            bad += s_wide_requant(acc, l, o) != got[o];
        }
        break;
    case CND_RT_OP_CONV2D:
        for (int oh = 0; oh < l->out_h; oh++)
            for (int ow = 0; ow < l->out_w; ow++)
                for (int o = 0; o < l->out_c; o++) {
                    int64_t acc = l->bias[o];
                    for (int i = 0; i < l->k; i++)
                        for (int j = 0; j < l->k; j++) {
                            int ih = oh * l->stride - l->pad + i, iw = ow * l->stride - l->pad + j;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue; /* real 0 */
                            for (int c = 0; c < C; c++)
                                acc += ((int64_t)x[((size_t)ih * W + iw) * C + c] - l->in_zp) *
                                       l->w[(size_t)o * l->K + ((size_t)i * l->k + j) * C + c];
                        }
                    bad += s_wide_requant(acc, l, o) !=
                           got[((size_t)oh * l->out_w + ow) * l->out_c + o];
                }
        break;
    case CND_RT_OP_MAXPOOL:
    case CND_RT_OP_AVGPOOL:
        for (int oh = 0; oh < l->out_h; oh++)
            for (int ow = 0; ow < l->out_w; ow++)
                for (int c = 0; c < C; c++) {
                    int mx = -128;
                    long sum = 0;
                    for (int i = 0; i < l->k; i++)
                        for (int j = 0; j < l->k; j++) {
                            int v =
                                x[((size_t)(oh * l->stride + i) * W + ow * l->stride + j) * C + c];
                            if (v > mx) mx = v;
                            sum += v;
                        }
                    long n = (long)l->k * l->k;
                    /* round half away from zero, written with floor */
                    long avg = sum >= 0 ? (2 * sum + n) / (2 * n) : -((-2 * sum + n) / (2 * n));
                    int want = l->op == CND_RT_OP_MAXPOOL ? mx : (int)avg;
                    bad += want != got[((size_t)oh * l->out_w + ow) * C + c];
                }
        break;
    case CND_RT_OP_GAP:
        for (int c = 0; c < C; c++) {
            long sum = 0, n = (long)H * W;
            for (long p = 0; p < n; p++) sum += x[p * C + c];
            long avg = sum >= 0 ? (2 * sum + n) / (2 * n) : -((-2 * sum + n) / (2 * n));
            bad += avg != got[c];
        }
        break;
    case CND_RT_OP_RELU:
        for (int i = 0; i < C * H * W; i++) {
            int v = x[i] < l->act_min ? l->act_min : x[i] > l->act_max ? l->act_max : x[i];
            bad += v != got[i];
        }
        break;
    default:
        for (int i = 0; i < C * H * W; i++) bad += x[i] != got[i];
        break;
    }
    return bad;
}

/* Pushes some weights to the extremes and varies requantization so edge paths run. */
static void s_extremes(cnd_qmodel_t *q, cnd_rng_t *r, int wbits)
{
    int qmax = wbits == 8 ? 127 : 7;
    for (int i = 0; i < q->n_layers; i++) {
        cnd_qlayer_t *l = &q->layers[i];
        if (l->op == CND_RT_OP_ADD) /* left shifts and large multipliers: saturating paths */
            for (int j = 0; j < 3; j++) {
                if (cnd_rng_below(r, 3) == 0) l->shift[j] = -(int32_t)cnd_rng_below(r, 12);
                if (cnd_rng_below(r, 3) == 0) l->mult[j] = 0x7fffffff;
            }
        if (!l->w || l->op == CND_RT_OP_LUT) continue;
        for (int o = 0; o < l->out_c; o++) {
            if (cnd_rng_below(r, 3) == 0)
                for (int k = 0; k < l->K; k++)
                    l->w[(size_t)o * l->K + k] =
                        (int8_t)(cnd_rng_below(r, 2) ? qmax : -qmax - (wbits == 4));
            if (cnd_rng_below(r, 4) == 0) l->shift[o] = -(int32_t)cnd_rng_below(r, 8);
            if (cnd_rng_below(r, 5) == 0) l->mult[o] = 0x7fffffff;
        }
        if (cnd_rng_below(r, 3) == 0) l->out_zp = cnd_rng_below(r, 2) ? 127 : -128;
        if (l->act_min > -128 || l->act_max < 127) { /* a fused relu or relu6 clamp */
            l->act_min = l->out_zp;
            if (l->act_max < l->act_min) l->act_max = 127;
        }
    }
    /* keep the zero-point chain consistent (each layer reads its producer's) */
    for (int i = 1; i < q->n_layers; i++) {
        cnd_qlayer_t *l = &q->layers[i];
        if (l->srcq[0] < 0) continue;
        const cnd_qlayer_t *p = &q->layers[l->srcq[0]];
        l->in_zp = p->out_zp;
        l->in_scale = p->out_scale;
        if (!l->w && l->op != CND_RT_OP_ADD && l->op != CND_RT_OP_CONCAT) {
            l->out_zp = l->in_zp;
            l->out_scale = l->in_scale;
            if (l->op == CND_RT_OP_RELU) l->act_min = l->in_zp;
            if (l->act_max < l->act_min) l->act_max = 127;
        }
    }
}

int main(void)
{
    static const struct {
        const char *spec;
        cnd_shape_t in;
    } cases[] = {
        {"flatten dense(1)", {1, 1, 1}},
        {"flatten dense(7) relu dense(3)", {1, 1, 7}},
        {"flatten dense(13) dense(9)", {1, 8, 8}},
        {"flatten dense(5) relu dense(10)", {1, 1, 65}},
        {"flatten dense(6) relu dense(4)", {3, 5, 9}},
        {"dense(33) relu dense(2)", {1, 13, 10}},
        {"conv2d(5,3,pad=1) relu flatten dense(3)", {1, 6, 6}},
        {"conv2d(9,3,stride=2) relu maxpool(2) flatten dense(4)", {3, 11, 11}},
        {"conv2d(3,1) relu conv2d(7,5,pad=2) relu gap dense(2)", {2, 7, 9}},
        {"conv2d(6,2,stride=3,pad=1) avgpool(2) relu flatten dense(3)", {5, 12, 10}},
        {"conv2d(33,3,pad=1) relu maxpool(2,stride=1) conv2d(4,3) relu gap dense(5)", {2, 6, 6}},
        {"conv2d(16,4,stride=2,pad=3) relu maxpool(3,stride=2) flatten dense(6)", {4, 15, 15}},
        {"conv2d(70,3,pad=1) relu maxpool(2) flatten dense(65) relu dense(10)", {1, 8, 8}},
        {"relu maxpool(2) flatten dense(3)", {2, 4, 4}},
        /* the Fashion-MNIST CNN's structure: two fused conv + pool steps, 2 and 4 blocks */
        {"conv2d(32,3,pad=1) relu maxpool(2) conv2d(64,3,pad=1) relu maxpool(2) flatten "
         "dense(16) relu dense(10)",
         {1, 12, 12}},
        /* 3x3 windows span tiles; conv rows/columns the pool does not use */
        {"conv2d(20,3,pad=1) relu maxpool(3,stride=3) flatten dense(3)", {3, 10, 11}},
        /* no ReLU before the pool, conv stride 2, pool stride above its window, 3 blocks */
        {"conv2d(48,3,stride=2,pad=2) maxpool(2,stride=3) flatten dense(4)", {4, 13, 13}},
        /* padding large against a tiny input: the VNNI conv's patch mode, fused and not */
        {"conv2d(7,3,pad=2) relu maxpool(2) conv2d(5,3,pad=2) relu flatten dense(3)", {300, 1, 1}},
        /* graph artifacts (version 2): depthwise and grouped convs with odd channel counts
         * (tails of the 8-lane depthwise kernel), strides, padding, relu6 and hardswish, residual
         * adds (one reading the input, one with a relu), concat of differently scaled inputs,
         * a conv + pool pair whose input another layer also reads, and an inverted residual */
        {"conv2d(16,3,stride=2,pad=1) batchnorm relu6 mbconv(2,16,1) dwconv(3,stride=2,pad=1) "
         "hardswish gap dense(10)",
         {1, 14, 14}},
        {"conv2d(21,3,pad=1) relu6 dwconv(5,stride=2,pad=2) relu6 conv2d(12,3,pad=1,groups=3) "
         "hardswish gap dense(4)",
         {3, 11, 9}},
        {"a=conv2d(11,1) dwconv(3,pad=1) add(@a) relu @input conv2d(5,3,pad=1) concat(@n3) "
         "maxpool(2) flatten dense(5)",
         {3, 8, 8}},
        {"stem=conv2d(8,3,pad=1) relu conv2d(8,3,pad=1) maxpool(2) @stem maxpool(2) add(@n3) "
         "resblock(16,2) gap dense(3)",
         {2, 12, 12}},
        {"dwconv(3,pad=1) add(@input) conv2d(9,1) hardswish dwconv(3) relu6 gap dense(6)",
         {9, 7, 7}},
    };
    cnd_rng_t r;
    cnd_rng_seed(&r, 99);
    int n_fast = 0, n_fused = 0, n_graph = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++)
        for (int wbits = 8; wbits >= 4; wbits -= 4)
            for (int variant = 0; variant < 2; variant++) {
                cnd_qmodel_t *q = NULL;
                int rc = qt_make(&q, NULL, cases[ci].spec, cases[ci].in, wbits,
                                 variant ? CND_QM_PERCENTILE : CND_QM_MINMAX, 100 + ci);
                CHECK_EQ_INT(rc, 0);
                if (rc) {
                    fprintf(stderr, "case %zu: %s\n", ci, cnd_err_detail());
                    continue;
                }
                if (variant) s_extremes(q, &r, wbits);
                q->n_tests = 0;
                uint8_t *a;
                size_t len;
                CHECK_EQ_INT(cnd_artifact_serialize(q, &a, &len), 0);
                cnd_artifact_t *art = NULL;
                rc = cnd_artifact_open(&art, a, len, "case");
                CHECK_EQ_INT(rc, 0);
                if (rc) {
                    fprintf(stderr, "case %zu w%d v%d: %s\n", ci, wbits, variant, cnd_err_detail());
                    free(a);
                    cnd_qmodel_destroy(&q);
                    continue;
                }
                /* Arena plan: never more than one buffer per activation, and less for the graph
                 * cases (residual adds, concat); the per-layer checks below recompute every
                 * layer from the copies the tap took of its inputs when they were written, so a
                 * buffer reused while still needed shows as a wrong layer output. */
                CHECK(art->info.act_bytes <= art->info.act_sum);
                if (strstr(cases[ci].spec, "add") || strstr(cases[ci].spec, "mbconv") ||
                    strstr(cases[ci].spec, "concat")) {
                    n_graph++;
                    CHECK(art->info.act_bytes < art->info.act_sum);
                }
                size_t d = cnd_shape_size(cases[ci].in);
                int8_t *x = malloc(d);
                for (int trial = 0; trial < 6; trial++) {
                    for (size_t i = 0; i < d; i++)
                        x[i] = trial == 0   ? -128
                               : trial == 1 ? 127
                                            : (int8_t)(cnd_rng_below(&r, 256) - 128);
                    s_trace_t ref = {0};
                    int8_t lref[4096], lfast[4096];
                    CHECK_EQ_INT(cnd_rt_set_kernels(art->rt, CND_RT_KERNELS_REF), 0);
                    cnd_rt_run_i8_tap(art->rt, lref, x, s_tap, &ref);
                    CHECK_EQ_INT(ref.n, q->n_layers);
                    for (int li = 0; li < ref.n; li++) {
                        const cnd_qlayer_t *ql = &q->layers[li];
                        int s0 = ql->srcq[0], s1 = ql->srcq[1];
                        const int8_t *lin = s0 >= 0 ? ref.out[s0] : x;
                        const int8_t *lin2 = ql->n_src == 2 ? (s1 >= 0 ? ref.out[s1] : x) : NULL;
                        int32_t z2 = s1 >= 0 ? q->layers[s1].out_zp : q->in_zp;
                        int bad = s_check_layer(ql, lin, lin2, z2, ref.out[li]);
                        if (bad)
                            fprintf(stderr, "case %zu w%d v%d layer %d op %d: %d wrong\n", ci,
                                    wbits, variant, li, q->layers[li].op, bad);
                        CHECK_EQ_INT(bad, 0);
                    }
                    for (int k = CND_RT_KERNELS_AVX2; k <= CND_RT_KERNELS_VNNI; k++) {
                        if (!cnd_rt_kernels_available((cnd_rt_kernels_t)k)) continue;
                        n_fast++;
                        s_trace_t fast = {0};
                        CHECK_EQ_INT(cnd_rt_set_kernels(art->rt, (cnd_rt_kernels_t)k), 0);
                        cnd_rt_run_i8_tap(art->rt, lfast, x, s_tap, &fast);
                        for (int li = 0; li < ref.n && li < fast.n; li++) {
                            int same = fast.len[li] == ref.len[li] &&
                                       !memcmp(fast.out[li], ref.out[li], ref.len[li]);
                            if (!same)
                                fprintf(stderr, "case %zu w%d v%d layer %d: %s differs\n", ci,
                                        wbits, variant, li,
                                        cnd_rt_kernels_name((cnd_rt_kernels_t)k));
                            CHECK(same);
                        }
                        CHECK(!memcmp(lref, lfast, (size_t)q->n_classes));
                        s_trace_free(&fast);
                        /* untapped (fused) runs of every prefix */
                        for (int n = 1; n <= ref.n; n++) {
                            const int8_t *got = cnd_rt_run_prefix(art->rt, x, (uint32_t)n);
                            int same = !memcmp(got, ref.out[n - 1], ref.len[n - 1]);
                            int fused = n >= 2 && cnd_rt_fuses(art->rt, (uint32_t)n - 2);
                            n_fused += fused;
                            if (!same)
                                fprintf(stderr, "case %zu w%d v%d layers 0..%d%s: %s differs\n", ci,
                                        wbits, variant, n - 1, fused ? " (fused)" : "",
                                        cnd_rt_kernels_name((cnd_rt_kernels_t)k));
                            CHECK(same);
                        }
                        int8_t lrun[4096];
                        cnd_rt_run_i8(art->rt, lrun, x);
                        CHECK(!memcmp(lref, lrun, (size_t)q->n_classes));
                    }
                    s_trace_free(&ref);
                }
                free(x);
                cnd_artifact_destroy(&art);
                free(a);
                cnd_qmodel_destroy(&q);
            }
    if (cnd_rt_kernels_available(CND_RT_KERNELS_VNNI)) CHECK(n_fused > 0);
    CHECK(n_graph >= 4 * 4);
    fprintf(stderr, "fast kernel comparisons: %d, of fused steps %d (avx2 %s, vnni %s)\n", n_fast,
            n_fused, cnd_rt_kernels_available(CND_RT_KERNELS_AVX2) ? "yes" : "no",
            cnd_rt_kernels_available(CND_RT_KERNELS_VNNI) ? "yes" : "no");
    return check_result("test_runtime_kernels");
}
