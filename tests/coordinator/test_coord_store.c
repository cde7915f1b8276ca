/*
 * test_coord_store.c: the coordinator's SQLite state (coordinator/coord_store.c), without
 * processes: schema creation and reopening, identity enrollment rules (names, duplicate names
 * and keys, revocation, lookups by CurveZMQ key), jobs with their teacher and model versions
 * (digests checked on read, a changed blob detected), rounds (insert, phase updates, the round
 * in flight, next round and attempt), server momentum. (The recipe is tests/proto/test_job.c,
 * FedAvg tests/coordinator/test_fedavg.c, the agent's INI tests/agent/test_agent_config.c.)
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
    for (size_t i = 0; i < n; i++) cnd_ident_rec_free(&l[i]);
    free(l);
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
    cnd_rsite_t sites[2] = {{0, "site-a", "aa", 0, 0, 0, 0, 0}, {1, "site-c", "cc", 0, 0, 0, 0, 0}};
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
    sites[1].accuracy = 0.75;
    sites[1].samples = 123;
    snprintf(r.phase, sizeof r.phase, "unmask");
    r.t_phase[2] = 1.5;
    CHECK_EQ_INT(cnd_cstore_round_update(s, &r), 0);
    cnd_round_rec_t o;
    CHECK_EQ_INT(cnd_cstore_round_open(s, 1, &o), 0);
    CHECK(strcmp(o.phase, "unmask") == 0);
    CHECK_EQ_INT(o.n, 2);
    if (o.sites) {
        CHECK_EQ_INT(o.sites[1].status, 0x7);
        CHECK_EQ_INT(o.sites[1].samples, 123);
        CHECK_NEAR(o.sites[1].accuracy, 0.75, 0);
    }
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
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", s_dir);
    return check_result("test_coord_store");
}
