/*
 * registry.h: the artifact registry: every signed integer artifact the federation offers edge
 * devices, stored once, and the one code path that signs manifests for them.
 *
 * Two processes publish: the coordinator daemon at the end of a federated job (coord_quant.c,
 * under the job's name) and `condenser rollout publish` (any name); the rollout engine signs
 * offer and rollback manifests for what is here. All of them go through this file, so:
 *   - an artifact is stored once, as a variant of a model version (model name, version); its
 *     digest is unique (publishing the same bytes again is CND_EEXIST naming the first entry);
 *   - every manifest is signed by cnd_registry_sign, and its sequence comes from one rule: per
 *     model name, one more than the highest sequence ever signed for that name (registry_seq,
 *     raised in the caller's transaction, so two processes publishing under one name get
 *     strictly increasing sequences and a device never sees one go backwards);
 *   - every artifact is validated by the runtime and its self-test vectors pass before it is
 *     stored (model.version and artifact.sign are logged, audit/audit_actions.h).
 *
 * It sits below the coordinator and the rollout engine (scripts/check-layers), which may not
 * include each other: both include this header, neither includes the other.
 *
 * Tables (component "registry" of the store kernel, common/db.h):
 *   registry_artifact(id, model, version, variant, job, digest UNIQUE, size, arena, macs, wbits,
 *                     classes, accuracy, latency, bytes, manifest, created_ms)
 *       manifest: the one signed at publication (NULL for artifacts published before the
 *       registry kept it)
 *   registry_seq(model PK, seq)   the highest manifest sequence signed for each model name
 * Files from before the registry: when the registry is created in a file it adopts what came
 * before it in the same transaction: the rollout engine's rollout_artifact rows (with their ids,
 * which rollout tables refer to) and rollout_seq counters, and the sequence of every manifest
 * the coordinator signed at a job's end (kept in its model table), so no sequence a device may
 * hold is signed again. Those int8 rows stay where they were (`job export` still reads them).
 *
 * Functions join the caller's transaction (cnd_db_begin/end); none commits one it did not open.
 */
#ifndef CND_REGISTRY_H
#define CND_REGISTRY_H

#include "audit_log.h"
#include "error.h"
#include "identity.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define CND_REGISTRY_NAME_MAX 128 /* model names: the manifest name (crypto/manifest.h) */

typedef struct {
    int64_t id;
    char model[CND_REGISTRY_NAME_MAX + 1]; /* manifest name */
    uint64_t version;                      /* model version (0 = a job's initial student) */
    char variant[32];                      /* "int8", "w4a8", ... */
    char job[32];                          /* job id it came from, or "" */
    uint8_t digest[32];
    uint64_t size, arena, macs;
    int wbits;         /* weight bits (8, 4), 0 unknown */
    char classes[257]; /* device classes it is built for, comma-separated; "" = any */
    double accuracy;   /* test accuracy recorded at publication, or -1 */
    char latency[256]; /* "cpu=us,cpu=us" measured at publication (condenser bench) */
    int64_t created_ms;
} cnd_rartifact_t;

/* Creates or migrates the registry's tables (and adopts a file's earlier artifacts and
 * sequences, see above). Returns 0, CND_EFORMAT (a newer registry) or CND_EDB. */
CND_MUST_USE int cnd_registry_init(sqlite3 *db);

/* --- publication ---------------------------------------------------------------------------- */

typedef struct {
    const char *model;     /* manifest name (required), e.g. "fmnist" */
    uint64_t version;      /* model version */
    const char *variant;   /* NULL: the artifact's quant_scheme metadata, else "int8" */
    const char *classes;   /* device classes, comma-separated; NULL/"" = any */
    double accuracy;       /* < 0: the artifact's test_accuracy metadata, if any */
    const char *latency;   /* "cpu=us,..." measured on devices (condenser bench); may be NULL */
    const char *job;       /* job id it came from; may be NULL */
    int64_t expires_s;     /* manifest lifetime from now; 0 = 30 days */
    int64_t round;         /* round that produced it (model.version "round"); 0 = not recorded */
    const uint8_t *source; /* SHA-256 of the float model it was frozen from; may be NULL */
} cnd_publish_opts_t;

/* Validates (the runtime loads it and its self-test vectors pass), stores, logs model.version and
 * signs a manifest for an artifact (cnd_registry_sign, artifact.sign), in one transaction.
 * *artifact_id receives its id; *manifest (may be NULL) the signed manifest (caller frees with
 * free), which is also kept with the artifact. Returns 0, CND_EFORMAT / CND_ECORRUPT (the runtime
 * refuses it or its self-test fails), CND_EEXIST (these bytes are published already; the detail
 * names the entry), CND_EINVAL (name or version), CND_EDB. */
CND_MUST_USE int cnd_registry_publish(sqlite3 *db, cnd_audit_t *audit, const cnd_identity_t *id,
                                      const char *actor, const uint8_t *art, size_t len,
                                      const cnd_publish_opts_t *o, int64_t *artifact_id,
                                      uint8_t **manifest, size_t *manifest_len);

/* Signs a manifest for an artifact of the registry: the next sequence of its model name, the
 * rollback flag as given, expiry expires_s from now (0 = 30 days); logs artifact.sign. *out is
 * owned by the caller; *seq (may be NULL) receives the sequence. The only function that signs
 * manifests for devices. */
CND_MUST_USE int cnd_registry_sign(sqlite3 *db, cnd_audit_t *audit, const cnd_identity_t *id,
                                   const char *actor, const cnd_rartifact_t *a, int rollback,
                                   int64_t expires_s, uint8_t **out, size_t *out_len,
                                   uint64_t *seq);

/* "model@version" as used in audit entries and --model. */
void cnd_registry_version_name(char *out, size_t cap, const char *model, uint64_t version);

/* --- reading -------------------------------------------------------------------------------- */

/* An artifact by id, with its bytes (bytes may be NULL; else *bytes is the caller's, checked
 * against the stored digest: CND_ECORRUPT). CND_ENOTFOUND when there is no such id. */
CND_MUST_USE int cnd_registry_get(sqlite3 *db, int64_t id, cnd_rartifact_t *a, uint8_t **bytes,
                                  size_t *len);
/* 0 and *a, or CND_ENOTFOUND (detail not set). */
CND_MUST_USE int cnd_registry_by_digest(sqlite3 *db, const uint8_t digest[32], cnd_rartifact_t *a);
/* Variants of (model, version) into a new array (caller frees), by model, version, id; model ""
 * = any model, version < 0 = any version. */
CND_MUST_USE int cnd_registry_list(sqlite3 *db, const char *model, int64_t version,
                                   cnd_rartifact_t **out, size_t *n);
/* The manifest signed when the artifact was published (*m is the caller's). CND_ENOTFOUND when
 * the registry has none for it (published before the registry kept them). */
CND_MUST_USE int cnd_registry_manifest(sqlite3 *db, int64_t id, uint8_t **m, size_t *len);

#endif
