/*
 * coord_autoc.c: candidates, evaluation sums and the pick of a federated AutoCompress job (see
 * coord_autoc.h). Every count stored here is a SecAgg+ sum decoded by coord_round.c; nothing
 * here ever sees one site's numbers.
 */
#include "coord_autoc.h"
#include "coord_quant.h"
#include "registry.h"
#include "autocompress_fed.h"
#include "db.h"
#include "digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const s_steps[] = {
    /* 0 -> 1 */
    "CREATE TABLE autoc_candidate("
    "  job INTEGER NOT NULL REFERENCES job(id), idx INTEGER NOT NULL, name TEXT NOT NULL,"
    "  size INTEGER NOT NULL, digest BLOB NOT NULL, blob BLOB NOT NULL,"
    "  alive INTEGER NOT NULL DEFAULT 1, validated INTEGER NOT NULL DEFAULT 0,"
    "  correct INTEGER NOT NULL DEFAULT 0, rounds INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(job, idx));"
    "CREATE TABLE autoc_result("
    "  job INTEGER NOT NULL, round INTEGER NOT NULL, idx INTEGER NOT NULL,"
    "  validated INTEGER NOT NULL, correct INTEGER NOT NULL, PRIMARY KEY(job, round, idx));",
};
static const cnd_db_schema_t s_schema = {"autocompress", s_steps, 1, NULL};

int cnd_autoc_init(sqlite3 *db)
{
    int own, rc = cnd_db_begin(db, &own);
    if (rc) return rc;
    return cnd_db_end(db, own, cnd_db_migrate(db, &s_schema));
}

int cnd_autoc_is_job(cnd_cstore_t *s, int64_t job)
{
    sqlite3 *db = cnd_cstore_db(s);
    if (!cnd_db_has_table(db, "autoc_candidate")) return 0;
    sqlite3_stmt *st = NULL;
    if (cnd_db_prep(db, &st, "SELECT 1 FROM autoc_candidate WHERE job = ? LIMIT 1")) {
        cnd_err_clear();
        return 0;
    }
    sqlite3_bind_int64(st, 1, job);
    int yes = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return yes;
}

int cnd_autoc_put(cnd_cstore_t *s, int64_t job, uint32_t idx, const char *name, const uint8_t *blob,
                  size_t len)
{
    sqlite3 *db = cnd_cstore_db(s);
    int rc = cnd_autoc_init(db);
    if (rc) return rc;
    uint8_t dig[32];
    cnd_sha256(dig, blob, len);
    sqlite3_stmt *st = NULL;
    if ((rc = cnd_db_prep(db, &st,
                          "INSERT INTO autoc_candidate(job, idx, name, size, digest, blob) "
                          "VALUES(?, ?, ?, ?, ?, ?)")))
        return rc;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, idx);
    sqlite3_bind_text(st, 3, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)len);
    sqlite3_bind_blob(st, 5, dig, 32, SQLITE_TRANSIENT);
    sqlite3_bind_blob64(st, 6, blob, len, SQLITE_STATIC);
    return cnd_db_done(db, st, "storing a candidate");
}

static void s_row(cnd_autoc_cand_t *c, sqlite3_stmt *st)
{
    memset(c, 0, sizeof *c);
    c->idx = (uint32_t)sqlite3_column_int64(st, 0);
    const unsigned char *t = sqlite3_column_text(st, 1);
    snprintf(c->name, sizeof c->name, "%s", t ? (const char *)t : "");
    c->size = (uint64_t)sqlite3_column_int64(st, 2);
    if (sqlite3_column_bytes(st, 3) == 32) memcpy(c->digest, sqlite3_column_blob(st, 3), 32);
    c->alive = sqlite3_column_int(st, 4);
    c->validated = (uint64_t)sqlite3_column_int64(st, 5);
    c->correct = (uint64_t)sqlite3_column_int64(st, 6);
    c->rounds = (uint32_t)sqlite3_column_int64(st, 7);
}

int cnd_autoc_list(cnd_cstore_t *s, int64_t job, cnd_autoc_cand_t **list, size_t *n)
{
    *list = NULL;
    *n = 0;
    sqlite3 *db = cnd_cstore_db(s);
    if (!cnd_db_has_table(db, "autoc_candidate")) return 0;
    sqlite3_stmt *st = NULL;
    int rc = cnd_db_prep(db, &st,
                         "SELECT idx, name, size, digest, alive, validated, correct, rounds "
                         "FROM autoc_candidate WHERE job = ? ORDER BY idx");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, job);
    size_t cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            cnd_autoc_cand_t *p = realloc(*list, nc * sizeof *p);
            if (!p) {
                sqlite3_finalize(st);
                free(*list);
                *list = NULL;
                *n = 0;
                return cnd_errf(CND_ENOMEM, "listing candidates: out of memory");
            }
            *list = p;
            cap = nc;
        }
        s_row(&(*list)[(*n)++], st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(*list);
        *list = NULL;
        *n = 0;
        return cnd_db_err(db, "listing candidates");
    }
    return 0;
}

int cnd_autoc_bundle_alive(cnd_cstore_t *s, int64_t job, uint8_t **bundle, size_t *len,
                           uint32_t *ids, uint32_t *k)
{
    *bundle = NULL;
    *len = 0;
    *k = 0;
    sqlite3 *db = cnd_cstore_db(s);
    sqlite3_stmt *st = NULL;
    int rc = cnd_db_prep(db, &st,
                         "SELECT idx, blob FROM autoc_candidate WHERE job = ? AND alive = 1 "
                         "ORDER BY idx LIMIT ?");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int(st, 2, CND_AUTOC_FED_MAX);
    uint8_t *blobs[CND_AUTOC_FED_MAX] = {0};
    size_t lens[CND_AUTOC_FED_MAX];
    uint32_t n = 0;
    while (!rc && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = 0;
        ids[n] = (uint32_t)sqlite3_column_int64(st, 0);
        lens[n] = (size_t)sqlite3_column_bytes(st, 1);
        blobs[n] = malloc(lens[n] ? lens[n] : 1);
        if (!blobs[n]) {
            rc = cnd_errf(CND_ENOMEM, "candidate bundle: out of memory");
            break;
        }
        memcpy(blobs[n], sqlite3_column_blob(st, 1), lens[n]);
        n++;
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = cnd_db_err(db, "reading candidates");
    sqlite3_finalize(st);
    if (!rc && n == 0) rc = cnd_errf(CND_ENOTFOUND, "job %lld: no candidate left", (long long)job);
    if (!rc) rc = cnd_autoc_fed_bundle(bundle, len, (const uint8_t *const *)blobs, lens, n);
    if (!rc) *k = n;
    for (uint32_t i = 0; i < n; i++) free(blobs[i]);
    return rc;
}

/* Better first: higher accuracy, then the smaller file, then the lower index. */
static int s_cmp(const void *pa, const void *pb)
{
    const cnd_autoc_cand_t *a = pa, *b = pb;
    /* a.correct / a.validated vs b.correct / b.validated, exactly (no division) */
    unsigned __int128 l = (unsigned __int128)a->correct * (b->validated ? b->validated : 1);
    unsigned __int128 r = (unsigned __int128)b->correct * (a->validated ? a->validated : 1);
    if (!a->validated != !b->validated) return a->validated ? -1 : 1;
    if (l != r) return l > r ? -1 : 1;
    if (a->size != b->size) return a->size < b->size ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static int s_exec_bind(sqlite3 *db, const char *sql, int64_t job, uint32_t idx, int64_t a,
                       int64_t b, const char *what)
{
    sqlite3_stmt *st = NULL;
    int rc = cnd_db_prep(db, &st, sql);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, a);
    sqlite3_bind_int64(st, 2, b);
    sqlite3_bind_int64(st, 3, job);
    sqlite3_bind_int64(st, 4, idx);
    return cnd_db_done(db, st, what);
}

/* Keeps the better ceil(alive/2) of the job's alive candidates. */
static int s_halve(cnd_cstore_t *s, int64_t job)
{
    cnd_autoc_cand_t *l = NULL;
    size_t n = 0, na = 0;
    int rc = cnd_autoc_list(s, job, &l, &n);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++)
        if (l[i].alive) l[na++] = l[i];
    qsort(l, na, sizeof *l, s_cmp);
    sqlite3 *db = cnd_cstore_db(s);
    for (size_t i = (na + 1) / 2; !rc && i < na; i++)
        rc = s_exec_bind(db, "UPDATE autoc_candidate SET alive = ?1 WHERE job = ?3 AND idx = ?4",
                         job, l[i].idx, 0, 0, "halving the candidates");
    free(l);
    return rc;
}

/* A round's sums are inserted, never replaced: a second finish of one round (which the round
 * machine never does) fails on the primary key instead of counting a round twice. */
int cnd_autoc_record(cnd_cstore_t *s, int64_t job, uint32_t round, const uint32_t *ids, uint32_t k,
                     uint64_t validated, const uint64_t *correct, int halve)
{
    sqlite3 *db = cnd_cstore_db(s);
    int own, rc = cnd_db_begin(db, &own);
    for (uint32_t i = 0; !rc && i < k; i++) {
        sqlite3_stmt *st = NULL;
        if ((rc = cnd_db_prep(db, &st,
                              "INSERT INTO autoc_result(job, round, idx, validated, "
                              "correct) VALUES(?, ?, ?, ?, ?)")))
            break;
        sqlite3_bind_int64(st, 1, job);
        sqlite3_bind_int64(st, 2, round);
        sqlite3_bind_int64(st, 3, ids[i]);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)validated);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)correct[i]);
        if ((rc = cnd_db_done(db, st, "recording an evaluation"))) break;
        rc = s_exec_bind(db,
                         "UPDATE autoc_candidate SET validated = validated + ?1, "
                         "correct = correct + ?2, rounds = rounds + 1 WHERE job = ?3 AND idx = ?4",
                         job, ids[i], (int64_t)validated, (int64_t)correct[i],
                         "recording an evaluation");
    }
    if (!rc && halve) rc = s_halve(s, job);
    return cnd_db_end(db, own, rc);
}

int cnd_autoc_result(cnd_cstore_t *s, int64_t job, uint32_t round, uint32_t idx,
                     uint64_t *validated, uint64_t *correct)
{
    sqlite3 *db = cnd_cstore_db(s);
    sqlite3_stmt *st = NULL;
    int rc = cnd_db_prep(db, &st,
                         "SELECT validated, correct FROM autoc_result WHERE job = ? AND round = ? "
                         "AND idx = ?");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, round);
    sqlite3_bind_int64(st, 3, idx);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *validated = (uint64_t)sqlite3_column_int64(st, 0);
        *correct = (uint64_t)sqlite3_column_int64(st, 1);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? CND_ENOTFOUND : cnd_db_err(db, "reading an evaluation");
    }
    sqlite3_finalize(st);
    return rc;
}

int cnd_autoc_pick(cnd_cstore_t *s, int64_t job, uint32_t *idx)
{
    cnd_autoc_cand_t *l = NULL;
    size_t n = 0, na = 0;
    int rc = cnd_autoc_list(s, job, &l, &n);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++)
        if (l[i].alive && l[i].validated) l[na++] = l[i];
    if (na) {
        qsort(l, na, sizeof *l, s_cmp);
        *idx = l[0].idx;
    }
    free(l);
    return na ? 0 : cnd_errf(CND_ENOTFOUND, "job %lld: no candidate was evaluated", (long long)job);
}

static int s_blob(cnd_cstore_t *s, int64_t job, uint32_t idx, uint8_t **blob, size_t *len)
{
    sqlite3 *db = cnd_cstore_db(s);
    sqlite3_stmt *st = NULL;
    int rc = cnd_db_prep(db, &st, "SELECT blob FROM autoc_candidate WHERE job = ? AND idx = ?");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, idx);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        *len = (size_t)sqlite3_column_bytes(st, 0);
        *blob = malloc(*len ? *len : 1);
        rc = *blob ? 0 : cnd_errf(CND_ENOMEM, "reading a candidate: out of memory");
        if (*blob) memcpy(*blob, sqlite3_column_blob(st, 0), *len);
    } else {
        rc = rc == SQLITE_DONE ? cnd_errf(CND_ENOTFOUND, "candidate %u: none", idx)
                               : cnd_db_err(db, "reading a candidate");
    }
    sqlite3_finalize(st);
    return rc;
}

/* A .cnd pick: float model version 1 of the job with a model.version entry. */
static int s_store_float(cnd_coord_t *c, int64_t job, uint32_t last_round, const uint8_t *blob,
                         size_t len, double acc, uint64_t samples)
{
    cnd_model_rec_t mv;
    memset(&mv, 0, sizeof mv);
    mv.job = job;
    mv.version = 1;
    mv.round = last_round;
    snprintf(mv.format, sizeof mv.format, "float");
    mv.accuracy = acc;
    int rc = cnd_cstore_model_put(c->store, &mv, blob, len);
    if (rc) return rc;
    char jid[32];
    snprintf(jid, sizeof jid, "%lld", (long long)job);
    cnd_audit_model_version_t e = {.version = "v1",
                                   .job = jid,
                                   .round = last_round,
                                   .format = "float",
                                   .size = len,
                                   .has_accuracy = 1,
                                   .accuracy = acc,
                                   .samples = (int64_t)samples,
                                   .digest = mv.digest};
    return cnd_audit_log_model_version(c->audit, c->fpr, &e);
}

/* A .cndq pick: version 1 of the job's artifact in the registry (validated, self-tested, its
 * manifest signed; model.version and artifact.sign entries), as a job's frozen artifact is. */
static int s_store_artifact(cnd_coord_t *c, int64_t job, uint32_t last_round, const uint8_t *blob,
                            size_t len, double acc)
{
    if (!c->id) return cnd_errf(CND_ESTATE, "publishing the pick needs the coordinator's key");
    char name[64], jid[32];
    cnd_fedq_name(name, sizeof name, job);
    snprintf(jid, sizeof jid, "%lld", (long long)job);
    cnd_publish_opts_t o = {.model = name,
                            .version = 1,
                            .accuracy = acc,
                            .job = jid,
                            .expires_s = 365LL * 86400,
                            .round = last_round};
    int64_t aid = 0;
    return cnd_registry_publish(cnd_cstore_db(c->store), c->audit, c->id, c->fpr, blob, len, &o,
                                &aid, NULL, NULL);
}

int cnd_autoc_finish(cnd_coord_t *c, int64_t job, uint32_t last_round, uint32_t *picked,
                     double *accuracy)
{
    uint32_t idx = 0;
    int rc = cnd_autoc_pick(c->store, job, &idx);
    if (rc) return rc;
    cnd_autoc_cand_t *l = NULL, *p = NULL;
    size_t n = 0;
    if ((rc = cnd_autoc_list(c->store, job, &l, &n))) return rc;
    for (size_t i = 0; i < n; i++)
        if (l[i].idx == idx) p = &l[i];
    uint8_t *blob = NULL;
    size_t len = 0;
    rc = p ? s_blob(c->store, job, idx, &blob, &len) : CND_ENOTFOUND;
    double acc = p && p->validated ? (double)p->correct / (double)p->validated : -1;
    if (!rc && len >= 4 && memcmp(blob, "CNDQ", 4) == 0)
        rc = s_store_artifact(c, job, last_round, blob, len, acc);
    else if (!rc)
        rc = s_store_float(c, job, last_round, blob, len, acc, p->validated);
    if (!rc) {
        *picked = idx;
        *accuracy = acc;
    }
    free(blob);
    free(l);
    return rc;
}
