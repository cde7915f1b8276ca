/*
 * agent_dp.c: the site's privacy budget (agent_dp.h).
 */
#include "agent_dp.h"
#include "audit_entries.h"
#include "dp_accountant.h"
#include "job_dp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The site's spends so far as accountant runs: all of them, and this job's. */
typedef struct {
    uint64_t job;
    cnd_dp_segment_t *all, *mine;
    size_t n_all, n_mine, cap;
    long mine_rounds; /* spends of this job (rounds and attempts) */
    int oom;
} s_spent_t;

static void s_collect(void *ctx, const cnd_adp_spend_t *r)
{
    s_spent_t *sp = ctx;
    if (sp->oom) return;
    if (sp->n_all == sp->cap) {
        size_t nc = sp->cap ? 2 * sp->cap : 16;
        cnd_dp_segment_t *a = realloc(sp->all, nc * sizeof *a);
        if (a) sp->all = a;
        cnd_dp_segment_t *m = a ? realloc(sp->mine, nc * sizeof *m) : NULL;
        if (m) sp->mine = m;
        if (!a || !m) {
            sp->oom = 1;
            return;
        }
        sp->cap = nc;
    }
    cnd_dp_segment_t seg = {r->q, r->sigma, r->steps, r->ddg};
    sp->all[sp->n_all++] = seg;
    if (r->job == sp->job) {
        sp->mine[sp->n_mine++] = seg;
        sp->mine_rounds++;
    }
}

/* Loads the spends, with room for one more run in each list. */
static int s_load(s_spent_t *sp, cnd_astore_t *s, uint64_t job)
{
    memset(sp, 0, sizeof *sp);
    sp->job = job;
    int rc = cnd_astore_dp_spends(s, s_collect, sp);
    if (!rc && !sp->oom && sp->n_all == sp->cap) { /* grow once more: s_with adds a run */
        cnd_adp_spend_t none = {.job = job};
        s_collect(sp, &none);
        sp->n_all--, sp->n_mine--, sp->mine_rounds--;
    }
    if (!rc && sp->oom) rc = cnd_errf(CND_ENOMEM, "privacy spends: out of memory");
    return rc;
}

static void s_free(s_spent_t *sp)
{
    free(sp->all);
    free(sp->mine);
}

/* Epsilon of runs at delta (0 runs: 0). */
static int s_eps(const cnd_dp_segment_t *seg, size_t n, double delta, double *eps)
{
    *eps = 0;
    if (!n) return 0;
    cnd_dp_params_t p = {.delta = delta};
    return cnd_dp_epsilon_composed(&p, seg, n, eps, NULL);
}

/* Epsilons of the job and of the site with `extra` (q, sigma, steps) added. */
static int s_with(const s_spent_t *sp, cnd_dp_segment_t extra, double delta, double total_delta,
                  double *eps_job, double *eps_total)
{
    sp->all[sp->n_all] = extra;
    sp->mine[sp->n_mine] = extra;
    int rc = s_eps(sp->mine, sp->n_mine + 1, delta, eps_job);
    if (!rc) rc = s_eps(sp->all, sp->n_all + 1, total_delta, eps_total);
    return rc;
}

/* 1 with why set when eps_job or eps_total is over the budget. */
static int s_over(const cnd_agent_config_t *c, const char *what, double eps_job, double eps_total,
                  char *why, size_t cap)
{
    if (eps_job > c->max_eps_job) {
        snprintf(why, cap,
                 "%s would bring this job's privacy spend to epsilon %.4g, over this site's "
                 "[privacy] max_epsilon_job %g",
                 what, eps_job, c->max_eps_job);
        return 1;
    }
    if (eps_total > c->max_eps_total) {
        snprintf(why, cap,
                 "%s would bring this site's total privacy spend to epsilon %.4g (delta %g), "
                 "over its [privacy] max_epsilon_total %g",
                 what, eps_total, c->max_delta, c->max_eps_total);
        return 1;
    }
    return 0;
}

int cnd_agent_dp_job_check(const cnd_agent_config_t *c, cnd_astore_t *s, const cnd_job_spec_t *j,
                           uint64_t job, uint64_t n, uint64_t dim, char *why, size_t cap)
{
    if (!(j->dp_clip > 0)) {
        if (!c->require_dp) return 0;
        snprintf(why, cap,
                 "the job trains without differential privacy and this site's "
                 "[privacy] require_dp is true");
        return 1;
    }
    if (j->dp_delta > c->max_delta) {
        snprintf(why, cap, "the job's DP delta %g is above this site's [privacy] max_delta %g",
                 j->dp_delta, c->max_delta);
        return 1;
    }
    if (n < 1 || j->dp_delta > 1.0 / (double)n) {
        snprintf(why, cap,
                 "the job's DP delta %g is above 1/n = %g for this site's %llu training "
                 "records: such a delta allows leaking a record outright",
                 j->dp_delta, n ? 1.0 / (double)n : 1.0, (unsigned long long)n);
        return 1;
    }
    s_spent_t sp;
    int rc = s_load(&sp, s, job);
    double eps_job = 0, eps_total = 0;
    cnd_dp_segment_t seg;
    long left = (long)j->rounds - sp.mine_rounds;
    if (left < 0) left = 0;
    if (!rc) rc = cnd_job_dp_round(j, n, dim, &seg);
    long per = seg.steps;
    seg.steps *= left;
    if (!rc) rc = s_with(&sp, seg, j->dp_delta, c->max_delta, &eps_job, &eps_total);
    s_free(&sp);
    if (rc) {
        snprintf(why, cap, "privacy accounting: %s", cnd_err_detail());
        return rc;
    }
    char what[240];
    if (j->dp_mode == CND_JOB_DP_DISTRIBUTED)
        snprintf(what, sizeof what,
                 "the job (%ld more rounds of distributed DP, noise %.4g, assuming only %u "
                 "surviving sites add their noise)",
                 left, j->dp_noise, j->dp_min_survivors);
    else
        snprintf(what, sizeof what,
                 "the job (%ld more rounds of %ld DP-SGD steps at sampling rate %.4g = %u/%llu, "
                 "noise %.4g)",
                 left, per, seg.q,
                 j->batch < CND_JOB_DP_BATCH_MAX ? j->batch : CND_JOB_DP_BATCH_MAX,
                 (unsigned long long)n, j->dp_noise);
    return s_over(c, what, eps_job, eps_total, why, cap);
}

int cnd_agent_dp_round_plan(const cnd_agent_config_t *c, cnd_astore_t *s, const cnd_job_spec_t *j,
                            uint64_t job, uint64_t n, uint64_t dim, cnd_agent_dp_plan_t *p,
                            char *why, size_t cap)
{
    memset(p, 0, sizeof *p);
    cnd_dp_segment_t seg;
    int rc = cnd_job_dp_round(j, n, dim, &seg);
    if (j->dp_mode == CND_JOB_DP_DISTRIBUTED) seg.q = 1; /* every round releases the sum */
    p->q = seg.q;
    p->sigma = seg.sigma = j->dp_noise;
    p->steps = seg.steps;
    p->ddg = seg.ddg;
    p->delta = j->dp_delta;
    p->total_delta = c->max_delta;
    s_spent_t sp;
    if (!rc) rc = s_load(&sp, s, job);
    if (!rc) {
        rc = s_with(&sp, seg, p->delta, p->total_delta, &p->eps_job, &p->eps_total);
        s_free(&sp);
    }
    if (rc) {
        snprintf(why, cap, "privacy accounting: %s", cnd_err_detail());
        return rc;
    }
    char what[200];
    if (j->dp_mode == CND_JOB_DP_DISTRIBUTED)
        snprintf(what, sizeof what,
                 "this round (distributed DP: noise %.4g, each site's variance %.0f, assuming only "
                 "%u surviving sites)",
                 p->sigma, p->ddg.s2, p->ddg.parties);
    else
        snprintf(what, sizeof what,
                 "this round (%ld DP-SGD steps at sampling rate %.4g, noise %.4g)", p->steps, p->q,
                 p->sigma);
    return s_over(c, what, p->eps_job, p->eps_total, why, cap);
}

int cnd_agent_dp_record(cnd_astore_t *s, cnd_audit_t *audit, const char *actor,
                        const char *coord_fpr, uint64_t job, uint32_t round, uint32_t attempt,
                        const cnd_agent_dp_plan_t *p)
{
    cnd_adp_spend_t r = {job,      round,      attempt,        p->q,         p->sigma, p->steps,
                         p->delta, p->eps_job, p->total_delta, p->eps_total, p->ddg};
    cnd_audit_dp_spend_t e = {round,    attempt,    p->q,           p->sigma,     p->steps,
                              p->delta, p->eps_job, p->total_delta, p->eps_total, p->ddg};
    char jid[32];
    snprintf(jid, sizeof jid, "%llu", (unsigned long long)job);
    int rc = cnd_astore_begin(s);
    if (rc) return rc;
    rc = cnd_astore_dp_add(s, &r);
    if (!rc) rc = cnd_audit_log_dp_spend(audit, actor, coord_fpr, jid, &e);
    if (!rc)
        rc = cnd_astore_commit(s);
    else
        cnd_astore_rollback(s);
    return rc ? cnd_err_wrap(rc, "recording the round's privacy spend") : 0;
}
