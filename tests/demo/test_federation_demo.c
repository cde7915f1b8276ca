/*
 * test_federation_demo.c: `condenser demo` end to end, small (3,000 training images, 2 rounds,
 * the last with QAT): the separate processes come up and go down, the job completes, the int8
 * artifact is signed and its manifest verifies, every audit log verifies and every site
 * reconciles with the coordinator, and the JSON result carries the table's quantities. Then the
 * edge fleet (--devices 20): the rollout of the artifact completes through the canary and the
 * waves, the per-wave counts add up to the fleet, every device is healthy and runs v2; and the
 * audit after it: all four logs verified, report.html written with the rollout and its waves.
 * One artifact registry: v2 (the job's artifact) is stored once, under the job's name, and every
 * manifest signed for that name (the job's end, v1's publication, the offer) has a higher
 * sequence than the one before.
 * The default student is a graph CNN, so the artifact is a version-2 (graph) artifact.
 * Skipped (passes) when Fashion-MNIST is not installed.
 */
#include "check.h"
#include "data.h"
#include "fileio.h"
#include "federation_fixture.h"

#include <sqlite3.h>
#include <string.h>

static double s_num(const char *json, const char *key)
{
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    CHECK(p != NULL);
    return p ? strtod(p + strlen(pat), NULL) : -1;
}

/* Entries of the coordinator's audit log with this action whose entry text contains `like`. */
static int s_entries(const char *db_path, const char *action, const char *like)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int n = -1;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db,
                           "SELECT count(*) FROM audit_entry WHERE action = ?1 AND"
                           " instr(entry, ?2) > 0",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, action, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, like, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* One integer from a read-only query of the coordinator's database (-1 on error). */
static int64_t s_int(const char *db_path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* The sequences of the artifact.sign entries for a model name, in log order, strictly
 * increasing: returns how many there are, or -1 when one is not above the one before. */
static int s_sequences(const char *db_path, const char *model)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int n = 0;
    int64_t last = 0;
    char like[200];
    snprintf(like, sizeof like, "%s@%%", model);
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db,
                           "SELECT json_extract(entry, '$.details.sequence') FROM audit_entry"
                           " WHERE action = 'artifact.sign' AND subject LIKE ?1 ORDER BY seq",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, like, -1, SQLITE_STATIC);
        while (n >= 0 && sqlite3_step(st) == SQLITE_ROW) {
            int64_t q = sqlite3_column_int64(st, 0);
            n = q > last ? n + 1 : -1;
            last = q;
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static int s_count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

/* The fleet's waves from the JSON: sums of devices, healthy, failed and timed out; returns how
 * many waves there are (-1 when the array is missing). */
static int s_waves(const char *json, double *dev, double *ok, double *bad, double *first)
{
    *dev = *ok = *bad = *first = 0;
    const char *p = strstr(json, "\"waves\":[");
    if (!p) return -1;
    const char *end = strchr(p, ']');
    int n = 0;
    for (const char *w = strstr(p, "{\"wave\":"); w && end && w < end;
         w = strstr(w + 1, "{\"wave\":")) {
        double d = s_num(w, "devices");
        if (n == 0) *first = d;
        *dev += d;
        *ok += s_num(w, "healthy");
        *bad += s_num(w, "failed") + s_num(w, "timed_out") + s_num(w, "other");
        n++;
    }
    return n;
}

int main(void)
{
    if (!cnd_file_exists(CND_FMNIST_DIR "/train-images-idx3-ubyte.gz")) {
        fprintf(stderr, "Fashion-MNIST not installed: skipping the demo test\n");
        return 0;
    }
    fx_fed_t f;
    fx_fed_init(&f, "demo", 3);
    char work[600], out[640], log[640];
    fx_path(work, sizeof work, f.root, "work");
    fx_path(out, sizeof out, f.root, "demo.json");
    fx_path(log, sizeof log, f.root, "demo.log");
    /* stdout (the JSON) and the progress lines on stderr go to separate files */
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0) _exit(126);
        dup2(fo, 1);
        dup2(fe, 2);
        const char *argv[] = {
            fx_bin(),           "demo", "--workdir", work, "--train-subset", "3000",
            "--public",         "1000", "--rounds",  "2",  "--qat-rounds",   "1",
            "--teacher-epochs", "1",    "--devices", "20", "--json",         NULL};
        execv(fx_bin(), (char **)argv);
        _exit(127);
    }
    CHECK(pid > 0);
    int st = fx_wait(pid, 420); /* about 60 s alone; minutes on a loaded 2-core machine */
    CHECK(st == 0);
    if (st != 0) fx_dump(log);

    size_t n = 0;
    uint8_t *j = NULL;
    CHECK(cnd_file_read(out, 1 << 20, &j, &n) == 0); /* NUL-terminated */
    char *json = (char *)j;
    if (json) {
        CHECK(strstr(json, "\"manifest_verified\":true") != NULL);
        CHECK(strstr(json, "\"audit_logs_verified\":true") != NULL);
        CHECK(s_count(json, "\"reconciled\":true") == 3);
        CHECK(s_count(json, "\"reconciled\":false") == 0);
        CHECK(s_num(json, "rounds") == 2);
        CHECK(s_num(json, "ring_bits") == 10); /* 8-bit values, 3 sites */
        /* 2 rounds on 3,000 images: well above chance (10 classes), not a benchmark */
        CHECK(s_num(json, "federated_float_accuracy") > 0.4);
        CHECK(s_num(json, "federated_int8_accuracy") > 0.4);
        CHECK(s_num(json, "central_float_accuracy") > 0.4);
        double art = s_num(json, "artifact_bytes"), fl = s_num(json, "float_model_bytes");
        CHECK(art > 0 && art < fl / 3);
        double share = s_num(json, "secagg_share_of_round_time");
        CHECK(share > 0 && share < 1);
        /* progress was visible while it ran */
        uint8_t *l = NULL;
        size_t ln = 0;
        CHECK(cnd_file_read(log, 1 << 20, &l, &ln) == 0);
        CHECK(l && ln > 0 && memmem(l, ln, "round 2/2", 9) != NULL);
        CHECK(l && memmem(l, ln, "rollout 1 canary: 1 devices, 1 healthy", 38) != NULL);
        free(l);
        /* the fleet: 20 devices on v1 (the model after round 1), all moved to v2 in waves */
        const char *fleet_j = strstr(json, "\"fleet\":{");
        CHECK(fleet_j != NULL);
        if (fleet_j) {
            CHECK(strstr(fleet_j, "\"state\":\"completed\"") != NULL);
            CHECK(s_num(fleet_j, "devices") == 20);
            CHECK(s_num(fleet_j, "v1_model_version") == 1);
            CHECK(s_num(fleet_j, "targeted") == 20);
            CHECK(s_num(fleet_j, "running_v2") == 20);
            CHECK(s_num(fleet_j, "running_v1") == 0);
            double v1 = s_num(fleet_j, "v1_int8_accuracy");
            CHECK(v1 > 0.1 && v1 < 1);
            double dev, ok, bad, first;
            int nw = s_waves(fleet_j, &dev, &ok, &bad, &first);
            /* canary 1 (5% of 20), then 2, 4, 8 and the 5 left */
            CHECK(nw == 5);
            CHECK(first == 1);
            CHECK(dev == 20 && ok == 20 && bad == 0);
        }
        /* the audit, after the rollout */
        const char *a = strstr(json, "\"audit\":{");
        CHECK(a != NULL);
        if (a) {
            CHECK(s_num(a, "logs") == 4 && s_num(a, "logs_verified") == 4);
            CHECK(s_num(a, "coordinator_entries") > 100);
        }
        /* every device the rollout reached was enrolled on the record, as every site was */
        char cdb[700];
        fx_path(cdb, sizeof cdb, work, "coordinator/coordinator.db");
        CHECK_EQ_INT(s_entries(cdb, "enroll", "\"role\":\"device\""), 20);
        CHECK_EQ_INT(s_entries(cdb, "rollout.device", "\"outcome\":\"healthy\""), 20);
        /* v2 stored once (in the registry, not also in the coordinator's model table), and the
         * job's end, v1's publication and the offer signed under one rising sequence */
        CHECK_EQ_INT(s_int(cdb, "SELECT count(*) FROM registry_artifact WHERE"
                                " model = 'condenser/job-1'"),
                     2);
        CHECK_EQ_INT(s_int(cdb, "SELECT count(*) FROM model WHERE format != 'float'"), 0);
        CHECK_EQ_INT(
            s_int(cdb, "SELECT count(*) FROM sqlite_master WHERE name = 'rollout_artifact'"), 0);
        CHECK_EQ_INT(s_sequences(cdb, "condenser/job-1"), 3);
        char rp[700];
        fx_path(rp, sizeof rp, work, "report.html");
        CHECK(strstr(json, rp) != NULL); /* the path the table names */
        uint8_t *h = NULL;
        size_t hn = 0;
        CHECK(cnd_file_read(rp, 8 << 20, &h, &hn) == 0);
        if (h) {
            const char *html = (const char *)h;
            CHECK(strstr(html, "<section id=\"verification\" class=\"passed\"") != NULL);
            CHECK(strstr(html, "id=\"rollouts\"") != NULL);
            CHECK(strstr(html, "Rollout 1 of condenser/job-1@2") != NULL);
            CHECK(s_count(html, "<tr class=\"wave") == 5); /* signed or not */
            CHECK(strstr(html, "rollout <b>completed</b>") != NULL);
            CHECK(strstr(html, "No rollout of this job") == NULL);
        }
        free(h);
    }
    free(json);
    char p[700];
    fx_path(p, sizeof p, work, "student-int8.cndq");
    CHECK(cnd_file_exists(p));
    /* the default student is a graph (depthwise-separable, residual add): its artifact is
     * format version 2, little-endian at offset 4 (docs/quantization.md) */
    {
        uint8_t *a = NULL;
        size_t an = 0;
        CHECK_EQ_INT(cnd_file_read(p, 1 << 20, &a, &an), 0);
        CHECK(a && an > 8 && (a[4] | a[5] << 8) == 2);
        free(a);
    }
    fx_path(p, sizeof p, work, "student-int8.cndq.manifest");
    CHECK(cnd_file_exists(p));
    /* The same work directory again: refused at once, naming it, and the first run's files
     * (its CA, keys and databases) untouched. */
    {
        char rlog[700];
        fx_path(rlog, sizeof rlog, f.root, "demo-again.log");
        const char *again[] = {"demo", "--workdir", work, "--quiet", NULL};
        double t0 = fx_now();
        CHECK_EQ_INT(fx_run(rlog, again), 1);
        CHECK(fx_now() - t0 < 20);
        uint8_t *l = NULL;
        size_t ln = 0;
        CHECK_EQ_INT(cnd_file_read(rlog, 1 << 20, &l, &ln), 0);
        CHECK(l && strstr((char *)l, "is not empty") && strstr((char *)l, work));
        free(l);
        fx_path(p, sizeof p, work, "student-int8.cndq");
        CHECK(cnd_file_exists(p));
    }
    fx_fed_cleanup(&f);
    return check_result("test_federation_demo");
}
