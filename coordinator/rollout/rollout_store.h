/*
 * rollout_store.h: the rollout engine's tables in the coordinator's database: rollouts with
 * their policy and state, the manifests signed for each, one row per (rollout, device) with
 * where that device stands, and the latencies devices measured. The artifacts themselves and
 * their manifest sequences are the artifact registry's (coordinator/registry/registry.h); an
 * `artifact` column here is a registry id.
 *
 * Tables (prefixed rollout_, component "rollout" of the store kernel, common/db.h):
 *   rollout(id, model, version, select_expr, canary, rate, factor, abort_pct, abort_min,
 *           timeout_s, win_start, win_end, chunk, max_active, state, reason, wave, job,
 *           created_ms, updated_ms)
 *   rollout_manifest(rollout, artifact, kind 'offer'|'rollback', seq, manifest)
 *   rollout_device(rollout, device, wave, artifact, prev_digest, state, reason, offered_ms,
 *                  updated_ms, latency_us)
 *   rollout_latency(artifact, cpu, samples, sum_us)  latencies devices measured (fit checks)
 * (Version 1 also held rollout_artifact and rollout_seq; version 2 hands their rows to the
 * registry and drops them.)
 *
 * States are enums in memory (cnd_rollout_state_t, cnd_rdevice_state_t) and their names in the
 * database, the audit log and every printout; the tables in rollout_store.c are the one place
 * that maps one to the other. A row whose state is no known name is refused (CND_ECORRUPT).
 *
 * Functions join the caller's transaction; none opens one.
 */
#ifndef CND_ROLLOUT_STORE_H
#define CND_ROLLOUT_STORE_H

#include "error.h"
#include "registry.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* Where a rollout stands (stored as its name: "running", "paused", ...). */
typedef enum {
    CND_ROLLOUT_RUNNING,      /* "running": offering the current wave */
    CND_ROLLOUT_PAUSED,       /* "paused": operator; no new offers, devices in flight finish */
    CND_ROLLOUT_COMPLETED,    /* "completed": every wave done; late joiners still join */
    CND_ROLLOUT_ABORTED,      /* "aborted": operator; stopped for good, nobody rolled back */
    CND_ROLLOUT_ROLLING_BACK, /* "rolling_back": rollbacks go to every device offered it */
    CND_ROLLOUT_ROLLED_BACK,  /* "rolled_back": each of them confirmed, failed or timed out */
} cnd_rollout_state_t;
#define CND_ROLLOUT_STATES 6

/* Where a device stands in one rollout (stored as its name). */
typedef enum {
    CND_RDEV_PENDING,              /* "pending": waiting for its wave */
    CND_RDEV_DEFERRED,             /* "deferred": offline when its wave came */
    CND_RDEV_OFFERED,              /* "offered": offer sent, download or trial in progress */
    CND_RDEV_HEALTHY,              /* "healthy": installed, self-tested, reported healthy */
    CND_RDEV_FAILED,               /* "failed": reported a failed install or trial */
    CND_RDEV_REFUSED,              /* "refused": refused the offer (its checks) */
    CND_RDEV_TIMEOUT,              /* "timeout": no outcome within the device timeout */
    CND_RDEV_CURRENT,              /* "current": was already running the target */
    CND_RDEV_SKIPPED,              /* "skipped": no variant fits, or in another live rollout */
    CND_RDEV_CANCELLED,            /* "cancelled": its wave never came (the rollout stopped) */
    CND_RDEV_ROLLBACK_SENT,        /* "rollback_sent": a signed rollback is on its way */
    CND_RDEV_ROLLED_BACK,          /* "rolled_back": confirmed the rollback */
    CND_RDEV_ROLLBACK_FAILED,      /* "rollback_failed": the rollback failed on the device */
    CND_RDEV_ROLLBACK_TIMEOUT,     /* "rollback_timeout": no rollback report in time */
    CND_RDEV_ROLLBACK_UNAVAILABLE, /* "rollback_unavailable": nothing to roll back to */
} cnd_rdevice_state_t;
#define CND_RDEV_STATES 15

/* The stored and printed name of a state ("?" for a value outside the enum). */
const char *cnd_rollout_state_name(cnd_rollout_state_t s);
const char *cnd_rdevice_state_name(cnd_rdevice_state_t s);
/* The state with that name: 0, or CND_EINVAL naming it. */
CND_MUST_USE int cnd_rollout_state_parse(cnd_rollout_state_t *s, const char *name);
CND_MUST_USE int cnd_rdevice_state_parse(cnd_rdevice_state_t *s, const char *name);
/* 1 for running, paused and rolling_back: the engine still acts on the rollout. */
int cnd_rollout_live(cnd_rollout_state_t s);
/* 1 for a state in which a device's part in a rollout is over. */
int cnd_rdevice_terminal(cnd_rdevice_state_t s);

typedef struct {
    int64_t id;
    char model[CND_REGISTRY_NAME_MAX + 1];
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
    cnd_rollout_state_t state;
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
    cnd_rdevice_state_t state;
    char reason[256];
    int64_t offered_ms, updated_ms;
    uint32_t latency_us;
} cnd_rdevice_t;

/* Creates or migrates the rollout tables (and the registry's first, cnd_registry_init). */
CND_MUST_USE int cnd_rstore_init(sqlite3 *db);

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

#endif
