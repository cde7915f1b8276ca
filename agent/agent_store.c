/*
 * agent_store.c: the site agent's SQLite state (see agent_store.h).
 */
#include "agent_store.h"
#include "clock.h"
#include "db.h"
#include "digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cnd_astore {
    sqlite3 *db;
    char path[1024];
};

static const char *const s_migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE agent_job("
    "  id INTEGER PRIMARY KEY, spec BLOB NOT NULL, state TEXT NOT NULL,"
    "  reason TEXT NOT NULL DEFAULT '', received_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);"
    "CREATE TABLE agent_round("
    "  job INTEGER NOT NULL, round INTEGER NOT NULL, attempt INTEGER NOT NULL,"
    "  participant_id INTEGER NOT NULL, n INTEGER NOT NULL, phase TEXT NOT NULL,"
    "  outcome TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',"
    "  started_ms INTEGER NOT NULL, ended_ms INTEGER NOT NULL DEFAULT 0,"
    "  train_ms INTEGER NOT NULL DEFAULT 0, val_loss REAL NOT NULL DEFAULT 0,"
    "  val_acc REAL NOT NULL DEFAULT 0, samples INTEGER NOT NULL DEFAULT 0,"
    "  clipped INTEGER NOT NULL DEFAULT 0, model_digest BLOB,"
    "  PRIMARY KEY(job, round, attempt));"
    "CREATE TABLE agent_message("
    "  id INTEGER PRIMARY KEY, dir TEXT NOT NULL, time_ms INTEGER NOT NULL, type TEXT NOT NULL,"
    "  size INTEGER NOT NULL, sha256 BLOB NOT NULL, job INTEGER NOT NULL, round INTEGER NOT NULL);"
    "CREATE INDEX agent_message_dir ON agent_message(dir, job);",
    /* 1 -> 2: every SecAgg+ round this site served, by the coordinator's attempt number and by
     * the digest D of its parameters and roster (docs/threat-model.md, "asked twice") */
    "CREATE TABLE agent_served("
    "  job INTEGER NOT NULL, round INTEGER NOT NULL, attempt INTEGER NOT NULL,"
    "  digest BLOB NOT NULL UNIQUE, state TEXT NOT NULL, time_ms INTEGER NOT NULL,"
    "  PRIMARY KEY(job, round, attempt));",
    /* 2 -> 3: the differential-privacy spend of every round this site trained with DP-SGD
     * (agent_dp.h), recorded before the round's update leaves the site */
    "CREATE TABLE agent_dp_spend("
    "  id INTEGER PRIMARY KEY, job INTEGER NOT NULL, round INTEGER NOT NULL,"
    "  attempt INTEGER NOT NULL, q REAL NOT NULL, sigma REAL NOT NULL, steps INTEGER NOT NULL,"
    "  delta REAL NOT NULL, epsilon_job REAL NOT NULL, total_delta REAL NOT NULL,"
    "  epsilon_total REAL NOT NULL, time_ms INTEGER NOT NULL, UNIQUE(job, round, attempt));",
    /* 3 -> 4: distributed DP (agent_dp.h): a round's release of the distributed discrete
     * Gaussian sum; ddg_parties 0 for DP-SGD rows */
    "ALTER TABLE agent_dp_spend ADD COLUMN ddg_l2 REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE agent_dp_spend ADD COLUMN ddg_l1 REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE agent_dp_spend ADD COLUMN ddg_s2 REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE agent_dp_spend ADD COLUMN ddg_parties INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE agent_dp_spend ADD COLUMN ddg_dim INTEGER NOT NULL DEFAULT 0;",
};
#define S_NMIG ((int)(sizeof s_migrations / sizeof s_migrations[0]))

/* An agent database from before the store kernel (PRAGMA user_version 1). */
static int s_legacy(sqlite3 *db, int *v)
{
    *v = cnd_db_has_table(db, "agent_job") ? 1 : 0;
    return 0;
}

static const cnd_db_schema_t s_schema = {"agent", s_migrations, S_NMIG, s_legacy};

int cnd_astore_open(cnd_astore_t **out, const char *path, int readonly)
{
    *out = NULL;
    cnd_astore_t *s = calloc(1, sizeof *s);
    if (!s) return cnd_errf(CND_ENOMEM, "opening %s: out of memory", path);
    snprintf(s->path, sizeof s->path, "%s", path);
    int rc = cnd_db_open(&s->db, path, readonly ? CND_DB_READONLY : CND_DB_CREATE,
                         "agent database (the agent creates it when it first runs)");
    if (!rc)
        rc = readonly ? cnd_db_check(s->db, &s_schema, "agent database")
                      : cnd_db_migrate(s->db, &s_schema);
    if (rc) {
        cnd_db_close(&s->db);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void cnd_astore_close(cnd_astore_t **ps)
{
    if (!ps || !*ps) return;
    cnd_db_close(&(*ps)->db);
    free(*ps);
    *ps = NULL;
}

sqlite3 *cnd_astore_db(cnd_astore_t *s)
{
    return s->db;
}

int cnd_astore_begin(cnd_astore_t *s)
{
    if (!sqlite3_get_autocommit(s->db))
        return cnd_errf(CND_ESTATE, "%s: a transaction is already open", s->path);
    int own;
    return cnd_db_begin(s->db, &own);
}

int cnd_astore_commit(cnd_astore_t *s)
{
    return cnd_db_end(s->db, 1, 0);
}

void cnd_astore_rollback(cnd_astore_t *s)
{
    if (!s || sqlite3_get_autocommit(s->db)) return;
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

int cnd_astore_message(cnd_astore_t *s, char dir, const char *type, uint64_t job, uint32_t round,
                       const void *bytes, size_t len)
{
    uint8_t d[32];
    cnd_sha256(d, bytes, len);
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st,
                         "INSERT INTO agent_message(dir, time_ms, type, size, sha256, job, round)"
                         " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    if (rc) return rc;
    char ds[2] = {dir, 0};
    sqlite3_bind_text(st, 1, ds, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, cnd_unix_ms());
    sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (int64_t)len);
    sqlite3_bind_blob(st, 5, d, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (int64_t)job);
    sqlite3_bind_int64(st, 7, round);
    if (sqlite3_step(st) != SQLITE_DONE) rc = cnd_db_err(s->db, "logging a message");
    sqlite3_finalize(st);
    return rc;
}

/* One integer from a query with up to three integer parameters and an optional blob ?4. */
static int s_count(cnd_astore_t *s, const char *sql, int64_t a, int64_t b, int64_t c,
                   const uint8_t *blob, int64_t *out)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st, sql);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, a);
    sqlite3_bind_int64(st, 2, b);
    sqlite3_bind_int64(st, 3, c);
    if (blob) sqlite3_bind_blob(st, 4, blob, 32, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        rc = cnd_db_err(s->db, "reading the rounds served");
    sqlite3_finalize(st);
    return rc;
}

static int s_served_check(cnd_astore_t *s, uint64_t job, uint32_t round, uint32_t attempt,
                          const uint8_t D[32], uint32_t max_attempts)
{
    int64_t n = 0;
    int rc = s_count(s, "SELECT count(*) FROM agent_served WHERE digest = ?4", 0, 0, 0, D, &n);
    if (rc) return rc;
    if (n)
        return cnd_errf(CND_EPERM,
                        "job %llu round %u: these exact round parameters were served before "
                        "(a replayed round)",
                        (unsigned long long)job, round);
    if ((rc = s_count(s,
                      "SELECT count(*) FROM agent_served WHERE job = ?1 AND round = ?2 AND"
                      " attempt = ?3",
                      (int64_t)job, round, attempt, NULL, &n)))
        return rc;
    if (n)
        return cnd_errf(CND_EPERM,
                        "job %llu round %u attempt %u was served before; a site answers each "
                        "attempt once",
                        (unsigned long long)job, round, attempt);
    if ((rc = s_count(s,
                      "SELECT count(*) FROM agent_served WHERE job = ?1 AND round = ?2 AND"
                      " state = 'unmasked'",
                      (int64_t)job, round, 0, NULL, &n)))
        return rc;
    if (n)
        return cnd_errf(CND_EPERM,
                        "job %llu round %u: this site already answered an unmask request of "
                        "an earlier attempt (its sum was revealed); refusing to take part again",
                        (unsigned long long)job, round);
    if ((rc = s_count(s, "SELECT count(*) FROM agent_served WHERE job = ?1 AND round = ?2",
                      (int64_t)job, round, 0, NULL, &n)))
        return rc;
    if (n >= max_attempts)
        return cnd_errf(CND_EPERM,
                        "job %llu round %u: %lld attempts served already; this site's policy "
                        "allows %u",
                        (unsigned long long)job, round, (long long)n, max_attempts);
    return 0;
}

int cnd_astore_served_begin(cnd_astore_t *s, uint64_t job, uint32_t round, uint32_t attempt,
                            const uint8_t D[32], uint32_t max_attempts)
{
    int own;
    int rc = cnd_db_begin(s->db, &own);
    if (rc) return rc;
    rc = s_served_check(s, job, round, attempt, D, max_attempts);
    if (!rc) {
        sqlite3_stmt *st;
        rc = cnd_db_prep(s->db, &st,
                         "INSERT INTO agent_served(job, round, attempt, digest, state, time_ms)"
                         " VALUES(?1, ?2, ?3, ?4, 'started', ?5)");
        if (!rc) {
            sqlite3_bind_int64(st, 1, (int64_t)job);
            sqlite3_bind_int64(st, 2, round);
            sqlite3_bind_int64(st, 3, attempt);
            sqlite3_bind_blob(st, 4, D, 32, SQLITE_STATIC);
            sqlite3_bind_int64(st, 5, cnd_unix_ms());
            if (sqlite3_step(st) != SQLITE_DONE) rc = cnd_db_err(s->db, "recording a round served");
            sqlite3_finalize(st);
        }
    }
    return cnd_db_end(s->db, own, rc);
}

int cnd_astore_served_mark(cnd_astore_t *s, uint64_t job, uint32_t round, uint32_t attempt,
                           const char *state)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st,
                         "UPDATE agent_served SET state = ?4, time_ms = ?5 WHERE job = ?1 AND"
                         " round = ?2 AND attempt = ?3");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, (int64_t)job);
    sqlite3_bind_int64(st, 2, round);
    sqlite3_bind_int64(st, 3, attempt);
    sqlite3_bind_text(st, 4, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, cnd_unix_ms());
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = cnd_db_err(s->db, "updating a round served");
    else if (sqlite3_changes(s->db) != 1)
        rc = cnd_errf(CND_ENOTFOUND, "job %llu round %u attempt %u was never served",
                      (unsigned long long)job, round, attempt);
    sqlite3_finalize(st);
    return rc;
}

int cnd_astore_job_put(cnd_astore_t *s, uint64_t job, const uint8_t *spec, size_t spec_len,
                       const char *state, const char *reason)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st,
                         "INSERT INTO agent_job(id, spec, state, reason, received_ms, updated_ms)"
                         " VALUES(?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT(id) DO UPDATE SET"
                         " spec = ?2, state = ?3, reason = ?4, updated_ms = ?5");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, (int64_t)job);
    sqlite3_bind_blob(st, 2, spec, (int)spec_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, state, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, reason ? reason : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, cnd_unix_ms());
    if (sqlite3_step(st) != SQLITE_DONE) rc = cnd_db_err(s->db, "recording a job");
    sqlite3_finalize(st);
    return rc;
}

int cnd_astore_round_begin(cnd_astore_t *s, cnd_around_t *r)
{
    sqlite3_stmt *st;
    int rc =
        cnd_db_prep(s->db, &st,
                    "UPDATE agent_round SET outcome = 'abandoned', phase = 'ended', ended_ms = ?1"
                    " WHERE outcome = ''");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, cnd_unix_ms());
    if (sqlite3_step(st) != SQLITE_DONE) rc = cnd_db_err(s->db, "closing older rounds");
    sqlite3_finalize(st);
    if (rc) return rc;
    if ((rc = cnd_db_prep(
             s->db, &st,
             "SELECT coalesce(max(attempt), 0) FROM agent_round WHERE job = ?1 AND round = ?2")))
        return rc;
    sqlite3_bind_int64(st, 1, (int64_t)r->job);
    sqlite3_bind_int64(st, 2, r->round);
    if (sqlite3_step(st) != SQLITE_ROW) rc = cnd_db_err(s->db, "numbering a round");
    r->attempt = (uint32_t)sqlite3_column_int64(st, 0) + 1;
    sqlite3_finalize(st);
    if (rc) return rc;
    r->started_ms = cnd_unix_ms();
    if ((rc = cnd_db_prep(s->db, &st,
                          "INSERT INTO agent_round(job, round, attempt, participant_id, n, phase,"
                          " started_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)")))
        return rc;
    sqlite3_bind_int64(st, 1, (int64_t)r->job);
    sqlite3_bind_int64(st, 2, r->round);
    sqlite3_bind_int64(st, 3, r->attempt);
    sqlite3_bind_int64(st, 4, r->participant_id);
    sqlite3_bind_int64(st, 5, r->n);
    sqlite3_bind_text(st, 6, r->phase, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, r->started_ms);
    if (sqlite3_step(st) != SQLITE_DONE) rc = cnd_db_err(s->db, "recording a round");
    sqlite3_finalize(st);
    return rc;
}

int cnd_astore_round_update(cnd_astore_t *s, const cnd_around_t *r)
{
    sqlite3_stmt *st;
    int rc =
        cnd_db_prep(s->db, &st,
                    "UPDATE agent_round SET phase = ?4, outcome = ?5, reason = ?6, ended_ms = ?7,"
                    " train_ms = ?8, val_loss = ?9, val_acc = ?10, samples = ?11, clipped = ?12,"
                    " model_digest = ?13 WHERE job = ?1 AND round = ?2 AND attempt = ?3");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, (int64_t)r->job);
    sqlite3_bind_int64(st, 2, r->round);
    sqlite3_bind_int64(st, 3, r->attempt);
    sqlite3_bind_text(st, 4, r->phase, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, r->outcome, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, r->reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, r->ended_ms);
    sqlite3_bind_int64(st, 8, r->train_ms);
    sqlite3_bind_double(st, 9, r->val_loss);
    sqlite3_bind_double(st, 10, r->val_acc);
    sqlite3_bind_int64(st, 11, (int64_t)r->samples);
    sqlite3_bind_int64(st, 12, (int64_t)r->clipped);
    sqlite3_bind_blob(st, 13, r->model_digest, 32, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) rc = cnd_db_err(s->db, "updating a round");
    sqlite3_finalize(st);
    return rc;
}

int cnd_astore_totals(cnd_astore_t *s, char dir, uint64_t job, uint64_t *bytes, uint64_t *count)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st,
                         "SELECT coalesce(sum(size), 0), count(*) FROM agent_message WHERE dir = ?1"
                         " AND (?2 = 0 OR job = ?2)");
    if (rc) return rc;
    char ds[2] = {dir, 0};
    sqlite3_bind_text(st, 1, ds, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (int64_t)job);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *bytes = (uint64_t)sqlite3_column_int64(st, 0);
        *count = (uint64_t)sqlite3_column_int64(st, 1);
    } else {
        rc = cnd_db_err(s->db, "summing the message log");
    }
    sqlite3_finalize(st);
    return rc;
}

int cnd_astore_by_type(cnd_astore_t *s, char dir,
                       void (*fn)(void *ctx, const char *type, uint64_t count, uint64_t bytes),
                       void *ctx)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st,
                         "SELECT type, count(*), sum(size) FROM agent_message WHERE dir = ?1"
                         " GROUP BY type ORDER BY sum(size) DESC");
    if (rc) return rc;
    char ds[2] = {dir, 0};
    sqlite3_bind_text(st, 1, ds, -1, SQLITE_TRANSIENT);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW)
        fn(ctx, (const char *)sqlite3_column_text(st, 0), (uint64_t)sqlite3_column_int64(st, 1),
           (uint64_t)sqlite3_column_int64(st, 2));
    if (step != SQLITE_DONE) rc = cnd_db_err(s->db, "reading the message log");
    sqlite3_finalize(st);
    return rc;
}

int cnd_astore_rounds(cnd_astore_t *s, void (*fn)(void *ctx, const cnd_around_t *r), void *ctx)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st,
                         "SELECT job, round, attempt, participant_id, n, phase, outcome, reason,"
                         " started_ms, ended_ms, train_ms, val_loss, val_acc, samples, clipped"
                         " FROM agent_round ORDER BY started_ms, job, round, attempt");
    if (rc) return rc;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        cnd_around_t r;
        memset(&r, 0, sizeof r);
        r.job = (uint64_t)sqlite3_column_int64(st, 0);
        r.round = (uint32_t)sqlite3_column_int64(st, 1);
        r.attempt = (uint32_t)sqlite3_column_int64(st, 2);
        r.participant_id = (uint32_t)sqlite3_column_int64(st, 3);
        r.n = (uint32_t)sqlite3_column_int64(st, 4);
        snprintf(r.phase, sizeof r.phase, "%s", (const char *)sqlite3_column_text(st, 5));
        snprintf(r.outcome, sizeof r.outcome, "%s", (const char *)sqlite3_column_text(st, 6));
        snprintf(r.reason, sizeof r.reason, "%s", (const char *)sqlite3_column_text(st, 7));
        r.started_ms = sqlite3_column_int64(st, 8);
        r.ended_ms = sqlite3_column_int64(st, 9);
        r.train_ms = (uint32_t)sqlite3_column_int64(st, 10);
        r.val_loss = sqlite3_column_double(st, 11);
        r.val_acc = sqlite3_column_double(st, 12);
        r.samples = (uint64_t)sqlite3_column_int64(st, 13);
        r.clipped = (uint64_t)sqlite3_column_int64(st, 14);
        fn(ctx, &r);
    }
    if (step != SQLITE_DONE) rc = cnd_db_err(s->db, "reading rounds");
    sqlite3_finalize(st);
    return rc;
}

int cnd_astore_dp_add(cnd_astore_t *s, const cnd_adp_spend_t *r)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st,
                         "INSERT INTO agent_dp_spend(job, round, attempt, q, sigma, steps, delta,"
                         " epsilon_job, total_delta, epsilon_total, time_ms, ddg_l2, ddg_l1,"
                         " ddg_s2, ddg_parties, ddg_dim)"
                         " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
                         " ?15, ?16)");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, (int64_t)r->job);
    sqlite3_bind_int64(st, 2, r->round);
    sqlite3_bind_int64(st, 3, r->attempt);
    sqlite3_bind_double(st, 4, r->q);
    sqlite3_bind_double(st, 5, r->sigma);
    sqlite3_bind_int64(st, 6, r->steps);
    sqlite3_bind_double(st, 7, r->delta);
    sqlite3_bind_double(st, 8, r->eps_job);
    sqlite3_bind_double(st, 9, r->total_delta);
    sqlite3_bind_double(st, 10, r->eps_total);
    sqlite3_bind_int64(st, 11, cnd_unix_ms());
    sqlite3_bind_double(st, 12, r->ddg.l2);
    sqlite3_bind_double(st, 13, r->ddg.l1);
    sqlite3_bind_double(st, 14, r->ddg.s2);
    sqlite3_bind_int64(st, 15, r->ddg.parties);
    sqlite3_bind_int64(st, 16, (int64_t)r->ddg.dim);
    if (sqlite3_step(st) != SQLITE_DONE) rc = cnd_db_err(s->db, "recording a privacy spend");
    sqlite3_finalize(st);
    return rc;
}

int cnd_astore_dp_spends(cnd_astore_t *s, void (*fn)(void *ctx, const cnd_adp_spend_t *r),
                         void *ctx)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->db, &st,
                         "SELECT job, round, attempt, q, sigma, steps, delta, epsilon_job,"
                         " total_delta, epsilon_total, ddg_l2, ddg_l1, ddg_s2, ddg_parties, ddg_dim"
                         " FROM agent_dp_spend ORDER BY id");
    if (rc) return rc;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        cnd_adp_spend_t r = {
            (uint64_t)sqlite3_column_int64(st, 0), (uint32_t)sqlite3_column_int64(st, 1),
            (uint32_t)sqlite3_column_int64(st, 2), sqlite3_column_double(st, 3),
            sqlite3_column_double(st, 4),          (long)sqlite3_column_int64(st, 5),
            sqlite3_column_double(st, 6),          sqlite3_column_double(st, 7),
            sqlite3_column_double(st, 8),          sqlite3_column_double(st, 9)};
        r.ddg =
            (cnd_dp_ddg_t){sqlite3_column_double(st, 10), sqlite3_column_double(st, 11),
                           sqlite3_column_double(st, 12), (uint32_t)sqlite3_column_int64(st, 13),
                           (uint64_t)sqlite3_column_int64(st, 14)};
        fn(ctx, &r);
    }
    if (step != SQLITE_DONE) rc = cnd_db_err(s->db, "reading the privacy spends");
    sqlite3_finalize(st);
    return rc;
}
