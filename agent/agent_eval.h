/*
 * agent_eval.h: a site's part in an evaluation round of a federated AutoCompress job
 * (docs/compression.md "Federated search"; the coordinator's side is coordinator/coord_autoc.h).
 *
 * The round's object is a bundle of K candidate models (compress/autocompress_fed.h). The site
 * evaluates each on round r's slice of its validation split (the split training rounds report
 * on): samples [(r-1) n / R, r n / R) of its n, R the job's rounds, and builds the count vector:
 * its validated samples (capped at the job's sample cap) and each candidate's correct predictions
 * among them. That vector leaves the site only masked (crypto/secagg.h), exactly as a training
 * round's update does; the coordinator reads sums over at least the round's survivor minimum.
 * Disjoint slices: the same candidate is evaluated again in later rounds, over other sets of sites
 * (selection, dropouts); were the data the same, the difference of two rounds' sums over {A, B, C}
 * and {A, B} would be C's counts. With a fresh slice per round (and at most one unmasked sum per
 * round, agent_store.h), no record is counted in two sums of one job. A candidate that does not fit
 * the job (input shape, classes) fails the round: the site sends nothing rather than a vector the
 * coordinator could misread.
 */
#ifndef CND_AGENT_EVAL_H
#define CND_AGENT_EVAL_H

#include "agent_train.h"
#include "autocompress_fed.h"

typedef struct {
    uint32_t k;                          /* candidates */
    uint64_t validated;                  /* samples of the slice evaluated (before the cap) */
    uint64_t correct[CND_AUTOC_FED_MAX]; /* per candidate */
    uint32_t eval_ms;                    /* time taken */
} cnd_agent_eval_t;

/* Evaluates the k candidates of bundle[0..len) on round `round`'s slice of d->val for a round
 * of n sites of job j, and
 * encodes the counts into *x (owned, lay->len elements; wipe before freeing) with the layout
 * written to *lay. *res (may be NULL) gets the counts, for the site's own log. Returns 0,
 * CND_EFORMAT (a malformed bundle or model), CND_EINVAL (a candidate that does not fit, or a
 * count of candidates other than k) or CND_ENOMEM. */
CND_MUST_USE int cnd_agent_eval_round(uint32_t **x, cnd_autoc_fed_layout_t *lay,
                                      cnd_agent_eval_t *res, const uint8_t *bundle, size_t len,
                                      uint32_t k, uint32_t n, uint32_t round,
                                      const cnd_agent_data_t *d, const cnd_job_spec_t *j);

#endif
