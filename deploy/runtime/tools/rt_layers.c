/*
 * rt_layers.c: where the time of one inference goes, step by step.
 *
 *   cnd_rt_layers ARTIFACT [ITERS [auto|ref|avx2|vnni]]
 *
 * Loads the artifact, then times each step of the execution plan as cnd_rt_run_i8 runs it (a
 * fused conv2d + maxpool is one step; flatten costs nothing) on the first self-test input,
 * ITERS times (default 2000) after a warm-up, and prints per step the minimum and the median in
 * microseconds, then the same for whole cnd_rt_run_u8 calls. Medians move with the load of a
 * shared machine; minimums show what the code costs. A benchmark aid for the kernels
 * (docs/benchmarks.md), not part of the runtime: it uses the internal kernel table.
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
    static const char *names[] = {"?",       "dense", "conv2d",  "maxpool",
                                  "avgpool", "gap",   "flatten", "relu"};
    return op >= 1 && op <= 7 ? names[op] : "?";
}

/* Runs step (layer i, fused with i + 1 when f) from in to out. */
static void s_step(cnd_rt_model_t *m, uint32_t i, int f, int8_t *out, const int8_t *in)
{
    const cnd_rt_layer_t *l = &m->layers[i];
    if (f) {
        m->kern->conv2d_maxpool(out, in, l, l + 1, m->scratch);
        return;
    }
    switch (l->op) {
    case CND_RT_OP_DENSE: m->kern->dense(out, in, l, m->scratch); break;
    case CND_RT_OP_CONV2D: m->kern->conv2d(out, in, l, m->scratch); break;
    case CND_RT_OP_MAXPOOL: m->kern->maxpool(out, in, l, m->scratch); break;
    case CND_RT_OP_AVGPOOL: cnd_rt_ref_avgpool(out, in, l); break;
    case CND_RT_OP_GAP: cnd_rt_ref_gap(out, in, l); break;
    case CND_RT_OP_RELU: cnd_rt_ref_relu(out, in, l); break;
    default: memcpy(out, in, l->out_bytes); break;
    }
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
    if (!raw || !t || !a || !b) return 1;
    const uint8_t *v = NULL;
    uint32_t kind = CND_RT_TEST_RAW_U8;
    if (!cnd_rt_selftest_vector(m, 0, &v, NULL, &kind)) memcpy(raw, v, in_bytes);
    if (kind == CND_RT_TEST_RAW_U8)
        cnd_rt_quantize_input(m, a, raw);
    else
        memcpy(a, raw, in_bytes);
    printf("%s: kernels %s, arena %zu bytes, %llu MACs, %ld calls per step\n", argv[1],
           cnd_rt_kernels_name(cnd_rt_get_kernels(m)), need, (unsigned long long)info.macs, iters);
    double sum_min = 0, sum_med = 0;
    for (uint32_t i = 0; i < m->n_layers; i++) {
        const cnd_rt_layer_t *l = &m->layers[i];
        int fz = cnd_rt_fuses(m, i);
        const cnd_rt_layer_t *e = fz ? l + 1 : l;
        for (long r = 0; r < iters + 50; r++) {
            double t0 = s_now();
            s_step(m, i, fz, b, a);
            if (r >= 50) t[r - 50] = s_now() - t0;
        }
        qsort(t, (size_t)iters, sizeof *t, s_cmp);
        uint64_t macs = (l->op == CND_RT_OP_DENSE || l->op == CND_RT_OP_CONV2D)
                            ? (uint64_t)l->K * l->out_c * l->out_h * l->out_w
                            : 0;
        printf("  %2u%s %-7s%s %ux%ux%u -> %ux%ux%u  %8llu MACs  min %8.2f us  median %8.2f us\n",
               i, fz ? "+" : " ", s_op(l->op), fz ? "+pool" : "     ", l->in_c, l->in_h, l->in_w,
               e->out_c, e->out_h, e->out_w, (unsigned long long)macs, 1e6 * t[0],
               1e6 * t[iters / 2]);
        sum_min += t[0];
        sum_med += t[iters / 2];
        int8_t *x = a;
        a = b;
        b = x;
        if (fz) i++;
    }
    printf("  steps total                                       min %8.2f us  median %8.2f us\n",
           1e6 * sum_min, 1e6 * sum_med);
    int8_t lg[4096];
    for (long r = 0; r < iters + 50; r++) {
        double t0 = s_now();
        cnd_rt_run_u8(m, lg, raw);
        if (r >= 50) t[r - 50] = s_now() - t0;
    }
    qsort(t, (size_t)iters, sizeof *t, s_cmp);
    printf("  cnd_rt_run_u8 (with input LUT)                    min %8.2f us  median %8.2f us\n",
           1e6 * t[0], 1e6 * t[iters / 2]);
    free(raw);
    free(t);
    free(a);
    free(b);
    free(arena);
    return 0;
}
