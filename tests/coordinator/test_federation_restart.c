/*
 * test_federation_restart.c: processes killed (SIGKILL) in the middle of rounds and started
 * again.
 *   - A site's agent is killed as round 1 opens and restarted at once: round 1's attempt lacks
 *     its keys and is run again (a "retry"), and completes with whoever is there; the restarted
 *     agent takes part in the later rounds.
 *   - The coordinator is killed in the middle of round 2 and restarted: the job completes; the
 *     interrupted round is recorded as "restarted" and run again (same round number, next
 *     attempt) rather than half-applied; every completed round produced exactly one model
 *     version, in order; and the audit log verifies.
 */
#include "agent_store.h"
#include "check.h"
#include "coord_store.h"
#include "federation_fixture.h"

#include <string.h>

static void s_last_ok(void *ctx, const cnd_around_t *r)
{
    if (strcmp(r->outcome, "ok") == 0 && (int)r->round > *(int *)ctx) *(int *)ctx = (int)r->round;
}

int main(void)
{
    fx_fed_t f;
    fx_fed_init(&f, "restart", 3);
    fx_fed_setup(&f, 200, NULL, 0);
    const char *job[] = {"--rounds",       "3",     "--sites",        "3",    "--quorum",   "2",
                         "--local-epochs", "20",    "--advertise-ms", "4000", "--share-ms", "4000",
                         "--masked-ms",    "15000", "--unmask-ms",    "4000", NULL};
    fx_job_create(&f, job);
    pid_t coord = fx_start_coordinator(&f, NULL);
    pid_t ag[3];
    for (int s = 0; s < 3; s++) ag[s] = fx_start_agent(&f, s, NULL);

    /* Kill site 2's agent as soon as round 1 is in flight, and start it again. */
    int agent_killed = 0;
    double end = fx_now() + 30;
    while (!agent_killed && fx_now() < end) {
        cnd_round_rec_t *r = NULL;
        size_t n = 0;
        if (fx_rounds(&f, &r, &n) == 0) {
            if (n > 0 && r[0].round == 1) {
                kill(ag[2], SIGKILL);
                agent_killed = 1;
            }
            fx_rounds_free(r, n);
        }
        fx_sleep_ms(5);
    }
    CHECK(agent_killed);
    CHECK_EQ_INT(fx_wait(ag[2], 10), 128 + SIGKILL);
    ag[2] = fx_start_agent(&f, 2, NULL);

    /* Kill the coordinator as soon as round 2 is in flight. */
    int killed = 0;
    end = fx_now() + 40;
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
        if (strcmp(r[i].outcome, "retry") == 0) {
            /* the killed agent never advertised in round 1's first attempt: the neighbour graph
             * needs every participant's keys, so that attempt ends and the round runs again */
            CHECK_EQ_INT(r[i].round, 1);
            CHECK_EQ_INT(r[i].model_version, -1);
            CHECK(i + 1 < n && r[i + 1].round == 1 && r[i + 1].attempt == r[i].attempt + 1);
        } else if (strcmp(r[i].outcome, "restarted") == 0) {
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
            /* round 1 went on without the killed agent, or with it once it was back */
            if (r[i].round == 1)
                CHECK(r[i].survivors == 2 || r[i].survivors == 3);
            else
                CHECK_EQ_INT(r[i].survivors, 3);
            next_version++;
            ok_rounds++;
        }
    }
    CHECK(restarted >= 0);
    if (restarted >= 0) CHECK_EQ_INT(r[restarted].round, 2);
    CHECK_EQ_INT(ok_rounds, 3);
    fx_rounds_free(r, n);
    /* The restarted agent's own record: it completed round 3. */
    char adb[400];
    fx_path(adb, sizeof adb, f.site_dir[2], "agent.db");
    cnd_astore_t *as = NULL;
    CHECK_EQ_INT(cnd_astore_open(&as, adb, 1), 0);
    int last_ok = 0;
    if (as) CHECK_EQ_INT(cnd_astore_rounds(as, s_last_ok, &last_ok), 0);
    cnd_astore_close(&as);
    CHECK_EQ_INT(last_ok, 3);

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
