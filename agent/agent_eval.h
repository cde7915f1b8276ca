/*
 * agent_eval.h: a site's part in an evaluation round of a federated AutoCompress job
 * (docs/compression.md "Federated search"; the coordinator's side is coordinator/coord_autoc.h).
 *
 * The round's object is a bundle of K candidate models (compress/autocompress_fed.h). The site
 * evaluates each on its validation split (the one training rounds report on) and builds the
 * count vector: its validated samples (capped at the job's sample cap) and each candidate's
 * correct predictions among them. That vector leaves the site only masked (crypto/secagg.h),
 * exactly as a training round's update does; the coordinator reads sums over at least the
 * round's survivor minimum. A candidate that does not fit the job (input shape, classes) fails
 * the round: the site sends nothing rather than a vector the coordinator could misread.
 */
#ifndef CND_AGENT_EVAL_H
#define CND_AGENT_EVAL_H

#include "agent_train.h"
#include "autocompress_fed.h"

typedef struct {
    uint32_t k;                          /* candidates */
    uint64_t validated;                  /* validation samples evaluated (before the cap) */
    uint64_t correct[CND_AUTOC_FED_MAX]; /* per candidate */
    uint32_t eval_ms;                    /* time taken */
} cnd_agent_eval_t;

/* Evaluates the k candidates of bundle[0..len) on d->val for a round of n sites of job j, and
 * encodes the counts into *x (owned, lay->len elements; wipe before freeing) with the layout
 * written to *lay. *res (may be NULL) gets the counts, for the site's own log. Returns 0,
 * CND_EFORMAT (a malformed bundle or model), CND_EINVAL (a candidate that does not fit, or a
 * count of candidates other than k) or CND_ENOMEM. */
CND_MUST_USE int cnd_agent_eval_round(uint32_t **x, cnd_autoc_fed_layout_t *lay,
                                      cnd_agent_eval_t *res, const uint8_t *bundle, size_t len,
                                      uint32_t k, uint32_t n, const cnd_agent_data_t *d,
                                      const cnd_job_spec_t *j);

#endif
