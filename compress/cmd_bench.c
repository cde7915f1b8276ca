/*
 * cmd_bench.c: `condenser bench MODEL(.cnd|.cndq)`: batch-1 latency (p50, p99), batch
 * throughput and working memory of a float model (our OpenBLAS path) or an integer artifact
 * (the edge runtime, kernels chosen at run time or forced with --kernels).
 *
 * `condenser bench secagg ...` belongs to crypto/: main.c matches that two-word command first
 * and calls cnd_cmd_bench_secagg directly. Inputs are seeded random pixels (latency does not
 * depend on the values for these networks); every timed call is measured separately with a
 * monotonic clock after a warm-up, and the batch figure is the best of three passes.
 */
#include "artifact.h"
#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "modelfile.h"
#include "quant_eval.h"
#include "rng.h"
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double s_pct(double *v, long n, double p)
{
    qsort(v, (size_t)n, sizeof *v, s_cmp);
    long i = (long)(p * (double)(n - 1) + 0.5);
    return v[i];
}

typedef struct {
    double p50_us, p99_us, mean_us, throughput;
    size_t mem_bytes;
    const char *engine;
} s_result_t;

static int s_bench_float(s_result_t *r, const char *path, long iters, int batch)
{
    cnd_model_t *m = NULL;
    int rc = cnd_model_load(&m, path);
    if (rc) return rc;
    size_t d = cnd_shape_size(m->in);
    float *x = malloc((size_t)batch * d * sizeof(float));
    double *t = malloc((size_t)iters * sizeof(double));
    if (!x || !t) {
        rc = CND_ENOMEM;
        goto done;
    }
    cnd_rng_t g;
    cnd_rng_seed(&g, 1);
    for (size_t i = 0; i < (size_t)batch * d; i++) x[i] = (float)cnd_rng_below(&g, 256);
    cnd_model_normalize(m, x, (size_t)batch);
    const float *lg;
    if ((rc = cnd_model_reserve(m, 1))) goto done;
    for (long i = 0; i < 200; i++)
        if ((rc = cnd_model_forward(m, x, 1, 0, &lg))) goto done;
    for (long i = 0; i < iters; i++) {
        double t0 = cnd_now();
        if ((rc = cnd_model_forward(m, x + (size_t)(i % batch) * d, 1, 0, &lg))) goto done;
        t[i] = cnd_now() - t0;
    }
    double sum = 0;
    for (long i = 0; i < iters; i++) sum += t[i];
    r->mean_us = 1e6 * sum / (double)iters;
    r->p50_us = 1e6 * s_pct(t, iters, 0.50);
    r->p99_us = 1e6 * s_pct(t, iters, 0.99);
    /* memory for batch 1: activations of every layer plus the layers' scratch */
    size_t mem = 0, work = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        mem += cnd_shape_size(l->out) * sizeof(float);
        cnd_layer_mem_t lm = cnd_layer_ops(l->type)->mem(l, 1);
        mem += (lm.saved + lm.saved2) * sizeof(float) + lm.argmax * sizeof(int32_t);
        if (lm.work > work) work = lm.work;
    }
    r->mem_bytes = mem + work * sizeof(float) + m->num_params * sizeof(float);
    if ((rc = cnd_model_forward(m, x, batch, 0, &lg))) goto done;
    double best = 1e30;
    for (int pass = 0; pass < 3; pass++) {
        double t0 = cnd_now();
        if ((rc = cnd_model_forward(m, x, batch, 0, &lg))) goto done;
        double el = cnd_now() - t0;
        if (el < best) best = el;
    }
    r->throughput = (double)batch / best;
    r->engine = "float32 (OpenBLAS)";
done:
    free(x);
    free(t);
    cnd_model_destroy(&m);
    return rc;
}

static int s_bench_int(s_result_t *r, const char *path, long iters, int batch, const char *kern)
{
    cnd_artifact_t *a = NULL;
    int rc = cnd_artifact_load(&a, path);
    if (rc) return rc;
    cnd_rt_kernels_t k = CND_RT_KERNELS_AUTO;
    if (!strcmp(kern, "ref"))
        k = CND_RT_KERNELS_REF;
    else if (!strcmp(kern, "avx2"))
        k = CND_RT_KERNELS_AVX2;
    else if (!strcmp(kern, "vnni") || !strcmp(kern, "avx512vnni"))
        k = CND_RT_KERNELS_VNNI;
    else if (strcmp(kern, "auto")) {
        rc = cnd_errf(CND_EINVAL, "--kernels: '%s' is not auto, ref, avx2 or vnni", kern);
        goto out;
    }
    if (cnd_rt_set_kernels(a->rt, k)) {
        rc = cnd_errf(CND_EINVAL, "--kernels %s: not supported by this CPU or build", kern);
        goto out;
    }
    if ((rc = cnd_artifact_selftest(a, path))) goto out;
    size_t d = (size_t)a->info.c * a->info.h * a->info.w;
    uint8_t *x = malloc((size_t)batch * d);
    int8_t *lg = malloc(a->info.n_classes);
    double *t = malloc((size_t)iters * sizeof(double));
    if (!x || !lg || !t) {
        rc = CND_ENOMEM;
        goto done;
    }
    cnd_rng_t g;
    cnd_rng_seed(&g, 1);
    for (size_t i = 0; i < (size_t)batch * d; i++) x[i] = (uint8_t)cnd_rng_below(&g, 256);
    for (long i = 0; i < 200; i++) cnd_rt_run_u8(a->rt, lg, x);
    for (long i = 0; i < iters; i++) {
        double t0 = cnd_now();
        cnd_rt_run_u8(a->rt, lg, x + (size_t)(i % batch) * d);
        t[i] = cnd_now() - t0;
    }
    double sum = 0;
    for (long i = 0; i < iters; i++) sum += t[i];
    r->mean_us = 1e6 * sum / (double)iters;
    r->p50_us = 1e6 * s_pct(t, iters, 0.50);
    r->p99_us = 1e6 * s_pct(t, iters, 0.99);
    double best = 1e30;
    for (int pass = 0; pass < 3; pass++) {
        double t0 = cnd_now();
        for (int b = 0; b < batch; b++) cnd_rt_run_u8(a->rt, lg, x + (size_t)b * d);
        double el = cnd_now() - t0;
        if (el < best) best = el;
    }
    r->throughput = (double)batch / best;
    r->mem_bytes = a->info.arena_bytes;
    r->engine = cnd_rt_kernels_name(cnd_rt_get_kernels(a->rt));
done:
    free(x);
    free(lg);
    free(t);
out:
    cnd_artifact_destroy(&a);
    return rc;
}

int cnd_cmd_bench(int argc, char **argv)
{
    long iters = 5000, batch = 256, threads = 1;
    const char *kern = "auto";
    int json = 0;
    const cnd_opt_t opts[] = {
        {"iters", CND_OPT_INT, &iters, "N", "timed batch-1 inferences (default 5000)", 10, 1e8},
        {"batch", CND_OPT_INT, &batch, "B", "batch for the throughput figure (default 256)", 1,
         4096},
        {"kernels", CND_OPT_STR, &kern, "K", ".cndq: auto | ref | avx2 | vnni (default auto)"},
        {"threads", CND_OPT_INT, &threads, "T", ".cnd: BLAS threads (default 1)", 1, 64},
        {"json", CND_OPT_FLAG, &json, NULL, "print the result as JSON"},
        {0}};
    const cnd_cli_t cli = {
        "condenser bench MODEL(.cnd|.cndq) [--iters N] [--batch B] [--kernels K] [--json]\n"
        "       condenser bench secagg [options]\n"
        "       condenser bench proto [options]",
        "Measures inference speed on this machine: batch-1 latency (median and 99th percentile "
        "over --iters calls), throughput at --batch samples (integer artifacts run one sample "
        "after another on one core; float models run one batched pass), and working memory "
        "(the runtime's arena for .cndq; activations, scratch and weights for .cnd).",
        opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_set_threads((int)threads);
    s_result_t r = {0};
    int is_int = cnd_quant_is_artifact(pos[0]);
    rc = is_int ? s_bench_int(&r, pos[0], iters, (int)batch, kern)
                : s_bench_float(&r, pos[0], iters, (int)batch);
    if (rc) return rc;
    if (json)
        printf("{\"model\":\"%s\",\"kind\":\"%s\",\"engine\":\"%s\",\"p50_us\":%.3f,"
               "\"p99_us\":%.3f,\"mean_us\":%.3f,\"batch\":%ld,\"throughput\":%.1f,"
               "\"mem_bytes\":%zu}\n",
               pos[0], is_int ? "int" : "float", r.engine, r.p50_us, r.p99_us, r.mean_us, batch,
               r.throughput, r.mem_bytes);
    else
        printf("%s (%s, %s): batch-1 latency p50 %.2f us, p99 %.2f us (mean %.2f, %ld runs); "
               "throughput %.0f samples/s at batch %ld; %s %zu bytes\n",
               pos[0], is_int ? "int" : "float", r.engine, r.p50_us, r.p99_us, r.mean_us, iters,
               r.throughput, batch, is_int ? "arena" : "working memory", r.mem_bytes);
    return 0;
}
