/*
 * job_dp.h: the DP-SGD part of a federated job's recipe (job.h dp_* fields, JobSpec
 * recipe.dp on the wire) and the one rule, shared by the coordinator and every site, that turns
 * it into a site's privacy spend.
 *
 * A site with n training records runs, in each round, local_epochs * ceil(n / B) DP-SGD steps
 * at Poisson sampling rate q = min(1, B / n), with B = min(batch, CND_JOB_DP_BATCH_MAX) (the
 * largest batch the agent trains with, agent_train.c). Its epsilon after r rounds is the
 * sampled Gaussian mechanism (common/dp_accountant.h) at (q, dp_noise) over
 * r * local_epochs * ceil(n / B) steps, at the job's delta. The coordinator does not know n: it
 * solves dp_noise for a target epsilon assuming dp_assumed_n records per site. A site with
 * fewer records samples at a higher rate and spends more than the target; each site computes
 * its own spend from its own n and refuses what its budget does not allow (agent/agent_dp.h).
 */
#ifndef CND_JOB_DP_H
#define CND_JOB_DP_H

#include "job.h"
#include "dp_accountant.h"
#include "json.h"

#define CND_JOB_DP_BATCH_MAX 4096 /* the agent's largest training batch */

/*
 * Distributed DP (dp_mode CND_JOB_DP_DISTRIBUTED; Kairouz, Liu, Steinke 2021; docs/privacy.md):
 * sites train without DP-SGD; each clips its round's update to L2 norm dp_clip, scales it so that
 * dp_clip becomes Q = 2^(value_bits-1) - 1, rounds it at random within the L2 bound
 * l2 = cnd_fxp_ddp_l2 (crypto/fixedpoint.h) and adds N_Z(0, s2) per coordinate with
 *   s2 = ceil((dp_noise * l2)^2 / dp_min_survivors),
 * so any sum of at least dp_min_survivors sites carries noise of variance >= (dp_noise l2)^2: the
 * Gaussian mechanism with noise multiplier dp_noise, without any one site adding all of it. One
 * round is one release of the distributed discrete Gaussian (common/dp_accountant.h,
 * cnd_dp_ddg_t {l2, l1 = cnd_dp_ddg_l1(l2, dim), s2, dp_min_survivors, dim}); rounds compose.
 * The unit protected is a site's whole update (site-level DP, hence every record of the site),
 * against whoever sees the unmasked sums, provided at least dp_min_survivors of the summed sites
 * add their noise honestly. Sites and the coordinator refuse to unmask fewer.
 */
#define CND_JOB_DP_LOCAL       0
#define CND_JOB_DP_DISTRIBUTED 1

/* The distributed-DP noise variance s2 (above) of a model of dim parameters into *s2, and the
 * accountant's description of one round. Returns 0, or CND_ERANGE when s2 exceeds 2^40 (the
 * sampler's range: lower dp_noise or value_bits). */
CND_MUST_USE int cnd_job_ddp_mech(const cnd_job_spec_t *j, uint64_t dim, uint64_t *s2,
                                  cnd_dp_ddg_t *m);

/* The DP fields of j: none (dp_clip 0 and all others 0), or noise in (0, 1e4], clip in
 * (0, 1e6], delta in (0, 0.01], target in [0, 1e6], assumed_n <= 2^40, and either DP-SGD at
 * each site (mode local, min_survivors 0; QAT rounds train under it too) or distributed DP
 * (min_survivors in [1, sites_per_round]). Returns 0 or CND_EINVAL naming the field. */
CND_MUST_USE int cnd_job_dp_check(const cnd_job_spec_t *j);

/* A site with n >= 1 records: its sampling rate and its DP-SGD steps per round (above). */
void cnd_job_dp_site(const cnd_job_spec_t *j, uint64_t n, double *q, long *steps_per_round);

/* Epsilon (at j->dp_delta) of a site with n records after `rounds` rounds of j (distributed: of a
 * model of dim parameters, n unused). Returns 0 or an accountant error (CND_EINVAL, CND_ERANGE). */
CND_MUST_USE int cnd_job_dp_epsilon(const cnd_job_spec_t *j, uint64_t n, uint64_t dim, long rounds,
                                    double *eps);

/* One round of j at a site of n records, a model of dim parameters, as an accountant run. */
CND_MUST_USE int cnd_job_dp_round(const cnd_job_spec_t *j, uint64_t n, uint64_t dim,
                                  cnd_dp_segment_t *seg);

/* Sets j->dp_noise to the smallest noise multiplier that keeps a site of assumed_n records
 * within (target_eps, j->dp_delta) over all of j's rounds (dp_clip, dp_delta, batch, rounds,
 * local_epochs set), and records the target and the assumption. Returns 0, CND_EINVAL, or
 * CND_ERANGE when no noise reaches it. */
CND_MUST_USE int cnd_job_dp_solve(cnd_job_spec_t *j, double target_eps, uint64_t assumed_n);

/* Distributed DP with a target (j->dp_target_eps > 0, set by cnd_job_dp_options with the
 * Gaussian mechanism as a first estimate): sets j->dp_noise to the smallest noise multiplier
 * (within 1e-7 relative) for which all of j's rounds of the distributed discrete Gaussian
 * accountant (cnd_job_dp_epsilon, dim parameters, dp_min_survivors parties) stay within
 * (dp_target_eps, dp_delta). Returns 0, CND_EINVAL, or CND_ERANGE (no noise up to 1e4, or the
 * variance leaves the sampler's range). */
CND_MUST_USE int cnd_job_ddp_solve(cnd_job_spec_t *j, uint64_t dim);

/* `job create`'s DP options (coordinator/cmd_job.c); 0 = not given. */
typedef struct {
    double epsilon;     /* --dp-epsilon: solve the noise for it */
    double noise;       /* --dp-noise: or give it */
    double delta;       /* --dp-delta (default 1e-5) */
    double clip;        /* --dp-clip (default 1) */
    long site_samples;  /* --dp-site-samples: records per site the solve assumes */
    int distributed;    /* --dp-mode distributed */
    long min_survivors; /* --dp-min-survivors (distributed; default: the quorum) */
} cnd_job_dp_opts_t;

/* Sets j's DP fields from o (j's batch, rounds and local epochs already set): off when neither
 * epsilon nor noise is given. Returns 0 or CND_EINVAL/CND_ERANGE naming the option. */
CND_MUST_USE int cnd_job_dp_options(cnd_job_spec_t *j, const cnd_job_dp_opts_t *o);

/* Writes "dp": {...} into an open JSON object (job.c's recipe). */
void cnd_job_dp_to_json(cnd_jw_t *w, const cnd_job_spec_t *j);
/* Reads it back: v NULL (no "dp" key) leaves DP off. Returns 0 or CND_EINVAL naming the key. */
CND_MUST_USE int cnd_job_dp_from_json(cnd_job_spec_t *j, const cnd_json_t *v);

#endif
