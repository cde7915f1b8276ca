/*
 * cnd_rt.h: the integer-only inference runtime for `.cndq` artifacts (portable C99).
 *
 * Why it exists: an edge device (a gateway, a bedside monitor, a Cortex-M microcontroller)
 * must run the compressed model with nothing but the C library: no heap, no floating point in
 * the inference path, no BLAS, no dependency on the rest of Condenser. The host (compress/)
 * links the same code, so `condenser eval MODEL.cndq` measures exactly what a device computes.
 *
 * Usage:
 *     size_t need;
 *     if (cnd_rt_arena_size(&need, art, art_len, &diag)) ... reject the artifact
 *     static uint8_t arena[ARENA_BYTES];            // or any caller memory >= need
 *     cnd_rt_model_t *m;
 *     if (cnd_rt_load(&m, art, art_len, arena, sizeof arena, &diag)) ... reject
 *     if (cnd_rt_selftest(m, NULL)) ... refuse to run: the device computes different bits
 *     cnd_rt_run_u8(m, logits, pixels);             // raw uint8 HWC pixels -> int8 logits
 *
 * Invariants:
 *   - Loading validates everything first (layout, every length and offset, shapes, zero-point
 *     chains, requantization parameters, that no accumulator can overflow int32 for any input,
 *     and the SHA-256 digest) and only then writes into the arena. On any failure neither *out
 *     nor a byte of the arena is written.
 *   - The model points into `art`; the caller keeps it alive and unchanged while using the model.
 *   - A loaded model is used by one thread at a time (its activation buffers live in the arena).
 *   - Outputs are identical bit for bit on every platform and with every kernel set: fast paths
 *     (x86 AVX2, AVX-512 VNNI) are checked against the scalar reference in the test suite.
 *   - Nothing here prints, allocates or exits.
 */
#ifndef CND_RT_H
#define CND_RT_H

#include <stddef.h>
#include <stdint.h>

#include "cnd_rt_format.h"

/* Error codes. The values equal common/error.h's CND_E* codes where the meaning is the same,
 * so the host can pass them through; TRUNC and SELFTEST exist only here. */
#define CND_RT_OK        0
#define CND_RT_ENOMEM    (-1)  /* arena too small */
#define CND_RT_EINVAL    (-2)  /* bad argument (NULL pointer, unknown kernel set) */
#define CND_RT_EFORMAT   (-8)  /* wrong magic, version, layout, or an inconsistent field */
#define CND_RT_ECORRUPT  (-9)  /* the content does not match its digest */
#define CND_RT_ERANGE    (-10) /* a value or size beyond what the runtime accepts */
#define CND_RT_ETRUNC    (-16) /* the buffer is shorter than the artifact says it is */
#define CND_RT_ESELFTEST (-17) /* an embedded self-test vector gave different output bits */

/* Where and why an artifact was refused; filled on failure when the caller passes one. */
typedef struct {
    int code;         /* the CND_RT_E* code returned */
    uint32_t offset;  /* byte offset in the artifact of the field at fault */
    int layer;        /* 0-based layer index, or -1 */
    const char *what; /* static text naming the field and the problem */
} cnd_rt_diag_t;

typedef struct cnd_rt_model cnd_rt_model_t;

/* Kernel sets. AUTO picks the fastest one the CPU supports (checked at run time). */
typedef enum {
    CND_RT_KERNELS_AUTO = 0,
    CND_RT_KERNELS_REF = 1,  /* portable scalar reference */
    CND_RT_KERNELS_AVX2 = 2, /* x86-64 with AVX2 */
    CND_RT_KERNELS_VNNI = 3, /* x86-64 with AVX-512 BW/VL and VNNI */
} cnd_rt_kernels_t;

typedef struct {
    uint16_t c, h, w;        /* input shape (HWC layout in memory) */
    int32_t in_zp;           /* input zero point */
    uint32_t in_scale_bits;  /* input scale as IEEE-754 binary32 bits */
    uint32_t n_classes;      /* int8 logits per inference */
    int32_t out_zp;          /* logits' zero point */
    uint32_t out_scale_bits; /* logits' scale (binary32 bits): logit = scale * (q - zp) */
    uint32_t n_layers;
    uint32_t n_labels; /* 0 or n_classes */
    uint32_t n_selftests;
    uint32_t sig_scheme;   /* trailer scheme: 0 = unsigned */
    size_t arena_bytes;    /* what cnd_rt_arena_size reports for this artifact */
    size_t act_bytes;      /* of which activations, planned by liveness (reused buffers) */
    size_t act_sum;        /* the sum of all activations (each 64-byte aligned), for comparison */
    size_t weight_bytes;   /* packed weight bytes over all layers */
    uint64_t macs;         /* multiply-accumulates per inference */
    const uint8_t *digest; /* 32-byte SHA-256 of the body (points into the artifact) */
    const uint8_t *norm;   /* input normalisation: f32 mean[c] then f32 std[c], little-endian
                            * binary32 (for hosts that quantize non-pixel inputs) */
} cnd_rt_info_t;

/* Validates the artifact and reports the arena bytes cnd_rt_load needs for it (including
 * 63 bytes of slack for aligning the arena). Returns CND_RT_OK or an error (diag filled). */
int cnd_rt_arena_size(size_t *out, const uint8_t *art, size_t len, cnd_rt_diag_t *diag);

/* Validates the artifact and builds a model inside `arena`. Returns CND_RT_OK with *out set,
 * CND_RT_ENOMEM when arena_len is smaller than cnd_rt_arena_size, or a format error. On
 * failure *out and the arena are left untouched. */
int cnd_rt_load(cnd_rt_model_t **out, const uint8_t *art, size_t len, void *arena, size_t arena_len,
                cnd_rt_diag_t *diag);

/* Chooses the kernel set; CND_RT_EINVAL if the CPU (or this build) lacks it. */
int cnd_rt_set_kernels(cnd_rt_model_t *m, cnd_rt_kernels_t k);
/* The kernel set in use (never AUTO) and its name. */
cnd_rt_kernels_t cnd_rt_get_kernels(const cnd_rt_model_t *m);
const char *cnd_rt_kernels_name(cnd_rt_kernels_t k);
/* 1 if this build and CPU can run kernel set k. */
int cnd_rt_kernels_available(cnd_rt_kernels_t k);

void cnd_rt_get_info(const cnd_rt_model_t *m, cnd_rt_info_t *info);

/* Inference from raw uint8 pixels in HWC order (C*H*W bytes), mapped to int8 through the
 * artifact's per-channel lookup table. Writes n_classes int8 logits. */
void cnd_rt_run_u8(cnd_rt_model_t *m, int8_t *logits, const uint8_t *raw);

/* Inference from an already quantised int8 HWC input. */
void cnd_rt_run_i8(cnd_rt_model_t *m, int8_t *logits, const int8_t *x);

/* Like cnd_rt_run_i8, calling tap(ctx, layer, out, n) after each layer with its int8 output
 * (HWC, n bytes; valid only during the call). For per-layer error reports and debugging. */
typedef void (*cnd_rt_tap_fn)(void *ctx, int layer, const int8_t *out, size_t n);
void cnd_rt_run_i8_tap(cnd_rt_model_t *m, int8_t *logits, const int8_t *x, cnd_rt_tap_fn tap,
                       void *ctx);

/* Maps raw uint8 HWC pixels to the int8 input through the lookup table (n = C*H*W). Element i
 * depends only on raw element i, so x and raw may be the same memory. */
void cnd_rt_quantize_input(const cnd_rt_model_t *m, int8_t *x, const uint8_t *raw);

/* Index of the largest logit (first on ties). */
uint32_t cnd_rt_argmax(const cnd_rt_model_t *m, const int8_t *logits);

/* Runs every embedded self-test vector and compares the logits bit for bit. Returns
 * CND_RT_OK, or CND_RT_ESELFTEST with *failed (may be NULL) = index of the first mismatch. */
int cnd_rt_selftest(cnd_rt_model_t *m, uint32_t *failed);

/* Self-test vector i (i < n_selftests): its input bytes (raw u8 or i8, see *kind) and the
 * expected logits. Returns CND_RT_EINVAL for a bad index. */
int cnd_rt_selftest_vector(const cnd_rt_model_t *m, uint32_t i, const uint8_t **input,
                           const int8_t **expected, uint32_t *kind);

/* Class label i as a NUL-terminated string inside the artifact, or NULL. */
const char *cnd_rt_label(const cnd_rt_model_t *m, uint32_t i);

/* The signature trailer: scheme, used bytes and their location inside the artifact. The
 * signed message is bytes [0, *signed_len) of the artifact (body and digest). */
void cnd_rt_signature(const cnd_rt_model_t *m, uint32_t *scheme, const uint8_t **sig,
                      uint32_t *sig_len, uint32_t *signed_len);

/* A static name for an error code ("truncated artifact", ...); never NULL. */
const char *cnd_rt_strerror(int code);

#endif
