/*
 * test_federation_restart.c: the coordinator is killed (SIGKILL) in the middle of a round and
 * started again. The job must complete; the interrupted round must be recorded as "restarted"
 * and run again (same round number, next attempt) rather than half-applied; every completed
 * round must have produced exactly one model version, in order; and the audit log must verify.
 */
#include "check.h"
#include "coord_store.h"
#include "test_federation_fixture.h"

#include <string.h>

int main(void)
{
    fx_fed_t f;
    fx_fed_init(&f, "restart", 3);
    fx_fed_setup(&f, 200, NULL, 0);
    const char *job[] = {
        "--rounds",       "3",     "--sites",        "3",     "--quorum",   "2",
        "--local-epochs", "20",    "--advertise-ms", "15000", "--share-ms", "15000",
        "--masked-ms",    "20000", "--unmask-ms",    "10000", NULL};
    fx_job_create(&f, job);
    pid_t coord = fx_start_coordinator(&f, NULL);
    pid_t ag[3];
    for (int s = 0; s < 3; s++) ag[s] = fx_start_agent(&f, s, NULL);

    /* Kill the coordinator as soon as round 2 is in flight. */
    int killed = 0;
    double end = fx_now() + 30;
    while (!killed && fx_now() < end) {
        cnd_round_rec_t *r = NULL;
        size_t n = 0;
        if (fx_rounds(&f, &r, &n) == 0) {
            for (size_t i = 0; i < n; i++)
                if (r[i].round == 2 && r[i].outcome[0] == 0) {
                    kill(coord, SIGKILL);
                    killed = 1;
                    fprintf(stderr, "restart: killed the coordinator in round 2, phase %s\n",
                            r[i].phase);
                }
            fx_rounds_free(r, n);
        }
        fx_sleep_ms(5);
    }
    CHECK(killed);
    CHECK_EQ_INT(fx_wait(coord, 10), 128 + SIGKILL);
    fx_sleep_ms(300);
    coord = fx_start_coordinator(&f, NULL);
    CHECK_EQ_INT(fx_wait(coord, 50), 0);
    for (int s = 0; s < 3; s++) CHECK_EQ_INT(fx_wait(ag[s], 10), 0);

    char state[32] = "";
    CHECK_EQ_INT(fx_job_state(&f, state, sizeof state), 0);
    CHECK(strcmp(state, "completed") == 0);
    cnd_round_rec_t *r = NULL;
    size_t n = 0;
    CHECK_EQ_INT(fx_rounds(&f, &r, &n), 0);
    int restarted = -1, ok_rounds = 0;
    int64_t next_version = 1;
    for (size_t i = 0; i < n; i++) {
        fprintf(stderr, "round %u attempt %u: %s %s (model v%lld)\n", r[i].round, r[i].attempt,
                r[i].outcome, r[i].reason, (long long)r[i].model_version);
        if (strcmp(r[i].outcome, "restarted") == 0) {
            CHECK(restarted < 0);
            restarted = (int)i;
            CHECK_EQ_INT(r[i].model_version, -1);
            /* it is followed by the same round, next attempt */
            CHECK(i + 1 < n);
            if (i + 1 < n) {
                CHECK_EQ_INT(r[i + 1].round, r[i].round);
                CHECK_EQ_INT(r[i + 1].attempt, r[i].attempt + 1);
            }
        } else {
            CHECK(strcmp(r[i].outcome, "ok") == 0);
            CHECK_EQ_INT(r[i].model_version, next_version);
            CHECK_EQ_INT(r[i].survivors, 3);
            next_version++;
            ok_rounds++;
        }
    }
    CHECK(restarted >= 0);
    if (restarted >= 0) CHECK_EQ_INT(r[restarted].round, 2);
    CHECK_EQ_INT(ok_rounds, 3);
    fx_rounds_free(r, n);

    /* One model version per completed round, each recorded with its round. */
    char db[400];
    fx_path(db, sizeof db, f.coord, "coordinator.db");
    cnd_cstore_t *s = NULL;
    CHECK_EQ_INT(cnd_cstore_open_readonly(&s, db), 0);
    cnd_model_rec_t *m = NULL;
    size_t nm = 0;
    if (s) CHECK_EQ_INT(cnd_cstore_models(s, 1, &m, &nm), 0);
    CHECK_EQ_INT(nm, 4);
    for (size_t i = 0; i < nm; i++) {
        CHECK_EQ_INT(m[i].version, (int64_t)i);
        CHECK_EQ_INT(m[i].round, (int64_t)i);
        cnd_model_rec_free(&m[i]);
    }
    free(m);
    cnd_cstore_close(&s);

    char log[400];
    fx_path(log, sizeof log, f.root, "verify.log");
    const char *ver[] = {"audit", "verify", db, NULL};
    CHECK_EQ_INT(fx_run(log, ver), 0);
    if (check_failures) {
        char p[400];
        fx_path(p, sizeof p, f.root, "coordinator.log");
        fx_dump(p);
        for (int i = 0; i < 3; i++) {
            snprintf(p, sizeof p, "%s/agent.log", f.site_dir[i]);
            fx_dump(p);
        }
    }
    fx_fed_cleanup(&f);
    return check_result("test_federation_restart");
}
