/*
 * rollout_store.c: the rollout tables (see rollout_store.h). Prepared statements only; every
 * function joins the caller's transaction.
 */
#include "rollout_store.h"
#include "clock.h"
#include "db.h"
#include "digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Forward migrations of component "rollout" (common/db.h). */
static const char *const s_steps[] = {
    /* 0 -> 1 */
    ""
    "CREATE TABLE rollout_artifact("
    " id INTEGER PRIMARY KEY, model TEXT NOT NULL, version INTEGER NOT NULL,"
    " variant TEXT NOT NULL, job TEXT NOT NULL DEFAULT '', digest BLOB NOT NULL UNIQUE,"
    " size INTEGER NOT NULL, arena INTEGER NOT NULL, macs INTEGER NOT NULL,"
    " wbits INTEGER NOT NULL, classes TEXT NOT NULL, accuracy REAL NOT NULL,"
    " latency TEXT NOT NULL, bytes BLOB NOT NULL, created_ms INTEGER NOT NULL);"
    "CREATE TABLE rollout_seq(model TEXT PRIMARY KEY, seq INTEGER NOT NULL);"
    "CREATE TABLE rollout("
    " id INTEGER PRIMARY KEY, model TEXT NOT NULL, version INTEGER NOT NULL,"
    " select_expr TEXT NOT NULL, canary INTEGER NOT NULL, rate INTEGER NOT NULL,"
    " factor REAL NOT NULL, abort_pct REAL NOT NULL, abort_min INTEGER NOT NULL,"
    " timeout_s INTEGER NOT NULL, win_start INTEGER NOT NULL, win_end INTEGER NOT NULL,"
    " chunk INTEGER NOT NULL, max_active INTEGER NOT NULL, state TEXT NOT NULL,"
    " reason TEXT NOT NULL, wave INTEGER NOT NULL, job TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);"
    "CREATE TABLE rollout_manifest("
    " rollout INTEGER NOT NULL, artifact INTEGER NOT NULL, kind TEXT NOT NULL,"
    " seq INTEGER NOT NULL, manifest BLOB NOT NULL, PRIMARY KEY(rollout, artifact, kind));"
    "CREATE TABLE rollout_device("
    " rollout INTEGER NOT NULL, device TEXT NOT NULL, wave INTEGER NOT NULL,"
    " artifact INTEGER NOT NULL, prev_digest BLOB, state TEXT NOT NULL,"
    " reason TEXT NOT NULL, offered_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
    " latency_us INTEGER NOT NULL, PRIMARY KEY(rollout, device));"
    "CREATE TABLE rollout_latency("
    " artifact INTEGER NOT NULL, cpu TEXT NOT NULL, samples INTEGER NOT NULL,"
    " sum_us INTEGER NOT NULL, PRIMARY KEY(artifact, cpu));",
    /* 1 -> 2: artifacts and their sequence counters belong to the artifact registry
     * (coordinator/registry/registry.h). The registry adopted these rows when it was created in
     * this file (cnd_rstore_init creates it first); rows it cannot have seen are carried over
     * here, counters only ever raised, then the tables go. */
    "INSERT OR IGNORE INTO registry_artifact(id, model, version, variant, job, digest, size,"
    " arena, macs, wbits, classes, accuracy, latency, bytes, manifest, created_ms)"
    " SELECT id, model, version, variant, job, digest, size, arena, macs, wbits, classes,"
    " accuracy, latency, bytes, NULL, created_ms FROM rollout_artifact;"
    "INSERT INTO registry_seq(model, seq) SELECT model, seq FROM rollout_seq WHERE true"
    " ON CONFLICT(model) DO UPDATE SET seq = max(seq, excluded.seq);"
    "DROP TABLE rollout_artifact;"
    "DROP TABLE rollout_seq;",
};

/* Rollout tables from before the store kernel kept their version in rollout_meta (only 1
 * existed). */
static int s_legacy(sqlite3 *db, int *v)
{
    *v = cnd_db_has_table(db, "rollout") ? 1 : 0;
    return 0;
}

static const cnd_db_schema_t s_schema = {"rollout", s_steps, 2, s_legacy};

int cnd_rstore_init(sqlite3 *db)
{
    int rc = cnd_registry_init(db);
    return rc ? rc : cnd_db_migrate(db, &s_schema);
}

static void s_text(char *out, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
}

/* --- states: the one table between the enums and the names the database and the audit log
 * keep --------------------------------------------------------------------------------------- */

static const char *const s_rollout_states[CND_ROLLOUT_STATES] = {
    [CND_ROLLOUT_RUNNING] = "running",           [CND_ROLLOUT_PAUSED] = "paused",
    [CND_ROLLOUT_COMPLETED] = "completed",       [CND_ROLLOUT_ABORTED] = "aborted",
    [CND_ROLLOUT_ROLLING_BACK] = "rolling_back", [CND_ROLLOUT_ROLLED_BACK] = "rolled_back",
};

static const struct {
    const char *name;
    int terminal; /* the device's part in the rollout is over */
} s_device_states[CND_RDEV_STATES] = {
    [CND_RDEV_PENDING] = {"pending", 0},
    [CND_RDEV_DEFERRED] = {"deferred", 0},
    [CND_RDEV_OFFERED] = {"offered", 0},
    [CND_RDEV_HEALTHY] = {"healthy", 1},
    [CND_RDEV_FAILED] = {"failed", 1},
    [CND_RDEV_REFUSED] = {"refused", 1},
    [CND_RDEV_TIMEOUT] = {"timeout", 1},
    [CND_RDEV_CURRENT] = {"current", 1},
    [CND_RDEV_SKIPPED] = {"skipped", 1},
    [CND_RDEV_CANCELLED] = {"cancelled", 1},
    [CND_RDEV_ROLLBACK_SENT] = {"rollback_sent", 0},
    [CND_RDEV_ROLLED_BACK] = {"rolled_back", 1},
    [CND_RDEV_ROLLBACK_FAILED] = {"rollback_failed", 1},
    [CND_RDEV_ROLLBACK_TIMEOUT] = {"rollback_timeout", 1},
    [CND_RDEV_ROLLBACK_UNAVAILABLE] = {"rollback_unavailable", 1},
};

const char *cnd_rollout_state_name(cnd_rollout_state_t s)
{
    return (unsigned)s < CND_ROLLOUT_STATES ? s_rollout_states[s] : "?";
}

const char *cnd_rdevice_state_name(cnd_rdevice_state_t s)
{
    return (unsigned)s < CND_RDEV_STATES ? s_device_states[s].name : "?";
}

int cnd_rollout_state_parse(cnd_rollout_state_t *s, const char *name)
{
    for (int i = 0; i < CND_ROLLOUT_STATES; i++)
        if (strcmp(name, s_rollout_states[i]) == 0) {
            *s = (cnd_rollout_state_t)i;
            return 0;
        }
    return cnd_errf(CND_EINVAL, "'%s' is not a rollout state", name);
}

int cnd_rdevice_state_parse(cnd_rdevice_state_t *s, const char *name)
{
    for (int i = 0; i < CND_RDEV_STATES; i++)
        if (strcmp(name, s_device_states[i].name) == 0) {
            *s = (cnd_rdevice_state_t)i;
            return 0;
        }
    return cnd_errf(CND_EINVAL, "'%s' is not a device state", name);
}

int cnd_rollout_live(cnd_rollout_state_t s)
{
    return s == CND_ROLLOUT_RUNNING || s == CND_ROLLOUT_PAUSED || s == CND_ROLLOUT_ROLLING_BACK;
}

int cnd_rdevice_terminal(cnd_rdevice_state_t s)
{
    return (unsigned)s < CND_RDEV_STATES && s_device_states[s].terminal;
}

/* A state column read back: its name parsed, or CND_ECORRUPT naming the row. */
static int s_rollout_state_col(cnd_rollout_state_t *out, sqlite3 *db, sqlite3_stmt *st, int col,
                               int64_t id)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    if (t && cnd_rollout_state_parse(out, (const char *)t) == 0) return 0;
    return cnd_errf(CND_ECORRUPT, "%s: rollout %lld: unknown state '%s'", cnd_db_path(db),
                    (long long)id, t ? (const char *)t : "");
}

static int s_device_state_col(cnd_rdevice_state_t *out, sqlite3 *db, sqlite3_stmt *st, int col,
                              int64_t rollout, const char *device)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    if (t && cnd_rdevice_state_parse(out, (const char *)t) == 0) return 0;
    return cnd_errf(CND_ECORRUPT, "%s: rollout %lld: device %s: unknown state '%s'",
                    cnd_db_path(db), (long long)rollout, device, t ? (const char *)t : "");
}

int cnd_rstore_latency(sqlite3 *db, int64_t artifact, const char *cpu, uint32_t *us)
{
    sqlite3_stmt *st;
    int rc =
        cnd_db_prep(db, &st,
                    "SELECT sum_us / samples FROM rollout_latency WHERE artifact = ?1 AND cpu = ?2"
                    " AND samples > 0");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, artifact);
    sqlite3_bind_text(st, 2, cpu, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) *us = (uint32_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return r == SQLITE_ROW ? 0 : CND_ENOTFOUND;
}

int cnd_rstore_latency_add(sqlite3 *db, int64_t artifact, const char *cpu, uint32_t us)
{
    sqlite3_stmt *st;
    int rc =
        cnd_db_prep(db, &st,
                    "INSERT INTO rollout_latency VALUES(?1, ?2, 1, ?3) ON CONFLICT(artifact, cpu)"
                    " DO UPDATE SET samples = samples + 1, sum_us = sum_us + ?3");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, artifact);
    sqlite3_bind_text(st, 2, cpu, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, us);
    return cnd_db_done(db, st, "writing the rollout tables");
}

/* --- rollouts ------------------------------------------------------------------------------- */

#define S_RCOLS                                                                                    \
    "id, model, version, select_expr, canary, rate, factor, abort_pct, abort_min, timeout_s, "     \
    "win_start, win_end, chunk, max_active, state, reason, wave, job, created_ms, updated_ms"

static int s_rrow(cnd_rollout_rec_t *r, sqlite3 *db, sqlite3_stmt *st)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    s_text(r->model, sizeof r->model, st, 1);
    r->version = (uint64_t)sqlite3_column_int64(st, 2);
    s_text(r->select, sizeof r->select, st, 3);
    r->canary = (uint32_t)sqlite3_column_int64(st, 4);
    r->rate = (uint32_t)sqlite3_column_int64(st, 5);
    r->factor = sqlite3_column_double(st, 6);
    r->abort_pct = sqlite3_column_double(st, 7);
    r->abort_min = (uint32_t)sqlite3_column_int64(st, 8);
    r->timeout_s = (uint32_t)sqlite3_column_int64(st, 9);
    r->win_start = sqlite3_column_int(st, 10);
    r->win_end = sqlite3_column_int(st, 11);
    r->chunk = (uint32_t)sqlite3_column_int64(st, 12);
    r->max_active = (uint32_t)sqlite3_column_int64(st, 13);
    s_text(r->reason, sizeof r->reason, st, 15);
    r->wave = (uint32_t)sqlite3_column_int64(st, 16);
    s_text(r->job, sizeof r->job, st, 17);
    r->created_ms = sqlite3_column_int64(st, 18);
    r->updated_ms = sqlite3_column_int64(st, 19);
    return s_rollout_state_col(&r->state, db, st, 14, r->id);
}

static void s_rbind(sqlite3_stmt *st, const cnd_rollout_rec_t *r)
{
    sqlite3_bind_text(st, 1, r->model, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (int64_t)r->version);
    sqlite3_bind_text(st, 3, r->select, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, r->canary);
    sqlite3_bind_int64(st, 5, r->rate);
    sqlite3_bind_double(st, 6, r->factor);
    sqlite3_bind_double(st, 7, r->abort_pct);
    sqlite3_bind_int64(st, 8, r->abort_min);
    sqlite3_bind_int64(st, 9, r->timeout_s);
    sqlite3_bind_int(st, 10, r->win_start);
    sqlite3_bind_int(st, 11, r->win_end);
    sqlite3_bind_int64(st, 12, r->chunk);
    sqlite3_bind_int64(st, 13, r->max_active);
    sqlite3_bind_text(st, 14, cnd_rollout_state_name(r->state), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 15, r->reason, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 16, r->wave);
    sqlite3_bind_text(st, 17, r->job, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 18, r->created_ms);
    sqlite3_bind_int64(st, 19, r->updated_ms);
}

int cnd_rstore_rollout_insert(sqlite3 *db, cnd_rollout_rec_t *r)
{
    sqlite3_stmt *st;
    int rc =
        cnd_db_prep(db, &st,
                    "INSERT INTO rollout(model, version, select_expr, canary, rate, factor,"
                    " abort_pct, abort_min, timeout_s, win_start, win_end, chunk, max_active,"
                    " state, reason, wave, job, created_ms, updated_ms)"
                    " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19)");
    if (rc) return rc;
    r->created_ms = r->updated_ms = cnd_unix_time() * 1000;
    s_rbind(st, r);
    if ((rc = cnd_db_done(db, st, "writing the rollout tables"))) return rc;
    r->id = sqlite3_last_insert_rowid(db);
    return 0;
}

int cnd_rstore_rollout_update(sqlite3 *db, const cnd_rollout_rec_t *r)
{
    sqlite3_stmt *st;
    int rc =
        cnd_db_prep(db, &st,
                    "UPDATE rollout SET model=?1, version=?2, select_expr=?3, canary=?4, rate=?5,"
                    " factor=?6, abort_pct=?7, abort_min=?8, timeout_s=?9, win_start=?10,"
                    " win_end=?11, chunk=?12, max_active=?13, state=?14, reason=?15, wave=?16,"
                    " job=?17, created_ms=?18, updated_ms=?19 WHERE id = ?20");
    if (rc) return rc;
    s_rbind(st, r);
    sqlite3_bind_int64(st, 20, r->id);
    return cnd_db_done(db, st, "writing the rollout tables");
}

int cnd_rstore_rollout_get(sqlite3 *db, int64_t id, cnd_rollout_rec_t *r)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(db, &st, "SELECT " S_RCOLS " FROM rollout WHERE id = ?1");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    int x = sqlite3_step(st);
    if (x == SQLITE_ROW) rc = s_rrow(r, db, st);
    sqlite3_finalize(st);
    if (x == SQLITE_ROW) return rc;
    if (x == SQLITE_DONE) return cnd_errf(CND_ENOTFOUND, "no rollout %lld", (long long)id);
    return cnd_errf(CND_EDB, "rollout store: %s", sqlite3_errmsg(db));
}

int cnd_rstore_rollouts(sqlite3 *db, cnd_rollout_rec_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st;
    int rc = cnd_db_prep(db, &st, "SELECT " S_RCOLS " FROM rollout ORDER BY id DESC");
    if (rc) return rc;
    size_t cap = 0;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? 2 * cap : 8;
            cnd_rollout_rec_t *g = realloc(*out, nc * sizeof *g);
            if (!g) {
                rc = cnd_errf(CND_ENOMEM, "out of memory");
                break;
            }
            *out = g;
            cap = nc;
        }
        if ((rc = s_rrow(&(*out)[(*n)++], db, st))) break;
    }
    if (!rc && r != SQLITE_DONE) rc = cnd_errf(CND_EDB, "rollout store: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int cnd_rstore_manifest_put(sqlite3 *db, int64_t rollout, int64_t artifact, const char *kind,
                            uint64_t seq, const uint8_t *m, size_t len)
{
    sqlite3_stmt *st;
    int rc =
        cnd_db_prep(db, &st, "INSERT OR REPLACE INTO rollout_manifest VALUES(?1, ?2, ?3, ?4, ?5)");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, rollout);
    sqlite3_bind_int64(st, 2, artifact);
    sqlite3_bind_text(st, 3, kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, (int64_t)seq);
    sqlite3_bind_blob(st, 5, m, (int)len, SQLITE_TRANSIENT);
    return cnd_db_done(db, st, "writing the rollout tables");
}

int cnd_rstore_manifest_get(sqlite3 *db, int64_t rollout, int64_t artifact, const char *kind,
                            uint8_t **m, size_t *len)
{
    sqlite3_stmt *st;
    int rc =
        cnd_db_prep(db, &st,
                    "SELECT manifest FROM rollout_manifest WHERE rollout = ?1 AND artifact = ?2"
                    " AND kind = ?3");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, rollout);
    sqlite3_bind_int64(st, 2, artifact);
    sqlite3_bind_text(st, 3, kind, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(st, 0);
        *m = malloc(n ? n : 1);
        if (*m) {
            memcpy(*m, sqlite3_column_blob(st, 0), n);
            *len = n;
        } else {
            rc = cnd_errf(CND_ENOMEM, "out of memory");
        }
    } else {
        rc = r == SQLITE_DONE ? CND_ENOTFOUND
                              : cnd_errf(CND_EDB, "rollout store: %s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    return rc;
}

int cnd_rstore_device_put(sqlite3 *db, const cnd_rdevice_t *d)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(
        db, &st, "INSERT OR REPLACE INTO rollout_device VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, d->rollout);
    sqlite3_bind_text(st, 2, d->device, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, d->wave);
    sqlite3_bind_int64(st, 4, d->artifact);
    if (d->has_prev)
        sqlite3_bind_blob(st, 5, d->prev_digest, 32, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, 5);
    sqlite3_bind_text(st, 6, cnd_rdevice_state_name(d->state), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, d->reason, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 8, d->offered_ms);
    sqlite3_bind_int64(st, 9, d->updated_ms);
    sqlite3_bind_int64(st, 10, d->latency_us);
    return cnd_db_done(db, st, "writing the rollout tables");
}

int cnd_rstore_devices(sqlite3 *db, int64_t rollout, cnd_rdevice_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st;
    int rc = cnd_db_prep(
        db, &st,
        "SELECT rollout, device, wave, artifact, prev_digest, state, reason, offered_ms,"
        " updated_ms, latency_us FROM rollout_device WHERE rollout = ?1"
        " ORDER BY wave, device");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, rollout);
    size_t cap = 0;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? 2 * cap : 64;
            cnd_rdevice_t *g = realloc(*out, nc * sizeof *g);
            if (!g) {
                rc = cnd_errf(CND_ENOMEM, "out of memory");
                break;
            }
            *out = g;
            cap = nc;
        }
        cnd_rdevice_t *d = &(*out)[(*n)++];
        memset(d, 0, sizeof *d);
        d->rollout = sqlite3_column_int64(st, 0);
        s_text(d->device, sizeof d->device, st, 1);
        d->wave = (uint32_t)sqlite3_column_int64(st, 2);
        d->artifact = sqlite3_column_int64(st, 3);
        if (sqlite3_column_bytes(st, 4) == 32) {
            d->has_prev = 1;
            memcpy(d->prev_digest, sqlite3_column_blob(st, 4), 32);
        }
        s_text(d->reason, sizeof d->reason, st, 6);
        d->offered_ms = sqlite3_column_int64(st, 7);
        d->updated_ms = sqlite3_column_int64(st, 8);
        d->latency_us = (uint32_t)sqlite3_column_int64(st, 9);
        if ((rc = s_device_state_col(&d->state, db, st, 5, rollout, d->device))) break;
    }
    if (!rc && r != SQLITE_DONE) rc = cnd_errf(CND_EDB, "rollout store: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}
