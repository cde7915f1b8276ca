/*
 * fuzz_artifact.c: the `.cndq` integer artifact loader, as the host (compress/artifact.c) and
 * every edge device (deploy/runtime/rt_load.c) run it: validate, size the arena, load, then
 * run what a device runs on a model it accepted: the self-test, inference through every
 * kernel set the CPU has, labels and the signature trailer.
 *
 * The body digest sits inside the file (cnd_rt_format.h): the target loads the input as it is
 * (the digest is checked first, so that is cheap), then with the digest recomputed where the
 * header's body length says it is, so mutations reach the structural checks. Seeds in
 * corpus/artifact/ are artifacts written by the quantizer's library, unchanged.
 *
 * Beyond memory safety: an artifact that loads must report the arena size it was loaded with,
 * and models over a few million multiply-accumulates are loaded but not run (cost, not bugs).
 */
#include "artifact.h"
#include "bytes.h"
#include "cnd_rt_format.h"
#include "cnd_rt_sha256.h"
#include "fuzz.h"

#define S_MAX_MACS (4u << 20)

static void s_run(cnd_artifact_t *a)
{
    const cnd_rt_info_t *in = &a->info;
    if (in->arena_bytes != a->arena_len) abort();
    for (uint32_t k = 0; k < in->n_labels; k++)
        if (!cnd_rt_label(a->rt, k)) abort();
    uint32_t scheme, sig_len, signed_len;
    const uint8_t *sig;
    cnd_rt_signature(a->rt, &scheme, &sig, &sig_len, &signed_len);
    if (signed_len > a->len || sig_len > CND_RT_SIG_MAX) abort();
    fuzz_note("artifact loaded");
    if (in->macs > S_MAX_MACS) return;
    fuzz_sink += cnd_artifact_selftest(a, "input");
    size_t d = (size_t)in->c * in->h * in->w;
    int8_t *x = malloc(d ? d : 1), *lg = malloc(in->n_classes ? in->n_classes : 1);
    uint8_t *raw = malloc(d ? d : 1);
    if (!x || !lg || !raw) abort();
    for (size_t i = 0; i < d; i++) {
        raw[i] = (uint8_t)(i * 131 + 7);
        x[i] = (int8_t)(i & 1 ? -128 : 127);
    }
    for (int k = CND_RT_KERNELS_REF; k <= CND_RT_KERNELS_VNNI; k++) {
        if (cnd_rt_set_kernels(a->rt, (cnd_rt_kernels_t)k) != 0) continue;
        cnd_rt_run_i8(a->rt, lg, x);
        cnd_rt_run_u8(a->rt, lg, raw);
        if (cnd_rt_argmax(a->rt, lg) >= in->n_classes) abort();
    }
    free(x);
    free(lg);
    free(raw);
}

static void s_open(const uint8_t *data, size_t size)
{
    cnd_artifact_t *a = NULL;
    if (cnd_artifact_open(&a, data, size, "input") == 0) {
        s_run(a);
        cnd_artifact_destroy(&a);
    }
    fuzz_touch_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s_open(data, size);
    if (size <= CND_RT_HEADER_BYTES) return 0;
    uint32_t body = cnd_le32(data + CND_RT_H_BODYLEN);
    if (body > size - CND_RT_DIGEST_BYTES) return 0;
    uint8_t *buf = malloc(size);
    if (!buf) abort();
    memcpy(buf, data, size);
    cnd_rt_sha256(buf + body, buf, body);
    if (memcmp(buf + body, data + body, CND_RT_DIGEST_BYTES) != 0) s_open(buf, size);
    free(buf);
    return 0;
}
