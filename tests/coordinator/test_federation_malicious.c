/*
 * test_federation_malicious.c: a coordinator that deviates from the protocol, and a site that
 * does, against real agent processes on loopback (docs/threat-model.md cites each part).
 *
 * The coordinator is the real daemon scripted by its test hook CND_COORD_EVIL (test builds only,
 * coordinator/coord_round.c); the sites are real agents, two of them malicious through their
 * own test hook CND_AGENT_FAULT. One job of five rounds, three sites:
 *   round 1       ok.
 *   replay        asked for round 2, the coordinator runs round 1 again with the exact SecAgg+
 *                 parameters of its first attempt (same digest D: a second survivor set under
 *                 the same signatures). Every site refuses ("served before"), in its audit log.
 *   round 2       ok.
 *   rerun         asked for round 3, it runs round 2 again as a new attempt (the difference of
 *                 two attempts would be one site's update). Every site refuses: it has answered
 *                 an unmask request of round 2.
 *   round 3       site-2 forges its sample count so that the total reads 1 (which decoded to an
 *                 average far outside the clip before): the coordinator refuses the aggregate,
 *                 the round fails cleanly, nothing applied.
 *   round 4       site-1 wraps a coordinate around the ring: refused likewise.
 *   round 5       ok; the job completes.
 * Throughout, no site's loss, accuracy or sample count reaches the coordinator outside the secure
 * sum: round_site holds none, the rounds hold the sums.
 * Then a second job asks for a learning rate of 1e-9 (a probe: the "update" would be nothing but
 * a function of the data): every site refuses it by its own policy, in its audit log.
 */
#include "check.h"
#include "coord_store.h"
#include "federation_fixture.h"

#include <signal.h>
#include <sqlite3.h>
#include <string.h>

/* Number of rows of `sql` (one text parameter ?1, may be NULL) in database `path`. */
static int s_count(const char *path, const char *sql, const char *arg)
{
    sqlite3 *db = NULL;
    int n = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
            if (arg) sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

/* site.refuse entries of a site's audit log whose entry contains `text`. */
static int s_refusals(fx_fed_t *f, int s, const char *text)
{
    char db[400], like[200];
    snprintf(db, sizeof db, "%s/agent.db", f->site_dir[s]);
    snprintf(like, sizeof like, "%%%s%%", text);
    return s_count(
        db, "SELECT count(*) FROM audit_entry WHERE action = 'site.refuse' AND entry LIKE ?1",
        like);
}

static const cnd_round_rec_t *s_round(const cnd_round_rec_t *r, size_t n, uint32_t round,
                                      uint32_t attempt)
{
    for (size_t i = 0; i < n; i++)
        if (r[i].round == round && r[i].attempt == attempt) return &r[i];
    return NULL;
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

static void s_job_one(fx_fed_t *f)
{
    const char *job[] = {"--rounds",       "5",     "--sites",     "3",
                         "--quorum",       "3",     "--clip",      "0.05",
                         "--advertise-ms", "8000",  "--share-ms",  "8000",
                         "--masked-ms",    "20000", "--unmask-ms", "8000",
                         "--join-wait-ms", "30000", NULL};
    fx_job_create(f, job);
    setenv("CND_COORD_EVIL", "replay:1,rerun:2", 1);
    pid_t coord = fx_start_coordinator(f, NULL);
    unsetenv("CND_COORD_EVIL");
    pid_t ag[3];
    for (int s = 0; s < 3; s++) {
        const char *env[2] = {NULL, NULL};
        if (s == 1) env[0] = "CND_AGENT_FAULT=wrap:4";
        if (s == 2) env[0] = "CND_AGENT_FAULT=forge:3";
        ag[s] = fx_start_agent(f, s, env);
    }
    CHECK_EQ_INT(fx_wait(coord, 120), 0);
    for (int s = 0; s < 3; s++) CHECK_EQ_INT(fx_wait(ag[s], 20), 0);
    char state[32] = "";
    CHECK_EQ_INT(fx_job_state(f, state, sizeof state), 0);
    CHECK(strcmp(state, "completed") == 0);

    cnd_round_rec_t *r = NULL;
    size_t n = 0;
    CHECK_EQ_INT(fx_rounds(f, &r, &n), 0);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "round %u attempt %u: %s %s (samples %llu, validated %llu)\n", r[i].round,
                r[i].attempt, r[i].outcome, r[i].reason, (unsigned long long)r[i].samples,
                (unsigned long long)r[i].validated);
    const cnd_round_rec_t *x;
    /* honest rounds: ok, with the metrics as secure sums */
    static const uint32_t ok_rounds[] = {1, 2, 5};
    for (int i = 0; i < 3; i++) {
        x = s_round(r, n, ok_rounds[i], 1);
        CHECK(x && strcmp(x->outcome, "ok") == 0);
        if (x) {
            CHECK_EQ_INT(x->survivors, 3);
            CHECK(x->validated > 0 && x->correct <= x->validated && x->samples >= 3);
        }
    }
    /* the replay and the rerun: every site refused, so nobody advertised (and as the round had
     * completed before, the coordinator goes on with the next one) */
    for (uint32_t rr = 1; rr <= 2; rr++) {
        x = s_round(r, n, rr, 2);
        CHECK(x && strcmp(x->outcome, "retry") == 0 && x->model_version == -1);
        if (x) CHECK(strstr(x->reason, "did not advertise") != NULL);
        CHECK(s_round(r, n, rr, 3) == NULL);
    }
    /* the malicious sites' rounds fail cleanly at decoding, nothing applied */
    x = s_round(r, n, 3, 1);
    CHECK(x && strcmp(x->outcome, "failed") == 0 && x->model_version == -1);
    if (x) CHECK(strstr(x->reason, "forged its count") != NULL);
    x = s_round(r, n, 4, 1);
    CHECK(x && strcmp(x->outcome, "failed") == 0 && x->model_version == -1);
    if (x) CHECK(strstr(x->reason, "coordinate 0") != NULL);
    fx_rounds_free(r, n);

    for (int s = 0; s < 3; s++) {
        CHECK(s_refusals(f, s, "exact round parameters were served before") >= 1);
        CHECK(s_refusals(f, s, "already answered an unmask request") >= 1);
        /* each site served exactly one attempt of each round */
        char db[400];
        snprintf(db, sizeof db, "%s/agent.db", f->site_dir[s]);
        CHECK_EQ_INT(s_count(db, "SELECT count(*) FROM agent_served", NULL), 5);
        CHECK_EQ_INT(s_count(db, "SELECT count(*) FROM agent_served WHERE attempt != 1", NULL), 0);
    }
    /* nothing of one site's metrics at the coordinator */
    char cdb[400];
    fx_path(cdb, sizeof cdb, f->coord, "coordinator.db");
    CHECK_EQ_INT(s_count(cdb,
                         "SELECT count(*) FROM round_site WHERE loss != 0 OR accuracy != 0 OR"
                         " samples != 0",
                         NULL),
                 0);
    CHECK(s_count(cdb, "SELECT count(*) FROM round_site", NULL) >= 15);
}

/* A job whose learning rate is below every site's policy: each refuses it, with the reason in
 * its audit log. */
static void s_job_two(fx_fed_t *f)
{
    const char *job[] = {"--rounds", "1", "--sites", "3", "--lr", "1e-9", NULL};
    fx_job_create(f, job);
    pid_t coord = fx_start_coordinator(f, NULL);
    pid_t ag[3];
    for (int s = 0; s < 3; s++) ag[s] = fx_start_agent(f, s, NULL);
    int all = 0;
    for (double end = fx_now() + 40; fx_now() < end && !all; fx_sleep_ms(200)) {
        all = 1;
        for (int s = 0; s < 3; s++) all &= s_refusals(f, s, "learning rate 1e-09 outside") >= 1;
    }
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
    fx_fed_init(&f, "malicious", 3);
    fx_fed_setup(&f, 150, NULL, 0);
    s_job_one(&f);
    if (!check_failures) s_job_two(&f);
    if (check_failures) s_dump_logs(&f);
    fx_fed_cleanup(&f);
    return check_result("test_federation_malicious");
}
