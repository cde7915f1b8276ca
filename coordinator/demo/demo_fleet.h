/*
 * demo_fleet.h: the edge-fleet part of `condenser demo`: the signed artifact the federation
 * produced rolled out to a simulated fleet, in health-gated waves, from the demo's own
 * coordinator directory (so every step lands in the coordinator's audit log).
 *
 * Everything runs as separate processes of this executable, as an operator would run them
 * (docs/federation-operator-guide.md, section 9): `rollout publish` of the version the devices
 * run before (v1) under the job's name, `rollout serve --until-idle`, `fleet-sim` with every
 * device starting on v1, and, once every device has reported its profile, `rollout create` of
 * the new one (v2), which the job's end published in the artifact registry already.
 * This process only reads the coordinator's database to show progress and to count the
 * outcomes. Every wait has a deadline; on timeout the children are stopped and the error names
 * their logs.
 */
#ifndef CND_DEMO_FLEET_H
#define CND_DEMO_FLEET_H

#include "error.h"
#include "fleet_sim.h"
#include "rollout_state.h"
#include "rollout.h"

#include <stdint.h>

typedef struct {
    const char *coord_dir; /* the coordinator directory (made by `coordinator init`) */
    const char *out_dir;   /* logs, manifests, endpoint and device report go here */
    const char *v1, *v2;   /* the artifact devices run before, and the one rolled out */
    double v1_accuracy;    /* v1's test accuracy, recorded at its publication (-1: none) */
    uint64_t v1_version;   /* the job's model version v1 was frozen from */
    uint64_t v2_version;   /* the version of v2, the job's artifact in the registry */
    const char *model;     /* the job's name in the artifact registry */
    const char *job;       /* the job both versions come from */
    uint32_t devices;      /* fleet size (>= 1) */
    uint32_t canary;       /* canary wave; the next wave has 2x that, each later one 2x more */
    double timeout_s;      /* for connecting and for the rollout, each */
    void (*say)(const char *line); /* progress lines; may be NULL */
} cnd_demo_fleet_opts_t;

typedef struct {
    int64_t rollout;           /* its id */
    cnd_rollout_state_t state; /* where it ended (completed, rolled_back, aborted, ...) */
    char reason[256];
    uint32_t targeted;     /* devices in its waves */
    uint32_t on_v2, on_v1; /* devices running each version at the end (fleet-sim's report) */
    uint32_t n_waves;
    cnd_rollout_wave_t *waves; /* per wave, 0 = canary (owned; cnd_demo_fleet_result_free) */
    double *wave_s;            /* per wave: seconds from its start to its end, as polled every
                                * 50 ms (owned) */
    uint32_t rate;             /* first wave after the canary */
    double connect_s;          /* fleet start to every device profiled */
    double rollout_s;          /* `rollout create` done to the server idle */
} cnd_demo_fleet_result_t;

/* Runs the rollout. Returns 0 when it ran to an end state, whatever that state is (the caller
 * judges *r); CND_ETIMEOUT, CND_EIO (a command failed: the message names its log), CND_EDB. */
CND_MUST_USE int cnd_demo_fleet_run(cnd_demo_fleet_result_t *r, const cnd_demo_fleet_opts_t *o);

void cnd_demo_fleet_result_free(cnd_demo_fleet_result_t *r);

/* Enrolls a simulator's devices into a coordinator database (fleet_device rows) in one
 * transaction, as `condenser rollout enroll` does; devices enrolled already are skipped. With
 * an audit log on that database (not NULL), each enrollment is also its "enroll" entry,
 * written by `actor` (the coordinator's fingerprint). */
CND_MUST_USE int cnd_demo_fleet_enroll(cnd_fleet_sim_t *s, sqlite3 *db, cnd_audit_t *audit,
                                       const char *actor);
/* The same into the rollout state st (rollout_state.h, SQLite or PostgreSQL), with the audit
 * entries in st's coordinator database: one transaction on each, the state's committed first. */
CND_MUST_USE int cnd_demo_fleet_enroll_state(cnd_fleet_sim_t *s, cnd_rstate_t *st,
                                             cnd_audit_t *audit, const char *actor);

#endif
