/*
 * audit_privacy.c: recomputing the dp.spend entries of a log (audit_privacy.h).
 */
#include "audit_privacy.h"
#include "audit_actions.h"
#include "audit_verify.h"
#include "cli.h"
#include "dp_accountant.h"
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The runs seen so far of one actor (all jobs) — rows carry actor and job, so a replay scans. */
typedef struct {
    cnd_audit_dp_row_t *v; /* every dp.spend entry, all jobs, in log order */
    size_t n, cap;
    cnd_dp_segment_t *seg; /* scratch for composition */
} s_all_t;

static double s_num(const cnd_json_t *d, const char *k, int *bad)
{
    const cnd_json_t *v = cnd_json_get(d, k);
    double x = 0;
    if (!v || (v->type != CND_JSON_NUM && v->type != CND_JSON_INT) || !cnd_json_number(v, &x))
        *bad = 1;
    return x;
}

static int s_agree(double logged, double mine);

/* Fills row from a parsed entry; row->ok 0 with why when a field is missing or out of range. */
static void s_row(cnd_audit_dp_row_t *r, const cnd_json_t *e, int64_t seq)
{
    memset(r, 0, sizeof *r);
    r->seq = seq;
    const cnd_json_t *d = cnd_json_get(e, "details");
    const char *actor = cnd_json_str(cnd_json_get(e, "actor"));
    const char *job = cnd_json_str(cnd_json_get(e, "job"));
    snprintf(r->actor, sizeof r->actor, "%s", actor ? actor : "");
    snprintf(r->job, sizeof r->job, "%s", job ? job : "");
    double t = 0;
    if (cnd_json_get(e, "time_ms")) cnd_json_number(cnd_json_get(e, "time_ms"), &t);
    r->time_ms = (int64_t)t;
    int bad = 0;
    r->round = (uint32_t)s_num(d, "round", &bad);
    r->attempt = (uint32_t)s_num(d, "attempt", &bad);
    r->q = s_num(d, "q", &bad);
    r->sigma = s_num(d, "sigma", &bad);
    r->steps = (int64_t)s_num(d, "steps", &bad);
    r->delta = s_num(d, "delta", &bad);
    r->eps_logged = s_num(d, "epsilon", &bad);
    r->total_delta = s_num(d, "total_delta", &bad);
    r->total_logged = s_num(d, "epsilon_total", &bad);
    const cnd_json_t *mech = cnd_json_get(d, "mechanism");
    if (mech) { /* distributed DP (audit_actions.h) */
        const char *ms = cnd_json_str(mech);
        if (!ms || strcmp(ms, "ddg")) bad = 1;
        r->ddg.l2 = s_num(d, "l2", &bad);
        r->ddg.l1 = s_num(d, "l1", &bad);
        r->ddg.s2 = s_num(d, "s2", &bad);
        double pa = s_num(d, "parties", &bad), dim = s_num(d, "dim", &bad);
        if (!(pa >= 1 && pa <= 65535 && dim >= 1 && dim <= 4294967295.0)) {
            snprintf(r->why, sizeof r->why, "distributed DP: parties %g or dim %g out of range", pa,
                     dim);
        } else {
            r->ddg.parties = (uint32_t)pa;
            r->ddg.dim = (uint64_t)dim;
        }
        if (!bad && !r->why[0] &&
            (!(r->ddg.l2 > 0) || !(r->ddg.s2 >= 0.25) || r->steps != 1 ||
             !s_agree(r->ddg.l1, cnd_dp_ddg_l1(r->ddg.l2, r->ddg.dim))))
            snprintf(r->why, sizeof r->why,
                     "distributed DP: l2 %g, s2 %g, steps %lld, or l1 %g (the bound for l2 in "
                     "dim %llu is %g) out of range",
                     r->ddg.l2, r->ddg.s2, (long long)r->steps, r->ddg.l1,
                     (unsigned long long)r->ddg.dim, cnd_dp_ddg_l1(r->ddg.l2, r->ddg.dim));
    }
    r->ok = 1;
    if (r->why[0]) {
        /* already explained */
    } else if (bad)
        snprintf(r->why, sizeof r->why, "a required field is missing or not a number");
    else if (!(r->q >= 0 && r->q <= 1) || !(r->sigma > 0) || r->steps < 0 ||
             !(r->delta > 0 && r->delta < 1) || !(r->total_delta > 0 && r->total_delta < 1))
        snprintf(r->why, sizeof r->why,
                 "parameters out of range (q %g, sigma %g, steps %lld, "
                 "delta %g, total_delta %g)",
                 r->q, r->sigma, (long long)r->steps, r->delta, r->total_delta);
    if (r->why[0]) r->ok = 0;
}

static int s_agree(double logged, double mine)
{
    if (logged == mine) return 1;
    return fabs(logged - mine) <= CND_AUDIT_DP_TOL * fmax(fabs(logged), fabs(mine));
}

/* Recomputes row i from rows 0..i of the same actor (valid ones). */
static void s_recompute(s_all_t *A, size_t i)
{
    cnd_audit_dp_row_t *r = &A->v[i];
    if (!r->ok) return;
    size_t nj = 0, nt = 0;
    /* the job's runs first in seg[0..nj), then all runs after them */
    for (size_t k = 0; k <= i; k++) {
        const cnd_audit_dp_row_t *x = &A->v[k];
        if (x->ok && !strcmp(x->actor, r->actor) && !strcmp(x->job, r->job))
            A->seg[nj++] = (cnd_dp_segment_t){x->q, x->sigma, (long)x->steps, x->ddg};
    }
    for (size_t k = 0; k <= i; k++) {
        const cnd_audit_dp_row_t *x = &A->v[k];
        if (x->ok && !strcmp(x->actor, r->actor))
            A->seg[nj + nt++] = (cnd_dp_segment_t){x->q, x->sigma, (long)x->steps, x->ddg};
    }
    cnd_dp_params_t p = {.delta = r->delta};
    int rc = cnd_dp_epsilon_composed(&p, A->seg, nj, &r->eps, NULL);
    p.delta = r->total_delta;
    if (!rc) rc = cnd_dp_epsilon_composed(&p, A->seg + nj, nt, &r->total, NULL);
    if (rc) {
        snprintf(r->why, sizeof r->why, "accountant: %s", cnd_err_detail());
        r->ok = 0;
    } else if (!s_agree(r->eps_logged, r->eps)) {
        snprintf(r->why, sizeof r->why, "logged epsilon %.10g, recomputed %.10g", r->eps_logged,
                 r->eps);
        r->ok = 0;
    } else if (!s_agree(r->total_logged, r->total)) {
        snprintf(r->why, sizeof r->why, "logged total epsilon %.10g, recomputed %.10g",
                 r->total_logged, r->total);
        r->ok = 0;
    }
}

int cnd_audit_privacy(cnd_audit_dp_t *out, cnd_audit_t *log, const char *job)
{
    memset(out, 0, sizeof *out);
    sqlite3 *db = cnd_audit_db(log);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT seq, entry FROM audit_entry WHERE action = ?1 ORDER BY seq",
                           -1, &st, NULL))
        return cnd_errf(CND_EDB, "reading entries: %s", sqlite3_errmsg(db));
    sqlite3_bind_text(st, 1, CND_AUDIT_DP_SPEND, -1, SQLITE_STATIC);
    s_all_t A = {0};
    int rc = 0, step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (A.n == A.cap) {
            size_t nc = A.cap ? 2 * A.cap : 64;
            cnd_audit_dp_row_t *v = realloc(A.v, nc * sizeof *v);
            if (!v) {
                rc = CND_ENOMEM;
                break;
            }
            A.v = v;
            A.cap = nc;
        }
        const char *t = (const char *)sqlite3_column_text(st, 1);
        cnd_json_t *e = NULL;
        int64_t seq = sqlite3_column_int64(st, 0);
        if (!t || cnd_audit_entry_parse(&e, t, (size_t)sqlite3_column_bytes(st, 1))) {
            memset(&A.v[A.n], 0, sizeof A.v[A.n]);
            A.v[A.n].seq = seq;
            snprintf(A.v[A.n].why, sizeof A.v[A.n].why, "the entry cannot be read");
        } else {
            s_row(&A.v[A.n], e, seq);
        }
        cnd_json_free(&e);
        A.n++;
    }
    if (!rc && step != SQLITE_DONE)
        rc = cnd_errf(CND_EDB, "reading entries: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    if (!rc && A.n && !(A.seg = malloc(2 * A.n * sizeof *A.seg))) rc = CND_ENOMEM;
    for (size_t i = 0; !rc && i < A.n; i++) s_recompute(&A, i);
    free(A.seg);
    if (rc) {
        free(A.v);
        return rc;
    }
    /* keep the job's rows, in place */
    size_t k = 0;
    for (size_t i = 0; i < A.n; i++)
        if (!job || !*job || !strcmp(A.v[i].job, job)) {
            A.v[k] = A.v[i];
            out->bad += !A.v[k].ok;
            k++;
        }
    out->rows = A.v;
    out->n = k;
    return 0;
}

void cnd_audit_privacy_free(cnd_audit_dp_t *r)
{
    if (!r) return;
    free(r->rows);
    memset(r, 0, sizeof *r);
}

/* --- `condenser audit privacy` --- */

static void s_json(const cnd_audit_dp_t *r, const char *db)
{
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "log");
    cnd_jw_str(&w, db);
    cnd_jw_key(&w, "entries");
    cnd_jw_int(&w, (int64_t)r->n);
    cnd_jw_key(&w, "bad");
    cnd_jw_int(&w, (int64_t)r->bad);
    cnd_jw_key(&w, "spends");
    cnd_jw_arr(&w);
    for (size_t i = 0; i < r->n; i++) {
        const cnd_audit_dp_row_t *x = &r->rows[i];
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "entry");
        cnd_jw_int(&w, x->seq);
        cnd_jw_key(&w, "site");
        cnd_jw_str(&w, x->actor);
        cnd_jw_key(&w, "job");
        cnd_jw_str(&w, x->job);
        cnd_jw_key(&w, "round");
        cnd_jw_int(&w, x->round);
        cnd_jw_key(&w, "attempt");
        cnd_jw_int(&w, x->attempt);
        const char *k[] = {"q",
                           "sigma",
                           "delta",
                           "epsilon_logged",
                           "epsilon",
                           "total_delta",
                           "epsilon_total_logged",
                           "epsilon_total"};
        double v[] = {x->q,   x->sigma,       x->delta,        x->eps_logged,
                      x->eps, x->total_delta, x->total_logged, x->total};
        for (int j = 0; j < 8; j++) {
            cnd_jw_key(&w, k[j]);
            cnd_jw_double(&w, v[j]);
            if (j == 1) {
                cnd_jw_key(&w, "steps");
                cnd_jw_int(&w, x->steps);
            }
        }
        cnd_jw_key(&w, "mechanism");
        cnd_jw_str(&w, x->ddg.parties ? "ddg" : "sampled_gaussian");
        if (x->ddg.parties) {
            cnd_jw_key(&w, "l2");
            cnd_jw_double(&w, x->ddg.l2);
            cnd_jw_key(&w, "s2");
            cnd_jw_double(&w, x->ddg.s2);
            cnd_jw_key(&w, "parties");
            cnd_jw_int(&w, x->ddg.parties);
            cnd_jw_key(&w, "dim");
            cnd_jw_int(&w, (int64_t)x->ddg.dim);
        }
        cnd_jw_key(&w, "ok");
        cnd_jw_bool(&w, x->ok);
        if (!x->ok) {
            cnd_jw_key(&w, "why");
            cnd_jw_str(&w, x->why);
        }
        cnd_jw_obj_end(&w);
    }
    cnd_jw_arr_end(&w);
    cnd_jw_obj_end(&w);
    const char *t = cnd_jw_text(&w);
    printf("%s\n", t ? t : "null");
    cnd_jw_free(&w);
}

static void s_table(const cnd_audit_dp_t *r)
{
    printf("%-7s %-12s %-6s %5s %7s %-9s %10s %9s %7s %9s %11s %11s %s\n", "entry", "site", "job",
           "round", "attempt", "mech", "q", "sigma", "steps", "delta", "epsilon", "total", "check");
    for (size_t i = 0; i < r->n; i++) {
        const cnd_audit_dp_row_t *x = &r->rows[i];
        char mech[16] = "sgm"; /* sampled Gaussian (DP-SGD); ddg/m: distributed, m survivors */
        if (x->ddg.parties) snprintf(mech, sizeof mech, "ddg/%u", x->ddg.parties);
        printf("%-7lld %-12.12s %-6s %5u %7u %-9s %10.5g %9.5g %7lld %9.3g %11.6g %11.6g %s%s\n",
               (long long)x->seq, x->actor, x->job, x->round, x->attempt, mech, x->q, x->sigma,
               (long long)x->steps, x->delta, x->eps_logged, x->total_logged,
               x->ok ? "ok" : "BAD: ", x->ok ? "" : x->why);
    }
    printf("%zu dp.spend entries, %zu recomputed and matching, %zu bad\n", r->n, r->n - r->bad,
           r->bad);
}

int cnd_audit_privacy_cmd(int argc, char **argv)
{
    const char *job = NULL;
    int json = 0;
    const cnd_opt_t opts[] = {{"job", CND_OPT_STR, &job, "J", "only the spends of job J"},
                              {"json", CND_OPT_FLAG, &json, NULL, "print JSON"},
                              {0}};
    const cnd_cli_t cli = {
        "condenser audit privacy DB [--job J] [--json]",
        "Recomputes a site's differential-privacy spend from its audit log alone: every "
        "dp.spend entry's sampling rate, noise multiplier, steps and delta (distributed DP: the "
        "discrete Gaussian's sensitivity, variance, survivors and dimension) go through the RDP "
        "accountant again, composed per job and over all jobs, and the result is compared with "
        "the epsilons the site logged. Exits with an error when any entry does not match.",
        opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_audit_t *log = NULL;
    if ((rc = cnd_audit_open_readonly(&log, pos[0]))) return rc;
    cnd_audit_dp_t r;
    rc = cnd_audit_privacy(&r, log, job);
    cnd_audit_close(&log);
    if (rc) return rc;
    if (json)
        s_json(&r, pos[0]);
    else
        s_table(&r);
    if (r.bad)
        rc = cnd_errf(CND_EFORMAT, "%zu dp.spend entries do not match their recomputation", r.bad);
    cnd_audit_privacy_free(&r);
    return rc;
}
