/*
 * rollout.h: health-gated rollouts of signed artifacts to edge devices, on the coordinator.
 *
 * Three parts, over the rollout state (rollout_state.h: the tables of rollout_store.h and
 * fleet_registry.h, in the coordinator's SQLite database or in PostgreSQL), the artifact
 * registry and the audit log (audit_actions.h vocabulary) of the coordinator database:
 *
 *   - publication is the artifact registry's (coordinator/registry/registry.h,
 *     cnd_registry_publish): an artifact enters it as a variant of a model version after the
 *     runtime has validated it and its own self-test vectors pass; every manifest, offers and
 *     rollbacks included, is signed there under the one sequence rule per model name;
 *   - creation and operator actions (cnd_rollout_create, cnd_rollout_admin): devices are chosen
 *     by labels and by fit (each device gets the best variant that fits its class, RAM, flash
 *     and latency budget), shuffled with the rollout id as seed and split into a canary and
 *     exponentially growing waves; fresh offer manifests are signed (a new sequence, so a device
 *     that was rolled back accepts the same version again later). Pause, resume, abort and
 *     rollback only change the rollout's state; the engine acts on it;
 *   - the engine (cnd_rollout_engine_*), run inside the coordinator's event loop: it offers the
 *     artifact to the devices of the current wave (at most max_active at once, only inside the
 *     time window), serves their chunk requests, records their reports, counts a device that
 *     neither succeeds nor fails within the timeout as failed, moves to the next wave when every
 *     device of the current one has finished, and when failures exceed the threshold (after the
 *     minimum number of devices) aborts and sends every device it offered the artifact to a
 *     signed rollback to the artifact it ran before. Devices that come online later get the
 *     current target. All state is in the rollout state; a restarted coordinator picks up where
 *     it was.
 *
 * The engine is embedded by the process that owns the transport (rollout_serve.c today; the
 * coordinator daemon once it hosts it): one call per accepted device message, one tick per loop
 * iteration. A host with its own enrollment table calls cnd_fleet_ensure() (fleet_registry.h)
 * when a device session opens, so the device's profile has a row to land in. It never blocks and
 * never opens a transaction: the caller wraps each loop iteration in one and provides commit(),
 * which the engine calls before a message that depends on freshly written state (a rollback
 * manifest) leaves.
 */
#ifndef CND_ROLLOUT_H
#define CND_ROLLOUT_H

#include "audit_log.h"
#include "condenser.pb-c.h"
#include "error.h"
#include "identity.h"
#include "proto.h"
#include "registry.h"
#include "rollout_state.h"
#include "rollout_store.h"

#include <sqlite3.h>
#include <stdint.h>

/* --- creation and operator actions ---------------------------------------------------------- */

typedef struct {
    const char *model_version; /* "model@N", or "N" when the registry holds one model */
    const char *select;        /* label selection (fleet_registry.h); "" = all devices */
    uint32_t canary;           /* devices in the canary wave (0 = 1) */
    uint32_t rate;             /* devices in the first wave after the canary (0 = all) */
    double factor;             /* each later wave is this many times larger (>= 1) */
    double abort_pct;          /* abort when failures exceed this share of finished devices */
    uint32_t abort_min;        /* ... once at least this many have finished */
    uint32_t timeout_s;        /* per-device deadline from the offer */
    const char *window;        /* "HH:MM-HH:MM" UTC when new offers may go out; NULL = always */
    uint32_t chunk;            /* chunk size offered (0 = 65536) */
    uint32_t max_active;       /* devices downloading or on trial at once (0 = 500) */
    int64_t expires_s;         /* offer manifest lifetime (0 = 30 days) */
} cnd_rollout_params_t;

typedef struct {
    int64_t id;
    uint32_t selected; /* devices that matched the labels */
    uint32_t targeted; /* of which a variant fits and they do not run it yet */
    uint32_t current;  /* already running the target */
    uint32_t unfit;    /* no variant fits */
    uint32_t busy;     /* in another live rollout */
    uint32_t waves;    /* canary included */
} cnd_rollout_summary_t;

CND_MUST_USE int cnd_rollout_create(cnd_rstate_t *st, cnd_audit_t *audit, const cnd_identity_t *id,
                                    const char *actor, const cnd_rollout_params_t *p,
                                    cnd_rollout_summary_t *out);

/* action: "pause", "resume", "abort" or "rollback". Refused (CND_ESTATE) when the rollout's state
 * does not allow it. Logs rollout.state. */
CND_MUST_USE int cnd_rollout_admin(cnd_rstate_t *st, cnd_audit_t *audit, const char *actor,
                                   int64_t id, const char *action, const char *reason);

/* Where the devices of each wave of a rollout stand, from its device rows (rollout_store.h). */
typedef struct {
    uint32_t devices;       /* rows in the wave */
    uint32_t healthy;       /* installed, self-tested and reported healthy */
    uint32_t failed;        /* failed or refused */
    uint32_t timed_out;     /* no outcome within the device timeout */
    uint32_t deferred;      /* offline when the wave came */
    uint32_t open;          /* offered, pending or waiting for a rollback */
    uint32_t rolled_back;   /* confirmed a rollback */
    uint32_t other;         /* skipped, current, rollback_failed, ... */
    int64_t first_offer_ms; /* earliest offer to a device of the wave, 0 = none yet */
    int64_t last_update_ms; /* latest change of an offered device of the wave, 0 = none */
} cnd_rollout_wave_t;

/* Tallies device rows (any order) by wave: *out receives *n_waves entries, indexed by wave
 * (0 = canary), highest wave + 1 of them (caller frees; NULL and 0 for no rows). Returns 0,
 * CND_ECORRUPT for a wave number above the number of rows, or CND_ENOMEM. */
CND_MUST_USE int cnd_rollout_waves(cnd_rollout_wave_t **out, uint32_t *n_waves,
                                   const cnd_rdevice_t *dv, size_t n);

/* --- the engine ----------------------------------------------------------------------------- */

typedef struct {
    void *ctx;
    /* Sends one message to a device by name. Returns 0, or CND_ENOTFOUND when it has no session
     * (the engine then treats it as offline). */
    int (*send)(void *ctx, const char *device, Condenser__MsgType type, void *payload);
    /* Commits the caller's transaction and opens the next one. */
    int (*commit)(void *ctx);
    /* One progress line (may be NULL). */
    void (*log)(void *ctx, const char *line);
} cnd_rollout_io_t;

typedef struct {
    int offline_after_s; /* a device silent this long is offline (0 = 30) */
    int poll_ms;         /* how often operator changes are read from the database (0 = 500) */
    /* Base URL of a content-addressed cache of the artifacts (`rollout export-cache`); offers
     * name it and devices fetch the bytes there, falling back to chunk requests. NULL or "" =
     * chunks over the control channel only. */
    const char *artifact_url;
    /* 1: one of several replicas serving devices side by side on a PostgreSQL state ("Spread"
     * below); 0: the only engine on its state (SQLite, or one process on PostgreSQL). */
    int spread;
} cnd_rollout_engine_opts_t;

typedef struct cnd_rollout_engine cnd_rollout_engine_t;

/* The engine borrows st (the rollout state, over the coordinator database), audit and id (the
 * signing identity), which must outlive it. */
CND_MUST_USE int cnd_rollout_engine_new(cnd_rollout_engine_t **out, cnd_rstate_t *st,
                                        cnd_audit_t *audit, const cnd_identity_t *id,
                                        const cnd_rollout_io_t *io,
                                        const cnd_rollout_engine_opts_t *o);
void cnd_rollout_engine_destroy(cnd_rollout_engine_t **e);

/* Spread (docs/architecture.md, "Devices spread over replicas"). Every replica runs an engine
 * over the same PostgreSQL state and serves the devices whose sessions it holds: it offers them
 * the artifact when their wave has come, serves their chunks, records their reports and sends
 * their rollbacks. Only the leader (the holder of the leader lock, cnd_rstate_lead) makes the
 * wave decisions: timeouts, deferrals, moving to the next wave, completion, aborts, and the
 * signing of manifests the rollout did not sign at creation. cnd_rollout_engine_lead makes this
 * engine the leader (its devices get offline_after_s to reconnect before any is deferred).
 * cnd_rollout_sync brings the in-memory device rows up to date with every change other replicas
 * committed (rollout_state.h, device_changes); the host calls it after it opens each transaction,
 * so every decision of the transaction starts from the state as it is (writers take turns). */
void cnd_rollout_engine_lead(cnd_rollout_engine_t *e);
CND_MUST_USE int cnd_rollout_sync(cnd_rollout_engine_t *e);

/* A message from an authenticated device (its enrolled name and fingerprint): DeviceProfile,
 * ArtifactChunkRequest, ActivationReport, Heartbeat, Error. Returns 0, or a refusal (CND_EPROTO,
 * CND_EPERM, CND_ENOTFOUND) with *rej filled for an Error reply and the detail set. */
int cnd_rollout_on_message(cnd_rollout_engine_t *e, const char *device, const char *fpr,
                           const Condenser__Envelope *env, cnd_proto_reject_t *rej);

/* Advances waves, timeouts, offers and rollbacks. now_ms is wall-clock Unix milliseconds. */
void cnd_rollout_tick(cnd_rollout_engine_t *e, int64_t now_ms);

typedef struct {
    uint32_t live;   /* rollouts running, paused or rolling back */
    uint32_t online; /* devices seen recently */
    uint32_t active; /* devices downloading or on trial */
    uint64_t chunks_sent, bytes_sent, offers_sent, rollbacks_sent, reports;
} cnd_rollout_stats_t;

void cnd_rollout_engine_stats(const cnd_rollout_engine_t *e, cnd_rollout_stats_t *st);
/* 1 when no rollout is running, paused or rolling back (every device reached a final state). */
int cnd_rollout_engine_idle(const cnd_rollout_engine_t *e);

#endif
