/*
 * rollout_state.h: where the rollout engine keeps its state (the fleet registry, rollouts,
 * their manifests, device rows and learned latencies), behind one interface with two back ends,
 * chosen by a URL:
 *
 *   sqlite: (or NULL, "")   the tables of rollout_store.h and fleet_registry.h in the coordinator
 *                           database itself, DIR/coordinator.db: the embedded default, one machine.
 *   postgresql://... or postgres://...   the same tables in a PostgreSQL database (libpq
 *                           connection URI, e.g. postgresql:///condenser?host=/run/postgresql),
 *                           so that several `rollout serve` processes can share them.
 *
 * What stays in the coordinator database whichever back end holds the state: the artifact
 * registry (artifact bytes, their sequence counters) and the audit log; cnd_rstate_local() is
 * that database.
 *
 * Transactions. SQLite: the state shares the caller's transaction on the coordinator database
 * (BEGIN IMMEDIATE there), and cnd_rstate_begin/commit/rollback do nothing. PostgreSQL: the state
 * has a transaction of its own, which cnd_rstate_begin opens (taking the writers' advisory lock,
 * so writers take turns as SQLite's BEGIN IMMEDIATE makes them) and cnd_rstate_commit ends; the
 * caller opens it before the coordinator database's BEGIN IMMEDIATE (one lock order for every
 * writer) and commits it before the coordinator database's transaction (docs/operations.md says
 * what a crash between the two leaves). Outside a cnd_rstate_begin every PostgreSQL statement is
 * its own transaction.
 *
 * PostgreSQL: the schema is created or migrated on first use, in one transaction under an
 * advisory lock (two processes starting at once do not race), with its version in the table
 * condenser_schema. Every value goes to the server as a bound parameter; text that is not valid
 * UTF-8 is refused before it is sent (CND_EINVAL), so a device's bad label cannot abort a
 * transaction other devices' changes share.
 *
 * One handle is one connection: not thread-safe, open one per thread.
 */
#ifndef CND_ROLLOUT_STATE_H
#define CND_ROLLOUT_STATE_H

#include "error.h"
#include "fleet_registry.h"
#include "rollout_store.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define CND_RSTATE_URL_MAX 1024

typedef struct cnd_rstate cnd_rstate_t;

/* Opens the state named by url over `local`, the coordinator database (borrowed; it must outlive
 * the handle). Creates or migrates the tables. Returns 0, CND_EINVAL for a URL that is neither
 * back end, CND_EDB naming the server and its message when PostgreSQL refuses, CND_ENOMEM. */
CND_MUST_USE int cnd_rstate_open(cnd_rstate_t **out, const char *url, sqlite3 *local);
void cnd_rstate_close(cnd_rstate_t **s);

/* "sqlite" or "postgresql". */
const char *cnd_rstate_kind(const cnd_rstate_t *s);
/* The URL as given, with any password replaced by "***" (for logs). */
const char *cnd_rstate_url(const cnd_rstate_t *s);
/* The coordinator database (artifact registry, audit log). */
sqlite3 *cnd_rstate_local(const cnd_rstate_t *s);
/* 1 when the URL names PostgreSQL (checked without connecting). */
int cnd_rstate_url_is_pg(const char *url);

/* See "Transactions" above. begin: 0 or CND_EDB. commit: 0, or CND_EDB when the server refused
 * it (nothing of the transaction was kept). rollback never fails. */
CND_MUST_USE int cnd_rstate_begin(cnd_rstate_t *s);
CND_MUST_USE int cnd_rstate_commit(cnd_rstate_t *s);
void cnd_rstate_rollback(cnd_rstate_t *s);

/* --- rollouts (as rollout_store.h) -------------------------------------------------------- */
CND_MUST_USE int cnd_rstate_rollout_insert(cnd_rstate_t *s, cnd_rollout_rec_t *r);
CND_MUST_USE int cnd_rstate_rollout_get(cnd_rstate_t *s, int64_t id, cnd_rollout_rec_t *r);
CND_MUST_USE int cnd_rstate_rollout_update(cnd_rstate_t *s, const cnd_rollout_rec_t *r);
CND_MUST_USE int cnd_rstate_rollouts(cnd_rstate_t *s, cnd_rollout_rec_t **out, size_t *n);
/* The rollouts the engine keeps loaded, by id: the live ones and the newest completed or aborted
 * one of each model. ids and states are parallel arrays the caller frees. */
CND_MUST_USE int cnd_rstate_rollouts_loaded(cnd_rstate_t *s, int64_t **ids,
                                            cnd_rollout_state_t **states, size_t *n);
CND_MUST_USE int cnd_rstate_manifest_put(cnd_rstate_t *s, int64_t rollout, int64_t artifact,
                                         const char *kind, uint64_t seq, const uint8_t *m,
                                         size_t len);
CND_MUST_USE int cnd_rstate_manifest_get(cnd_rstate_t *s, int64_t rollout, int64_t artifact,
                                         const char *kind, uint8_t **m, size_t *len);
CND_MUST_USE int cnd_rstate_device_put(cnd_rstate_t *s, const cnd_rdevice_t *d);
CND_MUST_USE int cnd_rstate_devices(cnd_rstate_t *s, int64_t rollout, cnd_rdevice_t **out,
                                    size_t *n);
/* Names of devices held by a live rollout (not skipped, current or cancelled there); the caller
 * frees each name and the array. */
CND_MUST_USE int cnd_rstate_busy_devices(cnd_rstate_t *s, char ***names, size_t *n);
CND_MUST_USE int cnd_rstate_latency(cnd_rstate_t *s, int64_t artifact, const char *cpu,
                                    uint32_t *us);
CND_MUST_USE int cnd_rstate_latency_add(cnd_rstate_t *s, int64_t artifact, const char *cpu,
                                        uint32_t us);

/* --- the fleet registry (as fleet_registry.h) ----------------------------------------------- */
CND_MUST_USE int cnd_rstate_fleet_enroll(cnd_rstate_t *s, const char *name,
                                         const uint8_t ed_pk[32]);
CND_MUST_USE int cnd_rstate_fleet_get(cnd_rstate_t *s, const char *name, cnd_fleet_device_t *d);
CND_MUST_USE int cnd_rstate_fleet_by_curve(cnd_rstate_t *s, const uint8_t curve_pk[32],
                                           cnd_fleet_device_t *d);
CND_MUST_USE int cnd_rstate_fleet_put_profile(cnd_rstate_t *s, const cnd_fleet_device_t *d);
CND_MUST_USE int cnd_rstate_fleet_list(cnd_rstate_t *s, cnd_fleet_device_t **out, size_t *n);
CND_MUST_USE int cnd_rstate_fleet_count(cnd_rstate_t *s, uint64_t *enrolled, uint64_t *profiled);
CND_MUST_USE int cnd_rstate_fleet_revoke(cnd_rstate_t *s, const char *name);
/* Names of revoked devices (caller frees each and the array). */
CND_MUST_USE int cnd_rstate_fleet_revoked(cnd_rstate_t *s, char ***names, size_t *n);

/* --- leadership (several `rollout serve` replicas on one PostgreSQL state) --------------------
 * One replica at a time runs the engine: the one holding the leader lock, a session-level
 * advisory lock of this handle's connection (open a handle for it alone). The server releases it
 * when the connection ends, so a leader killed with SIGKILL frees it at once and a standby
 * polling cnd_rstate_lead takes it at its next try.
 * lead: *leading = 1 when this handle holds the lock (taken now or before), 0 when another
 * session does; 0 or CND_EDB. SQLite: always leading (one process per database file is how
 * `rollout serve` runs there).
 * lead_check: 0 while this handle still holds it; CND_EDB when the connection is gone (the lock
 * with it: the caller must stop leading at once). */
CND_MUST_USE int cnd_rstate_lead(cnd_rstate_t *s, int *leading);
CND_MUST_USE int cnd_rstate_lead_check(cnd_rstate_t *s);

/* --- replicas serving devices side by side (PostgreSQL; rollout.h, "spread") ----------------
 * device_changes: the device rows written since change number `after`, oldest change first.
 * On PostgreSQL every device_put stamps its row with the next value of a sequence; writers hold
 * the writers' lock (cnd_rstate_begin) from that stamp to their commit, so a reader inside its
 * own cnd_rstate_begin sees every change up to the highest number it reads and none is committed
 * later with a lower one. *last receives the highest number returned (after when none); with out
 * NULL only *last is set, to the highest number in the table (0 for none).
 * presence_put: these devices have a session on the calling replica at now_ms (one statement);
 * presence_since: the names recorded at or after since_ms (caller frees, cnd_rstate_names_free).
 * SQLite: CND_ESTATE (one process serves every device there). */
CND_MUST_USE int cnd_rstate_device_changes(cnd_rstate_t *s, int64_t after, cnd_rdevice_t **out,
                                           size_t *n, int64_t *last);
CND_MUST_USE int cnd_rstate_presence_put(cnd_rstate_t *s, char *const *names, size_t n,
                                         int64_t now_ms);
CND_MUST_USE int cnd_rstate_presence_since(cnd_rstate_t *s, int64_t since_ms, char ***names,
                                           size_t *n);

/* Frees an array of names from cnd_rstate_busy_devices or cnd_rstate_fleet_revoked. */
void cnd_rstate_names_free(char **names, size_t n);

#endif
