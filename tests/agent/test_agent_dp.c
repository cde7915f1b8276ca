/*
 * test_agent_dp.c: the site's privacy budget (agent/agent_dp.c) on its own: the [privacy]
 * section (defaults, values, refusals naming file:line), the job checks (require_dp, delta above
 * max_delta or 1/n, a job over the per-job or total budget), the per-round plans checked against
 * the accountant composed directly, a round refused once the budget is spent (a coordinator
 * that keeps rerunning), the spends surviving a reopen of the store, and `audit privacy`'s
 * recomputation (audit/audit_privacy.c) agreeing with every recorded spend. And a QAT round of a
 * DP job (agent/agent_train.c): it trains through DP-SGD (its update bounded by the clip) rather
 * than failing or bypassing it.
 */
#include "check.h"
#include "agent_config.h"
#include "agent_dp.h"
#include "agent_store.h"
#include "agent_train.h"
#include "audit_privacy.h"
#include "dp_accountant.h"
#include "fileio.h"
#include "identity.h"
#include "job_dp.h"
#include "quant_fed.h"

#include <math.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char s_dir[256];

static const char *s_base = "[site]\nname = p\ndata = fmnist\n[identity]\nkey = k\ncertificate = "
                            "c\n[coordinator]\nendpoint = tcp://h:1\npublic_key = coord.pub\n"
                            "ca_cert = x\nca_crl = y\n";

static int s_load(cnd_agent_config_t *c, const char *extra)
{
    char ini[300], text[1200];
    snprintf(ini, sizeof ini, "%s/agent.ini", s_dir);
    snprintf(text, sizeof text, "%s%s", s_base, extra);
    CHECK_EQ_INT(cnd_file_write_atomic(ini, text, strlen(text), 0644), 0);
    return cnd_agent_config_load(c, ini);
}

static void test_config(void)
{
    char pub[300];
    snprintf(pub, sizeof pub, "%s/coord.pub", s_dir);
    uint8_t pk[32] = {1, 2, 3};
    CHECK_EQ_INT(cnd_pubkey_write(pub, pk), 0);
    cnd_agent_config_t c;
    CHECK_EQ_INT(s_load(&c, ""), 0);
    CHECK(isinf(c.max_eps_job) && isinf(c.max_eps_total));
    CHECK_NEAR(c.max_delta, 1e-5, 0);
    CHECK_EQ_INT(c.require_dp, 0);
    CHECK_EQ_INT(s_load(&c, "[privacy]\nmax_epsilon_job = 2.5\nmax_epsilon_total = 8\n"
                            "max_delta = 1e-6\nrequire_dp = true\n"),
                 0);
    CHECK_NEAR(c.max_eps_job, 2.5, 0);
    CHECK_NEAR(c.max_eps_total, 8, 0);
    CHECK_NEAR(c.max_delta, 1e-6, 0);
    CHECK_EQ_INT(c.require_dp, 1);
    CHECK_EQ_INT(s_load(&c, "[privacy]\nmax_epsilon_job = 0\n"), CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "agent.ini:13") && strstr(cnd_err_detail(), "max_epsilon_job"));
    CHECK_EQ_INT(s_load(&c, "[privacy]\nmax_delta = 0.5\n"), CND_EINVAL);
    CHECK_EQ_INT(s_load(&c, "[privacy]\nrequire_dp = yes please\n"), CND_EINVAL);
    CHECK_EQ_INT(s_load(&c, "[privacy]\nmax_epsilon = 3\n"), CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "unknown key") != NULL);
}

/* A DP job: 1,000 records at batch 100 (q 0.1, 10 steps per round), 8 rounds, noise 2. */
static void s_job(cnd_job_spec_t *j)
{
    cnd_job_defaults(j);
    j->batch = 100;
    j->rounds = 8;
    j->dp_noise = 2.0;
    j->dp_clip = 1.0;
    j->dp_delta = 1e-5;
}

static double s_eps(const cnd_dp_segment_t *seg, size_t n, double delta)
{
    cnd_dp_params_t p = {.delta = delta};
    double e = -1;
    CHECK_EQ_INT(cnd_dp_epsilon_composed(&p, seg, n, &e, NULL), 0);
    return e;
}

static void test_budget(void)
{
    char db[300];
    snprintf(db, sizeof db, "%s/agent.db", s_dir);
    cnd_astore_t *s = NULL;
    cnd_audit_t *log = NULL;
    uint8_t pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    CHECK_EQ_INT(cnd_astore_open(&s, db, 0), 0);
    if (!s) return;
    CHECK_EQ_INT(cnd_audit_open_db(&log, cnd_astore_db(s), sk, NULL), 0);
    cnd_agent_config_t c;
    CHECK_EQ_INT(s_load(&c, "[privacy]\nmax_epsilon_job = 2.2\nmax_epsilon_total = 3\n"), 0);
    cnd_job_spec_t j;
    s_job(&j);
    char why[600] = "";
    /* job checks */
    cnd_job_spec_t plain;
    cnd_job_defaults(&plain);
    CHECK_EQ_INT(cnd_agent_dp_job_check(&c, s, &plain, 9, 1000, 0, why, sizeof why), 0);
    c.require_dp = 1;
    CHECK_EQ_INT(cnd_agent_dp_job_check(&c, s, &plain, 9, 1000, 0, why, sizeof why), 1);
    CHECK(strstr(why, "require_dp") != NULL);
    c.require_dp = 0;
    j.dp_delta = 1e-4;
    CHECK_EQ_INT(cnd_agent_dp_job_check(&c, s, &j, 1, 1000, 0, why, sizeof why), 1);
    CHECK(strstr(why, "max_delta 1e-05") != NULL);
    j.dp_delta = 1e-5;
    CHECK_EQ_INT(cnd_agent_dp_job_check(&c, s, &j, 1, 50000, 0, why, sizeof why), 0);
    CHECK_EQ_INT(cnd_agent_dp_job_check(&c, s, &j, 1, 90000, 0, why, sizeof why), 0);
    c.max_delta = 1e-4;
    j.dp_delta = 1e-4;
    CHECK_EQ_INT(cnd_agent_dp_job_check(&c, s, &j, 1, 50000, 0, why, sizeof why), 1); /* > 1/n */
    CHECK(strstr(why, "above 1/n") != NULL);
    c.max_delta = 1e-5;
    j.dp_delta = 1e-5;
    /* the whole job: 8 rounds x 10 steps at q 0.1, sigma 2 */
    cnd_dp_segment_t seg[8] = {{0.1, 2.0, 80}};
    double full = s_eps(seg, 1, 1e-5);
    CHECK(full > 2.2); /* over the per-job budget */
    CHECK_EQ_INT(cnd_agent_dp_job_check(&c, s, &j, 1, 1000, 0, why, sizeof why), 1);
    CHECK(strstr(why, "max_epsilon_job 2.2") != NULL);
    j.rounds = 6; /* 60 steps fit */
    CHECK(s_eps((cnd_dp_segment_t[]){{0.1, 2.0, 60}}, 1, 1e-5) <= 2.2);
    CHECK_EQ_INT(cnd_agent_dp_job_check(&c, s, &j, 1, 1000, 0, why, sizeof why), 0);
    /* rounds: a coordinator that keeps running rounds (or attempts) until the budget is spent */
    int rounds = 0;
    cnd_agent_dp_plan_t p;
    for (uint32_t r = 1; r <= 10; r++) {
        int rc = cnd_agent_dp_round_plan(&c, s, &j, 1, 1000, 0, &p, why, sizeof why);
        seg[0] = (cnd_dp_segment_t){0.1, 2.0, 10L * r};
        if (rc) {
            CHECK_EQ_INT(rc, 1);
            CHECK(strstr(why, "this round") && strstr(why, "max_epsilon_job 2.2"));
            CHECK(s_eps(seg, 1, 1e-5) > 2.2);
            break;
        }
        CHECK_NEAR(p.q, 0.1, 0);
        CHECK_EQ_INT(p.steps, 10);
        CHECK_NEAR(p.eps_job, s_eps(seg, 1, 1e-5), 0);
        CHECK_NEAR(p.eps_total, p.eps_job, 0); /* one job so far, at the same delta */
        CHECK_EQ_INT(cnd_agent_dp_record(s, log, "site", "coord", 1, r, 1, &p), 0);
        rounds++;
    }
    CHECK(rounds >= 6 && rounds < 10);
    CHECK_EQ_INT(cnd_agent_dp_record(s, log, "site", "coord", 1, 1, 1, &p), CND_EDB); /* twice */
    cnd_audit_close(&log);
    cnd_astore_close(&s);
    /* reopened: a second job composes with what the first spent */
    CHECK_EQ_INT(cnd_astore_open(&s, db, 0), 0);
    if (!s) return;
    CHECK_EQ_INT(cnd_audit_open_db(&log, cnd_astore_db(s), sk, NULL), 0);
    cnd_job_spec_t k;
    s_job(&k);
    k.batch = 200; /* q 0.2 at 1,000 records, 5 steps per round, sigma 3 */
    k.dp_noise = 3;
    k.rounds = 20;
    CHECK_EQ_INT(cnd_agent_dp_round_plan(&c, s, &k, 2, 1000, 0, &p, why, sizeof why), 0);
    seg[0] = (cnd_dp_segment_t){0.1, 2.0, 10L * rounds};
    seg[1] = (cnd_dp_segment_t){0.2, 3.0, 5};
    CHECK_NEAR(p.eps_job, s_eps(seg + 1, 1, 1e-5), 0);
    CHECK_NEAR(p.eps_total, s_eps(seg, 2, 1e-5), 1e-12);
    CHECK(p.eps_total > p.eps_job);
    int second = 0;
    for (uint32_t r = 1; r <= 20; r++) {
        int rc = cnd_agent_dp_round_plan(&c, s, &k, 2, 1000, 0, &p, why, sizeof why);
        if (rc) {
            CHECK(strstr(why, "max_epsilon_total 3") != NULL);
            break;
        }
        CHECK(p.eps_total <= 3 && p.eps_job <= 2.2);
        CHECK_EQ_INT(cnd_agent_dp_record(s, log, "site", "coord", 2, r, 1, &p), 0);
        second++;
    }
    CHECK(second >= 1 && second < 20); /* the total budget stopped the second job */
    /* the auditor's recomputation agrees with every recorded spend */
    cnd_audit_dp_t a;
    CHECK_EQ_INT(cnd_audit_privacy(&a, log, NULL), 0);
    CHECK_EQ_INT((int)a.n, rounds + second);
    CHECK_EQ_INT((int)a.bad, 0);
    for (size_t i = 0; i < a.n; i++) CHECK(a.rows[i].ok && a.rows[i].eps == a.rows[i].eps_logged);
    cnd_audit_privacy_free(&a);
    CHECK_EQ_INT(cnd_audit_privacy(&a, log, "2"), 0);
    CHECK_EQ_INT((int)a.n, second);
    cnd_audit_privacy_free(&a);
    cnd_audit_close(&log);
    cnd_astore_close(&s);
}

/* Distributed DP (proto/job_dp.h): each round is one release of the distributed discrete
 * Gaussian at dp_min_survivors parties; plans match the accountant composed directly, the budget
 * stops the job, a DP-SGD job composes with it in the total, and the auditor recomputes the
 * ddg entries (and flags one whose survivor count was altered). */
static void test_ddp_budget(void)
{
    char db[300];
    snprintf(db, sizeof db, "%s/agent-ddp.db", s_dir);
    cnd_astore_t *s = NULL;
    cnd_audit_t *log = NULL;
    uint8_t pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    CHECK_EQ_INT(cnd_astore_open(&s, db, 0), 0);
    if (!s) return;
    CHECK_EQ_INT(cnd_audit_open_db(&log, cnd_astore_db(s), sk, NULL), 0);
    cnd_agent_config_t c;
    CHECK_EQ_INT(s_load(&c, "[privacy]\nmax_epsilon_job = 3\nmax_epsilon_total = 4\n"), 0);
    cnd_job_spec_t d;
    s_job(&d);
    d.dp_mode = CND_JOB_DP_DISTRIBUTED;
    d.sites_per_round = 3;
    d.dp_min_survivors = 2;
    d.value_bits = 12;
    d.dp_noise = 5;
    d.rounds = 20;
    const uint64_t dim = 5000;
    char why[600] = "";
    cnd_dp_segment_t one;
    CHECK_EQ_INT(cnd_job_dp_round(&d, 1000, dim, &one), 0);
    CHECK_EQ_INT((int)one.ddg.parties, 2);
    /* 20 rounds are over 3; the site refuses the job, naming the survivors it assumed */
    double all = 0;
    CHECK_EQ_INT(cnd_job_dp_epsilon(&d, 1000, dim, 20, &all), 0);
    CHECK(all > 3);
    CHECK_EQ_INT(cnd_agent_dp_job_check(&c, s, &d, 7, 1000, dim, why, sizeof why), 1);
    CHECK(strstr(why, "distributed DP") && strstr(why, "only 2 surviving"));
    /* with more survivors assumed the noise per site is smaller, the sum's the same: same spend
     * up to the rounding of s2 */
    d.rounds = 4;
    CHECK_EQ_INT(cnd_agent_dp_job_check(&c, s, &d, 7, 1000, dim, why, sizeof why), 0);
    cnd_agent_dp_plan_t p;
    int rounds = 0;
    for (uint32_t r = 1; r <= 20; r++) {
        d.rounds = 20; /* a coordinator that keeps going */
        int rc = cnd_agent_dp_round_plan(&c, s, &d, 7, 1000, dim, &p, why, sizeof why);
        double direct = 0;
        CHECK_EQ_INT(cnd_job_dp_epsilon(&d, 1000, dim, (long)r, &direct), 0);
        if (rc) {
            CHECK_EQ_INT(rc, 1);
            CHECK(direct > 3 && strstr(why, "max_epsilon_job 3"));
            break;
        }
        CHECK_EQ_INT((int)p.ddg.parties, 2);
        CHECK_NEAR(p.ddg.s2, one.ddg.s2, 0);
        CHECK_NEAR(p.eps_job, direct, 1e-12 * direct);
        CHECK_EQ_INT(cnd_agent_dp_record(s, log, "site", "coord", 7, r, 1, &p), 0);
        rounds++;
    }
    CHECK(rounds >= 2 && rounds < 20);
    /* a DP-SGD job afterwards: its total composes both kinds */
    cnd_job_spec_t k;
    s_job(&k);
    CHECK_EQ_INT(cnd_agent_dp_round_plan(&c, s, &k, 8, 1000, 0, &p, why, sizeof why), 0);
    cnd_dp_segment_t seg[2] = {one, {0.1, 2.0, 10}};
    seg[0].steps = rounds;
    cnd_dp_params_t pp = {.delta = 1e-5};
    double tot = 0;
    CHECK_EQ_INT(cnd_dp_epsilon_composed(&pp, seg, 2, &tot, NULL), 0);
    CHECK_NEAR(p.eps_total, tot, 1e-12 * tot);
    CHECK_EQ_INT(cnd_agent_dp_record(s, log, "site", "coord", 8, 1, 1, &p), 0);
    /* the auditor: every entry recomputed, the ddg ones as ddg */
    cnd_audit_dp_t a;
    CHECK_EQ_INT(cnd_audit_privacy(&a, log, NULL), 0);
    CHECK_EQ_INT((int)a.n, rounds + 1);
    CHECK_EQ_INT((int)a.bad, 0);
    for (size_t i = 0; i < a.n; i++)
        CHECK(a.rows[i].ok && (int)a.rows[i].ddg.parties == (i < (size_t)rounds ? 2 : 0));
    cnd_audit_privacy_free(&a);
    /* a log whose first entry claims 3 survivors (less spend) no longer recomputes */
    sqlite3 *h = cnd_astore_db(s);
    CHECK_EQ_INT(sqlite3_exec(h,
                              "DROP TRIGGER audit_entry_no_update; " /* a forger's edit */
                              "UPDATE audit_entry SET entry = replace(entry, '\"parties\":2', "
                              "'\"parties\":3') WHERE seq = (SELECT min(seq) FROM audit_entry "
                              "WHERE action = 'dp.spend')",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(cnd_audit_privacy(&a, log, "7"), 0);
    CHECK_EQ_INT((int)a.bad, rounds); /* its own epsilon and every later one of the job */
    cnd_audit_privacy_free(&a);
    cnd_audit_close(&log);
    cnd_astore_close(&s);
}

/* A QAT round of a DP job goes through DP-SGD: with a clip of 1e-3 and tiny noise, the local
 * update of 3 steps of SGD (momentum 0.9, lr 0.5) has norm at most lr * steps * 10 * (clip times
 * the drawn over the expected batch, plus the noise); the same round without DP moves the
 * weights by far more. The round's fake quantization is the coordinator's (quant_fed.h). */
static void test_qat_round_dp(void)
{
    enum { N = 300, K = 3 };
    cnd_dataset_t dset = {.n = N, .shape = {1, 6, 6}, .n_classes = K}, cset = dset;
    cset.n = 50;
    cnd_dataset_t *ds = &dset, *calib = &cset;
    ds->x = malloc(N * 36 * sizeof(float));
    ds->y = malloc(N);
    calib->x = malloc(50 * 36 * sizeof(float));
    calib->y = calloc(50, 1);
    cnd_model_t *g = NULL;
    CHECK_EQ_INT(cnd_model_new(&g, "conv2d(4,3) relu flatten dense(3)", (cnd_shape_t){1, 6, 6}, 3),
                 0);
    float *tl = malloc(N * K * sizeof(float));
    if (!ds->x || !ds->y || !calib->x || !calib->y || !g || !tl) goto done;
    cnd_rng_t r;
    cnd_rng_seed(&r, 4);
    for (size_t i = 0; i < N; i++) {
        ds->y[i] = (uint8_t)(i % K);
        for (int k = 0; k < K; k++) tl[i * K + (size_t)k] = k == (int)(i % K) ? 3.0f : 0.0f;
        for (int p = 0; p < 36; p++)
            ds->x[i * 36 + (size_t)p] =
                (p % K == (int)(i % K) ? 1.0f : -0.5f) + 0.5f * (float)cnd_rng_normal(&r);
    }
    memcpy(calib->x, ds->x, 50 * 36 * sizeof(float));
    CHECK_EQ_INT(cnd_fedq_annotate(g, calib, 8), 0);
    cnd_agent_data_t d = {.train = ds, .train_n = ds, .teacher_logits = tl, .classes = K};
    cnd_job_spec_t j;
    cnd_job_defaults(&j);
    j.batch = 100;
    j.lr = 0.5f;
    j.alpha = 0.0f;
    j.qat_rounds = 1;
    j.dp_noise = 1e-3;
    j.dp_clip = 1e-3;
    j.dp_delta = 1e-5;
    double bound = 0.5 * 3 * 10 * (1e-3 * 2.0 + 1e-3 * 1e-3 * 10);
    for (int dp = 1; dp >= 0; dp--) {
        if (!dp) j.dp_noise = j.dp_clip = j.dp_delta = 0;
        cnd_agent_update_t u;
        CHECK_EQ_INT(cnd_agent_local_round(&u, g, &d, &j, 1, 7), 0);
        double n2 = 0;
        for (size_t i = 0; i < u.dim && u.update; i++) n2 += (double)u.update[i] * u.update[i];
        CHECK(u.dim == g->num_params && n2 > 0);
        if (dp)
            CHECK(sqrt(n2) <= bound);
        else
            CHECK(sqrt(n2) > 10 * bound); /* without DP the same round moves far more */
        cnd_agent_update_free(&u);
    }
done:
    free(tl);
    free(ds->x);
    free(ds->y);
    free(calib->x);
    free(calib->y);
    cnd_model_destroy(&g);
}

int main(void)
{
    CHECK(sodium_init() >= 0);
    snprintf(s_dir, sizeof s_dir, "%s/cnd-agentdp-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    CHECK(mkdtemp(s_dir) != NULL);
    test_config();
    test_budget();
    test_ddp_budget();
    test_qat_round_dp();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", s_dir);
    return check_result("test_agent_dp");
}
