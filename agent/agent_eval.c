/*
 * agent_eval.c: a site evaluates an evaluation round's candidates (see agent_eval.h).
 */
#include "agent_eval.h"
#include "clock.h"
#include "modelfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Round r's slice of the validation split: samples [(r-1) n / R, r n / R) (*out owned). */
static int s_slice(cnd_dataset_t **out, const cnd_dataset_t *val, uint32_t r, uint32_t rounds)
{
    size_t n = val->n, lo = (size_t)((uint64_t)n * (r - 1) / rounds),
           hi = (size_t)((uint64_t)n * r / rounds);
    uint32_t *idx = malloc((hi > lo ? hi - lo : 1) * sizeof *idx);
    if (!idx) return cnd_errf(CND_ENOMEM, "validation slice: out of memory");
    for (size_t i = lo; i < hi; i++) idx[i - lo] = (uint32_t)i;
    int rc = cnd_data_subset(out, val, idx, hi - lo);
    free(idx);
    return rc;
}

static int s_eval_all(cnd_agent_eval_t *r, const uint8_t *bundle, const size_t *off,
                      const size_t *blen, const cnd_dataset_t *val, const cnd_job_spec_t *j)
{
    for (uint32_t i = 0; i < r->k; i++) {
        char what[48];
        snprintf(what, sizeof what, "candidate %u", i);
        int rc = cnd_autoc_fed_eval_blob(&r->correct[i], bundle + off[i], blen[i], val,
                                         (int)j->classes, what);
        if (rc) {
            char why[400];
            snprintf(why, sizeof why, "%s", cnd_err_detail());
            return cnd_errf(rc, "candidate %u: %s", i, why);
        }
    }
    return 0;
}

int cnd_agent_eval_round(uint32_t **x, cnd_autoc_fed_layout_t *lay, cnd_agent_eval_t *res,
                         const uint8_t *bundle, size_t len, uint32_t k, uint32_t n, uint32_t round,
                         const cnd_agent_data_t *d, const cnd_job_spec_t *j)
{
    *x = NULL;
    size_t off[CND_AUTOC_FED_MAX], blen[CND_AUTOC_FED_MAX];
    cnd_agent_eval_t r;
    memset(&r, 0, sizeof r);
    double t0 = cnd_now();
    int rc = cnd_autoc_fed_parse(bundle, len, &r.k, off, blen);
    if (rc) return rc;
    if (r.k != k)
        return cnd_errf(CND_EINVAL, "the bundle holds %u candidates, the round announced %u", r.k,
                        k);
    if ((rc = cnd_autoc_fed_layout(lay, k, n, j->sample_cap))) return rc;
    if (!d->val || round < 1 || round > j->rounds)
        return cnd_errf(CND_EINVAL, "round %u of %u: no validation slice", round, j->rounds);
    cnd_dataset_t *val = NULL;
    if ((rc = s_slice(&val, d->val, round, j->rounds))) return rc;
    rc = s_eval_all(&r, bundle, off, blen, val, j);
    r.validated = val->n;
    cnd_data_destroy(&val);
    if (rc) return rc;
    r.eval_ms = (uint32_t)((cnd_now() - t0) * 1e3);
    *x = calloc(lay->len, sizeof **x);
    if (!*x) return cnd_errf(CND_ENOMEM, "evaluation counts: out of memory");
    cnd_autoc_fed_encode(*x, lay, r.validated, r.correct);
    if (res) *res = r;
    return 0;
}
