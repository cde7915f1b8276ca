/*
 * test_audit_limit.c: the refusal rate limiter (audit/audit_limit.h) against a real audit log.
 *   - one key: the first `burst` hits of a window are to be recorded, the rest counted; a flush
 *     before the window ends writes nothing, after it one reject.summary with the count;
 *   - keys are independent; past max_keys, refusals land on the "*" key;
 *   - flush(all) ends every window;
 *   - a differential test against a naive model: thousands of random refusals from many peers
 *     over simulated minutes, flushed every simulated second; for every key, recorded plus
 *     summarised refusals equal the hits, window by window;
 *   - the log still verifies, and the entries are bounded by keys x windows, not by hits.
 */
#include "audit_actions.h"
#include "audit_fixture.h"
#include "audit_limit.h"
#include "audit_log.h"
#include "audit_verify.h"
#include "check.h"
#include "rng.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char s_dir[256];

static cnd_audit_t *s_open(const char *name, const fx_key_t *k)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", s_dir, name);
    cnd_audit_t *log = NULL;
    CHECK_EQ_INT(cnd_audit_open(&log, p, k->sk, "condenser/test-limit"), 0);
    return log;
}

/* Sum of reject.summary counts for (peer, reason) in the log, and the number of such entries. */
static int64_t s_summed(cnd_audit_t *log, const char *peer, const char *reason, int *entries)
{
    sqlite3_stmt *st = NULL;
    int64_t sum = 0;
    *entries = 0;
    CHECK(sqlite3_prepare_v2(cnd_audit_db(log),
                             "SELECT json_extract(entry, '$.details.count') FROM audit_entry"
                             " WHERE action = 'reject.summary' AND subject = ?1"
                             " AND json_extract(entry, '$.details.reason') = ?2",
                             -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_text(st, 1, peer, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        sum += sqlite3_column_int64(st, 0);
        (*entries)++;
    }
    sqlite3_finalize(st);
    return sum;
}

static int64_t s_count(cnd_audit_t *log, const char *action)
{
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    CHECK(sqlite3_prepare_v2(cnd_audit_db(log),
                             "SELECT count(*) FROM audit_entry WHERE action = ?1", -1, &st,
                             NULL) == SQLITE_OK);
    sqlite3_bind_text(st, 1, action, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void test_one_key(const fx_key_t *k)
{
    cnd_audit_t *log = s_open("one.db", k);
    cnd_audit_limiter_t *l = NULL;
    cnd_audit_limit_opts_t o = {3, 10, 0};
    CHECK_EQ_INT(cnd_audit_limiter_new(&l, log, k->fpr, &o), 0);
    if (!l) return;
    int rec = 0;
    for (int i = 0; i < 10; i++)
        rec +=
            cnd_audit_limiter_hit(l, CND_AUDIT_REJECT_MESSAGE, "peer-a", "ERR_MALFORMED", i * 0.1);
    CHECK_EQ_INT(rec, 3);
    CHECK_EQ_INT(cnd_audit_limiter_flush(l, 5, 0), 0);
    CHECK_EQ_INT(s_count(log, CND_AUDIT_REJECT_SUMMARY), 0); /* the window is not over */
    CHECK_EQ_INT(cnd_audit_limiter_flush(l, 10.5, 0), 0);
    int e = 0;
    CHECK_EQ_INT(s_summed(log, "peer-a", "ERR_MALFORMED", &e), 7);
    CHECK_EQ_INT(e, 1);
    /* a new window: the burst is available again */
    CHECK_EQ_INT(cnd_audit_limiter_hit(l, CND_AUDIT_REJECT_MESSAGE, "peer-a", "ERR_MALFORMED", 11),
                 1);
    /* counted only: never recorded on its own, always in the summary */
    cnd_audit_limiter_count(l, CND_AUDIT_REJECT_MESSAGE, "peer-b", "dropped unread", 12);
    cnd_audit_limiter_count(l, CND_AUDIT_REJECT_MESSAGE, "peer-b", "dropped unread", 12);
    CHECK_EQ_INT(cnd_audit_limiter_flush(l, 22.5, 0), 0);
    CHECK_EQ_INT(s_summed(log, "peer-b", "dropped unread", &e), 2);
    CHECK_EQ_INT(s_count(log, CND_AUDIT_REJECT_SUMMARY), 2);
    /* a window with no suppressed refusal writes no summary */
    CHECK_EQ_INT(cnd_audit_limiter_flush(l, 30, 0), 0);
    CHECK_EQ_INT(s_count(log, CND_AUDIT_REJECT_SUMMARY), 2);
    cnd_audit_limit_stats_t st;
    cnd_audit_limiter_stats(l, &st);
    CHECK_EQ_INT(st.recorded, 4);
    CHECK_EQ_INT(st.suppressed, 9);
    CHECK_EQ_INT(st.summaries, 2);
    cnd_audit_limiter_destroy(&l);
    CHECK(l == NULL);
    cnd_audit_limiter_destroy(&l);
    cnd_audit_close(&log);
}

static void test_keys_and_overflow(const fx_key_t *k)
{
    cnd_audit_t *log = s_open("keys.db", k);
    cnd_audit_limiter_t *l = NULL;
    cnd_audit_limit_opts_t o = {1, 60, 4};
    CHECK_EQ_INT(cnd_audit_limiter_new(&l, log, k->fpr, &o), 0);
    if (!l) return;
    /* two reasons of one peer and two peers: four keys, each with its own burst */
    CHECK_EQ_INT(cnd_audit_limiter_hit(l, "reject.message", "p1", "ERR_MALFORMED", 0), 1);
    CHECK_EQ_INT(cnd_audit_limiter_hit(l, "reject.message", "p1", "ERR_REPLAY", 0), 1);
    CHECK_EQ_INT(cnd_audit_limiter_hit(l, "reject.message", "p2", "ERR_MALFORMED", 0), 1);
    CHECK_EQ_INT(cnd_audit_limiter_hit(l, "reject.connection", "p2", "ERR_MALFORMED", 0), 1);
    CHECK_EQ_INT(cnd_audit_limiter_hit(l, "reject.message", "p1", "ERR_MALFORMED", 1), 0);
    /* the table is full: new peers share the "*" key */
    CHECK_EQ_INT(cnd_audit_limiter_hit(l, "reject.message", "p3", "ERR_MALFORMED", 2), 1);
    CHECK_EQ_INT(cnd_audit_limiter_hit(l, "reject.message", "p4", "ERR_MALFORMED", 2), 0);
    CHECK_EQ_INT(cnd_audit_limiter_hit(l, "reject.message", "p5", "ERR_BAD_FIELD", 2), 0);
    CHECK_EQ_INT(cnd_audit_limiter_flush(l, 3, 1), 0);
    int e = 0;
    CHECK_EQ_INT(s_summed(log, "p1", "ERR_MALFORMED", &e), 1);
    CHECK_EQ_INT(s_summed(log, "*", "too many peers refused", &e), 2);
    CHECK_EQ_INT(s_count(log, CND_AUDIT_REJECT_SUMMARY), 2);
    /* after the flush the table has room again */
    CHECK_EQ_INT(cnd_audit_limiter_hit(l, "reject.message", "p4", "ERR_MALFORMED", 4), 1);
    cnd_audit_limiter_destroy(&l);
    /* bad options */
    o.burst = -1;
    CHECK_EQ_INT(cnd_audit_limiter_new(&l, log, k->fpr, &o), CND_EINVAL);
    CHECK_EQ_INT(cnd_audit_limiter_new(&l, NULL, k->fpr, NULL), CND_EINVAL);
    cnd_audit_close(&log);
}

/* The naive model: per key, the window's start and its counts; flushed like the real one. */
#define NP 20
#define NR 3
typedef struct {
    int open;
    double since;
    int64_t rec, sup;
    int64_t hits, recorded, summarised; /* totals over the run */
} model_t;

static void test_differential(const fx_key_t *k)
{
    cnd_audit_t *log = s_open("diff.db", k);
    cnd_audit_limiter_t *l = NULL;
    const int burst = 4;
    const double win = 7.5;
    cnd_audit_limit_opts_t o = {burst, win, 0};
    CHECK_EQ_INT(cnd_audit_limiter_new(&l, log, k->fpr, &o), 0);
    if (!l) return;
    static const char *const reasons[NR] = {"ERR_MALFORMED", "hello first", "ERR_REPLAY"};
    model_t m[NP][NR];
    memset(m, 0, sizeof m);
    cnd_rng_t r;
    cnd_rng_seed(&r, 2024);
    const int events = 20000;
    double t = 0, next_flush = 1;
    int64_t expected_summaries = 0;
    for (int i = 0; i < events; i++) {
        t += cnd_rng_double(&r) * 0.03; /* about 10 minutes of refusals */
        while (next_flush <= t) {
            CHECK_EQ_INT(cnd_audit_limiter_flush(l, next_flush, 0), 0);
            for (int p = 0; p < NP; p++)
                for (int q = 0; q < NR; q++) {
                    model_t *x = &m[p][q];
                    if (x->open && next_flush - x->since >= win) {
                        if (x->sup) expected_summaries++;
                        x->summarised += x->sup;
                        x->open = 0;
                    }
                }
            next_flush += 1;
        }
        /* skewed: peer 0 floods, the others trickle */
        int p = cnd_rng_double(&r) < 0.6 ? 0 : 1 + (int)cnd_rng_below(&r, NP - 1);
        int q = (int)cnd_rng_below(&r, NR);
        char peer[24];
        snprintf(peer, sizeof peer, "peer-%d", p);
        int got = cnd_audit_limiter_hit(l, CND_AUDIT_REJECT_MESSAGE, peer, reasons[q], t);
        model_t *x = &m[p][q];
        if (!x->open) {
            x->open = 1;
            x->since = t;
            x->rec = x->sup = 0;
        }
        int want = x->rec < burst;
        if (want)
            x->rec++;
        else
            x->sup++;
        x->hits++;
        x->recorded += want;
        if (got != want) {
            CHECK_EQ_INT(got, want);
            break;
        }
    }
    CHECK_EQ_INT(cnd_audit_limiter_flush(l, t, 1), 0);
    for (int p = 0; p < NP; p++)
        for (int q = 0; q < NR; q++) {
            model_t *x = &m[p][q];
            if (x->open && x->sup) expected_summaries++;
            if (x->open) x->summarised += x->sup;
            char peer[16];
            snprintf(peer, sizeof peer, "peer-%d", p);
            int e = 0;
            int64_t s = s_summed(log, peer, reasons[q], &e);
            CHECK_EQ_INT(s, x->summarised);
            CHECK_EQ_INT(x->recorded + x->summarised, x->hits);
        }
    int64_t n = s_count(log, CND_AUDIT_REJECT_SUMMARY);
    CHECK_EQ_INT(n, expected_summaries);
    /* bounded by keys x windows: 60 keys, about 80 windows of 7.5 s in 10 minutes */
    CHECK(n < (int64_t)NP * NR * (int64_t)(t / win + 2));
    fprintf(stderr, "limit: %d refusals over %.0f s -> %lld summary entries\n", events, t,
            (long long)n);
    cnd_audit_limiter_destroy(&l);
    cnd_audit_close(&log);
    char p[512];
    snprintf(p, sizeof p, "%s/diff.db", s_dir);
    cnd_audit_t *ro = NULL;
    CHECK_EQ_INT(cnd_audit_open_readonly(&ro, p), 0);
    cnd_audit_verdict_t v;
    memset(&v, 0, sizeof v);
    if (ro) CHECK_EQ_INT(cnd_audit_verify(&v, ro, k->pk, NULL, NULL, 0, NULL, NULL), 0);
    CHECK(v.ok);
    cnd_audit_verdict_free(&v);
    cnd_audit_close(&ro);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(s_dir, sizeof s_dir, "%s/cnd-limit-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(s_dir)) return 1;
    fx_key_t k;
    fx_key(&k, 7);
    test_one_key(&k);
    test_keys_and_overflow(&k);
    test_differential(&k);
    if (check_failures == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", s_dir);
    }
    return check_result("test_audit_limit");
}
