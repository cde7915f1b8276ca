/*
 * test_federation_ddp.c: distributed differential privacy (docs/privacy.md "Distributed DP"),
 * real coordinator and agent processes on loopback. Three sites of 200 synthetic records.
 *   job 1   3 rounds of 3 sites, `--dp-mode distributed --dp-epsilon 4 --dp-delta 1e-3
 *           --dp-min-survivors 2`: the job completes; every site recorded one ddg spend per
 *           round (2 parties, its noise variance) before its masked update left, the job's
 *           epsilon is at most the target and `condenser audit privacy` recomputes every entry;
 *           the final model loads and evaluates, and each round's change of the model has the
 *           spread the summed discrete Gaussian noise of 3 sites gives (so the noise was added,
 *           inside the sum, and no site added all of it).
 *   job 2   min_survivors 3, a coordinator scripted (CND_COORD_EVIL=ddp-small:1) to announce
 *           round 1 with a SecAgg+ survivor minimum of 2, so that it could unmask the sum of two
 *           sites: every site refuses the round before training (site.refuse naming
 *           dp_min_survivors, no spend, nothing masked leaves); the next attempt carries the
 *           minimum 3 and the job completes.
 *   job 3   min_survivors 3: with 2 sites connected (the quorum) no round starts; site 2 joins
 *           and drops after sharing its keys in round 1 (never masks): the coordinator refuses
 *           to unmask the two others' sum (the round's reason names dp_min_survivors); no model
 *           version comes from that round.
 *   job 4   a student with batchnorm: its running statistics are part of the noised update;
 *           the round completes and every site accounted for the update's whole length.
 */
#include "check.h"
#include "data.h"
#include "dp_accountant.h"
#include "federation_fixture.h"
#include "train.h"

#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <string.h>

/* One double (or -1) from `sql` in database `path`. */
static double s_num(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    double v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_double(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
}

static void s_db(char *out, size_t cap, fx_fed_t *f, int s)
{
    snprintf(out, cap, "%s/agent.db", f->site_dir[s]);
}

static void s_dump_logs(fx_fed_t *f)
{
    char p[400];
    fx_path(p, sizeof p, f->root, "coordinator.log");
    fx_dump(p);
    for (int s = 0; s < f->n_sites; s++) {
        snprintf(p, sizeof p, "%s/agent.log", f->site_dir[s]);
        fx_dump(p);
    }
}

static void s_slurp(const char *path, char *buf, size_t cap)
{
    buf[0] = 0;
    FILE *fp = fopen(path, "r");
    if (!fp) return;
    size_t n = fread(buf, 1, cap - 1, fp);
    buf[n] = 0;
    fclose(fp);
}

/* Model version `version` of `job` from the coordinator's store (NULL when absent). */
static cnd_model_t *s_model(fx_fed_t *f, int64_t job, int64_t version)
{
    char db[400];
    fx_path(db, sizeof db, f->coord, "coordinator.db");
    cnd_cstore_t *s = NULL;
    cnd_model_rec_t r;
    uint8_t *blob = NULL;
    size_t len = 0;
    cnd_model_t *m = NULL;
    if (cnd_cstore_open_readonly(&s, db) == 0 &&
        cnd_cstore_model_get(s, job, version, "float", &r, &blob, &len) == 0) {
        if (cnd_model_deserialize(&m, blob, len, "model")) m = NULL;
        cnd_model_rec_free(&r);
    }
    free(blob);
    cnd_cstore_close(&s);
    return m;
}

static int s_cmp(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Runs the coordinator (env: its environment, may be NULL) and the three agents until the
 * coordinator is done. */
static void s_run(fx_fed_t *f, const char *const *env)
{
    char log[400];
    fx_path(log, sizeof log, f->root, "coordinator.log");
    const char *args[] = {"coordinator", "run",          "--dir",          f->coord, "--endpoint",
                          f->endpoint,   "--until-done", "--heartbeat-ms", "500",    NULL};
    pid_t coord = fx_spawn(log, env, args);
    pid_t ag[3];
    for (int s = 0; s < 3; s++) ag[s] = fx_start_agent(f, s, NULL);
    CHECK_EQ_INT(fx_wait(coord, 150), 0);
    for (int s = 0; s < 3; s++) CHECK_EQ_INT(fx_wait(ag[s], 30), 0);
}

/* Job 1's checks at site s: the spends and the auditor. */
static void s_spends(fx_fed_t *f, int s, double *s2, double *eps)
{
    char db[400];
    s_db(db, sizeof db, f, s);
    CHECK_EQ_INT((int)s_num(db, "SELECT count(*) FROM agent_dp_spend WHERE job = 1"), 3);
    CHECK_EQ_INT((int)s_num(db, "SELECT min(ddg_parties) FROM agent_dp_spend WHERE job = 1"), 2);
    CHECK_EQ_INT((int)s_num(db, "SELECT max(ddg_parties) FROM agent_dp_spend WHERE job = 1"), 2);
    *s2 = s_num(db, "SELECT ddg_s2 FROM agent_dp_spend WHERE job = 1 LIMIT 1");
    *eps = s_num(db, "SELECT epsilon_job FROM agent_dp_spend WHERE job = 1 ORDER BY id DESC "
                     "LIMIT 1");
    CHECK(*eps > 3.9 && *eps <= 4.0); /* the noise was solved for epsilon 4 at 2 survivors */
    /* each round's spend was recorded before its masked update left */
    CHECK_EQ_INT(
        (int)s_num(db, "SELECT count(*) FROM audit_entry m WHERE m.action = 'egress' AND m.job = "
                       "'1' AND json_extract(m.entry, '$.details.type') = 'masked_input' AND NOT "
                       "EXISTS (SELECT 1 FROM audit_entry d WHERE d.action = 'dp.spend' AND "
                       "d.seq < m.seq AND d.job = m.job AND json_extract(d.entry, "
                       "'$.details.round') = json_extract(m.entry, '$.details.round'))"),
        0);
    CHECK((int)s_num(db, "SELECT count(*) FROM audit_entry WHERE action = 'egress' AND job = '1' "
                         "AND json_extract(entry, '$.details.type') = 'masked_input'") >= 3);
    /* the auditor recomputes every entry from the log alone */
    char log[400], out[400], cmd[2048], text[16384];
    fx_path(log, sizeof log, f->root, "audit.log");
    fx_path(out, sizeof out, f->root, "privacy.json");
    snprintf(cmd, sizeof cmd, "'%s' audit privacy '%s' --job 1 --json > '%s' 2>>'%s'", fx_bin(), db,
             out, log);
    CHECK_EQ_INT(system(cmd), 0);
    s_slurp(out, text, sizeof text);
    CHECK(strstr(text, "\"entries\":3") && strstr(text, "\"bad\":0"));
    CHECK(strstr(text, "\"mechanism\":\"ddg\"") && strstr(text, "\"parties\":2"));
    CHECK(strstr(text, "\"ok\":false") == NULL);
}

/* Job 1: an honest distributed-DP job to the end. */
static void s_job_one(fx_fed_t *f)
{
    const char *job[] = {"--rounds",  "3",           "--sites",
                         "3",         "--quorum",    "2",
                         "--dp-mode", "distributed", "--dp-epsilon",
                         "4",         "--dp-delta",  "1e-3",
                         "--dp-clip", "0.05",        "--dp-min-survivors",
                         "2",         "--masked-ms", "20000",
                         NULL};
    fx_job_create(f, job);
    s_run(f, NULL);
    char state[32] = "";
    CHECK_EQ_INT(fx_job_state(f, state, sizeof state), 0);
    CHECK(strcmp(state, "completed") == 0);
    double s2 = 0, eps = 0, s2_0 = 0;
    for (int s = 0; s < 3; s++) {
        s_spends(f, s, &s2, &eps);
        if (s == 0) s2_0 = s2;
        CHECK_NEAR(s2, s2_0, 0); /* the same variance at every site */
    }
    /* The final model loads and evaluates on a site's data. */
    cnd_model_t *v0 = s_model(f, 1, 0), *v1 = s_model(f, 1, 1), *v3 = s_model(f, 1, 3);
    CHECK(v0 && v1 && v3);
    if (!v0 || !v1 || !v3) goto done;
    cnd_dataset_t *ds = NULL;
    char img[400], lab[400];
    fx_path(img, sizeof img, f->site_dir[0], "images.idx");
    fx_path(lab, sizeof lab, f->site_dir[0], "labels.idx");
    CHECK_EQ_INT(cnd_data_load_idx(&ds, img, lab), 0);
    cnd_eval_t ev;
    if (ds) {
        CHECK_EQ_INT(cnd_evaluate(v3, ds, 64, &ev), 0);
        CHECK(isfinite(ev.loss) && ev.acc >= 0 && ev.acc <= 1);
        fprintf(stderr, "final model: loss %.4f accuracy %.4f on site 0's records\n", ev.loss,
                ev.acc);
    }
    cnd_data_destroy(&ds);
    /* Round 1's change of the model is the average of 3 clipped updates plus the noise of 3
     * sites, each N_Z(0, s2) in units of gamma = clip / Q (Q = 127 at 8 value bits), divided by
     * 3: its median absolute value is 0.6745 sqrt(3 s2) gamma / 3 (the updates themselves, of
     * L2 norm <= clip over all coordinates, are far smaller per coordinate). */
    size_t np = v0->num_params;
    float *d = malloc(np * sizeof *d);
    CHECK(d != NULL && v1->num_params == np);
    if (d && v1->num_params == np) {
        for (size_t i = 0; i < np; i++) d[i] = fabsf(v1->params[i] - v0->params[i]);
        qsort(d, np, sizeof *d, s_cmp);
        double med = d[np / 2], want = 0.6745 * sqrt(3 * s2_0) * (0.05 / 127.0) / 3;
        fprintf(stderr, "round 1: median |change| %.6g, noise predicts %.6g (s2 %.0f)\n", med, want,
                s2_0);
        CHECK(med > 0.8 * want && med < 1.25 * want);
        /* no site added all of the noise: one site's share is the sum's / sqrt(3) */
        CHECK(med < 0.8 * 0.6745 * sqrt(3 * 3 * s2_0) * (0.05 / 127.0) / 3);
    }
    free(d);
done:
    cnd_model_destroy(&v0);
    cnd_model_destroy(&v1);
    cnd_model_destroy(&v3);
}

/* A round of `job` by (round, attempt): its outcome and reason into out; 0 when found. */
static int s_round_of(fx_fed_t *f, int job, int round, int attempt, char *outcome, size_t ocap,
                      char *reason, size_t rcap)
{
    char db[400];
    fx_path(db, sizeof db, f->coord, "coordinator.db");
    cnd_cstore_t *s = NULL;
    cnd_round_rec_t *list = NULL;
    size_t n = 0;
    int found = -1;
    if (cnd_cstore_open_readonly(&s, db) == 0 && cnd_cstore_rounds(s, job, &list, &n) == 0)
        for (size_t i = 0; i < n; i++)
            if ((int)list[i].round == round && (int)list[i].attempt == attempt) {
                snprintf(outcome, ocap, "%s", list[i].outcome);
                snprintf(reason, rcap, "%s", list[i].reason);
                found = 0;
            }
    fx_rounds_free(list, n);
    cnd_cstore_close(&s);
    return found;
}

/* Job 2: the coordinator lowers the SecAgg+ survivor minimum in round 1; every site refuses. */
static void s_job_two(fx_fed_t *f)
{
    const char *job[] = {
        "--rounds",           "1",           "--sites",        "3",    "--quorum",   "2",
        "--dp-mode",          "distributed", "--dp-noise",     "1",    "--dp-delta", "1e-3",
        "--dp-min-survivors", "3",           "--join-wait-ms", "3000", NULL};
    fx_job_create(f, job);
    const char *env[] = {"CND_COORD_EVIL=ddp-small:1", NULL};
    s_run(f, env);
    char outcome[64] = "", reason[512] = "", db[400];
    CHECK_EQ_INT(s_round_of(f, 2, 1, 1, outcome, sizeof outcome, reason, sizeof reason), 0);
    CHECK(strcmp(outcome, "ok") != 0);
    for (int s = 0; s < 3; s++) {
        s_db(db, sizeof db, f, s);
        CHECK_EQ_INT((int)s_num(db, "SELECT count(*) FROM audit_entry WHERE action = "
                                    "'site.refuse' AND job = '2' AND entry LIKE '%survivor "
                                    "minimum 2 is below 3%dp_min_survivors%'"),
                     1);
        /* refused before training: no spend and nothing masked for attempt 1 */
        CHECK_EQ_INT((int)s_num(db, "SELECT count(*) FROM agent_dp_spend WHERE job = 2 AND "
                                    "attempt = 1"),
                     0);
        CHECK_EQ_INT((int)s_num(db, "SELECT count(*) FROM agent_round WHERE job = 2 AND round = 1 "
                                    "AND attempt = 1 AND phase IN ('masked', 'signed', "
                                    "'unmasked')"),
                     0);
    }
    /* the next attempt asked for 3 survivors and the job completed */
    fx_path(db, sizeof db, f->coord, "coordinator.db");
    CHECK_EQ_INT((int)s_num(db, "SELECT count(*) FROM job WHERE id = 2 AND state = 'completed'"),
                 1);
}

/* Job 3: with 2 of its 3 sites connected past the join wait the coordinator does not start a
 * round (2 is the quorum, but below min_survivors 3); then site 2 joins and drops after sharing
 * its keys in round 1 (never masks): the coordinator does not unmask the two others' sum. */
static void s_job_three(fx_fed_t *f)
{
    const char *job[] = {"--rounds",
                         "1",
                         "--sites",
                         "3",
                         "--quorum",
                         "2",
                         "--dp-mode",
                         "distributed",
                         "--dp-noise",
                         "1",
                         "--dp-delta",
                         "1e-3",
                         "--dp-min-survivors",
                         "3",
                         "--join-wait-ms",
                         "2000",
                         "--masked-ms",
                         "4000",
                         NULL};
    fx_job_create(f, job);
    char log[400], cdb[400];
    fx_path(log, sizeof log, f->root, "coordinator.log");
    fx_path(cdb, sizeof cdb, f->coord, "coordinator.db");
    const char *args[] = {"coordinator", "run",          "--dir",          f->coord, "--endpoint",
                          f->endpoint,   "--until-done", "--heartbeat-ms", "500",    NULL};
    pid_t coord = fx_spawn(log, NULL, args);
    pid_t ag[3];
    for (int s = 0; s < 2; s++) ag[s] = fx_start_agent(f, s, NULL);
    fx_sleep_ms(6000); /* three times the join wait */
    CHECK_EQ_INT((int)s_num(cdb, "SELECT count(*) FROM round WHERE job = 3"), 0);
    const char *fenv[] = {"CND_AGENT_FAULT=shares:1", NULL};
    ag[2] = fx_start_agent(f, 2, fenv);
    CHECK_EQ_INT(fx_wait(coord, 150), 0);
    for (int s = 0; s < 2; s++) CHECK_EQ_INT(fx_wait(ag[s], 30), 0);
    fx_wait(ag[2], 10); /* killed itself */
    char outcome[64] = "", reason[512] = "", db[400];
    CHECK_EQ_INT(s_round_of(f, 3, 1, 1, outcome, sizeof outcome, reason, sizeof reason), 0);
    CHECK(strcmp(outcome, "ok") != 0);
    CHECK(strstr(reason, "2 sites sent masked updates, fewer than the job's dp_min_survivors 3"));
    cnd_model_t *m = s_model(f, 3, 1);
    CHECK(m == NULL); /* nothing applied */
    cnd_model_destroy(&m);
    for (int s = 0; s < 2; s++) { /* the two that masked never answered an unmask request */
        s_db(db, sizeof db, f, s);
        CHECK_EQ_INT((int)s_num(db, "SELECT count(*) FROM audit_entry WHERE action = 'egress' "
                                    "AND job = '3' AND json_extract(entry, '$.details.type') LIKE "
                                    "'unmask%'"),
                     0);
    }
}

/* Job 4: a student with batchnorm (allowed under distributed DP: the running statistics are
 * part of the update and noised with it): the round completes, so the sites' encoding and the
 * coordinator's layout agree, and every site accounted for the update's whole length. */
static void s_job_four(fx_fed_t *f)
{
    const char *arch = "conv2d(4,3,pad=1) batchnorm relu flatten dense(4)";
    char log[400], teacher[400];
    fx_path(log, sizeof log, f->root, "setup.log");
    fx_path(teacher, sizeof teacher, f->root, "teacher.cnd");
    const char *args[] = {"job",
                          "create",
                          "--dir",
                          f->coord,
                          "--student-arch",
                          arch,
                          "--teacher",
                          teacher,
                          "--batch",
                          "16",
                          "--lr",
                          "0.01",
                          "--rounds",
                          "1",
                          "--sites",
                          "3",
                          "--quorum",
                          "2",
                          "--dp-mode",
                          "distributed",
                          "--dp-epsilon",
                          "4",
                          "--dp-delta",
                          "1e-3",
                          "--dp-min-survivors",
                          "2",
                          NULL};
    CHECK_EQ_INT(fx_run(log, args), 0);
    s_run(f, NULL);
    char db[400];
    fx_path(db, sizeof db, f->coord, "coordinator.db");
    CHECK_EQ_INT((int)s_num(db, "SELECT count(*) FROM job WHERE id = 4 AND state = 'completed'"),
                 1);
    cnd_model_t *m = NULL;
    CHECK_EQ_INT(cnd_model_new(&m, arch, (cnd_shape_t){1, 8, 8}, 1), 0);
    if (!m) return;
    CHECK(m->num_state > 0);
    for (int s = 0; s < 3; s++) {
        s_db(db, sizeof db, f, s);
        CHECK_EQ_INT((int)s_num(db, "SELECT min(ddg_dim) FROM agent_dp_spend WHERE job = 4"),
                     (int)(m->num_params + m->num_state));
    }
    cnd_model_destroy(&m);
}

int main(void)
{
    fx_fed_t f;
    fx_fed_init(&f, "ddp", 3);
    fx_fed_setup(&f, 200, NULL, 0);
    for (int s = 0; s < 3; s++) {
        FILE *ini = fopen(f.site_ini[s], "a");
        CHECK(ini != NULL);
        if (!ini) continue;
        fprintf(ini, "[privacy]\nmax_epsilon_job = 4.5\nmax_epsilon_total = 1000\n"
                     "max_delta = 1e-3\n");
        fclose(ini);
    }
    s_job_one(&f);
    if (!check_failures) s_job_two(&f);
    if (!check_failures) s_job_three(&f);
    if (!check_failures) s_job_four(&f);
    if (check_failures) s_dump_logs(&f);
    fx_fed_cleanup(&f);
    return check_result("test_federation_ddp");
}
