/*
 * test_runtime_fuzz.c: the loader against crafted artifacts. Random edits (1 to 8 bytes, some
 * set to 0x00/0xff/0x80, some random) anywhere in the body of valid artifacts, with the digest
 * recomputed so that the structural checks are what stands between the bytes and the kernels.
 * Every artifact must either be refused with a known error code or load, pass the arena size
 * it claims, and run inference on extreme and random inputs without touching memory outside
 * the arena and the artifact (run under AddressSanitizer by scripts/test). Deterministic seed.
 */
#include "check.h"
#include "quant_testutil.h"

#include <stdio.h>

int main(void)
{
    static const char *specs[] = {
        "conv2d(4,3,pad=1) relu maxpool(2) conv2d(5,3,stride=2) relu avgpool(2) flatten dense(6) "
        "relu dense(3)",
        "flatten dense(9) relu relu dense(4)",
        "conv2d(3,2) relu gap dense(5)",
    };
    cnd_rng_t r;
    cnd_rng_seed(&r, 2024);
    long loaded = 0, refused = 0, bad_code = 0;
    for (size_t si = 0; si < sizeof specs / sizeof *specs; si++)
        for (int wbits = 8; wbits >= 4; wbits -= 4) {
            cnd_qmodel_t *q = NULL;
            CHECK_EQ_INT(
                qt_make(&q, NULL, specs[si], (cnd_shape_t){2, 12, 12}, wbits, CND_QM_MINMAX, si),
                0);
            if (!q) continue;
            uint8_t *good;
            size_t len;
            CHECK_EQ_INT(cnd_artifact_serialize(q, &good, &len), 0);
            uint32_t body = cnd_le32(good + CND_RT_H_BODYLEN);
            uint8_t *a = malloc(len);
            for (int it = 0; it < 1500; it++) {
                memcpy(a, good, len);
                int edits = 1 + (int)cnd_rng_below(&r, 8);
                for (int e = 0; e < edits; e++) {
                    /* bias edits toward the header and the tables, where fields live */
                    uint32_t at = cnd_rng_below(&r, 2)
                                      ? (uint32_t)cnd_rng_below(&r, body < 1024 ? body : 1024)
                                      : (uint32_t)cnd_rng_below(&r, body);
                    uint32_t k = (uint32_t)cnd_rng_below(&r, 4);
                    a[at] = k == 0   ? 0x00
                            : k == 1 ? 0xff
                            : k == 2 ? 0x80
                                     : (uint8_t)cnd_rng_u64(&r);
                }
                cnd_rt_sha256(a + body, a,
                              body); /* at the original place, whatever the header now says */
                size_t need = 0;
                cnd_rt_diag_t d = {0};
                int rc = cnd_rt_arena_size(&need, a, len, &d);
                if (rc) {
                    refused++;
                    bad_code += rc != CND_RT_EFORMAT && rc != CND_RT_ERANGE && rc != CND_RT_ETRUNC;
                    CHECK(d.what != NULL);
                    continue;
                }
                void *arena = malloc(need);
                cnd_rt_model_t *m = NULL;
                CHECK_EQ_INT(cnd_rt_load(&m, a, len, arena, need, NULL), 0);
                if (m) {
                    loaded++;
                    cnd_rt_info_t info;
                    cnd_rt_get_info(m, &info);
                    size_t d_in = (size_t)info.c * info.h * info.w;
                    int8_t *x = malloc(d_in), *lg = malloc(info.n_classes);
                    uint8_t *raw = malloc(d_in);
                    for (int t = 0; t < 3; t++) {
                        for (size_t i = 0; i < d_in; i++) {
                            x[i] = t == 0 ? -128 : t == 1 ? 127 : (int8_t)cnd_rng_u64(&r);
                            raw[i] = (uint8_t)cnd_rng_u64(&r);
                        }
                        for (int k = CND_RT_KERNELS_REF; k <= CND_RT_KERNELS_VNNI; k++) {
                            if (cnd_rt_set_kernels(m, (cnd_rt_kernels_t)k)) continue;
                            cnd_rt_run_i8(m, lg, x);
                            cnd_rt_run_u8(m, lg, raw);
                        }
                    }
                    (void)cnd_rt_selftest(m, NULL);
                    for (uint32_t k = 0; k < info.n_labels; k++) CHECK(cnd_rt_label(m, k) != NULL);
                    free(x);
                    free(lg);
                    free(raw);
                }
                free(arena);
            }
            free(a);
            free(good);
            cnd_qmodel_destroy(&q);
        }
    fprintf(stderr, "crafted artifacts: %ld refused, %ld loaded and ran\n", refused, loaded);
    CHECK_EQ_INT(bad_code, 0);
    CHECK(refused > 1000);
    CHECK(loaded > 100); /* edits inside weights and labels load and run */
    return check_result("test_runtime_fuzz");
}
