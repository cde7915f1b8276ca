/*
 * test_coord_store.c: the coordinator's SQLite state (coordinator/coord_store.c), without
 * processes: schema creation and reopening, identity enrollment rules (names, duplicate names
 * and keys, revocation, lookups by CurveZMQ key), jobs with their teacher and model versions
 * (digests checked on read, a changed blob detected), rounds (insert, phase updates, the round
 * in flight, next round and attempt), server momentum; renewal and key rotation (the
 * superseded certificate kept, a retired key never admitted again, schema 2 files migrated). (The
 * recipe is tests/proto/test_job.c, FedAvg tests/coordinator/test_fedavg.c, the agent's INI
 * tests/agent/test_agent_config.c.)
 */
#include "check.h"
#include "coord_store.h"
#include "digest.h"
#include "fileio.h"
#include "identity.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char s_dir[256];

static void test_identities(cnd_cstore_t *s)
{
    uint8_t pk[3][32];
    for (int i = 0; i < 3; i++) {
        cnd_identity_t *id = NULL;
        CHECK_EQ_INT(cnd_identity_generate(&id), 0);
        memcpy(pk[i], cnd_identity_pk(id), 32);
        cnd_identity_destroy(&id);
    }
    const uint8_t cert[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    CHECK_EQ_INT(cnd_cstore_enroll(s, "site-a", "site", pk[0], NULL, 0), 0);
    CHECK_EQ_INT(cnd_cstore_enroll(s, "site-b", "site", pk[1], cert, sizeof cert), 0);
    CHECK_EQ_INT(cnd_cstore_enroll(s, "site-a", "site", pk[2], NULL, 0), CND_EEXIST);
    CHECK_EQ_INT(cnd_cstore_enroll(s, "site-c", "site", pk[0], NULL, 0), CND_EEXIST);
    CHECK(strstr(cnd_err_detail(), "site-a") != NULL);
    CHECK_EQ_INT(cnd_cstore_enroll(s, "-bad", "site", pk[2], NULL, 0), CND_EINVAL);
    CHECK_EQ_INT(cnd_cstore_enroll(s, "a b", "site", pk[2], NULL, 0), CND_EINVAL);
    CHECK_EQ_INT(cnd_cstore_enroll(s, "site-c", "robot", pk[2], NULL, 0), CND_EINVAL);
    const uint8_t notder[] = {0x31, 0x00};
    CHECK_EQ_INT(cnd_cstore_enroll(s, "site-c", "site", pk[2], notder, sizeof notder), CND_EINVAL);
    uint8_t zero[32] = {0};
    zero[0] = 2; /* not a point on the curve: no X25519 form */
    CHECK(cnd_cstore_enroll(s, "site-c", "site", zero, NULL, 0) != 0);

    cnd_ident_rec_t r;
    uint8_t curve[32];
    CHECK_EQ_INT(cnd_pubkey_to_curve(curve, pk[1]), 0);
    CHECK_EQ_INT(cnd_cstore_ident_by_curve(s, curve, &r), 0);
    CHECK(strcmp(r.name, "site-b") == 0);
    CHECK_EQ_INT(r.cert_len, sizeof cert);
    CHECK(r.cert && memcmp(r.cert, cert, sizeof cert) == 0);
    char fpr[65];
    CHECK(strcmp(r.fpr, cnd_pubkey_fingerprint(fpr, pk[1])) == 0);
    CHECK_EQ_INT(r.revoked_ms, 0);
    cnd_ident_rec_free(&r);
    CHECK_EQ_INT(cnd_cstore_revoke(s, "site-b", "lost laptop"), 0);
    CHECK_EQ_INT(cnd_cstore_revoke(s, "site-b", "again"), CND_ESTATE);
    CHECK_EQ_INT(cnd_cstore_revoke(s, "nobody", "x"), CND_ENOTFOUND);
    CHECK_EQ_INT(cnd_cstore_ident_by_name(s, "site-b", &r), 0);
    CHECK(r.revoked_ms > 0);
    CHECK(strcmp(r.reason, "lost laptop") == 0);
    cnd_ident_rec_free(&r);
    CHECK_EQ_INT(cnd_pubkey_to_curve(curve, pk[2]), 0);
    CHECK_EQ_INT(cnd_cstore_ident_by_curve(s, curve, &r), CND_ENOTFOUND);
    cnd_ident_rec_t *l = NULL;
    size_t n = 0;
    CHECK_EQ_INT(cnd_cstore_idents(s, &l, &n), 0);
    CHECK_EQ_INT(n, 2);
    for (size_t i = 0; i < n; i++) CHECK_EQ_INT(l[i].renewed_ms, 0);
    for (size_t i = 0; i < n; i++) cnd_ident_rec_free(&l[i]);
    free(l);
}

static void s_key(uint8_t pk[32])
{
    cnd_identity_t *id = NULL;
    CHECK_EQ_INT(cnd_identity_generate(&id), 0);
    memcpy(pk, cnd_identity_pk(id), 32);
    cnd_identity_destroy(&id);
}

static int s_history(cnd_cstore_t *s, const char *name, const char *kind)
{
    sqlite3_stmt *st = NULL;
    int n = -1;
    if (sqlite3_prepare_v2(cnd_cstore_db(s),
                           "SELECT count(*) FROM identity_history WHERE name = ?1 AND kind = ?2",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    return n;
}

/* Renewal (same key, new certificate) and rotation (new key): the row changes in place, the
 * previous certificate and key go to the history, the old key is found no more and is refused
 * for ever after; refusals change nothing. */
static void test_renewal(cnd_cstore_t *s)
{
    uint8_t k1[32], k2[32], k3[32], curve[32];
    s_key(k1);
    s_key(k2);
    s_key(k3);
    const uint8_t c1[] = {0x30, 0x03, 0x02, 0x01, 0x01}, c2[] = {0x30, 0x03, 0x02, 0x01, 0x02},
                  c3[] = {0x30, 0x03, 0x02, 0x01, 0x03}, c4[] = {0x30, 0x03, 0x02, 0x01, 0x04};
    CHECK_EQ_INT(cnd_cstore_enroll(s, "ren-a", "site", k1, c1, sizeof c1), 0);
    int rot = -1;
    /* renewal: same key */
    CHECK_EQ_INT(cnd_cstore_renew(s, "ren-a", k1, c2, sizeof c2, &rot), 0);
    CHECK_EQ_INT(rot, 0);
    cnd_ident_rec_t r;
    CHECK_EQ_INT(cnd_cstore_ident_by_name(s, "ren-a", &r), 0);
    CHECK(r.cert_len == sizeof c2 && memcmp(r.cert, c2, sizeof c2) == 0);
    CHECK(r.renewed_ms > 0 && r.enrolled_ms <= r.renewed_ms);
    cnd_ident_rec_free(&r);
    CHECK_EQ_INT(s_history(s, "ren-a", "renewal"), 1);
    /* the same certificate again, another identity's key, a bad certificate, unknown name */
    CHECK_EQ_INT(cnd_cstore_renew(s, "ren-a", k1, c2, sizeof c2, &rot), CND_EEXIST);
    CHECK_EQ_INT(cnd_cstore_enroll(s, "ren-b", "site", k3, c4, sizeof c4), 0);
    CHECK_EQ_INT(cnd_cstore_renew(s, "ren-a", k3, c3, sizeof c3, &rot), CND_EEXIST);
    CHECK(strstr(cnd_err_detail(), "ren-b") != NULL);
    const uint8_t notder[] = {0x31, 0x00};
    CHECK_EQ_INT(cnd_cstore_renew(s, "ren-a", k2, notder, sizeof notder, &rot), CND_EINVAL);
    CHECK_EQ_INT(cnd_cstore_renew(s, "nobody", k2, c3, sizeof c3, &rot), CND_ENOTFOUND);
    CHECK_EQ_INT(s_history(s, "ren-a", "renewal"), 1);
    /* rotation: new key; the old one is not found by the ZAP lookup any more */
    CHECK_EQ_INT(cnd_cstore_renew(s, "ren-a", k2, c3, sizeof c3, &rot), 0);
    CHECK_EQ_INT(rot, 1);
    CHECK_EQ_INT(s_history(s, "ren-a", "rotation"), 1);
    CHECK_EQ_INT(cnd_pubkey_to_curve(curve, k1), 0);
    CHECK_EQ_INT(cnd_cstore_ident_by_curve(s, curve, &r), CND_ENOTFOUND);
    CHECK_EQ_INT(cnd_pubkey_to_curve(curve, k2), 0);
    CHECK_EQ_INT(cnd_cstore_ident_by_curve(s, curve, &r), 0);
    char fpr[65];
    CHECK(strcmp(r.name, "ren-a") == 0 && strcmp(r.fpr, cnd_pubkey_fingerprint(fpr, k2)) == 0);
    CHECK(memcmp(r.ed_pk, k2, 32) == 0 && r.cert_len == sizeof c3);
    cnd_ident_rec_free(&r);
    /* the retired key is never admitted again: not by enroll, not by renew */
    CHECK_EQ_INT(cnd_cstore_enroll(s, "ren-c", "site", k1, c1, sizeof c1), CND_EPERM);
    CHECK(strstr(cnd_err_detail(), "rotated out of 'ren-a'") != NULL);
    CHECK_EQ_INT(cnd_cstore_renew(s, "ren-a", k1, c4, sizeof c4, &rot), CND_EPERM);
    CHECK_EQ_INT(cnd_cstore_renew(s, "ren-b", k1, c1, sizeof c1, &rot), CND_EPERM);
    /* a revoked identity is not renewed */
    CHECK_EQ_INT(cnd_cstore_revoke(s, "ren-b", "gone"), 0);
    CHECK_EQ_INT(cnd_cstore_renew(s, "ren-b", k3, c1, sizeof c1, &rot), CND_ESTATE);
    /* inside the caller's transaction: a rollback undoes the renewal and its history row */
    CHECK_EQ_INT(cnd_cstore_begin(s), 0);
    CHECK_EQ_INT(cnd_cstore_renew(s, "ren-a", k2, c4, sizeof c4, &rot), 0);
    cnd_cstore_rollback(s);
    CHECK_EQ_INT(cnd_cstore_ident_by_name(s, "ren-a", &r), 0);
    CHECK(r.cert_len == sizeof c3 && memcmp(r.cert, c3, sizeof c3) == 0);
    cnd_ident_rec_free(&r);
    CHECK_EQ_INT(s_history(s, "ren-a", "renewal"), 1);
}

#define S_DROP_V4                                                                                  \
    "ALTER TABLE round DROP COLUMN samples; ALTER TABLE round DROP COLUMN validated;"              \
    "ALTER TABLE round DROP COLUMN correct; ALTER TABLE round DROP COLUMN loss_sum;"

/* A file at schema 3 (per-site metrics in round_site) is migrated to 4: its rounds keep their
 * sites' rows and get zero secure sums; a new round stores its sums. */
static void test_migration_3_to_4(void)
{
    char db[300];
    snprintf(db, sizeof db, "%s/v3.db", s_dir);
    cnd_cstore_t *s = NULL;
    CHECK_EQ_INT(cnd_cstore_open(&s, db, 1), 0);
    if (!s) return;
    int64_t id = 0;
    uint8_t t[16] = {1}, st[16] = {2};
    CHECK_EQ_INT(cnd_cstore_job_create(s, &id, "j", "{}", t, sizeof t, st, sizeof st), 0);
    CHECK_EQ_INT(sqlite3_exec(cnd_cstore_db(s),
                              S_DROP_V4 "INSERT INTO round(job, round, attempt, phase, outcome,"
                                        " params, qat, started_ms, phase_ms, n) VALUES(1, 1, 1,"
                                        " 'done', 'ok', zeroblob(68), 0, 1, 1, 1);"
                                        "INSERT INTO round_site(job, round, attempt, idx, name,"
                                        " fingerprint, status, accuracy, samples) VALUES(1, 1, 1,"
                                        " 0, 'a', 'aa', 7, 0.5, 10);"
                                        "UPDATE cnd_schema SET version = 3 WHERE component ="
                                        " 'coordinator'",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    cnd_cstore_close(&s);
    CHECK_EQ_INT(cnd_cstore_open_readonly(&s, db), CND_EFORMAT); /* read-only never migrates */
    CHECK_EQ_INT(cnd_cstore_open(&s, db, 0), 0);
    if (!s) return;
    cnd_round_rec_t *list = NULL;
    size_t n = 0;
    CHECK_EQ_INT(cnd_cstore_rounds(s, 1, &list, &n), 0);
    CHECK_EQ_INT(n, 1);
    if (n == 1) {
        CHECK_EQ_INT(list[0].samples, 0);
        CHECK_EQ_INT(list[0].sites[0].status, 7);
        list[0].samples = 99;
        list[0].correct = 3;
        CHECK_EQ_INT(cnd_cstore_round_update(s, &list[0]), 0);
    }
    for (size_t i = 0; i < n; i++) cnd_round_rec_free(&list[i]);
    free(list);
    CHECK_EQ_INT(cnd_cstore_rounds(s, 1, &list, &n), 0);
    if (n == 1) {
        CHECK_EQ_INT(list[0].samples, 99);
        CHECK_EQ_INT(list[0].correct, 3);
    }
    for (size_t i = 0; i < n; i++) cnd_round_rec_free(&list[i]);
    free(list);
    cnd_cstore_close(&s);
}

/* A file at schema 2 (before renewals) is migrated to 4 and keeps its identities. */
static void test_migration_2_to_3(void)
{
    char db[300];
    snprintf(db, sizeof db, "%s/v2.db", s_dir);
    cnd_cstore_t *s = NULL;
    CHECK_EQ_INT(cnd_cstore_open(&s, db, 1), 0);
    if (!s) return;
    uint8_t k[32];
    s_key(k);
    CHECK_EQ_INT(cnd_cstore_enroll(s, "old-site", "site", k, NULL, 0), 0);
    CHECK_EQ_INT(sqlite3_exec(cnd_cstore_db(s),
                              "DROP TABLE identity_history; ALTER TABLE identity DROP COLUMN "
                              "renewed_ms;" S_DROP_V4 "UPDATE cnd_schema SET version = 2 WHERE "
                              "component = 'coordinator'",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    cnd_cstore_close(&s);
    CHECK_EQ_INT(cnd_cstore_open_readonly(&s, db), CND_EFORMAT); /* read-only never migrates */
    CHECK_EQ_INT(cnd_cstore_open(&s, db, 0), 0);
    if (!s) return;
    cnd_ident_rec_t r;
    CHECK_EQ_INT(cnd_cstore_ident_by_name(s, "old-site", &r), 0);
    CHECK_EQ_INT(r.renewed_ms, 0);
    cnd_ident_rec_free(&r);
    const uint8_t c[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    int rot = -1;
    CHECK_EQ_INT(cnd_cstore_renew(s, "old-site", k, c, sizeof c, &rot), 0);
    CHECK_EQ_INT(s_history(s, "old-site", "renewal"), 1);
    cnd_cstore_close(&s);
}

static void test_jobs_models_rounds(cnd_cstore_t *s)
{
    uint8_t teacher[300], student[200];
    for (size_t i = 0; i < sizeof teacher; i++) teacher[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof student; i++) student[i] = (uint8_t)(i * 3 + 1);
    int64_t id = 0;
    CHECK_EQ_INT(cnd_cstore_job_create(s, &id, "j", "{\"x\":1}", teacher, sizeof teacher, student,
                                       sizeof student),
                 0);
    CHECK_EQ_INT(id, 1);
    int64_t next;
    CHECK_EQ_INT(cnd_cstore_job_next(s, &next), 0);
    CHECK_EQ_INT(next, 1);
    cnd_job_rec_t j;
    CHECK_EQ_INT(cnd_cstore_job_get(s, 1, &j), 0);
    CHECK(strcmp(j.state, "pending") == 0);
    CHECK(j.has_teacher);
    uint8_t d[32];
    cnd_sha256(d, teacher, sizeof teacher);
    CHECK(memcmp(d, j.teacher_digest, 32) == 0);
    cnd_job_rec_free(&j);
    uint8_t *blob = NULL;
    size_t len = 0;
    CHECK_EQ_INT(cnd_cstore_job_teacher(s, 1, &blob, &len), 0);
    CHECK(len == sizeof teacher && memcmp(blob, teacher, len) == 0);
    free(blob);

    /* versions: the latest, a specific one, and a blob changed behind the store's back */
    cnd_model_rec_t m;
    memset(&m, 0, sizeof m);
    m.job = 1;
    m.version = 1;
    m.round = 1;
    snprintf(m.format, sizeof m.format, "float");
    m.accuracy = 0.5;
    student[0] ^= 1;
    CHECK_EQ_INT(cnd_cstore_model_put(s, &m, student, sizeof student), 0);
    cnd_model_rec_t g;
    CHECK_EQ_INT(cnd_cstore_model_latest(s, 1, "float", &g, &blob, &len), 0);
    CHECK_EQ_INT(g.version, 1);
    CHECK(len == sizeof student && memcmp(blob, student, len) == 0);
    free(blob);
    cnd_model_rec_free(&g);
    CHECK_EQ_INT(cnd_cstore_model_put(s, &m, student, sizeof student), CND_EDB); /* same key */
    CHECK_EQ_INT(cnd_cstore_model_latest(s, 1, "int8", &g, NULL, NULL), CND_ENOTFOUND);
    CHECK_EQ_INT(sqlite3_exec(cnd_cstore_db(s),
                              "UPDATE model SET blob = zeroblob(200) WHERE version = 0", NULL, NULL,
                              NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(cnd_cstore_model_get(s, 1, 0, "float", &g, &blob, &len), CND_ECORRUPT);
    CHECK(blob == NULL);

    /* rounds */
    uint32_t rn, at;
    CHECK_EQ_INT(cnd_cstore_round_next(s, 1, &rn, &at), 0);
    CHECK_EQ_INT(rn, 1);
    CHECK_EQ_INT(at, 1);
    cnd_rsite_t sites[2] = {{0, "site-a", "aa", 0, 0}, {1, "site-c", "cc", 0, 0}};
    cnd_round_rec_t r;
    memset(&r, 0, sizeof r);
    r.job = 1;
    r.round = 1;
    r.attempt = 1;
    snprintf(r.phase, sizeof r.phase, "advertise");
    r.n = 2;
    r.sites = sites;
    r.model_version = -1;
    CHECK_EQ_INT(cnd_cstore_round_insert(s, &r), 0);
    sites[1].status = 0x7;
    sites[1].train_ms = 321;
    r.samples = 123;
    r.validated = 40;
    r.correct = 30;
    r.loss_sum = 12.5;
    snprintf(r.phase, sizeof r.phase, "unmask");
    r.t_phase[2] = 1.5;
    CHECK_EQ_INT(cnd_cstore_round_update(s, &r), 0);
    cnd_round_rec_t o;
    CHECK_EQ_INT(cnd_cstore_round_open(s, 1, &o), 0);
    CHECK(strcmp(o.phase, "unmask") == 0);
    CHECK_EQ_INT(o.n, 2);
    if (o.sites) {
        CHECK_EQ_INT(o.sites[1].status, 0x7);
        CHECK_EQ_INT(o.sites[1].train_ms, 321);
    }
    CHECK_EQ_INT(o.samples, 123);
    CHECK_EQ_INT(o.validated, 40);
    CHECK_EQ_INT(o.correct, 30);
    CHECK_NEAR(o.loss_sum, 12.5, 0);
    CHECK_NEAR(o.t_phase[2], 1.5, 0);
    cnd_round_rec_free(&o);
    /* restarted: the next attempt of the same round */
    snprintf(r.outcome, sizeof r.outcome, "restarted");
    CHECK_EQ_INT(cnd_cstore_round_update(s, &r), 0);
    CHECK_EQ_INT(cnd_cstore_round_open(s, 1, &o), CND_ENOTFOUND);
    CHECK_EQ_INT(cnd_cstore_round_next(s, 1, &rn, &at), 0);
    CHECK_EQ_INT(rn, 1);
    CHECK_EQ_INT(at, 2);
    r.attempt = 2;
    snprintf(r.outcome, sizeof r.outcome, "failed");
    CHECK_EQ_INT(cnd_cstore_round_insert(s, &r), 0);
    CHECK_EQ_INT(cnd_cstore_round_update(s, &r), 0);
    CHECK_EQ_INT(cnd_cstore_round_next(s, 1, &rn, &at), 0);
    CHECK_EQ_INT(rn, 2); /* a failed round counts: the next one starts */
    CHECK_EQ_INT(at, 1);
    r.attempt = 9;
    CHECK_EQ_INT(cnd_cstore_round_update(s, &r), CND_ENOTFOUND);

    float mo[4] = {1, 2, 3, 4}, back[4];
    CHECK_EQ_INT(cnd_cstore_momentum_get(s, 1, back, 4), CND_ENOTFOUND);
    CHECK_EQ_INT(cnd_cstore_momentum_put(s, 1, mo, 4), 0);
    CHECK_EQ_INT(cnd_cstore_momentum_get(s, 1, back, 4), 0);
    CHECK(memcmp(mo, back, sizeof mo) == 0);
    CHECK_EQ_INT(cnd_cstore_momentum_get(s, 1, back, 3), CND_ECORRUPT);
    CHECK_EQ_INT(cnd_cstore_job_set_state(s, 1, "completed", NULL), 0);
    CHECK_EQ_INT(cnd_cstore_job_next(s, &next), CND_ENOTFOUND);
    CHECK_EQ_INT(cnd_cstore_job_set_state(s, 7, "completed", NULL), CND_ENOTFOUND);
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    snprintf(s_dir, sizeof s_dir, "%s/cnd-coordstore-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    CHECK(mkdtemp(s_dir) != NULL);
    char db[300];
    snprintf(db, sizeof db, "%s/c.db", s_dir);
    cnd_cstore_t *s = NULL;
    CHECK_EQ_INT(cnd_cstore_open(&s, db, 0), CND_EIO); /* must exist unless created */
    CHECK_EQ_INT(cnd_cstore_open(&s, db, 1), 0);
    if (s) {
        test_identities(s);
        test_renewal(s);
        test_jobs_models_rounds(s);
        cnd_cstore_close(&s);
        cnd_cstore_close(&s);
    }
    /* reopening keeps everything and the schema version */
    CHECK_EQ_INT(cnd_cstore_open(&s, db, 0), 0);
    if (s) {
        cnd_ident_rec_t r;
        CHECK_EQ_INT(cnd_cstore_ident_by_name(s, "site-a", &r), 0);
        cnd_ident_rec_free(&r);
        /* durable commits (an audit entry written before a send survives a power cut) */
        sqlite3_stmt *st = NULL;
        CHECK(sqlite3_prepare_v2(cnd_cstore_db(s), "PRAGMA synchronous", -1, &st, NULL) == 0);
        CHECK(st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 2);
        sqlite3_finalize(st);
        CHECK_EQ_INT(sqlite3_exec(cnd_cstore_db(s),
                                  "UPDATE cnd_schema SET version = 99 WHERE component = "
                                  "'coordinator'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
        cnd_cstore_close(&s);
    }
    CHECK_EQ_INT(cnd_cstore_open(&s, db, 0), CND_EFORMAT); /* a newer schema is refused */
    test_migration_2_to_3();
    test_migration_3_to_4();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", s_dir);
    return check_result("test_coord_store");
}
