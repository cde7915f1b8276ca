/*
 * audit_privacy.h: `condenser audit privacy`: an auditor recomputes a site's differential-
 * privacy spend from its audit log alone (docs/auditor-guide.md, docs/privacy.md).
 *
 * Every dp.spend entry (audit_actions.h) carries the parameters of one round of DP-SGD (q,
 * sigma, steps, delta), or of one round of distributed DP (the distributed discrete Gaussian's
 * l2, l1, s2, parties, dim), and the epsilons the site claimed: its job's so far and its total.
 * This module replays the entries in log order, per actor (the site's identity): each entry adds
 * one sampled Gaussian run or one distributed discrete Gaussian release; the job's epsilon is every
 * run of that job composed (RDP added per order, common/dp_accountant.h) at the entry's delta, the
 * total every run of every job at the entry's total_delta. An entry whose logged epsilons differ
 * from the recomputed ones by more than CND_AUDIT_DP_TOL (relative), or whose parameters are out of
 * range, is marked bad. Read-only; the log should be verified first (this checks the arithmetic,
 * not the tree).
 */
#ifndef CND_AUDIT_PRIVACY_H
#define CND_AUDIT_PRIVACY_H

#include "audit_log.h"
#include "dp_accountant.h"

#include <stddef.h>
#include <stdint.h>

#define CND_AUDIT_DP_TOL 1e-9

typedef struct {
    int64_t seq;     /* the entry */
    int64_t time_ms; /* when it was logged */
    char actor[CND_AUDIT_FPR_HEX];
    char job[32];
    uint32_t round, attempt;
    double q, sigma;
    int64_t steps;
    double delta, eps_logged, eps;           /* the job's epsilon: logged, recomputed */
    double total_delta, total_logged, total; /* the site's total: logged, recomputed */
    cnd_dp_ddg_t ddg;                        /* distributed DP (parties > 0), else zero */
    int ok;                                  /* 1: parameters valid and both epsilons agree */
    char why[160];                           /* when not ok */
} cnd_audit_dp_row_t;

typedef struct {
    cnd_audit_dp_row_t *rows; /* in log order */
    size_t n;
    size_t bad; /* rows not ok */
} cnd_audit_dp_t;

/* Recomputes every dp.spend entry of log (all jobs: totals compose across jobs) and keeps the
 * rows of `job` (NULL or "" = all). Returns 0 (bad rows are counted, not an error), CND_EDB or
 * CND_ENOMEM. */
CND_MUST_USE int cnd_audit_privacy(cnd_audit_dp_t *out, cnd_audit_t *log, const char *job);
void cnd_audit_privacy_free(cnd_audit_dp_t *r);

/* `condenser audit privacy DB [--job J] [--json]`: the table (or JSON) of the rows; an error
 * exit when a row is bad. */
int cnd_audit_privacy_cmd(int argc, char **argv);

#endif
