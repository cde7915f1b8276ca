/*
 * agent_eval.c: a site evaluates an evaluation round's candidates (see agent_eval.h).
 */
#include "agent_eval.h"
#include "clock.h"
#include "modelfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_eval_all(cnd_agent_eval_t *r, const uint8_t *bundle, const size_t *off,
                      const size_t *blen, const cnd_agent_data_t *d, const cnd_job_spec_t *j)
{
    for (uint32_t i = 0; i < r->k; i++) {
        cnd_model_t *m = NULL;
        char what[48];
        snprintf(what, sizeof what, "candidate %u", i);
        int rc = cnd_model_deserialize(&m, bundle + off[i], blen[i], what);
        if (!rc && d->val) rc = cnd_autoc_fed_eval(&r->correct[i], m, d->val, (int)j->classes);
        cnd_model_destroy(&m);
        if (rc) {
            char why[400];
            snprintf(why, sizeof why, "%s", cnd_err_detail());
            return cnd_errf(rc, "candidate %u: %s", i, why);
        }
    }
    return 0;
}

int cnd_agent_eval_round(uint32_t **x, cnd_autoc_fed_layout_t *lay, cnd_agent_eval_t *res,
                         const uint8_t *bundle, size_t len, uint32_t k, uint32_t n,
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
    if ((rc = s_eval_all(&r, bundle, off, blen, d, j))) return rc;
    r.validated = d->val ? d->val->n : 0;
    r.eval_ms = (uint32_t)((cnd_now() - t0) * 1e3);
    *x = calloc(lay->len, sizeof **x);
    if (!*x) return cnd_errf(CND_ENOMEM, "evaluation counts: out of memory");
    cnd_autoc_fed_encode(*x, lay, r.validated, r.correct);
    if (res) *res = r;
    return 0;
}
