/*
 * autocompress_fed.h: the pieces of a federated AutoCompress search that the coordinator and the
 * sites share (docs/compression.md "Federated search").
 *
 * The coordinator holds the candidates (compressed models it built from public data, or that the
 * federation operator gave it); each site evaluates every candidate of a round on its own
 * validation split and contributes only counts, inside a SecAgg+ sum, so the coordinator learns
 * each candidate's accuracy over all the round's survivors and nothing of one site.
 *
 * Candidate bundle (the OBJ_MODEL object of an evaluation round, RoundStart.candidates = K):
 *   "CNDB" | u32 K | K x (u32 length | length bytes of a .cnd model file)     (little-endian)
 * K in 1..CND_AUTOC_FED_MAX, every length >= 1, nothing after the last model. Parsing checks
 * exactly that and nothing about the models (the caller deserializes them).
 *
 * Count vector (what a site masks): K + 1 counts, each split into m limbs of limb_bits bits,
 *   [validated][correct_0]...[correct_{K-1}]     each count = sum_j limb_j << (j * limb_bits)
 * validated = the site's validation samples, capped at W (the job's sample cap); correct_k <=
 * validated. The ring width b is limb_bits + bits(n_max), so the sum of n_max vectors never
 * wraps a limb: n_max * (2^limb_bits - 1) < 2^b. Decoding checks, for s survivors, that every
 * limb sum is at most s * (2^limb_bits - 1), validated <= s * W and every correct <= validated;
 * anything else is refused (one site cannot push a sum beyond what a site within the rules
 * could, except by lying about its own counts, which no secure sum prevents).
 */
#ifndef CND_AUTOCOMPRESS_FED_H
#define CND_AUTOCOMPRESS_FED_H

#include "data.h"
#include "error.h"
#include "model.h"

#include <stddef.h>
#include <stdint.h>

#define CND_AUTOC_FED_MAX   64 /* candidates in one bundle (CND_PROTO_MAX_CANDIDATES) */
#define CND_AUTOC_FED_MAGIC "CNDB"

typedef struct {
    uint32_t k;         /* candidates */
    uint32_t n_max;     /* most sites summed, >= 1 */
    uint32_t cap;       /* W: a site's validated count is capped at this, >= 1 */
    uint32_t bits;      /* ring width b, <= 32 */
    uint32_t limb_bits; /* bits of a count per limb */
    uint32_t m_limbs;   /* limbs per count */
    uint32_t len;       /* ring elements: (k + 1) * m_limbs */
} cnd_autoc_fed_layout_t;

/* Packs the k model files blobs[i] (lens[i] bytes) into a bundle (*out owned by the caller).
 * Returns 0, CND_EINVAL (k or a length out of range) or CND_ENOMEM. */
CND_MUST_USE int cnd_autoc_fed_bundle(uint8_t **out, size_t *out_len, const uint8_t *const *blobs,
                                      const size_t *lens, uint32_t k);

/* Parses a bundle: *k and, for i < *k, off[i] / len[i] (arrays of CND_AUTOC_FED_MAX) locate
 * model i inside data. Returns 0 or CND_EFORMAT naming what is wrong. */
CND_MUST_USE int cnd_autoc_fed_parse(const uint8_t *data, size_t n, uint32_t *k, size_t *off,
                                     size_t *len);

/* The count layout for k candidates, n_max sites, cap W. Returns 0 or CND_EINVAL. */
CND_MUST_USE int cnd_autoc_fed_layout(cnd_autoc_fed_layout_t *l, uint32_t k, uint32_t n_max,
                                      uint32_t cap);

/* Writes one site's counts into x[0..l->len): validated (capped at W) and correct[0..k)
 * (each capped at the capped validated count). */
void cnd_autoc_fed_encode(uint32_t *x, const cnd_autoc_fed_layout_t *l, uint64_t validated,
                          const uint64_t *correct);

/* Decodes a sum of `survivors` vectors (each element any representative modulo 2^b) into
 * *validated and correct[0..k). Returns 0 or CND_ERANGE naming the bound violated. */
CND_MUST_USE int cnd_autoc_fed_decode(uint64_t *validated, uint64_t *correct,
                                      const cnd_autoc_fed_layout_t *l, const uint32_t *sum,
                                      uint32_t survivors);

/* A candidate file: a float model (.cnd) or an integer artifact (.cndq, starting "CNDQ"). */
typedef struct {
    int artifact;   /* 1: .cndq */
    cnd_shape_t in; /* input shape */
    int classes;    /* outputs */
} cnd_autoc_fed_info_t;

/* What blob is: a .cnd model (deserialized) or a .cndq artifact (loaded by the integer runtime,
 * its self-test vectors run bit for bit). Returns 0 or the loader's error (CND_EFORMAT,
 * CND_ECORRUPT, ...) naming `what`. */
CND_MUST_USE int cnd_autoc_fed_inspect(cnd_autoc_fed_info_t *info, const uint8_t *blob, size_t len,
                                       const char *what);

/* Site: evaluates candidate file blob on the raw validation set val: a .cnd model as
 * cnd_autoc_fed_eval does, a .cndq artifact (self-tested first) through the integer runtime as a
 * device runs it (compress/quant_eval.h). Returns 0 with *correct, or an error naming `what`. */
CND_MUST_USE int cnd_autoc_fed_eval_blob(uint64_t *correct, const uint8_t *blob, size_t len,
                                         const cnd_dataset_t *val, int classes, const char *what);

/* Site: evaluates candidate m on the raw validation set val (normalised here with m's own
 * statistics): *correct gets the exact number of right top-1 predictions. Checks that m takes
 * val's input shape and has `classes` outputs. Returns 0, CND_EINVAL (a mismatch, named) or
 * CND_ENOMEM. */
CND_MUST_USE int cnd_autoc_fed_eval(uint64_t *correct, cnd_model_t *m, const cnd_dataset_t *val,
                                    int classes);

#endif
