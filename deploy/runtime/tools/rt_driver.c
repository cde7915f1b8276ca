/*
 * rt_driver.c: a tiny program around the runtime for comparing bits across platforms.
 *
 *   cnd_rt_driver ARTIFACT [RANDOM_INPUTS [SEED [ref|auto]]]
 *
 * Loads the artifact into an arena, runs its embedded self-test, then runs RANDOM_INPUTS
 * (default 200) int8 inputs drawn from a fixed xorshift generator (the same sequence on every
 * platform) and prints the kernel set, the self-test result, and the SHA-256 of all logits
 * concatenated, plus the first input's logits. The test suite runs it natively and as an ARM
 * Linux binary under qemu-arm and requires identical output. Uses only the C library.
 */
#include "cnd_rt.h"
#include "cnd_rt_sha256.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t s_xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s ARTIFACT [RANDOM_INPUTS [SEED [ref|auto]]]\n", argv[0]);
        return 2;
    }
    long n = argc > 2 ? atol(argv[2]) : 200;
    uint32_t seed = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 12345u;
    int force_ref = argc > 4 && !strcmp(argv[4], "ref");
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
    int rc = cnd_rt_arena_size(&need, art, len, &d);
    if (rc) {
        printf("refused: %s (%s at byte %u)\n", cnd_rt_strerror(rc), d.what, (unsigned)d.offset);
        return 1;
    }
    void *arena = malloc(need);
    cnd_rt_model_t *m = NULL;
    if (!arena || cnd_rt_load(&m, art, len, arena, need, &d)) {
        printf("load failed\n");
        return 1;
    }
    if (force_ref) cnd_rt_set_kernels(m, CND_RT_KERNELS_REF);
    cnd_rt_info_t info;
    cnd_rt_get_info(m, &info);
    uint32_t bad = 0;
    rc = cnd_rt_selftest(m, &bad);
    /* the arena size depends on pointer width, so it goes to stderr with the kernel set */
    fprintf(stderr, "arena %lu\n", (unsigned long)need);
    printf("selftest %s", rc ? "FAILED" : "ok");
    if (rc) printf(" (vector %u)", (unsigned)bad);
    printf("\n");
    fprintf(stderr, "kernels %s\n", cnd_rt_kernels_name(cnd_rt_get_kernels(m)));
    size_t in_bytes = (size_t)info.c * info.h * info.w;
    int8_t *x = malloc(in_bytes), *lg = malloc(info.n_classes);
    if (!x || !lg) return 1;
    cnd_rt_sha256_t h;
    cnd_rt_sha256_init(&h);
    for (long i = 0; i < n; i++) {
        for (size_t k = 0; k < in_bytes; k++) {
            uint32_t r = s_xorshift(&seed);
            /* a tenth of the inputs at the extremes, the rest uniform */
            x[k] = (int8_t)((r >> 8) % 10 == 0 ? ((r & 1) ? 127 : -128) : (int)(r >> 24) - 128);
        }
        cnd_rt_run_i8(m, lg, x);
        cnd_rt_sha256_update(&h, lg, info.n_classes);
        if (i == 0) {
            printf("first");
            for (uint32_t k = 0; k < info.n_classes; k++) printf(" %d", lg[k]);
            printf("\n");
        }
    }
    uint8_t dg[32];
    cnd_rt_sha256_final(&h, dg);
    printf("outputs %ld sha256 ", n);
    for (int i = 0; i < 32; i++) printf("%02x", dg[i]);
    printf("\n");
    free(x);
    free(lg);
    free(arena);
    return rc ? 1 : 0;
}
