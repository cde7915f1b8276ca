/*
 * rt_layers.c: where the time of one inference goes, step by step.
 *
 *   cnd_rt_layers ARTIFACT [ITERS [auto|ref|avx2|vnni]]
 *
 * Loads the artifact, then times each step of the execution plan as cnd_rt_run_i8 runs it (a
 * fused conv2d + maxpool is one step; flatten costs nothing) on the first self-test input,
 * ITERS times (default 2000) after a warm-up, and prints per step the minimum and the median in
 * microseconds, then the same for whole cnd_rt_run_u8 calls. Each step reads its inputs from a
 * copy of what its producers wrote in one tapped run, so graph artifacts (add and concat read
 * two earlier layers, anything may read the input) are timed on their real inputs. Medians move
 * with the load of a shared machine; minimums show what the code costs. A benchmark aid for the
 * kernels (docs/benchmarks.md), not part of the runtime: it uses the internal kernel table.
 */
#define _POSIX_C_SOURCE 199309L
#include "rt_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double s_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char *s_op(int op)
{
    static const char *names[] = {"?",    "dense", "conv2d", "maxpool", "avgpool", "gap",
                                  "flat", "relu",  "gconv",  "add",     "concat",  "lut"};
    return op >= 1 && op <= CND_RT_OP_LUT ? names[op] : "?";
}

/* Runs step (layer i, fused with i + 1 when f) from its inputs a (and b) to out. */
static void s_step(cnd_rt_model_t *m, uint32_t i, int f, int8_t *out, const int8_t *a,
                   const int8_t *b)
{
    const cnd_rt_layer_t *l = &m->layers[i];
    if (f) {
        m->kern->conv2d_maxpool(out, a, l, l + 1, m->scratch);
        return;
    }
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
    default: break; /* flatten: no work (the runtime passes its input's pointer on) */
    }
}

/* The tapped run's outputs, one copy per layer. */
typedef struct {
    int8_t **out;
} s_taps_t;

static void s_tap(void *ctx, int layer, const int8_t *out, size_t n)
{
    s_taps_t *t = ctx;
    memcpy(t->out[layer], out, n);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s ARTIFACT [ITERS [auto|ref|avx2|vnni]]\n", argv[0]);
        return 2;
    }
    long iters = argc > 2 ? atol(argv[2]) : 2000;
    const char *ks = argc > 3 ? argv[3] : "auto";
    cnd_rt_kernels_t k = !strcmp(ks, "ref")    ? CND_RT_KERNELS_REF
                         : !strcmp(ks, "avx2") ? CND_RT_KERNELS_AVX2
                         : !strcmp(ks, "vnni") ? CND_RT_KERNELS_VNNI
                                               : CND_RT_KERNELS_AUTO;
    if (iters < 1) iters = 1;
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    static uint8_t art[CND_RT_MAX_FILE / 16];
    size_t len = fread(art, 1, sizeof art, f);
    fclose(f);
    cnd_rt_diag_t d = {0};
    size_t need = 0;
    cnd_rt_model_t *m = NULL;
    void *arena = NULL;
    if (cnd_rt_arena_size(&need, art, len, &d) || !(arena = malloc(need)) ||
        cnd_rt_load(&m, art, len, arena, need, &d)) {
        fprintf(stderr, "%s: refused: %s\n", argv[1], d.what ? d.what : "out of memory");
        return 1;
    }
    if (cnd_rt_set_kernels(m, k)) {
        fprintf(stderr, "kernel set %s not available here\n", ks);
        return 1;
    }
    cnd_rt_info_t info;
    cnd_rt_get_info(m, &info);
    size_t in_bytes = (size_t)info.c * info.h * info.w;
    uint8_t *raw = calloc(in_bytes, 1);
    double *t = malloc((size_t)iters * sizeof *t);
    int8_t *a = malloc(CND_RT_MAX_ACT), *b = malloc(CND_RT_MAX_ACT);
    s_taps_t taps = {calloc(m->n_layers, sizeof(int8_t *))};
    if (!raw || !t || !a || !b || !taps.out) return 1;
    for (uint32_t i = 0; i < m->n_layers; i++)
        if (!(taps.out[i] = malloc(m->layers[i].out_bytes ? m->layers[i].out_bytes : 1))) return 1;
    const uint8_t *v = NULL;
    uint32_t kind = CND_RT_TEST_RAW_U8;
    if (!cnd_rt_selftest_vector(m, 0, &v, NULL, &kind)) memcpy(raw, v, in_bytes);
    if (kind == CND_RT_TEST_RAW_U8)
        cnd_rt_quantize_input(m, a, raw);
    else
        memcpy(a, raw, in_bytes);
    int8_t lg[4096];
    cnd_rt_run_i8_tap(m, lg, a, s_tap, &taps);
    printf("%s: kernels %s, arena %zu bytes, %llu MACs, %ld calls per step\n", argv[1],
           cnd_rt_kernels_name(cnd_rt_get_kernels(m)), need, (unsigned long long)info.macs, iters);
    double sum_min = 0, sum_med = 0;
    for (uint32_t i = 0; i < m->n_layers; i++) {
        const cnd_rt_layer_t *l = &m->layers[i];
        int fz = cnd_rt_fuses(m, i);
        const cnd_rt_layer_t *e = fz ? l + 1 : l;
        const int8_t *x0 = l->src[0] < 0 ? a : taps.out[l->src[0]];
        const int8_t *x1 = l->n_src < 2 ? NULL : l->src[1] < 0 ? a : taps.out[l->src[1]];
        for (long r = 0; r < iters + 50; r++) {
            double t0 = s_now();
            s_step(m, i, fz, b, x0, x1);
            if (r >= 50) t[r - 50] = s_now() - t0;
        }
        qsort(t, (size_t)iters, sizeof *t, s_cmp);
        uint64_t macs =
            (l->op == CND_RT_OP_DENSE || l->op == CND_RT_OP_CONV2D || l->op == CND_RT_OP_GCONV)
                ? (uint64_t)l->K * l->out_c * l->out_h * l->out_w
                : 0;
        printf("  %2u%s %-7s%s %ux%ux%u -> %ux%ux%u  %8llu MACs  min %8.2f us  median %8.2f us\n",
               i, fz ? "+" : " ", s_op(l->op), fz ? "+pool" : "     ", l->in_c, l->in_h, l->in_w,
               e->out_c, e->out_h, e->out_w, (unsigned long long)macs, 1e6 * t[0],
               1e6 * t[iters / 2]);
        sum_min += t[0];
        sum_med += t[iters / 2];
        if (fz) i++;
    }
    printf("  steps total                                       min %8.2f us  median %8.2f us\n",
           1e6 * sum_min, 1e6 * sum_med);
    for (long r = 0; r < iters + 50; r++) {
        double t0 = s_now();
        cnd_rt_run_u8(m, lg, raw);
        if (r >= 50) t[r - 50] = s_now() - t0;
    }
    qsort(t, (size_t)iters, sizeof *t, s_cmp);
    printf("  cnd_rt_run_u8 (with input LUT)                    min %8.2f us  median %8.2f us\n",
           1e6 * t[0], 1e6 * t[iters / 2]);
    for (uint32_t i = 0; i < m->n_layers; i++) free(taps.out[i]);
    free(taps.out);
    free(raw);
    free(t);
    free(a);
    free(b);
    free(arena);
    return 0;
}
