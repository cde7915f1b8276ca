/*
 * coord_store.c: the coordinator's SQLite state (see coord_store.h).
 *
 * Every statement is prepared and bound; nothing is built with string formatting. Functions
 * that write more than one row open a transaction unless the caller already holds one
 * (cnd_db_begin / cnd_db_end, common/db.h). Blobs (models, teachers, certificates) are read with
 * their sizes checked before they are copied.
 */
#include "coord_store.h"
#include "clock.h"
#include "db.h"
#include "data.h"
#include "digest.h"
#include "identity.h"
#include "registry.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cnd_cstore {
    sqlite3 *db;
    char path[512];
};

/* Forward migrations: entry i takes user_version i to i + 1. */
static const char *const s_migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE coord_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE identity("
    "  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL,"
    "  ed_pk BLOB NOT NULL UNIQUE, curve_pk BLOB NOT NULL UNIQUE, fingerprint TEXT NOT NULL,"
    "  certificate BLOB, enrolled_ms INTEGER NOT NULL, revoked_ms INTEGER NOT NULL DEFAULT 0,"
    "  revoke_reason TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE job("
    "  id INTEGER PRIMARY KEY, name TEXT NOT NULL, state TEXT NOT NULL, spec TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, reason TEXT NOT NULL DEFAULT '',"
    "  teacher BLOB, teacher_digest BLOB, momentum BLOB);"
    "CREATE TABLE model("
    "  job INTEGER NOT NULL REFERENCES job(id), version INTEGER NOT NULL, round INTEGER NOT NULL,"
    "  format TEXT NOT NULL, digest BLOB NOT NULL, size INTEGER NOT NULL, blob BLOB NOT NULL,"
    "  accuracy REAL NOT NULL DEFAULT -1, created_ms INTEGER NOT NULL, manifest BLOB,"
    "  PRIMARY KEY(job, version, format));"
    "CREATE TABLE round("
    "  job INTEGER NOT NULL REFERENCES job(id), round INTEGER NOT NULL, attempt INTEGER NOT NULL,"
    "  phase TEXT NOT NULL, outcome TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',"
    "  params BLOB NOT NULL, qat INTEGER NOT NULL, started_ms INTEGER NOT NULL,"
    "  phase_ms INTEGER NOT NULL, ended_ms INTEGER NOT NULL DEFAULT 0,"
    "  t_advertise REAL NOT NULL DEFAULT 0, t_share REAL NOT NULL DEFAULT 0,"
    "  t_masked REAL NOT NULL DEFAULT 0, t_unmask REAL NOT NULL DEFAULT 0,"
    "  t_finish REAL NOT NULL DEFAULT 0, n INTEGER NOT NULL, survivors INTEGER NOT NULL DEFAULT 0,"
    "  model_version INTEGER NOT NULL DEFAULT -1, ingress_bytes INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(job, round, attempt));"
    "CREATE TABLE round_site("
    "  job INTEGER NOT NULL, round INTEGER NOT NULL, attempt INTEGER NOT NULL, idx INTEGER NOT "
    "NULL,"
    "  name TEXT NOT NULL, fingerprint TEXT NOT NULL, status INTEGER NOT NULL DEFAULT 0,"
    "  loss REAL NOT NULL DEFAULT 0, accuracy REAL NOT NULL DEFAULT 0,"
    "  samples INTEGER NOT NULL DEFAULT 0, train_ms INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(job, round, attempt, idx));",
    /* 1 -> 2: public calibration samples for integer artifacts and QAT (compress/quant_fed.h) */
    "CREATE TABLE job_calib("
    "  job INTEGER PRIMARY KEY REFERENCES job(id), n INTEGER NOT NULL, c INTEGER NOT NULL,"
    "  h INTEGER NOT NULL, w INTEGER NOT NULL, x BLOB NOT NULL);"
    "ALTER TABLE round ADD COLUMN t_consistency REAL NOT NULL DEFAULT 0;",
    /* 2 -> 3: certificate renewal and key rotation (cnd_cstore_renew): when an identity's
     * certificate was last replaced, and every certificate and key it held before */
    "ALTER TABLE identity ADD COLUMN renewed_ms INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE identity_history("
    "  id INTEGER PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, ed_pk BLOB NOT NULL,"
    "  curve_pk BLOB NOT NULL, fingerprint TEXT NOT NULL, certificate BLOB,"
    "  superseded_ms INTEGER NOT NULL);"
    "CREATE INDEX identity_history_curve ON identity_history(curve_pk);",
    /* 3 -> 4: a round's metrics are secure sums over its survivors (docs/threat-model.md); the
     * per-site loss, accuracy and samples of round_site are no longer written (older rows keep
     * theirs) */
    "ALTER TABLE round ADD COLUMN samples INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE round ADD COLUMN validated INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE round ADD COLUMN correct INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE round ADD COLUMN loss_sum REAL NOT NULL DEFAULT 0;",
};
#define S_NMIG ((int)(sizeof s_migrations / sizeof s_migrations[0]))
_Static_assert(sizeof s_migrations / sizeof s_migrations[0] == CND_CSTORE_SCHEMA,
               "one migration per schema version");

/* A coordinator database from before the store kernel: PRAGMA user_version was this schema's
 * version (job_calib arrived with version 2). */
static int s_legacy(sqlite3 *db, int *v)
{
    *v = 0;
    if (!cnd_db_has_table(db, "identity")) return 0;
    if (!cnd_db_has_table(db, "coord_meta"))
        return cnd_errf(CND_EFORMAT, "%s is not a coordinator database", cnd_db_path(db));
    *v = cnd_db_has_table(db, "job_calib") ? 2 : 1;
    return 0;
}

static const cnd_db_schema_t s_schema = {"coordinator", s_migrations, S_NMIG, s_legacy};

int cnd_cstore_schema_version(void)
{
    return S_NMIG;
}

static int s_open(cnd_cstore_t **out, const char *path, unsigned flags)
{
    *out = NULL;
    cnd_cstore_t *s = calloc(1, sizeof *s);
    if (!s) return cnd_errf(CND_ENOMEM, "opening %s: out of memory", path);
    snprintf(s->path, sizeof s->path, "%s", path);
    int rc = cnd_db_open(&s->db, path, flags, "coordinator database");
    if (rc == CND_ENOTFOUND)
        rc = cnd_errf(CND_EIO, "%s: no such coordinator database (run condenser coordinator init)",
                      path);
    if (!rc)
        rc = (flags & CND_DB_READONLY) ? cnd_db_check(s->db, &s_schema, "coordinator database")
                                       : cnd_db_migrate(s->db, &s_schema);
    /* the artifact registry a job's end publishes into (coord_quant.c) lives in this file */
    if (!rc && !(flags & CND_DB_READONLY)) rc = cnd_registry_init(s->db);
    if (rc) {
        cnd_db_close(&s->db);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int cnd_cstore_open(cnd_cstore_t **out, const char *path, int create)
{
    return s_open(out, path, create ? CND_DB_CREATE : 0);
}

int cnd_cstore_open_readonly(cnd_cstore_t **out, const char *path)
{
    return s_open(out, path, CND_DB_READONLY);
}

int cnd_cstore_begin(cnd_cstore_t *s)
{
    if (!sqlite3_get_autocommit(s->db))
        return cnd_errf(CND_ESTATE, "%s: a transaction is already open", s->path);
    int own;
    return cnd_db_begin(s->db, &own);
}

int cnd_cstore_commit(cnd_cstore_t *s)
{
    return cnd_db_end(s->db, 1, 0);
}

void cnd_cstore_rollback(cnd_cstore_t *s)
{
    if (!s || sqlite3_get_autocommit(s->db)) return;
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

void cnd_cstore_close(cnd_cstore_t **ps)
{
    if (!ps || !*ps) return;
    cnd_cstore_t *s = *ps;
    cnd_db_close(&s->db);
    free(s);
    *ps = NULL;
}

sqlite3 *cnd_cstore_db(cnd_cstore_t *s)
{
    return s->db;
}

const char *cnd_cstore_path(const cnd_cstore_t *s)
{
    return s->path;
}

/* --- meta ----------------------------------------------------------------------------------- */

int cnd_cstore_meta_get(cnd_cstore_t *s, const char *key, char *out, size_t cap)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st, "SELECT value FROM coord_meta WHERE key = ?1");
    if (rc) return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
        rc = 0;
    } else if (r == SQLITE_DONE) {
        rc = cnd_errf(CND_ENOTFOUND, "%s: setting '%s' is not set", s->path, key);
    } else {
        rc = cnd_db_err(s->db, "reading a setting");
    }
    sqlite3_finalize(st);
    return rc;
}

int cnd_cstore_meta_set(cnd_cstore_t *s, const char *key, const char *val)
{
    sqlite3_stmt *st;
    int rc =
        cnd_db_prep(s->db, &st, "INSERT OR REPLACE INTO coord_meta(key, value) VALUES(?1, ?2)");
    if (rc) return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, val, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) rc = cnd_db_err(s->db, "writing a setting");
    sqlite3_finalize(st);
    return rc;
}

/* --- listing ------------------------------------------------------------------------------ */

/* Frees the n records of a list made by s_list and the list itself; sets *n to 0. */
static void s_list_free(void *list, size_t *n, size_t size, void (*fr)(void *rec))
{
    for (size_t i = 0; i < *n; i++) fr((char *)list + i * size);
    free(list);
    *n = 0;
}

/* Reads every row of a prepared statement into a growing array of records of `size` bytes:
 * row() fills one record (it starts by zeroing it, so a record it fails on can be freed), fr()
 * frees one. On error every record is freed and the list is left empty. Finalizes st. */
typedef int (*s_row_fn)(cnd_cstore_t *s, sqlite3_stmt *st, void *rec);
static int s_list(cnd_cstore_t *s, sqlite3_stmt *st, size_t size, s_row_fn row,
                  void (*fr)(void *rec), void **list, size_t *n, const char *what)
{
    *list = NULL;
    *n = 0;
    size_t cap = 0;
    int rc = 0, step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            void *g = realloc(*list, cap * size);
            if (!g) {
                rc = cnd_errf(CND_ENOMEM, "%s: out of memory", what);
                break;
            }
            *list = g;
        }
        rc = row(s, st, (char *)*list + *n * size);
        (*n)++;
        if (rc) break;
    }
    if (!rc && step != SQLITE_DONE) rc = cnd_db_err(s->db, what);
    sqlite3_finalize(st);
    if (rc) {
        s_list_free(*list, n, size, fr);
        *list = NULL;
    }
    return rc;
}

/* --- identities ----------------------------------------------------------------------------- */

void cnd_ident_rec_free(cnd_ident_rec_t *r)
{
    if (!r) return;
    free(r->cert);
    r->cert = NULL;
    r->cert_len = 0;
}

static int s_blob_copy(sqlite3_stmt *st, int col, uint8_t *dst, size_t n)
{
    if (sqlite3_column_type(st, col) != SQLITE_BLOB || (size_t)sqlite3_column_bytes(st, col) != n)
        return -1;
    memcpy(dst, sqlite3_column_blob(st, col), n);
    return 0;
}

#define S_IDENT_COLS                                                                               \
    "id, name, role, ed_pk, curve_pk, fingerprint, certificate, enrolled_ms, revoked_ms, "         \
    "revoke_reason, renewed_ms"

static int s_ident_row(cnd_cstore_t *s, sqlite3_stmt *st, cnd_ident_rec_t *r)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    snprintf(r->name, sizeof r->name, "%s", (const char *)sqlite3_column_text(st, 1));
    snprintf(r->role, sizeof r->role, "%s", (const char *)sqlite3_column_text(st, 2));
    if (s_blob_copy(st, 3, r->ed_pk, 32) || s_blob_copy(st, 4, r->curve_pk, 32))
        return cnd_errf(CND_ECORRUPT, "%s: identity %lld has a malformed key", s->path,
                        (long long)r->id);
    snprintf(r->fpr, sizeof r->fpr, "%s", (const char *)sqlite3_column_text(st, 5));
    int n = sqlite3_column_bytes(st, 6);
    if (sqlite3_column_type(st, 6) == SQLITE_BLOB && n > 0) {
        r->cert = malloc((size_t)n);
        if (!r->cert) return cnd_errf(CND_ENOMEM, "reading a certificate: out of memory");
        memcpy(r->cert, sqlite3_column_blob(st, 6), (size_t)n);
        r->cert_len = (size_t)n;
    }
    r->enrolled_ms = sqlite3_column_int64(st, 7);
    r->revoked_ms = sqlite3_column_int64(st, 8);
    snprintf(r->reason, sizeof r->reason, "%s", (const char *)sqlite3_column_text(st, 9));
    r->renewed_ms = sqlite3_column_int64(st, 10);
    return 0;
}

/* CND_EPERM when curve_pk was rotated out of some identity (and is not that identity's key
 * again, which cnd_cstore_renew never allows): a retired key is never admitted again. */
static int s_key_retired(cnd_cstore_t *s, const uint8_t curve_pk[32])
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st,
                         "SELECT name, superseded_ms FROM identity_history WHERE curve_pk = ?1"
                         " AND kind = 'rotation' ORDER BY id LIMIT 1");
    if (rc) return rc;
    sqlite3_bind_blob(st, 1, curve_pk, 32, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        char when[32];
        cnd_iso8601(when, sqlite3_column_int64(st, 1) / 1000);
        rc = cnd_errf(CND_EPERM,
                      "this key was rotated out of '%s' at %s; a retired key is never admitted "
                      "again (generate a new one with condenser keygen)",
                      (const char *)sqlite3_column_text(st, 0), when);
    } else if (step != SQLITE_DONE) {
        rc = cnd_db_err(s->db, "reading retired keys");
    }
    sqlite3_finalize(st);
    return rc;
}

int cnd_cstore_enroll(cnd_cstore_t *s, const char *name, const char *role, const uint8_t ed_pk[32],
                      const uint8_t *cert, size_t cert_len)
{
    if (!cnd_proto_name_ok(name))
        return cnd_errf(CND_EINVAL,
                        "'%s' is not a valid node name (1..63 letters, digits, '.', '_', '-'; "
                        "first a letter or digit)",
                        name);
    if (strcmp(role, "site") != 0 && strcmp(role, "device") != 0)
        return cnd_errf(CND_EINVAL, "role '%s': expected site or device", role);
    uint8_t curve[32];
    int rc = cnd_pubkey_to_curve(curve, ed_pk);
    if (rc) return cnd_err_wrap(rc, "enrolling '%s'", name);
    if (cert && (cert_len == 0 || cert_len > 4096 || cert[0] != 0x30))
        return cnd_errf(CND_EINVAL, "enrolling '%s': the certificate is not DER (1..4096 bytes)",
                        name);
    cnd_ident_rec_t old;
    if (cnd_cstore_ident_by_name(s, name, &old) == 0) {
        cnd_ident_rec_free(&old);
        return cnd_errf(CND_EEXIST, "a node named '%s' is enrolled already%s", name,
                        old.revoked_ms ? " (revoked; enroll under a new name)"
                                       : "; to replace its certificate or key use condenser "
                                         "site renew");
    }
    if (cnd_cstore_ident_by_curve(s, curve, &old) == 0) {
        cnd_ident_rec_free(&old);
        return cnd_errf(CND_EEXIST, "this key is enrolled already, as '%s'", old.name);
    }
    cnd_err_clear();
    if ((rc = s_key_retired(s, curve))) return rc;
    char fpr[65];
    cnd_pubkey_fingerprint(fpr, ed_pk);
    sqlite3_stmt *st;
    if ((rc = cnd_db_prep(
             s->db, &st,
             "INSERT INTO identity(name, role, ed_pk, curve_pk, fingerprint, certificate,"
             " enrolled_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)")))
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, role, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, ed_pk, 32, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, curve, 32, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, fpr, -1, SQLITE_STATIC);
    if (cert)
        sqlite3_bind_blob(st, 6, cert, (int)cert_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 6);
    sqlite3_bind_int64(st, 7, cnd_unix_ms());
    if (sqlite3_step(st) != SQLITE_DONE) rc = cnd_db_err(s->db, "enrolling");
    sqlite3_finalize(st);
    return rc;
}

int cnd_cstore_revoke(cnd_cstore_t *s, const char *name, const char *reason)
{
    cnd_ident_rec_t r;
    int rc = cnd_cstore_ident_by_name(s, name, &r);
    if (rc) return rc;
    cnd_ident_rec_free(&r);
    if (r.revoked_ms) return cnd_errf(CND_ESTATE, "'%s' is revoked already", name);
    sqlite3_stmt *st;
    if ((rc = cnd_db_prep(
             s->db, &st,
             "UPDATE identity SET revoked_ms = ?2, revoke_reason = ?3 WHERE name = ?1")))
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, cnd_unix_ms());
    sqlite3_bind_text(st, 3, reason ? reason : "", -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) rc = cnd_db_err(s->db, "revoking");
    sqlite3_finalize(st);
    return rc;
}

int cnd_cstore_renew(cnd_cstore_t *s, const char *name, const uint8_t ed_pk[32],
                     const uint8_t *cert, size_t cert_len, int *rotation)
{
    *rotation = 0;
    if (!cert || cert_len == 0 || cert_len > 4096 || cert[0] != 0x30)
        return cnd_errf(CND_EINVAL, "renewing '%s': the certificate is not DER (1..4096 bytes)",
                        name);
    uint8_t curve[32];
    int rc = cnd_pubkey_to_curve(curve, ed_pk);
    if (rc) return cnd_err_wrap(rc, "renewing '%s'", name);
    cnd_ident_rec_t cur, other;
    if ((rc = cnd_cstore_ident_by_name(s, name, &cur))) return rc;
    if (cur.revoked_ms) {
        rc = cnd_errf(CND_ESTATE,
                      "'%s' is revoked; a revoked identity is not renewed (enroll "
                      "under a new name)",
                      name);
    } else if (cur.cert && cur.cert_len == cert_len && memcmp(cur.cert, cert, cert_len) == 0) {
        rc = cnd_errf(CND_EEXIST, "this certificate is enrolled for '%s' already", name);
    } else if (sodium_memcmp(cur.ed_pk, ed_pk, 32) != 0) {
        *rotation = 1;
        if (cnd_cstore_ident_by_curve(s, curve, &other) == 0) {
            rc = cnd_errf(CND_EEXIST, "the new key is enrolled already, as '%s'", other.name);
            cnd_ident_rec_free(&other);
        } else {
            cnd_err_clear();
            rc = s_key_retired(s, curve);
        }
    }
    if (rc) {
        cnd_ident_rec_free(&cur);
        return rc;
    }
    int own;
    if ((rc = cnd_db_begin(s->db, &own))) {
        cnd_ident_rec_free(&cur);
        return rc;
    }
    int64_t now = cnd_unix_ms();
    sqlite3_stmt *st;
    rc = cnd_db_prep(s->db, &st,
                     "INSERT INTO identity_history(name, kind, ed_pk, curve_pk, fingerprint,"
                     " certificate, superseded_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    if (!rc) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, *rotation ? "rotation" : "renewal", -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, cur.ed_pk, 32, SQLITE_STATIC);
        sqlite3_bind_blob(st, 4, cur.curve_pk, 32, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, cur.fpr, -1, SQLITE_STATIC);
        if (cur.cert)
            sqlite3_bind_blob(st, 6, cur.cert, (int)cur.cert_len, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 6);
        sqlite3_bind_int64(st, 7, now);
        rc = cnd_db_done(s->db, st, "recording the superseded certificate");
    }
    char fpr[65];
    cnd_pubkey_fingerprint(fpr, ed_pk);
    if (!rc)
        rc = cnd_db_prep(s->db, &st,
                         "UPDATE identity SET ed_pk = ?2, curve_pk = ?3, fingerprint = ?4,"
                         " certificate = ?5, renewed_ms = ?6 WHERE name = ?1");
    if (!rc) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, ed_pk, 32, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, curve, 32, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, fpr, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 5, cert, (int)cert_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, now);
        rc = cnd_db_done(s->db, st, "renewing");
    }
    cnd_ident_rec_free(&cur);
    return cnd_db_end(s->db, own, rc);
}

static int s_ident_one(cnd_cstore_t *s, sqlite3_stmt *st, cnd_ident_rec_t *r, const char *what)
{
    int step = sqlite3_step(st), rc;
    if (step == SQLITE_ROW)
        rc = s_ident_row(s, st, r);
    else if (step == SQLITE_DONE)
        rc = cnd_errf(CND_ENOTFOUND, "no enrolled node %s", what);
    else
        rc = cnd_db_err(s->db, "reading identities");
    sqlite3_finalize(st);
    return rc;
}

int cnd_cstore_ident_by_name(cnd_cstore_t *s, const char *name, cnd_ident_rec_t *r)
{
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st, "SELECT " S_IDENT_COLS " FROM identity WHERE name = ?1");
    if (rc) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    char what[96];
    snprintf(what, sizeof what, "named '%.63s'", name);
    return s_ident_one(s, st, r, what);
}

int cnd_cstore_ident_by_curve(cnd_cstore_t *s, const uint8_t curve_pk[32], cnd_ident_rec_t *r)
{
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st, "SELECT " S_IDENT_COLS " FROM identity WHERE curve_pk = ?1");
    if (rc) return rc;
    sqlite3_bind_blob(st, 1, curve_pk, 32, SQLITE_STATIC);
    return s_ident_one(s, st, r, "with this key");
}

static int s_ident_row_v(cnd_cstore_t *s, sqlite3_stmt *st, void *r)
{
    return s_ident_row(s, st, r);
}
static void s_ident_free_v(void *r)
{
    cnd_ident_rec_free(r);
}

int cnd_cstore_idents(cnd_cstore_t *s, cnd_ident_rec_t **list, size_t *n)
{
    *list = NULL;
    *n = 0;
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st, "SELECT " S_IDENT_COLS " FROM identity ORDER BY id");
    if (rc) return rc;
    return s_list(s, st, sizeof **list, s_ident_row_v, s_ident_free_v, (void **)list, n,
                  "listing identities");
}

/* --- jobs ----------------------------------------------------------------------------------- */

void cnd_job_rec_free(cnd_job_rec_t *r)
{
    if (!r) return;
    free(r->spec_json);
    r->spec_json = NULL;
}

int cnd_cstore_job_create(cnd_cstore_t *s, int64_t *id, const char *name, const char *spec_json,
                          const uint8_t *teacher, size_t teacher_len, const uint8_t *student,
                          size_t student_len)
{
    *id = 0;
    if (teacher_len > CND_CSTORE_MODEL_MAX || student_len > CND_CSTORE_MODEL_MAX ||
        student_len == 0)
        return cnd_errf(CND_ERANGE, "job models must be 1 byte .. 1 GiB");
    int own, rc;
    if ((rc = cnd_db_begin(s->db, &own))) return rc;
    sqlite3_stmt *st = NULL;
    int64_t now = cnd_unix_ms();
    uint8_t tdig[32];
    if (teacher) cnd_sha256(tdig, teacher, teacher_len);
    rc = cnd_db_prep(
        s->db, &st,
        "INSERT INTO job(name, state, spec, created_ms, updated_ms, teacher, teacher_digest)"
        " VALUES(?1, 'pending', ?2, ?3, ?3, ?4, ?5)");
    if (!rc) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, spec_json, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, now);
        if (teacher) {
            sqlite3_bind_blob64(st, 4, teacher, teacher_len, SQLITE_STATIC);
            sqlite3_bind_blob(st, 5, tdig, 32, SQLITE_STATIC);
        } else {
            sqlite3_bind_null(st, 4);
            sqlite3_bind_null(st, 5);
        }
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = cnd_db_err(s->db, "creating a job");
        else
            *id = sqlite3_last_insert_rowid(s->db);
        sqlite3_finalize(st);
    }
    if (!rc) {
        cnd_model_rec_t m;
        memset(&m, 0, sizeof m);
        m.job = *id;
        m.version = 0;
        m.round = 0;
        snprintf(m.format, sizeof m.format, "float");
        m.accuracy = -1;
        rc = cnd_cstore_model_put(s, &m, student, student_len);
    }
    return cnd_db_end(s->db, own, rc);
}

#define S_JOB_COLS                                                                                 \
    "id, name, state, spec, created_ms, updated_ms, reason, teacher_digest, length(teacher)"

static int s_job_row(cnd_cstore_t *s, sqlite3_stmt *st, cnd_job_rec_t *r)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    snprintf(r->name, sizeof r->name, "%s", (const char *)sqlite3_column_text(st, 1));
    snprintf(r->state, sizeof r->state, "%s", (const char *)sqlite3_column_text(st, 2));
    r->spec_json = strdup((const char *)sqlite3_column_text(st, 3));
    if (!r->spec_json) return cnd_errf(CND_ENOMEM, "reading a job: out of memory");
    r->created_ms = sqlite3_column_int64(st, 4);
    r->updated_ms = sqlite3_column_int64(st, 5);
    snprintf(r->reason, sizeof r->reason, "%s", (const char *)sqlite3_column_text(st, 6));
    if (sqlite3_column_type(st, 7) == SQLITE_BLOB) {
        if (s_blob_copy(st, 7, r->teacher_digest, 32))
            return cnd_errf(CND_ECORRUPT, "%s: job %lld has a malformed teacher digest", s->path,
                            (long long)r->id);
        r->has_teacher = 1;
        r->teacher_size = (uint64_t)sqlite3_column_int64(st, 8);
    }
    return 0;
}

int cnd_cstore_job_get(cnd_cstore_t *s, int64_t id, cnd_job_rec_t *r)
{
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st, "SELECT " S_JOB_COLS " FROM job WHERE id = ?1");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW)
        rc = s_job_row(s, st, r);
    else if (step == SQLITE_DONE)
        rc = cnd_errf(CND_ENOTFOUND, "%s: no job %lld", s->path, (long long)id);
    else
        rc = cnd_db_err(s->db, "reading a job");
    sqlite3_finalize(st);
    if (rc) cnd_job_rec_free(r);
    return rc;
}

static int s_job_row_v(cnd_cstore_t *s, sqlite3_stmt *st, void *r)
{
    return s_job_row(s, st, r);
}
static void s_job_free_v(void *r)
{
    cnd_job_rec_free(r);
}

int cnd_cstore_jobs(cnd_cstore_t *s, cnd_job_rec_t **list, size_t *n)
{
    *list = NULL;
    *n = 0;
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st, "SELECT " S_JOB_COLS " FROM job ORDER BY id DESC");
    if (rc) return rc;
    return s_list(s, st, sizeof **list, s_job_row_v, s_job_free_v, (void **)list, n,
                  "listing jobs");
}

int cnd_cstore_job_next(cnd_cstore_t *s, int64_t *id)
{
    *id = 0;
    sqlite3_stmt *st;
    int rc = cnd_db_prep(
        s->db, &st, "SELECT id FROM job WHERE state IN ('pending', 'running') ORDER BY id LIMIT 1");
    if (rc) return rc;
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    else if (step == SQLITE_DONE)
        rc = CND_ENOTFOUND;
    else
        rc = cnd_db_err(s->db, "finding the next job");
    sqlite3_finalize(st);
    return rc;
}

int cnd_cstore_job_set_state(cnd_cstore_t *s, int64_t id, const char *state, const char *reason)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st,
                         "UPDATE job SET state = ?2, reason = ?3, updated_ms = ?4 WHERE id = ?1");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, reason ? reason : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, cnd_unix_ms());
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = cnd_db_err(s->db, "updating a job");
    else if (sqlite3_changes(s->db) != 1)
        rc = cnd_errf(CND_ENOTFOUND, "%s: no job %lld", s->path, (long long)id);
    sqlite3_finalize(st);
    return rc;
}

/* Copies a blob column into a new buffer of at most `max` bytes. */
static int s_blob_dup(cnd_cstore_t *s, sqlite3_stmt *st, int col, size_t max, uint8_t **data,
                      size_t *len, const char *what)
{
    *data = NULL;
    *len = 0;
    if (sqlite3_column_type(st, col) != SQLITE_BLOB)
        return cnd_errf(CND_ECORRUPT, "%s: %s is missing", s->path, what);
    const void *p = sqlite3_column_blob(st, col);
    int n = sqlite3_column_bytes(st, col);
    if (n <= 0 || (size_t)n > max)
        return cnd_errf(CND_ECORRUPT, "%s: %s has %d bytes", s->path, what, n);
    *data = malloc((size_t)n);
    if (!*data) return cnd_errf(CND_ENOMEM, "reading %s: out of memory", what);
    memcpy(*data, p, (size_t)n);
    *len = (size_t)n;
    return 0;
}

int cnd_cstore_job_teacher(cnd_cstore_t *s, int64_t id, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st, "SELECT teacher, teacher_digest FROM job WHERE id = ?1");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_BLOB) {
        uint8_t want[32], got[32];
        rc = s_blob_dup(s, st, 0, CND_CSTORE_MODEL_MAX, data, len, "the job's teacher");
        if (!rc && s_blob_copy(st, 1, want, 32))
            rc = cnd_errf(CND_ECORRUPT, "%s: job %lld: teacher digest malformed", s->path,
                          (long long)id);
        if (!rc) {
            cnd_sha256(got, *data, *len);
            if (sodium_memcmp(got, want, 32) != 0)
                rc = cnd_errf(CND_ECORRUPT,
                              "%s: job %lld: the stored teacher does not match its "
                              "digest",
                              s->path, (long long)id);
        }
    } else if (step == SQLITE_ROW || step == SQLITE_DONE) {
        rc = cnd_errf(CND_ENOTFOUND, "job %lld has no shipped teacher", (long long)id);
    } else {
        rc = cnd_db_err(s->db, "reading the teacher");
    }
    sqlite3_finalize(st);
    if (rc) {
        free(*data);
        *data = NULL;
        *len = 0;
    }
    return rc;
}

int cnd_cstore_momentum_get(cnd_cstore_t *s, int64_t job, float *buf, size_t n)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st, "SELECT momentum FROM job WHERE id = ?1");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, job);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_BLOB) {
        if ((size_t)sqlite3_column_bytes(st, 0) != n * sizeof(float))
            rc = cnd_errf(CND_ECORRUPT, "%s: job %lld: momentum has %d bytes, expected %zu",
                          s->path, (long long)job, sqlite3_column_bytes(st, 0), n * sizeof(float));
        else
            memcpy(buf, sqlite3_column_blob(st, 0), n * sizeof(float));
    } else if (step == SQLITE_ROW || step == SQLITE_DONE) {
        rc = CND_ENOTFOUND;
    } else {
        rc = cnd_db_err(s->db, "reading the server momentum");
    }
    sqlite3_finalize(st);
    return rc;
}

int cnd_cstore_momentum_put(cnd_cstore_t *s, int64_t job, const float *buf, size_t n)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st, "UPDATE job SET momentum = ?2 WHERE id = ?1");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_blob64(st, 2, buf, n * sizeof(float), SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) rc = cnd_db_err(s->db, "writing the server momentum");
    sqlite3_finalize(st);
    return rc;
}

/* --- models --------------------------------------------------------------------------------- */

void cnd_model_rec_free(cnd_model_rec_t *r)
{
    if (!r) return;
    free(r->manifest);
    r->manifest = NULL;
    r->manifest_len = 0;
}

int cnd_cstore_model_put(cnd_cstore_t *s, cnd_model_rec_t *r, const uint8_t *blob, size_t len)
{
    if (len == 0 || len > CND_CSTORE_MODEL_MAX)
        return cnd_errf(CND_ERANGE, "model blob of %zu bytes (1 byte .. 1 GiB)", len);
    cnd_sha256(r->digest, blob, len);
    r->size = len;
    if (!r->created_ms) r->created_ms = cnd_unix_ms();
    sqlite3_stmt *st;
    int rc =
        cnd_db_prep(s->db, &st,
                    "INSERT INTO model(job, version, round, format, digest, size, blob, accuracy,"
                    " created_ms, manifest) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, r->job);
    sqlite3_bind_int64(st, 2, r->version);
    sqlite3_bind_int64(st, 3, r->round);
    sqlite3_bind_text(st, 4, r->format, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, r->digest, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (int64_t)len);
    sqlite3_bind_blob64(st, 7, blob, len, SQLITE_STATIC);
    sqlite3_bind_double(st, 8, r->accuracy);
    sqlite3_bind_int64(st, 9, r->created_ms);
    if (r->manifest)
        sqlite3_bind_blob(st, 10, r->manifest, (int)r->manifest_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 10);
    if (sqlite3_step(st) != SQLITE_DONE) rc = cnd_db_err(s->db, "storing a model version");
    sqlite3_finalize(st);
    return rc;
}

#define S_MODEL_COLS                                                                               \
    "job, version, round, format, digest, size, accuracy, created_ms, manifest, blob"

static int s_model_row(cnd_cstore_t *s, sqlite3_stmt *st, cnd_model_rec_t *r, uint8_t **blob,
                       size_t *len)
{
    memset(r, 0, sizeof *r);
    r->job = sqlite3_column_int64(st, 0);
    r->version = sqlite3_column_int64(st, 1);
    r->round = sqlite3_column_int64(st, 2);
    snprintf(r->format, sizeof r->format, "%s", (const char *)sqlite3_column_text(st, 3));
    if (s_blob_copy(st, 4, r->digest, 32))
        return cnd_errf(CND_ECORRUPT, "%s: model %lld/%lld: malformed digest", s->path,
                        (long long)r->job, (long long)r->version);
    r->size = (uint64_t)sqlite3_column_int64(st, 5);
    r->accuracy = sqlite3_column_double(st, 6);
    r->created_ms = sqlite3_column_int64(st, 7);
    if (sqlite3_column_type(st, 8) == SQLITE_BLOB) {
        int rc = s_blob_dup(s, st, 8, 1 << 20, &r->manifest, &r->manifest_len, "a manifest");
        if (rc) return rc;
    }
    if (!blob) return 0;
    char what[64];
    snprintf(what, sizeof what, "model %lld version %lld", (long long)r->job,
             (long long)r->version);
    int rc = s_blob_dup(s, st, 9, CND_CSTORE_MODEL_MAX, blob, len, what);
    if (rc) return rc;
    uint8_t d[32];
    cnd_sha256(d, *blob, *len);
    if (*len != r->size || sodium_memcmp(d, r->digest, 32) != 0) {
        free(*blob);
        *blob = NULL;
        *len = 0;
        return cnd_errf(CND_ECORRUPT, "%s: %s does not match its stored digest", s->path, what);
    }
    return 0;
}

static int s_model_one(cnd_cstore_t *s, sqlite3_stmt *st, cnd_model_rec_t *r, uint8_t **blob,
                       size_t *len, const char *what)
{
    int step = sqlite3_step(st), rc;
    if (step == SQLITE_ROW)
        rc = s_model_row(s, st, r, blob, len);
    else if (step == SQLITE_DONE)
        rc = cnd_errf(CND_ENOTFOUND, "%s: no %s", s->path, what);
    else
        rc = cnd_db_err(s->db, "reading a model");
    sqlite3_finalize(st);
    if (rc) cnd_model_rec_free(r);
    return rc;
}

int cnd_cstore_model_latest(cnd_cstore_t *s, int64_t job, const char *format, cnd_model_rec_t *r,
                            uint8_t **blob, size_t *len)
{
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st,
                         "SELECT " S_MODEL_COLS " FROM model WHERE job = ?1 AND format = ?2"
                         " ORDER BY version DESC LIMIT 1");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_text(st, 2, format, -1, SQLITE_STATIC);
    char what[96];
    snprintf(what, sizeof what, "%s model for job %lld", format, (long long)job);
    return s_model_one(s, st, r, blob, len, what);
}

int cnd_cstore_model_get(cnd_cstore_t *s, int64_t job, int64_t version, const char *format,
                         cnd_model_rec_t *r, uint8_t **blob, size_t *len)
{
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st,
                         "SELECT " S_MODEL_COLS " FROM model WHERE job = ?1 AND version = ?2 AND "
                         "format = ?3");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, version);
    sqlite3_bind_text(st, 3, format, -1, SQLITE_STATIC);
    char what[96];
    snprintf(what, sizeof what, "%s model version %lld for job %lld", format, (long long)version,
             (long long)job);
    return s_model_one(s, st, r, blob, len, what);
}

static int s_model_row_v(cnd_cstore_t *s, sqlite3_stmt *st, void *r)
{
    return s_model_row(s, st, r, NULL, NULL);
}
static void s_model_free_v(void *r)
{
    cnd_model_rec_free(r);
}

int cnd_cstore_models(cnd_cstore_t *s, int64_t job, cnd_model_rec_t **list, size_t *n)
{
    *list = NULL;
    *n = 0;
    sqlite3_stmt *st;
    int rc = cnd_db_prep(
        s->db, &st, "SELECT " S_MODEL_COLS " FROM model WHERE job = ?1 ORDER BY version, format");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, job);
    return s_list(s, st, sizeof **list, s_model_row_v, s_model_free_v, (void **)list, n,
                  "listing models");
}

/* --- rounds --------------------------------------------------------------------------------- */

void cnd_round_rec_free(cnd_round_rec_t *r)
{
    if (!r) return;
    free(r->sites);
    r->sites = NULL;
}

static int s_sites_write(cnd_cstore_t *s, const cnd_round_rec_t *r, int insert)
{
    sqlite3_stmt *st;
    int rc =
        cnd_db_prep(s->db, &st,
                    insert ? "INSERT INTO round_site(job, round, attempt, idx, name, fingerprint,"
                             " status, train_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                           : "UPDATE round_site SET status = ?7, train_ms = ?8 WHERE job = ?1 AND"
                             " round = ?2 AND attempt = ?3 AND idx = ?4 AND name = ?5 AND"
                             " fingerprint = ?6");
    if (rc) return rc;
    for (uint32_t i = 0; i < r->n && !rc; i++) {
        const cnd_rsite_t *x = &r->sites[i];
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, r->job);
        sqlite3_bind_int64(st, 2, r->round);
        sqlite3_bind_int64(st, 3, r->attempt);
        sqlite3_bind_int64(st, 4, x->idx);
        sqlite3_bind_text(st, 5, x->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, x->fpr, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, x->status);
        sqlite3_bind_int64(st, 8, x->train_ms);
        if (sqlite3_step(st) != SQLITE_DONE) rc = cnd_db_err(s->db, "writing a round's sites");
    }
    sqlite3_finalize(st);
    return rc;
}

int cnd_cstore_round_insert(cnd_cstore_t *s, const cnd_round_rec_t *r)
{
    int own, rc;
    if ((rc = cnd_db_begin(s->db, &own))) return rc;
    sqlite3_stmt *st;
    rc = cnd_db_prep(
        s->db, &st,
        "INSERT INTO round(job, round, attempt, phase, params, qat, started_ms, phase_ms,"
        " n) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    if (!rc) {
        sqlite3_bind_int64(st, 1, r->job);
        sqlite3_bind_int64(st, 2, r->round);
        sqlite3_bind_int64(st, 3, r->attempt);
        sqlite3_bind_text(st, 4, r->phase, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 5, r->params, sizeof r->params, SQLITE_STATIC);
        sqlite3_bind_int(st, 6, r->qat);
        sqlite3_bind_int64(st, 7, r->started_ms);
        sqlite3_bind_int64(st, 8, r->phase_ms);
        sqlite3_bind_int64(st, 9, r->n);
        if (sqlite3_step(st) != SQLITE_DONE) rc = cnd_db_err(s->db, "starting a round");
        sqlite3_finalize(st);
    }
    if (!rc) rc = s_sites_write(s, r, 1);
    return cnd_db_end(s->db, own, rc);
}

int cnd_cstore_round_update(cnd_cstore_t *s, const cnd_round_rec_t *r)
{
    int own, rc;
    if ((rc = cnd_db_begin(s->db, &own))) return rc;
    sqlite3_stmt *st;
    rc = cnd_db_prep(
        s->db, &st,
        "UPDATE round SET phase = ?4, outcome = ?5, reason = ?6, phase_ms = ?7,"
        " ended_ms = ?8, t_advertise = ?9, t_share = ?10, t_masked = ?11, t_unmask = ?12,"
        " t_finish = ?13, survivors = ?14, model_version = ?15, ingress_bytes = ?16,"
        " t_consistency = ?17, samples = ?18, validated = ?19, correct = ?20, loss_sum = ?21"
        " WHERE job = ?1 AND round = ?2 AND attempt = ?3");
    if (!rc) {
        sqlite3_bind_int64(st, 1, r->job);
        sqlite3_bind_int64(st, 2, r->round);
        sqlite3_bind_int64(st, 3, r->attempt);
        sqlite3_bind_text(st, 4, r->phase, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, r->outcome, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, r->reason, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, r->phase_ms);
        sqlite3_bind_int64(st, 8, r->ended_ms);
        sqlite3_bind_double(st, 9, r->t_phase[0]);
        sqlite3_bind_double(st, 10, r->t_phase[1]);
        sqlite3_bind_double(st, 11, r->t_phase[2]);
        sqlite3_bind_double(st, 12, r->t_phase[4]);
        sqlite3_bind_double(st, 17, r->t_phase[3]);
        sqlite3_bind_double(st, 13, r->t_finish);
        sqlite3_bind_int64(st, 14, r->survivors);
        sqlite3_bind_int64(st, 15, r->model_version);
        sqlite3_bind_int64(st, 16, (int64_t)r->ingress_bytes);
        sqlite3_bind_int64(st, 18, (int64_t)r->samples);
        sqlite3_bind_int64(st, 19, (int64_t)r->validated);
        sqlite3_bind_int64(st, 20, (int64_t)r->correct);
        sqlite3_bind_double(st, 21, r->loss_sum);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = cnd_db_err(s->db, "updating a round");
        else if (sqlite3_changes(s->db) != 1)
            rc = cnd_errf(CND_ENOTFOUND, "%s: no round %u attempt %u of job %lld", s->path,
                          r->round, r->attempt, (long long)r->job);
        sqlite3_finalize(st);
    }
    if (!rc) rc = s_sites_write(s, r, 0);
    return cnd_db_end(s->db, own, rc);
}

#define S_ROUND_COLS                                                                               \
    "job, round, attempt, phase, outcome, reason, params, qat, started_ms, phase_ms, ended_ms,"    \
    " t_advertise, t_share, t_masked, t_unmask, t_finish, n, survivors, model_version,"            \
    " ingress_bytes, t_consistency, samples, validated, correct, loss_sum"

static int s_round_sites(cnd_cstore_t *s, cnd_round_rec_t *r)
{
    if (r->n == 0 || r->n > 65536)
        return cnd_errf(CND_ECORRUPT, "%s: round %u has %u sites", s->path, r->round, r->n);
    r->sites = calloc(r->n, sizeof *r->sites);
    if (!r->sites) return cnd_errf(CND_ENOMEM, "reading a round: out of memory");
    sqlite3_stmt *st;
    int rc =
        cnd_db_prep(s->db, &st,
                    "SELECT idx, name, fingerprint, status, train_ms"
                    " FROM round_site WHERE job = ?1 AND round = ?2 AND attempt = ?3 ORDER BY idx");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, r->job);
    sqlite3_bind_int64(st, 2, r->round);
    sqlite3_bind_int64(st, 3, r->attempt);
    uint32_t k = 0;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        uint32_t idx = (uint32_t)sqlite3_column_int64(st, 0);
        if (idx != k || k >= r->n) {
            rc = cnd_errf(CND_ECORRUPT, "%s: round %u: site rows out of order", s->path, r->round);
            break;
        }
        cnd_rsite_t *x = &r->sites[k++];
        x->idx = idx;
        snprintf(x->name, sizeof x->name, "%s", (const char *)sqlite3_column_text(st, 1));
        snprintf(x->fpr, sizeof x->fpr, "%s", (const char *)sqlite3_column_text(st, 2));
        x->status = (uint32_t)sqlite3_column_int64(st, 3);
        x->train_ms = (uint32_t)sqlite3_column_int64(st, 4);
    }
    if (!rc && step != SQLITE_DONE) rc = cnd_db_err(s->db, "reading a round's sites");
    if (!rc && k != r->n)
        rc = cnd_errf(CND_ECORRUPT, "%s: round %u lists %u of its %u sites", s->path, r->round, k,
                      r->n);
    sqlite3_finalize(st);
    return rc;
}

static int s_round_row(cnd_cstore_t *s, sqlite3_stmt *st, cnd_round_rec_t *r)
{
    memset(r, 0, sizeof *r);
    r->job = sqlite3_column_int64(st, 0);
    r->round = (uint32_t)sqlite3_column_int64(st, 1);
    r->attempt = (uint32_t)sqlite3_column_int64(st, 2);
    snprintf(r->phase, sizeof r->phase, "%s", (const char *)sqlite3_column_text(st, 3));
    snprintf(r->outcome, sizeof r->outcome, "%s", (const char *)sqlite3_column_text(st, 4));
    snprintf(r->reason, sizeof r->reason, "%s", (const char *)sqlite3_column_text(st, 5));
    if (s_blob_copy(st, 6, r->params, sizeof r->params))
        return cnd_errf(CND_ECORRUPT, "%s: round %u: malformed parameters", s->path, r->round);
    r->qat = sqlite3_column_int(st, 7);
    r->started_ms = sqlite3_column_int64(st, 8);
    r->phase_ms = sqlite3_column_int64(st, 9);
    r->ended_ms = sqlite3_column_int64(st, 10);
    r->t_phase[0] = sqlite3_column_double(st, 11);
    r->t_phase[1] = sqlite3_column_double(st, 12);
    r->t_phase[2] = sqlite3_column_double(st, 13);
    r->t_phase[4] = sqlite3_column_double(st, 14);
    r->t_phase[3] = sqlite3_column_double(st, 20);
    r->t_finish = sqlite3_column_double(st, 15);
    r->n = (uint32_t)sqlite3_column_int64(st, 16);
    r->survivors = (uint32_t)sqlite3_column_int64(st, 17);
    r->model_version = sqlite3_column_int64(st, 18);
    r->ingress_bytes = (uint64_t)sqlite3_column_int64(st, 19);
    r->samples = (uint64_t)sqlite3_column_int64(st, 21);
    r->validated = (uint64_t)sqlite3_column_int64(st, 22);
    r->correct = (uint64_t)sqlite3_column_int64(st, 23);
    r->loss_sum = sqlite3_column_double(st, 24);
    return 0;
}

int cnd_cstore_round_open(cnd_cstore_t *s, int64_t job, cnd_round_rec_t *r)
{
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st,
                         "SELECT " S_ROUND_COLS " FROM round WHERE job = ?1 AND outcome = ''"
                         " ORDER BY round DESC, attempt DESC LIMIT 1");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, job);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW)
        rc = s_round_row(s, st, r);
    else if (step == SQLITE_DONE)
        rc = CND_ENOTFOUND;
    else
        rc = cnd_db_err(s->db, "reading the round in flight");
    sqlite3_finalize(st);
    if (!rc) rc = s_round_sites(s, r);
    if (rc) cnd_round_rec_free(r);
    return rc;
}

static int s_round_row_v(cnd_cstore_t *s, sqlite3_stmt *st, void *r)
{
    return s_round_row(s, st, r);
}
static void s_round_free_v(void *r)
{
    cnd_round_rec_free(r);
}

int cnd_cstore_rounds(cnd_cstore_t *s, int64_t job, cnd_round_rec_t **list, size_t *n)
{
    *list = NULL;
    *n = 0;
    sqlite3_stmt *st;
    int rc = cnd_db_prep(
        s->db, &st, "SELECT " S_ROUND_COLS " FROM round WHERE job = ?1 ORDER BY round, attempt");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, job);
    rc = s_list(s, st, sizeof **list, s_round_row_v, s_round_free_v, (void **)list, n,
                "listing rounds");
    for (size_t i = 0; i < *n && !rc; i++) rc = s_round_sites(s, &(*list)[i]);
    if (rc) {
        s_list_free(*list, n, sizeof **list, s_round_free_v);
        *list = NULL;
    }
    return rc;
}

int cnd_cstore_round_next(cnd_cstore_t *s, int64_t job, uint32_t *round, uint32_t *attempt)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st,
                         "SELECT coalesce(max(round), 0) FROM round WHERE job = ?1 AND"
                         " outcome IN ('ok', 'failed')");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, job);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return cnd_db_err(s->db, "finding the next round");
    }
    *round = (uint32_t)sqlite3_column_int64(st, 0) + 1;
    sqlite3_finalize(st);
    if ((rc = cnd_db_prep(
             s->db, &st,
             "SELECT coalesce(max(attempt), 0) FROM round WHERE job = ?1 AND round = ?2")))
        return rc;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, *round);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return cnd_db_err(s->db, "finding the next attempt");
    }
    *attempt = (uint32_t)sqlite3_column_int64(st, 0) + 1;
    sqlite3_finalize(st);
    return 0;
}

/* --- calibration samples -------------------------------------------------------------------- */

int cnd_cstore_calib_put(cnd_cstore_t *s, int64_t job, const cnd_dataset_t *ds)
{
    size_t d = cnd_shape_size(ds->shape);
    if (ds->n == 0 || ds->n > 100000 || d == 0 || d > (1u << 24))
        return cnd_errf(CND_EINVAL, "calibration set of %zu samples of %zu values", ds->n, d);
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st,
                         "INSERT OR REPLACE INTO job_calib(job, n, c, h, w, x)"
                         " VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, (int64_t)ds->n);
    sqlite3_bind_int(st, 3, ds->shape.c);
    sqlite3_bind_int(st, 4, ds->shape.h);
    sqlite3_bind_int(st, 5, ds->shape.w);
    sqlite3_bind_blob64(st, 6, ds->x, ds->n * d * sizeof(float), SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) rc = cnd_db_err(s->db, "storing calibration samples");
    sqlite3_finalize(st);
    return rc;
}

int cnd_cstore_calib_get(cnd_cstore_t *s, int64_t job, cnd_dataset_t **out)
{
    *out = NULL;
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st, "SELECT n, c, h, w, x FROM job_calib WHERE job = ?1");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, job);
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE) {
        sqlite3_finalize(st);
        return CND_ENOTFOUND;
    }
    if (step != SQLITE_ROW) {
        sqlite3_finalize(st);
        return cnd_db_err(s->db, "reading calibration samples");
    }
    int64_t n = sqlite3_column_int64(st, 0);
    cnd_shape_t sh = {sqlite3_column_int(st, 1), sqlite3_column_int(st, 2),
                      sqlite3_column_int(st, 3)};
    size_t d = (size_t)sh.c * (size_t)sh.h * (size_t)sh.w;
    if (n <= 0 || n > 100000 || sh.c <= 0 || sh.h <= 0 || sh.w <= 0 || d > (1u << 24) ||
        (size_t)sqlite3_column_bytes(st, 4) != (size_t)n * d * sizeof(float)) {
        sqlite3_finalize(st);
        return cnd_errf(CND_ECORRUPT, "%s: job %lld: malformed calibration samples", s->path,
                        (long long)job);
    }
    cnd_dataset_t *ds = calloc(1, sizeof *ds);
    if (ds) {
        ds->x = malloc((size_t)n * d * sizeof(float));
        ds->y = calloc((size_t)n, 1);
    }
    if (!ds || !ds->x || !ds->y) {
        cnd_data_destroy(&ds);
        sqlite3_finalize(st);
        return cnd_errf(CND_ENOMEM, "calibration samples: out of memory");
    }
    memcpy(ds->x, sqlite3_column_blob(st, 4), (size_t)n * d * sizeof(float));
    sqlite3_finalize(st);
    ds->n = (size_t)n;
    ds->shape = sh;
    ds->n_classes = 1;
    snprintf(ds->name, sizeof ds->name, "job %lld calibration", (long long)job);
    *out = ds;
    return 0;
}
