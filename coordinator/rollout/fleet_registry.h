/*
 * fleet_registry.h: the coordinator's register of edge devices: who is enrolled (name and
 * Ed25519 key, whose X25519 form the ZAP handler admits), and what each device last said about
 * itself in its DeviceProfile (labels, hardware and CPU class, RAM, flash and latency budgets,
 * the artifact it runs). Rollouts select devices from here by labels and by fit.
 *
 * Tables (prefixed fleet_, in the coordinator's database, created on first open):
 *   fleet_device(name PK, ed_pk, curve_pk, fpr, enrolled_ms, revoked_ms, hw, cpu, ram, flash,
 *                budget_us, labels, running_digest, running_seq, runtime, profile_ms)
 * Labels are stored as "key\x1fvalue\x1e..." (the protocol forbids control characters in label
 * text, so the separators cannot occur inside one).
 *
 * Selection expressions (`--select`): comma-separated terms KEY=VALUE, all of which must hold.
 * KEY is a label key, or one of the built-ins `class` (hardware class), `cpu` (CPU class) and
 * `name`; VALUE may list alternatives separated by '|', and `*` matches any value of a present
 * key. An empty expression selects every device.
 *
 * Not thread-safe: one connection per thread. Functions join the caller's transaction.
 */
#ifndef CND_FLEET_REGISTRY_H
#define CND_FLEET_REGISTRY_H

#include "error.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define CND_FLEET_NAME_MAX   63
#define CND_FLEET_LABELS_MAX 32

typedef struct {
    char key[33];
    char value[129];
} cnd_fleet_label_t;

typedef struct {
    char name[CND_FLEET_NAME_MAX + 1];
    uint8_t ed_pk[32];
    uint8_t curve_pk[32];
    char fpr[65];
    int64_t enrolled_ms, revoked_ms;
    /* from the last DeviceProfile (profile_ms 0: none yet) */
    char hw[64], cpu[64], runtime[64];
    uint64_t ram, flash;
    uint32_t budget_us;
    cnd_fleet_label_t labels[CND_FLEET_LABELS_MAX];
    size_t n_labels;
    int has_running;
    uint8_t running_digest[32];
    uint64_t running_seq;
    int64_t profile_ms;
} cnd_fleet_device_t;

/* Creates the tables if needed. Returns 0 or CND_EDB. */
CND_MUST_USE int cnd_fleet_init(sqlite3 *db);

/* Enrolls a device (its key is admitted from now on). CND_EEXIST when the name or key is
 * enrolled, CND_EINVAL for a bad name or key, CND_EDB. */
CND_MUST_USE int cnd_fleet_enroll(sqlite3 *db, const char *name, const uint8_t ed_pk[32]);
/* cnd_fleet_enroll, then (when audit is not NULL) the log's "enroll" entry for the device
 * (coordinator/audit_actions.h), written by `actor` (a fingerprint) in the caller's transaction
 * on the database the log shares. Every path that admits a device goes through here. */
typedef struct cnd_audit cnd_audit_t;
CND_MUST_USE int cnd_fleet_enroll_logged(sqlite3 *db, cnd_audit_t *audit, const char *actor,
                                         const char *name, const uint8_t ed_pk[32]);
/* For a host that keeps its own enrollment table (the coordinator daemon's identities): makes
 * sure `name` with this key has a fleet_device row, so its profiles can be stored. Returns 0,
 * CND_EEXIST when the name is registered with another key (or the key under another name),
 * CND_EINVAL or CND_EDB. */
CND_MUST_USE int cnd_fleet_ensure(sqlite3 *db, const char *name, const uint8_t ed_pk[32]);

/* Revokes by name: CND_ENOTFOUND, CND_ESTATE (already), CND_EDB. */
CND_MUST_USE int cnd_fleet_revoke(sqlite3 *db, const char *name);

/* Looks up by name or by CURVE key (revoked devices too: check revoked_ms). CND_ENOTFOUND. */
CND_MUST_USE int cnd_fleet_get(sqlite3 *db, const char *name, cnd_fleet_device_t *d);
CND_MUST_USE int cnd_fleet_by_curve(sqlite3 *db, const uint8_t curve_pk[32], cnd_fleet_device_t *d);

/* Stores a profile (d->name must be enrolled). */
CND_MUST_USE int cnd_fleet_put_profile(sqlite3 *db, const cnd_fleet_device_t *d);

/* How many devices are enrolled (revoked ones too) and how many of those sent a profile.
 * Returns 0 or CND_EDB (also before the tables exist). */
CND_MUST_USE int cnd_fleet_count(sqlite3 *db, uint64_t *enrolled, uint64_t *profiled);

/* All enrolled devices into a new array (caller frees). */
CND_MUST_USE int cnd_fleet_list(sqlite3 *db, cnd_fleet_device_t **out, size_t *n);

/* Labels as stored in the table and back. */
void cnd_fleet_labels_encode(char *out, size_t cap, const cnd_fleet_device_t *d);
void cnd_fleet_labels_decode(cnd_fleet_device_t *d, const char *s);

/* A parsed selection expression. */
typedef struct {
    size_t n;
    struct {
        char key[33];
        char values[8][129]; /* alternatives */
        size_t n_values;     /* 0 = "*" */
    } t[16];
} cnd_fleet_select_t;

/* Parses --select. Returns 0 or CND_EINVAL naming the bad term. */
CND_MUST_USE int cnd_fleet_select_parse(cnd_fleet_select_t *s, const char *expr);
/* 1 if the device matches every term (devices without a profile match only the empty one). */
int cnd_fleet_select_match(const cnd_fleet_select_t *s, const cnd_fleet_device_t *d);

#endif
