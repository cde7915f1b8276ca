/*
 * test_registry.c: the artifact registry (coordinator/registry/registry.h), the one store and
 * signer of device artifacts:
 *
 *   - the sequence rule: per model name, every manifest (publication, offer, rollback) one above
 *     the last; the same bytes are stored once (CND_EEXIST); a publication that fails part-way
 *     leaves nothing behind in the caller's transaction, not even a spent sequence;
 *   - the two publishers interleaved on one coordinator directory: a federated job's end
 *     (cnd_fedq_publish, the coordinator) and `condenser rollout publish` (a separate process),
 *     under the job's name: sequences strictly increase in the order they were signed, and an
 *     edge device (deploy/edge.c, its real directory store) installs each in turn, refuses a
 *     replayed older one and accepts a signed rollback;
 *   - two processes publishing under one name at the same time: no sequence twice, none lost;
 *   - files from before the registry: the rollout engine's artifacts (ids kept, so rollout rows
 *     still resolve) and sequence counters, and the manifests a coordinator signed at a job's
 *     end in its model table, are adopted whichever of the coordinator and the rollout engine
 *     opens the file first; the next sequence of each name is above all of them; `job export`
 *     still finds the job's old artifact.
 */
#include "check.h"
#include "clock.h"
#include "coord_quant.h"
#include "coord_store.h"
#include "db.h"
#include "digest.h"
#include "edge.h"
#include "federation_fixture.h"
#include "fileio.h"
#include "fleet_testutil.h"
#include "manifest.h"
#include "modelfile.h"
#include "registry.h"
#include "rollout_serve.h"
#include "rollout_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char s_root[256];

static uint64_t s_seq_of(const uint8_t *m, size_t len)
{
    cnd_manifest_t mf;
    CHECK(cnd_manifest_decode_signed(&mf, m, len) == 0);
    return mf.sequence;
}

static int64_t s_count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void s_rmrf(const char *dir)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "cleanup of %s failed\n", dir);
}

/* --- the rule ------------------------------------------------------------------------------- */

static void test_rule(void)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/rule", s_root);
    CHECK(cnd_rollout_dir_init(dir) == 0);
    cnd_rollout_dir_t d;
    CHECK(cnd_rollout_dir_open(&d, dir, 1) == 0);
    uint8_t *a[4];
    size_t l[4];
    for (int i = 0; i < 4; i++) CHECK(fleet_mkart(&a[i], &l[i], 0, 8, 100 + (uint64_t)i) == 0);
    cnd_publish_opts_t o = {"fm", 0, NULL, NULL, -1, NULL, NULL, 0};
    int64_t id[4] = {0};
    uint8_t *m = NULL;
    size_t ml = 0;
    /* version 0 is a version (a job's initial student) */
    CHECK(cnd_registry_publish(d.db, d.audit, d.id, d.fpr, a[0], l[0], &o, &id[0], &m, &ml) == 0);
    CHECK_EQ_INT(s_seq_of(m, ml), 1);
    uint8_t *kept = NULL;
    size_t kl = 0;
    CHECK(cnd_registry_manifest(d.db, id[0], &kept, &kl) == 0);
    CHECK(kl == ml && kept && memcmp(kept, m, ml) == 0);
    free(kept);
    free(m);
    cnd_rartifact_t ra;
    CHECK(cnd_registry_get(d.db, id[0], &ra, NULL, NULL) == 0);
    uint64_t seq = 0;
    CHECK(cnd_registry_sign(d.db, d.audit, d.id, d.fpr, &ra, 1, 0, &m, &ml, &seq) == 0);
    CHECK_EQ_INT(seq, 2);
    CHECK_EQ_INT(s_seq_of(m, ml), 2);
    free(m);
    /* another name counts on its own */
    cnd_publish_opts_t ob = o;
    ob.model = "other";
    ob.version = 5;
    CHECK(cnd_registry_publish(d.db, d.audit, d.id, d.fpr, a[1], l[1], &ob, &id[1], &m, &ml) == 0);
    CHECK_EQ_INT(s_seq_of(m, ml), 1);
    free(m);
    o.version = 1;
    CHECK(cnd_registry_publish(d.db, d.audit, d.id, d.fpr, a[2], l[2], &o, &id[2], &m, &ml) == 0);
    CHECK_EQ_INT(s_seq_of(m, ml), 3);
    free(m);
    /* the same bytes again, under any name: refused, naming where they are */
    ob.version = 6;
    CHECK(cnd_registry_publish(d.db, d.audit, d.id, d.fpr, a[2], l[2], &ob, &id[3], NULL, NULL) ==
          CND_EEXIST);
    CHECK(strstr(cnd_err_detail(), "fm@1") != NULL);
    /* bad names change nothing */
    cnd_publish_opts_t bad = o;
    bad.model = "fm@2";
    CHECK(cnd_registry_publish(d.db, d.audit, d.id, d.fpr, a[3], l[3], &bad, &id[3], NULL, NULL) ==
          CND_EINVAL);
    bad.model = "";
    CHECK(cnd_registry_publish(d.db, d.audit, d.id, d.fpr, a[3], l[3], &bad, &id[3], NULL, NULL) ==
          CND_EINVAL);
    /* A publication that fails after its row was written (here: the audit refuses an entry
     * without an actor) leaves nothing in the caller's transaction, which then commits. */
    CHECK(sqlite3_exec(d.db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    o.version = 2;
    CHECK(cnd_registry_publish(d.db, d.audit, d.id, "", a[3], l[3], &o, &id[3], NULL, NULL) ==
          CND_EINVAL);
    CHECK(sqlite3_exec(d.db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_EQ_INT(s_count(d.db, "SELECT count(*) FROM registry_artifact"), 3);
    CHECK_EQ_INT(s_count(d.db, "SELECT seq FROM registry_seq WHERE model = 'fm'"), 3);
    CHECK(cnd_registry_publish(d.db, d.audit, d.id, d.fpr, a[3], l[3], &o, &id[3], &m, &ml) == 0);
    CHECK_EQ_INT(s_seq_of(m, ml), 4);
    free(m);
    /* a corrupt artifact is refused before anything is stored */
    a[3][l[3] / 2] ^= 1;
    o.version = 3;
    CHECK(cnd_registry_publish(d.db, d.audit, d.id, d.fpr, a[3], l[3], &o, &id[3], NULL, NULL) !=
          0);
    CHECK_EQ_INT(s_count(d.db, "SELECT count(*) FROM registry_artifact"), 4);
    cnd_rollout_dir_close(&d);
    for (int i = 0; i < 4; i++) free(a[i]);
}

/* --- the job's end and `rollout publish`, interleaved ------------------------------------- */

typedef struct {
    cnd_rollout_dir_t d; /* the directory's identity and audit key */
    cnd_coord_t c;       /* the coordinator's view of the same file */
    char dir[300];
} s_env_t;

/* A coordinator (its store, identity and audit log) over a `rollout init` directory, with job 1:
 * a small float student, public calibration samples. */
static void s_env_open(s_env_t *x, const char *name)
{
    memset(x, 0, sizeof *x);
    snprintf(x->dir, sizeof x->dir, "%s/%s", s_root, name);
    CHECK(cnd_rollout_dir_init(x->dir) == 0);
    CHECK(cnd_rollout_dir_open(&x->d, x->dir, 1) == 0);
    char db[400];
    snprintf(db, sizeof db, "%s/coordinator.db", x->dir);
    CHECK(cnd_cstore_open(&x->c.store, db, 0) == 0);
    x->c.id = x->d.id; /* borrowed: the directory's one key */
    snprintf(x->c.fpr, sizeof x->c.fpr, "%s", x->d.fpr);
    /* the same log, through the coordinator's own connection (as coord_admin.c opens it) */
    char origin[CND_AUDIT_MAX_ORIGIN + 1] = "";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(cnd_cstore_db(x->c.store),
                           "SELECT value FROM audit_meta WHERE key = 'origin'", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        snprintf(origin, sizeof origin, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    uint8_t sk[64];
    cnd_identity_secret_key(sk, x->d.id);
    CHECK(cnd_audit_open_db(&x->c.audit, cnd_cstore_db(x->c.store), sk, origin) == 0);
}

static void s_env_close(s_env_t *x)
{
    cnd_audit_close(&x->c.audit);
    cnd_cstore_close(&x->c.store);
    cnd_rollout_dir_close(&x->d);
}

static void s_float_model(uint8_t **blob, size_t *len, uint64_t seed)
{
    cnd_model_t *m = NULL;
    cnd_shape_t in = {1, 28, 28};
    CHECK(cnd_model_new(&m, "flatten dense(16) relu dense(10)", in, seed) == 0);
    for (int k = 0; k < 1; k++) {
        m->norm_mean[k] = 72.9f;
        m->norm_std[k] = 90.0f;
    }
    CHECK(cnd_model_serialize(m, blob, len) == 0);
    cnd_model_destroy(&m);
}

static void s_job(s_env_t *x)
{
    uint8_t *st = NULL;
    size_t sl = 0;
    s_float_model(&st, &sl, 1);
    int64_t job = 0;
    CHECK(cnd_cstore_job_create(x->c.store, &job, "j", "{}", NULL, 0, st, sl) == 0);
    CHECK_EQ_INT(job, 1);
    free(st);
    cnd_dataset_t cal;
    memset(&cal, 0, sizeof cal);
    cal.n = 32;
    cal.shape = (cnd_shape_t){1, 28, 28};
    cal.n_classes = 10;
    cal.x = qt_pixels(cal.shape, cal.n, 7);
    cal.y = calloc(cal.n, 1);
    CHECK(cnd_cstore_calib_put(x->c.store, 1, &cal) == 0);
    free(cal.x);
    free(cal.y);
}

/* Float model version v of job 1, as a round's end writes it. */
static void s_round(s_env_t *x, int64_t v)
{
    uint8_t *b = NULL;
    size_t bl = 0;
    s_float_model(&b, &bl, 10 + (uint64_t)v);
    cnd_model_rec_t r;
    memset(&r, 0, sizeof r);
    r.job = 1;
    r.version = v;
    r.round = v;
    snprintf(r.format, sizeof r.format, "float");
    r.accuracy = -1;
    CHECK(cnd_cstore_model_put(x->c.store, &r, b, bl) == 0);
    free(b);
}

/* The coordinator at a job's end, in its own transaction as the daemon's loop holds one. */
static void s_job_end(s_env_t *x, cnd_job_spec_t *spec)
{
    CHECK(cnd_cstore_begin(x->c.store) == 0);
    cnd_model_rec_t r;
    int rc = cnd_fedq_publish(&x->c, 1, spec, &r);
    if (rc) fprintf(stderr, "job end: %s\n", cnd_err_detail());
    CHECK(rc == 0);
    CHECK(cnd_cstore_commit(x->c.store) == 0);
}

/* Freezes float version v of job 1 to a file, as an operator would export and build it. */
static void s_freeze(s_env_t *x, int64_t v, const char *path, uint8_t **art, size_t *alen)
{
    cnd_model_rec_t fr;
    uint8_t *b = NULL;
    size_t bl = 0;
    cnd_model_t *m = NULL;
    cnd_dataset_t *cal = NULL;
    CHECK(cnd_cstore_model_get(x->c.store, 1, v, "float", &fr, &b, &bl) == 0);
    CHECK(cnd_model_deserialize(&m, b, bl, "v") == 0);
    CHECK(cnd_cstore_calib_get(x->c.store, 1, &cal) == 0);
    CHECK(cnd_fedq_freeze(art, alen, m, cal, 8) == 0);
    CHECK(cnd_file_write_atomic(path, *art, *alen, 0644) == 0);
    cnd_model_rec_free(&fr);
    cnd_model_destroy(&m);
    cnd_data_destroy(&cal);
    free(b);
}

/* `condenser rollout publish` as its own process. */
static void s_cli_publish(s_env_t *x, const char *art, int64_t v, const char *man_out)
{
    char ver[32], log[400];
    snprintf(ver, sizeof ver, "%lld", (long long)v);
    snprintf(log, sizeof log, "%s/publish-%lld.log", x->dir, (long long)v);
    const char *args[] = {"rollout", "publish",         art,         "--dir", x->dir,
                          "--model", "condenser/job-1", "--version", ver,     "--job",
                          "1",       "--manifest-out",  man_out,     NULL};
    int rc = fx_run(log, args);
    if (rc) fx_dump(log);
    CHECK_EQ_INT(rc, 0);
}

static int s_nosend(void *ctx, Condenser__MsgType t, void *p)
{
    (void)ctx;
    (void)t;
    (void)p;
    return CND_ENOTFOUND; /* installs are local: nothing to send */
}

static cnd_edge_t *s_device(const char *dir, cnd_edge_store_t *st, const uint8_t (*trust)[32])
{
    if (cnd_edge_store_dir(st, dir)) return NULL;
    cnd_edge_cfg_t cfg = {.name = "dev1",
                          .hardware_class = "gw",
                          .cpu_class = "x86-64",
                          .model = "condenser/job-1",
                          .ram_bytes = 8u << 20,
                          .flash_bytes = 4u << 20,
                          .trust = trust,
                          .n_trust = 1,
                          .latency_runs = 1};
    cnd_edge_t *e = NULL;
    if (cnd_edge_new(&e, &cfg, st, s_nosend, NULL) || cnd_edge_boot(e)) {
        fprintf(stderr, "device: %s\n", cnd_err_detail());
        cnd_edge_destroy(&e);
    }
    return e;
}

static int s_install(cnd_edge_t *e, const uint8_t *art, size_t len, const uint8_t *m, size_t ml,
                     cnd_edge_reason_t *why)
{
    *why = CND_EDGE_OK;
    int rc = cnd_edge_install(e, art, len, m, ml, why);
    if (rc) fprintf(stderr, "install: %s\n", cnd_err_detail());
    return rc;
}

static void test_interleaved(void)
{
    s_env_t x;
    s_env_open(&x, "interleaved");
    s_job(&x);
    cnd_job_spec_t spec;
    cnd_job_defaults(&spec);
    spec.weight_bits = 8;
    /* what devices are given, in the order it was signed: artifact, length, manifest */
    uint8_t *art[5] = {0}, *man[5] = {0};
    size_t al[5] = {0}, ml[5] = {0};
    char path[400], mpath[400];
    cnd_rartifact_t ra;

    s_round(&x, 1);
    s_job_end(&x, &spec); /* condenser/job-1@1, signed by the coordinator */
    cnd_model_rec_t rec;
    CHECK(cnd_fedq_artifact(x.c.store, 1, -1, &rec, &art[0], &al[0]) == 0);
    CHECK_EQ_INT(rec.version, 1);
    CHECK(rec.manifest != NULL);
    man[0] = rec.manifest, ml[0] = rec.manifest_len;
    rec.manifest = NULL;

    s_round(&x, 2);
    snprintf(path, sizeof path, "%s/v2.cndq", x.dir);
    snprintf(mpath, sizeof mpath, "%s/v2.manifest", x.dir);
    s_freeze(&x, 2, path, &art[1], &al[1]);
    s_cli_publish(&x, path, 2, mpath); /* condenser/job-1@2, another process */
    CHECK(cnd_file_read(mpath, 1 << 16, &man[1], &ml[1]) == 0);

    s_round(&x, 3);
    s_job_end(&x, &spec); /* the job's end again, now at version 3 */
    CHECK(cnd_fedq_artifact(x.c.store, 1, 3, &rec, &art[2], &al[2]) == 0);
    man[2] = rec.manifest, ml[2] = rec.manifest_len;
    rec.manifest = NULL;

    s_round(&x, 4);
    snprintf(path, sizeof path, "%s/v4.cndq", x.dir);
    snprintf(mpath, sizeof mpath, "%s/v4.manifest", x.dir);
    s_freeze(&x, 4, path, &art[3], &al[3]);
    s_cli_publish(&x, path, 4, mpath);
    CHECK(cnd_file_read(mpath, 1 << 16, &man[3], &ml[3]) == 0);

    /* a signed rollback to v1, as the rollout engine signs it */
    uint8_t d1[32];
    cnd_sha256(d1, art[0], al[0]);
    CHECK(cnd_registry_by_digest(x.d.db, d1, &ra) == 0);
    uint64_t rseq = 0;
    CHECK(cnd_registry_sign(x.d.db, x.d.audit, x.d.id, x.d.fpr, &ra, 1, 0, &man[4], &ml[4],
                            &rseq) == 0);
    art[4] = malloc(al[0]);
    memcpy(art[4], art[0], al[0]);
    al[4] = al[0];

    uint64_t last = 0;
    for (int i = 0; i < 5; i++) {
        uint64_t q = s_seq_of(man[i], ml[i]);
        CHECK(q > last);
        last = q;
    }
    CHECK_EQ_INT(last, 5);
    CHECK_EQ_INT(rseq, 5);
    /* what `job show` lists: the four under the job's name, by version, each with the manifest
     * signed at its publication */
    cnd_model_rec_t *list = NULL;
    size_t nl = 0;
    CHECK(cnd_fedq_artifacts(x.c.store, 1, &list, &nl) == 0);
    CHECK_EQ_INT(nl, 4);
    for (size_t i = 0; i < nl; i++) {
        CHECK(list[i].version == (int64_t)i + 1 && list[i].round == (int64_t)i + 1);
        CHECK(list[i].manifest && list[i].manifest_len == ml[i] &&
              memcmp(list[i].manifest, man[i], ml[i]) == 0);
        cnd_model_rec_free(&list[i]);
    }
    free(list);
    /* stored once each: four artifacts, none in the coordinator's model table */
    CHECK_EQ_INT(s_count(x.d.db, "SELECT count(*) FROM registry_artifact"), 4);
    CHECK_EQ_INT(s_count(x.d.db, "SELECT count(*) FROM model WHERE format != 'float'"), 0);
    /* the audit log says the same: artifact.sign sequences rise in log order */
    CHECK_EQ_INT(s_count(x.d.db,
                         "SELECT count(*) FROM audit_entry a WHERE action = 'artifact.sign' AND"
                         " json_extract(entry, '$.details.sequence') <= (SELECT max(json_extract("
                         "entry, '$.details.sequence')) FROM audit_entry b WHERE b.action ="
                         " 'artifact.sign' AND b.seq < a.seq)"),
                 0);
    CHECK_EQ_INT(s_count(x.d.db, "SELECT count(*) FROM audit_entry WHERE action = 'artifact.sign'"),
                 5);

    /* A device installs each in turn, refuses a replay, and takes the signed rollback. */
    char ddir[400];
    snprintf(ddir, sizeof ddir, "%s/device", x.dir);
    uint8_t trust[1][32];
    memcpy(trust[0], cnd_identity_pk(x.d.id), 32);
    cnd_edge_store_t st;
    cnd_edge_t *e = s_device(ddir, &st, (const uint8_t(*)[32])trust);
    CHECK(e != NULL);
    if (e) {
        cnd_edge_reason_t why;
        cnd_edge_status_t es;
        for (int i = 0; i < 4; i++) {
            CHECK(s_install(e, art[i], al[i], man[i], ml[i], &why) == 0);
            cnd_edge_status(e, &es);
            CHECK(es.has_model && es.version == (uint64_t)i + 1);
            CHECK_EQ_INT(es.highest_seq, (uint64_t)i + 1);
        }
        CHECK(cnd_edge_install(e, art[1], al[1], man[1], ml[1], &why) != 0);
        CHECK(why == CND_EDGE_OLDER);
        CHECK(s_install(e, art[4], al[4], man[4], ml[4], &why) == 0);
        cnd_edge_status(e, &es);
        CHECK(es.version == 1 && es.highest_seq == 5 && memcmp(es.digest, d1, 32) == 0);
        cnd_edge_destroy(&e);
    }
    cnd_edge_store_dir_free(&st);
    for (int i = 0; i < 5; i++) {
        free(art[i]);
        free(man[i]);
    }
    s_env_close(&x);
}

/* --- two processes at once ------------------------------------------------------------------ */

#define S_RACE_EACH 6

static void test_concurrent(void)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/race", s_root);
    CHECK(cnd_rollout_dir_init(dir) == 0);
    uint8_t *a[2 * S_RACE_EACH];
    size_t l[2 * S_RACE_EACH];
    for (int i = 0; i < 2 * S_RACE_EACH; i++)
        CHECK(fleet_mkart(&a[i], &l[i], 0, 8, 500 + (uint64_t)i) == 0);
    pid_t kid[2];
    for (int k = 0; k < 2; k++) {
        kid[k] = fork();
        if (kid[k] == 0) {
            cnd_rollout_dir_t d;
            int bad = cnd_rollout_dir_open(&d, dir, 1) != 0;
            for (int i = 0; i < S_RACE_EACH && !bad; i++) {
                cnd_publish_opts_t o = {"fm", (uint64_t)(k * 100 + i), NULL, NULL, -1, NULL, NULL,
                                        0};
                int64_t id;
                int j = k * S_RACE_EACH + i;
                bad = sqlite3_exec(d.db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
                      cnd_registry_publish(d.db, d.audit, d.id, d.fpr, a[j], l[j], &o, &id, NULL,
                                           NULL) != 0 ||
                      sqlite3_exec(d.db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK;
                if (bad) fprintf(stderr, "child %d: %s\n", k, cnd_err_detail());
            }
            if (!bad) cnd_rollout_dir_close(&d);
            _exit(bad);
        }
        CHECK(kid[k] > 0);
    }
    for (int k = 0; k < 2; k++) {
        int st = -1;
        CHECK(kid[k] > 0 && waitpid(kid[k], &st, 0) == kid[k]);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    cnd_rollout_dir_t d;
    CHECK(cnd_rollout_dir_open(&d, dir, 1) == 0);
    /* every publication signed once, sequences 1..12 each once, rising in log order */
    CHECK_EQ_INT(s_count(d.db, "SELECT count(DISTINCT json_extract(entry, '$.details.sequence'))"
                               " FROM audit_entry WHERE action = 'artifact.sign'"),
                 2 * S_RACE_EACH);
    CHECK_EQ_INT(s_count(d.db, "SELECT max(json_extract(entry, '$.details.sequence')) FROM"
                               " audit_entry WHERE action = 'artifact.sign'"),
                 2 * S_RACE_EACH);
    CHECK_EQ_INT(s_count(d.db, "SELECT count(*) FROM audit_entry a WHERE action = 'artifact.sign'"
                               " AND EXISTS (SELECT 1 FROM audit_entry b WHERE b.action ="
                               " 'artifact.sign' AND b.seq < a.seq AND json_extract(b.entry,"
                               " '$.details.sequence') >= json_extract(a.entry,"
                               " '$.details.sequence'))"),
                 0);
    CHECK_EQ_INT(s_count(d.db, "SELECT seq FROM registry_seq WHERE model = 'fm'"), 2 * S_RACE_EACH);
    cnd_rollout_dir_close(&d);
    for (int i = 0; i < 2 * S_RACE_EACH; i++) free(a[i]);
}

/* --- files from before the registry -------------------------------------------------------- */

/* The rollout engine's tables as its schema version 1 made them (rollout_store.c, step 0 -> 1),
 * and the kernel's record of that version. */
static const char *s_rollout_v1 =
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
    " sum_us INTEGER NOT NULL, PRIMARY KEY(artifact, cpu));"
    "INSERT INTO cnd_schema(component, version) VALUES('rollout', 1);";

/* A coordinator database as a program from before the registry left it: its own tables (made
 * by today's store, then the registry removed again), job 1 whose end signed condenser/job-1@9
 * with sequence 9 into the model table, and the rollout engine's v1 tables holding artifact 7
 * ("fm"@3, counter at 5) and a device row that refers to it. */
static void s_legacy_file(const char *dir, const uint8_t *art, size_t len, const uint8_t *art2,
                          size_t len2)
{
    CHECK(cnd_rollout_dir_init(dir) == 0); /* identity.key, and a file to start from */
    char path[400];
    snprintf(path, sizeof path, "%s/coordinator.db", dir);
    cnd_cstore_t *s = NULL;
    CHECK(cnd_cstore_open(&s, path, 0) == 0);
    uint8_t *st = NULL;
    size_t sl = 0;
    s_float_model(&st, &sl, 1);
    int64_t job = 0;
    CHECK(cnd_cstore_job_create(s, &job, "j", "{}", NULL, 0, st, sl) == 0);
    free(st);
    cnd_identity_t *id = NULL;
    char kp[400];
    snprintf(kp, sizeof kp, "%s/identity.key", dir);
    CHECK(cnd_identity_load(&id, kp) == 0);
    cnd_manifest_t m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "condenser/job-1");
    m.sequence = m.version = 9;
    m.length = len2;
    cnd_sha256(m.digest, art2, len2);
    m.expires = cnd_unix_time() + 3600;
    cnd_buf_t b;
    cnd_buf_init(&b);
    CHECK(cnd_manifest_sign(&b, &m, id) == 0);
    cnd_identity_destroy(&id);
    cnd_model_rec_t r;
    memset(&r, 0, sizeof r);
    r.job = 1;
    r.version = 9;
    r.round = 9;
    snprintf(r.format, sizeof r.format, "int8");
    r.accuracy = -1;
    r.manifest = b.data;
    r.manifest_len = b.len;
    CHECK(cnd_cstore_model_put(s, &r, art2, len2) == 0);
    cnd_buf_free(&b);
    sqlite3 *db = cnd_cstore_db(s);
    CHECK(cnd_db_exec(db,
                      "DROP TABLE rollout_manifest; DROP TABLE rollout_device;"
                      " DROP TABLE rollout_latency; DROP TABLE rollout; DROP TABLE registry_seq;"
                      " DROP TABLE registry_artifact; DELETE FROM cnd_schema WHERE component IN"
                      " ('rollout', 'registry')",
                      "making a legacy file") == 0);
    CHECK(cnd_db_exec(db, s_rollout_v1, "making a legacy file") == 0);
    sqlite3_stmt *q = NULL;
    CHECK(sqlite3_prepare_v2(db,
                             "INSERT INTO rollout_artifact VALUES(7, 'fm', 3, 'int8', '', ?1, ?2,"
                             " 1000, 1000, 8, '', -1, '', ?3, 0)",
                             -1, &q, NULL) == SQLITE_OK);
    uint8_t d[32];
    cnd_sha256(d, art, len);
    sqlite3_bind_blob(q, 1, d, 32, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (int64_t)len);
    sqlite3_bind_blob(q, 3, art, (int)len, SQLITE_STATIC);
    CHECK(sqlite3_step(q) == SQLITE_DONE);
    sqlite3_finalize(q);
    CHECK(cnd_db_exec(db,
                      "INSERT INTO rollout_seq VALUES('fm', 5);"
                      "INSERT INTO rollout VALUES(1, 'fm', 3, '', 1, 0, 2, 10, 5, 300, -1, -1,"
                      " 65536, 500, 'completed', '', 0, '', 0, 0);"
                      "INSERT INTO rollout_device VALUES(1, 'dev-a', 0, 7, NULL, 'healthy', '',"
                      " 1, 2, 0);",
                      "making a legacy file") == 0);
    cnd_cstore_close(&s);
}

/* After adoption, whoever came first: the rows, the counters and the next sequences. */
static void s_check_adopted(const char *dir, const uint8_t *art2, size_t len2)
{
    cnd_rollout_dir_t d;
    CHECK(cnd_rollout_dir_open(&d, dir, 1) == 0); /* rollout 1 -> 2: old tables gone */
    CHECK_EQ_INT(s_count(d.db, "SELECT count(*) FROM sqlite_master WHERE name IN"
                               " ('rollout_artifact', 'rollout_seq')"),
                 0);
    cnd_rartifact_t a;
    CHECK(cnd_registry_get(d.db, 7, &a, NULL, NULL) == 0);
    CHECK(strcmp(a.model, "fm") == 0 && a.version == 3);
    cnd_rdevice_t *dv = NULL;
    size_t n = 0;
    CHECK(cnd_rstore_devices(d.db, 1, &dv, &n) == 0 && n == 1);
    CHECK(n == 1 && dv[0].artifact == 7 && dv[0].state == CND_RDEV_HEALTHY);
    free(dv);
    uint8_t *m = NULL;
    size_t ml = 0;
    uint64_t seq = 0;
    CHECK(cnd_registry_sign(d.db, d.audit, d.id, d.fpr, &a, 0, 0, &m, &ml, &seq) == 0);
    CHECK_EQ_INT(seq, 6); /* above the rollout engine's counter */
    free(m);
    /* the job's name: above the manifest its end signed (9), which devices may hold */
    cnd_publish_opts_t o = {"condenser/job-1", 10, NULL, NULL, -1, NULL, "1", 0};
    uint8_t *art = NULL;
    size_t len = 0;
    CHECK(fleet_mkart(&art, &len, 0, 8, 77) == 0);
    int64_t id = 0;
    CHECK(cnd_registry_publish(d.db, d.audit, d.id, d.fpr, art, len, &o, &id, &m, &ml) == 0);
    CHECK_EQ_INT(s_seq_of(m, ml), 10);
    free(m);
    free(art);
    cnd_rollout_dir_close(&d);
    /* `job export --format int8` still finds the job's artifact of before, its manifest too */
    char path[400];
    snprintf(path, sizeof path, "%s/coordinator.db", dir);
    cnd_cstore_t *s = NULL;
    CHECK(cnd_cstore_open(&s, path, 0) == 0);
    cnd_model_rec_t r;
    uint8_t *b = NULL;
    size_t bl = 0;
    CHECK(cnd_fedq_artifact(s, 1, 9, &r, &b, &bl) == 0);
    CHECK(bl == len2 && b && memcmp(b, art2, len2) == 0 && r.manifest != NULL);
    CHECK_EQ_INT(s_seq_of(r.manifest, r.manifest_len), 9);
    cnd_model_rec_free(&r);
    free(b);
    /* and the registry's newer one under the job's name is the latest */
    CHECK(cnd_fedq_artifact(s, 1, -1, &r, NULL, NULL) == 0);
    CHECK_EQ_INT(r.version, 10);
    cnd_model_rec_free(&r);
    /* a second open adopts nothing twice */
    CHECK_EQ_INT(s_count(cnd_cstore_db(s), "SELECT seq FROM registry_seq WHERE model = 'fm'"), 6);
    cnd_cstore_close(&s);
}

static void test_legacy(void)
{
    uint8_t *art = NULL, *art2 = NULL;
    size_t len = 0, len2 = 0;
    CHECK(fleet_mkart(&art, &len, 0, 8, 70) == 0);
    CHECK(fleet_mkart(&art2, &len2, 0, 8, 71) == 0);
    for (int coordinator_first = 0; coordinator_first < 2; coordinator_first++) {
        char dir[300], path[400];
        snprintf(dir, sizeof dir, "%s/legacy%d", s_root, coordinator_first);
        s_legacy_file(dir, art, len, art2, len2);
        snprintf(path, sizeof path, "%s/coordinator.db", dir);
        if (coordinator_first) {
            /* the coordinator opens it first: the registry adopts the rollout rows while the
             * rollout engine's own tables are still at version 1 */
            cnd_cstore_t *s = NULL;
            CHECK(cnd_cstore_open(&s, path, 0) == 0);
            sqlite3 *db = cnd_cstore_db(s);
            CHECK_EQ_INT(s_count(db, "SELECT count(*) FROM registry_artifact WHERE id = 7"), 1);
            CHECK_EQ_INT(s_count(db, "SELECT seq FROM registry_seq WHERE model = 'fm'"), 5);
            CHECK_EQ_INT(s_count(db, "SELECT seq FROM registry_seq WHERE model ="
                                     " 'condenser/job-1'"),
                         9);
            CHECK_EQ_INT(s_count(db, "SELECT version FROM cnd_schema WHERE component ="
                                     " 'rollout'"),
                         1);
            cnd_cstore_close(&s);
        }
        s_check_adopted(dir, art2, len2);
    }
    free(art);
    free(art2);
}

int main(void)
{
    snprintf(s_root, sizeof s_root, "/tmp/cnd_test_registry_%d", (int)getpid());
    CHECK(cnd_mkdir_p(s_root, 0700) == 0);
    test_rule();
    test_interleaved();
    test_concurrent();
    test_legacy();
    s_rmrf(s_root);
    return check_result("test_registry");
}
