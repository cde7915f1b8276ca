/*
 * test_federation_onnx_shipped.c: a federated job whose teacher is an ONNX model the coordinator
 * ships (issue 15): `job create --teacher teacher.onnx --teacher-preprocess SPEC`. The ONNX file
 * is the fixture's teacher written by `condenser export --onnx`; the spec is the fixture
 * teacher's normalisation (mean 100, std 60), so the student starts with it.
 *
 *   create      refused without --teacher-preprocess, with a spec that does not parse, with a
 *               truncated .onnx, and with an ONNX teacher of 3 classes for a 4-class student.
 *   job 1       three sites on loopback, two rounds: every round ends ok with all three; each
 *               agent checked and cached the teacher (teachers/<sha256>.onnx) and says so; the
 *               JobSpec carried the format and preprocessing (the recipe shows them).
 *   job 2, 3    a coordinator that ships something else than what the job was created with (its
 *               database altered, blob and digest together, as a malicious coordinator would):
 *               job 2's teacher is a truncated ONNX file, job 3's an ONNX model with 3 outputs
 *               for the job's 4 classes. The site refuses each, naming why, and caches neither.
 *   job 4       an honest teacher whose run over a batch needs 256 MB, at a site whose
 *               [limits] memory_mb is 64: refused before its logits are computed.
 */
#include "check.h"
#include "digest.h"
#include "federation_fixture.h"

#include <sqlite3.h>
#include <string.h>

static int s_has(const char *path, const char *text)
{
    uint8_t *b = NULL;
    size_t n = 0;
    int ok = cnd_file_read(path, 1 << 22, &b, &n) == 0 && b && strstr((char *)b, text);
    free(b);
    return ok;
}

/* Waits up to timeout_s for `text` in the file at path. */
static int s_wait_for(const char *path, const char *text, double timeout_s)
{
    double end = fx_now() + timeout_s;
    while (fx_now() < end) {
        if (s_has(path, text)) return 1;
        fx_sleep_ms(100);
    }
    return 0;
}

/* What a malicious coordinator does: ships `bytes` as job `id`'s teacher, digest and all. */
static void s_swap_teacher(fx_fed_t *f, int id, const uint8_t *bytes, size_t n)
{
    char db[400];
    fx_path(db, sizeof db, f->coord, "coordinator.db");
    uint8_t d[32];
    cnd_sha256(d, bytes, n);
    sqlite3 *h = NULL;
    CHECK_EQ_INT(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    CHECK_EQ_INT(
        sqlite3_prepare_v2(h, "UPDATE job SET teacher = ?1, teacher_digest = ?2 WHERE id = ?3", -1,
                           &st, NULL),
        SQLITE_OK);
    sqlite3_bind_blob(st, 1, bytes, (int)n, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, d, 32, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, id);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
    CHECK_EQ_INT(sqlite3_changes(h), 1);
    sqlite3_finalize(st);
    sqlite3_close(h);
}

/* `job create` with the ONNX teacher `teacher` and preprocessing `prep` (NULL: none); returns
 * the exit status. */
static int s_create(fx_fed_t *f, const char *log, const char *teacher, const char *prep)
{
    const char *a[] = {"job",
                       "create",
                       "--dir",
                       f->coord,
                       "--student-arch",
                       FX_STUDENT,
                       "--teacher",
                       teacher,
                       "--batch",
                       "16",
                       "--lr",
                       "0.01",
                       "--rounds",
                       "2",
                       "--sites",
                       "3",
                       "--quorum",
                       "3",
                       prep ? "--teacher-preprocess" : NULL,
                       prep,
                       NULL};
    return fx_run(log, a);
}

int main(void)
{
    fx_fed_t f;
    fx_fed_init(&f, "onnx-shipped", 3);
    fx_fed_setup(&f, 200, NULL, 0);
    char log[400], cnd[400], onnx[400], t3cnd[400], t3[400], cut[400];
    fx_path(log, sizeof log, f.root, "setup.log");
    fx_path(cnd, sizeof cnd, f.root, "teacher.cnd");
    fx_path(onnx, sizeof onnx, f.root, "teacher.onnx");
    fx_path(t3cnd, sizeof t3cnd, f.root, "three.cnd");
    fx_path(t3, sizeof t3, f.root, "three.onnx");
    fx_path(cut, sizeof cut, f.root, "cut.onnx");
    char bigcnd[400], big[400];
    fx_path(bigcnd, sizeof bigcnd, f.root, "big.cnd");
    fx_path(big, sizeof big, f.root, "big.onnx");
    const char *ex[] = {"export", cnd, "--onnx", "--out", onnx, NULL};
    CHECK_EQ_INT(fx_run(log, ex), 0);
    cnd_model_t *m = NULL; /* a teacher of 3 classes */
    CHECK_EQ_INT(cnd_model_new(&m, "flatten dense(16) relu dense(3)", (cnd_shape_t){1, 8, 8}, 9),
                 0);
    if (m) CHECK_EQ_INT(cnd_model_save(m, t3cnd), 0);
    cnd_model_destroy(&m);
    const char *ex3[] = {"export", t3cnd, "--onnx", "--out", t3, NULL};
    CHECK_EQ_INT(fx_run(log, ex3), 0);
    /* a teacher whose run over 256 samples needs 2048 x 8 x 8 floats a sample and more: 256 MB */
    CHECK_EQ_INT(
        cnd_model_new(&m, "conv2d(2048,3,pad=1) relu flatten dense(4)", (cnd_shape_t){1, 8, 8}, 9),
        0);
    if (m) CHECK_EQ_INT(cnd_model_save(m, bigcnd), 0);
    cnd_model_destroy(&m);
    const char *exb[] = {"export", bigcnd, "--onnx", "--out", big, NULL};
    CHECK_EQ_INT(fx_run(log, exb), 0);
    uint8_t *ob = NULL, *b3 = NULL;
    size_t on = 0, n3 = 0;
    CHECK_EQ_INT(cnd_file_read(onnx, 1 << 22, &ob, &on), 0);
    CHECK_EQ_INT(cnd_file_read(t3, 1 << 22, &b3, &n3), 0);
    CHECK(on > 1000 && n3 > 1000);
    if (ob) CHECK_EQ_INT(cnd_file_write_atomic(cut, ob, on / 2, 0644), 0);

    /* job create refuses what it could not ship usefully */
    char bad[400];
    fx_path(bad, sizeof bad, f.root, "create-refused.log");
    CHECK(s_create(&f, bad, onnx, NULL) != 0);
    CHECK(s_has(bad, "give the preprocessing it expects with --teacher-preprocess"));
    CHECK(s_create(&f, bad, onnx, "mean=100 sdev=60") != 0);
    CHECK(s_has(bad, "unknown key 'sdev'"));
    CHECK(s_create(&f, bad, cut, "mean=100 std=60") != 0);
    CHECK(s_has(bad, "cut.onnx"));
    CHECK(s_create(&f, bad, t3, "mean=100 std=60") != 0);
    CHECK(s_has(bad, "does not match the teacher (1x8x8 -> 3)"));
    CHECK(s_create(&f, bad, cnd, "mean=100 std=60") != 0);
    CHECK(s_has(bad, "--teacher-preprocess is for an .onnx --teacher only"));

    /* job 1: three sites, two rounds, the ONNX teacher shipped */
    CHECK_EQ_INT(s_create(&f, log, onnx, "mean=100 std=60"), 0);
    CHECK(s_has(log, "ONNX teacher shipped"));
    pid_t coord = fx_start_coordinator(&f, NULL);
    pid_t ag[3];
    for (int s = 0; s < 3; s++) ag[s] = fx_start_agent(&f, s, NULL);
    for (int s = 0; s < 3; s++) CHECK_EQ_INT(fx_wait(ag[s], 90), 0);
    CHECK_EQ_INT(fx_wait(coord, 30), 0);
    cnd_round_rec_t *r = NULL;
    size_t nr = 0;
    CHECK_EQ_INT(fx_rounds(&f, &r, &nr), 0);
    CHECK_EQ_INT(nr, 2);
    for (size_t i = 0; i < nr; i++) {
        CHECK(strcmp(r[i].outcome, "ok") == 0);
        CHECK_EQ_INT(r[i].survivors, 3);
    }
    fx_rounds_free(r, nr);
    uint8_t d[32];
    char hex[65], cached[500];
    cnd_sha256(d, ob, on);
    cnd_hex(hex, d, 32);
    for (int s = 0; s < 3; s++) {
        char p[400];
        snprintf(p, sizeof p, "%s/agent.log", f.site_dir[s]);
        CHECK(s_has(p, "shipped ONNX teacher"));
        CHECK(s_has(p, "preprocess mean=100 std=60"));
        snprintf(cached, sizeof cached, "%s/teachers/%s.onnx", f.site_dir[s], hex);
        uint8_t *cb = NULL;
        size_t cn = 0;
        CHECK_EQ_INT(cnd_file_read(cached, 1 << 22, &cb, &cn), 0);
        CHECK(cb && cn == on && memcmp(cb, ob, on) == 0);
        free(cb);
    }
    char show[400];
    fx_path(show, sizeof show, f.root, "show.log");
    const char *sh[] = {"job", "show", "1", "--dir", f.coord, NULL};
    CHECK_EQ_INT(fx_run(show, sh), 0);
    CHECK(s_has(show, "\"format\":\"onnx\""));
    CHECK(s_has(show, "\"preprocess\":\"mean=100 std=60\""));

    /* jobs 2 and 3: the coordinator ships other bytes than the job was created with; job 4 an
     * honest teacher too large for site 0, which now allows 64 MB (the minimum) */
    CHECK_EQ_INT(s_create(&f, log, onnx, "mean=100 std=60"), 0);
    CHECK_EQ_INT(s_create(&f, log, onnx, "mean=100 std=60"), 0);
    CHECK_EQ_INT(s_create(&f, log, big, "mean=100 std=60"), 0);
    FILE *ini = fopen(f.site_ini[0], "a"); /* [limits] is the file's last section */
    CHECK(ini != NULL);
    if (ini) {
        fputs("memory_mb = 64\n", ini);
        fclose(ini);
    }
    if (ob) s_swap_teacher(&f, 2, ob, on / 2);
    if (b3) s_swap_teacher(&f, 3, b3, n3);
    coord = fx_start_coordinator(&f, NULL);
    pid_t a0 = fx_start_agent(&f, 0, NULL);
    char alog[400], clog[400];
    snprintf(alog, sizeof alog, "%s/agent.log", f.site_dir[0]);
    fx_path(clog, sizeof clog, f.root, "coordinator.log");
    CHECK(s_wait_for(alog, "job 2 refused: shipped ONNX teacher", 40));
    CHECK(s_wait_for(clog, "refused job 2: shipped ONNX teacher", 10));
    const char *cancel[] = {"job", "cancel", "2", "--dir", f.coord, NULL};
    CHECK_EQ_INT(fx_run(log, cancel), 0);
    CHECK(s_wait_for(alog, "job 3 refused: shipped ONNX teacher", 40));
    CHECK(s_has(alog, "has 3 outputs, the job has 4 classes"));
    const char *cancel3[] = {"job", "cancel", "3", "--dir", f.coord, NULL};
    CHECK_EQ_INT(fx_run(log, cancel3), 0);
    CHECK(s_wait_for(alog, "job 4 refused: shipped ONNX teacher", 40));
    CHECK(s_has(alog, "over the limit of 64 MB"));
    kill(a0, SIGTERM);
    kill(coord, SIGTERM);
    CHECK(fx_wait(a0, 20) >= 0);
    CHECK(fx_wait(coord, 20) >= 0);
    /* neither was cached: only job 1's teacher is in the cache */
    char tdir[400], cmd[600];
    snprintf(tdir, sizeof tdir, "%s/teachers", f.site_dir[0]);
    snprintf(cmd, sizeof cmd, "test \"$(ls '%s' | wc -l)\" = 1", tdir);
    CHECK_EQ_INT(system(cmd), 0);
    free(ob);
    free(b3);
    if (check_failures) {
        fx_dump(clog);
        fx_dump(log);
        fx_dump(bad);
        for (int s = 0; s < 3; s++) {
            char p[400];
            snprintf(p, sizeof p, "%s/agent.log", f.site_dir[s]);
            fx_dump(p);
        }
    }
    fx_fed_cleanup(&f);
    return check_result("test_federation_onnx_shipped");
}
