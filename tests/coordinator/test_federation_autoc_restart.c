/*
 * test_federation_autoc_restart.c: the coordinator killed (SIGKILL) during a federated
 * AutoCompress search and started again. It is killed as soon as round 2 appears in its
 * database (in flight, or just done); after the restart the search goes on from what was
 * committed: the job completes; every round completed exactly once (an interrupted attempt is
 * "restarted", never half-applied); the stored sums are 4 candidates in round 1, then 2, then
 * 1, and each candidate's totals are exactly the sum of its rounds' rows (no round counted
 * twice, none lost); the pick is model version 1; the audit log verifies.
 */
#include "check.h"
#include "coord_autoc.h"
#include "coord_store.h"
#include "federation_fixture.h"

#include <signal.h>
#include <string.h>

static void s_candidate(const char *path, int which)
{
    cnd_model_t *m = NULL;
    CHECK_EQ_INT(cnd_model_new(&m, "flatten dense(4)", (cnd_shape_t){1, 8, 8}, 5 + (uint64_t)which),
                 0);
    if (!m) return;
    m->norm_mean[0] = 100.0f;
    m->norm_std[0] = 60.0f;
    if (which == 0)
        for (int c = 0; c < 4; c++)
            for (int p = 0; p < 64; p++)
                m->params[c * 64 + p] = ((p / 8 >= 4) * 2 + (p % 8 >= 4)) == c ? 1.0f : 0.0f;
    CHECK_EQ_INT(cnd_model_save(m, path), 0);
    cnd_model_destroy(&m);
}

static void s_kill_in_round2(fx_fed_t *f, pid_t coord)
{
    int killed = 0;
    double end = fx_now() + 40;
    while (!killed && fx_now() < end) {
        cnd_round_rec_t *r = NULL;
        size_t n = 0;
        if (fx_rounds(f, &r, &n) == 0) {
            for (size_t i = 0; i < n && !killed; i++)
                if (r[i].round == 2) {
                    kill(coord, SIGKILL);
                    killed = 1;
                    fprintf(stderr, "killed the coordinator in round 2, phase %s, outcome '%s'\n",
                            r[i].phase, r[i].outcome);
                }
            fx_rounds_free(r, n);
        } else {
            cnd_err_clear();
        }
        fx_sleep_ms(2);
    }
    CHECK(killed);
    CHECK_EQ_INT(fx_wait(coord, 10), 128 + SIGKILL);
}

static void s_check_store(fx_fed_t *f)
{
    cnd_round_rec_t *r = NULL;
    size_t n = 0;
    CHECK_EQ_INT(fx_rounds(f, &r, &n), 0);
    int ok[4] = {0};
    for (size_t i = 0; i < n; i++) {
        if (strcmp(r[i].outcome, "ok") == 0 && r[i].round <= 3)
            ok[r[i].round]++;
        else
            CHECK(strcmp(r[i].outcome, "restarted") == 0 || strcmp(r[i].outcome, "retry") == 0);
    }
    for (int k = 1; k <= 3; k++) CHECK_EQ_INT(ok[k], 1);
    fx_rounds_free(r, n);
    char db[400];
    fx_path(db, sizeof db, f->coord, "coordinator.db");
    cnd_cstore_t *st = NULL;
    CHECK_EQ_INT(cnd_cstore_open_readonly(&st, db), 0);
    if (!st) return;
    cnd_autoc_cand_t *l = NULL;
    size_t nl = 0;
    CHECK_EQ_INT(cnd_autoc_list(st, 1, &l, &nl), 0);
    CHECK_EQ_INT(nl, 4);
    uint32_t per_round[4] = {0};
    for (size_t i = 0; i < nl; i++) {
        uint64_t sv = 0, sc = 0;
        uint32_t rounds = 0;
        for (uint32_t k = 1; k <= 3; k++) {
            uint64_t v, c;
            if (cnd_autoc_result(st, 1, k, l[i].idx, &v, &c) != 0) {
                cnd_err_clear();
                continue;
            }
            sv += v;
            sc += c;
            rounds++;
            per_round[k]++;
        }
        CHECK_EQ_INT(sv, l[i].validated);
        CHECK_EQ_INT(sc, l[i].correct);
        CHECK_EQ_INT(rounds, l[i].rounds);
    }
    CHECK_EQ_INT(per_round[1], 4);
    CHECK_EQ_INT(per_round[2], 2);
    CHECK_EQ_INT(per_round[3], 1);
    uint32_t pick = 99;
    CHECK_EQ_INT(cnd_autoc_pick(st, 1, &pick), 0);
    CHECK_EQ_INT(pick, 0);
    cnd_model_rec_t m;
    CHECK_EQ_INT(cnd_cstore_model_get(st, 1, 1, "float", &m, NULL, NULL), 0);
    if (m.version == 1) cnd_model_rec_free(&m);
    free(l);
    cnd_cstore_close(&st);
}

int main(void)
{
    fx_fed_t f;
    fx_fed_init(&f, "autoc-restart", 3);
    fx_fed_setup(&f, 200, NULL, 0);
    char cands[4 * 420] = "", teacher[400], log[400];
    for (int i = 0; i < 4; i++) {
        char p[400];
        snprintf(p, sizeof p, "%s/cand%d.cnd", f.root, i);
        s_candidate(p, i);
        if (i) strcat(cands, ",");
        strcat(cands, p);
    }
    fx_path(teacher, sizeof teacher, f.root, "teacher.cnd");
    fx_path(log, sizeof log, f.root, "setup.log");
    const char *create[] = {
        "job",          "create", "--dir",       f.coord, "--kind",         "autocompress",
        "--candidates", cands,    "--teacher",   teacher, "--rounds",       "3",
        "--sites",      "3",      "--masked-ms", "15000", "--advertise-ms", "4000",
        "--unmask-ms",  "4000",   NULL};
    CHECK_EQ_INT(fx_run(log, create), 0);
    pid_t coord = fx_start_coordinator(&f, NULL);
    pid_t ag[3];
    for (int s = 0; s < 3; s++) ag[s] = fx_start_agent(&f, s, NULL);
    s_kill_in_round2(&f, coord);
    fx_sleep_ms(300);
    coord = fx_start_coordinator(&f, NULL);
    CHECK_EQ_INT(fx_wait(coord, 50), 0);
    for (int s = 0; s < 3; s++) CHECK_EQ_INT(fx_wait(ag[s], 20), 0);
    char state[32] = "";
    CHECK_EQ_INT(fx_job_state(&f, state, sizeof state), 0);
    CHECK(strcmp(state, "completed") == 0);
    s_check_store(&f);
    char db[400];
    fx_path(db, sizeof db, f.coord, "coordinator.db");
    const char *vc[] = {"audit", "verify", db, NULL};
    CHECK_EQ_INT(fx_run(log, vc), 0);
    if (check_failures) {
        char p[400];
        fx_path(p, sizeof p, f.root, "coordinator.log");
        fx_dump(p);
        for (int s = 0; s < 3; s++) {
            snprintf(p, sizeof p, "%s/agent.log", f.site_dir[s]);
            fx_dump(p);
        }
    }
    fx_fed_cleanup(&f);
    return check_result("test_federation_autoc_restart");
}
