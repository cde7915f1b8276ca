/*
 * job_dp.c: the DP-SGD recipe of a federated job and a site's spend from it (job_dp.h).
 */
#include "job_dp.h"
#include "dp_accountant.h"
#include "fixedpoint.h"

#include <math.h>
#include <string.h>

static int s_in(const char *f, double v, double lo, int lo_open, double hi)
{
    if (!isfinite(v) || v < lo || (lo_open && v == lo) || v > hi)
        return cnd_errf(CND_EINVAL, "job: %s = %g is outside %s%g, %g]", f, v, lo_open ? "(" : "[",
                        lo, hi);
    return 0;
}

int cnd_job_dp_check(const cnd_job_spec_t *j)
{
    if (j->dp_clip == 0) {
        if (j->dp_noise != 0 || j->dp_delta != 0 || j->dp_target_eps != 0 || j->dp_assumed_n ||
            j->dp_mode || j->dp_min_survivors)
            return cnd_errf(CND_EINVAL, "job: DP fields set without a DP clip");
        return 0;
    }
    int rc;
    if ((rc = s_in("dp_noise", j->dp_noise, 0, 1, 1e4)) ||
        (rc = s_in("dp_clip", j->dp_clip, 0, 1, 1e6)) ||
        (rc = s_in("dp_delta", j->dp_delta, 0, 1, 0.01)) ||
        (rc = s_in("dp_target_epsilon", j->dp_target_eps, 0, 0, 1e6)) ||
        (rc = s_in("dp_assumed_samples", (double)j->dp_assumed_n, 0, 0, 1099511627776.0)))
        return rc;
    if (j->dp_mode == CND_JOB_DP_DISTRIBUTED) {
        if (j->dp_min_survivors < 1 || j->dp_min_survivors > j->sites_per_round)
            return cnd_errf(CND_EINVAL,
                            "job: distributed DP needs dp_min_survivors in [1, %u] (the sites "
                            "per round), not %u",
                            j->sites_per_round, j->dp_min_survivors);
        if (j->dp_assumed_n)
            return cnd_errf(CND_EINVAL, "job: dp_assumed_samples is for DP-SGD at each site; "
                                        "distributed DP does not depend on the site's records");
        return 0;
    }
    if (j->dp_mode != CND_JOB_DP_LOCAL)
        return cnd_errf(CND_EINVAL, "job: unknown DP mode %u", j->dp_mode);
    if (j->dp_min_survivors)
        return cnd_errf(CND_EINVAL, "job: dp_min_survivors is for distributed DP only");
    /* QAT rounds train with DP-SGD like the others (the per-sample gradients go through the
     * fake quantization, compress/dpsgd.h) and are counted like them; their quantizer comes
     * from the coordinator's public calibration samples (compress/quant_fed.h). */
    return 0;
}

void cnd_job_dp_site(const cnd_job_spec_t *j, uint64_t n, double *q, long *steps_per_round)
{
    uint64_t B = j->batch < CND_JOB_DP_BATCH_MAX ? j->batch : CND_JOB_DP_BATCH_MAX;
    if (n < 1) n = 1;
    if (B < 1) B = 1;
    *q = B >= n ? 1.0 : (double)B / (double)n;
    *steps_per_round = (long)j->local_epochs * (long)((n + B - 1) / B);
}

int cnd_job_ddp_mech(const cnd_job_spec_t *j, uint64_t dim, uint64_t *s2, cnd_dp_ddg_t *m)
{
    cnd_fxp_params_t fp = {(uint32_t)dim, 1, j->value_bits, 1.0f, 0, 1};
    if (dim < 1 || dim > UINT32_MAX || j->value_bits < 2 || j->value_bits > 24 ||
        j->dp_min_survivors < 1)
        return cnd_errf(CND_EINVAL,
                        "distributed DP: %llu parameters, value_bits %u, "
                        "min_survivors %u",
                        (unsigned long long)dim, j->value_bits, j->dp_min_survivors);
    double l2 = cnd_fxp_ddp_l2(&fp), sd = j->dp_noise * l2;
    double v = ceil(sd * sd / j->dp_min_survivors);
    if (!(v <= (double)((uint64_t)1 << 40)))
        return cnd_errf(CND_ERANGE,
                        "distributed DP: each site's noise variance would be %.3g, above the "
                        "sampler's 2^40 (lower the noise multiplier or value_bits)",
                        v);
    *s2 = v < 1 ? 1 : (uint64_t)v;
    *m = (cnd_dp_ddg_t){l2, cnd_dp_ddg_l1(l2, dim), (double)*s2, j->dp_min_survivors, dim};
    return 0;
}

int cnd_job_dp_round(const cnd_job_spec_t *j, uint64_t n, uint64_t dim, cnd_dp_segment_t *seg)
{
    memset(seg, 0, sizeof *seg);
    if (j->dp_mode == CND_JOB_DP_DISTRIBUTED) {
        uint64_t s2;
        seg->steps = 1;
        return cnd_job_ddp_mech(j, dim, &s2, &seg->ddg);
    }
    cnd_job_dp_site(j, n, &seg->q, &seg->steps);
    seg->sigma = j->dp_noise;
    return 0;
}

int cnd_job_dp_epsilon(const cnd_job_spec_t *j, uint64_t n, uint64_t dim, long rounds, double *eps)
{
    cnd_dp_segment_t seg;
    int rc = cnd_job_dp_round(j, n, dim, &seg);
    if (rc) return rc;
    seg.steps *= rounds;
    cnd_dp_params_t p = {.delta = j->dp_delta};
    return cnd_dp_epsilon_composed(&p, &seg, 1, eps, NULL);
}

int cnd_job_dp_solve(cnd_job_spec_t *j, double target_eps, uint64_t assumed_n)
{
    if (!(target_eps > 0) || assumed_n < 1)
        return cnd_errf(CND_EINVAL,
                        "DP: a target epsilon > 0 (%g) and assumed records per site "
                        ">= 1 (%llu) are needed",
                        target_eps, (unsigned long long)assumed_n);
    double q, eps = 0;
    long per;
    cnd_job_dp_site(j, assumed_n, &q, &per);
    cnd_dp_params_t p = {.q = q, .steps = per * (long)j->rounds, .delta = j->dp_delta};
    int rc = cnd_dp_solve_noise(&p, target_eps, &j->dp_noise, &eps);
    if (rc) return cnd_err_wrap(rc, "DP: solving the noise for epsilon %g", target_eps);
    j->dp_target_eps = target_eps;
    j->dp_assumed_n = assumed_n;
    return 0;
}

void cnd_job_dp_to_json(cnd_jw_t *w, const cnd_job_spec_t *j)
{
    cnd_jw_key(w, "dp");
    cnd_jw_obj(w);
    cnd_jw_key(w, "noise");
    cnd_jw_double(w, j->dp_noise);
    cnd_jw_key(w, "clip");
    cnd_jw_double(w, j->dp_clip);
    cnd_jw_key(w, "delta");
    cnd_jw_double(w, j->dp_delta);
    cnd_jw_key(w, "target_epsilon");
    cnd_jw_double(w, j->dp_target_eps);
    cnd_jw_key(w, "assumed_samples");
    cnd_jw_int(w, (int64_t)j->dp_assumed_n);
    if (j->dp_mode == CND_JOB_DP_DISTRIBUTED) { /* absent: DP-SGD at each site (older recipes) */
        cnd_jw_key(w, "mode");
        cnd_jw_str(w, "distributed");
        cnd_jw_key(w, "min_survivors");
        cnd_jw_int(w, j->dp_min_survivors);
    }
    cnd_jw_obj_end(w);
}

static int s_num(const cnd_json_t *o, const char *k, double *out)
{
    const cnd_json_t *v = cnd_json_get(o, k);
    if (!v || (v->type != CND_JSON_NUM && v->type != CND_JSON_INT) || !cnd_json_number(v, out))
        return cnd_errf(CND_EINVAL, "job recipe: 'dp.%s' is missing or not a number", k);
    return 0;
}

int cnd_job_dp_from_json(cnd_job_spec_t *j, const cnd_json_t *v)
{
    if (!v) return 0;
    if (v->type != CND_JSON_OBJ) return cnd_errf(CND_EINVAL, "job recipe: 'dp' is not an object");
    double n = 0;
    int rc;
    if ((rc = s_num(v, "noise", &j->dp_noise)) || (rc = s_num(v, "clip", &j->dp_clip)) ||
        (rc = s_num(v, "delta", &j->dp_delta)) ||
        (rc = s_num(v, "target_epsilon", &j->dp_target_eps)) ||
        (rc = s_num(v, "assumed_samples", &n)))
        return rc;
    if (!(n >= 0 && n <= 1099511627776.0))
        return cnd_errf(CND_EINVAL, "job recipe: 'dp.assumed_samples' out of range");
    j->dp_assumed_n = (uint64_t)n;
    if (!(j->dp_clip > 0)) return cnd_errf(CND_EINVAL, "job recipe: 'dp.clip' must be > 0");
    const cnd_json_t *mode = cnd_json_get(v, "mode");
    if (mode) {
        double ms = 0;
        if (mode->type != CND_JSON_STR || strcmp(mode->s, "distributed"))
            return cnd_errf(CND_EINVAL, "job recipe: 'dp.mode' must be \"distributed\" or absent");
        if ((rc = s_num(v, "min_survivors", &ms))) return rc;
        if (!(ms >= 1 && ms <= 65535))
            return cnd_errf(CND_EINVAL, "job recipe: 'dp.min_survivors' out of range");
        j->dp_mode = CND_JOB_DP_DISTRIBUTED;
        j->dp_min_survivors = (uint32_t)ms;
    }
    return 0;
}

/* --dp-mode distributed: one release per round at q = 1, so the noise multiplier for a target
 * is the Gaussian mechanism's over the rounds (the site's exact figure adds the tau term of
 * dp_accountant.h, which is below 1e-100 at the variances the ring scale gives). */
static int s_options_ddp(cnd_job_spec_t *j, const cnd_job_dp_opts_t *o)
{
    if (o->site_samples > 0)
        return cnd_errf(CND_EINVAL, "--dp-site-samples is for DP-SGD at each site; distributed "
                                    "DP does not depend on the sites' record counts");
    if (o->epsilon > 0 && o->noise > 0)
        return cnd_errf(CND_EINVAL, "give --dp-epsilon (the noise is solved for it) or "
                                    "--dp-noise, not both");
    j->dp_mode = CND_JOB_DP_DISTRIBUTED;
    /* default: the quorum, the fewest sites a round unmasks anyway */
    j->dp_min_survivors = o->min_survivors > 0 ? (uint32_t)o->min_survivors
                          : j->quorum > 0      ? j->quorum
                                               : j->sites_per_round;
    if (o->min_survivors > (long)j->sites_per_round)
        return cnd_errf(CND_EINVAL, "--dp-min-survivors %ld is above --sites %u", o->min_survivors,
                        j->sites_per_round);
    j->dp_clip = o->clip > 0 ? o->clip : 1.0;
    j->dp_delta = o->delta > 0 ? o->delta : 1e-5;
    if (o->noise > 0) {
        j->dp_noise = o->noise;
        return cnd_job_dp_check(j);
    }
    cnd_dp_params_t p = {.q = 1, .steps = (long)j->rounds, .delta = j->dp_delta};
    double eps = 0;
    int rc = cnd_dp_solve_noise(&p, o->epsilon, &j->dp_noise, &eps);
    if (rc) return cnd_err_wrap(rc, "DP: solving the noise for epsilon %g", o->epsilon);
    j->dp_target_eps = o->epsilon;
    return cnd_job_dp_check(j);
}

int cnd_job_dp_options(cnd_job_spec_t *j, const cnd_job_dp_opts_t *o)
{
    j->dp_noise = j->dp_clip = j->dp_delta = j->dp_target_eps = 0;
    j->dp_assumed_n = 0;
    j->dp_mode = CND_JOB_DP_LOCAL;
    j->dp_min_survivors = 0;
    if (!(o->epsilon > 0) && !(o->noise > 0)) {
        if (o->delta > 0 || o->clip > 0 || o->site_samples > 0 || o->distributed ||
            o->min_survivors > 0)
            return cnd_errf(CND_EINVAL, "--dp-delta, --dp-clip, --dp-site-samples, --dp-mode and "
                                        "--dp-min-survivors need --dp-epsilon or --dp-noise");
        return 0;
    }
    if (o->distributed) return s_options_ddp(j, o);
    if (o->min_survivors > 0)
        return cnd_errf(CND_EINVAL, "--dp-min-survivors needs --dp-mode distributed");
    if (o->epsilon > 0 && o->noise > 0)
        return cnd_errf(CND_EINVAL, "give --dp-epsilon (the noise is solved for it) or "
                                    "--dp-noise, not both");
    j->dp_clip = o->clip > 0 ? o->clip : 1.0;
    j->dp_delta = o->delta > 0 ? o->delta : 1e-5;
    if (o->noise > 0) {
        j->dp_noise = o->noise;
        return cnd_job_dp_check(j);
    }
    if (o->site_samples < 1)
        return cnd_errf(CND_EINVAL,
                        "--dp-epsilon needs --dp-site-samples N: the training records a site is "
                        "assumed to hold (the noise is solved for a site of N records; each site "
                        "computes its own epsilon from its own count)");
    int rc = cnd_job_dp_solve(j, o->epsilon, (uint64_t)o->site_samples);
    return rc ? rc : cnd_job_dp_check(j);
}

int cnd_job_ddp_solve(cnd_job_spec_t *j, uint64_t dim)
{
    if (j->dp_mode != CND_JOB_DP_DISTRIBUTED || !(j->dp_target_eps > 0))
        return cnd_errf(CND_EINVAL, "DP: no distributed-DP target epsilon to solve for");
    double target = j->dp_target_eps, lo = j->dp_noise / 4, hi = j->dp_noise, eps = 0;
    int rc = 0;
    /* raise hi until it meets the target (the Gaussian estimate usually does already) */
    for (int i = 0; i < 60; i++) {
        j->dp_noise = hi;
        if ((rc = cnd_job_dp_epsilon(j, 1, dim, (long)j->rounds, &eps))) return rc;
        if (eps <= target) break;
        lo = hi;
        hi *= 1.5;
        if (hi > 1e4)
            return cnd_errf(CND_ERANGE,
                            "DP: no noise multiplier up to 1e4 reaches "
                            "epsilon %g",
                            target);
    }
    if (eps > target) return cnd_errf(CND_ERANGE, "DP: no noise reaches epsilon %g", target);
    /* epsilon falls (stepwise: s2 is rounded up) as the noise grows: bisect to 1e-7 relative */
    while (hi - lo > 1e-7 * hi) {
        double mid = (lo + hi) / 2;
        j->dp_noise = mid;
        if ((rc = cnd_job_dp_epsilon(j, 1, dim, (long)j->rounds, &eps))) return rc;
        if (eps <= target)
            hi = mid;
        else
            lo = mid;
    }
    j->dp_noise = hi;
    return cnd_job_dp_check(j);
}
