/*
 * db.h: the store kernel: the one way Condenser opens, migrates and uses an SQLite database.
 * Every database goes through it: the coordinator's (state, audit log and rollout engine in one
 * file), each site agent's (state and its own audit log), an auditor's standalone log.
 *
 * Why it exists: four stores had four ways of opening and migrating, and one of them corrupted
 * the coordinator's database. SQLite's locks are POSIX advisory locks, which belong to the
 * process and are dropped when ANY descriptor of the file is closed; a `fopen(db); fclose()` in
 * a process that holds a connection silently releases that connection's locks, after which
 * another process closing its own connection believes it is the last one and deletes the live
 * WAL. So: no code outside this kernel opens a database file, and this kernel only ever lets
 * SQLite open it (existence is checked with stat(2), which opens nothing).
 *
 * Invariants of every connection opened here:
 *   - journal_mode=WAL (readers never block the writer), busy_timeout 10 s, foreign keys on;
 *   - synchronous=FULL on read-write connections: every committed transaction is on disk when
 *     COMMIT returns, so an audit entry written before a message is sent survives a power cut
 *     after the send (docs/threat-model.md promises it for the coordinator's and the agent's
 *     logs, which share their files with all other state);
 *   - read-only connections (SQLITE_OPEN_READONLY) never create or migrate anything.
 *
 * Schemas: a file holds several components (the coordinator's "coordinator", "audit",
 * "rollout", "fleet"; an agent's "agent" and "audit"), each with its own forward migrations. One
 * integer (PRAGMA user_version) cannot say which component is at which version, so the kernel
 * keeps one row per component in the table `cnd_schema(component, version)` and leaves
 * user_version alone (a program that embeds the audit log in its own file keeps it).
 * cnd_db_migrate() runs a component's missing steps in one
 * BEGIN IMMEDIATE transaction, so two processes opening a fresh file at once migrate it once;
 * a file whose component is newer than this program is refused and left untouched. Files from
 * before the kernel (one user_version, or a version in a component's own meta table) are
 * recognised by each schema's `legacy` callback and carried over in that same transaction.
 *
 * Helpers take the sqlite3 handle and name the file in their errors
 * (sqlite3_db_filename), so every store reports "<path>: <what>: <sqlite message>".
 *
 * Transactions: cnd_db_begin() opens BEGIN IMMEDIATE only when none is open
 * (sqlite3_get_autocommit), so a function that writes several rows can call it whether or not
 * its caller already holds a transaction; cnd_db_end() commits or rolls back only what that
 * begin opened.
 */
#ifndef CND_DB_H
#define CND_DB_H

#include "error.h"

#include <sqlite3.h>
#include <stdint.h>

#define CND_DB_BUSY_MS 10000
/* The lock file beside a node's database (cnd_file_lock): daemons that keep the database open
 * (coordinator run, rollout serve) hold it shared; a restore takes it exclusive and is refused
 * while any daemon runs, and a daemon does not start during a restore. */
#define CND_DB_DAEMON_LOCK "daemon.lock"
#define CND_DB_CREATE      1u /* create the file if it does not exist */
#define CND_DB_READONLY    2u /* open read-only (never creates, never migrates) */

/* A component's schema: steps[i] takes it from version i to i + 1 (SQL, several statements
 * allowed); `version` = number of steps. `legacy` (may be NULL) is asked, for a file that has
 * no cnd_schema row for this component, which version a file from before the kernel is at:
 * it sets *v (0 when the component's tables are absent) and returns 0 or an error (CND_EFORMAT
 * for a file that is someone else's). */
typedef struct {
    const char *component; /* e.g. "coordinator", "audit" */
    const char *const *steps;
    int version;
    int (*legacy)(sqlite3 *db, int *v);
} cnd_db_schema_t;

/* Opens path. flags: CND_DB_CREATE and/or CND_DB_READONLY. Returns 0, CND_ENOTFOUND (no such
 * file and no CND_DB_CREATE; the detail names the path and `what`, e.g. "coordinator
 * database"), CND_EDB or CND_ENOMEM. *db is NULL on failure. */
CND_MUST_USE int cnd_db_open(sqlite3 **db, const char *path, unsigned flags, const char *what);
/* Closes (rolling back an open transaction); NULL-safe, sets *db to NULL. */
void cnd_db_close(sqlite3 **db);
/* The file's path ("" for an in-memory database). */
const char *cnd_db_path(sqlite3 *db);

/* Brings one component of a read-write database to schema->version. Returns 0, CND_EFORMAT
 * (newer than this program, or not this program's file), or CND_EDB. */
CND_MUST_USE int cnd_db_migrate(sqlite3 *db, const cnd_db_schema_t *schema);
/* For read-only users: 0 when the component is exactly at schema->version, else CND_EFORMAT
 * (missing: "not a <what>"; older: "run a read-write command first"; newer). */
CND_MUST_USE int cnd_db_check(sqlite3 *db, const cnd_db_schema_t *schema, const char *what);
/* The component's recorded version into *v (0 when it has none yet). */
CND_MUST_USE int cnd_db_version(sqlite3 *db, const char *component, int *v);

/* Errors: CND_EDB "<path>: <what>: <sqlite message>". */
CND_MUST_USE int cnd_db_err(sqlite3 *db, const char *what);
/* sqlite3_exec of sql; errors name `what`. */
CND_MUST_USE int cnd_db_exec(sqlite3 *db, const char *sql, const char *what);
/* Prepares sql into *st (NULL on failure). */
CND_MUST_USE int cnd_db_prep(sqlite3 *db, sqlite3_stmt **st, const char *sql);
/* Steps st once expecting SQLITE_DONE and finalizes it: 0, CND_EEXIST on a constraint
 * violation, CND_EDB otherwise. */
CND_MUST_USE int cnd_db_done(sqlite3 *db, sqlite3_stmt *st, const char *what);
/* 1 when a table of that name exists (0 when not, or on error). */
int cnd_db_has_table(sqlite3 *db, const char *name);

/* BEGIN IMMEDIATE unless a transaction is open; *own says whether this call opened it. */
CND_MUST_USE int cnd_db_begin(sqlite3 *db, int *own);
/* Ends what cnd_db_begin opened (own = 1): COMMIT when rc == 0, else ROLLBACK. Returns rc, or the
 * COMMIT's error. Does nothing but return rc when own = 0. */
CND_MUST_USE int cnd_db_end(sqlite3 *db, int own, int rc);

/* Online backup (SQLite's backup API) of src's main database into a new file out_path: copied
 * in one step under a read transaction (a WAL reader: writers go on), written to
 * "<out_path>.tmp.<pid>" as a self-contained file (journal_mode=DELETE, synchronous=FULL),
 * checked with PRAGMA integrity_check, then renamed into place and its directory fsync'd; a kill
 * at any point leaves no out_path. Refuses an existing out_path (CND_EEXIST). *pages (may be
 * NULL) receives the pages copied. Returns 0, CND_EEXIST, CND_ECORRUPT, CND_EIO or CND_EDB. */
CND_MUST_USE int cnd_db_backup(sqlite3 *src, const char *out_path, int *pages);

/* PRAGMA integrity_check of db: 0, or CND_ECORRUPT with SQLite's first complaint. */
CND_MUST_USE int cnd_db_integrity(sqlite3 *db, const char *what);

/* Replaces the whole content of dst (read-write, e.g. the coordinator's live file) with src's, in
 * one write transaction of the backup API: other connections see the old content or the new,
 * and a kill leaves the old. The caller checks src first (integrity, schema, audit log). Returns
 * 0 or CND_EDB naming both files. */
CND_MUST_USE int cnd_db_restore(sqlite3 *dst, sqlite3 *src);

#endif
