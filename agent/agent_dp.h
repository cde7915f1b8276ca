/*
 * agent_dp.h: the site's differential-privacy budget, enforced by the site (docs/privacy.md,
 * "Federated jobs"). The coordinator's recipe says how the site trains (noise multiplier, clip,
 * delta, batch, local epochs, rounds); it never says what the site spends: the site computes
 * that from its own record count n (proto/job_dp.h) and its own record of what it has spent.
 *
 * Spend: every round a site trains with DP-SGD is one sampled Gaussian run (q, sigma, steps);
 * every round of a distributed-DP job (proto/job_dp.h) is one release of the distributed
 * discrete Gaussian sum (cnd_dp_ddg_t), counted as if only dp_min_survivors sites survived:
 * the least noise the site lets any revealed sum carry (it refuses to help unmask fewer,
 * crypto/secagg.h cnd_secagg_client_require).
 * A job's epsilon composes its runs (RDP added per order) at the job's delta; the site's total
 * composes every run of every DP job at [privacy] max_delta. Retried attempts of a round spend
 * again (each trains afresh on the same records).
 *
 * When:
 *   - at the announcement (cnd_agent_dp_job_check, with n known): refuse a job without DP when
 *     require_dp is set, a delta above max_delta or above 1/n, and a job whose rounds (those not
 *     yet spent) would take the job or the total over its budget;
 *   - before every round (cnd_agent_dp_round_plan): the spend of one more round, refused when
 *     it would exceed a budget (a coordinator that runs rounds again cannot overspend);
 *   - after local training, before anything of the round leaves the site
 *     (cnd_agent_dp_record): the spend, durably, in the agent's store and as a dp.spend audit
 *     entry (audit_actions.h), in one transaction. A kill between the record and the send
 *     counts a spend that did not leave: the error is on the safe side.
 */
#ifndef CND_AGENT_DP_H
#define CND_AGENT_DP_H

#include "agent_config.h"
#include "agent_store.h"
#include "audit_log.h"
#include "dp_accountant.h"
#include "job.h"

#include <stddef.h>

/* One round's spend as planned before training (what cnd_agent_dp_record writes). */
typedef struct {
    double q, sigma; /* sampling rate (batch / n) and noise multiplier */
    long steps;      /* DP-SGD steps of the round */
    double delta;    /* the job's */
    double eps_job;  /* the job's epsilon with this round */
    double total_delta;
    double eps_total; /* the site's epsilon over every DP job with this round */
    cnd_dp_ddg_t ddg; /* distributed DP: the round's release (parties 0: DP-SGD; then q = 1,
                         sigma the noise multiplier, steps 1) */
} cnd_agent_dp_plan_t;

/* Job-level checks of a job with id `job` at a site of n training records, its student of dim
 * parameters (distributed DP's sensitivity depends on it). Returns 0 (accept),
 * 1 (refused by this site's budget or policy: why says why), or a negative CND_E* code (why
 * says what failed). */
int cnd_agent_dp_job_check(const cnd_agent_config_t *c, cnd_astore_t *s, const cnd_job_spec_t *j,
                           uint64_t job, uint64_t n, uint64_t dim, char *why, size_t cap);

/* The spend of one more round of a DP job (j->dp_clip > 0) into *p, and whether the budget
 * allows it. Returns as cnd_agent_dp_job_check. */
int cnd_agent_dp_round_plan(const cnd_agent_config_t *c, cnd_astore_t *s, const cnd_job_spec_t *j,
                            uint64_t job, uint64_t n, uint64_t dim, cnd_agent_dp_plan_t *p,
                            char *why, size_t cap);

/* Records p for (job, round, attempt) in the store and as a dp.spend entry of the site's audit
 * log (actor: the site's fingerprint, subject: the coordinator's), in one transaction. Returns
 * 0 or an error (nothing recorded). */
CND_MUST_USE int cnd_agent_dp_record(cnd_astore_t *s, cnd_audit_t *audit, const char *actor,
                                     const char *coord_fpr, uint64_t job, uint32_t round,
                                     uint32_t attempt, const cnd_agent_dp_plan_t *p);

#endif
