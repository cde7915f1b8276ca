/*
 * rollout_store.h: the rollout engine's tables in the coordinator's database: the artifacts
 * that can be rolled out (each a variant of a model version), the per-model manifest sequence
 * counter, rollouts with their policy and state, the manifests signed for each, and one row
 * per (rollout, device) with where that device stands.
 *
 * Tables (prefixed rollout_, created on first open; schema version in rollout_meta):
 *   rollout_artifact(id, model, version, variant, job, digest UNIQUE, size, arena, macs, wbits,
 *                    classes, accuracy, latency, bytes, created_ms)
 *   rollout_seq(model PK, seq)                      highest manifest sequence signed per model
 *   rollout(id, model, version, select_expr, canary, rate, factor, abort_pct, abort_min,
 *           timeout_s, win_start, win_end, chunk, max_active, state, reason, wave, job,
 *           created_ms, updated_ms)
 *   rollout_manifest(rollout, artifact, kind 'offer'|'rollback', seq, manifest)
 *   rollout_device(rollout, device, wave, artifact, prev_digest, state, reason, offered_ms,
 *                  updated_ms, latency_us)
 *   rollout_latency(artifact, cpu, samples, sum_us)  latencies devices measured (fit checks)
 *
 * Rollout states: running, paused, completed, aborted, rolling_back, rolled_back.
 * Device states: pending (waiting for its wave), deferred (offline when its wave came),
 * offered (offer sent, download or trial in progress), healthy, failed, refused, timeout,
 * current (was already running the target), skipped (no variant fits / other rollout),
 * cancelled (its wave never came: the rollout stopped), rollback_sent, rolled_back,
 * rollback_failed, rollback_timeout.
 *
 * Functions join the caller's transaction; none opens one.
 */
#ifndef CND_ROLLOUT_STORE_H
#define CND_ROLLOUT_STORE_H

#include "error.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define CND_ROLLOUT_MODEL_MAX 128

typedef struct {
    int64_t id;
    char model[CND_ROLLOUT_MODEL_MAX + 1]; /* manifest name */
    uint64_t version;
    char variant[32]; /* "int8", "w4a8", ... */
    char job[32];     /* job id it came from, or "" */
    uint8_t digest[32];
    uint64_t size, arena, macs;
    int wbits;         /* weight bits (8, 4), 0 unknown */
    char classes[257]; /* device classes it is built for, comma-separated; "" = any */
    double accuracy;   /* test accuracy recorded at publication, or -1 */
    char latency[256]; /* "cpu=us,cpu=us" measured at publication (condenser bench) */
    int64_t created_ms;
} cnd_rartifact_t;

typedef struct {
    int64_t id;
    char model[CND_ROLLOUT_MODEL_MAX + 1];
    uint64_t version;
    char select[512];
    uint32_t canary, rate;
    double factor;
    double abort_pct;
    uint32_t abort_min;
    uint32_t timeout_s;
    int win_start, win_end; /* minutes after 00:00 UTC; -1 = no window */
    uint32_t chunk;         /* chunk size offered to devices */
    uint32_t max_active;    /* devices downloading or on trial at once */
    char state[16];
    char reason[256];
    uint32_t wave; /* current wave (0 = canary) */
    char job[32];
    int64_t created_ms, updated_ms;
} cnd_rollout_rec_t;

typedef struct {
    int64_t rollout;
    char device[64];
    uint32_t wave;
    int64_t artifact; /* target variant, 0 = none */
    int has_prev;
    uint8_t prev_digest[32];
    char state[24];
    char reason[256];
    int64_t offered_ms, updated_ms;
    uint32_t latency_us;
} cnd_rdevice_t;

CND_MUST_USE int cnd_rstore_init(sqlite3 *db);

/* --- artifacts --- */
/* Stores an artifact (bytes and metadata); a->id receives its id. CND_EEXIST when the digest is
 * there already (a->id then names the existing one). */
CND_MUST_USE int cnd_rstore_artifact_put(sqlite3 *db, cnd_rartifact_t *a, const uint8_t *bytes,
                                         size_t len);
CND_MUST_USE int cnd_rstore_artifact_get(sqlite3 *db, int64_t id, cnd_rartifact_t *a,
                                         uint8_t **bytes, size_t *len);
CND_MUST_USE int cnd_rstore_artifact_by_digest(sqlite3 *db, const uint8_t digest[32],
                                               cnd_rartifact_t *a);
/* Variants of (model, version) into a new array (caller frees); model "" = any model. */
CND_MUST_USE int cnd_rstore_artifacts(sqlite3 *db, const char *model, int64_t version,
                                      cnd_rartifact_t **out, size_t *n);

/* Next manifest sequence for a model (stored before returning). */
CND_MUST_USE int cnd_rstore_next_seq(sqlite3 *db, const char *model, uint64_t *seq);

/* Learned latency (mean of device reports) of an artifact on a CPU class: 0 and *us when known,
 * CND_ENOTFOUND otherwise. */
CND_MUST_USE int cnd_rstore_latency(sqlite3 *db, int64_t artifact, const char *cpu, uint32_t *us);
CND_MUST_USE int cnd_rstore_latency_add(sqlite3 *db, int64_t artifact, const char *cpu,
                                        uint32_t us);

/* --- rollouts --- */
CND_MUST_USE int cnd_rstore_rollout_insert(sqlite3 *db, cnd_rollout_rec_t *r);
CND_MUST_USE int cnd_rstore_rollout_get(sqlite3 *db, int64_t id, cnd_rollout_rec_t *r);
CND_MUST_USE int cnd_rstore_rollout_update(sqlite3 *db, const cnd_rollout_rec_t *r);
/* All rollouts, newest first (caller frees). */
CND_MUST_USE int cnd_rstore_rollouts(sqlite3 *db, cnd_rollout_rec_t **out, size_t *n);

CND_MUST_USE int cnd_rstore_manifest_put(sqlite3 *db, int64_t rollout, int64_t artifact,
                                         const char *kind, uint64_t seq, const uint8_t *m,
                                         size_t len);
/* CND_ENOTFOUND when not signed yet. *m is owned by the caller. */
CND_MUST_USE int cnd_rstore_manifest_get(sqlite3 *db, int64_t rollout, int64_t artifact,
                                         const char *kind, uint8_t **m, size_t *len);

CND_MUST_USE int cnd_rstore_device_put(sqlite3 *db, const cnd_rdevice_t *d); /* insert or replace */
/* Devices of a rollout in (wave, device) order (caller frees). */
CND_MUST_USE int cnd_rstore_devices(sqlite3 *db, int64_t rollout, cnd_rdevice_t **out, size_t *n);

/* 1 for a state in which a device's part in a rollout is over. */
int cnd_rdevice_terminal(const char *state);

#endif
