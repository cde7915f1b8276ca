/*
 * artifact.h: writing `.cndq` integer artifacts from a quantized model, and loading them on
 * the host through the edge runtime (deploy/runtime), so that host-side evaluation and
 * benchmarks execute exactly the code a device runs.
 *
 * The byte layout is defined once, in deploy/runtime/cnd_rt_format.h, and documented in
 * docs/quantization.md. Self-test vectors are computed by running the artifact (without them)
 * through the runtime's scalar reference kernels, never by a second implementation.
 */
#ifndef CND_ARTIFACT_H
#define CND_ARTIFACT_H

#include "cnd_rt.h"
#include "error.h"
#include "quant.h"

#include <stddef.h>
#include <stdint.h>

/* Serialises q (with its self-tests, if any) into a new buffer (caller frees *data): header,
 * sections, SHA-256 digest and an unsigned 256-byte signature trailer. Returns 0, CND_ENOMEM
 * or CND_ERANGE (a field that does not fit the format, named in the detail). */
CND_MUST_USE int cnd_artifact_serialize(const cnd_qmodel_t *q, uint8_t **data, size_t *len);

/* Sets q's self-test vectors: n inputs (raw uint8 through the LUT when kind is
 * CND_RT_TEST_RAW_U8, else int8), C*H*W bytes each, and their expected logits computed with
 * the runtime's reference kernels. n <= 64. */
CND_MUST_USE int cnd_artifact_set_selftests(cnd_qmodel_t *q, const uint8_t *inputs, int n,
                                            int kind);

/* Serialises q and writes it atomically to path. */
CND_MUST_USE int cnd_artifact_save(const cnd_qmodel_t *q, const char *path);

/* A loaded artifact: its bytes, a heap arena and the runtime model inside it. */
typedef struct {
    uint8_t *bytes; /* the artifact (owned) */
    size_t len;
    void *arena; /* owned */
    size_t arena_len;
    cnd_rt_model_t *rt; /* lives in arena */
    cnd_rt_info_t info;
} cnd_artifact_t;

/* Validates and loads bytes (copied) or a file. Errors carry the runtime's diagnosis with the
 * source name, byte offset and layer: CND_EFORMAT (malformed or truncated), CND_ECORRUPT
 * (digest), CND_ERANGE, CND_EIO, CND_ENOMEM. The self-test is NOT run here. */
CND_MUST_USE int cnd_artifact_open(cnd_artifact_t **out, const uint8_t *bytes, size_t len,
                                   const char *what);
CND_MUST_USE int cnd_artifact_load(cnd_artifact_t **out, const char *path);
void cnd_artifact_destroy(cnd_artifact_t **a);

/* Runs the embedded self-test; CND_ECORRUPT naming the failing vector on a mismatch. */
CND_MUST_USE int cnd_artifact_selftest(cnd_artifact_t *a, const char *what);

/* Metadata entry i of an opened artifact (its META section, validated by the loader) into key
 * and val, truncated to their capacities; 1 when entry i exists, else 0. */
int cnd_artifact_meta(const cnd_artifact_t *a, int i, char *key, size_t kcap, char *val,
                      size_t vcap);

/* Maps a runtime error and diagnosis to a CND_E* code with a detail message. */
int cnd_artifact_err(int rt_code, const cnd_rt_diag_t *d, const char *what);

#endif
