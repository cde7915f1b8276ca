/*
 * onnx_run.c: runs an ONNX model through Condenser's engine for the cross-checks against
 * PyTorch (test_onnx_torch.py) and the teacher benchmark (scripts/bench_onnx.py).
 *
 *   onnx_run MODEL.onnx IN.f32 N OUT.f32 [BATCH [THREADS [REPEATS]]]
 *
 * IN.f32 holds N preprocessed samples (float32, NCHW, the model's input shape); OUT.f32 gets
 * N x classes logits. With REPEATS > 1 the whole pass is timed that many times and the median
 * seconds printed on stdout ("median_s X").
 *
 * MODEL may also be a .cnd (an imported student, test_onnx_student.py): IN.f32 then holds RAW
 * samples, which get the model's own input normalisation, as `condenser eval` applies it, and
 * the logits are those of an inference pass (REPEATS is ignored).
 */
#include "clock.h"
#include "fileio.h"
#include "modelfile.h"
#include "onnx_graph.h"
#include "pool.h"
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The .cnd mode: normalise a copy of the raw samples, run inference passes batch by batch. */
static int s_run_cnd(const char *path, const float *raw, size_t n, size_t in_floats,
                     const char *out_path, int batch)
{
    cnd_model_t *m = NULL;
    if (cnd_model_load(&m, path)) return -1;
    size_t d = cnd_shape_size(m->in), K = (size_t)m->n_classes;
    if (in_floats != n * d) {
        cnd_model_destroy(&m);
        return cnd_errf(CND_EINVAL, "want %zu floats", n * d);
    }
    float *x = malloc(n * d * sizeof(float) + 1), *out = malloc(n * K * sizeof(float) + 1);
    int rc = x && out ? 0 : CND_ENOMEM;
    if (!rc) {
        memcpy(x, raw, n * d * sizeof(float));
        cnd_model_normalize(m, x, n);
    }
    for (size_t s0 = 0; !rc && s0 < n; s0 += (size_t)batch) {
        int B = (int)(n - s0 < (size_t)batch ? n - s0 : (size_t)batch);
        const float *lg;
        if (!(rc = cnd_model_forward(m, x + s0 * d, B, 0, &lg)))
            memcpy(out + s0 * K, lg, (size_t)B * K * sizeof(float));
    }
    if (!rc) rc = cnd_file_write_atomic(out_path, out, n * K * sizeof(float), 0644);
    free(x);
    free(out);
    cnd_model_destroy(&m);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: onnx_run MODEL IN.f32 N OUT.f32 [BATCH [THREADS [REPEATS]]]\n");
        return 2;
    }
    size_t n = strtoul(argv[3], NULL, 10);
    int batch = argc > 5 ? atoi(argv[5]) : 64, threads = argc > 6 ? atoi(argv[6]) : 1;
    int reps = argc > 7 ? atoi(argv[7]) : 1;
    cnd_set_threads(threads);
    size_t plen = strlen(argv[1]);
    if (plen > 4 && strcmp(argv[1] + plen - 4, ".cnd") == 0) {
        uint8_t *raw = NULL;
        size_t len = 0;
        int rc = cnd_file_read(argv[2], (size_t)1 << 31, &raw, &len);
        if (!rc) rc = s_run_cnd(argv[1], (const float *)raw, n, len / 4, argv[4], batch);
        free(raw);
        if (rc) fprintf(stderr, "onnx_run: %s\n", cnd_err_detail());
        return rc ? 1 : 0;
    }
    cnd_onnx_t *g = NULL;
    if (cnd_onnx_load(&g, argv[1])) {
        fprintf(stderr, "onnx_run: %s\n", cnd_err_detail());
        return 1;
    }
    cnd_shape_t s = cnd_onnx_input_shape(g);
    size_t d = cnd_shape_size(s), K = (size_t)cnd_onnx_classes(g);
    uint8_t *raw = NULL;
    size_t len = 0;
    if (cnd_file_read(argv[2], (size_t)1 << 31, &raw, &len) || len != n * d * 4) {
        fprintf(stderr, "onnx_run: %s: want %zu floats\n", argv[2], n * d);
        return 1;
    }
    float *out = malloc(n * K * sizeof(float) + 1);
    double *t = malloc((size_t)(reps > 0 ? reps : 1) * sizeof(double));
    for (int r = 0; r < reps; r++) {
        double t0 = cnd_now();
        for (size_t s0 = 0; s0 < n; s0 += (size_t)batch) {
            int B = (int)(n - s0 < (size_t)batch ? n - s0 : (size_t)batch);
            const float *lg;
            if (cnd_onnx_run(g, (const float *)raw + s0 * d, B, &lg)) {
                fprintf(stderr, "onnx_run: %s\n", cnd_err_detail());
                return 1;
            }
            memcpy(out + s0 * K, lg, (size_t)B * K * sizeof(float));
        }
        t[r] = cnd_now() - t0;
    }
    if (reps > 1) {
        qsort(t, (size_t)reps, sizeof(double), s_cmp);
        printf("median_s %.6f\n", t[reps / 2]);
    }
    if (cnd_file_write_atomic(argv[4], out, n * K * sizeof(float), 0644)) {
        fprintf(stderr, "onnx_run: %s\n", cnd_err_detail());
        return 1;
    }
    free(t);
    free(out);
    free(raw);
    cnd_onnx_destroy(&g);
    return 0;
}
