/*
 * rt_time.c: times batch-1 inference of an int8 artifact in the integer runtime, with nothing
 * but the runtime (deploy/runtime) and the C library, so that it builds for targets where
 * `condenser` does not run: bench/latency_fit.sh builds it with arm-linux-gnueabihf-gcc and runs
 * it under qemu-arm to measure the ARM device class of the latency cost model
 * (compress/latency.h).
 *
 *   rt_time ARTIFACT CALLS ROUNDS
 *
 * Loads the artifact, runs its self-test (a wrong result would make the time meaningless), warms
 * up, then times ROUNDS x CALLS calls of cnd_rt_run_u8 on seeded random pixels (as `condenser
 * bench` does), each on its own, and prints the median per-call time in microseconds. The clock
 * is the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not wall time: on a shared machine a
 * call of a few milliseconds is often preempted, and wall time would count the other processes'
 * turns (under qemu-user the guest's clock is the emulating host thread's CPU time, i.e. the
 * cost of emulating the call). Prints "us MEDIAN kernels NAME".
 */
#define _POSIX_C_SOURCE 199309L
#include "cnd_rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double s_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s ARTIFACT CALLS ROUNDS\n", argv[0]);
        return 2;
    }
    long calls = atol(argv[2]), rounds = atol(argv[3]);
    if (calls < 1 || rounds < 1) {
        fprintf(stderr, "CALLS and ROUNDS must be at least 1\n");
        return 2;
    }
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
    int rc = cnd_rt_arena_size(&need, art, len, &d);
    if (!rc) rc = (arena = malloc(need)) ? cnd_rt_load(&m, art, len, arena, need, &d) : 1;
    if (!rc) rc = cnd_rt_selftest(m, NULL);
    if (rc) {
        fprintf(stderr, "%s: %s (%s)\n", argv[1], cnd_rt_strerror(rc), d.what ? d.what : "");
        free(arena);
        return 1;
    }
    cnd_rt_info_t info;
    cnd_rt_get_info(m, &info);
    size_t in_bytes = (size_t)info.c * info.h * info.w;
    uint8_t *x = malloc(in_bytes);
    int8_t *lg = malloc(info.n_classes);
    if (!x || !lg) return 1;
    uint32_t s = 12345u;
    for (size_t k = 0; k < in_bytes; k++) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        x[k] = (uint8_t)(s >> 24);
    }
    for (long i = 0; i < calls / 4 + 1; i++) cnd_rt_run_u8(m, lg, x);
    long n = calls * rounds;
    double *t = n <= 10000000 ? malloc((size_t)n * sizeof *t) : NULL;
    if (!t) return 1;
    for (long i = 0; i < n; i++) {
        double t0 = s_now();
        cnd_rt_run_u8(m, lg, x);
        t[i] = s_now() - t0;
    }
    qsort(t, (size_t)n, sizeof *t, s_cmp);
    printf("us %.3f kernels %s\n", 1e6 * t[n / 2], cnd_rt_kernels_name(cnd_rt_get_kernels(m)));
    free(t);
    free(x);
    free(lg);
    free(arena);
    return 0;
}
