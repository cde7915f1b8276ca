/*
 * rollout_state_pg.c: the PostgreSQL back end of rollout_state.h, through libpq.
 *
 * The tables are rollout_store.h's and fleet_registry.h's, column for column, in PostgreSQL
 * types (BIGINT for SQLite's INTEGER, BYTEA for BLOB, DOUBLE PRECISION for REAL; rollout.id a
 * BIGSERIAL). Every statement goes through PQexecParams with its values bound: text and numbers
 * in text format, byte strings in binary format, so nothing a device or an operator typed is
 * ever part of an SQL string. Results come back in text format; BYTEA columns are decoded with
 * PQunescapeBytea and refused unless they have the length the column must have.
 *
 * Locks (advisory, so they need no table):
 *   S_LOCK_SCHEMA (transaction-scoped) while the schema is created or migrated;
 *   S_LOCK_WRITE  (transaction-scoped) taken by cnd_rstate_begin: writers take turns, as
 *                 BEGIN IMMEDIATE makes them take turns on SQLite;
 *   S_LOCK_LEADER (session-scoped) held by the replica that runs the engine (cnd_rstate_lead).
 * After any failed statement inside cnd_rstate_begin the transaction is marked failed: every
 * later statement is refused without reaching the server and cnd_rstate_commit rolls back and
 * reports it (PostgreSQL itself refuses anything but ROLLBACK after an error).
 *
 * Device rows are batched (issue 20): inside a transaction, device_put only appends the row to
 * s->pend; every row pending is written by one INSERT ... SELECT FROM unnest(arrays) before the
 * next statement of any kind is sent (so reads inside the transaction see them) and before
 * COMMIT. An engine loop iteration that changes thousands of devices thus costs one round trip
 * instead of one per device (10,000 devices through four replicas: 63 s per rollout before,
 * docs/benchmarks.md). A failure of that statement fails the transaction as a failed device_put
 * did before, only reported at the next statement or at commit. A device put twice in one batch
 * is written once, with its last row (ON CONFLICT cannot touch one row twice in a statement).
 * Outside a transaction a device_put is written at once.
 */
#include "bytes.h"
#include "clock.h"
#include "identity.h"
#include "proto.h"
#include "rollout_state_be.h"

#include <libpq-fe.h>
#include <sodium.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_LOCK_SCHEMA 0x636e6400501 /* "cnd" "P" 1 */
#define S_LOCK_WRITE  0x636e6400502
#define S_LOCK_LEADER 0x636e6400503
#define S_MAXP        24

/* Forward migrations; condenser_schema holds how many ran (component 'rollout'). */
static const char *const s_steps[] = {
    /* 0 -> 1 */
    "CREATE TABLE fleet_device("
    " name TEXT PRIMARY KEY, ed_pk BYTEA NOT NULL UNIQUE, curve_pk BYTEA NOT NULL UNIQUE,"
    " fpr TEXT NOT NULL, enrolled_ms BIGINT NOT NULL, revoked_ms BIGINT NOT NULL DEFAULT 0,"
    " hw TEXT NOT NULL DEFAULT '', cpu TEXT NOT NULL DEFAULT '', ram BIGINT NOT NULL DEFAULT 0,"
    " flash BIGINT NOT NULL DEFAULT 0, budget_us BIGINT NOT NULL DEFAULT 0,"
    " labels TEXT NOT NULL DEFAULT '', running_digest BYTEA,"
    " running_seq BIGINT NOT NULL DEFAULT 0, runtime TEXT NOT NULL DEFAULT '',"
    " profile_ms BIGINT NOT NULL DEFAULT 0);"
    "CREATE TABLE rollout("
    " id BIGSERIAL PRIMARY KEY, model TEXT NOT NULL, version BIGINT NOT NULL,"
    " select_expr TEXT NOT NULL, canary BIGINT NOT NULL, rate BIGINT NOT NULL,"
    " factor DOUBLE PRECISION NOT NULL, abort_pct DOUBLE PRECISION NOT NULL,"
    " abort_min BIGINT NOT NULL, timeout_s BIGINT NOT NULL, win_start INTEGER NOT NULL,"
    " win_end INTEGER NOT NULL, chunk BIGINT NOT NULL, max_active BIGINT NOT NULL,"
    " state TEXT NOT NULL, reason TEXT NOT NULL, wave BIGINT NOT NULL, job TEXT NOT NULL,"
    " created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL);"
    "CREATE TABLE rollout_manifest("
    " rollout BIGINT NOT NULL, artifact BIGINT NOT NULL, kind TEXT NOT NULL,"
    " seq BIGINT NOT NULL, manifest BYTEA NOT NULL, PRIMARY KEY(rollout, artifact, kind));"
    "CREATE TABLE rollout_device("
    " rollout BIGINT NOT NULL, device TEXT NOT NULL, wave BIGINT NOT NULL,"
    " artifact BIGINT NOT NULL, prev_digest BYTEA, state TEXT NOT NULL, reason TEXT NOT NULL,"
    " offered_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL, latency_us BIGINT NOT NULL,"
    " PRIMARY KEY(rollout, device));"
    "CREATE TABLE rollout_latency("
    " artifact BIGINT NOT NULL, cpu TEXT NOT NULL, samples BIGINT NOT NULL,"
    " sum_us BIGINT NOT NULL, PRIMARY KEY(artifact, cpu));",
    /* 1 -> 2: replicas serving devices side by side (rollout_state.h, device_changes) */
    "CREATE SEQUENCE rollout_device_chg;"
    "ALTER TABLE rollout_device ADD COLUMN chg BIGINT NOT NULL DEFAULT 0;"
    "CREATE INDEX rollout_device_by_chg ON rollout_device(chg);"
    "CREATE TABLE rollout_presence(device TEXT PRIMARY KEY, seen_ms BIGINT NOT NULL);",
};
#define S_VERSION ((int)(sizeof s_steps / sizeof s_steps[0]))

/* --- parameters ----------------------------------------------------------------------------- */

typedef struct {
    int n;
    const char *v[S_MAXP];
    int len[S_MAXP];
    int fmt[S_MAXP];
    char num[S_MAXP][32];
    int bad; /* 1 + index of a text parameter that is not UTF-8, 0 = none */
} s_par_t;

static int s_utf8_ok(const char *t)
{
    const unsigned char *p = (const unsigned char *)t;
    while (*p) {
        int n = *p < 0x80             ? 0
                : (*p & 0xe0) == 0xc0 ? 1
                : (*p & 0xf0) == 0xe0 ? 2
                : (*p & 0xf8) == 0xf0 ? 3
                                      : -1;
        if (n < 0 || (n == 1 && *p < 0xc2) || (n == 3 && *p > 0xf4)) return 0;
        for (int k = 1; k <= n; k++)
            if ((p[k] & 0xc0) != 0x80) return 0;
        if (n == 2 && ((*p == 0xe0 && p[1] < 0xa0) || (*p == 0xed && p[1] >= 0xa0))) return 0;
        if (n == 3 && ((*p == 0xf0 && p[1] < 0x90) || (*p == 0xf4 && p[1] >= 0x90))) return 0;
        p += n + 1;
    }
    return 1;
}

static void s_p_i64(s_par_t *p, int64_t x)
{
    snprintf(p->num[p->n], sizeof p->num[0], "%lld", (long long)x);
    p->v[p->n] = p->num[p->n];
    p->len[p->n] = 0;
    p->fmt[p->n++] = 0;
}

static void s_p_f64(s_par_t *p, double x)
{
    snprintf(p->num[p->n], sizeof p->num[0], "%.17g", x);
    p->v[p->n] = p->num[p->n];
    p->len[p->n] = 0;
    p->fmt[p->n++] = 0;
}

static void s_p_txt(s_par_t *p, const char *t)
{
    if (!s_utf8_ok(t) && !p->bad) p->bad = p->n + 1;
    p->v[p->n] = t;
    p->len[p->n] = 0;
    p->fmt[p->n++] = 0;
}

static void s_p_blob(s_par_t *p, const uint8_t *b, size_t len)
{
    p->v[p->n] = (const char *)b;
    p->len[p->n] = (int)len;
    p->fmt[p->n++] = 1;
}

static void s_p_null(s_par_t *p)
{
    p->v[p->n] = NULL;
    p->len[p->n] = 0;
    p->fmt[p->n++] = 0;
}

/* --- statements ----------------------------------------------------------------------------- */

static PGconn *s_conn(cnd_rstate_t *s)
{
    return (PGconn *)s->conn;
}

/* The server's message without its trailing newline. */
static const char *s_msg(cnd_rstate_t *s, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", PQerrorMessage(s_conn(s)));
    size_t l = strlen(buf);
    while (l && (buf[l - 1] == '\n' || buf[l - 1] == ' ')) buf[--l] = 0;
    return buf;
}

/* Runs sql with p's values into *out (NULL when only success matters) when its status is want
 * (PGRES_COMMAND_OK or PGRES_TUPLES_OK). Returns 0, CND_EDB naming `what` and the server's
 * message, or CND_EINVAL for text that is not UTF-8 (nothing sent). */
static int s_flush(cnd_rstate_t *s);

static int s_exec(cnd_rstate_t *s, PGresult **out, const char *sql, const s_par_t *p,
                  ExecStatusType want, const char *what)
{
    if (out) *out = NULL;
    int frc = s->npend ? s_flush(s) : 0; /* the transaction's own rows first */
    if (frc) return frc;
    if (p && p->bad)
        return cnd_errf(CND_EINVAL, "%s: parameter %d is not valid UTF-8 text", what, p->bad);
    if (s->in_txn < 0)
        return cnd_errf(CND_EDB, "%s: an earlier statement of this transaction failed", what);
    /* Without parameters (constant SQL: the schema steps hold several statements, which only
     * the simple protocol runs). */
    PGresult *res = p ? PQexecParams(s_conn(s), sql, p->n, NULL, p->v, p->len, p->fmt, 0)
                      : PQexec(s_conn(s), sql);
    if (res && PQresultStatus(res) == want) {
        if (out)
            *out = res;
        else
            PQclear(res);
        return 0;
    }
    char m[512];
    if (res && PQresultErrorMessage(res)[0])
        snprintf(m, sizeof m, "%s", PQresultErrorMessage(res));
    else
        s_msg(s, m, sizeof m);
    size_t l = strlen(m);
    while (l && m[l - 1] == '\n') m[--l] = 0;
    PQclear(res);
    if (s->in_txn) s->in_txn = -1;
    return cnd_errf(CND_EDB, "%s (%s): %s", what, s->url, m);
}

static int s_cmd(cnd_rstate_t *s, const char *sql, const s_par_t *p, const char *what)
{
    return s_exec(s, NULL, sql, p, PGRES_COMMAND_OK, what);
}

static int s_query(cnd_rstate_t *s, PGresult **out, const char *sql, const s_par_t *p,
                   const char *what)
{
    return s_exec(s, out, sql, p, PGRES_TUPLES_OK, what);
}

/* --- results -------------------------------------------------------------------------------- */

static int64_t s_i64(const PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void s_txt(char *out, size_t cap, const PGresult *r, int row, int col)
{
    snprintf(out, cap, "%s", PQgetvalue(r, row, col));
}

/* A BYTEA column of exactly `want` bytes into out: 1; NULL: 0; any other length: -1. */
static int s_fixed(uint8_t *out, size_t want, const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col)) return 0;
    size_t len = 0;
    unsigned char *b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &len);
    int ok = b && len == want;
    if (ok) memcpy(out, b, want);
    PQfreemem(b);
    return ok ? 1 : -1;
}

/* --- connection, schema, transactions ------------------------------------------------------- */

/* BEGIN, then the transaction-scoped advisory lock `lock` (named `what` in errors); on failure
 * nothing is left open. */
static int s_begin_locked(cnd_rstate_t *s, int64_t lock, const char *what)
{
    int rc = s_cmd(s, "BEGIN", NULL, "begin");
    if (rc) return rc;
    s->in_txn = 1;
    s_par_t p = {0};
    s_p_i64(&p, lock);
    PGresult *r = NULL;
    rc = s_query(s, &r, "SELECT pg_advisory_xact_lock($1)", &p, what);
    PQclear(r);
    if (rc) {
        s->in_txn = 0;
        PQclear(PQexec(s_conn(s), "ROLLBACK"));
    }
    return rc;
}

static int s_migrate(cnd_rstate_t *s)
{
    int rc = s_begin_locked(s, S_LOCK_SCHEMA, "schema lock");
    if (rc) return rc;
    PGresult *r = NULL;
    rc = s_cmd(s,
               "CREATE TABLE IF NOT EXISTS condenser_schema("
               " component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
               NULL, "creating condenser_schema");
    int v = 0;
    if (!rc)
        rc = s_query(s, &r, "SELECT version FROM condenser_schema WHERE component = 'rollout'",
                     NULL, "reading the schema version");
    if (!rc && PQntuples(r) == 1) v = (int)s_i64(r, 0, 0);
    PQclear(r);
    if (!rc && (v < 0 || v > S_VERSION))
        rc = cnd_errf(CND_EFORMAT,
                      "%s: rollout schema version %d is newer than this build knows (%d)", s->url,
                      v, S_VERSION);
    for (int i = v; !rc && i < S_VERSION; i++) rc = s_cmd(s, s_steps[i], NULL, "migrating");
    if (!rc && v < S_VERSION) {
        s_par_t q = {0};
        s_p_i64(&q, S_VERSION);
        rc = s_cmd(s,
                   "INSERT INTO condenser_schema VALUES('rollout', $1)"
                   " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                   &q, "recording the schema version");
    }
    if (!rc) {
        s->in_txn = 0;
        return s_cmd(s, "COMMIT", NULL, "committing the schema");
    }
    s->in_txn = 0;
    PQclear(PQexec(s_conn(s), "ROLLBACK"));
    return rc;
}

static void s_quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

int cnd_rstate_pg_connect(cnd_rstate_t *s, const char *url)
{
    PGconn *c = PQconnectdb(url);
    s->conn = c;
    if (!c) return cnd_errf(CND_ENOMEM, "out of memory");
    if (PQstatus(c) != CONNECTION_OK) {
        char m[512];
        return cnd_errf(CND_EDB, "PostgreSQL %s: %s", s->url, s_msg(s, m, sizeof m));
    }
    /* Notices (e.g. "relation already exists, skipping") are not for the operator's log. */
    PQsetNoticeProcessor(c, s_quiet, NULL);
    int rc = s_cmd(s, "SET client_encoding = 'UTF8'", NULL, "client encoding");
    return rc ? rc : s_migrate(s);
}

static int s_pg_begin(cnd_rstate_t *s)
{
    if (s->in_txn) return cnd_errf(CND_ESTATE, "rollout state: a transaction is open already");
    return s_begin_locked(s, S_LOCK_WRITE, "writer lock");
}

static void s_pg_rollback(cnd_rstate_t *s)
{
    s->npend = 0; /* never sent: nothing to undo */
    if (!s->in_txn) return;
    s->in_txn = 0;
    PQclear(PQexec(s_conn(s), "ROLLBACK"));
}

static int s_pg_commit(cnd_rstate_t *s)
{
    if (!s->in_txn) return 0;
    int frc = s->npend ? s_flush(s) : 0;
    if (frc) {
        s_pg_rollback(s);
        return cnd_err_wrap(frc, "commit (%s): rolled back", s->url);
    }
    if (s->in_txn < 0) {
        s_pg_rollback(s);
        return cnd_errf(CND_EDB, "%s: transaction rolled back after a failed statement", s->url);
    }
    s->in_txn = 0;
    PGresult *r = PQexec(s_conn(s), "COMMIT");
    /* COMMIT of a transaction the server aborted answers ROLLBACK, with status COMMAND_OK. */
    int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
    PQclear(r);
    if (ok) return 0;
    char m[512];
    return cnd_errf(CND_EDB, "commit (%s): %s", s->url, s_msg(s, m, sizeof m));
}

static void s_pg_close(cnd_rstate_t *s)
{
    if (s->conn) {
        s_pg_rollback(s);
        PQfinish(s_conn(s));
    }
    s->conn = NULL;
    free(s->pend);
    s->pend = NULL;
    s->npend = s->cappend = 0;
}

/* --- rollouts ------------------------------------------------------------------------------- */

#define S_RCOLS                                                                                    \
    "id, model, version, select_expr, canary, rate, factor, abort_pct, abort_min, timeout_s, "     \
    "win_start, win_end, chunk, max_active, state, reason, wave, job, created_ms, updated_ms"

static int s_rrow(cnd_rstate_t *s, cnd_rollout_rec_t *r, const PGresult *q, int i)
{
    memset(r, 0, sizeof *r);
    r->id = s_i64(q, i, 0);
    s_txt(r->model, sizeof r->model, q, i, 1);
    r->version = (uint64_t)s_i64(q, i, 2);
    s_txt(r->select, sizeof r->select, q, i, 3);
    r->canary = (uint32_t)s_i64(q, i, 4);
    r->rate = (uint32_t)s_i64(q, i, 5);
    r->factor = strtod(PQgetvalue(q, i, 6), NULL);
    r->abort_pct = strtod(PQgetvalue(q, i, 7), NULL);
    r->abort_min = (uint32_t)s_i64(q, i, 8);
    r->timeout_s = (uint32_t)s_i64(q, i, 9);
    r->win_start = (int)s_i64(q, i, 10);
    r->win_end = (int)s_i64(q, i, 11);
    r->chunk = (uint32_t)s_i64(q, i, 12);
    r->max_active = (uint32_t)s_i64(q, i, 13);
    s_txt(r->reason, sizeof r->reason, q, i, 15);
    r->wave = (uint32_t)s_i64(q, i, 16);
    s_txt(r->job, sizeof r->job, q, i, 17);
    r->created_ms = s_i64(q, i, 18);
    r->updated_ms = s_i64(q, i, 19);
    if (cnd_rollout_state_parse(&r->state, PQgetvalue(q, i, 14)) == 0) return 0;
    return cnd_errf(CND_ECORRUPT, "%s: rollout %lld: unknown state '%s'", s->url, (long long)r->id,
                    PQgetvalue(q, i, 14));
}

static void s_rbind(s_par_t *p, const cnd_rollout_rec_t *r)
{
    s_p_txt(p, r->model);
    s_p_i64(p, (int64_t)r->version);
    s_p_txt(p, r->select);
    s_p_i64(p, r->canary);
    s_p_i64(p, r->rate);
    s_p_f64(p, r->factor);
    s_p_f64(p, r->abort_pct);
    s_p_i64(p, r->abort_min);
    s_p_i64(p, r->timeout_s);
    s_p_i64(p, r->win_start);
    s_p_i64(p, r->win_end);
    s_p_i64(p, r->chunk);
    s_p_i64(p, r->max_active);
    s_p_txt(p, cnd_rollout_state_name(r->state));
    s_p_txt(p, r->reason);
    s_p_i64(p, r->wave);
    s_p_txt(p, r->job);
    s_p_i64(p, r->created_ms);
    s_p_i64(p, r->updated_ms);
}

static int s_pg_rollout_insert(cnd_rstate_t *s, cnd_rollout_rec_t *r)
{
    r->created_ms = r->updated_ms = cnd_unix_time() * 1000;
    s_par_t p = {0};
    s_rbind(&p, r);
    PGresult *q = NULL;
    int rc = s_query(s, &q,
                     "INSERT INTO rollout(model, version, select_expr, canary, rate, factor,"
                     " abort_pct, abort_min, timeout_s, win_start, win_end, chunk, max_active,"
                     " state, reason, wave, job, created_ms, updated_ms)"
                     " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)"
                     " RETURNING id",
                     &p, "writing the rollout tables");
    if (!rc) r->id = s_i64(q, 0, 0);
    PQclear(q);
    return rc;
}

static int s_pg_rollout_update(cnd_rstate_t *s, const cnd_rollout_rec_t *r)
{
    s_par_t p = {0};
    s_rbind(&p, r);
    s_p_i64(&p, r->id);
    return s_cmd(s,
                 "UPDATE rollout SET model=$1, version=$2, select_expr=$3, canary=$4, rate=$5,"
                 " factor=$6, abort_pct=$7, abort_min=$8, timeout_s=$9, win_start=$10,"
                 " win_end=$11, chunk=$12, max_active=$13, state=$14, reason=$15, wave=$16,"
                 " job=$17, created_ms=$18, updated_ms=$19 WHERE id = $20",
                 &p, "writing the rollout tables");
}

static int s_pg_rollout_get(cnd_rstate_t *s, int64_t id, cnd_rollout_rec_t *r)
{
    s_par_t p = {0};
    s_p_i64(&p, id);
    PGresult *q = NULL;
    int rc = s_query(s, &q, "SELECT " S_RCOLS " FROM rollout WHERE id = $1", &p, "rollout state");
    if (!rc && PQntuples(q) == 0) rc = cnd_errf(CND_ENOTFOUND, "no rollout %lld", (long long)id);
    if (!rc) rc = s_rrow(s, r, q, 0);
    PQclear(q);
    return rc;
}

static int s_pg_rollouts(cnd_rstate_t *s, cnd_rollout_rec_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    PGresult *q = NULL;
    int rc =
        s_query(s, &q, "SELECT " S_RCOLS " FROM rollout ORDER BY id DESC", NULL, "rollout state");
    int rows = rc ? 0 : PQntuples(q);
    if (!rc && rows && !(*out = calloc((size_t)rows, sizeof **out)))
        rc = cnd_errf(CND_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < rows; i++) rc = s_rrow(s, &(*out)[(*n)++], q, i);
    PQclear(q);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

static void s_p_live(s_par_t *p)
{
    s_p_txt(p, cnd_rollout_state_name(CND_ROLLOUT_RUNNING));
    s_p_txt(p, cnd_rollout_state_name(CND_ROLLOUT_PAUSED));
    s_p_txt(p, cnd_rollout_state_name(CND_ROLLOUT_ROLLING_BACK));
}

static int s_pg_rollouts_loaded(cnd_rstate_t *s, int64_t **ids, cnd_rollout_state_t **states,
                                size_t *n)
{
    *ids = NULL;
    *states = NULL;
    *n = 0;
    s_par_t p = {0};
    s_p_live(&p);
    s_p_txt(&p, cnd_rollout_state_name(CND_ROLLOUT_COMPLETED));
    s_p_txt(&p, cnd_rollout_state_name(CND_ROLLOUT_ABORTED));
    PGresult *q = NULL;
    int rc = s_query(s, &q,
                     "SELECT id, state FROM rollout r WHERE state IN ($1, $2, $3)"
                     " OR id = (SELECT max(id) FROM rollout r2"
                     " WHERE r2.model = r.model AND r2.state IN ($4, $5)) ORDER BY id",
                     &p, "rollout state");
    int rows = rc ? 0 : PQntuples(q);
    if (!rc && rows) {
        *ids = calloc((size_t)rows, sizeof **ids);
        *states = calloc((size_t)rows, sizeof **states);
        if (!*ids || !*states) rc = cnd_errf(CND_ENOMEM, "out of memory");
    }
    for (int i = 0; !rc && i < rows; i++) {
        (*ids)[i] = s_i64(q, i, 0);
        if (cnd_rollout_state_parse(&(*states)[i], PQgetvalue(q, i, 1)))
            rc = cnd_errf(CND_ECORRUPT, "%s: rollout %lld: unknown state '%s'", s->url,
                          (long long)(*ids)[i], PQgetvalue(q, i, 1));
        else
            (*n)++;
    }
    PQclear(q);
    if (rc) {
        free(*ids);
        free(*states);
        *ids = NULL;
        *states = NULL;
        *n = 0;
    }
    return rc;
}

static int s_pg_manifest_put(cnd_rstate_t *s, int64_t rollout, int64_t artifact, const char *kind,
                             uint64_t seq, const uint8_t *m, size_t len)
{
    if (len > (size_t)INT32_MAX) return cnd_errf(CND_EINVAL, "manifest of %zu bytes", len);
    s_par_t p = {0};
    s_p_i64(&p, rollout);
    s_p_i64(&p, artifact);
    s_p_txt(&p, kind);
    s_p_i64(&p, (int64_t)seq);
    s_p_blob(&p, m, len);
    return s_cmd(s,
                 "INSERT INTO rollout_manifest VALUES($1, $2, $3, $4, $5)"
                 " ON CONFLICT(rollout, artifact, kind) DO UPDATE SET seq = excluded.seq,"
                 " manifest = excluded.manifest",
                 &p, "writing the rollout tables");
}

static int s_pg_manifest_get(cnd_rstate_t *s, int64_t rollout, int64_t artifact, const char *kind,
                             uint8_t **m, size_t *len)
{
    *m = NULL;
    *len = 0;
    s_par_t p = {0};
    s_p_i64(&p, rollout);
    s_p_i64(&p, artifact);
    s_p_txt(&p, kind);
    PGresult *q = NULL;
    int rc = s_query(s, &q,
                     "SELECT manifest FROM rollout_manifest WHERE rollout = $1 AND artifact = $2"
                     " AND kind = $3",
                     &p, "rollout state");
    if (!rc && PQntuples(q) == 0) rc = CND_ENOTFOUND;
    if (!rc) {
        size_t l = 0;
        unsigned char *b = PQunescapeBytea((const unsigned char *)PQgetvalue(q, 0, 0), &l);
        if (!b || !(*m = malloc(l ? l : 1))) {
            rc = cnd_errf(CND_ENOMEM, "out of memory");
        } else {
            memcpy(*m, b, l);
            *len = l;
        }
        PQfreemem(b);
    }
    PQclear(q);
    return rc;
}

/* --- device rows, latencies ----------------------------------------------------------------- */

/* Appends t to an array literal as one quoted element ("a\"b"). */
static void s_arr_txt(cnd_buf_t *b, const char *t)
{
    cnd_buf_put(b, b->len > 1 ? ",\"" : "\"", b->len > 1 ? 2 : 1);
    for (const char *c = t; *c; c++) {
        if (*c == '"' || *c == '\\') cnd_buf_u8(b, '\\');
        cnd_buf_u8(b, (uint8_t)*c);
    }
    cnd_buf_u8(b, '"');
}

static void s_arr_i64(cnd_buf_t *b, int64_t x)
{
    char t[24];
    int l = snprintf(t, sizeof t, "%s%lld", b->len > 1 ? "," : "", (long long)x);
    cnd_buf_put(b, t, (size_t)l);
}

/* The columns of a batch of device rows, each as one PostgreSQL array literal. */
enum {
    S_DA_ROLLOUT,
    S_DA_DEVICE,
    S_DA_WAVE,
    S_DA_ARTIFACT,
    S_DA_PREV,
    S_DA_STATE,
    S_DA_REASON,
    S_DA_OFFERED,
    S_DA_UPDATED,
    S_DA_LATENCY,
    S_DA_N
};

static void s_arr_row(cnd_buf_t a[S_DA_N], const cnd_rdevice_t *d)
{
    s_arr_i64(&a[S_DA_ROLLOUT], d->rollout);
    s_arr_txt(&a[S_DA_DEVICE], d->device);
    s_arr_i64(&a[S_DA_WAVE], d->wave);
    s_arr_i64(&a[S_DA_ARTIFACT], d->artifact);
    char hex[65];
    if (d->has_prev) {
        sodium_bin2hex(hex, sizeof hex, d->prev_digest, 32);
        s_arr_txt(&a[S_DA_PREV], hex);
    } else {
        cnd_buf_put(&a[S_DA_PREV], a[S_DA_PREV].len > 1 ? ",NULL" : "NULL",
                    a[S_DA_PREV].len > 1 ? 5 : 4);
    }
    s_arr_txt(&a[S_DA_STATE], cnd_rdevice_state_name(d->state));
    s_arr_txt(&a[S_DA_REASON], d->reason);
    s_arr_i64(&a[S_DA_OFFERED], d->offered_ms);
    s_arr_i64(&a[S_DA_UPDATED], d->updated_ms);
    s_arr_i64(&a[S_DA_LATENCY], d->latency_us);
}

/* Writes rows[0..n) in one statement: the arrays are unnested in order and, for a device put
 * twice, only its last row is kept (DISTINCT ON with the highest ordinal). */
static int s_put_rows(cnd_rstate_t *s, const cnd_rdevice_t *rows, size_t n)
{
    cnd_buf_t a[S_DA_N];
    for (int k = 0; k < S_DA_N; k++) {
        cnd_buf_init(&a[k]);
        cnd_buf_u8(&a[k], '{');
    }
    for (size_t i = 0; i < n; i++) s_arr_row(a, &rows[i]);
    int rc = 0;
    s_par_t p = {0};
    for (int k = 0; k < S_DA_N; k++) {
        cnd_buf_put(&a[k], "}", 2); /* with the NUL */
        if (a[k].err) rc = cnd_errf(CND_ENOMEM, "out of memory");
        s_p_txt(&p, (const char *)a[k].data);
    }
    if (!rc)
        rc = s_cmd(s,
                   "INSERT INTO rollout_device(rollout, device, wave, artifact, prev_digest, state,"
                   " reason, offered_ms, updated_ms, latency_us, chg)"
                   " SELECT r, d, w, a, decode(pd, 'hex'), st, re, o, u, l,"
                   " nextval('rollout_device_chg') FROM ("
                   "  SELECT DISTINCT ON (r, d) * FROM unnest($1::bigint[], $2::text[],"
                   "   $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[],"
                   "   $8::bigint[], $9::bigint[], $10::bigint[])"
                   "   WITH ORDINALITY AS x(r, d, w, a, pd, st, re, o, u, l, k)"
                   "  ORDER BY r, d, k DESC) AS last_rows"
                   " ON CONFLICT(rollout, device) DO UPDATE SET wave = excluded.wave,"
                   " artifact = excluded.artifact, prev_digest = excluded.prev_digest,"
                   " state = excluded.state, reason = excluded.reason,"
                   " offered_ms = excluded.offered_ms, updated_ms = excluded.updated_ms,"
                   " latency_us = excluded.latency_us, chg = excluded.chg",
                   &p, "writing the rollout tables");
    for (int k = 0; k < S_DA_N; k++) cnd_buf_free(&a[k]);
    if (rc && s->in_txn) s->in_txn = -1; /* these rows are lost: the commit must not succeed */
    return rc;
}

/* Sends the rows pending in this transaction (emptied first, so s_exec does not come back). */
static int s_flush(cnd_rstate_t *s)
{
    size_t n = s->npend;
    s->npend = 0;
    return s_put_rows(s, s->pend, n);
}

static int s_pg_device_put(cnd_rstate_t *s, const cnd_rdevice_t *d)
{
    if (s->in_txn < 0)
        return cnd_errf(CND_EDB, "writing the rollout tables: an earlier statement of this "
                                 "transaction failed");
    /* Refused alone, as before batching: one bad row must not fail its neighbours' batch. */
    if (!s_utf8_ok(d->device) || !s_utf8_ok(d->reason))
        return cnd_errf(CND_EINVAL,
                        "writing the rollout tables: device %s: name or reason is "
                        "not valid UTF-8 text",
                        s_utf8_ok(d->device) ? d->device : "(not UTF-8)");
    if (!s->in_txn) return s_put_rows(s, d, 1);
    if (s->npend == s->cappend) {
        size_t cap = s->cappend ? 2 * s->cappend : 256;
        cnd_rdevice_t *g = realloc(s->pend, cap * sizeof *g);
        if (!g) {
            s->in_txn = -1; /* the row is lost: the commit must not succeed */
            return cnd_errf(CND_ENOMEM, "out of memory");
        }
        s->pend = g;
        s->cappend = cap;
    }
    s->pend[s->npend++] = *d;
    return 0;
}

static int s_names(cnd_rstate_t *s, const char *sql, const s_par_t *p, char ***names, size_t *n);

#define S_DCOLS                                                                                    \
    "rollout, device, wave, artifact, prev_digest, state, reason, offered_ms, updated_ms, "        \
    "latency_us, chg"

/* The rows of a query on S_DCOLS into *out; *last = the highest chg among them (kept if none). */
static int s_drows(cnd_rstate_t *s, PGresult *q, cnd_rdevice_t **out, size_t *n, int64_t *last)
{
    int rows = PQntuples(q), rc = 0;
    if (rows && !(*out = calloc((size_t)rows, sizeof **out)))
        return cnd_errf(CND_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < rows; i++) {
        cnd_rdevice_t *d = &(*out)[(*n)++];
        d->rollout = s_i64(q, i, 0);
        s_txt(d->device, sizeof d->device, q, i, 1);
        d->wave = (uint32_t)s_i64(q, i, 2);
        d->artifact = s_i64(q, i, 3);
        d->has_prev = s_fixed(d->prev_digest, 32, q, i, 4) == 1;
        s_txt(d->reason, sizeof d->reason, q, i, 6);
        d->offered_ms = s_i64(q, i, 7);
        d->updated_ms = s_i64(q, i, 8);
        d->latency_us = (uint32_t)s_i64(q, i, 9);
        if (last && s_i64(q, i, 10) > *last) *last = s_i64(q, i, 10);
        if (cnd_rdevice_state_parse(&d->state, PQgetvalue(q, i, 5)))
            rc = cnd_errf(CND_ECORRUPT, "%s: rollout %lld: device %s: unknown state '%s'", s->url,
                          (long long)d->rollout, d->device, PQgetvalue(q, i, 5));
    }
    return rc;
}

static int s_pg_devices(cnd_rstate_t *s, int64_t rollout, cnd_rdevice_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    s_par_t p = {0};
    s_p_i64(&p, rollout);
    PGresult *q = NULL;
    int rc = s_query(s, &q,
                     "SELECT " S_DCOLS " FROM rollout_device WHERE rollout = $1"
                     " ORDER BY wave, device COLLATE \"C\"",
                     &p, "rollout state");
    if (!rc) rc = s_drows(s, q, out, n, NULL);
    PQclear(q);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

static int s_pg_device_changes(cnd_rstate_t *s, int64_t after, cnd_rdevice_t **out, size_t *n,
                               int64_t *last)
{
    PGresult *q = NULL;
    int rc;
    if (!out) {
        *last = 0;
        rc = s_query(s, &q, "SELECT coalesce(max(chg), 0) FROM rollout_device", NULL,
                     "rollout state");
        if (!rc) *last = s_i64(q, 0, 0);
        PQclear(q);
        return rc;
    }
    *out = NULL;
    *n = 0;
    *last = after;
    s_par_t p = {0};
    s_p_i64(&p, after);
    rc = s_query(s, &q, "SELECT " S_DCOLS " FROM rollout_device WHERE chg > $1 ORDER BY chg", &p,
                 "rollout state");
    if (!rc) rc = s_drows(s, q, out, n, last);
    PQclear(q);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
        *last = after;
    }
    return rc;
}

/* The names as one PostgreSQL text array literal ({"a","b"}, quotes and backslashes escaped),
 * bound as a parameter. */
static int s_pg_presence_put(cnd_rstate_t *s, char *const *names, size_t n, int64_t now_ms)
{
    if (!n) return 0;
    size_t cap = 3;
    for (size_t i = 0; i < n; i++) cap += 2 * strlen(names[i]) + 3;
    char *a = malloc(cap), *w = a;
    if (!a) return cnd_errf(CND_ENOMEM, "out of memory");
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i) *w++ = ',';
        *w++ = '"';
        for (const char *c = names[i]; *c; c++) {
            if (*c == '"' || *c == '\\') *w++ = '\\';
            *w++ = *c;
        }
        *w++ = '"';
    }
    *w++ = '}';
    *w = 0;
    s_par_t p = {0};
    s_p_txt(&p, a);
    s_p_i64(&p, now_ms);
    int rc = s_cmd(s,
                   "INSERT INTO rollout_presence SELECT unnest($1::text[]), $2"
                   " ON CONFLICT(device) DO UPDATE SET seen_ms = excluded.seen_ms",
                   &p, "writing device presence");
    free(a);
    return rc;
}

static int s_pg_presence_since(cnd_rstate_t *s, int64_t since_ms, char ***names, size_t *n)
{
    s_par_t p = {0};
    s_p_i64(&p, since_ms);
    return s_names(s, "SELECT device FROM rollout_presence WHERE seen_ms >= $1", &p, names, n);
}

/* A one-column query into an array of names. */
static int s_names(cnd_rstate_t *s, const char *sql, const s_par_t *p, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    PGresult *q = NULL;
    int rc = s_query(s, &q, sql, p, "rollout state");
    size_t cap = 0;
    for (int i = 0; !rc && i < PQntuples(q); i++)
        rc = cnd_rstate_names_push(names, n, &cap, PQgetvalue(q, i, 0));
    PQclear(q);
    if (rc) {
        cnd_rstate_names_free(*names, *n);
        *names = NULL;
        *n = 0;
    }
    return rc;
}

static int s_pg_busy_devices(cnd_rstate_t *s, char ***names, size_t *n)
{
    s_par_t p = {0};
    s_p_live(&p);
    s_p_txt(&p, cnd_rdevice_state_name(CND_RDEV_SKIPPED));
    s_p_txt(&p, cnd_rdevice_state_name(CND_RDEV_CURRENT));
    s_p_txt(&p, cnd_rdevice_state_name(CND_RDEV_CANCELLED));
    return s_names(s,
                   "SELECT d.device FROM rollout_device d JOIN rollout r ON r.id = d.rollout"
                   " WHERE r.state IN ($1, $2, $3) AND d.state NOT IN ($4, $5, $6)",
                   &p, names, n);
}

static int s_pg_latency(cnd_rstate_t *s, int64_t artifact, const char *cpu, uint32_t *us)
{
    s_par_t p = {0};
    s_p_i64(&p, artifact);
    s_p_txt(&p, cpu);
    PGresult *q = NULL;
    int rc = s_query(s, &q,
                     "SELECT sum_us / samples FROM rollout_latency WHERE artifact = $1"
                     " AND cpu = $2 AND samples > 0",
                     &p, "rollout state");
    if (!rc && PQntuples(q) == 0) rc = CND_ENOTFOUND;
    if (!rc) *us = (uint32_t)s_i64(q, 0, 0);
    PQclear(q);
    return rc;
}

static int s_pg_latency_add(cnd_rstate_t *s, int64_t artifact, const char *cpu, uint32_t us)
{
    s_par_t p = {0};
    s_p_i64(&p, artifact);
    s_p_txt(&p, cpu);
    s_p_i64(&p, us);
    return s_cmd(s,
                 "INSERT INTO rollout_latency VALUES($1, $2, 1, $3) ON CONFLICT(artifact, cpu)"
                 " DO UPDATE SET samples = rollout_latency.samples + 1,"
                 " sum_us = rollout_latency.sum_us + $3",
                 &p, "writing the rollout tables");
}

/* --- the fleet registry --------------------------------------------------------------------- */

#define S_FCOLS                                                                                    \
    "name, ed_pk, curve_pk, fpr, enrolled_ms, revoked_ms, hw, cpu, ram, flash, budget_us, "        \
    "labels, running_digest, running_seq, runtime, profile_ms"

static void s_frow(cnd_fleet_device_t *d, const PGresult *q, int i)
{
    memset(d, 0, sizeof *d);
    s_txt(d->name, sizeof d->name, q, i, 0);
    if (s_fixed(d->ed_pk, 32, q, i, 1) != 1) memset(d->ed_pk, 0, 32);
    if (s_fixed(d->curve_pk, 32, q, i, 2) != 1) memset(d->curve_pk, 0, 32);
    s_txt(d->fpr, sizeof d->fpr, q, i, 3);
    d->enrolled_ms = s_i64(q, i, 4);
    d->revoked_ms = s_i64(q, i, 5);
    s_txt(d->hw, sizeof d->hw, q, i, 6);
    s_txt(d->cpu, sizeof d->cpu, q, i, 7);
    d->ram = (uint64_t)s_i64(q, i, 8);
    d->flash = (uint64_t)s_i64(q, i, 9);
    d->budget_us = (uint32_t)s_i64(q, i, 10);
    cnd_fleet_labels_decode(d, PQgetvalue(q, i, 11));
    d->has_running = s_fixed(d->running_digest, 32, q, i, 12) == 1;
    d->running_seq = (uint64_t)s_i64(q, i, 13);
    s_txt(d->runtime, sizeof d->runtime, q, i, 14);
    d->profile_ms = s_i64(q, i, 15);
}

static int s_fget(cnd_rstate_t *s, const char *sql, const s_par_t *p, cnd_fleet_device_t *d)
{
    PGresult *q = NULL;
    int rc = s_query(s, &q, sql, p, "fleet lookup");
    if (!rc && PQntuples(q) == 0) rc = CND_ENOTFOUND;
    if (!rc) s_frow(d, q, 0);
    PQclear(q);
    return rc;
}

static int s_pg_fleet_get(cnd_rstate_t *s, const char *name, cnd_fleet_device_t *d)
{
    s_par_t p = {0};
    s_p_txt(&p, name);
    return s_fget(s, "SELECT " S_FCOLS " FROM fleet_device WHERE name = $1", &p, d);
}

static int s_pg_fleet_by_curve(cnd_rstate_t *s, const uint8_t curve_pk[32], cnd_fleet_device_t *d)
{
    s_par_t p = {0};
    s_p_blob(&p, curve_pk, 32);
    return s_fget(s, "SELECT " S_FCOLS " FROM fleet_device WHERE curve_pk = $1", &p, d);
}

/* The checks and messages of cnd_fleet_enroll (fleet_registry.c). */
static int s_pg_fleet_enroll(cnd_rstate_t *s, const char *name, const uint8_t ed_pk[32])
{
    if (!cnd_proto_name_ok(name))
        return cnd_errf(CND_EINVAL,
                        "'%s' is not a valid device name ([A-Za-z0-9][A-Za-z0-9._-]*,"
                        " 1..63 bytes)",
                        name);
    uint8_t curve[32];
    if (cnd_pubkey_to_curve(curve, ed_pk))
        return cnd_errf(CND_EINVAL, "%s: the key is not a valid Ed25519 public key", name);
    cnd_fleet_device_t d;
    int rc = s_pg_fleet_get(s, name, &d);
    if (rc == 0) return cnd_errf(CND_EEXIST, "device '%s' is enrolled already", name);
    if (rc != CND_ENOTFOUND) return rc;
    rc = s_pg_fleet_by_curve(s, curve, &d);
    if (rc == 0) return cnd_errf(CND_EEXIST, "this key is enrolled already, as '%s'", d.name);
    if (rc != CND_ENOTFOUND) return rc;
    cnd_err_clear();
    char fpr[65];
    cnd_pubkey_fingerprint(fpr, ed_pk);
    s_par_t p = {0};
    s_p_txt(&p, name);
    s_p_blob(&p, ed_pk, 32);
    s_p_blob(&p, curve, 32);
    s_p_txt(&p, fpr);
    s_p_i64(&p, cnd_unix_time() * 1000);
    return s_cmd(s,
                 "INSERT INTO fleet_device(name, ed_pk, curve_pk, fpr, enrolled_ms)"
                 " VALUES($1, $2, $3, $4, $5)",
                 &p, "fleet enroll");
}

static int s_pg_fleet_put_profile(cnd_rstate_t *s, const cnd_fleet_device_t *d)
{
    char labels[CND_FLEET_LABELS_MAX * 164 + 1];
    cnd_fleet_labels_encode(labels, sizeof labels, d);
    s_par_t p = {0};
    s_p_txt(&p, d->name);
    s_p_txt(&p, d->hw);
    s_p_txt(&p, d->cpu);
    s_p_i64(&p, (int64_t)d->ram);
    s_p_i64(&p, (int64_t)d->flash);
    s_p_i64(&p, d->budget_us);
    s_p_txt(&p, labels);
    if (d->has_running)
        s_p_blob(&p, d->running_digest, 32);
    else
        s_p_null(&p);
    s_p_i64(&p, (int64_t)d->running_seq);
    s_p_txt(&p, d->runtime);
    s_p_i64(&p, d->profile_ms);
    return s_cmd(s,
                 "UPDATE fleet_device SET hw = $2, cpu = $3, ram = $4, flash = $5, budget_us = $6,"
                 " labels = $7, running_digest = $8, running_seq = $9, runtime = $10,"
                 " profile_ms = $11 WHERE name = $1",
                 &p, "fleet profile");
}

static int s_pg_fleet_list(cnd_rstate_t *s, cnd_fleet_device_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    PGresult *q = NULL;
    int rc = s_query(s, &q, "SELECT " S_FCOLS " FROM fleet_device ORDER BY name COLLATE \"C\"",
                     NULL, "fleet list");
    int rows = rc ? 0 : PQntuples(q);
    if (!rc && rows && !(*out = calloc((size_t)rows, sizeof **out)))
        rc = cnd_errf(CND_ENOMEM, "fleet list: out of memory");
    for (int i = 0; !rc && i < rows; i++) s_frow(&(*out)[(*n)++], q, i);
    PQclear(q);
    return rc;
}

static int s_pg_fleet_count(cnd_rstate_t *s, uint64_t *enrolled, uint64_t *profiled)
{
    *enrolled = *profiled = 0;
    PGresult *q = NULL;
    int rc =
        s_query(s, &q, "SELECT count(*), count(*) FILTER (WHERE profile_ms > 0) FROM fleet_device",
                NULL, "fleet count");
    if (!rc) {
        *enrolled = (uint64_t)s_i64(q, 0, 0);
        *profiled = (uint64_t)s_i64(q, 0, 1);
    }
    PQclear(q);
    return rc;
}

static int s_pg_fleet_revoke(cnd_rstate_t *s, const char *name)
{
    cnd_fleet_device_t d;
    int rc = s_pg_fleet_get(s, name, &d);
    if (rc == CND_ENOTFOUND) return cnd_errf(CND_ENOTFOUND, "no device named '%s'", name);
    if (rc) return rc;
    if (d.revoked_ms) return cnd_errf(CND_ESTATE, "device '%s' is revoked already", name);
    s_par_t p = {0};
    s_p_txt(&p, name);
    s_p_i64(&p, cnd_unix_time() * 1000);
    return s_cmd(s, "UPDATE fleet_device SET revoked_ms = $2 WHERE name = $1", &p, "fleet revoke");
}

static int s_pg_fleet_revoked(cnd_rstate_t *s, char ***names, size_t *n)
{
    return s_names(s, "SELECT name FROM fleet_device WHERE revoked_ms != 0", NULL, names, n);
}

/* --- leadership ------------------------------------------------------------------------------ */

/* Asks the server which locks this session holds: a closed or broken connection fails, and so
 * does a lock that is gone (it cannot be, short of the connection ending). */
static int s_pg_lead_check(cnd_rstate_t *s)
{
    if (!s->leading) return cnd_errf(CND_ESTATE, "%s: not the leader", s->url);
    s_par_t p = {0};
    s_p_i64(&p, S_LOCK_LEADER);
    PGresult *q = NULL;
    int rc = s_query(s, &q,
                     "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                     " AND pid = pg_backend_pid() AND granted"
                     " AND ((classid::bigint << 32) | objid::bigint) = $1",
                     &p, "leader lock check");
    int held = !rc && PQntuples(q) == 1 && strcmp(PQgetvalue(q, 0, 0), "1") == 0;
    PQclear(q);
    if (held) return 0;
    s->leading = 0;
    return rc ? rc : cnd_errf(CND_EDB, "%s: the leader lock is no longer held", s->url);
}

static int s_pg_lead(cnd_rstate_t *s, int *leading)
{
    *leading = 0;
    if (s->leading) {
        int rc = s_pg_lead_check(s);
        *leading = rc == 0;
        return rc;
    }
    s_par_t p = {0};
    s_p_i64(&p, S_LOCK_LEADER);
    PGresult *q = NULL;
    int rc = s_query(s, &q, "SELECT pg_try_advisory_lock($1)", &p, "leader lock");
    if (!rc && PQntuples(q) == 1 && strcmp(PQgetvalue(q, 0, 0), "t") == 0) s->leading = 1;
    PQclear(q);
    *leading = s->leading;
    return rc;
}

const cnd_rstate_ops_t cnd_rstate_pg_ops = {
    "postgresql",         s_pg_begin,          s_pg_commit,
    s_pg_rollback,        s_pg_close,          s_pg_rollout_insert,
    s_pg_rollout_get,     s_pg_rollout_update, s_pg_rollouts,
    s_pg_rollouts_loaded, s_pg_manifest_put,   s_pg_manifest_get,
    s_pg_device_put,      s_pg_devices,        s_pg_busy_devices,
    s_pg_latency,         s_pg_latency_add,    s_pg_fleet_enroll,
    s_pg_fleet_get,       s_pg_fleet_by_curve, s_pg_fleet_put_profile,
    s_pg_fleet_list,      s_pg_fleet_count,    s_pg_fleet_revoke,
    s_pg_fleet_revoked,   s_pg_lead,           s_pg_lead_check,
    s_pg_device_changes,  s_pg_presence_put,   s_pg_presence_since,
};
