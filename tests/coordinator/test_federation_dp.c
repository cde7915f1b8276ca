/*
 * test_federation_dp.c: differential privacy in federated jobs (docs/privacy.md "Federated
 * jobs"), real coordinator and agent processes on loopback. Three sites of 200 synthetic
 * records (160 for training, so a batch of 16 samples at q = 0.1, 10 DP-SGD steps per epoch).
 * Budgets: sites 0 and 1 allow epsilon 4 per job and 4 in total (delta 1e-3), site 2 only 2
 * per job.
 *   job 1   3 rounds of 2 sites at noise multiplier 1, the last a QAT round: each site spends
 *           epsilon 3.2, so site 2 refuses the job naming the figure and its budget; sites 0 and
 *           1 run it to the end with DP-SGD (the QAT round through the fake quantization, counted
 *           like the others), each round's spend in their store and audit log (dp.spend) before
 *           the update left. `condenser audit privacy` recomputes the spends (and fails on a log
 *           whose logged epsilon was altered); the HTML report draws epsilon over the rounds.
 *   job 2   a coordinator that solves the noise for a claimed epsilon of 1 at sites of 10^6
 *           records (so the recipe announces target_epsilon 1, within every budget): the sites
 *           compute their own spend from their own 160 records, far over 4, and refuse.
 *   job 3   job 1's recipe again: within the per-job budget, but the sites' total, composed
 *           with what job 1 spent (kept in their store across restarts), goes over 4: refused.
 */
#include "check.h"
#include "dp_accountant.h"
#include "federation_fixture.h"

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

/* site.refuse entries of site s whose entry contains `text`. */
static int s_refusals(fx_fed_t *f, int s, const char *text)
{
    char db[400], sql[600];
    s_db(db, sizeof db, f, s);
    snprintf(
        sql, sizeof sql,
        "SELECT count(*) FROM audit_entry WHERE action = 'site.refuse' AND entry LIKE '%%%s%%'",
        text);
    return (int)s_num(db, sql);
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

/* Reads a whole (small) file into buf. */
static void s_slurp(const char *path, char *buf, size_t cap)
{
    buf[0] = 0;
    FILE *fp = fopen(path, "r");
    if (!fp) return;
    size_t n = fread(buf, 1, cap - 1, fp);
    buf[n] = 0;
    fclose(fp);
}

static const char *const s_recipe[] = {
    "--rounds",       "3",    "--sites",   "2", "--quorum",   "2",    "--threshold", "2",
    "--dp-noise",     "1",    "--dp-clip", "1", "--dp-delta", "1e-3", "--masked-ms", "20000",
    "--join-wait-ms", "3000", NULL};

static void s_job_one(fx_fed_t *f)
{
    /* the last round trains with fake quantization, calibrated by the coordinator on site 2's
     * records standing in for a public set (site 2 takes no part in the job) */
    char img[400], lab[400], calib[900];
    const char *extra[40];
    int n = 0;
    fx_path(img, sizeof img, f->site_dir[2], "images.idx");
    fx_path(lab, sizeof lab, f->site_dir[2], "labels.idx");
    snprintf(calib, sizeof calib, "idx:%s,%s", img, lab);
    for (; s_recipe[n]; n++) extra[n] = s_recipe[n];
    extra[n++] = "--qat-rounds";
    extra[n++] = "1";
    extra[n++] = "--calib-data";
    extra[n++] = calib;
    extra[n] = NULL;
    fx_job_create(f, extra);
    pid_t coord = fx_start_coordinator(f, NULL);
    pid_t ag[3];
    for (int s = 0; s < 3; s++) ag[s] = fx_start_agent(f, s, NULL);
    CHECK_EQ_INT(fx_wait(coord, 120), 0);
    for (int s = 0; s < 2; s++) CHECK_EQ_INT(fx_wait(ag[s], 20), 0);
    kill(ag[2], SIGTERM); /* it refused the job and has nothing to wait for */
    fx_wait(ag[2], 10);
    char state[32] = "";
    CHECK_EQ_INT(fx_job_state(f, state, sizeof state), 0);
    CHECK(strcmp(state, "completed") == 0);
    /* the last round was a QAT round, and it completed */
    char cdb[400];
    fx_path(cdb, sizeof cdb, f->coord, "coordinator.db");
    CHECK_EQ_INT((int)s_num(cdb, "SELECT count(*) FROM round WHERE job = 1 AND qat = 1 AND "
                                 "outcome = 'ok'"),
                 1);
    CHECK_EQ_INT((int)s_num(cdb, "SELECT max(round) FROM round WHERE job = 1 AND qat = 1"), 3);
    /* site 2 refused by its budget, with the figure */
    CHECK_EQ_INT(s_refusals(f, 2, "epsilon 3.201, over this site''s [privacy] max_epsilon_job 2"),
                 1);
    char db[400];
    s_db(db, sizeof db, f, 2);
    CHECK_EQ_INT((int)s_num(db, "SELECT count(*) FROM agent_dp_spend"), 0);
    /* sites 0 and 1 trained every round with DP-SGD and recorded each spend */
    double eps_ref = 0;
    cnd_dp_params_t p = {.q = 0.1, .sigma = 1, .steps = 30, .delta = 1e-3};
    CHECK_EQ_INT(cnd_dp_epsilon(&p, &eps_ref, NULL), 0);
    for (int s = 0; s < 2; s++) {
        s_db(db, sizeof db, f, s);
        CHECK_EQ_INT((int)s_num(db, "SELECT count(*) FROM agent_dp_spend"), 3);
        CHECK_EQ_INT((int)s_num(db, "SELECT count(*) FROM audit_entry WHERE action = 'dp.spend'"),
                     3);
        CHECK_NEAR(s_num(db, "SELECT q FROM agent_dp_spend LIMIT 1"), 0.1, 1e-12);
        CHECK_EQ_INT((int)s_num(db, "SELECT sum(steps) FROM agent_dp_spend"), 30);
        double e = s_num(db, "SELECT epsilon_job FROM agent_dp_spend ORDER BY id DESC LIMIT 1");
        CHECK_NEAR(e, eps_ref, 1e-9 * eps_ref);
        CHECK(e > 3.2 && e < 3.21);
        /* every masked update that left came after its round's spend was recorded */
        CHECK((int)s_num(db, "SELECT count(*) FROM audit_entry WHERE action = 'egress' AND "
                             "json_extract(entry, '$.details.type') = 'masked_input'") >= 3);
        CHECK_EQ_INT(
            (int)s_num(db,
                       "SELECT count(*) FROM audit_entry m WHERE m.action = 'egress' AND "
                       "json_extract(m.entry, '$.details.type') = 'masked_input' AND NOT EXISTS "
                       "(SELECT 1 FROM audit_entry d WHERE d.action = 'dp.spend' AND d.seq < "
                       "m.seq AND d.job = m.job AND json_extract(d.entry, '$.details.round') = "
                       "json_extract(m.entry, '$.details.round'))"),
            0);
    }
    /* the auditor's recomputation matches; an altered log does not */
    char log[400], out[400], copy[400], cmd[4096], text[16384];
    fx_path(log, sizeof log, f->root, "audit.log");
    fx_path(out, sizeof out, f->root, "privacy.json");
    s_db(db, sizeof db, f, 0);
    snprintf(cmd, sizeof cmd, "'%s' audit privacy '%s' --json > '%s' 2>>'%s'", fx_bin(), db, out,
             log);
    CHECK_EQ_INT(system(cmd), 0);
    s_slurp(out, text, sizeof text);
    CHECK(strstr(text, "\"entries\":3") != NULL && strstr(text, "\"bad\":0") != NULL);
    CHECK(strstr(text, "\"ok\":false") == NULL);
    fx_path(copy, sizeof copy, f->root, "altered.db");
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", db, copy);
    CHECK_EQ_INT(system(cmd), 0);
    sqlite3 *h = NULL;
    CHECK(sqlite3_open(copy, &h) == SQLITE_OK);
    CHECK(sqlite3_exec(h,
                       "DROP TRIGGER audit_entry_no_update; " /* a forger's copy */
                       "UPDATE audit_entry SET entry = replace(entry, '\"epsilon\":', "
                       "'\"epsilon\":0.5') WHERE seq = (SELECT max(seq) FROM audit_entry WHERE "
                       "action = 'dp.spend')",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(h);
    snprintf(cmd, sizeof cmd, "'%s' audit privacy '%s' >> '%s' 2>&1", fx_bin(), copy, log);
    CHECK(system(cmd) != 0);
    /* the report draws epsilon over the rounds */
    fx_path(out, sizeof out, f->root, "report.html");
    const char *rep[] = {"audit", "report", db, "--job", "1", "--out", out, NULL};
    CHECK_EQ_INT(fx_run(log, rep), 0);
    s_slurp(out, text, sizeof text);
    CHECK(strstr(text, "id=\"chart-epsilon\" class=\"chart\" data-points=\"3\"") != NULL);
}

/* Starts the coordinator and the three agents and waits until sites 0 and 1 refused with
 * `text` in the reason; stops them all. */
static void s_refused_by_01(fx_fed_t *f, const char *text)
{
    pid_t coord = fx_start_coordinator(f, NULL);
    pid_t ag[3];
    for (int s = 0; s < 3; s++) ag[s] = fx_start_agent(f, s, NULL);
    int all = 0;
    for (double end = fx_now() + 40; fx_now() < end && !all; fx_sleep_ms(200))
        all = s_refusals(f, 0, text) >= 1 && s_refusals(f, 1, text) >= 1;
    CHECK(all);
    for (int s = 0; s < 3; s++) {
        kill(ag[s], SIGTERM);
        fx_wait(ag[s], 10);
    }
    kill(coord, SIGTERM);
    fx_wait(coord, 10);
}

int main(void)
{
    fx_fed_t f;
    fx_fed_init(&f, "dp", 3);
    fx_fed_setup(&f, 200, NULL, 0);
    for (int s = 0; s < 3; s++) {
        FILE *ini = fopen(f.site_ini[s], "a");
        CHECK(ini != NULL);
        if (!ini) continue;
        fprintf(ini, "[privacy]\nmax_epsilon_job = %s\nmax_epsilon_total = 4\nmax_delta = 1e-3\n",
                s == 2 ? "2" : "4");
        fclose(ini);
    }
    s_job_one(&f);
    char log[400];
    fx_path(log, sizeof log, f.root, "setup.log");
    if (!check_failures) {
        const char *lie[] = {"--rounds",          "3",       "--sites",     "2",
                             "--quorum",          "2",       "--threshold", "2",
                             "--dp-epsilon",      "1",       "--dp-delta",  "1e-3",
                             "--dp-site-samples", "1000000", NULL};
        fx_job_create(&f, lie);
        s_refused_by_01(&f, "over this site''s [privacy] max_epsilon_job 4");
        const char *cancel[] = {"job", "cancel", "2", "--dir", f.coord, NULL};
        CHECK_EQ_INT(fx_run(log, cancel), 0);
    }
    if (!check_failures) {
        fx_job_create(&f, s_recipe);
        s_refused_by_01(&f, "over its [privacy] max_epsilon_total 4");
    }
    if (check_failures) s_dump_logs(&f);
    fx_fed_cleanup(&f);
    return check_result("test_federation_dp");
}
