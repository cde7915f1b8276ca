/*
 * db.c: the store kernel (see db.h for the contract and why it exists).
 */
#include "db.h"
#include "fileio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *cnd_db_path(sqlite3 *db)
{
    const char *p = db ? sqlite3_db_filename(db, "main") : NULL;
    return p ? p : "";
}

int cnd_db_err(sqlite3 *db, const char *what)
{
    return cnd_errf(CND_EDB, "%s: %s: %s", cnd_db_path(db), what,
                    db ? sqlite3_errmsg(db) : "no database");
}

int cnd_db_exec(sqlite3 *db, const char *sql, const char *what)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc =
            cnd_errf(CND_EDB, "%s: %s: %s", cnd_db_path(db), what, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

int cnd_db_prep(sqlite3 *db, sqlite3_stmt **st, const char *sql)
{
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) {
        *st = NULL;
        return cnd_db_err(db, "preparing a statement");
    }
    return 0;
}

int cnd_db_done(sqlite3 *db, sqlite3_stmt *st, const char *what)
{
    int r = sqlite3_step(st);
    int rc = 0;
    if (r == SQLITE_CONSTRAINT)
        rc = cnd_errf(CND_EEXIST, "%s: %s: %s", cnd_db_path(db), what, sqlite3_errmsg(db));
    else if (r != SQLITE_DONE && r != SQLITE_ROW)
        rc = cnd_db_err(db, what);
    sqlite3_finalize(st);
    return rc;
}

int cnd_db_has_table(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", -1,
                           &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int has = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return has;
}

int cnd_db_begin(sqlite3 *db, int *own)
{
    *own = sqlite3_get_autocommit(db) != 0;
    if (!*own) return 0;
    return cnd_db_exec(db, "BEGIN IMMEDIATE", "beginning a transaction");
}

int cnd_db_end(sqlite3 *db, int own, int rc)
{
    if (!own) return rc;
    if (rc) {
        if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    rc = cnd_db_exec(db, "COMMIT", "committing");
    if (rc && !sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int cnd_db_open(sqlite3 **out, const char *path, unsigned flags, const char *what)
{
    *out = NULL;
    int ro = (flags & CND_DB_READONLY) != 0;
    struct stat sb;
    /* stat(2), never open(2): see db.h. */
    if (stat(path, &sb) != 0) {
        if (errno != ENOENT) return cnd_errf(CND_EIO, "%s: %s", path, strerror(errno));
        if (ro || !(flags & CND_DB_CREATE))
            return cnd_errf(CND_ENOTFOUND, "%s: no such %s", path, what ? what : "database");
    } else if (!S_ISREG(sb.st_mode)) {
        return cnd_errf(CND_EIO, "%s: not a regular file", path);
    }
    int oflags = ro ? SQLITE_OPEN_READONLY
                    : SQLITE_OPEN_READWRITE | ((flags & CND_DB_CREATE) ? SQLITE_OPEN_CREATE : 0);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, oflags, NULL) != SQLITE_OK) {
        int rc = db ? cnd_errf(CND_EDB, "%s: cannot open: %s", path, sqlite3_errmsg(db))
                    : cnd_errf(CND_ENOMEM, "%s: cannot open: out of memory", path);
        sqlite3_close(db);
        return rc;
    }
    sqlite3_busy_timeout(db, CND_DB_BUSY_MS);
    sqlite3_extended_result_codes(db, 0);
    int rc = cnd_db_exec(db, "PRAGMA foreign_keys=ON", "setting foreign keys");
    if (!rc && !ro)
        rc = cnd_db_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
                         "setting WAL mode and synchronous=FULL");
    if (rc) {
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

void cnd_db_close(sqlite3 **db)
{
    if (!db || !*db) return;
    if (!sqlite3_get_autocommit(*db)) sqlite3_exec(*db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close_v2(*db);
    *db = NULL;
}

int cnd_db_version(sqlite3 *db, const char *component, int *v)
{
    *v = 0;
    if (!cnd_db_has_table(db, "cnd_schema")) return 0;
    sqlite3_stmt *st = NULL;
    int rc = cnd_db_prep(db, &st, "SELECT version FROM cnd_schema WHERE component = ?1");
    if (rc) return rc;
    sqlite3_bind_text(st, 1, component, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        *v = sqlite3_column_int(st, 0);
    else if (r != SQLITE_DONE)
        rc = cnd_db_err(db, "reading the schema version");
    sqlite3_finalize(st);
    return rc;
}

/* The component's version: its cnd_schema row, else what its legacy callback finds. *known says
 * whether a row exists. */
static int s_current(sqlite3 *db, const cnd_db_schema_t *s, int *v, int *known)
{
    *known = 0;
    int rc = cnd_db_version(db, s->component, v);
    if (rc) return rc;
    if (*v > 0) {
        *known = 1;
        return 0;
    }
    return s->legacy ? s->legacy(db, v) : 0;
}

int cnd_db_migrate(sqlite3 *db, const cnd_db_schema_t *s)
{
    int own, rc = cnd_db_begin(db, &own);
    if (rc) return rc;
    int v = 0, known = 0;
    rc = cnd_db_exec(db,
                     "CREATE TABLE IF NOT EXISTS cnd_schema("
                     " component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
                     "creating the schema table");
    if (!rc) rc = s_current(db, s, &v, &known);
    if (!rc && v > s->version)
        rc = cnd_errf(CND_EFORMAT,
                      "%s: the %s schema is at version %d, newer than this program's %d (use a "
                      "newer condenser)",
                      cnd_db_path(db), s->component, v, s->version);
    int from = v;
    for (; !rc && v < s->version; v++) rc = cnd_db_exec(db, s->steps[v], "migrating the schema");
    if (!rc && (!known || from != s->version)) {
        sqlite3_stmt *st = NULL;
        rc = cnd_db_prep(db, &st,
                         "INSERT INTO cnd_schema(component, version) VALUES(?1, ?2) "
                         "ON CONFLICT(component) DO UPDATE SET version = excluded.version");
        if (!rc) {
            sqlite3_bind_text(st, 1, s->component, -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 2, s->version);
            rc = cnd_db_done(db, st, "recording the schema version");
        }
    }
    return cnd_db_end(db, own, rc);
}

int cnd_db_check(sqlite3 *db, const cnd_db_schema_t *s, const char *what)
{
    int v = 0, known = 0;
    int rc = s_current(db, s, &v, &known);
    if (rc) return rc;
    if (v == s->version) return 0;
    if (v == 0)
        return cnd_errf(CND_EFORMAT, "%s is not a %s (it has no %s tables)", cnd_db_path(db), what,
                        s->component);
    if (v < s->version)
        return cnd_errf(CND_EFORMAT,
                        "%s: the %s schema is at version %d; this program reads %d (run any "
                        "command that writes to it first, which upgrades it)",
                        cnd_db_path(db), s->component, v, s->version);
    return cnd_errf(CND_EFORMAT,
                    "%s: the %s schema is at version %d, newer than this program's %d (use a "
                    "newer condenser)",
                    cnd_db_path(db), s->component, v, s->version);
}

int cnd_db_integrity(sqlite3 *db, const char *what)
{
    sqlite3_stmt *st = NULL;
    int rc = cnd_db_prep(db, &st, "PRAGMA integrity_check");
    if (rc) return rc;
    int step = sqlite3_step(st);
    if (step != SQLITE_ROW) {
        rc = cnd_errf(step == SQLITE_CORRUPT || step == SQLITE_NOTADB ? CND_ECORRUPT : CND_EDB,
                      "%s: %s: integrity check failed: %s", cnd_db_path(db), what,
                      sqlite3_errmsg(db));
    } else {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        if (!r || strcmp(r, "ok") != 0)
            rc = cnd_errf(CND_ECORRUPT, "%s: %s: integrity check: %s", cnd_db_path(db), what,
                          r ? r : "(no answer)");
    }
    sqlite3_finalize(st);
    return rc;
}

/* Copies all of src's main database into dst's in one backup step. */
static int s_copy(sqlite3 *dst, sqlite3 *src, int *pages, const char *what)
{
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b)
        return cnd_errf(CND_EDB, "%s: %s from %s: %s", cnd_db_path(dst), what, cnd_db_path(src),
                        sqlite3_errmsg(dst));
    int step = sqlite3_backup_step(b, -1);
    if (pages) *pages = sqlite3_backup_pagecount(b);
    int fin = sqlite3_backup_finish(b);
    if (step != SQLITE_DONE || fin != SQLITE_OK)
        return cnd_errf(CND_EDB, "%s: %s from %s: %s", cnd_db_path(dst), what, cnd_db_path(src),
                        sqlite3_errstr(step != SQLITE_DONE ? step : fin));
    return 0;
}

int cnd_db_backup(sqlite3 *src, const char *out_path, int *pages)
{
    struct stat sb;
    if (stat(out_path, &sb) == 0)
        return cnd_errf(CND_EEXIST, "%s: already exists; a backup never overwrites a file",
                        out_path);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out_path, (long)getpid()) >= (int)sizeof tmp)
        return cnd_errf(CND_EINVAL, "%s: path too long", out_path);
    unlink(tmp); /* a leftover of this pid's killed predecessor */
    sqlite3 *dst = NULL;
    if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        int rc = cnd_errf(CND_EIO, "%s: cannot create: %s", tmp,
                          dst ? sqlite3_errmsg(dst) : "out of memory");
        sqlite3_close(dst);
        return rc;
    }
    sqlite3_busy_timeout(dst, CND_DB_BUSY_MS);
    int rc = cnd_db_exec(dst, "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL;",
                         "preparing the backup file");
    if (!rc) rc = s_copy(dst, src, pages, "backup");
    if (!rc) rc = cnd_db_integrity(dst, "the backup");
    if (sqlite3_close(dst) != SQLITE_OK && !rc)
        rc = cnd_errf(CND_EIO, "%s: cannot close the backup", tmp);
    if (!rc && chmod(tmp, 0600) != 0) rc = cnd_errf(CND_EIO, "%s: chmod: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, out_path) != 0)
        rc = cnd_errf(CND_EIO, "%s: rename to %s: %s", tmp, out_path, strerror(errno));
    if (!rc) rc = cnd_file_fsync_dir(out_path);
    if (rc) unlink(tmp);
    return rc;
}

int cnd_db_restore(sqlite3 *dst, sqlite3 *src)
{
    return s_copy(dst, src, NULL, "restore");
}
